"""Balanced accepting through real forked workers when one of them blocks its event loop.

A worker whose loop is blocked cannot accept, so its connection count in shared memory is
frozen. Its siblings must not hold back for it: every new connection is served at once by a
healthy worker, while the blocked one is still blocked.
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
from pathlib import Path

from server import ROOT, run_server

APP_DIR = ("--app-dir", str(ROOT / "tests"))
DEADLINE = 60.0  # only ends a hung test
# New connections sent while a sibling blocks, CONCURRENCY in flight at a time, and how long
# the sibling stays blocked at most while they are sent. Holding back for the blocked worker
# costs a timer wait on every accept (tens of ms, however fast the machine), so CONNECTIONS
# of them cannot all be answered within BLOCKED_FOR; served at once, they take well under a
# second here, and a few seconds on a slow and busy machine.
CONNECTIONS = 600
CONCURRENCY = 24
BLOCKED_FOR = 8.0


def wait_for(predicate, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + DEADLINE
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


async def ask_pid(host: str, port: int, kept: list[asyncio.StreamWriter]) -> int:
    """One request on a new connection, which stays open (in *kept*) after the answer, as
    a browser's or a pool's would: the worker's count of open connections grows."""
    reader, writer = await asyncio.open_connection(host, port)
    kept.append(writer)
    writer.write(b"GET /pid HTTP/1.1\r\nHost: t\r\n\r\n")
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    length = re.search(rb"(?i)content-length: *(\d+)", head)
    assert length is not None, head
    return int(await reader.readexactly(int(length.group(1))))


async def burst(host: str, port: int, count: int, concurrency: int,
                seconds: float) -> list[int]:
    """Ask *count* new connections for their worker's pid, *concurrency* at a time; return
    the pids answered within *seconds*."""
    answered: list[int] = []
    kept: list[asyncio.StreamWriter] = []
    todo = iter(range(count))

    async def client() -> None:
        for _ in todo:
            answered.append(await ask_pid(host, port, kept))  # noqa: PERF401 - counted as answered

    clients = [asyncio.ensure_future(client()) for _ in range(concurrency)]
    _, pending = await asyncio.wait(clients, timeout=seconds)
    for task in pending:
        task.cancel()
    await asyncio.gather(*clients, return_exceptions=True)
    for writer in kept:
        writer.close()
    for task in clients:
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
    return answered


def test_a_blocked_worker_does_not_slow_accepting_on_its_sibling(tmp_path: Path) -> None:
    env = {"OCTO_TEST_MARKERS": str(tmp_path)}
    with run_server("apps.blocking_app:app", *APP_DIR, "--workers", "2", "--no-access-log",
                    env=env) as srv:
        blocker = socket.create_connection((srv.host, srv.port), timeout=DEADLINE)
        try:
            blocker.sendall(b"GET /block HTTP/1.1\r\nHost: t\r\n\r\n")
            wait_for(lambda: any(tmp_path.glob("blocked-*")), "a worker to block its loop")
            blocked = int(next(tmp_path.glob("blocked-*")).name.split("-")[1])
            try:
                pids = asyncio.run(burst(srv.host, srv.port, CONNECTIONS, CONCURRENCY,
                                         BLOCKED_FOR))
            finally:
                (tmp_path / "release").write_text("")
            # The blocked worker was blocked throughout: it answers its request only now.
            assert int(blocker.recv(4096).partition(b"\r\n\r\n")[2]) == blocked
        finally:
            blocker.close()
    assert len(pids) == CONNECTIONS, (
        f"{len(pids)} of {CONNECTIONS} new connections answered while a sibling blocked "
        f"its loop for {BLOCKED_FOR}s")
    assert blocked not in pids and len(set(pids)) == 1, (blocked, set(pids))
