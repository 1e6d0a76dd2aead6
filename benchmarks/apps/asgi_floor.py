"""The floor of any ASGI server on uvloop + httptools: the least work ASGI itself demands.

``raw_ceiling.py`` answers with fixed bytes and never looks at the request, so no ASGI
server can reach it. This responder does only what the ASGI contract cannot do without:
collect the target and headers, build the scope dict, call the app and turn its two
``send`` messages into one write (with a cached Date header). It skips everything that
makes a server safe or correct beyond that: no framing checks, no limits, no deadlines,
no pipelining order, no flow control, and it drives the app's coroutine by hand instead of
giving it a Task (illegal for apps that need ``asyncio.current_task()``; it only answers
apps that never suspend). Whatever it reaches bounds every ASGI server on this stack.

Usage: python asgi_floor.py --port 8000 [--host 127.0.0.1] [--app hello:app]
"""

from __future__ import annotations

import asyncio
import importlib
import sys
import time
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any, cast

import httptools
import uvloop
from raw_ceiling import BAD_REQUEST, arg_parser, serve

Message = MutableMapping[str, Any]
ASGI = {"version": "3.0", "spec_version": "2.4"}
REASONS = {200: b"OK", 404: b"Not Found", 500: b"Internal Server Error"}
SERVER_ERROR = (b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n"
                b"connection: close\r\n\r\n")


class Clock:
    """The Date header line, rebuilt at most once a second."""

    second = 0
    line = b""

    @classmethod
    def date_line(cls) -> bytes:
        now = int(time.time())
        if now != cls.second:
            cls.second = now
            stamp = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now))
            cls.line = b"date: " + stamp.encode() + b"\r\n"
        return cls.line


class FloorHttp(asyncio.Protocol):
    """One connection; the app is called when the message is complete (no request body)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.status = 200
        self.response_headers: Any = ()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.client = transport.get_extra_info("peername")
        self.sockname = transport.get_extra_info("sockname")

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.write(BAD_REQUEST)
            self.transport.close()

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_message_complete(self) -> None:
        raw_path, _, query = self.url.partition(b"?")
        scope = {
            "type": "http", "asgi": ASGI, "http_version": self.parser.get_http_version(),
            "server": self.sockname, "client": self.client, "scheme": "http",
            "method": self.parser.get_method().decode("ascii"), "root_path": "",
            "path": raw_path.decode("latin-1"), "raw_path": raw_path,
            "query_string": query, "headers": self.headers,
        }
        coro = self.app(scope, self.receive, self.send)
        try:
            coro.send(None)
        except StopIteration:
            return
        # Unmeasurable here rather than measured wrong: say so and fail the request.
        coro.close()
        print("asgi_floor: the app suspended; only apps that never wait can be served",
              file=sys.stderr)
        self.transport.write(SERVER_ERROR)
        self.transport.close()

    async def receive(self) -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.response_headers = message.get("headers", ())
            return
        parts = [b"HTTP/1.1 %d %s\r\n" % (self.status, REASONS.get(self.status, b"")),
                 Clock.date_line()]
        for name, value in self.response_headers:
            parts += (name, b": ", value, b"\r\n")
        parts += (b"\r\n", message.get("body", b""))
        self.transport.write(b"".join(parts))
        if not self.parser.should_keep_alive():
            self.transport.close()


def main() -> None:
    parser = arg_parser(__doc__)
    parser.add_argument("--app", default="hello:app", help="module:attr in benchmarks/apps")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))
    module, _, attr = args.app.partition(":")
    app = getattr(importlib.import_module(module), attr)
    uvloop.run(serve(lambda: FloorHttp(app), args.host, args.port))


if __name__ == "__main__":
    main()
