"""What the suite measures: scenarios and servers as plain table entries.

Adding a scenario or a server is one more entry below, plus an app module in
``benchmarks/apps/`` where needed; run.py has no per-scenario or per-server code paths.
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
    report_header: str = ""  # a response header whose value per server the report shows
    interface: str = "asgi"  # the app's: "wsgi" scenarios go to servers that speak WSGI


@dataclasses.dataclass(frozen=True, slots=True)
class Server:
    """How to start one server; ``argv`` is a template (see ``command``)."""

    name: str
    argv: tuple[str, ...]
    only: frozenset[str] | None = None  # scenario names it takes part in; None: all
    note: str = ""
    env: tuple[tuple[str, str], ...] = ()  # added to the server's environment
    interfaces: frozenset[str] = frozenset({"asgi"})  # the app interfaces it serves

    def serves(self, scenario: Scenario) -> bool:
        return (scenario.interface in self.interfaces
                and (self.only is None or scenario.name in self.only))

    def command(self, fields: Mapping[str, str]) -> list[str]:
        """Fill the template: {bin} venv scripts, {python}, {apps}, {app}, {host}, {port}."""
        return [part.format_map(fields) for part in self.argv]


KB = 1024
POST_BODY = b"x" * (10 * KB)

SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        name="hello",
        description="raw ASGI app, 13-byte text/plain body, keep-alive",
        app="hello:app",
        expect_body=b"Hello, world!",
    ),
    Scenario(
        name="json",
        description='raw ASGI app, json.dumps({"message": "Hello, world!"}) per request',
        app="plain:json_app",
        expect_body=b'{"message": "Hello, world!"}',
    ),
    Scenario(
        name="body_10k",
        description="raw ASGI app, fixed 10 KB body (content-length)",
        app="plain:body_10k",
        expect_body=b"x" * (10 * KB),
    ),
    Scenario(
        name="body_100k",
        description="raw ASGI app, fixed 100 KB body (content-length)",
        app="plain:body_100k",
        expect_body=b"x" * (100 * KB),
    ),
    Scenario(
        name="post_echo",
        description="raw ASGI app, 10 KB POST body read to its end and echoed back",
        app="plain:echo",
        method="POST",
        body=POST_BODY,
        expect_body=POST_BODY,
    ),
    Scenario(
        name="file_100k",
        description="raw ASGI app, a 100 KB file sent with http.response.pathsend where the "
                    "server advertises it in scope['extensions'], else read and sent as a body",
        app="plain:file_100k",
        report_header="x-sent-with",
    ),
    Scenario(
        name="stream",
        description="raw ASGI app, 10 chunks of 1 KB with more_body (chunked encoding)",
        app="plain:stream",
        expect_body=b"x" * (10 * KB),
    ),
    Scenario(
        name="sleep_10ms",
        description="raw ASGI app, await asyncio.sleep(0.01) then hello, 256 connections",
        app="plain:sleep_10ms",
        connections=256,
        expect_body=b"Hello, world!",
    ),
    Scenario(
        name="starlette_json",
        description='Starlette route returning JSONResponse({"message": "Hello, world!"})',
        app="starlette_json:app",
        path="/json",
        expect_body=b'{"message":"Hello, world!"}',
    ),
    Scenario(
        name="django",
        description="Django 5 async view returning JsonResponse, settings in code, no database, "
                    "CommonMiddleware only",
        app="django_bench.asgi:application",
        path="/json",
        expect_body=b'{"message": "Hello, world!"}',
    ),
    Scenario(
        name="django_sync",
        description="the same Django project, a sync view (run in a thread, as Django runs "
                    "every sync view under ASGI)",
        app="django_bench.asgi:application",
        path="/json-sync",
        expect_body=b'{"message": "Hello, world!"}',
    ),
    Scenario(
        name="django_handler",
        description="the sync view, served as most projects serve Django: the ASGIHandler "
                    "that get_asgi_application() returns, no lifespan",
        app="django_bench.asgi:django_app",
        path="/json-sync",
        expect_body=b'{"message": "Hello, world!"}',
    ),
    Scenario(
        name="django_wsgi",
        description="the sync view, served as Django projects are under gunicorn: the "
                    "WSGIHandler that get_wsgi_application() returns",
        app="django_bench.wsgi:application",
        path="/json-sync",
        expect_body=b'{"message": "Hello, world!"}',
        interface="wsgi",
    ),
    Scenario(
        name="hello_close",
        description="hello with keep-alive off: every request on a new connection "
                    "(Connection: close)",
        app="hello:app",
        headers=(("Connection", "close"),),
        expect_body=b"Hello, world!",
    ),
)

SERVERS: tuple[Server, ...] = (
    Server(
        name="octo",
        argv=("{bin}/octo", "serve", "{app}", "--host", "{host}", "--port", "{port}",
              "--workers", "1", "--no-access-log", "--log-level", "warning"),
        note="master process + 1 worker (a WSGI app is detected: one thread runs it)",
        interfaces=frozenset({"asgi", "wsgi"}),
    ),
    Server(
        name="octo-pure",
        argv=("{bin}/octo", "serve", "{app}", "--host", "{host}", "--port", "{port}",
              "--workers", "1", "--no-access-log", "--log-level", "warning"),
        note="octo with its pure-Python HTTP core (OCTO_CORE=python): the reference the "
             "compiled core is built from",
        env=(("OCTO_CORE", "python"),),
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
        name="granian-wsgi",
        argv=("{bin}/granian", "--interface", "wsgi", "--host", "{host}", "--port", "{port}",
              "--workers", "1", "--blocking-threads", "1", "--http", "1", "--no-access-log",
              "--log-level", "warning", "{app}"),
        note="granian's WSGI interface: supervisor + 1 worker, 1 blocking thread",
        interfaces=frozenset({"wsgi"}),
    ),
    Server(
        name="gunicorn",
        argv=("{bin}/gunicorn", "--bind", "{host}:{port}", "--workers", "1",
              "--worker-class", "gthread", "--threads", "1", "--keep-alive", "60",
              "--log-level", "warning",
              "{app}"),
        note="the WSGI reference: master + 1 gthread worker, 1 thread (the sync worker "
             "closes every connection)",
        interfaces=frozenset({"wsgi"}),
    ),
    Server(
        name="hypercorn",
        argv=("{bin}/hypercorn", "--bind", "{host}:{port}", "--workers", "1",
              "--worker-class", "uvloop", "--log-level", "warning", "{app}"),
        note="master process + 1 worker, uvloop worker class, no access log (its default)",
    ),
    Server(
        name="raw-ceiling",
        argv=("{python}", "{apps}/raw_ceiling.py", "--host", "{host}", "--port", "{port}"),
        only=frozenset({"hello"}),
        note="uvloop + httptools asyncio.Protocol, fixed response, no ASGI: the stack's ceiling",
    ),
    Server(
        name="asgi-floor",
        argv=("{python}", "{apps}/asgi_floor.py", "--host", "{host}", "--port", "{port}",
              "--app", "{app}"),
        only=frozenset({"hello", "json", "starlette_json"}),
        note="uvloop + httptools with only what ASGI demands (scope, app call, one write; "
             "no checks, no Task): the bound for any ASGI server on this stack",
    ),
)

# --quick: a short smoke run for CI, these scenarios and servers unless named otherwise.
QUICK_SCENARIOS = "hello,json,post_echo"
QUICK_SERVERS = "octo,uvicorn"


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
