"""WebSocket echo throughput: octo vs uvicorn, 32 clients, same run, alternated rounds.

    .venv/bin/python benchmarks/ws_echo.py [--seconds 5] [--rounds 3]

Server pinned to core 0, the client process (asyncio + websockets, 32 connections, each
sending a 64-byte text message and waiting for its echo) to core 1. Reports messages/s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
APP = "apps.ws_apps:app"  # the echo app of the test suite (tests/apps/ws_apps.py)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def server_command(name: str, port: int) -> list[str]:
    if name == "octo":
        return [str(BIN / "octo"), "serve", APP, "--app-dir", "tests", "--port", str(port),
                "--no-access-log", "--log-level", "warning", "--no-ws-per-message-deflate"]
    return [str(BIN / "uvicorn"), APP, "--app-dir", "tests", "--port", str(port),
            "--no-access-log", "--log-level", "warning", "--ws", "websockets",
            "--ws-per-message-deflate", "false", "--loop", "uvloop", "--http", "httptools"]


async def client(url: str, seconds: float, clients: int) -> int:
    from websockets.asyncio.client import connect

    deadline = time.monotonic() + seconds
    message = "m" * 64

    async def one() -> int:
        count = 0
        async with connect(url, compression=None) as ws:
            while time.monotonic() < deadline:
                await ws.send(message)
                await ws.recv()
                count += 1
        return count

    return sum(await asyncio.gather(*(one() for _ in range(clients))))


def run_once(name: str, seconds: float, clients: int) -> float:
    port = free_port()
    proc = subprocess.Popen(["taskset", "-c", "0", *server_command(name, port)], cwd=ROOT,
                            start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        time.sleep(0.5)
        out = subprocess.run(["taskset", "-c", "1", sys.executable, __file__, "--client",
                              f"ws://127.0.0.1:{port}/echo", str(seconds), str(clients)],
                             capture_output=True, text=True, timeout=seconds + 60, check=True)
        return int(out.stdout.strip()) / seconds
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--client", nargs=3)
    args = parser.parse_args()
    if args.client:
        url, seconds, clients = args.client
        print(asyncio.run(client(url, float(seconds), int(clients))))
        return
    print(f"load before: {os.getloadavg()}")
    results: dict[str, list[float]] = {"octo": [], "uvicorn": []}
    for round_no in range(args.rounds):
        order = ["octo", "uvicorn"] if round_no % 2 == 0 else ["uvicorn", "octo"]
        for name in order:
            results[name].append(run_once(name, args.seconds, args.clients))
    for name, rates in results.items():
        print(f"{name:8} median {statistics.median(rates):10,.0f} msg/s  "
              f"(min {min(rates):,.0f}, max {max(rates):,.0f})")
    ratios = [o / u for o, u in zip(results["octo"], results["uvicorn"], strict=True)]
    print(f"octo / uvicorn: median {statistics.median(ratios):.2f}x "
          f"(rounds: {', '.join(f'{r:.2f}' for r in ratios)})")
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
