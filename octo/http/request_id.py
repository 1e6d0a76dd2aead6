"""Request ids: the client's (or proxy's) ``X-Request-ID`` when it is safe, else one made here.

A generated id is this worker's random prefix and a counter (``3f9a0c12b7e4-26``): unique
across workers and restarts without a random draw per request. A core module (compiled with
the others, see octo.http.core): the protocol asks it for an id per request.
"""

from __future__ import annotations

import os
from typing import Final

MAX_LENGTH: Final = 128
# What an id may hold: UUIDs, hex and base64 ids, and trace headers such as
# "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1". No spaces, quotes, commas or
# controls: an id is echoed in a response header and written into log lines.
SAFE: Final = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.:;=+/@"


class RequestIds:
    """Hands out the id of each request of one worker (build it after the fork)."""

    def __init__(self) -> None:
        self.prefix = os.urandom(6).hex() + "-"
        self.issued = 0  # ids made so far

    def new(self) -> str:
        """The next id of this worker's own."""
        self.issued += 1
        # A concatenation: the f-string's builder cost 330 instructions, this 100 (callgrind).
        return self.prefix + str(self.issued)

    def accept(self, incoming: bytes | None) -> str:
        """*incoming* if it is a usable id (1..MAX_LENGTH safe characters), else a new one."""
        if incoming is not None and 0 < len(incoming) <= MAX_LENGTH and not incoming.translate(
                None, SAFE):
            return incoming.decode("ascii")
        return self.new()
