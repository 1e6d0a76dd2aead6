"""The private runtime directory, its files and sockets, and the peer checks, in-process.

Attacks that need another uid fork a child that drops to uid 65534 (skipped unless root).
"""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from attacker import NOBODY, Attacker

from octo.master import arbiter
from octo.master.control import ControlServer, request
from octo.runtime import rundir
from octo.runtime.rundir import ForeignPeer, RuntimeDir, RuntimeDirError


@pytest.fixture
def nobody() -> Iterator[Attacker]:
    with Attacker.or_skip() as attacker:
        yield attacker


def as_uid_in_child(uid: int, work: Callable[[], None]) -> int:
    """Fork, drop to *uid* in the child, run *work* there; returns the child's pid."""
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            work()
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    return pid


# -- where the directory lives ---------------------------------------------------------------

def test_default_root_prefers_a_private_xdg_runtime_dir(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    xdg = tmp_path / "xdg"
    xdg.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(xdg))
    assert rundir.default_root() == str(xdg / "octo")
    xdg.chmod(0o755)  # not private: not trusted for this user's runtime files
    assert rundir.default_root() == f"/dev/shm/octo-{os.geteuid()}"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert rundir.default_root() == f"/dev/shm/octo-{os.geteuid()}"


def test_default_root_ignores_an_xdg_runtime_dir_of_another_user(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, nobody: Attacker) -> None:
    xdg = tmp_path / "xdg"
    xdg.mkdir(mode=0o700)
    os.chown(xdg, NOBODY, NOBODY)  # e.g. inherited through sudo -E
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(xdg))
    assert rundir.default_root() == f"/dev/shm/octo-{os.geteuid()}"


# -- the directory itself --------------------------------------------------------------------

def test_create_makes_a_0700_directory_and_adopts_its_own(tmp_path: Path) -> None:
    path = tmp_path / "run"
    first = RuntimeDir.create(str(path))
    assert stat.S_IMODE(path.stat().st_mode) == 0o700
    again = RuntimeDir.create(str(path))  # a second server of the same user
    assert os.path.samestat(os.fstat(first.fd), os.fstat(again.fd))
    first.close()
    again.close()


def plant_symlink(path: Path) -> None:
    path.symlink_to(path.parent / "elsewhere")


def plant_open_dir(path: Path) -> None:
    path.mkdir()
    path.chmod(0o755)


def plant_file(path: Path) -> None:
    path.write_text("x")


@pytest.mark.parametrize("plant, words", [
    (plant_symlink, "is a symbolic link"),
    (plant_open_dir, "has mode 0755: group/other may enter it"),
    (plant_file, "cannot open the runtime directory"),
])
def test_create_refuses_a_directory_that_is_not_private(tmp_path: Path,
                                                        plant: Callable[[Path], None],
                                                        words: str) -> None:
    (tmp_path / "elsewhere").mkdir(mode=0o700)
    path = tmp_path / "run"
    plant(path)
    with pytest.raises(RuntimeDirError) as info:
        RuntimeDir.create(str(path))
    assert words in str(info.value) and str(path) in str(info.value)
    assert "\n" not in str(info.value)
    assert os.listdir(tmp_path / "elsewhere") == []


def test_create_refuses_a_directory_of_another_user(tmp_path: Path, nobody: Attacker) -> None:
    shared = nobody.shared_dir()
    path = shared / "run"
    nobody.run("mkdir", "-m", "0700", str(path))  # pre-created by the attacker
    with pytest.raises(RuntimeDirError, match=f"belongs to uid {NOBODY}, not to this user"):
        RuntimeDir.create(str(path))


def test_server_start_refuses_an_unsafe_directory_with_one_line(tmp_path: Path) -> None:
    from octo.config import Config

    path = tmp_path / "run"
    path.mkdir(mode=0o777)
    path.chmod(0o777)
    with pytest.raises(SystemExit) as info:
        arbiter.open_runtime_dir(Config(app="x:app", runtime_dir=str(path)))
    assert str(info.value).startswith(f"octo: runtime directory {path} has mode 0777")


