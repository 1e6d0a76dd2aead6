"""CPU-bound work for the task-worker speedup benchmark: GET /cpu?jobs=N runs N fib(26)."""

from __future__ import annotations

import functools
import time

import octo

rt = octo.Octo()


def fib(n: int) -> int:
    return n if n < 2 else fib(n - 1) + fib(n - 2)


async def app(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] != "http":
        return
    jobs = int((scope["query_string"] or b"jobs=8").split(b"=")[1])
    start = time.perf_counter()
    if scope["path"] == "/serial":
        for _ in range(jobs):
            fib(26)
    else:
        await octo.concurrently(*(functools.partial(fib, 26) for _ in range(jobs)),
                                in_workers=True)
    elapsed = time.perf_counter() - start
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": f"{elapsed:.4f}".encode()})


asgi = rt.wrap(app)
