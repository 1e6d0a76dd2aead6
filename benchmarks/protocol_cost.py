"""Cost of one request through HttpProtocol in memory: no sockets, no load generator.

    taskset -c 1 .venv/bin/python benchmarks/protocol_cost.py [--requests 200000]
    valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        .venv/bin/python benchmarks/protocol_cost.py --requests 20000 --kinds get

Each kind feeds keep-alive requests one read at a time (the shape a real client gives)
through a minimal transport to a hello app on a uvloop loop, and prints the best of three
runs in ns per request. ``--access-log`` turns the access log on, written with the default
format to /dev/null, to price the log line; ``--static`` mounts a static directory the
requests are not under, to price the check for the others. Under callgrind, compare
instruction totals of two runs with different ``--requests`` counts to get instructions per
request without the start-up cost (``PYTHONHASHSEED=0`` makes the two start-ups alike).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import tempfile
import time
from typing import Any

import uvloop

from octo.config import Config
from octo.http.protocol import HttpProtocol, ServerState
from octo.http.response import DateHeader
from octo.logs import setup as setup_logging

REQUESTS = {
    "get": b"GET /plaintext HTTP/1.1\r\nHost: localhost\r\nUser-Agent: bench\r\n"
           b"Accept: */*\r\n\r\n",
    "post": b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            b"Content-Length: 13\r\n\r\n{\"hello\": 1}\n",
    "chunked": b"POST /echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"d\r\n{\"hello\": 1}\n\r\n0\r\n\r\n",
    "percent": b"GET /caf%C3%A9/x%20y HTTP/1.1\r\nHost: localhost\r\n\r\n",
}


class Sink:
    """The least a transport must do: count what is written."""

    def __init__(self) -> None:
        self.written = 0

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def close(self) -> None:  # pragma: no cover - a keep-alive run never closes
        raise AssertionError("the connection closed")

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 5000), "sockname": ("127.0.0.1", 8000)}.get(name)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


async def hello(scope: Any, receive: Any, send: Any) -> None:
    if scope["method"] == "POST":
        await receive()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"Hello, world!"})


async def run(kind: str, count: int, access: bool = False, static: str = "",
              request_id: bool = True) -> float:
    loop = asyncio.get_running_loop()
    DateHeader.refresh(time.time())
    mounts = (f"/static={static}",) if static else ()
    config = Config(app="x:y", access_log=access, static=mounts, request_id=request_id)
    state = ServerState(config, hello, loop)
    state.access_log = access
    proto = HttpProtocol(state)
    sink = Sink()
    proto.connection_made(sink)  # type: ignore[arg-type]
    data = REQUESTS[kind]
    feed = proto.data_received
    start = time.perf_counter()
    for _ in range(count):
        feed(data)
        if state.tasks:  # the app suspended (the body was not there yet): let it finish
            await asyncio.sleep(0)
    elapsed = time.perf_counter() - start
    assert sink.written > count * 100, "responses missing"
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--kinds", default=",".join(REQUESTS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--access-log", action="store_true",
                        help="log every request (default format) to /dev/null")
    parser.add_argument("--static", action="store_true",
                        help="mount /static (the requests are not under it: its cost for "
                             "the others)")
    parser.add_argument("--no-request-id", action="store_true",
                        help="no request ids (--no-request-id), to price them")
    args = parser.parse_args()
    static = tempfile.mkdtemp() if args.static else ""
    if args.access_log:
        with contextlib.redirect_stderr(open(os.devnull, "w")):  # noqa: SIM115
            setup_logging("info", True)
    for kind in args.kinds.split(","):
        best = min(uvloop.run(run(kind, args.requests, args.access_log, static,
                                  not args.no_request_id))
                   for _ in range(args.repeats))
        print(f"{kind:8} {best / args.requests * 1e9:8.0f} ns/request")


if __name__ == "__main__":
    main()
