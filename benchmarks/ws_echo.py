"""WebSocket echo throughput: octo and uvicorn, each on both WebSocket engines, same run.

    .venv/bin/python benchmarks/ws_echo.py [--seconds 5] [--rounds 3] [--procs 4]

The server (one worker) is pinned to core 0; the client — ``--procs`` processes sharing 32
connections — to core 1. Each connection sends a 64-byte text message and waits for its echo.
Rounds alternate the order of the servers; the report gives every round and the medians,
with how busy each core was, so it shows which side was the bottleneck.

The client is lean on purpose: a plain asyncio Protocol per connection on uvloop. The
websockets library (sans-I/O) does the handshake and builds the masked message frame once,
and checks the first echo; after that each connection replays the same frame and compares
each echo with the first byte for byte. No coroutine per message, no frame parsing: a
client process costs a few microseconds per message, so the server's core saturates first.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
APP = "apps.ws_apps:app"  # the echo app of the test suite (tests/apps/ws_apps.py)
SERVERS = ("octo/websockets", "octo/wsproto", "uvicorn/websockets", "uvicorn/wsproto")
MESSAGE = b"m" * 64
SERVER_CORE, CLIENT_CORE = "0", "1"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def server_command(name: str, port: int) -> list[str]:
    server, engine = name.split("/")
    if server == "octo":
        return [str(BIN / "octo"), "serve", APP, "--app-dir", "tests", "--port", str(port),
                "--workers", "1", "--ws", engine, "--no-access-log", "--log-level", "warning",
                "--no-ws-per-message-deflate"]
    return [str(BIN / "uvicorn"), APP, "--app-dir", "tests", "--port", str(port),
            "--no-access-log", "--log-level", "warning", "--ws", engine,
            "--ws-per-message-deflate", "false", "--loop", "uvloop", "--http", "httptools"]


# -- the client -----------------------------------------------------------------------------

class EchoConnection(asyncio.Protocol):
    """One connection: handshake with websockets' sans-I/O client, then replay one frame."""

    def __init__(self, url: str, window: tuple[float, float], ready: asyncio.Future[None],
                 finished: asyncio.Future[int]) -> None:
        from websockets.client import ClientProtocol
        from websockets.uri import parse_uri

        self.ws = ClientProtocol(parse_uri(url))
        self.start, self.stop = window
        self.ready, self.finished = ready, finished
        self.transport: asyncio.Transport | None = None
        self.frame = b""
        self.reply = b""  # the first echo, as received: every later one must equal it
        self.buffer = bytearray()
        self.count = 0

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.ws.send_request(self.ws.connect())
        transport.write(b"".join(self.ws.data_to_send()))

    def data_received(self, data: bytes) -> None:
        if self.reply:
            self._echo(data)
        else:
            self._handshake(data)

    def _handshake(self, data: bytes) -> None:
        from websockets.frames import Frame, Opcode
        from websockets.http11 import Response

        self.ws.receive_data(data)
        for event in self.ws.events_received():
            if isinstance(event, Response):
                if event.status_code != 101:
                    raise SystemExit(f"handshake refused: {event.status_code}")
                self.ws.send_text(MESSAGE)
                self.frame = b"".join(self.ws.data_to_send())
                self._send()
            elif isinstance(event, Frame) and event.opcode is Opcode.TEXT:
                if event.data != MESSAGE:
                    raise SystemExit(f"wrong echo {event.data!r}")
                self.reply = data  # one echo per round trip: this read is exactly it
                if not self.ready.done():
                    self.ready.set_result(None)
                self._send()

    def _echo(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        size = len(self.reply)
        if len(buffer) < size:
            return
        if buffer != self.reply:
            raise SystemExit(f"echo differs from the first one: {bytes(buffer)!r}")
        buffer.clear()
        now = time.time()
        if now >= self.stop:
            self.finished.set_result(self.count)
            assert self.transport is not None
            self.transport.close()
            return
        if now >= self.start:
            self.count += 1
        self._send()

    def _send(self) -> None:
        assert self.transport is not None
        self.transport.write(self.frame)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.finished.done():
            self.finished.set_exception(ConnectionError(f"connection lost early: {exc}"))


async def client(url: str, connections: int, start: float, stop: float) -> int:
    """Messages echoed between *start* and *stop* (wall clock) over *connections*."""
    loop = asyncio.get_running_loop()
    host, port = url.split("//")[1].split("/")[0].split(":")
    finished: list[asyncio.Future[int]] = []
    for _ in range(connections):
        ready: asyncio.Future[None] = loop.create_future()
        done: asyncio.Future[int] = loop.create_future()
        await loop.create_connection(
            functools.partial(EchoConnection, url, (start, stop), ready, done), host, int(port))
        await asyncio.wait_for(ready, 10)
        finished.append(done)
    return sum(await asyncio.wait_for(asyncio.gather(*finished), stop - time.time() + 30))


def client_main(url: str, connections: int, start: float, stop: float) -> None:
    import uvloop

    print(uvloop.run(client(url, connections, start, stop)))


# -- the driver -----------------------------------------------------------------------------

def core_busy() -> dict[str, tuple[int, int]]:
    """Per-core (busy, total) jiffies from /proc/stat."""
    out = {}
    with open("/proc/stat") as fh:
        for line in fh:
            name, *fields = line.split()
            if name.startswith("cpu") and name != "cpu":
                ticks = [int(f) for f in fields]
                idle = ticks[3] + ticks[4]  # idle + iowait
                out[name[3:]] = (sum(ticks) - idle, sum(ticks))
    return out


def busy_percent(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]],
                 core: str) -> float:
    busy = after[core][0] - before[core][0]
    total = after[core][1] - before[core][1]
    return 100.0 * busy / total if total else 0.0


