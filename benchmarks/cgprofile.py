"""Reading callgrind's output files: self cost (Ir, instructions executed) per object and
function, and the groups the instructions report shows (interpreter, octo's compiled core,
httptools, uvloop, ...).

Only the file format is parsed (``callgrind.out.<pid>.<part>``, "positions: line", one event
or more, the first being Ir); callgrind_annotate is not needed. Cost lines after a
``calls=`` line are the inclusive cost of that call and are not the caller's own: they are
skipped, so the self costs of a file add up to its ``summary:`` line, which ``read`` checks.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

_NAMED = re.compile(r"^\((\d+)\)(?: (.*))?$")
_RECURSION = re.compile(r"'\d+$")
# name spec -> the table it shares (callgrind compresses cob= with ob=, cfn= with fn=...)
_TABLES = {"ob": "ob", "cob": "ob", "fl": "fl", "fi": "fl", "fe": "fl", "cfi": "fl",
           "cfl": "fl", "fn": "fn", "cfn": "fn"}


class ProfileError(ValueError):
    """A callgrind file that cannot be read or whose costs do not add up."""


@dataclasses.dataclass(slots=True)
class Profile:
    """One process's dump: its command and pid, and Ir per (object, function)."""

    path: Path
    pid: int
    command: str
    total: int
    by_function: Counter[tuple[str, str]]

    def by_object(self) -> Counter[str]:
        out: Counter[str] = Counter()
        for (obj, _), cost in self.by_function.items():
            out[obj] += cost
        return out


def read(path: Path) -> Profile:
    """Parse one callgrind output file; ProfileError if its self costs miss its summary."""
    names: dict[str, dict[str, str]] = {"ob": {}, "fl": {}, "fn": {}}
    by_function: Counter[tuple[str, str]] = Counter()
    obj = fn = "???"
    summary: int | None = None
    pid, command = 0, ""
    skip_next_cost = False
    with path.open(encoding="utf-8", errors="replace") as lines:
        for raw in lines:
            line = raw.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            first = line[0]
            if first.isdigit() or first in "+-*":
                if skip_next_cost:
                    skip_next_cost = False  # the inclusive cost of the call just named
                    continue
                parts = line.split()
                if len(parts) > 1:
                    by_function[obj, fn] += int(parts[1])
                continue
            key, sep, value = line.partition("=")
            if sep and key in _TABLES:
                name = _resolve(names[_TABLES[key]], value, path)
                if key == "ob":
                    obj = name
                elif key == "fn":
                    fn = name
            elif sep and key == "calls":
                skip_next_cost = True
            elif line.startswith("summary:"):
                summary = int(line.split()[1])
            elif line.startswith("pid:"):
                pid = int(line.split()[1])
            elif line.startswith("cmd:"):
                command = line[4:].strip()
    total = sum(by_function.values())
    if summary is None or total != summary:
        raise ProfileError(f"{path}: self costs add up to {total:,}, summary says {summary}")
    return Profile(path, pid, command, total, by_function)


def _resolve(table: dict[str, str], value: str, path: Path) -> str:
    match = _NAMED.match(value)
    if match is None:
        return value  # an uncompressed name
    ident, name = match.groups()
    if name is not None:
        table[ident] = name
        return name
    try:
        return table[ident]
    except KeyError:
        raise ProfileError(f"{path}: name ({ident}) used before it is defined") from None


# Object groups, first match wins: (label, test on the object's path).
GROUPS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("interpreter (libpython)", re.compile(r"/libpython3[^/]*\.so|/bin/python3[.\d]*$")),
    # octo's own package only: a checkout in a directory named octo has its venv's other
    # packages under /octo/ too (the README's clone did: httptools counted as octo's).
    ("octo compiled", re.compile(r"/octo/(?!.*/site-packages/)[^ ]*\.so$|/octo__mypyc[^/]*\.so$")),
    ("httptools", re.compile(r"/httptools/")),
    ("uvloop", re.compile(r"/uvloop/")),
    ("granian (Rust)", re.compile(r"/granian/")),
    ("_asyncio (C tasks)", re.compile(r"/_asyncio\.cpython")),
    ("other C extensions", re.compile(r"\.cpython-[^/]*\.so$|/lib-dynload/|\.abi3\.so$")),
    ("libc, ld.so, libm", re.compile(r"/(libc|ld-linux[^/]*|libm)[.-][^/]*so")),
)
OTHER = "the rest"
GROUP_ORDER = (*(label for label, _ in GROUPS), OTHER)


def group_of(obj: str) -> str:
    for label, pattern in GROUPS:
        if pattern.search(obj):
            return label
    return OTHER


def grouped(profiles: Iterable[Profile]) -> Counter[str]:
    """Ir per group over several processes (a server's whole tree)."""
    out: Counter[str] = Counter()
    for profile in profiles:
        for obj, cost in profile.by_object().items():
            out[group_of(obj)] += cost
    return out


def top_functions(profiles: Iterable[Profile], count: int) -> list[tuple[str, str, int]]:
    """The *count* functions with the most self cost: (object basename, function, Ir)."""
    merged: Counter[tuple[str, str]] = Counter()
    for profile in profiles:
        for (obj, fn), cost in profile.by_function.items():
            merged[obj, _RECURSION.sub("", fn)] += cost  # f'2: f called by itself
    return [(Path(obj).name, fn, cost) for (obj, fn), cost in merged.most_common(count)]


def dumps(directory: Path) -> list[Path]:
    """The files ``callgrind_control --dump`` wrote there (``callgrind.out.<pid>.<n>``)."""
    return sorted(p for p in directory.glob("callgrind.out.*.*")
                  if p.name.rsplit(".", 1)[-1].isdigit() and p.stat().st_size > 0)
