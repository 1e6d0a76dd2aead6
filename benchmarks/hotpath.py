"""The HTTP hot path in memory: µs and instructions per request with no sockets.

    python benchmarks/hotpath.py --mode octo --app hello:app -n 20000
    OCTO_CORE=python python benchmarks/hotpath.py ...             # the pure-Python core
    python benchmarks/hotpath.py --mode app --app hello:app        # the app alone
    python benchmarks/hotpath.py --app django_bench.asgi:django_app --path /json-sync
                                                  # Django's ASGIHandler, a sync view
    valgrind --tool=callgrind python benchmarks/hotpath.py ... -n N  # twice: the slope is
                                                                     # instructions/request

Modes:
- ``octo``: octo's HttpProtocol (of the core ``OCTO_CORE`` chooses: octo.http.core) on the
  running event loop, serving the app as a worker wraps it (octo.process.worker: the
  interface, ``--reuse-sync-threads``), fed one keep-alive request per loop callback
  through a transport that only keeps the last write; the request's Task (3.11) runs
  between two callbacks, as in a worker between two reads. An app that waits (Django's
  sync view, run in a thread) is answered before the next request goes in.
- ``app``: the ASGI app alone, its coroutine driven by hand with do-nothing ``receive`` and
  ``send`` coroutines and a prebuilt scope: what any server pays for calling it.

Prints ``µs/request`` (wall clock, best of --repeat) so compiled variants can be compared
without valgrind; under callgrind use the difference of two runs with different -n.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvloop

APPS = Path(__file__).resolve().parent / "apps"


def request(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n\r\n".encode()


class SinkTransport:
    """Just enough of a transport: remembers the last write and its count, and calls
    ``wake`` once after the next write when it is set."""

    def __init__(self) -> None:
        self.last = b""
        self.writes = 0
        self.wake: Callable[[], Any] | None = None

    def write(self, data: bytes) -> None:
        self.last = data
        self.writes += 1
        if self.wake is not None:
            wake, self.wake = self.wake, None
            wake()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}.get(
            name, default)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        raise RuntimeError(f"closed after {self.writes} writes; last: {self.last[:200]!r}")

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def load_app(spec: str) -> Any:
    sys.path.insert(0, str(APPS))
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)


async def run_protocol(make: Callable[[], Any], requests: int, path: str) -> float:
    """Feed one request per loop callback, as in a worker, where each read is a callback of
    its own: the request's Task (3.11) runs before the next callback; when its response is
    not written yet (the app waits on a thread), the next request goes in the callback
    after that write. (A response is one write here.)"""
    loop = asyncio.get_running_loop()
    transport = SinkTransport()
    proto = make()
    proto.connection_made(transport)
    feed = proto.data_received
    raw = request(path)
    warm = 200  # caches filled (encoded headers, Date prefix) before the clock starts
    done: asyncio.Future[float] = loop.create_future()
    left = requests + warm
    start = 0.0

    def step() -> None:
        nonlocal left, start
        if transport.writes < requests + warm - left:  # the last one is not answered yet
            transport.wake = soon
            return
        if left == requests:
            start = time.perf_counter()
        if left == 0:
            done.set_result(time.perf_counter() - start)
            return
        left -= 1
        feed(raw)
        loop.call_soon(step)

    def soon() -> None:
        loop.call_soon(step)

    loop.call_soon(step)
    elapsed = await done
    if transport.writes != requests + warm or not transport.last.startswith(b"HTTP/1.1 200"):
        raise SystemExit(f"{transport.writes} responses to {requests + warm} requests; "
                         f"last {transport.last[:200]!r}")
    return elapsed


def octo_factory(app: Any) -> Callable[[], Any]:
    from octo.config import Config
    from octo.http import core
    from octo.http.response import DateHeader
    from octo.process.syncthreads import reuse_sync_threads
    from octo.process.worker import as_asgi
    from octo.wsgi import WSGIAdapter

    protocol = core.current().protocol  # OCTO_CORE=python|compiled chooses
    DateHeader.refresh(time.time())
    config = Config(app="x:y")
    served = as_asgi(app, config)  # as Worker.load wraps it
    if config.reuse_sync_threads and not isinstance(served, WSGIAdapter):
        served = reuse_sync_threads(served)
    state = protocol.ServerState(config, served, asyncio.get_running_loop())
    return lambda: protocol.HttpProtocol(state)


async def run_app(app: Any, requests: int, path: str) -> float:
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(),
             "query_string": b"", "root_path": "", "headers": [(b"host", b"127.0.0.1")],
             "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 50000)}
    sent = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    def once() -> None:
        coro = app(scope, receive, send)
        try:
            coro.send(None)
        except StopIteration:
            return
        raise SystemExit("the app suspended: drive it with --mode octo")

    for _ in range(200):
        once()
    start = time.perf_counter()
    for _ in range(requests):
        once()
    elapsed = time.perf_counter() - start
    if len(sent) != 2 * (requests + 200):
        raise SystemExit(f"{len(sent)} messages from {requests + 200} calls")
    return elapsed


async def measure(args: argparse.Namespace) -> float:
    app = load_app(args.app)
    if args.mode == "app":
        return await run_app(app, args.requests, args.path)
    return await run_protocol(octo_factory(app), args.requests, args.path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("octo", "app"), default="octo")
    parser.add_argument("--app", default="hello:app", help="module:attr in benchmarks/apps")
    parser.add_argument("--path", default="/json", help="the requests' path (default /json)")
    parser.add_argument("-n", "--requests", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=5, help="best of this many runs")
    args = parser.parse_args()
    best = min(uvloop.run(measure(args)) for _ in range(args.repeat))
    print(f"{args.mode} {args.app}: {1e6 * best / args.requests:.2f} µs/request "
          f"(best of {args.repeat} x {args.requests})")


if __name__ == "__main__":
    main()
