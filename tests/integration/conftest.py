"""Fixtures for integration tests: real ``octo serve`` subprocesses on real sockets.

``octo_server(app, *args, **kwargs)`` starts a server for the current test (see
:func:`server.run_server` for the arguments) and stops it at teardown; the server log is
printed at teardown, so pytest shows it for a failing test. Test modules that want a server
shared by several tests can use :func:`server.run_server` in a module-scoped fixture.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from server import Server, ServerFactory, run_server

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/integration is an integration test."""
    for item in items:
        if HERE in item.path.resolve().parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def octo_server() -> Iterator[ServerFactory]:
    """A factory: ``srv = octo_server("module:app", "--opt", env={...})``."""
    servers: list[Server] = []
    with contextlib.ExitStack() as stack:

        def start(app: str, *args: str, **kwargs: Any) -> Server:
            srv = stack.enter_context(run_server(app, *args, **kwargs))
            servers.append(srv)
            return srv

        try:
            yield start
        finally:
            for srv in servers:
                srv.stop()  # first, so the log printed below includes the shutdown
                with contextlib.suppress(OSError):
                    print(f"----- {srv.name} log (exit status {srv.process.returncode}) -----\n"
                          f"{srv.log()}")
