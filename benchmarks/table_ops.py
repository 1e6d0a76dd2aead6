"""Shared-memory table operations vs redis-py vs the bare floor of any shm operation.

    .venv/bin/python benchmarks/table_ops.py [--ops 200000]

Installs nothing into the project: redis-server comes from the system (``apt-get install
redis-server`` is attempted when missing) and redis-py from a private venv under
benchmarks/.venv-table. Two "bare" loops increment an 8-byte slot of an mmap under a lock and
nothing else: one under a thread lock + fcntl byte-range lock (the classic floor of a
crash-safe shared-memory operation in Python), one under the lock tables use where libatomic
is available (thread lock + compare-and-swap owner word). Each figure is the best of 3 runs.
"""

from __future__ import annotations

import argparse
import fcntl
import mmap
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
REDIS_VENV = HERE / ".venv-table"


def best_rate(fn: Callable[[int], None], ops: int, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn(ops)
        best = min(best, time.perf_counter() - start)
    return ops / best


def in_processes(fn: Callable[[int], None], ops: int, procs: int) -> float:
    """Total ops/s with *procs* forked processes each doing ops/procs."""
    share = ops // procs
    start = time.perf_counter()
    pids = []
    for _ in range(procs):
        pid = os.fork()
        if pid == 0:
            fn(share)
            os._exit(0)
        pids.append(pid)
    for pid in pids:
        os.waitpid(pid, 0)
    return share * procs / (time.perf_counter() - start)


def bare_loop(path: str) -> Callable[[int], None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.ftruncate(fd, 4096)
    mem = mmap.mmap(fd, 4096)
    lock = threading.Lock()
    q = struct.Struct("<q")

    def run(n: int) -> None:
        for _ in range(n):
            with lock:
                fcntl.lockf(fd, fcntl.LOCK_EX, 1, 0)
                q.pack_into(mem, 8, q.unpack_from(mem, 8)[0] + 1)
                fcntl.lockf(fd, fcntl.LOCK_UN, 1, 0)
    return run


def bare_cas_loop() -> Callable[[int], None]:
    from octo.runtime.shmlock import AtomicLock

    mem = mmap.mmap(-1, 4096)
    lock = AtomicLock(mem, 0, "bare")
    words = memoryview(mem).cast("q")

    def run(n: int) -> None:
        for _ in range(n):
            lock.acquire()
            words[1] += 1
            lock.release()
    return run


def table_ops(server_id: str) -> dict[str, Callable[[int], None]]:
    from octo.runtime.table import Int, Str, Table

    table = Table("bench", 4096, {"count": Int, "name": Str(16)}, server_id=server_id)
    table.set("k", {"count": 0, "name": "x"})

    def incr(n: int) -> None:
        for _ in range(n):
            table.incr("k", "count")

    def get(n: int) -> None:
        for _ in range(n):
            table.get("k", "count")

    def set_(n: int) -> None:
        for _ in range(n):
            table.set("k", {"count": 1})

    return {"incr": incr, "get": get, "set": set_}


def start_redis() -> tuple[subprocess.Popen[bytes], int] | None:
    if shutil.which("redis-server") is None:
        subprocess.run(["apt-get", "install", "-y", "redis-server"], capture_output=True)
    if shutil.which("redis-server") is None:
        print("redis-server unavailable: redis figures skipped", file=sys.stderr)
        return None
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), 0.1).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    return None


def redis_rates(port: int, ops: int) -> dict[str, float]:
    if not (REDIS_VENV / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(REDIS_VENV)], check=True)
        subprocess.run([str(REDIS_VENV / "bin" / "pip"), "install", "-q", "redis"], check=True)
    code = (
        "import redis,time,json,sys\n"
        f"r=redis.Redis(port={port}); r.set('k',0); n={ops}\n"
        "out={}\n"
        "for name,f in [('incr',lambda:r.incr('k')),('get',lambda:r.get('k')),"
        "('set',lambda:r.set('k',1))]:\n"
        "  best=9e9\n"
        "  for _ in range(3):\n"
        "    t=time.perf_counter()\n"
        "    for _ in range(n): f()\n"
        "    best=min(best,time.perf_counter()-t)\n"
        "  out[name]=n/best\n"
        "print(json.dumps(out))\n")
    import json

    out = subprocess.run([str(REDIS_VENV / "bin" / "python"), "-c", code], check=True,
                         capture_output=True, text=True).stdout
    return {k: float(v) for k, v in json.loads(out).items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ops", type=int, default=200_000)
    args = parser.parse_args()
    ops = args.ops
    with tempfile.TemporaryDirectory(dir="/dev/shm" if os.path.isdir("/dev/shm") else None) \
            as tmp:
        from octo.runtime import rundir

        # Tables as a server's workers get them: files in a private runtime directory.
        rundir.serve_from(rundir.RuntimeDir.create(os.path.join(tmp, "run")), "bench")
        bare = bare_loop(os.path.join(tmp, "bare"))
        tops = table_ops("bench")
        rows = [("bare mmap+fcntl incr", best_rate(bare, ops), in_processes(bare, ops, 2))]
        from octo.runtime.shmlock import atomic_available

        if atomic_available():
            cas = bare_cas_loop()
            rows.append(("bare mmap+CAS incr", best_rate(cas, ops), in_processes(cas, ops, 2)))
        rows += [(f"table {name}", best_rate(fn, ops), in_processes(fn, ops, 2))
                 for name, fn in tops.items()]
    redis = start_redis()
    redis_figs: dict[str, float] = {}
    if redis is not None:
        proc, port = redis
        try:
            redis_figs = redis_rates(port, max(2000, ops // 20))
        finally:
            proc.terminate()
            proc.wait(5)
    print(f"{'operation':24} {'1 process ops/s':>16} {'2 processes ops/s':>18}")
    for name, one, two in rows:
        print(f"{name:24} {one:16,.0f} {two:18,.0f}")
    for name, rate in redis_figs.items():
        print(f"{'redis-py ' + name.upper():24} {rate:16,.0f}")
    incr = next(one for name, one, _ in rows if name == "table incr")
    for name, one, _ in rows:
        if name.startswith("bare"):
            print(f"table incr / {name}: {incr / one:.0%}")
    if redis_figs:
        print(f"table incr / redis-py INCR: {incr / redis_figs['incr']:.1f}x "
              f"({1e6 / redis_figs['incr']:.0f} us per INCR)")


if __name__ == "__main__":
    main()