def wait_until_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with status {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("server did not start listening within 20 s")


def run_once(name: str, seconds: float, connections: int, procs: int) -> dict[str, float]:
    """One measurement: start the server, run the clients, stop the server."""
    port = free_port()
    server = subprocess.Popen(["taskset", "-c", SERVER_CORE, *server_command(name, port)],
                              cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        wait_until_listening(port, server)
        time.sleep(0.5)
        start = time.time() + 2.0  # every process connected and warmed up by then
        stop = start + seconds
        shares = [connections // procs + (i < connections % procs) for i in range(procs)]
        clients = [subprocess.Popen(
            ["taskset", "-c", CLIENT_CORE, sys.executable, __file__, "--client",
             f"ws://127.0.0.1:{port}/echo", str(share), repr(start), repr(stop)],
            stdout=subprocess.PIPE, text=True) for share in shares]
        time.sleep(max(0.0, start - time.time()))
        before = core_busy()
        time.sleep(max(0.0, stop - time.time()))
        after = core_busy()
        counts = [int(c.communicate(timeout=seconds + 60)[0]) for c in clients]
        if any(c.returncode for c in clients):
            raise SystemExit(f"{name}: a client process failed")
        return {"rate": sum(counts) / seconds,
                "server_core": busy_percent(before, after, SERVER_CORE),
                "client_core": busy_percent(before, after, CLIENT_CORE)}
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--procs", type=int, default=4, help="client processes")
    parser.add_argument("--servers", default=",".join(SERVERS),
                        help="comma-separated SERVER/ENGINE pairs (ENGINE is the --ws value; "
                             "uvicorn also has websockets-sansio); default: "
                             + ", ".join(SERVERS))
    parser.add_argument("--client", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        url, connections, start, stop = args.client
        client_main(url, int(connections), float(start), float(stop))
        return
    names = args.servers.split(",")
    print(f"load average before: {os.getloadavg()}")
    results: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    for round_no in range(args.rounds):
        shift = round_no % len(names)
        for name in names[shift:] + names[:shift]:  # a different order every round
            result = run_once(name, args.seconds, args.connections, args.procs)
            results[name].append(result)
            print(f"round {round_no + 1} {name:20} {result['rate']:10,.0f} msg/s  "
                  f"server core {result['server_core']:3.0f}%  "
                  f"client core {result['client_core']:3.0f}%  "
                  f"load {os.getloadavg()[0]:.2f}", flush=True)
    print()
    for name, runs in results.items():
        rates = [r["rate"] for r in runs]
        print(f"{name:20} median {statistics.median(rates):10,.0f} msg/s  "
              f"(rounds: {', '.join(f'{r:,.0f}' for r in rates)})  server core "
              f"{statistics.median(r['server_core'] for r in runs):.0f}%, client core "
              f"{statistics.median(r['client_core'] for r in runs):.0f}%")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
