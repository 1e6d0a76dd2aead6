"""In-memory WebSocket tests: octo's WebSocket layer on each framing engine, driven through
HttpProtocol and a fake transport by websockets' sans-I/O client (no sockets).

Every test runs on both backends (``wsproto`` and ``websockets``) and both event loops.
"""

from __future__ import annotations

import asyncio
import tracemalloc
from typing import Any

import pytest
from harness import FakeTransport, http_protocol, server_state

from octo.config import Config
from octo.http.response import DateHeader
from octo.ws import engine as ws_engine
from octo.ws.protocol import MAX_QUEUED, WebSocketProtocol, upgrader

pytest.importorskip("wsproto")
pytest.importorskip("websockets")
from websockets.client import ClientProtocol  # noqa: E402
from websockets.extensions.permessage_deflate import (  # noqa: E402
    ClientPerMessageDeflateFactory,
)
from websockets.frames import Close, Frame, Opcode  # noqa: E402
from websockets.http11 import Response  # noqa: E402
from websockets.typing import Subprotocol  # noqa: E402
from websockets.uri import parse_uri  # noqa: E402

# Every test here runs on both HTTP cores, pure-Python and compiled.
pytestmark = pytest.mark.usefixtures("http_core")

DEADLINE = 20.0  # only ends a hung test


