"""octo.process.syncthreads: asgiref's thread-sensitive sync code on pooled threads, one
thread per request at a time, as Django's ASGIHandler runs it (in memory, no Django)."""

from __future__ import annotations

import asyncio
import sys
import threading
import types
from typing import Any

import pytest
from asgiref.sync import ThreadSensitiveContext, sync_to_async

from octo.process import syncthreads
from octo.process.syncthreads import SyncThread, SyncThreads, reuse_sync_threads

DEADLINE = 30.0  # only ends a hung test


@pytest.fixture
def django_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    """What reuse_sync_threads looks for: a Django ASGI handler among the loaded modules."""
    monkeypatch.setitem(sys.modules, syncthreads.DJANGO_ASGI,
                        types.ModuleType(syncthreads.DJANGO_ASGI))


def handler(record: list[tuple[str, int]], gate: threading.Barrier | None = None) -> Any:
    """An ASGI app shaped like Django's handler: its own ThreadSensitiveContext, then two
    thread-sensitive sync calls (the request's thread recorded by each)."""

    def view(name: str) -> None:
        record.append((name, threading.get_ident()))
        if gate is not None:
            gate.wait(DEADLINE)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        async with ThreadSensitiveContext():
            await sync_to_async(view, thread_sensitive=True)(scope["path"])
            await sync_to_async(view, thread_sensitive=True)(scope["path"] + "-again")

    return app


def scope(path: str, kind: str = "http") -> dict[str, Any]:
    return {"type": kind, "path": path}


async def nothing() -> dict[str, Any]:
    return {}


async def ignore(message: Any) -> None:
    pass


def test_requests_one_after_another_share_one_thread(django_loaded: None) -> None:
    record: list[tuple[str, int]] = []
    pool = SyncThreads()
    app = reuse_sync_threads(handler(record), pool)

    async def main() -> None:
        for path in ("/a", "/b", "/c"):
            await app(scope(path), nothing, ignore)

    asyncio.run(main())
    assert [name for name, _ in record] == ["/a", "/a-again", "/b", "/b-again", "/c", "/c-again"]
    assert len({ident for _, ident in record}) == 1  # one warm thread for all three
    assert threading.get_ident() not in {ident for _, ident in record}
    assert len(pool.spare) == 1
    pool.close()


def test_concurrent_requests_get_threads_of_their_own(django_loaded: None) -> None:
    record: list[tuple[str, int]] = []
    gate = threading.Barrier(2)  # each view waits for the other: they must run at once
    pool = SyncThreads()
    app = reuse_sync_threads(handler(record, gate), pool)

    async def main() -> None:
        await asyncio.wait_for(asyncio.gather(app(scope("/a"), nothing, ignore),
                                              app(scope("/b"), nothing, ignore)), DEADLINE)

    asyncio.run(main())
    by_request = {name[:2]: ident for name, ident in record}
    assert by_request["/a"] != by_request["/b"]
    # Each request's two calls ran on its own one thread.
    assert {ident for name, ident in record if name.startswith("/a")} == {by_request["/a"]}
    assert len(pool.spare) == 2
    pool.close()


def test_a_thread_still_busy_when_its_request_ends_is_not_reused(django_loaded: None) -> None:
    record: list[tuple[str, int]] = []
    release = threading.Event()
    started = threading.Event()

    def stuck() -> None:
        record.append(("stuck", threading.get_ident()))
        started.set()
        release.wait(DEADLINE)

    async def slow(scope: Any, receive: Any, send: Any) -> None:
        async with ThreadSensitiveContext():
            await sync_to_async(stuck, thread_sensitive=True)()

    pool = SyncThreads()
    app = reuse_sync_threads(slow, pool)
    quick = reuse_sync_threads(handler(record), pool)

    async def main() -> None:
        task = asyncio.ensure_future(app(scope("/slow"), nothing, ignore))
        await asyncio.get_running_loop().run_in_executor(None, started.wait, DEADLINE)
        task.cancel()  # as --max-execution-time cancels a request
        with pytest.raises(asyncio.CancelledError):
            await task
        assert pool.spare == []  # its thread still runs stuck(): not handed out again
        await quick(scope("/next"), nothing, ignore)

    asyncio.run(main())
    release.set()
    stuck_thread = record[0][1]
    assert record[1][0] == "/next" and record[1][1] != stuck_thread


def test_other_scopes_and_apps_without_django_are_left_alone(django_loaded: None,
                                                             monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(SyncToAsyncContext())

    def SyncToAsyncContext() -> Any:  # noqa: N802  (what asgiref sees as the context)
        from asgiref.sync import SyncToAsync

        return SyncToAsync.thread_sensitive_context.get(None)

    wrapped = reuse_sync_threads(app, SyncThreads())
    asyncio.run(wrapped(scope("/", "lifespan"), nothing, ignore))
    asyncio.run(wrapped(scope("/"), nothing, ignore))
    assert seen[0] is None and seen[1] is not None  # only HTTP gets a context
    monkeypatch.delitem(sys.modules, syncthreads.DJANGO_ASGI)
    assert reuse_sync_threads(app) is app


def test_the_pool_keeps_at_most_spare_max_idle_threads() -> None:
    pool = SyncThreads(spare_max=2)
    executors = [pool.take() for _ in range(3)]
    for executor in executors:
        executor.submit(lambda: None).result(DEADLINE)
        assert not executor.pending  # counted done before its result was set
        pool.give(executor)
    assert pool.spare == executors[:2]
    assert executors[2].closed  # the third was let go
    third = executors[2].thread
    assert third is not None
    third.join(DEADLINE)
    assert not third.is_alive()
    assert pool.take() is executors[1]
    pool.give(executors[1])
    pool.close()
    assert all(executor.closed for executor in executors)
    with pytest.raises(RuntimeError):
        executors[0].submit(lambda: None)


def test_on_the_loop_a_call_completes_a_future_of_that_loop() -> None:
    """What asgiref's loop.run_in_executor gets: a future of the running loop (passed
    through as is), its result or exception set on the loop, calls run in order on the
    executor's one thread."""
    executor = SyncThread()
    seen: list[int] = []

    def boom() -> None:
        raise ValueError("from the thread")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        first = loop.run_in_executor(executor, lambda: seen.append(threading.get_ident()) or 1)
        second = loop.run_in_executor(executor, lambda: seen.append(threading.get_ident()) or 2)
        assert isinstance(first, asyncio.Future) and first.get_loop() is loop
        assert await asyncio.wait_for(first, DEADLINE) == 1
        assert await asyncio.wait_for(second, DEADLINE) == 2
        with pytest.raises(ValueError, match="from the thread"):
            await asyncio.wait_for(loop.run_in_executor(executor, boom), DEADLINE)
        assert not executor.pending

    asyncio.run(main())
    assert len(set(seen)) == 1 and threading.get_ident() not in seen
    executor.shutdown()
    assert executor.thread is not None and not executor.thread.is_alive()


def test_a_call_cancelled_before_it_starts_never_runs() -> None:
    executor = SyncThread()
    release = threading.Event()
    ran: list[str] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        busy = loop.run_in_executor(executor, release.wait, DEADLINE)
        queued = loop.run_in_executor(executor, ran.append, "queued")
        queued.cancel()
        assert executor.pending
        release.set()
        assert await asyncio.wait_for(busy, DEADLINE) is True
        after = loop.run_in_executor(executor, ran.append, "after")
        await asyncio.wait_for(after, DEADLINE)
        assert not executor.pending

    asyncio.run(main())
    assert ran == ["after"]
    executor.shutdown()
