"""Another local user (uid 65534) attacking a running server's files and sockets.

Real servers, real forked workers; the attacker runs through setpriv (skipped, with the
reason shown, where that cannot run). Planted files go where a server's names used to be
predictable (``/dev/shm/octo-<pid>-<table>-<schema>.tbl``, ``/tmp/octo-<port>.ctl``) and
wherever else the attacker can reach; none of them may be followed, adopted or trusted.
"""

from __future__ import annotations

import glob
import json
import mmap
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest
from attacker import FAKE_CONTROL_SERVER, NOBODY, Attacker
from server import ROOT, Server, listening_socket, run_server

from octo.runtime.cache import Cache
from octo.runtime.table import Column, Int, Table

APP = "apps.local_attack_app:asgi"
APP_DIR = ("--app-dir", str(ROOT / "tests"))
REFUSED = f"it is served by uid {NOBODY}"


@pytest.fixture
def nobody() -> Iterator[Attacker]:
    with Attacker.or_skip() as attacker:
        yield attacker


@pytest.fixture
def planted() -> Iterator[list[str]]:
    """Paths the attacker planted outside its own directories, removed afterwards."""
    paths: list[str] = []
    yield paths
    for path in paths:
        if os.path.lexists(path):
            os.unlink(path)


def get(srv: Server, path: str) -> str:
    response = httpx.get(srv.url + path, timeout=30)
    assert response.status_code == 200, response.text
    return response.text


def octo_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "octo", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env={**os.environ, **(env or {})})


def table_image(name: str, rows: int, columns: dict[str, Column], key_size: int = 64,
                content: dict[str, dict[str, Any]] | None = None) -> tuple[str, bytes]:
    """(schema hash, file bytes) of a table as the server would lay it out, holding
    *content*: what an attacker prepares."""
    table = Table(name, rows, columns, key_size)
    for key, values in (content or {}).items():
        table.set(key, values)
    return table.schema_hash(), bytes(table.mem)


def legacy_table_path(pid: int, name: str, schema: str) -> str:
    return f"/dev/shm/octo-{pid}-{name}-{schema}.tbl"


def runtime_root() -> str:
    """The servers' runtime directory (they run with this process's environment)."""
    from octo.runtime.rundir import default_root

    return default_root()


def gated(tmp_path: Path, plant: Callable[[int], None],
          *args: str, **kwargs: Any) -> AbstractContextManager[Server]:
    """A server whose worker opens its tables only after *plant(master_pid)* has run."""
    gate = tmp_path / "gate"

    def ready(srv: Server) -> bool:
        if not gate.exists():
            plant(srv.pid)
            gate.touch()
        try:
            httpx.get(srv.url + "/", timeout=0.5)
        except httpx.HTTPError:
            return False
        return True

    return run_server(APP, *APP_DIR, "--no-access-log", *args,
                      env={"OCTO_TEST_GATE": str(gate)}, ready=ready, **kwargs)


