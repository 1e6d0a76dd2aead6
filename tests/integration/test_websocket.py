"""WebSockets over real sockets with the ``websockets`` client library, against octo on each
framing engine (``--ws wsproto`` and ``--ws websockets``)."""

from __future__ import annotations

import asyncio
import importlib.util
import signal
import socket

import httpx
import pytest
from server import ROOT, run_server

websockets = pytest.importorskip("websockets", reason="websockets not installed (octo-server[ws])")
from websockets.asyncio.client import connect  # noqa: E402
from websockets.exceptions import ConnectionClosed, InvalidStatus  # noqa: E402

APP = "apps.ws_apps:app"
APP_DIR = ("--app-dir", str(ROOT / "tests"))


BACKENDS = [pytest.param(name, marks=pytest.mark.skipif(
    importlib.util.find_spec(name) is None, reason=f"{name} not installed"))
    for name in ("wsproto", "websockets")]


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def srv(backend: str):
    with run_server(APP, *APP_DIR, "--ws", backend, "--ws-max-size", "100000") as server:
        yield server


def ws_url(srv, path: str) -> str:
    return srv.url.replace("http://", "ws://") + path


def test_echo_text_bytes_subprotocol_headers_and_deflate(srv) -> None:
    async def main() -> None:
        async with connect(ws_url(srv, "/echo"), subprotocols=["chat"]) as ws:
            assert ws.subprotocol == "chat"
            assert ws.response.headers["x-hello"] == "world"
            assert "permessage-deflate" in ws.response.headers.get(
                "sec-websocket-extensions", "")
            await ws.send("héllo")
            assert await ws.recv() == "héllo"
            await ws.send(b"\x00\x01binary")
            assert await ws.recv() == b"\x00\x01binary"
            big = "x" * 50_000
            await ws.send(big)
            assert await ws.recv() == big
            await ws.send(["frag", "mented"])  # a fragmented message
            assert await ws.recv() == "fragmented"
    asyncio.run(main())
    assert httpx.get(srv.url + "/", timeout=5).text == "plain http"


def test_client_close_code_reaches_the_app(srv) -> None:
    async def main() -> None:
        async with connect(ws_url(srv, "/echo")) as ws:
            await ws.close(code=4321, reason="done")
    asyncio.run(main())
    srv.wait_for_log("APP: disconnect 4321")


def test_server_close_with_code_and_reason(srv) -> None:
    async def main() -> None:
        async with connect(ws_url(srv, "/close-4000")) as ws:
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
            assert info.value.rcvd.code == 4000 and info.value.rcvd.reason == "bye"
    asyncio.run(main())


def test_denial_403_and_custom_denial_response(srv) -> None:
    async def main() -> None:
        with pytest.raises(InvalidStatus) as info:
            async with connect(ws_url(srv, "/deny")):
                pass
        assert info.value.response.status_code == 403
        with pytest.raises(InvalidStatus) as info:
            async with connect(ws_url(srv, "/custom-deny")):
                pass
        assert info.value.response.status_code == 401
        assert info.value.response.body == b"no entry"
    asyncio.run(main())


def test_message_over_max_size_closes_1009(srv) -> None:
    async def main() -> None:
        async with connect(ws_url(srv, "/echo"), max_size=None) as ws:
            await ws.send("y" * 200_000)
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
            assert info.value.rcvd is not None and info.value.rcvd.code == 1009
    asyncio.run(main())


def test_server_shutdown_closes_1001(backend: str) -> None:
    with run_server(APP, *APP_DIR, "--ws", backend) as server:
        async def main() -> int:
            async with connect(ws_url(server, "/echo")) as ws:
                await ws.send("ping")
                await ws.recv()
                server.process.send_signal(signal.SIGTERM)
                with pytest.raises(ConnectionClosed) as info:
                    await asyncio.wait_for(ws.recv(), 10)
                return info.value.rcvd.code if info.value.rcvd else -1
        assert asyncio.run(main()) == 1001
        assert server.process.wait(15) == 0


def test_slow_reader_pauses_the_sender(backend: str) -> None:
    """The client stops reading: the server's send() must wait (and resume), not buffer
    without end or stall for good."""
    count, payload = 100, "z" * 100_000
    with run_server(APP, *APP_DIR, "--ws", backend, "--ws-max-size", "2000000") as server:
        async def main() -> None:
            # A small receive buffer of our own (no autotuning up to tens of MB) and no
            # compression (the payload would shrink to nothing): the 10 MB echoed back cannot
            # all fit in the sockets, so the server's writes must pause.
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            sock.connect((server.host, server.port))
            async with connect(ws_url(server, "/echo"), sock=sock, max_queue=1,
                               write_limit=2**25, compression=None) as ws:
                for _ in range(count):  # 10 MB echoed back while we read nothing
                    await ws.send(payload)
                # Our queue is full and we stopped reading the socket: from here the server's
                # echoes pile up until its send() has to wait.
                deadline = asyncio.get_running_loop().time() + 30
                while ws.transport.is_reading():
                    assert asyncio.get_running_loop().time() < deadline, "client never paused"
                    await asyncio.sleep(0.01)
                # Everything still arrives intact once we read.
                for _ in range(count):
                    assert await asyncio.wait_for(ws.recv(), 30) == payload
        asyncio.run(main())
