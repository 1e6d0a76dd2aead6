"""Choosing the HTTP core (octo.http.core): compiled when built and current, else pure."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

from octo.http import core


@pytest.fixture
def fresh() -> Iterator[None]:
    core._compiled.cache_clear()
    yield
    core._compiled.cache_clear()


def compiled_built() -> bool:
    try:
        core.load("compiled")
    except ImportError:
        return False
    return True


def test_python_is_always_available(fresh: None) -> None:
    chosen = core.load("python")
    assert chosen.name == "python" and chosen.protocol.__name__ == "octo.http.protocol"
    assert chosen.module("cycle").__name__ == "octo.http.cycle"
    assert chosen.describe() == "pure-Python HTTP core (chosen with OCTO_CORE=python)"


def test_unknown_choice_is_refused(fresh: None) -> None:
    with pytest.raises(ValueError, match="OCTO_CORE='fast'"):
        core.load("fast")


def test_auto_takes_the_compiled_core_when_built(fresh: None) -> None:
    if not compiled_built():
        if os.environ.get("OCTO_REQUIRE_COMPILED") == "1":
            pytest.fail("the compiled core is not built")
        pytest.skip("the compiled core is not built")
    chosen = core.load("auto")
    assert chosen.name == "compiled" and chosen.protocol.__name__ == "octo._ccore.protocol"
    assert str(chosen.protocol.__file__).endswith(".so")
    assert chosen.module("cycle").__name__ == "octo._ccore.cycle"
    assert chosen.describe() == "compiled HTTP core (mypyc)"


def test_a_compiled_core_older_than_the_sources_is_not_used(
        fresh: None, monkeypatch: pytest.MonkeyPatch) -> None:
    if not compiled_built():
        pytest.skip("the compiled core is not built")
    core._compiled.cache_clear()
    monkeypatch.setattr(core, "source_digest", lambda: "0" * 64)  # the sources changed
    chosen = core.load("auto")
    assert chosen.name == "python" and "older than octo/http's sources" in chosen.reason
    with pytest.raises(ImportError, match="OCTO_CORE=compiled: the compiled core is older"):
        core.load("compiled")


def test_response_heads_carry_the_date_of_the_last_refresh(http_core: str) -> None:
    from octo.http import core
    from octo.http.response import DateHeader

    prefixes = core.current().module("head").PREFIXES
    try:
        DateHeader.refresh(0)
        assert b"date: Thu, 01 Jan 1970 00:00:00 GMT\r\n" in prefixes.get(200, True)
        DateHeader.refresh(86400)  # the cached head is dropped, not served a day late
        head = prefixes.get(200, True)
        assert b"date: Fri, 02 Jan 1970 00:00:00 GMT\r\n" in head
        assert head.startswith(b"HTTP/1.1 200 OK\r\nserver: octo\r\n")
    finally:
        DateHeader.refresh(time.time())
