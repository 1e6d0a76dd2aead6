"""What the suite measures: scenarios and servers as plain table entries.

Adding a scenario (a 10 KB body, POST echo, streaming, Django...) or a server (hypercorn...)
is one more entry below, plus an app module in ``benchmarks/apps/`` where needed; run.py has
no per-scenario or per-server code paths.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Protocol, TypeVar

BASELINE = "uvicorn"  # ratios are computed against this server, round by round


@dataclasses.dataclass(frozen=True, slots=True)
class Scenario:
    """One kind of request load against one app."""

    name: str
    description: str
    app: str  # module:attribute, importable from benchmarks/apps/
    path: str = "/"
    method: str = "GET"
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()  # e.g. (("Connection", "close"),) for no keep-alive
    connections: int = 64
    threads: int = 1
    expect_status: int = 200
    expect_body: bytes = b""  # the pre-flight response body must contain this
    env: tuple[tuple[str, str], ...] = ()  # extra server environment (DJANGO_SETTINGS_MODULE...)


@dataclasses.dataclass(frozen=True, slots=True)
class Server:
    """How to start one server; ``argv`` is a template (see ``command``)."""

    name: str
    argv: tuple[str, ...]
    only: frozenset[str] | None = None  # scenario names it takes part in; None: all
    note: str = ""

    def serves(self, scenario: Scenario) -> bool:
        return self.only is None or scenario.name in self.only

    def command(self, fields: Mapping[str, str]) -> list[str]:
        """Fill the template: {bin} venv scripts, {python}, {apps}, {app}, {host}, {port}."""
        return [part.format_map(fields) for part in self.argv]


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        name="hello",
        description="raw ASGI app, 13-byte text/plain body, keep-alive",
        app="hello:app",
        expect_body=b"Hello, world!",
    ),
    Scenario(
        name="starlette_json",
        description='Starlette route returning JSONResponse({"message": "Hello, world!"})',
        app="starlette_json:app",
        path="/json",
        expect_body=b'{"message":"Hello, world!"}',
    ),
)

SERVERS: tuple[Server, ...] = (
    Server(
        name="octo",
        argv=("{bin}/octo", "serve", "{app}", "--host", "{host}", "--port", "{port}",
              "--workers", "1", "--no-access-log", "--log-level", "warning"),
        note="master process + 1 worker",
    ),
    Server(
        name="uvicorn",
        argv=("{bin}/uvicorn", "{app}", "--host", "{host}", "--port", "{port}",
              "--http", "httptools", "--loop", "uvloop", "--no-access-log",
              "--log-level", "warning"),
        note="single process (default --workers 1 runs no supervisor)",
    ),
    Server(
        name="granian",
        argv=("{bin}/granian", "--interface", "asgi", "--host", "{host}", "--port", "{port}",
              "--workers", "1", "--loop", "uvloop", "--http", "1", "--no-access-log",
              "--log-level", "warning", "{app}"),
        note="supervisor process + 1 worker; uvloop and HTTP/1-only like the others",
    ),
    Server(
        name="raw-ceiling",
        argv=("{python}", "{apps}/raw_ceiling.py", "--host", "{host}", "--port", "{port}"),
        only=frozenset({"hello"}),
        note="uvloop + httptools asyncio.Protocol, fixed response, no ASGI: the stack's ceiling",
    ),
)


class _Named(Protocol):
    @property
    def name(self) -> str: ...


T = TypeVar("T", bound=_Named)


def pick(kind: str, names: str | None, table: Sequence[T]) -> list[T]:
    """Entries of *table* named in comma-separated *names* (all when None), in table order."""
    if names is None:
        return list(table)
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    known = {entry.name for entry in table}
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise ValueError(f"unknown {kind}: {', '.join(unknown)} "
                         f"(known: {', '.join(sorted(known))})")
    return [entry for entry in table if entry.name in wanted]
