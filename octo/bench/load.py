"""The load generator behind ``octo bench``: uvloop + httptools, one or more processes.

Closed model (default): every connection keeps ``pipeline`` requests in flight and sends the
next as soon as a response completes. Open model (``rate``): requests are *scheduled* at a
constant rate per connection and latency is measured from the scheduled time, not the send
time, so a stalled server is charged for the requests it delayed (wrk2's correction for
coordinated omission).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import resource
import socket
import time
from collections import Counter, deque
from typing import Any
from urllib.parse import urlsplit

import httptools

from octo.bench.histogram import Histogram

CONNECT_TIMEOUT = 5.0


@dataclasses.dataclass(slots=True)
class Plan:
    url: str
    connections: int = 64
    duration: float | None = 10.0
    requests: int | None = None
    rate: float | None = None
    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    pipeline: int = 1
    warmup: float = 0.0
    timeout: float = 10.0

    def request_bytes(self) -> bytes:
        parts = urlsplit(self.url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        lines = [f"{self.method} {target} HTTP/1.1", f"Host: {parts.netloc}"]
        names = {name.lower() for name, _ in self.headers}
        lines += [f"{name}: {value}" for name, value in self.headers]
        if self.body and "content-length" not in names:
            lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + self.body

    def address(self) -> tuple[str, int]:
        parts = urlsplit(self.url)
        if parts.scheme != "http":
            raise ValueError("octo bench speaks plain http:// only")
        return parts.hostname or "127.0.0.1", parts.port or 80


@dataclasses.dataclass(slots=True)
class Stats:
    latency: Histogram = dataclasses.field(default_factory=Histogram)
    statuses: Counter[int] = dataclasses.field(default_factory=Counter)
    errors: Counter[str] = dataclasses.field(default_factory=Counter)
    bytes_read: int = 0
    responses: int = 0
    elapsed: float = 0.0
    cpu_seconds: float = 0.0
    connected: int = 0  # connections established (warm-up included): 0 means none ever was

    def merge(self, other: Stats) -> None:
        self.latency.merge(other.latency)
        self.statuses.update(other.statuses)
        self.errors.update(other.errors)
        self.bytes_read += other.bytes_read
        self.responses += other.responses
        self.elapsed = max(self.elapsed, other.elapsed)
        self.cpu_seconds += other.cpu_seconds
        self.connected += other.connected

    def to_dict(self) -> dict[str, Any]:
        return {"latency": self.latency.to_dict(), "statuses": dict(self.statuses),
                "errors": dict(self.errors), "bytes_read": self.bytes_read,
                "responses": self.responses, "elapsed": self.elapsed,
                "cpu_seconds": self.cpu_seconds, "connected": self.connected}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Stats:
        return cls(Histogram.from_dict(data["latency"]),
                   Counter({int(k): v for k, v in data["statuses"].items()}),
                   Counter(data["errors"]), data["bytes_read"], data["responses"],
                   data["elapsed"], data["cpu_seconds"], data["connected"])


class Budget:
    """Requests left to send (``--requests``), shared by the connections of one process."""

    def __init__(self, total: int | None) -> None:
        self.left = total

    def take(self) -> bool:
        if self.left is None:
            return True
        if self.left <= 0:
            return False
        self.left -= 1
        return True


class Connection(asyncio.Protocol):
    """One client connection; reconnects when the server closes it."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.sent: deque[float] = deque()  # start times of requests awaiting responses
        self.due: deque[float] = deque()  # open model: scheduled times not yet sent
        self.closed = asyncio.get_running_loop().create_future()
        self.keep_alive = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self.run.plan.rate is None:
            for _ in range(self.run.plan.pipeline):
                self.send(time.perf_counter())
        else:
            self.flush_due()

    def send(self, started: float) -> bool:
        if not self.run.active or not self.run.budget.take():
            return False
        assert self.transport is not None
        self.sent.append(started)
        self.transport.write(self.run.request)
        return True

    def flush_due(self) -> None:
        """Open model: send the oldest scheduled request if nothing is in flight."""
        if self.due and not self.sent and self.transport is not None:
            if not self.send(self.due.popleft()):
                self.due.clear()

    def data_received(self, data: bytes) -> None:
        self.run.stats.bytes_read += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.run.stats.errors["read"] += 1
            self.abort()

    def on_message_complete(self) -> None:
        now = time.perf_counter()
        started = self.sent.popleft() if self.sent else now
        stats = self.run.stats
        if self.run.recording:
            stats.latency.record(int((now - started) * 1e6))
            stats.responses += 1
            status = self.parser.get_status_code()
            stats.statuses[status] += 1
            if status >= 400:
                stats.errors["non-2xx/3xx"] += 1
        if not self.parser.should_keep_alive():
            self.keep_alive = False
            self.abort()
            return
        if self.run.plan.rate is None:
            self.send(now)
        else:
            self.flush_due()
        if not self.sent and self.run.budget.left == 0:
            self.abort()  # --requests reached and nothing left in flight

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.sent and self.run.active and self.run.recording:
            # Requests on the wire when the connection ended never got an answer.
            self.run.stats.errors["read"] += len(self.sent)
        if not self.closed.done():
            self.closed.set_result(None)