class Boom:
    """Unpickling this runs a command as the server's user."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


# -- item 1: tables ------------------------------------------------------------------------------

def test_a_symlink_planted_at_the_table_path_is_never_followed(tmp_path: Path, nobody: Attacker,
                                                               planted: list[str]) -> None:
    victim = tmp_path / "victim"  # a root-only file the attacker wants overwritten
    victim.write_bytes(b"precious")
    schema, _ = table_image("links", 64, {"count": Int})

    def plant(pid: int) -> None:
        planted.append(legacy_table_path(pid, "links", schema))
        nobody.run("ln", "-s", str(victim), planted[-1])
        inside = os.path.join(runtime_root(), f"{pid}-links-{schema}.tbl")
        assert nobody.run("ln", "-s", str(victim), inside, check=False).returncode != 0

    with gated(tmp_path, plant) as srv:
        assert get(srv, "/links") == "1"  # a fresh table of the server's own
    assert victim.read_bytes() == b"precious"


def test_a_precreated_table_with_a_forged_counter_is_not_adopted(tmp_path: Path,
                                                                 nobody: Attacker,
                                                                 planted: list[str]) -> None:
    shared = nobody.shared_dir()
    schema, image = table_image("hits", 64, {"count": Int}, content={"total": {"count": 1337}})
    (shared / "forged.tbl").write_bytes(image)
    (shared / "forged.tbl").chmod(0o644)

    def plant(pid: int) -> None:
        planted.append(legacy_table_path(pid, "hits", schema))
        nobody.run("cp", str(shared / "forged.tbl"), planted[-1])

    with gated(tmp_path, plant) as srv:
        assert get(srv, "/hits") == "0"
        assert get(srv, "/incr") == "1"
        listing = nobody.run("ls", runtime_root(), check=False)  # guessing names: no use
        assert listing.returncode != 0 and f"{srv.pid}-" not in listing.stdout


def cache_image(content: dict[str, dict[str, Any]] | None = None) -> tuple[str, bytes]:
    return table_image("cache", 16, Cache.columns(256), key_size=128, content=content)


def test_a_planted_pickled_cache_row_is_never_executed(tmp_path: Path, nobody: Attacker,
                                                       planted: list[str]) -> None:
    marker = tmp_path / "executed"
    schema, image = cache_image({"report": {"value": pickle.dumps(Boom(marker)),
                                            "expires": 0.0}})
    shared = nobody.shared_dir()
    (shared / "cache.tbl").write_bytes(image)
    (shared / "cache.tbl").chmod(0o644)

    def plant(pid: int) -> None:
        planted.append(legacy_table_path(pid, "cache", schema))
        nobody.run("cp", str(shared / "cache.tbl"), planted[-1])

    with gated(tmp_path, plant) as srv:
        assert get(srv, "/cache") == "'miss'"
    assert not marker.exists()


def test_a_forged_row_in_the_live_cache_is_a_logged_miss(tmp_path: Path) -> None:
    """Whatever writes the shared memory without this server's key (here: root, writing the
    live file) cannot make a worker unpickle."""
    marker = tmp_path / "executed"
    _, image = cache_image({"report": {"value": pickle.dumps(Boom(marker)), "expires": 0.0}})
    with run_server(APP, *APP_DIR, "--no-access-log") as srv:
        assert get(srv, "/cache") == "'miss'"
        [path] = (glob.glob(os.path.join(runtime_root(), f"{srv.pid}-cache-*.tbl"))
                  or glob.glob(f"/dev/shm/octo-{srv.pid}-cache-*.tbl"))
        with open(path, "r+b") as fh, mmap.mmap(fh.fileno(), 0) as mem:
            mem[:len(image)] = image
        assert get(srv, "/cache") == "'miss'"
        assert get(srv, "/cache") == "'miss'"
        log = srv.log()
    assert not marker.exists()
    assert log.count("'report' was not written by this server (integrity check failed)") == 1


# -- the runtime directory -------------------------------------------------------------------------

def plant_foreign_dir(nobody: Attacker, path: Path) -> None:
    nobody.run("mkdir", "-m", "0700", str(path))


def plant_symlink_to_own_dir(nobody: Attacker, path: Path) -> None:
    nobody.run("ln", "-s", str(nobody.own_dir(path.parent)), str(path))


def plant_open_dir(nobody: Attacker, path: Path) -> None:
    path.mkdir()
    path.chmod(0o777)  # the server's own, but anyone may enter it


ADVICE = "remove it, or choose another --runtime-dir"


@pytest.mark.parametrize("plant, problem", [
    (plant_foreign_dir, f"belongs to uid {NOBODY}, not to this user (uid 0): refusing to use "
                        f"it ({ADVICE})"),
    (plant_symlink_to_own_dir, f"is a symbolic link: refusing to use it ({ADVICE})"),
    (plant_open_dir, "has mode 0777: group/other may enter it: refusing to use it (chmod 700 "
                     "it, or choose another --runtime-dir)"),
], ids=["precreated-by-nobody", "symlink", "mode-0777"])
def test_an_unsafe_runtime_dir_stops_the_server_with_one_line(
        nobody: Attacker, plant: Callable[[Attacker, Path], None], problem: str) -> None:
    shared = nobody.shared_dir()
    path = shared / "run"
    plant(nobody, path)
    result = octo_cli("serve", "examples.hello.app:app", "--port", "0", "--runtime-dir",
                      str(path))
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines() == [f"octo: runtime directory {path} {problem}"]
    assert not glob.glob(f"{shared}/**/*.ctl", recursive=True)


def test_a_runtime_dir_swapped_for_a_symlink_while_serving_changes_nothing(
        tmp_path: Path, nobody: Attacker) -> None:
    """The attacker owns the parent of --runtime-dir, moves the server's directory away and
    puts a link to its own directory (with a fake control socket) in its place."""
    parent = nobody.shared_dir(mode=0o755)
    os.chown(parent, NOBODY, NOBODY)
    run_dir, moved = parent / "run", parent / "run.moved"
    sock = listening_socket()
    port = sock.getsockname()[1]
    with run_server(APP, *APP_DIR, "--no-access-log", "--runtime-dir", str(run_dir),
                    sock=sock) as srv:
        assert get(srv, "/incr") == "1"
        evil = nobody.own_dir(parent)
        nobody.run("mv", str(run_dir), str(moved))
        nobody.run("ln", "-s", str(evil), str(run_dir))
        fake = nobody.popen_python(FAKE_CONTROL_SERVER, str(evil / f"octo-{port}.ctl"))
        try:
            assert fake.stdout is not None and fake.stdout.readline() == "ready\n"
            before = workers(moved, port)
            os.kill(srv.pid, signal.SIGHUP)  # new workers open the tables after the swap
            wait_for(lambda: (pids := workers(moved, port)) != [] and not set(pids) & set(before))
            assert get(srv, "/incr") == "2"  # the same table, through the held directory
            status = octo_cli("status", "--runtime-dir", str(run_dir), "--port", str(port))
            assert os.listdir(evil) == [f"octo-{port}.ctl"]  # nothing of the server's
        finally:
            fake.kill()
            fake.wait()
    assert status.returncode == 1 and "4242" not in status.stdout
    assert status.stderr.splitlines() == [
        f"octo: runtime directory {run_dir} is a symbolic link: refusing to use it (remove "
        "it, or choose another --runtime-dir)"]


def workers(run_dir: Path, port: int) -> list[int]:
    """Pids of the ready workers, asked through the real runtime directory."""
    result = octo_cli("status", "--json", "--runtime-dir", str(run_dir), "--port", str(port))
    assert result.returncode == 0, result.stderr
    reply = json.loads(result.stdout)
    if len(reply["workers"]) != 1:
        return []
    return [w["pid"] for w in reply["workers"] if w["state"] == "ready"]


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_an_xdg_runtime_dir_of_another_user_is_not_used(nobody: Attacker) -> None:
    xdg = nobody.own_dir(nobody.shared_dir(), mode="0700")  # that user's own runtime dir
    with run_server(APP, *APP_DIR, "--no-access-log", "--task-workers", "1",
                    env={"XDG_RUNTIME_DIR": str(xdg)}) as srv:
        assert get(srv, "/incr") == "1"
        assert get(srv, "/task").isdigit()
        assert os.listdir(xdg) == []


# -- item 2: control and task sockets ------------------------------------------------------------

def start_fake_control(nobody: Attacker, path: str) -> subprocess.Popen[str]:
    fake = nobody.popen_python(FAKE_CONTROL_SERVER, path)
    assert fake.stdout is not None
    if fake.stdout.readline() != "ready\n":
        fake.kill()
        raise AssertionError(f"the fake control server did not start: {fake.communicate()}")
    return fake


def test_a_fake_control_socket_at_the_old_default_path_fools_neither_server_nor_clients(
        nobody: Attacker, planted: list[str]) -> None:
    sock = listening_socket()
    port = sock.getsockname()[1]
    legacy = os.path.join(tempfile.gettempdir(), f"octo-{port}.ctl")  # before any server
    planted.append(legacy)
    fake = start_fake_control(nobody, legacy)
    no_xdg = {"XDG_RUNTIME_DIR": ""}  # where the old default was the temp directory
    try:
        with run_server(APP, *APP_DIR, "--no-access-log", sock=sock, env=no_xdg) as srv:
            status = octo_cli("status", "--json", "--port", str(port), env=no_xdg)
            assert status.returncode == 0, status.stderr
            assert json.loads(status.stdout)["master"] == srv.pid  # the real one
            for command in ("status", "stop"):
                result = octo_cli(command, "--control", legacy, env=no_xdg)
                assert result.returncode == 1 and result.stdout == ""
                assert result.stderr.splitlines() == [
                    f"octo: refusing {legacy}: {REFUSED} (pid {fake.pid}), which is neither "
                    "this user (uid 0) nor root"]
            assert get(srv, "/incr") == "1" and srv.alive()
    finally:
        fake.kill()
        fake.wait()


def test_a_socket_planted_at_an_explicit_control_path_is_refused_with_one_line(
        nobody: Attacker) -> None:
    ctl = nobody.shared_dir() / "octo.pid.ctl"
    fake = start_fake_control(nobody, str(ctl))
    try:
        result = octo_cli("serve", "examples.hello.app:app", "--port", "0", "--control",
                          str(ctl))
    finally:
        fake.kill()
        fake.wait()
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        f"octo: {ctl} belongs to uid {NOBODY}: refusing to use or replace it (remove it, or "
        "choose another --control)")
    assert "Traceback" not in result.stderr


STOP_CLIENT = r'''
import socket, sys
sock = socket.socket(socket.AF_UNIX)
sock.connect(sys.argv[1])
try:
    sock.sendall(b'{"cmd": "stop"}\n')
    print(repr(sock.recv(4096)))
except OSError as exc:
    print(exc)
'''


def test_a_client_of_another_user_cannot_command_the_server(nobody: Attacker) -> None:
    ctl = nobody.shared_dir(mode=0o755) / "octo.ctl"
    with run_server(APP, *APP_DIR, "--no-access-log", "--control", str(ctl)) as srv:
        ctl.chmod(0o666)  # exposed by a mistake: the peer check must still refuse
        attempt = nobody.python(STOP_CLIENT, str(ctl))
        srv.wait_for_log(f"control: refused a connection from uid {NOBODY}", timeout=30)
        assert '"ok"' not in attempt.stdout, attempt.stdout
        assert get(srv, "/incr") == "1" and srv.alive()
        status = octo_cli("status", "--json", "--control", str(ctl))
        assert status.returncode == 0 and not json.loads(status.stdout)["stopping"]


TASK_CLIENT = r'''
import os, pickle, socket, struct, sys
frame = pickle.dumps((os.system, ("touch " + sys.argv[2],), {}, True))
sock = socket.socket(socket.AF_UNIX)
sock.connect(sys.argv[1])
try:
    sock.sendall(struct.pack(">Q", len(frame)) + frame)
    print(repr(sock.recv(4096)))
except OSError as exc:
    print(exc)
'''


def expose(nobody: Attacker, path: str) -> str:
    """A hard link to socket *path* in a directory the attacker can reach, mode 0666: as if
    a mistake had exposed it."""
    for under in ("/dev/shm", tempfile.gettempdir()):
        link = str(nobody.shared_dir(under=under, mode=0o755) / "tasks.sock")
        try:
            os.link(path, link)
        except OSError:
            continue
        os.chmod(link, 0o666)
        return link
    raise AssertionError(f"cannot link {path} anywhere the attacker reaches")


def test_a_client_of_another_user_cannot_send_tasks(tmp_path: Path, nobody: Attacker) -> None:
    marker = tmp_path / "executed"
    with run_server(APP, *APP_DIR, "--no-access-log", "--task-workers", "1") as srv:
        [path] = (glob.glob(os.path.join(runtime_root(), f"{srv.pid}-tasks.sock"))
                  or glob.glob(f"{tempfile.gettempdir()}/octo-{srv.pid}-tasks.sock"))
        attempt = nobody.python(TASK_CLIENT, expose(nobody, path), str(marker))
        srv.wait_for_log(f"task socket: refused a connection from uid {NOBODY}",
                         timeout=30)
        assert "True" not in attempt.stdout, attempt.stdout
        assert get(srv, "/task").isdigit()  # the task worker still serves the server's own
    assert not marker.exists()


def test_a_symlink_planted_at_the_pid_file_path_is_replaced_not_followed(
        tmp_path: Path, nobody: Attacker) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious")
    pid_file = nobody.shared_dir() / "octo.pid"  # --pid in a world-writable directory
    nobody.run("ln", "-s", str(victim), str(pid_file))
    with run_server(APP, *APP_DIR, "--no-access-log", "--pid", str(pid_file)) as srv:
        assert not pid_file.is_symlink() and pid_file.read_text() == f"{srv.pid}\n"
    assert victim.read_text() == "precious"
    assert not os.path.lexists(pid_file)


def test_a_socket_planted_at_the_uds_path_by_another_user_is_left_alone(nobody: Attacker) -> None:
    uds = nobody.shared_dir() / "app.sock"
    nobody.python("import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])", str(uds))
    result = octo_cli("serve", "examples.hello.app:app", "--uds", str(uds))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"octo: {uds} belongs to uid {NOBODY}: refusing to use or replace it (remove it, or "
        "choose another --uds)"]
    assert uds.lstat().st_uid == NOBODY
