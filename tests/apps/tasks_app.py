"""Task workers: CPU-bound work, exceptions, fire-and-forget, a worker killed mid-task."""

from __future__ import annotations

import functools
import os
import time

import octo

rt = octo.Octo()
done = rt.table("task_done", rows=16, columns={"n": octo.Int})


def fib(n: int) -> int:
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def whoami(n: int) -> tuple[int, int]:
    return os.getpid(), fib(n)


def fail() -> None:
    raise ValueError("task failed on purpose")


def die() -> None:
    os.kill(os.getpid(), 9)


def nap() -> None:
    time.sleep(1.0)


def record() -> None:
    time.sleep(0.05)
    done.incr("dispatched", "n")


async def app(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] != "http":
        return
    path = scope["path"]
    status, body = 200, b""
    if path == "/fib":
        results = await octo.concurrently(*(functools.partial(whoami, 22) for _ in range(4)),
                                          in_workers=True)
        body = f"{os.getpid()} ".encode() + " ".join(
            f"{pid}:{value}" for pid, value in results).encode()
    elif path == "/fail":
        try:
            await rt.tasks.run(fail)
        except ValueError as exc:
            body = f"caught {exc}".encode()
    elif path == "/die":
        try:
            await rt.tasks.run(die, timeout=10)
        except octo.TaskWorkerLost as exc:
            body = f"lost: {exc}".encode()
    elif path == "/timeout":
        try:
            await rt.tasks.run(nap, timeout=0.2)
        except TimeoutError:
            body = b"timed out"
    elif path == "/dispatch":
        await rt.tasks.dispatch(record)
        body = b"dispatched"
    elif path == "/count":
        body = str(done.get("dispatched", "n") or 0).encode()
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": body})


asgi = rt.wrap(app)
