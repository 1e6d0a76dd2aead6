from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import octo

ROOT = Path(__file__).resolve().parents[2]


def octo_cmd(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "octo", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=30)


def test_version() -> None:
    result = octo_cmd("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"octo {octo.__version__}"


@pytest.mark.parametrize("target, text", [
    ("nosuchmodule:app", "could not import module 'nosuchmodule'"),
    ("examples.hello.app:nope", "attribute 'nope' not found in module 'examples.hello.app'"),
    ("examples.hello.app", 'must be given as "module:attribute"'),
    ("brokenmod:app", "error importing 'brokenmod': ZeroDivisionError"),
    ("notcallable:app", "is not callable"),
])
def test_bad_app_is_one_line_and_nonzero(tmp_path: Path, target: str, text: str) -> None:
    (tmp_path / "brokenmod.py").write_text("app = 1 / 0\n")
    (tmp_path / "notcallable.py").write_text("app = 42\n")
    result = octo_cmd("serve", target, "--port", "0", "--app-dir", str(tmp_path))
    assert result.returncode == 4, result.stderr
    assert text in result.stderr
    assert "Traceback" not in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if "ERROR" in line]
    assert len(error_lines) == 1


def test_debug_shows_traceback(tmp_path: Path) -> None:
    (tmp_path / "brokenmod.py").write_text("app = 1 / 0\n")
    result = octo_cmd("serve", "brokenmod:app", "--port", "0", "--app-dir", str(tmp_path),
                      "--log-level", "debug")
    assert result.returncode == 4 and "Traceback" in result.stderr


def test_lifespan_startup_failure_exit_code(tmp_path: Path) -> None:
    (tmp_path / "failing.py").write_text(
        "async def app(scope, receive, send):\n"
        "    await receive()\n"
        "    await send({'type': 'lifespan.startup.failed', 'message': 'db down'})\n")
    result = octo_cmd("serve", "failing:app", "--port", "0", "--app-dir", str(tmp_path))
    assert result.returncode == 3 and "db down" in result.stderr


def test_missing_app_is_usage_error() -> None:
    result = octo_cmd("serve")
    assert result.returncode == 2 and "missing APP" in result.stderr
