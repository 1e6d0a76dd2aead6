"""CPU-bound work: serial in the HTTP worker vs spread over N task workers.

    .venv/bin/python benchmarks/task_speedup.py

Starts ``octo serve benchmarks.apps.cpu_tasks:asgi --task-workers N`` for N = 1 and 2 (this
machine has 2 cores), runs 8 x fib(26) per request, best of 5 requests each.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def best(url: str, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        with urllib.request.urlopen(url, timeout=120) as response:
            times.append(float(response.read()))
    return min(times)


def measure(task_workers: int) -> dict[str, float]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "octo", "serve",
                             "benchmarks.apps.cpu_tasks:asgi", "--port", str(port),
                             "--task-workers", str(task_workers), "--no-access-log",
                             "--log-level", "warning"], cwd=ROOT)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                urllib.request.urlopen(base + "/serial?jobs=1", timeout=5).read()
                break
            except OSError:
                time.sleep(0.05)
        time.sleep(1.0)  # let the task workers finish booting
        return {"serial": best(base + "/serial?jobs=8"),
                "workers": best(base + "/workers?jobs=8")}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def main() -> None:
    print(f"cpus: {os.cpu_count()}, load before: {os.getloadavg()}")
    results = {n: measure(n) for n in (1, 2)}
    serial = min(r["serial"] for r in results.values())
    print(f"8 x fib(26) serial in the HTTP worker: {serial:.3f} s")
    for n, r in results.items():
        print(f"8 x fib(26) on {n} task worker(s):      {r['workers']:.3f} s  "
              f"speedup {serial / r['workers']:.2f}x")
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