def octo_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "octo", *args], capture_output=True,
                          text=True, timeout=60, cwd=Path(__file__).resolve().parents[2])


def test_control_clients_resolve_the_runtime_dir_like_the_server(tmp_path: Path) -> None:
    missing = tmp_path / "none"
    result = octo_cli("status", "--runtime-dir", str(missing), "--port", "8123")
    assert (result.returncode, result.stderr) == (
        1, f"octo: no octo server is running (nothing answers on {missing}/octo-8123.ctl)\n")
    (tmp_path / "open").mkdir()
    (tmp_path / "open").chmod(0o755)
    result = octo_cli("stop", "--runtime-dir", str(tmp_path / "open"))
    assert result.returncode == 1 and result.stderr.splitlines() == [
        f"octo: runtime directory {tmp_path / 'open'} has mode 0755: group/other may enter "
        "it: refusing to use it (chmod 700 it, or choose another --runtime-dir)"]


# -- files in it -------------------------------------------------------------------------------

def test_files_are_created_private_and_reopened_only_if_still_private(tmp_path: Path) -> None:
    directory = RuntimeDir.create(str(tmp_path / "run"))
    fd = directory.open_file("t.tbl")
    assert stat.S_IMODE(os.fstat(fd).st_mode) == 0o600
    os.close(fd)
    os.close(directory.open_file("t.tbl"))  # a second worker opens the same file
    os.link(tmp_path / "run" / "t.tbl", tmp_path / "hardlink")  # now 2 links: refused
    with pytest.raises(RuntimeDirError, match="2 links"):
        directory.open_file("t.tbl")
    (tmp_path / "run" / "l.tbl").symlink_to(tmp_path / "victim")
    with pytest.raises(RuntimeDirError, match="cannot open"):
        directory.open_file("l.tbl")
    assert not (tmp_path / "victim").exists()


def test_a_file_of_another_user_is_never_adopted(tmp_path: Path, nobody: Attacker) -> None:
    directory = RuntimeDir.create(str(tmp_path / "run"))
    planted = tmp_path / "run" / "t.tbl"
    planted.write_bytes(b"octotbl2")
    os.chown(planted, NOBODY, NOBODY)
    planted.chmod(0o600)
    with pytest.raises(RuntimeDirError, match=f"uid {NOBODY}"):
        directory.open_file("t.tbl")


def test_a_directory_swapped_after_the_check_changes_nothing(tmp_path: Path) -> None:
    """Files and sockets go into the directory that was checked, held open, whatever the
    path points to later."""
    path = tmp_path / "run"
    directory = RuntimeDir.create(str(path))
    os.rename(path, tmp_path / "moved")
    (tmp_path / "evil").mkdir()
    path.symlink_to(tmp_path / "evil")
    os.close(directory.open_file("t.tbl"))
    sock = directory.socket("s.sock").listen(4)
    sock.close()
    assert sorted(os.listdir(tmp_path / "moved")) == ["s.sock", "t.tbl"]
    assert os.listdir(tmp_path / "evil") == []


def test_removal_only_unlinks_and_only_this_users_entries(tmp_path: Path,
                                                          nobody: Attacker) -> None:
    directory = RuntimeDir.create(str(tmp_path / "run"))
    (tmp_path / "victim").write_text("keep")
    (tmp_path / "run" / "1-link").symlink_to(tmp_path / "victim")
    (tmp_path / "run" / "1-theirs").write_text("x")
    os.chown(tmp_path / "run" / "1-theirs", NOBODY, NOBODY)
    assert directory.remove("1-link") and not directory.remove("1-theirs")
    assert (tmp_path / "victim").read_text() == "keep"
    assert os.listdir(tmp_path / "run") == ["1-theirs"]


# -- sockets -------------------------------------------------------------------------------------

