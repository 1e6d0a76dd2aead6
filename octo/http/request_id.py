"""Request ids: the client's (or proxy's) ``X-Request-ID`` when it is safe, else one made here.

A generated id is this worker's random prefix and a counter (``3f9a0c12b7e4-26``): unique
across workers and restarts without a random draw per request.
"""

from __future__ import annotations

import itertools
import os

MAX_LENGTH = 128
# What an id may hold: UUIDs, hex and base64 ids, and trace headers such as
# "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1". No spaces, quotes, commas or
# controls: an id is echoed in a response header and written into log lines.
SAFE = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.:;=+/@"


class RequestIds:
    """Hands out the id of each request of one worker (build it after the fork)."""

    def __init__(self) -> None:
        self.prefix = os.urandom(6).hex() + "-"
        self.counter = itertools.count(1)

    def accept(self, incoming: bytes | None) -> str:
        """*incoming* if it is a usable id (1..MAX_LENGTH safe characters), else a new one
        (the protocol makes one inline, the same way, when nothing came)."""
        if incoming is not None and 0 < len(incoming) <= MAX_LENGTH and not incoming.translate(
                None, SAFE):
            return incoming.decode("ascii")
        return f"{self.prefix}{next(self.counter)}"
