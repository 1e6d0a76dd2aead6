"""A real worker serving a plain app: it has not imported the WebSocket layer, the runtime or
psutil, and still upgrades WebSockets, importing that layer on the first upgrade."""

from __future__ import annotations

import textwrap
from pathlib import Path

import httpx
import pytest
from server import run_server

from octo.ws import resolve

websockets_client = pytest.importorskip("websockets.sync.client")

APP = '''
import json, sys


async def app(scope, receive, send):
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        message = await receive()
        await send({"type": "websocket.send", "text": message["text"]})
        await send({"type": "websocket.close"})
        return
    body = json.dumps(sorted(sys.modules)).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})
'''

NOT_FOR_A_PLAIN_APP = {"django", "websockets", "wsproto", "h11", "psutil", "anyio",
                       "octo.ws.protocol", "octo.runtime.app", "octo.runtime.cache",
                       "octo.runtime.tasks"}


def test_plain_worker_imports_websockets_only_on_first_upgrade(tmp_path: Path) -> None:
    (tmp_path / "modules_app.py").write_text(textwrap.dedent(APP))
    with run_server("modules_app:app", "--app-dir", str(tmp_path), "--workers", "1",
                    "--no-access-log") as srv:
        before = set(httpx.get(srv.url + "/", timeout=5).json())
        ws_url = srv.url.replace("http://", "ws://") + "/ws"
        with websockets_client.connect(ws_url, open_timeout=5) as ws:
            ws.send("echo")
            assert ws.recv(timeout=5) == "echo"
        after = set(httpx.get(srv.url + "/", timeout=5).json())
    assert not before & NOT_FOR_A_PLAIN_APP, sorted(before & NOT_FOR_A_PLAIN_APP)
    backend = resolve("auto")  # the engine --ws auto serves with; only it is loaded
    assert {backend, "octo.ws.protocol", f"octo.ws.{backend}_engine"} <= after
    assert not after & ({"websockets", "wsproto"} - {backend})