def test_sockets_are_bound_0600_whatever_the_umask(tmp_path: Path) -> None:
    directory = RuntimeDir.create(str(tmp_path / "run"))
    old = os.umask(0)
    try:
        sock = directory.socket("a.sock").listen(4)
    finally:
        os.umask(old)
    sock.close()
    assert stat.S_IMODE((tmp_path / "run" / "a.sock").lstat().st_mode) == 0o600


def test_listen_replaces_only_a_stale_socket_of_this_user(tmp_path: Path) -> None:
    place = rundir.SocketPlace.at(str(tmp_path / "c.ctl"))
    live = place.listen(4)
    with pytest.raises(RuntimeDirError, match="another server already answers"):
        rundir.SocketPlace.at(str(tmp_path / "c.ctl")).listen(4)
    live.close()  # killed: the file stays, nothing answers
    rundir.SocketPlace.at(str(tmp_path / "c.ctl")).listen(4).close()
    (tmp_path / "f.ctl").write_text("a regular file")
    with pytest.raises(RuntimeDirError, match="exists and is not a socket"):
        rundir.SocketPlace.at(str(tmp_path / "f.ctl")).listen(4)
    assert (tmp_path / "f.ctl").read_text() == "a regular file"


def test_a_public_socket_gets_its_mode_at_bind_and_replaces_even_a_live_one_of_ours(
        tmp_path: Path) -> None:
    first = rundir.SocketPlace.at(str(tmp_path / "app.sock")).listen(4, "--uds", mode=0o666)
    second = rundir.SocketPlace.at(str(tmp_path / "app.sock")).listen(4, "--uds", mode=0o666,
                                                                     replace_live=True)
    assert stat.S_IMODE((tmp_path / "app.sock").lstat().st_mode) == 0o666
    first.close()
    second.close()


def test_listen_refuses_a_socket_planted_by_another_user(nobody: Attacker) -> None:
    shared = nobody.shared_dir()
    path = shared / "octo.pid.ctl"
    nobody.python("import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])",
                  str(path))
    with pytest.raises(RuntimeDirError, match=f"belongs to uid {NOBODY}: refusing"):
        rundir.SocketPlace.at(str(path)).listen(4)
    assert path.lstat().st_uid == NOBODY  # not removed either


class Master:
    def __init__(self) -> None:
        self.calls: list[Any] = []

    def status(self) -> dict[str, Any]:
        return {"master": 1}

    def reload(self) -> None:
        self.calls.append("reload")

    def stop(self, graceful: bool) -> None:
        self.calls.append("stop")

    def scale(self, count: int) -> None:
        self.calls.append(count)


def test_control_server_refuses_a_client_of_another_user(nobody: Attacker, caplog: Any) -> None:
    shared = nobody.shared_dir(mode=0o755)
    path = str(shared / "c.ctl")
    master = Master()
    server = ControlServer(path, master)
    os.chmod(path, 0o666)  # exposed by mistake: the peer check still holds
    server.sock.setblocking(True)

    def send_stop() -> None:
        answer = b""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(path)
            try:
                sock.sendall(b'{"cmd": "stop"}\n')
                answer = sock.recv(100)
            except OSError:
                pass
        os._exit(3 if answer else 0)  # 0: closed without an answer

    codes = []
    try:
        for _ in range(2):
            child = as_uid_in_child(NOBODY, send_stop)
            server.handle_one()
            codes.append(os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]))
    finally:
        server.close()
    assert codes == [0, 0] and master.calls == []
    assert caplog.text.count(f"control: refused a connection from uid {NOBODY}") == 1


def foreign_server(path: str, ready_w: int) -> Callable[[], None]:
    def serve() -> None:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.bind(path)
            os.chmod(path, 0o777)
            sock.listen(1)
            os.write(ready_w, b"x")
            conn, _ = sock.accept()
            conn.sendall(b'{"ok": true, "master": 4242, "workers": []}\n')
            conn.close()
    return serve


