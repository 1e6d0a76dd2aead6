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
# The numbers below 1000, plain and as three digits (see RequestIds.new).
_DIGITS: Final = tuple(str(n) for n in range(1000))
_PADDED: Final = tuple(f"{n:03d}" for n in range(1000))


class RequestIds:
    """Hands out the id of each request of one worker (build it after the fork)."""

    def __init__(self) -> None:
        self.prefix = os.urandom(6).hex() + "-"
        self.issued = 0  # ids made so far
        # The id's digits but the last three, formatted once per thousand ids: an int's
        # str() cost 230 instructions an id on 3.11, 450 on 3.12 (callgrind).
        self.thousands = 0
        self.head = self.prefix

    def new(self) -> str:
        """The next id of this worker's own: the prefix and the count, in decimal."""
        issued = self.issued = self.issued + 1
        if issued < 1000:
            return self.prefix + _DIGITS[issued]
        thousands = issued // 1000
        if thousands != self.thousands:
            self.thousands = thousands
            self.head = self.prefix + str(thousands)
        return self.head + _PADDED[issued % 1000]

    def accept(self, incoming: bytes | None) -> str:
        """*incoming* if it is a usable id (1..MAX_LENGTH safe characters), else a new one."""
        if incoming is not None and 0 < len(incoming) <= MAX_LENGTH and not incoming.translate(
                None, SAFE):
            return incoming.decode("ascii")
        return self.new()
