"""The octo runtime in real forked workers: sandboxed scopes under concurrency, warm-up
before serving, and the leak detector naming a leaky global."""

from __future__ import annotations

import asyncio

import httpx
from bounded import bounded_gather
from server import ROOT, run_server

APP_DIR = ("--app-dir", str(ROOT / "tests"))


REQUESTS_PER_USER = 200  # interleaved in each worker: a shared scope shows up at once
CONNECTIONS_PER_USER = 8


def test_interleaved_requests_never_cross_users() -> None:
    # A long keep-alive: on a starved machine the client may reuse a pooled connection
    # more than the default 5 s after its last answer, when the server has closed it.
    with run_server("apps.runtime_app:asgi", *APP_DIR, "--workers", "2",
                    "--no-access-log", "--timeout-keep-alive", "60") as srv:

        async def user(name: str) -> list[dict]:
            limits = httpx.Limits(max_connections=CONNECTIONS_PER_USER)
            async with httpx.AsyncClient(base_url=srv.url, timeout=30, limits=limits) as client:
                async def whoami() -> httpx.Response:
                    return await client.get("/whoami", headers={"X-User": name})

                # No more in flight than connections: no request waits for the pool.
                replies = await bounded_gather([whoami] * REQUESTS_PER_USER,
                                               limit=CONNECTIONS_PER_USER)
            return [r.json() if r.status_code == 200 else {"status": r.status_code}
                    for r in replies]

        async def both() -> tuple[list[dict], list[dict]]:
            return await asyncio.gather(user("alice"), user("bob"))

        alice, bob = asyncio.run(both())
    for name, replies in (("alice", alice), ("bob", bob)):
        assert len(replies) == REQUESTS_PER_USER
        wrong = [r for r in replies
                 if r.get("user") != name or r.get("greeting") != f"hello {name}"]
        assert wrong == [], f"{len(wrong)} of {name}'s answers carried another user's data"
        assert all(r["same"] for r in replies)
    assert len({r["pid"] for r in alice + bob}) == 2  # both workers served


def test_warm_up_happens_before_the_first_request_and_leaks_are_named() -> None:
    with run_server("apps.runtime_app:asgi", *APP_DIR, "--detect-leaks") as srv:
        first = httpx.get(srv.url + "/events", timeout=5).json()
        # Booted and warmed before the first request (the readiness probe) was handled.
        assert first[:2] == ["WorkerStarting", "warm Settings"]
        assert first[2].startswith("terminated")
        for _ in range(3):
            httpx.get(srv.url + "/leak", timeout=5)
        log = srv.wait_for_log("possible state leak")
    assert "global apps.runtime_app.VISITS grew" in log


def test_same_module_runs_under_uvicorn_with_container_and_sandbox() -> None:
    import shutil
    import socket
    import subprocess
    import sys
    import time
    from pathlib import Path

    import pytest

    uvicorn = Path(sys.executable).parent / "uvicorn"
    if not uvicorn.exists() and shutil.which("uvicorn") is None:
        pytest.skip("uvicorn not installed")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "apps.runtime_app:asgi",
                             "--app-dir", str(ROOT / "tests"), "--port", str(port),
                             "--log-level", "warning"], cwd=ROOT,
                            stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 15
        while True:
            try:
                events = httpx.get(base + "/events", timeout=2).json()
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "uvicorn did not start"
                time.sleep(0.05)
        assert events[:2] == ["WorkerStarting", "warm Settings"]  # booted at lifespan startup
        reply = httpx.get(base + "/whoami", headers={"X-User": "carol"}, timeout=5).json()
        assert reply["user"] == "carol" and reply["same"] is True
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=15)
    assert "Traceback" not in err
