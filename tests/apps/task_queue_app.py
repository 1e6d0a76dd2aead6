"""Task workers under pressure: tasks that hold a worker until the test releases them, the
dispatch queue (3 tasks), timeouts, and the app's lifespan in task workers.

Tasks leave marker files in ``$TASK_TEST_DIR`` (``<tag>.started`` holding the task worker's
pid, ``<tag>.finished``, ...) so the test can wait for what happened instead of timing it;
a held task runs until the test creates ``<tag>.release``.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from urllib.parse import parse_qs

import octo

HOLD_LIMIT = 120.0  # a held task never outlives a test run that forgot to release it
rt = octo.Octo(task_queue_size=3)
STARTED_BY: int | None = None  # set by lifespan startup, in every process that runs it


def _dir() -> Path:
    return Path(os.environ["TASK_TEST_DIR"])


def _mark(name: str, text: str = "") -> None:
    path = _dir() / name
    tmp = path.parent / f".{path.name}.tmp"  # hidden from the names the test lists
    tmp.write_text(text or str(os.getpid()))
    tmp.rename(path)  # whole files only: the test never reads a half-written marker


def _released(tag: str) -> bool:
    return (_dir() / f"{tag}.release").exists()


def hold(tag: str) -> int:
    """A plain function that blocks its task worker until released."""
    _mark(f"{tag}.started")
    give_up = time.monotonic() + HOLD_LIMIT
    while not _released(tag) and time.monotonic() < give_up:
        time.sleep(0.01)
    _mark(f"{tag}.finished")
    return os.getpid()


def spin(tag: str) -> int:
    """A CPU-bound plain function: never sleeps until released."""
    _mark(f"{tag}.started")
    give_up = time.monotonic() + HOLD_LIMIT
    n = 0
    while time.monotonic() < give_up:
        n += 1
        if n % 20000 == 0 and _released(tag):
            break
    _mark(f"{tag}.finished")
    return os.getpid()


async def hold_async(tag: str, obey: bool) -> int:
    """A coroutine that waits to be released; *obey*: stop when cancelled, else ignore
    the cancellation and wait on."""
    _mark(f"{tag}.started")
    give_up = time.monotonic() + HOLD_LIMIT
    while not _released(tag) and time.monotonic() < give_up:
        try:
            await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            if obey:
                _mark(f"{tag}.cancelled")
                raise
            _mark(f"{tag}.ignored")
    _mark(f"{tag}.finished")
    return os.getpid()


def record(tag: str) -> int:
    _mark(f"{tag}.ran")
    return os.getpid()


class OddError(Exception):
    """An exception whose __init__ takes other arguments than its args: it pickles, but
    does not unpickle."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(f"{code}: {detail}")


def odd_error() -> None:
    raise OddError(7, "odd")


def lifespan_seen() -> list[int | None]:
    """Which process ran lifespan startup, and which runs this task."""
    return [STARTED_BY, os.getpid()]


TASKS = {"hold": hold, "spin": spin, "hold_async": hold_async, "record": record,
         "lifespan_seen": lifespan_seen, "odd_error": odd_error}


async def _lifespan(receive, send) -> None:  # type: ignore[no-untyped-def]
    global STARTED_BY
    role = os.environ.get("OCTO_ROLE", "http")
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            if os.environ.get("FAIL_LIFESPAN_ROLE") == role:
                await send({"type": "lifespan.startup.failed",
                            "message": f"no database for the {role} worker"})
                return
            STARTED_BY = os.getpid()
            _mark(f"lifespan-startup-{role}-{os.getpid()}")
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            _mark(f"lifespan-shutdown-{role}-{os.getpid()}")
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
    fn = TASKS.get(query.get("fn", ""), record)
    args: list[object] = [query["tag"]] if "tag" in query else []
    if fn is hold_async:
        args.append(query.get("obey") == "1")
    status, body = 200, ""
    if scope["path"] == "/dispatch":
        try:
            await rt.tasks.dispatch(fn, *args)
            body = f"queued {rt.tasks.queued}"
        except octo.TaskQueueFull as exc:
            status, body = 503, f"full: {exc}"
    elif scope["path"] == "/run":
        timeout = float(query["timeout"]) if "timeout" in query else None
        try:
            body = f"ok {await rt.tasks.run(fn, *args, timeout=timeout)}"
        except octo.TaskTimeout as exc:
            body = f"TaskTimeout: {exc}"
        except TimeoutError as exc:  # what the task runner raised before TaskTimeout
            body = f"TimeoutError: {exc}"
        except octo.TaskFailed as exc:
            body = f"TaskFailed: {exc}"
    elif scope["path"] == "/queued":
        body = str(rt.tasks.queued)
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body.encode()})


asgi = rt.wrap(app)
