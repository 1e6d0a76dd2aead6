"""Facts about the machine and software a report needs to be read correctly."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import importlib.util
import os
import platform
import resource
import subprocess
import time
from pathlib import Path

PACKAGES = ("octo", "uvicorn", "granian", "hypercorn", "starlette", "django", "httptools",
            "uvloop")


@dataclasses.dataclass(frozen=True, slots=True)
class CpuTimes:
    """Aggregate jiffies from /proc/stat, for the share of time stolen by the hypervisor."""

    total: int
    steal: int

    @classmethod
    def read(cls) -> CpuTimes:
        try:
            first = Path("/proc/stat").read_text().splitlines()[0].split()
        except (OSError, IndexError):
            return cls(0, 0)
        values = [int(v) for v in first[1:]]
        # user nice system idle iowait irq softirq steal guest guest_nice; guests are in user.
        return cls(sum(values[:8]), values[7] if len(values) > 7 else 0)

    def steal_percent_since(self, before: CpuTimes) -> float | None:
        elapsed = self.total - before.total
        return None if elapsed <= 0 else 100.0 * (self.steal - before.steal) / elapsed


def busy_cpu_seconds() -> float:
    """CPU seconds spent non-idle on the whole machine since boot (all cores)."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except (OSError, IndexError):
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq = (int(v) for v in fields[:7])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """CPU seconds of this process plus its reaped children (each finished load run)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def other_cpu_percent(interval: float) -> float:
    """CPU used by processes other than this one and its reaped children over the next
    *interval* seconds, in % of one core (nothing of the suite's may be running)."""
    busy, own = busy_cpu_seconds(), own_cpu_seconds()
    time.sleep(interval)
    used = busy_cpu_seconds() - busy - (own_cpu_seconds() - own)
    return max(0.0, 100.0 * used / interval)


def wait_for_quiet(threshold: float, timeout: float, interval: float = 1.0) -> float:
    """Sample until other processes use under *threshold* % of a core, at most *timeout*
    seconds; returns the seconds waited beyond the first sample."""
    start = time.monotonic()
    while other_cpu_percent(interval) >= threshold:
        if time.monotonic() - start >= timeout:
            break
    return max(0.0, time.monotonic() - start - interval)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "unknown"


def versions() -> dict[str, str]:
    found: dict[str, str] = {}
    for name in PACKAGES:
        try:
            # octo's distribution is octo-server (the name octo is another project's).
            found[name] = importlib.metadata.version("octo-server" if name == "octo" else name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def git_revision(repo: Path) -> str:
    """Short commit of *repo*, with '+dirty' when octo/ has uncommitted changes."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                              timeout=10).stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        dirty = bool(git("status", "--porcelain", "--", "octo"))
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit}{'+dirty' if dirty else ''}" if commit else "unknown"


def resolve_revision(repo: Path, rev: str) -> str:
    """The short commit *rev* names in *repo*, or *rev* itself if git cannot tell."""
    try:
        out = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", f"{rev}^{{commit}}"],
                             capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return rev
    return out or rev


def python_version() -> str:
    return f"{platform.python_implementation()} {platform.python_version()}"


def source_digest(package_dir: Path) -> str:
    """A short digest of every .py file under *package_dir*, to notice edits mid-run."""
    digest = hashlib.sha256()
    for path in sorted(package_dir.rglob("*.py")):
        digest.update(str(path.relative_to(package_dir)).encode() + b"\0")
        try:
            digest.update(path.read_bytes())
        except OSError:
            digest.update(b"<unreadable>")
    return digest.hexdigest()[:12]


def installed_package_dir(name: str) -> Path | None:
    """Where *name* is imported from by this interpreter (the measured copy of octo)."""
    spec = importlib.util.find_spec(name)
    return Path(spec.origin).parent if spec is not None and spec.origin else None
