"""The ceiling of the uvloop + httptools stack: a bare asyncio.Protocol HTTP/1.1 responder.

No ASGI, no routing, no per-request objects: every request is answered with the same
hello-world bytes, keep-alive unless the client asks to close. A Python ASGI server built on
the same stack cannot beat this, so it bounds what octo can reach on this machine.

Usage: python raw_ceiling.py --port 8000 [--host 127.0.0.1]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Callable
from typing import cast

import httptools
import uvloop

BODY = b"Hello, world!"
RESPONSE = (
    b"HTTP/1.1 200 OK\r\n"
    b"content-type: text/plain\r\n"
    b"content-length: " + str(len(BODY)).encode() + b"\r\n"
    b"\r\n" + BODY
)
BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


class RawHttp(asyncio.Protocol):
    """One connection: parse with httptools, answer each complete message at once."""

    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.write(BAD_REQUEST)
                self.transport.close()

    def on_message_complete(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        transport.write(RESPONSE)
        if not self.parser.should_keep_alive():
            transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


async def serve(factory: Callable[[], asyncio.Protocol], host: str, port: int) -> None:
    """Serve connections with *factory*'s protocol until SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = await loop.create_server(factory, host, port, backlog=2048)
    async with server:
        await stop.wait()


def arg_parser(doc: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    return parser


def main() -> None:
    args = arg_parser(__doc__).parse_args()
    uvloop.run(serve(RawHttp, args.host, args.port))


if __name__ == "__main__":
    main()
