from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import octo

ROOT = Path(__file__).resolve().parents[2]


def octo_cmd(*args: str, cwd: Path = ROOT,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "octo", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=30, env=env)


def test_version_says_which_http_core_runs() -> None:
    from octo.http import core

    result = octo_cmd("--version")
    expected = f"octo {octo.__version__} ({core.load().describe()})"
    assert result.returncode == 0 and result.stdout.strip() == expected
    forced = octo_cmd("--version", env={**os.environ, "OCTO_CORE": "python"})
    assert forced.stdout.strip() == (f"octo {octo.__version__} (pure-Python HTTP core "
                                     "(chosen with OCTO_CORE=python))")


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
    # The worker's reason, then the master's "failed to boot ...; stopping the server".
    assert len(error_lines) == 2 and text in error_lines[0], error_lines
    assert "failed to boot" in error_lines[1] and "stopping the server" in error_lines[1]


def test_import_error_names_the_apps_own_file_and_line(tmp_path: Path) -> None:
    """The innermost frame of the app's code, not the json module line that raised."""
    (tmp_path / "helper.py").write_text("import json\n\ndef load():\n    return json.loads('{')\n")
    (tmp_path / "badconf.py").write_text("import helper\n\nCONF = helper.load()\napp = None\n")
    result = octo_cmd("serve", "badconf:app", "--port", "0", "--app-dir", str(tmp_path))
    assert result.returncode == 4
    line = next(line for line in result.stderr.splitlines() if "error importing" in line)
    assert "JSONDecodeError" in line and line.endswith("helper.py:4)"), line
    (tmp_path / "syn.py").write_text("x = 1\ndef f(:\n")
    result = octo_cmd("serve", "syn:app", "--port", "0", "--app-dir", str(tmp_path))
    line = next(line for line in result.stderr.splitlines() if "error importing" in line)
    assert "SyntaxError: invalid syntax" in line and line.endswith("syn.py:2)"), line


def test_starlette_lifespan_failure_prints_its_traceback_once(tmp_path: Path) -> None:
    """Starlette sends lifespan.startup.failed with the traceback text, then re-raises."""
    (tmp_path / "starfail.py").write_text(
        "from contextlib import asynccontextmanager\n"
        "from starlette.applications import Starlette\n\n"
        "@asynccontextmanager\n"
        "async def lifespan(app):\n"
        "    raise RuntimeError('database unreachable')\n"
        "    yield\n\n"
        "app = Starlette(lifespan=lifespan)\n")
    result = octo_cmd("serve", "starfail:app", "--port", "0", "--app-dir", str(tmp_path))
    assert result.returncode == 3, result.stderr
    assert result.stderr.count("Traceback") == 1, result.stderr
    assert "database unreachable" in result.stderr


def test_raising_lifespan_names_the_apps_line(tmp_path: Path) -> None:
    (tmp_path / "lsfail.py").write_text(
        "async def app(scope, receive, send):\n"
        "    await receive()\n"
        "    raise ValueError('no settings')\n")
    result = octo_cmd("serve", "lsfail:app", "--port", "0", "--app-dir", str(tmp_path),
                      "--lifespan", "on")
    assert result.returncode == 3
    assert result.stderr.count("Traceback") == 1, result.stderr
    assert "lifespan startup failed: ValueError: no settings (" in result.stderr
    assert "lsfail.py:3)" in result.stderr


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


@pytest.mark.parametrize("backend", ["wsproto", "websockets"])
def test_a_missing_ws_backend_is_a_usage_error_before_any_worker(tmp_path: Path,
                                                                 backend: str) -> None:
    """``--ws NAME`` without NAME's package: one line and exit 2 from the command line, not
    a crash with a traceback in every worker. The package is made unimportable in the
    real ``octo`` process (sys.modules[name] = None, which the forked workers inherit)."""
    (tmp_path / "plain.py").write_text("async def app(scope, receive, send):\n    pass\n")
    code = (f"import sys; sys.modules[{backend!r}] = None\n"
            "from octo.cli import main\nsys.argv[0] = 'octo'\nmain()\n")
    result = subprocess.run(
        [sys.executable, "-c", code, "serve", "plain:app", "--port", "0", "--app-dir",
         str(tmp_path), "--ws", backend, "--workers", "2"],
        cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert f"--ws {backend} needs the {backend} package" in result.stderr
    assert "Traceback" not in result.stderr and "worker" not in result.stderr.lower(), \
        result.stderr