@pytest.fixture(params=["wsproto", "websockets"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class WsTransport(FakeTransport):
    """FakeTransport that can be handed to another protocol, as an upgrade does."""

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol

    def abort(self) -> None:
        self.close()


class Peer:
    """A client (websockets' ClientProtocol) talking to one octo connection in memory."""

    live: list[Peer] = []

    def __init__(self, app: Any, backend: str, *, deflate: bool = False,
                 subprotocols: list[str] | None = None, **config: Any) -> None:
        loop = asyncio.get_running_loop()
        DateHeader.refresh(0)
        cfg = Config(app="x:y", ws=backend, ws_per_message_deflate=deflate, **config)
        self.state = server_state(cfg, app, loop)
        self.state.upgrade_handler = upgrader(backend)
        http = http_protocol(self.state)
        self.transport = WsTransport(http, loop)
        http.connection_made(self.transport)  # type: ignore[arg-type]
        self.client = ClientProtocol(
            parse_uri("ws://a/ws"),
            extensions=[ClientPerMessageDeflateFactory()] if deflate else None,
            subprotocols=[Subprotocol(p) for p in subprotocols or []] or None,
            max_size=None)
        self.request = self.client.connect()
        Peer.live.append(self)

    @classmethod
    async def cleanup(cls) -> None:
        """Close every connection and end its app, so no task outlives the test's loop."""
        peers, cls.live = cls.live, []
        for peer in peers:
            peer.transport.close()
        await asyncio.sleep(0)
        tasks = [task for peer in peers for task in peer.state.tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def open(self) -> None:
        self.client.send_request(self.request)
        self.pump()

    def pump(self, one_read: bool = False) -> None:
        """Client output to the server (each frame a read of its own, or all in *one_read*)."""
        chunks = [data for data in self.client.data_to_send() if data]
        for data in [b"".join(chunks)] if one_read else chunks:
            if data and not self.transport.closed:
                self.transport.protocol.data_received(data)

    def raw(self, frame: Frame) -> None:
        """Send *frame* as it is, bypassing the client's own checks."""
        self.transport.protocol.data_received(frame.serialize(mask=True))

    def answer_pings_at_once(self) -> list[Any]:
        """From now on the client reads every server write as it is made, and its automatic
        pong goes back on the very next loop iteration, ahead of any timer: however long the
        process stalls, a short ping timeout cannot fire before the pong is in. Returns the
        list the client's events are collected in."""
        seen: list[Any] = []
        loop = asyncio.get_running_loop()
        write = self.transport.write

        def deliver() -> None:
            out = bytes(self.transport.buffer)
            self.transport.buffer.clear()
            if out:
                self.client.receive_data(out)
                seen.extend(self.client.events_received())
            self.pump()

        def writing(data: bytes) -> None:
            write(data)
            loop.call_soon(deliver)

        self.transport.write = writing  # type: ignore[method-assign]
        return seen

    async def events(self) -> list[Any]:
        """Let the server run, then what the client read from it."""
        for _ in range(30):
            await asyncio.sleep(0)
        out = bytes(self.transport.buffer)
        self.transport.buffer.clear()
        if out:
            self.client.receive_data(out)
        return self.client.events_received()

    @property
    def ws(self) -> WebSocketProtocol:
        assert isinstance(self.transport.protocol, WebSocketProtocol)
        return self.transport.protocol


def go(run: Any, main: Any) -> None:
    """run(main()) on the test's loop, then clean up its connections."""

    async def wrapped() -> None:
        try:
            await main()
        finally:
            await Peer.cleanup()

    run(wrapped())


def closes(events: list[Any]) -> list[tuple[int, str]]:
    return [(c.code, c.reason) for c in (Close.parse(e.data) for e in events
                                         if isinstance(e, Frame) and e.opcode is Opcode.CLOSE)]


def messages(events: list[Any]) -> list[Any]:
    return [e.data for e in events if isinstance(e, Frame) and e.opcode in (
        Opcode.TEXT, Opcode.BINARY)]


def echo_app(log: list[Any]) -> Any:
    """Accepts (with the first offered subprotocol), echoes, logs the disconnect."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        offered = scope["subprotocols"]
        await send({"type": "websocket.accept", "subprotocol": offered[0] if offered else None,
                    "headers": [(b"x-hello", b"world")]})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                log.append(message)
                return
            log.append(message)
            await send({"type": "websocket.send", **{k: v for k, v in message.items()
                                                     if k in ("text", "bytes")}})

    return app


async def accepted(peer: Peer) -> Response:
    peer.open()
    [response, *rest] = await peer.events()
    assert isinstance(response, Response) and response.status_code == 101, response
    assert rest == []
    return response


def test_echo_text_binary_fragmented_and_subprotocol(run, backend: str) -> None:
    log: list[Any] = []

    async def main() -> None:
        peer = Peer(echo_app(log), backend, subprotocols=["chat", "other"])
        response = await accepted(peer)
        assert response.headers["sec-websocket-protocol"] == "chat"
        assert response.headers["x-hello"] == "world"
        assert response.headers.get_all("server") == ["octo"]  # --server-header, as on HTTP
        peer.client.send_text("héllo".encode())
        peer.client.send_binary(b"\x00\xff")
        peer.client.send_text(b"frag", fin=False)
        peer.client.send_continuation("mé".encode()[:2], fin=False)  # UTF-8 split in two
        peer.client.send_continuation("mé".encode()[2:], fin=True)
        peer.pump()
        assert messages(await peer.events()) == ["héllo".encode(), b"\x00\xff",
                                                 "fragmé".encode()]
        assert [m.get("text", m.get("bytes")) for m in log] == ["héllo", b"\x00\xff", "fragmé"]
        peer.client.send_close(4321, "done")
        peer.pump()
        assert closes(await peer.events()) == [(4321, "done")]
        assert peer.transport.closed
        await peer.events()
        assert log[-1] == {"type": "websocket.disconnect", "code": 4321, "reason": "done"}

    go(run, main)


def test_permessage_deflate_negotiated_and_used(run, backend: str) -> None:
    log: list[Any] = []

    async def main() -> None:
        peer = Peer(echo_app(log), backend, deflate=True, server_header=False)
        response = await accepted(peer)
        assert response.headers["sec-websocket-extensions"].startswith("permessage-deflate")
        assert "server" not in response.headers  # --no-server-header
        for _ in range(3):  # context takeover: later messages reuse the window
            peer.client.send_text(b"compressible " * 1000)
        peer.pump()
        assert messages(await peer.events()) == [b"compressible " * 1000] * 3

    go(run, main)


@pytest.mark.parametrize("one_read", [False, True])
def test_message_over_max_size_fails_1009(run, backend: str, one_read: bool) -> None:
    """Also when the frames after the message come in the same read: a failed connection
    delivers nothing more."""
    log: list[Any] = []

    async def main() -> None:
        peer = Peer(echo_app(log), backend, ws_max_size=1000)
        await accepted(peer)
        peer.client.send_binary(b"x" * 600, fin=False)
        peer.client.send_continuation(b"x" * 600, fin=True)  # 1200 in all
        peer.client.send_text(b"small")
        peer.pump(one_read)
        events = await peer.events()
        assert messages(events) == [] and closes(events)[0][0] == 1009
        assert peer.transport.closed
        await peer.events()
        assert [m["type"] for m in log] == ["websocket.disconnect"]

    go(run, main)


def test_deflate_bomb_fails_1009_without_inflating_it_all(run, backend: str) -> None:
    """64 MB of zeros compress to ~64 KB: the limit must stop inflation as it goes, not
    inflate the whole message and then find it too big."""

    async def main() -> None:
        peer = Peer(echo_app([]), backend, deflate=True, ws_max_size=100_000)
        await accepted(peer)
        peer.client.send_binary(b"\x00" * 64_000_000)
        bomb = b"".join(peer.client.data_to_send())
        assert len(bomb) < 100_000
        tracemalloc.start()
        try:
            peer.transport.protocol.data_received(bomb)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 16_000_000, f"{peak:,} bytes allocated while inflating"
        events = await peer.events()
        assert closes(events)[0][0] == 1009 and peer.transport.closed
        assert peer.ws.parts == []

    go(run, main)


def test_invalid_utf8_fails_1007_before_the_message_ends(run, backend: str) -> None:
    async def main() -> None:
        peer = Peer(echo_app([]), backend)
        await accepted(peer)
        peer.raw(Frame(Opcode.TEXT, b"ok \xff\xfe", fin=False))  # no final frame yet
        events = await peer.events()
        assert closes(events)[0][0] == 1007 and peer.transport.closed

    go(run, main)


def test_close_between_fragments_is_echoed_normally(run, backend: str) -> None:
    """RFC 6455 5.4: control frames may come between fragments; a Close ends the
    connection cleanly (Autobahn|Testsuite 7.1.5)."""
    log: list[Any] = []

    async def main() -> None:
        peer = Peer(echo_app(log), backend)
        await accepted(peer)
        peer.raw(Frame(Opcode.TEXT, b"fragment 1", fin=False))
        peer.raw(Frame(Opcode.CLOSE, Close(1000, "").serialize()))
        peer.raw(Frame(Opcode.CONT, b"fragment 2", fin=True))
        events = await peer.events()
        assert messages(events) == [] and closes(events) == [(1000, "")]
        assert peer.transport.closed
        await peer.events()
        assert log == [{"type": "websocket.disconnect", "code": 1000, "reason": ""}]

    go(run, main)


def test_protocol_error_fails_1002(run, backend: str) -> None:
    async def main() -> None:
        peer = Peer(echo_app([]), backend)
        await accepted(peer)
        peer.raw(Frame(Opcode.CONT, b"no message to continue"))
        events = await peer.events()
        assert closes(events)[0][0] == 1002 and peer.transport.closed

    go(run, main)


def test_ping_is_answered_and_keepalive_fails_1011_without_pong(run, backend: str) -> None:
    async def main() -> None:
        peer = Peer(echo_app([]), backend, ws_ping_interval=0.05, ws_ping_timeout=0.2)
        await accepted(peer)
        peer.client.send_ping(b"are you there")
        peer.pump()
        pongs = [e for e in await peer.events() if e.opcode is Opcode.PONG]
        assert [p.data for p in pongs] == [b"are you there"]
        events: list[Any] = []
        deadline = asyncio.get_running_loop().time() + DEADLINE
        while not any(e.opcode is Opcode.PING for e in events) and not closes(events):
            assert asyncio.get_running_loop().time() < deadline, "no keepalive ping"
            await asyncio.sleep(0.01)
            events += await peer.events()
        assert [e.data for e in events if e.opcode is Opcode.PING] == [b"octo"]
        peer.client.data_to_send()  # drop the client's automatic pong: never answered
        while not peer.transport.closed:
            assert asyncio.get_running_loop().time() < deadline, "not closed without a pong"
            await asyncio.sleep(0.01)
            events += await peer.events()
        events += await peer.events()
        assert closes(events) == [(1011, "keepalive ping timeout")] and peer.transport.closed

    go(run, main)


def test_answered_pings_keep_the_connection(run, backend: str) -> None:
    async def main() -> None:
        peer = Peer(echo_app([]), backend, ws_ping_interval=0.03, ws_ping_timeout=0.2)
        await accepted(peer)
        seen = peer.answer_pings_at_once()
        loop = asyncio.get_running_loop()
        start = loop.time()
        # Several pings, over three ping timeouts: an unanswered one would have closed it.
        while sum(e.opcode is Opcode.PING for e in seen) < 3 or loop.time() - start < 0.6:
            assert not peer.transport.closed, closes(seen)
            assert loop.time() - start < DEADLINE, "no keepalive pings"
            await asyncio.sleep(0.01)
        assert not peer.transport.closed and peer.ws.engine is not None
        assert peer.ws.engine.is_open

    go(run, main)


def test_shutdown_closes_1001_and_app_close_reason_is_truncated(run, backend: str) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await receive()
        await send({"type": "websocket.close", "code": 4000, "reason": "é" * 100})

    async def main() -> None:
        peer = Peer(echo_app([]), backend)
        await accepted(peer)
        peer.ws.shutdown()
        assert closes(await peer.events()) == [(1001, "server shutting down")]
        peer.pump()  # the client's answering Close ends the connection
        await peer.events()
        assert peer.transport.closed

        peer = Peer(app, backend)
        await accepted(peer)
        peer.client.send_text(b"go")
        peer.pump()
        [(code, reason)] = closes(await peer.events())
        assert code == 4000 and reason == "é" * 61  # 122 bytes: whole characters only

    go(run, main)


def test_invalid_handshake_is_refused_by_the_engine(run, backend: str) -> None:
    log: list[Any] = []

    async def main() -> None:
        peer = Peer(echo_app(log), backend)
        del peer.request.headers["Sec-WebSocket-Version"]
        peer.request.headers["Sec-WebSocket-Version"] = "12"
        peer.open()
        [response] = await peer.events()
        # RFC 6455 4.4 asks for 426 and the versions served; websockets answers 400.
        assert response.status_code == (426 if backend == "wsproto" else 400)
        assert peer.transport.closed
        await peer.events()
        # The app's accept found no connection to open: its next receive says so.
        assert log == [{"type": "websocket.disconnect", "code": 1006, "reason": ""}]

    go(run, main)


def test_subprotocol_not_offered_is_an_app_error(run, backend: str) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept", "subprotocol": "not-offered"})

    async def main() -> None:
        peer = Peer(app, backend)
        peer.open()
        [response] = await peer.events()
        assert response.status_code == 500

    go(run, main)


def test_unread_messages_pause_reading(run, backend: str) -> None:
    release = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await release.wait()
        while (await receive())["type"] != "websocket.disconnect":
            pass

    async def main() -> None:
        peer = Peer(app, backend)
        await accepted(peer)
        for _ in range(MAX_QUEUED):
            peer.client.send_text(b"unread")
        peer.pump()
        await peer.events()
        assert peer.transport.reading is False
        release.set()
        await peer.events()
        assert peer.transport.reading is True

    go(run, main)


def test_close_reason_fits_a_close_frame() -> None:
    assert ws_engine.truncate_reason("short") == "short"
    cut = ws_engine.truncate_reason("€" * 100)  # 3 bytes each
    assert cut == "€" * 41 and len(cut.encode()) <= ws_engine.CLOSE_REASON_MAX


def test_backend_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    import octo.ws as ws
    from octo.config import ConfigError

    present = {"wsproto", "websockets"}
    monkeypatch.setattr(ws, "installed", lambda name: name in present)
    assert ws.resolve("auto") == ws.AUTO_ORDER[0]
    assert ws.resolve("wsproto") == "wsproto" and ws.resolve("websockets") == "websockets"
    assert ws.resolve("none") is None
    present = {ws.AUTO_ORDER[1]}
    assert ws.resolve("auto") == ws.AUTO_ORDER[1]  # falls back to the one installed
    wanted = rf"pip install 'octo-server\[{ws.AUTO_ORDER[0]}\]'"
    with pytest.raises(ws.BackendMissing, match=wanted):
        ws.resolve(ws.AUTO_ORDER[0])
    present = set()
    assert ws.resolve("auto") is None
    with pytest.raises(ConfigError, match="auto, none, wsproto or websockets"):
        Config(app="x:y", ws="h2")


def test_a_send_after_the_client_left_is_octo_client_disconnected(run, backend: str) -> None:
    """One ``except octo.ClientDisconnected`` serves HTTP and WebSocket apps alike."""
    import octo

    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        assert (await receive())["type"] == "websocket.disconnect"
        try:
            await send({"type": "websocket.send", "text": "too late"})
        except octo.ClientDisconnected as exc:
            seen.append(type(exc).__name__)

    async def main() -> None:
        peer = Peer(app, backend)
        await accepted(peer)
        peer.transport.close()  # the client goes away
        await peer.events()
        assert seen == ["ClientDisconnectedWS"]

    go(run, main)


def test_a_denial_header_that_would_split_the_response_is_never_written(run,
                                                                       backend: str) -> None:
    """websocket.http.response headers are checked like every HTTP response's: a value with
    CR/LF is the app's error (500), not a second header line."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.http.response.start", "status": 403,
                    "headers": [(b"x-reason", b"no\r\nx-injected: yes")]})
        await send({"type": "websocket.http.response.body", "body": b"denied"})

    async def main() -> None:
        peer = Peer(app, backend)
        written = bytearray()
        write = peer.transport.write

        def recording(data: bytes) -> None:
            written.extend(data)
            write(data)

        peer.transport.write = recording  # type: ignore[method-assign]
        peer.open()
        [response, *_] = await peer.events()
        assert b"x-injected" not in written
        assert response.status_code == 500, bytes(written)

    go(run, main)
