"""In-memory HTTP harness: drive HttpProtocol through a fake transport, no sockets."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterable
from typing import Any

import httptools

from octo.config import Config
from octo.http import core
from octo.http.protocol import HttpProtocol, ServerState
from octo.http.response import DateHeader

# The HTTP core the tests drive: the http_core fixture (tests/conftest.py) sets it for each
# test, so that the same tests run the pure-Python and the compiled core.
CORE: core.Core = core.load("python")


def server_state(config: Config, app: Any, loop: asyncio.AbstractEventLoop,
                 lifespan_state: dict[str, Any] | None = None) -> ServerState:
    """A ServerState of the core under test."""
    state: ServerState = CORE.protocol.ServerState(config, app, loop, lifespan_state)
    return state


def http_protocol(state: ServerState) -> HttpProtocol:
    """An HttpProtocol of the core under test."""
    protocol: HttpProtocol = CORE.protocol.HttpProtocol(state)
    return protocol


class FakeTransport:
    """Records writes; close() schedules connection_lost like a real transport."""

    def __init__(self, protocol: HttpProtocol, loop: asyncio.AbstractEventLoop,
                 peer: tuple[str, int] = ("127.0.0.1", 50000)) -> None:
        self.protocol = protocol
        self.loop = loop
        self.buffer = bytearray()
        self.closed = False
        self.reading = True
        self.extra: dict[str, Any] = {"peername": peer, "sockname": ("127.0.0.1", 8000)}
        self.write_buffer = 0
        self.aborted = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "write after close"
        self.buffer += data

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.loop.call_soon(self.protocol.connection_lost, None)

    def abort(self) -> None:
        self.aborted = True
        self.close()

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.extra.get(name, default)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return self.write_buffer


class Client:
    """One fake connection to a protocol built for *app* with *config*."""

    def __init__(self, app: Any, config: Config | None = None, *,
                 lifespan_state: dict[str, Any] | None = None,
                 peer: tuple[str, int] = ("127.0.0.1", 50000)) -> None:
        self.loop = asyncio.get_running_loop()
        DateHeader.refresh(0)
        self.state = server_state(config or Config(app="x:y"), app, self.loop, lifespan_state)
        self.protocol = http_protocol(self.state)
        self.transport = FakeTransport(self.protocol, self.loop, peer)
        self.protocol.connection_made(self.transport)  # type: ignore[arg-type]

    def send(self, data: bytes) -> None:
        self.protocol.data_received(data)

    async def settle(self, rounds: int = 20, wait: float = 2.0) -> None:
        """Let tasks run; then wait up to *wait* seconds for the app tasks still running."""
        for _ in range(rounds):
            await asyncio.sleep(0)
        # Pipelined requests start one at a time, a loop round or two apart.
        for _ in range(1000):
            if self.state.tasks and wait > 0:
                done, _ = await asyncio.wait(list(self.state.tasks), timeout=wait)
                if not done:
                    break  # the apps wait for something (more body, a disconnect)
            elif not self.protocol.queue:
                break
            for _ in range(rounds):
                await asyncio.sleep(0)

    async def readable(self, rounds: int = 2000) -> bool:
        """Wait, as a transport would, until the protocol reads again; False if it closed
        (or stayed paused for *rounds* loop rounds in which it wrote nothing: a long
        pipeline is answered one request per round or two before reading resumes)."""
        idle, written = 0, len(self.transport.buffer)
        while idle < rounds:
            if self.closed:
                return False
            if self.transport.reading:
                return True
            await asyncio.sleep(0)
            idle += 1
            if len(self.transport.buffer) != written:
                idle, written = 0, len(self.transport.buffer)
        return False

    async def half_close(self, rounds: int = 2000) -> None:
        """The client's FIN, as an event loop delivers it: only while reading is not
        paused, and a falsy eof_received() closes the transport."""
        if await self.readable(rounds) and not self.protocol.eof_received():
            self.transport.close()

    def leave(self) -> None:
        """The client goes away (a close or a reset): the transport closes and the protocol
        hears of it at once, as from a failed read."""
        self.transport.closed = True
        self.protocol.connection_lost(ConnectionResetError())

    def take(self) -> bytes:
        out = bytes(self.transport.buffer)
        self.transport.buffer.clear()
        return out

    @property
    def closed(self) -> bool:
        return self.transport.closed


async def exchange(app: Any, chunks: Iterable[bytes], config: Config | None = None,
                   eof: bool = False, **kwargs: Any) -> tuple[bytes, bool]:
    """Feed *chunks* one by one (yielding between them), then the client's half-close if
    *eof*; return (output, closed)."""
    client = Client(app, config, **kwargs)
    for chunk in chunks:
        # A paused transport delivers nothing: the bytes wait in the socket.
        if not await client.readable():
            break
        client.send(chunk)
        await asyncio.sleep(0)
    # Before a FIN the app may be waiting for the body the FIN cuts: no need to wait long.
    await client.settle(wait=0.1 if eof else 2.0)
    if eof:
        await client.half_close()
        await client.settle()
    return client.take(), client.closed


@dataclasses.dataclass
class Response:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None


def parse_responses(data: bytes, head_requests: int = 0) -> list[Response]:
    """Split *data* into responses with httptools' response parser."""
    out: list[Response] = []

    class Sink:
        def __init__(self) -> None:
            self.headers: list[tuple[bytes, bytes]] = []
            self.body = b""

        def on_message_begin(self) -> None:
            self.headers, self.body = [], b""

        def on_header(self, name: bytes, value: bytes) -> None:
            self.headers.append((name, value))

        def on_body(self, body: bytes) -> None:
            self.body += body

        def on_message_complete(self) -> None:
            out.append(Response(parser.get_status_code(), self.headers, self.body))

    parser = httptools.HttpResponseParser(Sink())
    parser.feed_data(data)
    return out


# -- small ASGI apps used across tests -----------------------------------------------------

async def hello(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"hello"})


async def echo(scope: Any, receive: Any, send: Any) -> None:
    """Echo the request body; report method, path and query in headers."""
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"x-method", scope["method"].encode()),
                            (b"x-path", scope["path"].encode("utf-8", "surrogateescape")),
                            (b"x-query", scope["query_string"])]})
    await send({"type": "http.response.body", "body": body})