def test_clients_refuse_a_control_server_of_another_user(nobody: Attacker) -> None:
    shared = nobody.shared_dir()
    path = str(shared / "octo-8000.ctl")
    ready_r, ready_w = os.pipe()
    child = as_uid_in_child(NOBODY, foreign_server(path, ready_w))
    try:
        os.read(ready_r, 1)
        with pytest.raises(ForeignPeer) as info:
            request(path, {"cmd": "stop"})
    finally:
        os.kill(child, 9)
        os.waitpid(child, 0)
    assert str(info.value) == (f"refusing {path}: it is served by uid {NOBODY} (pid {child}), "
                               f"which is neither this user (uid 0) nor root")


def test_task_callers_refuse_a_task_worker_of_another_user(nobody: Attacker, run: Any,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from octo.runtime import tasks

    shared = nobody.shared_dir(mode=0o1777)
    directory = RuntimeDir.create(str(shared / "run"))
    directory.task_socket = "1-tasks.sock"
    monkeypatch.setattr(rundir, "_current", directory)
    ready_r, ready_w = os.pipe()
    os.chmod(shared / "run", 0o777)  # let the impostor in: the peer check must still hold
    child = as_uid_in_child(NOBODY, foreign_server(str(shared / "run" / "1-tasks.sock"),
                                                   ready_w))
    try:
        os.read(ready_r, 1)
        with pytest.raises(ForeignPeer, match=f"served by uid {NOBODY}"):
            run(tasks.Tasks().run(print, "never sent"))
    finally:
        os.kill(child, 9)
        os.waitpid(child, 0)
        directory.close()


def test_task_worker_refuses_a_caller_of_another_user(nobody: Attacker, tmp_path: Path,
                                                      caplog: Any) -> None:
    from octo.config import Config
    from octo.process.taskworker import TaskWorker

    shared = nobody.shared_dir(mode=0o755)
    path = str(shared / "t.sock")
    listener = rundir.SocketPlace.at(path).listen(4)
    os.chmod(path, 0o666)
    marker = tmp_path / "ran"
    worker = TaskWorker(Config(app="x:app"), listener, None)

    def send_task() -> None:
        import pickle
        import struct

        frame = pickle.dumps((os.system, (f"touch {marker}",), {}, True))
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(path)
            sock.sendall(struct.pack(">Q", len(frame)) + frame)
            sock.recv(100)

    child = as_uid_in_child(NOBODY, send_task)
    try:
        worker._serve_one()
    finally:
        os.waitpid(child, 0)
        listener.close()
        worker.loop.close()
    assert not marker.exists()
    assert f"task socket: refused a connection from uid {NOBODY}" in caplog.text
    assert worker.done == 0


# -- the pid file ------------------------------------------------------------------------------

def test_pid_file_is_written_by_rename(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (tmp_path / "octo.pid").symlink_to(victim)
    arbiter.write_pid_file(str(tmp_path / "octo.pid"))
    assert victim.read_text() == "precious"
    assert (tmp_path / "octo.pid").read_text() == f"{os.getpid()}\n"
    assert stat.S_IMODE((tmp_path / "octo.pid").stat().st_mode) == 0o644
    assert sorted(os.listdir(tmp_path)) == ["octo.pid", "victim"]  # no temporary file left


def test_the_server_key_is_inherited_by_forked_workers_and_kept_off_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    directory = RuntimeDir.create(str(tmp_path / "run"))
    monkeypatch.setattr(rundir, "_current", None)
    outside = rundir.server_key()
    rundir.serve_from(directory, "1")
    key = rundir.server_key()
    assert len(key) == 32 and key != outside
    assert not any(key.hex() in value or key.decode("latin-1") in value
                   for value in os.environ.values())
    read_r, write_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(write_w, rundir.server_key())
        os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(read_r, 64) == key
    rundir.serve_from(directory, "2")  # another server: another key
    assert rundir.server_key() != key
    directory.close()