class Run:
    """One process's share of the load."""

    def __init__(self, plan: Plan, connections: int, requests: int | None,
                 rate: float | None) -> None:
        self.plan = plan
        self.connections = connections
        self.request = plan.request_bytes()
        self.budget = Budget(requests)
        self.rate = rate
        self.stats = Stats()
        self.active = True
        self.recording = plan.warmup <= 0
        self.live: list[Connection] = []

    async def main(self, progress: Any = None) -> Stats:
        loop = asyncio.get_running_loop()
        cpu_start = _cpu()
        started = time.perf_counter()
        if self.plan.warmup > 0:
            loop.call_later(self.plan.warmup, self._start_recording)
        tasks = [loop.create_task(self._connection_loop(i)) for i in range(self.connections)]
        deadline = None if self.plan.duration is None else \
            started + self.plan.warmup + self.plan.duration
        await self._wait(tasks, deadline, progress)
        self.stats.elapsed = time.perf_counter() - self.record_start
        self.stats.cpu_seconds = _cpu() - cpu_start
        return self.stats

    record_start = 0.0

    def _start_recording(self) -> None:
        self.stats = Stats(connected=self.stats.connected)
        self.recording = True
        self.record_start = time.perf_counter()

    async def _wait(self, tasks: list[asyncio.Task[None]], deadline: float | None,
                    progress: Any) -> None:
        if self.recording:
            self.record_start = time.perf_counter()
        while True:
            done = all(task.done() for task in tasks)
            now = time.perf_counter()
            if done or (deadline is not None and now >= deadline):
                break
            if progress is not None:
                progress(self.stats, now - self.record_start)
            await asyncio.sleep(0.05 if deadline is None else min(0.05, deadline - now))
        self.active = False
        for conn in self.live:
            conn.abort()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _connection_loop(self, index: int) -> None:
        loop = asyncio.get_running_loop()
        host, port = self.plan.address()
        schedule = self._schedule(index) if self.rate else None
        while self.active and self.budget.left != 0:
            try:
                _, conn = await asyncio.wait_for(
                    loop.create_connection(lambda: Connection(self), host, port),
                    CONNECT_TIMEOUT)
            except (OSError, TimeoutError):
                if self.recording:
                    self.stats.errors["connect"] += 1
                # A failed connection costs the request it was for: with --requests and no
                # server listening, the run ends instead of retrying forever.
                if not self.budget.take():
                    break
                await asyncio.sleep(0.01)
                continue
            self.stats.connected += 1
            self.live.append(conn)
            if schedule is not None:
                conn.due = schedule.due  # scheduled requests survive a reconnect
                schedule.conn = conn
                conn.flush_due()
            await self._watch(conn)
            self.live.remove(conn)

    async def _watch(self, conn: Connection) -> None:
        """Wait for the connection to end; count a request timeout if it hangs."""
        while not conn.closed.done():
            oldest = conn.sent[0] if conn.sent else None
            try:
                await asyncio.wait_for(asyncio.shield(conn.closed), 0.25)
            except TimeoutError:
                if oldest is not None and conn.sent and conn.sent[0] == oldest and \
                        time.perf_counter() - oldest > self.plan.timeout:
                    if self.recording:
                        self.stats.errors["timeout"] += 1
                    conn.sent.popleft()
                    conn.abort()

    def _schedule(self, index: int) -> Schedule:
        assert self.rate is not None
        return Schedule(self, self.rate / self.connections, index / self.rate)


class Schedule:
    """Open model: fire one request every 1/rate seconds into a connection's due queue."""

    def __init__(self, run: Run, rate: float, offset: float) -> None:
        self.run = run
        self.interval = 1.0 / rate
        self.conn: Connection | None = None
        self.due: deque[float] = deque()
        self.loop = asyncio.get_running_loop()
        self.next = time.perf_counter() + offset
        self.loop.call_later(offset, self.fire)

    def fire(self) -> None:
        if not self.run.active:
            return
        self.due.append(self.next)
        if self.conn is not None:
            self.conn.flush_due()
        self.next += self.interval
        self.loop.call_later(max(0.0, self.next - time.perf_counter()), self.fire)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def is_loopback(host: str) -> bool:
    import ipaddress

    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror:
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos)


def run_in_process(plan: Plan, connections: int, requests: int | None, rate: float | None,
                   progress: Any = None) -> Stats:
    import uvloop

    runner = Run(plan, connections, requests, rate)
    return uvloop.run(runner.main(progress))


def run(plan: Plan, processes: int = 1, progress: Any = None) -> Stats:
    """Split the plan across *processes* forked children and merge their results."""
    processes = max(1, min(processes, plan.connections))
    shares = [plan.connections // processes + (i < plan.connections % processes)
              for i in range(processes)]
    if processes == 1:
        return run_in_process(plan, plan.connections, plan.requests, plan.rate, progress)
    import json

    children = []
    for i, share in enumerate(shares):
        requests = None if plan.requests is None else \
            plan.requests * share // plan.connections + (i == 0) * (
                plan.requests - sum(plan.requests * s // plan.connections for s in shares))
        rate = None if plan.rate is None else plan.rate * share / plan.connections
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            os.close(read_fd)
            code = 0
            try:
                stats = run_in_process(plan, share, requests, rate,
                                       progress if i == 0 else None)
                with os.fdopen(write_fd, "w") as out:
                    json.dump(stats.to_dict(), out)
            except BaseException:
                code = 1
            os._exit(code)
        os.close(write_fd)
        children.append((pid, read_fd))
    total = Stats()
    for pid, read_fd in children:
        with os.fdopen(read_fd) as inp:
            data = inp.read()
        os.waitpid(pid, 0)
        if data:
            total.merge(Stats.from_dict(json.loads(data)))
    return total
