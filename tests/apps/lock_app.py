"""Requests that hold a table's lock across an await.

``/hold?NAME`` (``async with counts.locked():``) and ``/hold-sync?NAME`` (``with``) each
write ``waiting-NAME-<pid>`` in the directory named by ``OCTO_TEST_MARKERS``, take the lock,
write ``holding-NAME-<pid>``, then await (the lock held) until a file ``release-NAME``
appears there (60 s at most), and add one to the counter read before the await: the
counter counts every section, exactly, only if the sections excluded each other. ``/count``
reads the counter without the lock held across anything; every other path answers with the
worker's pid.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import octo

WAIT_AT_MOST = 60.0

rt = octo.Octo()
counts = rt.table("counts", rows=16, columns={"n": octo.Int})


def mark(kind: str, name: str) -> None:
    (Path(os.environ["OCTO_TEST_MARKERS"]) / f"{kind}-{name}-{os.getpid()}").write_text("")


async def released(name: str) -> None:
    release = Path(os.environ["OCTO_TEST_MARKERS"]) / f"release-{name}"
    for _ in range(int(WAIT_AT_MOST / 0.01)):
        if release.exists():
            return
        await asyncio.sleep(0.01)


async def section(name: str) -> int:
    """The locked section: read, await (lock held), write back one more."""
    mark("holding", name)
    value = (counts.row_unlocked("n") or {"n": 0})["n"]
    await released(name)
    counts.set_unlocked("n", {"n": value + 1})
    return int(value + 1)


async def hold(name: str, sync: bool) -> int:
    mark("waiting", name)
    if sync:
        with counts.locked():
            return await section(name)
    async with counts.locked():
        return await section(name)


async def app(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] != "http":
        return
    path, name = scope["path"], scope["query_string"].decode()
    if path in ("/hold", "/hold-sync"):
        body = str(await hold(name, sync=path == "/hold-sync"))
    elif path == "/count":
        body = str(counts.get("n", "n") or 0)
    else:
        body = str(os.getpid())
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body.encode()})


asgi = rt.wrap(app)
