"""Real frameworks on a real ``octo serve`` process: the Starlette and Django examples.

Each example runs in one server shared by its tests (module-scoped); every test prints the
part of the server log written while it ran, so a failure shows what the server said.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from bounded import bounded_gather
from server import ROOT, Server, ServerFactory, run_command, run_server

pytestmark = pytest.mark.integration

TIMEOUT = httpx.Timeout(10.0)

STARLETTE_APP = "examples.starlette_app.app:app"
DJANGO_APP = "examples.django_project.asgi:application"
DJANGO_DB_ENV = "EXAMPLE_DJANGO_DB"
USERS = {
    "alice": ("alice-password", "alice: curiouser and curiouser"),
    "bob": ("bob-password", "bob: can we fix it? yes we can"),
}


def _log_during_test(srv: Server) -> Iterator[Server]:
    mark = srv.log_size()
    yield srv
    print(f"----- server log during this test ({srv.name}) -----\n{srv.log(mark)}")


# --------------------------------------------------------------------------- Starlette


@pytest.fixture(scope="module")
def starlette_server() -> Iterator[Server]:
    with run_server(STARLETTE_APP, "--log-level", "info", ready_path="/") as srv:
        yield srv


@pytest.fixture
def starlette(starlette_server: Server) -> Iterator[Server]:
    yield from _log_during_test(starlette_server)


@pytest.fixture
def client(starlette: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=starlette.url, timeout=TIMEOUT) as c:
        yield c


def test_starlette_plaintext(client: httpx.Client) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.text == "Hello from Starlette on octo!"
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.headers["content-length"] == str(len(response.content))
    assert "date" in response.headers


def test_starlette_json(client: httpx.Client) -> None:
    response = client.get("/json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"framework": "starlette", "numbers": [1, 2, 3], "ok": True}


def test_starlette_echo_post(client: httpx.Client) -> None:
    response = client.post("/echo", content=b"hello octo", headers={"content-type": "text/x-demo"})
    assert response.status_code == 200
    assert response.content == b"hello octo"
    assert response.headers["content-type"].startswith("text/x-demo")

    big = os.urandom(1024 * 1024)
    response = client.post("/echo", content=big)
    assert response.status_code == 200
    assert response.content == big

    def chunked_body() -> Iterator[bytes]:  # no Content-Length: sent chunked
        yield b"first,"
        yield b"second,"
        yield b"third"

    response = client.post("/echo", content=chunked_body())
    assert response.status_code == 200
    assert response.content == b"first,second,third"

    response = client.post("/echo", content=b"")
    assert response.status_code == 200
    assert response.content == b""


def test_starlette_echo_rejects_get(client: httpx.Client) -> None:
    assert client.get("/echo").status_code == 405


def test_starlette_streaming(client: httpx.Client) -> None:
    pieces: list[tuple[float, bytes]] = []
    with client.stream("GET", "/stream") as response:
        assert response.status_code == 200
        assert response.headers.get("transfer-encoding") == "chunked"
        assert "content-length" not in response.headers
        pieces.extend((time.monotonic(), piece) for piece in response.iter_raw())
    body = b"".join(piece for _, piece in pieces)
    assert body == b"chunk-0\nchunk-1\nchunk-2\nchunk-3\n"
    # That the chunks go out as the app makes them, not at the end, is the next test's: the
    # example's 50 ms between chunks is no proof (a busy client reads them all in one go).


def test_starlette_streaming_delivers_a_chunk_before_the_app_makes_the_next(
        tmp_path: Path) -> None:
    marker = tmp_path / "send-the-second"
    with run_server("apps.gated_stream:app", "--app-dir", str(ROOT / "tests")) as srv, \
            httpx.Client(base_url=srv.url, timeout=TIMEOUT) as http:
        with http.stream("GET", "/stream", params={"marker": str(marker)}) as response:
            assert response.status_code == 200
            pieces = response.iter_raw()
            assert next(pieces) == b"first\n"  # while the app waits for the marker
            marker.touch()
            assert b"".join(pieces) == b"second\n"


def test_starlette_path_params(client: httpx.Client) -> None:
    response = client.get("/items/42")
    assert response.status_code == 200
    assert response.json() == {"item_id": 42, "double": 84}
    assert client.get("/items/0").json() == {"item_id": 0, "double": 0}
    assert client.get("/items/not-a-number").status_code == 404
    assert client.get("/no/such/route").status_code == 404


def test_starlette_lifespan_state(client: httpx.Client) -> None:
    response = client.get("/state")
    assert response.status_code == 200
    data = response.json()
    assert data["started"] is True
    assert isinstance(data["started_at"], float)
    assert data["started_at"] <= time.time()


def test_starlette_exception_is_500_and_logged(starlette: Server, client: httpx.Client) -> None:
    mark = starlette.log_size()
    response = client.get("/error")
    assert response.status_code == 500
    assert response.text == "Internal Server Error"
    log = starlette.wait_for_log("RuntimeError: boom: deliberate failure in /error", since=mark)
    assert "Exception in ASGI application" in log
    assert "Traceback (most recent call last)" in log
    assert 'raise RuntimeError(ERROR_MESSAGE)' in log
    # The server survives and keeps serving, on the same client.
    assert client.get("/").status_code == 200
    assert starlette.alive()


def test_starlette_keep_alive_reuses_one_connection(starlette: Server,
                                                    client: httpx.Client) -> None:
    ports: set[Any] = set()
    for i in range(20):
        response = client.get("/client")
        assert response.status_code == 200
        assert response.headers.get("connection", "").lower() != "close"
        ports.add(response.json()["port"])
        # Mix in other kinds of exchanges on the same connection.
        if i % 5 == 0:
            assert client.post("/echo", content=b"x" * i).content == b"x" * i
            assert client.get("/stream").content.count(b"chunk-") == 4
    assert len(ports) == 1, f"one httpx.Client used several connections: {ports}"
    with httpx.Client(base_url=starlette.url, timeout=TIMEOUT) as other:
        other_port = other.get("/client").json()["port"]
    assert other_port not in ports


def test_starlette_lifespan_shutdown_on_sigterm(octo_server: ServerFactory) -> None:
    srv = octo_server(STARLETTE_APP, "--no-access-log")
    assert httpx.get(srv.url + "/state", timeout=TIMEOUT).json()["started"] is True
    assert srv.stop() == 0
    assert not srv.killed
    log = srv.log()
    assert "starlette_app: startup" in log
    assert "starlette_app: shutdown" in log
    assert log.index("starlette_app: startup") < log.index("starlette_app: shutdown")


# --------------------------------------------------------------------------- Django


# migrate (a fresh database), collectstatic and the boot: over a minute on a busy machine;
# the deadline only ends a hung start.
STARTUP = 180.0


@pytest.fixture(scope="module")
def django_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("django") / "demo.sqlite3"


@pytest.fixture(scope="module")
def django_server(django_db: Path) -> Iterator[Server]:
    """``python -m examples.django_project`` (migrate, demo users, collectstatic, exec octo)
    on a tmp DB and a tmp STATIC_ROOT."""
    env = {DJANGO_DB_ENV: str(django_db),
           "EXAMPLE_DJANGO_STATIC": str(django_db.parent / "static")}
    command = [sys.executable, "-m", "examples.django_project"]
    with run_command(command, "--log-level", "info", env=env, ready_path="/hello",
                     startup_timeout=STARTUP) as srv:
        yield srv


@pytest.fixture
def django(django_server: Server) -> Iterator[Server]:
    yield from _log_during_test(django_server)


def test_django_database_in_tmp_dir(django: Server, django_db: Path) -> None:
    assert django_db.is_file() and django_db.stat().st_size > 0
    log = django.log()
    assert "created demo user 'alice'" in log
    assert "created demo user 'bob'" in log


def test_django_setup_is_idempotent(django: Server, django_db: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "examples.django_project.manage", "setup_demo"],
        cwd=ROOT, env={**os.environ, DJANGO_DB_ENV: str(django_db)},
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "created" not in result.stdout
    assert "demo database ready" in result.stdout


def test_django_hello(django: Server) -> None:
    with httpx.Client(base_url=django.url, timeout=TIMEOUT) as c:
        for _ in range(3):
            response = c.get("/hello")
            assert response.status_code == 200
            assert response.text == "Hello from Django on octo!\n"
            assert response.headers["content-type"] == "text/plain; charset=utf-8"


def test_django_admin_static_files_are_served_by_octo(django: Server,
                                                     django_db: Path) -> None:
    collected = django_db.parent / "static" / "admin" / "css" / "base.css"
    assert collected.is_file()  # collectstatic ran, into the tmp STATIC_ROOT
    with httpx.Client(base_url=django.url, timeout=TIMEOUT) as c:
        login = c.get("/admin/login/")
        assert login.status_code == 200 and "/static/admin/css/base.css" in login.text
        css = c.get("/static/admin/css/base.css")
        assert css.status_code == 200 and css.content == collected.read_bytes()
        assert css.headers["content-type"] == "text/css; charset=utf-8"
        assert "etag" in css.headers and css.headers["cache-control"].startswith("public")
        again = c.get("/static/admin/css/base.css", headers={"If-None-Match": css.headers["etag"]})
        assert again.status_code == 304
        # Django (DEBUG off) serves no static files itself: octo answered.
        assert c.get("/static/admin/css/missing.css").headers["content-type"].startswith(
            "text/plain")


def _credentials(username: str) -> dict[str, str]:
    return {"username": username, "password": USERS[username][0]}


def test_django_login_rejects_bad_credentials(django: Server) -> None:
    with httpx.Client(base_url=django.url, timeout=TIMEOUT) as c:
        response = c.post("/login", data={"username": "alice", "password": "wrong"})
        assert response.status_code == 401
        assert response.json()["ok"] is False
        assert "sessionid" not in c.cookies
        assert c.get("/login").status_code == 405
        response = c.get("/whoami", params={"n": "anon"})
        assert response.status_code == 401
        assert response.json() == {"username": None, "n": "anon"}


def test_django_logout(django: Server) -> None:
    with httpx.Client(base_url=django.url, timeout=TIMEOUT) as c:
        response = c.post("/login", data=_credentials("bob"))
        assert response.status_code == 200, response.text
        assert response.json() == {"ok": True, "username": "bob"}
        old_session = c.cookies["sessionid"]
        assert c.get("/whoami").json()["username"] == "bob"

        response = c.post("/logout")
        assert response.status_code == 200
        assert response.json() == {"ok": True}
        response = c.get("/whoami")
        assert response.status_code == 401
        assert response.json()["username"] is None

    # The old session is gone on the server, not just forgotten by the client.
    with httpx.Client(base_url=django.url, timeout=TIMEOUT,
                      cookies={"sessionid": old_session}) as stale:
        assert stale.get("/whoami").status_code == 401


REQUESTS_PER_USER = 100  # a session mixed up between users shows up at once
CONNECTIONS_PER_USER = 8


async def _interleaved_whoami(url: str) -> None:
    limits = httpx.Limits(max_connections=CONNECTIONS_PER_USER,
                          max_keepalive_connections=CONNECTIONS_PER_USER)
    clients = {name: httpx.AsyncClient(base_url=url, timeout=TIMEOUT, limits=limits)
               for name in USERS}
    try:
        for name, c in clients.items():
            response = await c.post("/login", data=_credentials(name))
            assert response.status_code == 200, response.text
            assert response.json() == {"ok": True, "username": name}
        sessions = {name: c.cookies["sessionid"] for name, c in clients.items()}
        assert sessions["alice"] != sessions["bob"]

        def whoami(name: str, n: int) -> Callable[[], Awaitable[tuple[str, int, httpx.Response]]]:
            async def call() -> tuple[str, int, httpx.Response]:
                return name, n, await clients[name].get("/whoami", params={"n": str(n)})
            return call

        # Both users' requests in flight at the same time, each user with no more in flight
        # than its pooled connections (no request waits for the pool, so no PoolTimeout).
        per_user = await asyncio.gather(*(
            bounded_gather([whoami(name, n) for n in range(REQUESTS_PER_USER)],
                           limit=CONNECTIONS_PER_USER)
            for name in USERS))
        results = [result for replies in per_user for result in replies]

        wrong = []
        for name, n, response in results:
            expected = {"username": name, "motto": USERS[name][1], "n": str(n)}
            if response.status_code != 200 or response.json() != expected:
                wrong.append((name, n, response.status_code, response.text))
        assert not wrong, f"{len(wrong)} of {len(results)} answers were wrong: {wrong[:5]}"
        assert len(results) == 2 * REQUESTS_PER_USER

        # Nobody's session cookie was replaced by someone else's.
        assert {name: c.cookies["sessionid"] for name, c in clients.items()} == sessions

        # Logging alice out leaves bob logged in.
        assert (await clients["alice"].post("/logout")).status_code == 200
        assert (await clients["alice"].get("/whoami")).status_code == 401
        response = await clients["bob"].get("/whoami", params={"n": "after"})
        assert response.json() == {"username": "bob", "motto": USERS["bob"][1], "n": "after"}
    finally:
        for c in clients.values():
            await c.aclose()


def test_django_sessions_never_cross_users(django: Server) -> None:
    """Two logged-in users, interleaved concurrent requests: each answer is its own."""
    asyncio.run(_interleaved_whoami(django.url))
    assert django.alive()
