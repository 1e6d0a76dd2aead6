"""Load generators behind one small interface: wrk, and octo's own ``octo bench``."""

from __future__ import annotations

import abc
import dataclasses
import hashlib
import json
import re
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar

RUN_GRACE = 30.0  # seconds a load run may overrun its duration before it is killed


class LoadError(RuntimeError):
    """A load run that produced no usable measurement."""


class LoadGeneratorUnavailable(RuntimeError):
    """The generator cannot run on this machine; the message says why and what to do."""


@dataclasses.dataclass(frozen=True, slots=True)
class LoadSpec:
    url: str
    duration: int  # seconds
    connections: int
    threads: int = 1
    method: str = "GET"
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    cpu: int | None = None  # pin the generator to this core


@dataclasses.dataclass(frozen=True, slots=True)
class LoadResult:
    requests_per_sec: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int  # socket errors plus non-2xx/3xx responses
    error_detail: str
    output: str
    cpu_percent: float | None = None  # the generator's own CPU use, % of one core


def pinned(cpu: int | None, argv: list[str]) -> list[str]:
    return argv if cpu is None else ["taskset", "-c", str(cpu), *argv]


def children_cpu_seconds() -> float:
    """User + system CPU seconds of this process's reaped children so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_bounded(name: str, argv: list[str], duration: float) -> tuple[str, float]:
    """Run a load command to its end (killed after *duration* + RUN_GRACE); its stdout and
    the CPU seconds it used."""
    before = children_cpu_seconds()
    try:
        proc = subprocess.run(argv, capture_output=True, text=True,
                              timeout=duration + RUN_GRACE)
    except subprocess.TimeoutExpired as exc:
        raise LoadError(f"{name} did not finish within {duration + RUN_GRACE:.0f} s") from exc
    cpu = children_cpu_seconds() - before
    if proc.returncode != 0:
        raise LoadError(f"{name} exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
    return proc.stdout, cpu


class LoadGenerator(abc.ABC):
    """Runs one bounded load against a URL. Scratch files (a Lua script, a request body) go
    to a temporary directory removed by ``close`` (or at the end of a ``with`` block)."""

    name: ClassVar[str]

    def __init__(self) -> None:
        self._scratch = tempfile.TemporaryDirectory(prefix=f"octo-bench-{self.name}-")
        self.scratch = Path(self._scratch.name)

    def close(self) -> None:
        self._scratch.cleanup()

    def __enter__(self) -> LoadGenerator:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def scratch_file(self, stem: str, suffix: str, data: bytes) -> Path:
        """A scratch file holding *data*, named by its content (so written once, reused)."""
        path = self.scratch / f"{stem}-{hashlib.sha256(data).hexdigest()[:16]}{suffix}"
        if not path.exists():
            path.write_bytes(data)
        return path

    @abc.abstractmethod
    def check(self) -> None:
        """Raise LoadGeneratorUnavailable when this generator cannot run here."""

    @abc.abstractmethod
    def version(self) -> str: ...

    @abc.abstractmethod
    def command(self, spec: LoadSpec) -> list[str]:
        """The command line for *spec*, as run and as shown in reports."""

    @abc.abstractmethod
    def run(self, spec: LoadSpec) -> LoadResult: ...


class Wrk(LoadGenerator):
    """wrk 4 with ``--latency``; a Lua script only for a method or body other than GET."""

    name = "wrk"

    def check(self) -> None:
        if shutil.which("wrk") is None:
            raise LoadGeneratorUnavailable(
                "wrk is not installed and benchmarks/setup.sh could not install it "
                "(apt-get install -y wrk); install wrk, then run again")

    def version(self) -> str:
        proc = subprocess.run(["wrk", "-v"], capture_output=True, text=True, timeout=10)
        first = (proc.stdout or proc.stderr).splitlines()[0] if proc.stdout or proc.stderr else ""
        return first.split(" Copyright")[0].strip() or "unknown"

    def command(self, spec: LoadSpec) -> list[str]:
        argv = ["wrk", f"-t{spec.threads}", f"-c{spec.connections}", f"-d{spec.duration}s",
                "--latency"]
        for key, value in spec.headers:
            argv += ["-H", f"{key}: {value}"]
        if spec.method != "GET" or spec.body:
            argv += ["-s", str(self._script(spec))]
        return pinned(spec.cpu, [*argv, spec.url])

    def run(self, spec: LoadSpec) -> LoadResult:
        output, cpu = run_bounded("wrk", self.command(spec), spec.duration)
        return dataclasses.replace(parse_wrk(output), cpu_percent=100.0 * cpu / spec.duration)

    def _script(self, spec: LoadSpec) -> Path:
        """A Lua script (in the scratch directory) setting the method and body."""
        text = f"wrk.method = {lua_string(spec.method.encode())}\n" \
               f"wrk.body = {lua_string(spec.body)}\n"
        return self.scratch_file("wrk", ".lua", text.encode())


def lua_string(data: bytes) -> str:
    """A Lua string literal for arbitrary bytes (decimal escapes)."""
    return '"' + "".join(f"\\{byte}" for byte in data) + '"'


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_PERCENTILE = re.compile(r"^\s*(\d+(?:\.\d+)?)%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.MULTILINE)
_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)", re.MULTILINE)
_TOTAL = re.compile(r"^\s*(\d+) requests in", re.MULTILINE)
_SOCKET = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_NON2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")


def parse_wrk(output: str) -> LoadResult:
    """Requests/sec, p50/p99 (ms) and error counts from ``wrk --latency`` output."""
    rps = _RPS.search(output)
    total = _TOTAL.search(output)
    percentiles = {float(p): float(v) * _UNITS_MS[unit]
                   for p, v, unit in _PERCENTILE.findall(output)}
    if rps is None or total is None or 50.0 not in percentiles or 99.0 not in percentiles:
        raise LoadError(f"cannot read wrk output:\n{output.strip()[-800:]}")
    details = []
    errors = 0
    if socket_errors := _SOCKET.search(output):
        counts = [int(n) for n in socket_errors.groups()]
        errors += sum(counts)
        details.append(socket_errors.group(0))
    if non2xx := _NON2XX.search(output):
        errors += int(non2xx.group(1))
        details.append(non2xx.group(0))
    return LoadResult(
        requests_per_sec=float(rps.group(1)),
        p50_ms=percentiles[50.0],
        p99_ms=percentiles[99.0],
        requests=int(total.group(1)),
        errors=errors,
        error_detail="; ".join(details),
        output=output,
    )


class OctoBench(LoadGenerator):
    """``octo bench --json`` from the interpreter's own environment (benchmarks/.venv), so it
    is the measured copy of octo; a POST body goes through ``-b @file``."""

    name = "octo-bench"

    def __init__(self) -> None:
        super().__init__()
        beside = Path(sys.executable).parent / "octo"
        self.executable = str(beside) if beside.exists() else shutil.which("octo")

    def check(self) -> None:
        if self.executable is None:
            raise LoadGeneratorUnavailable("no octo executable beside this interpreter or on "
                                           "PATH; run benchmarks/setup.sh")

    def version(self) -> str:
        proc = subprocess.run([self.executable or "octo", "--version"], capture_output=True,
                              text=True, timeout=30)
        return f"octo bench ({proc.stdout.strip() or 'unknown version'})"

    def command(self, spec: LoadSpec) -> list[str]:
        argv = [self.executable or "octo", "bench", spec.url, "-c", str(spec.connections),
                "-d", str(spec.duration), "-t", str(spec.threads), "--json"]
        for key, value in spec.headers:
            argv += ["-H", f"{key}: {value}"]
        if spec.method != "GET":
            argv += ["-m", spec.method]
        if spec.body:
            argv += ["-b", f"@{self.scratch_file('body', '.bin', spec.body)}"]
        return pinned(spec.cpu, argv)

    def run(self, spec: LoadSpec) -> LoadResult:
        output, _ = run_bounded("octo bench", self.command(spec), spec.duration)
        return parse_octo_bench(output)


def parse_octo_bench(output: str) -> LoadResult:
    """req/s, p50/p99 (ms), errors and the generator's own CPU from ``octo bench --json``."""
    try:
        data: dict[str, Any] = json.loads(output)
        latency = data["latency_us"]
        errors = {str(kind): int(count) for kind, count in data["errors"].items()}
        result = LoadResult(
            requests_per_sec=float(data["requests_per_sec"]),
            p50_ms=float(latency["p50"]) / 1000.0,
            p99_ms=float(latency["p99"]) / 1000.0,
            requests=int(data["requests"]),
            errors=sum(errors.values()),
            error_detail=octo_bench_errors(errors, data.get("statuses", {})),
            output=output,
            cpu_percent=float(data["load_cpu_percent_of_one_core"]),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise LoadError(f"cannot read octo bench output ({exc!r}):\n{output.strip()[-800:]}") \
            from exc
    return result


def octo_bench_errors(errors: dict[str, int], statuses: dict[str, int]) -> str:
    if not any(errors.values()):
        return ""
    counts = ", ".join(f"{kind} {count}" for kind, count in errors.items() if count)
    return f"{counts}; statuses {statuses}"


GENERATORS: dict[str, type[LoadGenerator]] = {Wrk.name: Wrk, OctoBench.name: OctoBench}
AUTO = "auto"  # wrk when it is installed, else octo bench


def resolve(name: str) -> str:
    """The generator *name* stands for: ``auto`` becomes wrk if installed, else octo-bench."""
    if name != AUTO:
        return name
    return Wrk.name if shutil.which("wrk") is not None else OctoBench.name
