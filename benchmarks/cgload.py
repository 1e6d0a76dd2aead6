"""The load of a callgrind window: exactly N requests over connections opened beforehand.

    python cgload.py HOST PORT REQUEST_JSON [--connections 64]

REQUEST_JSON: {"method": ..., "path": ..., "headers": [[name, value], ...], "body_hex": ...,
"status": 200}. Driven over stdin/stdout, one line each way, so the window can open after
the connections are made and close before they go:

    (prints) ready             every connection is open (no request sent yet)
    go N       ->              N more requests, closed loop: one in flight per connection
    (prints) done ANSWERS ERRORS
    close      ->              (or end of input) close the connections, exit

Errors are answers with another status and connections the server closed; the window is
then worthless, and callgrind.py says so. No timeouts: under valgrind a server answers ~50x
slower, and the caller bounds the whole run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

import httptools
import uvloop


class Budget:
    """Requests still to send in the current phase."""

    def __init__(self) -> None:
        self.left = 0
        self.answers = 0
        self.errors = 0
        self.in_flight = 0
        self.done: asyncio.Future[None] | None = None

    def start(self, count: int) -> asyncio.Future[None]:
        self.left, self.answers, self.errors = count, 0, 0
        self.done = asyncio.get_running_loop().create_future()
        return self.done

    def take(self) -> bool:
        if self.left <= 0:
            return False
        self.left -= 1
        self.in_flight += 1
        return True

    def answered(self, ok: bool) -> None:
        self.in_flight -= 1
        self.answers += 1
        self.errors += not ok
        self.check()

    def check(self) -> None:
        if self.left <= 0 and self.in_flight <= 0 and self.done and not self.done.done():
            self.done.set_result(None)


class Connection(asyncio.Protocol):
    def __init__(self, request: bytes, status: int, budget: Budget) -> None:
        self.request = request
        self.status = status
        self.budget = budget
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.waiting = False
        self.closing = False  # our own close at the end
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send_next(self) -> None:
        if self.transport is not None and not self.transport.is_closing() and \
                self.budget.take():
            self.waiting = True
            self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.fail()

    def on_message_complete(self) -> None:
        self.waiting = False
        self.budget.answered(self.parser.get_status_code() == self.status)
        self.send_next()

    def fail(self) -> None:
        if self.transport is not None:
            self.transport.close()  # counted as an error in connection_lost

    def close(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self.lost.done():
            self.lost.set_result(None)
        if self.closing:
            return
        if self.waiting:  # no answer to the request in flight
            self.waiting = False
            self.budget.answered(False)
        else:  # a kept-alive connection ended by the server (or a parse error)
            self.budget.errors += 1
            self.budget.check()


def request_bytes(spec: dict[str, Any], host: str, port: int) -> bytes:
    body = bytes.fromhex(spec.get("body_hex", ""))
    lines = [f"{spec['method']} {spec['path']} HTTP/1.1", f"Host: {host}:{port}"]
    lines += [f"{name}: {value}" for name, value in spec.get("headers", [])]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def phase(budget: Budget, connections: list[Connection], count: int) -> None:
    done = budget.start(count)
    for conn in connections:
        conn.send_next()
    budget.check()
    await done


async def main(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    spec = json.loads(args.request)
    request = request_bytes(spec, args.host, args.port)
    budget = Budget()
    connections: list[Connection] = []
    for _ in range(args.connections):
        _, conn = await loop.create_connection(
            lambda: Connection(request, int(spec.get("status", 200)), budget),
            args.host, args.port)
        connections.append(conn)
    # No request yet: a slow server (Django under valgrind answers ~8 a second) would take
    # so long to answer one on each that the first would meet its keep-alive timeout.
    await asyncio.sleep(0)
    print("ready" if budget.errors == 0 else f"failed {budget.errors}", flush=True)
    while True:
        line = (await loop.run_in_executor(None, sys.stdin.readline)).split()
        if not line or line[0] == "close":
            break
        if line[0] == "go":
            await phase(budget, connections, int(line[1]))
            print(f"done {budget.answers} {budget.errors}", flush=True)
    for conn in connections:
        conn.close()
    await asyncio.gather(*(conn.lost for conn in connections))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("request", help="the request as JSON (see the module docstring)")
    parser.add_argument("--connections", type=int, default=64)
    return parser.parse_args()


if __name__ == "__main__":
    uvloop.run(main(parse_args()))
