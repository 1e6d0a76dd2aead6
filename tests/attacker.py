"""Another local user (uid 65534, "nobody") attacking a server's files and sockets.

``Attacker.or_skip()`` skips the calling test, with the reason shown, where the tests cannot
switch users (not root, no setpriv, no Python the other user can run). The attacker runs
plain stdlib Python through ``setpriv --reuid=65534 --regid=65534 --clear-groups``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

import pytest

NOBODY = 65534
PYTHON = "/usr/bin/python3"  # the test venv's interpreter may sit in a directory only root reads
SETPRIV = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--"]


class Attacker:
    uid = NOBODY

    def __init__(self) -> None:
        self.dirs: list[Path] = []

    @classmethod
    def or_skip(cls) -> Attacker:
        if os.geteuid() != 0:
            pytest.skip("the attacker runs as uid 65534 through setpriv, which needs root")
        if shutil.which("setpriv") is None:
            pytest.skip("setpriv (util-linux) is not installed: cannot run the attacker as "
                        "uid 65534")
        attacker = cls()
        probe = attacker.python("import os; print(os.getuid())", check=False)
        if probe.returncode != 0 or probe.stdout.strip() != str(NOBODY):
            pytest.skip(f"{PYTHON} cannot be run as uid {NOBODY}: {probe.stderr.strip()}")
        return attacker

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*SETPRIV, *argv], capture_output=True, text=True, timeout=60,
                              check=check, cwd="/")

    def python(self, code: str, *args: str,
               check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run(PYTHON, "-c", code, *args, check=check)

    def popen_python(self, code: str, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([*SETPRIV, PYTHON, "-c", code, *args], cwd="/",
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def shared_dir(self, under: str = "/tmp", mode: int = 0o1777) -> Path:
        """A directory both users reach (world-writable and sticky, like /tmp, by default),
        removed at the end of the test."""
        path = Path(tempfile.mkdtemp(prefix="octo-attack-", dir=under))
        os.chmod(path, mode)
        self.dirs.append(path)
        return path

    def own_dir(self, under: Path, mode: str = "0755") -> Path:
        """A directory the attacker owns, inside *under*."""
        path = under / f"nobody-{len(os.listdir(under))}"
        self.run("mkdir", "-m", mode, str(path))
        return path

    def __enter__(self) -> Attacker:
        return self

    def __exit__(self, typ: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for path in self.dirs:
            shutil.rmtree(path, ignore_errors=True)


FAKE_CONTROL_SERVER = r'''
import json, os, socket, sys
path = sys.argv[1]
reply = json.dumps({"ok": True, "master": 4242, "target": 1, "generation": 0,
                    "stopping": False, "workers": []}).encode() + b"\n"
sock = socket.socket(socket.AF_UNIX)
sock.bind(path)
os.chmod(path, 0o777)
sock.listen(8)
print("ready", flush=True)
while True:
    conn, _ = sock.accept()
    try:
        conn.recv(65536)
        conn.sendall(reply)
    except OSError:
        pass  # a client that hung up on the fake
    conn.close()
'''
"""Run by the attacker: a fake control server answering every request with a status."""
