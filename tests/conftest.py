from __future__ import annotations

import asyncio
import os
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


@pytest.fixture(params=["python", "compiled"])
def http_core(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run the test with the pure-Python, then the compiled HTTP core (octo.http.core).

    Without a compiled core the compiled run is skipped, unless OCTO_REQUIRE_COMPILED=1
    (``make test`` sets it: it builds the core first) makes that a failure.
    """
    import harness

    from octo.http import core

    try:
        chosen = core.load(str(request.param))
    except ImportError as exc:
        if os.environ.get("OCTO_REQUIRE_COMPILED") == "1":
            pytest.fail(f"OCTO_REQUIRE_COMPILED=1 but {exc}")
        pytest.skip(str(exc))
    before = harness.CORE
    harness.CORE = chosen
    yield chosen.name
    harness.CORE = before


@pytest.fixture(params=["uvloop", "asyncio"])
def loop_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def run(loop_kind: str) -> Iterator[object]:
    """run(coro) on a fresh uvloop or asyncio loop (each test runs on both)."""
    if loop_kind == "uvloop":
        import uvloop

        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()

    def runner(coro: object) -> object:
        return loop.run_until_complete(coro)  # type: ignore[arg-type]

    yield runner
    # No executor threads left behind: later tests fork, and forking a process with
    # threads is unsafe (Python 3.12 warns about it).
    loop.run_until_complete(loop.shutdown_default_executor())
    loop.close()


@pytest.fixture(autouse=True)
def _no_octo_settings_left_behind() -> Iterator[None]:
    """A test that leaves an OCTO_* variable in this process's environment configures every
    server the suite starts after it (one left OCTO_MAX_REQUESTS=5: workers recycled under
    unrelated tests, on whichever pytest process ran it). Fail the test that leaks it."""
    import os

    before = {k: v for k, v in os.environ.items() if k.startswith("OCTO_")}
    yield
    after = {k: v for k, v in os.environ.items() if k.startswith("OCTO_")}
    assert after == before, f"the test left OCTO_* settings changed: {after} != {before}"


# How `make test` spreads the suite over its pytest processes (``--dist loadfile``): whole
# files, so that a module's shared server stays one server, but the request corpus (7,590
# in-process tests, a third of the suite's time on one process: 190 s of 460 on a busy
# 2-core machine) in CORPUS_CHUNKS parts that any process may take. The files go out in
# collection order, integration files first (most are long, of few tests), then the unit
# files and the corpus parts, which fill in for whichever process finishes first: xdist's
# default order (most tests first) sent the longest integration files last, so one process
# ran alone at the end for a minute.
CORPUS = "tests/corpus/test_corpus.py"
CORPUS_CHUNKS = 12
_INTEGRATION = "tests/integration/"


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class FilesAndCorpusParts(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            scope: str = super()._split_scope(nodeid)
            if scope == CORPUS:
                return f"{scope}#{zlib.crc32(nodeid.encode()) % CORPUS_CHUNKS}"
            return scope

    config.option.loadscopereorder = False  # collection order: pytest_collection_modifyitems
    return FilesAndCorpusParts(config, log)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Integration tests first, then the unit tests, the corpus last; each file's tests stay
    together and in their order (a stable sort)."""

    def rank(item: pytest.Item) -> int:
        path = item.nodeid.split("::", 1)[0]
        return 0 if path.startswith(_INTEGRATION) else 2 if path == CORPUS else 1

    items.sort(key=rank)
