"""A worker serving a plain ASGI app loads only what serving needs.

Every octo process imports ``octo``, and every worker is forked from a master that imported
the command line and the supervisor: an eager import anywhere on that path lands in every
worker's RSS (Django's ASGI handler alone is ~17 MB). Checked in a fresh interpreter, by
module name rather than by size, so the test is cheap and exact.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import octo

# Modules a plain app never uses: each was once imported into every worker.
UNUSED_BY_A_PLAIN_APP = (
    "django", "asgiref", "websockets", "wsproto", "h11", "psutil", "anyio",
    "octo.ws.protocol", "octo.runtime.app",
    "octo.runtime.cache", "octo.runtime.tasks", "octo.runtime.concurrent",
    "octo.runtime.container", "octo.runtime.table", "octo.runtime.shmlock", "ctypes",
    "email.utils",
)

PLAIN_APP = '''
async def app(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})
'''

# The master's imports (command line, supervisor), then what a worker does before it
# serves: load the app and pick the upgrade hook.
SERVING_PATH = '''
import json, sys
import octo, octo.cli, octo.master.arbiter
from octo.config import Config
from octo.process.worker import Worker, websocket_handler

config = Config(app="plain:app", app_dir=sys.argv[1])
Worker(config, []).load()
from octo.http import core
core.current()  # what the worker's listening sockets are served with
assert websocket_handler(config) is not None  # WebSockets stay available
print(json.dumps(sorted(sys.modules)))
'''


def loaded_modules(tmp_path: Path) -> set[str]:
    (tmp_path / "plain.py").write_text(textwrap.dedent(PLAIN_APP))
    result = subprocess.run([sys.executable, "-c", SERVING_PATH, str(tmp_path)],
                            capture_output=True, text=True, timeout=60, check=True)
    return set(json.loads(result.stdout))


def test_serving_a_plain_app_does_not_import_unused_layers(tmp_path: Path) -> None:
    pytest.importorskip("websockets")  # else it is trivially absent
    loaded = loaded_modules(tmp_path)
    assert not loaded.intersection(UNUSED_BY_A_PLAIN_APP), \
        sorted(loaded.intersection(UNUSED_BY_A_PLAIN_APP))
    from octo.http import core

    # The check ran the real serving imports (the protocol of the core the worker serves).
    assert core.load().protocol.__name__ in loaded


def test_public_names_resolve_on_first_use() -> None:
    for name in octo.__all__:
        assert getattr(octo, name) is not None, name
    assert set(octo.__all__) <= set(dir(octo))
    from octo.runtime.table import Int

    assert octo.Int is Int
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        octo.Nope  # noqa: B018
