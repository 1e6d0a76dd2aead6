from __future__ import annotations

import asyncio
import time

import pytest

from octo.runtime.cache import Cache, Lock, LockTimeout
from octo.runtime.table import Table, ValueTooLarge


def make_cache(rows: int = 8, value_size: int = 64) -> Cache:
    return Cache(Table("c", rows, Cache.columns(value_size)),
                 Table("l", 16, Lock.columns(), key_size=128))


def test_get_set_ttl_add_incr_forget(monkeypatch) -> None:
    cache = make_cache()
    assert cache.get("a") is None and cache.get("a", 5) == 5
    cache.set("a", {"x": [1, 2]}, ttl=10)
    assert cache.get("a") == {"x": [1, 2]}
    assert not cache.add("a", 1) and cache.add("b", 1)
    assert cache.incr("n") == 1 and cache.incr("n", 4) == 5
    assert cache.forget("a") and cache.get("a") is None
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + 11)
    cache.set("short", 1, ttl=5)
    monkeypatch.setattr(time, "time", lambda: now + 17)
    assert cache.get("short") is None  # expired, evicted on read
    assert cache.add("short", 2)  # absent again: add works


def test_full_cache_reuses_expired_then_soonest_expiring(monkeypatch) -> None:
    cache = make_cache(rows=3)
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now)
    cache.set("forever", 1)
    cache.set("soon", 2, ttl=5)
    cache.set("later", 3, ttl=50)
    cache.set("new", 4)  # full, nothing expired: the soonest expiring row goes
    assert cache.get("soon") is None and cache.get("later") == 3 and cache.get("new") == 4
    monkeypatch.setattr(time, "time", lambda: now + 100)
    cache.set("newer", 5)  # "later" has expired now and is reused
    assert cache.get("forever") == 1 and cache.get("newer") == 5


def test_value_too_large_is_an_error() -> None:
    with pytest.raises(ValueTooLarge, match="value size 64"):
        make_cache().set("big", "x" * 200)


def test_remember_computes_once_under_concurrency(run) -> None:
    cache = make_cache()
    calls: list[int] = []

    async def compute() -> str:
        calls.append(1)
        await asyncio.sleep(0.02)
        return "fresh"

    async def main() -> list[str]:
        return await asyncio.gather(*(cache.remember("k", 30, compute) for _ in range(50)))

    assert run(main()) == ["fresh"] * 50
    assert calls == [1]


def test_lock_owner_release_expiry_and_block_timeout(run, monkeypatch) -> None:
    table = Table("l", 8, Lock.columns(), key_size=128)
    first, second = Lock(table, "job", ttl=5), Lock(table, "job", ttl=5)
    assert first.acquire() and not second.acquire()
    assert not second.release()  # not the owner
    assert first.release() and second.acquire()

    async def wait_briefly() -> None:
        async with first.block(0.05):
            pass

    with pytest.raises(LockTimeout, match="'job' not acquired within 0.05s"):
        run(wait_briefly())
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + 6)  # the owner died: its lock expires
    assert first.acquire()


def test_interval_refreshes_in_the_background(run, monkeypatch) -> None:
    import octo

    monkeypatch.delenv("OCTO_SERVER_ID", raising=False)
    rt = octo.Octo()
    calls = [0]

    async def resolver() -> int:
        calls[0] += 1
        return calls[0]

    rt.cache.interval("rates", 0.05, resolver)

    async def main() -> tuple[object, object]:
        before = rt.cache.get("rates")
        await rt.boot()
        deadline = asyncio.get_running_loop().time() + 20
        while (rt.cache.get("rates") or 0) < 4:  # refreshed again and again, nobody asking
            assert asyncio.get_running_loop().time() < deadline, rt.cache.get("rates")
            await asyncio.sleep(0.01)
        after = rt.cache.get("rates")
        await rt.stop()
        return before, after

    before, after = run(main())
    assert before is None and isinstance(after, int) and after >= 4


class Boom:
    """Unpickling this runs a command: what a planted row would carry."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os

        return os.system, (f"touch {self.marker}",)


def test_a_planted_pickle_row_is_a_miss_never_unpickled_and_logged_once(tmp_path,
                                                                       caplog) -> None:
    import pickle

    cache = make_cache(value_size=128)
    marker = tmp_path / "executed"
    payload = pickle.dumps(Boom(str(marker)))
    for key in ("a", "b"):  # written straight into the shared rows, as an attacker would
        cache.table.set(key, {"value": payload, "expires": 0.0})
    assert cache.get("a", "miss") == "miss"
    assert cache.incr("b") == 1  # a forged row counts as absent
    assert not marker.exists()
    assert caplog.text.count("was not written by this server") == 1
    assert cache.table.get("a") is None  # removed
    cache.set("a", "real")
    assert cache.get("a") == "real"


def test_rows_moved_altered_or_sealed_by_another_server_are_misses(monkeypatch) -> None:
    from octo.runtime import rundir

    cache = make_cache()
    cache.set("a", "value-a", ttl=60)
    row = cache.table.get("a")
    cache.table.set("b", row)  # a valid row copied under another key
    assert cache.get("b", "miss") == "miss"
    cache.table.set("a", {"expires": row["expires"] + 3600})  # its expiry extended
    assert cache.get("a", "miss") == "miss"
    monkeypatch.setattr(rundir, "_process_key", b"k" * 32)  # another process's secret
    other = Cache(cache.table, cache.locks)
    other.set("c", "theirs")
    assert other.get("c") == "theirs"
    assert cache.get("c", "miss") == "miss"
