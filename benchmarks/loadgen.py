"""Load generators behind one small interface, so ``octo bench`` can join wrk later."""

from __future__ import annotations

import abc
import dataclasses
import hashlib
import re
import shutil
import subprocess
from pathlib import Path
from typing import ClassVar

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


def pinned(cpu: int | None, argv: list[str]) -> list[str]:
    return argv if cpu is None else ["taskset", "-c", str(cpu), *argv]


class LoadGenerator(abc.ABC):
    """Runs one bounded load against a URL; *work_dir* takes any scratch files."""

    name: ClassVar[str]

    def __init__(self, work_dir: Path) -> None:
        self.work_dir = work_dir

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
        argv = self.command(spec)
        try:
            proc = subprocess.run(argv, capture_output=True, text=True,
                                  timeout=spec.duration + RUN_GRACE)
        except subprocess.TimeoutExpired as exc:
            raise LoadError(f"wrk did not finish within {spec.duration + RUN_GRACE:.0f} s") from exc
        if proc.returncode != 0:
            raise LoadError(f"wrk exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
        return parse_wrk(proc.stdout)

    def _script(self, spec: LoadSpec) -> Path:
        """A Lua script setting method and body (file named by content, so reused)."""
        text = f"wrk.method = {lua_string(spec.method.encode())}\n" \
               f"wrk.body = {lua_string(spec.body)}\n"
        digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        path = self.work_dir / f"wrk-{digest}.lua"
        if not path.exists():
            path.write_text(text)
        return path


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


GENERATORS: dict[str, type[LoadGenerator]] = {Wrk.name: Wrk}
