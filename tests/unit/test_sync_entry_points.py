"""Sync code using the runtime, in memory: octo.resolve_sync, cache.remember_sync, ``with
lock.block()``, tasks.run_sync/dispatch_sync from threads of an operation (as a sync Django
view runs), and the misuse errors (async entry points without await, sync ones on the
loop's thread), each on uvloop and asyncio."""

from __future__ import annotations

import asyncio
import faulthandler
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

import octo
from octo.runtime import bridge
from octo.runtime.cache import Cache, Lock, LockTimeout
from octo.runtime.sandbox import Operation, enter, leave
from octo.runtime.table import Table

HANG = 60.0  # a deadlock ends the test run with a traceback instead of hanging it


@pytest.fixture(autouse=True)
def no_hang() -> Iterator[None]:
    faulthandler.dump_traceback_later(HANG, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture(autouse=True)
def local_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OCTO_SERVER_ID", raising=False)  # process-local tables, no tasks


class Settings:
    built_on: list[int] = []

    def __init__(self) -> None:
        Settings.built_on.append(threading.get_ident())


class User:
    """Request-scoped, from the operation's scope; built by an async factory."""

    def __init__(self, name: str, built_on: int) -> None:
        self.name = name
        self.built_on = built_on


async def current_user() -> User:
    await asyncio.sleep(0)  # a real coroutine: it can only run on the loop
    op = octo.current_operation()
    assert op is not None and op.scope is not None
    return User(op.scope["user"], threading.get_ident())


def make_runtime() -> octo.Octo:
    rt = octo.Octo()
    rt.container.singleton(Settings)
    rt.container.scoped(User, current_user)
    return rt


async def in_request(rt: octo.Octo, user: str, fn: Callable[[], Awaitable[Any]]) -> Any:
    op = Operation("request", {"user": user})
    op.state["runtime"] = rt
    token = enter(op)
    try:
        return await fn()
    finally:
        await rt.finish(op)
        leave(token)


def in_thread(fn: Callable[[], Any]) -> Awaitable[Any]:
    """Run *fn* in a thread with this context, as sync_to_async runs a sync view."""
    return asyncio.to_thread(fn)


# -- octo.resolve_sync ---------------------------------------------------------------------

def test_resolve_sync_in_a_thread_gets_the_requests_own_objects(run: Any) -> None:
    rt = make_runtime()

    async def request() -> None:
        loop_thread = threading.get_ident()
        from_thread = await in_thread(lambda: (octo.resolve_sync(User),
                                               octo.resolve_sync(User),
                                               octo.resolve_sync(Settings),
                                               threading.get_ident()))
        user, again, settings, view_thread = from_thread
        assert view_thread != loop_thread
        assert user is again is await octo.resolve(User)  # one per request, either way
        assert user.name == "alice" and user.built_on == loop_thread  # built on the loop
        assert settings is await octo.resolve(Settings)

    run(in_request(rt, "alice", request))


def test_concurrent_requests_resolving_from_threads_never_cross(run: Any) -> None:
    rt = make_runtime()

    async def request(name: str) -> list[str]:
        def view() -> list[str]:
            return [octo.resolve_sync(User).name for _ in range(20)]

        return await in_thread(view)

    async def main() -> list[list[str]]:
        names = [f"user{i}" for i in range(24)]
        return await asyncio.gather(*(in_request(rt, n, lambda n=n: request(n))
                                      for n in names))

    for i, seen in enumerate(run(main())):
        assert seen == [f"user{i}"] * 20


def test_resolve_sync_outside_an_operation_names_rt_wrap() -> None:
    rt = make_runtime()
    assert rt.container.has(User)
    with pytest.raises(octo.ContainerError, match=r"rt.wrap\(app\)"):
        octo.resolve_sync(User)


def test_a_factory_error_reaches_the_thread(run: Any) -> None:
    rt = make_runtime()

    def broken() -> Settings:
        raise ValueError("no settings file")

    rt.container.singleton(Settings, broken)

    async def request() -> None:
        with pytest.raises(ValueError, match="no settings file"):
            await in_thread(lambda: octo.resolve_sync(Settings))

    run(in_request(rt, "alice", request))


# -- misuse: async entry points without await, sync ones on the loop -----------------------

def test_async_entry_points_used_without_await_in_sync_code_raise(run: Any) -> None:
    rt = make_runtime()

    def view() -> list[str]:
        errors = []
        for call in (lambda: octo.resolve(User).name,
                     lambda: rt.cache.remember("k", 10, lambda: 1).upper(),
                     lambda: rt.tasks.run(pow, 2, 3).bit_length()):
            with pytest.raises(octo.NotAwaited) as info:
                call()
            errors.append(str(info.value))
        return errors

    errors = run(in_request(rt, "alice", lambda: in_thread(view)))
    assert errors[0] == ("octo.resolve(User) is async and was not awaited, so this is a "
                         "coroutine, not its result: use octo.resolve_sync(User) in sync code "
                         "(a sync view, a thread), or await octo.resolve(User) in async code")
    assert "use cache.remember_sync('k', ...) in sync code" in errors[1]
    assert "use rt.tasks.run_sync(builtins.pow) in sync code" in errors[2]


def test_an_async_entry_point_dropped_unawaited_in_sync_code_logs_that_it_never_ran(
        run: Any, caplog: pytest.LogCaptureFixture) -> None:
    rt = make_runtime()

    def view() -> None:
        rt.tasks.dispatch(pow, 2, 3)  # no await: nothing is dispatched

    with caplog.at_level("ERROR", logger="octo.error"):
        run(in_request(rt, "alice", lambda: in_thread(view)))
    assert ("rt.tasks.dispatch(builtins.pow) was called without await in sync code, so it "
            "never ran: use rt.tasks.dispatch_sync(builtins.pow) there") in caplog.text


def test_async_to_sync_of_the_async_entry_points_works(run: Any) -> None:
    """Django's idiom: async_to_sync makes the coroutine in the sync thread and awaits it
    on the loop; no warning about unmarked callables either."""
    import warnings

    from asgiref.sync import ThreadSensitiveContext, async_to_sync, sync_to_async

    rt = make_runtime()

    def view() -> tuple[str, int]:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            user = async_to_sync(octo.resolve)(User)
            return user.name, async_to_sync(rt.tasks.run)(pow, 2, 5)

    async def request() -> tuple[str, int]:
        async with ThreadSensitiveContext():
            return await sync_to_async(view, thread_sensitive=True)()

    assert run(in_request(rt, "alice", request)) == ("alice", 32)


def test_resolve_sync_in_a_sync_to_async_thread_lets_factories_use_that_thread(
        run: Any) -> None:
    """A factory that makes a Django ORM query with sync_to_async(thread_sensitive=True)
    needs the very thread that waits in resolve_sync: it gets it, no deadlock."""
    from asgiref.sync import ThreadSensitiveContext, sync_to_async

    class Row:
        def __init__(self, thread: int) -> None:
            self.thread = thread

    async def query_row() -> Row:
        return Row(await sync_to_async(threading.get_ident, thread_sensitive=True)())

    rt = make_runtime()
    rt.container.scoped(Row, query_row)

    def view() -> tuple[int, int]:
        return octo.resolve_sync(Row).thread, threading.get_ident()

    async def request() -> tuple[int, int]:
        async with ThreadSensitiveContext():
            return await sync_to_async(view, thread_sensitive=True)()

    queried_in, view_thread = run(in_request(rt, "alice", request))
    assert queried_in == view_thread


def test_sync_entry_points_on_the_loops_thread_raise_instead_of_deadlocking(run: Any) -> None:
    rt = make_runtime()

    async def request() -> list[str]:
        errors = []
        for call in (lambda: octo.resolve_sync(User),
                     lambda: rt.cache.remember_sync("k", 10, lambda: 1),
                     lambda: rt.lock("job").block(1).__enter__(),
                     lambda: rt.tasks.run_sync(pow, 2, 3),
                     lambda: rt.tasks.dispatch_sync(pow, 2, 3)):
            with pytest.raises(RuntimeError, match="called on the event loop's thread") as info:
                call()
            errors.append(str(info.value))
        return errors

    errors = run(in_request(rt, "alice", request))
    assert errors[0].endswith("use await octo.resolve(User) in async code")
    assert "use await cache.remember('k', ...)" in errors[1]
    assert "use async with lock.block() (lock 'job')" in errors[2]
    assert "use await rt.tasks.run(...)" in errors[3]
    assert "use await rt.tasks.dispatch(...)" in errors[4]
    assert rt.lock("job").acquire()  # the failed `with` took nothing


def test_a_script_may_still_run_an_async_entry_point_with_asyncio_run() -> None:
    rt = octo.Octo()
    assert asyncio.run(rt.tasks.run(pow, 2, 10)) == 1024  # no operation, no running runtime


def test_a_thread_waiting_on_a_loop_that_stops_gets_an_error() -> None:
    loop = asyncio.new_event_loop()
    started = threading.Event()
    thread = threading.Thread(target=loop.run_forever)
    thread.start()
    try:
        async def forever() -> None:
            started.set()
            await asyncio.Event().wait()

        outcome: list[BaseException] = []

        def waiter() -> None:
            try:
                bridge.run_on_loop(loop, forever, "octo.resolve_sync(X)")
            except RuntimeError as exc:
                outcome.append(exc)

        caller = threading.Thread(target=waiter)
        caller.start()
        assert started.wait(HANG)
        loop.call_soon_threadsafe(loop.stop)
        caller.join(HANG)
        assert not caller.is_alive()
        assert "octo.resolve_sync(X): the event loop stopped before it was done" in str(
            outcome[0])
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(HANG)
        loop.close()


# -- cache.remember_sync and with lock.block() ---------------------------------------------

def make_cache() -> Cache:
    return Cache(Table("c", 8, Cache.columns(64)), Table("l", 16, Lock.columns(), key_size=128))


def test_remember_sync_computes_once_across_threads_in_the_calling_thread() -> None:
    cache = make_cache()
    calls: list[int] = []
    results: list[str] = []

    def compute() -> str:
        calls.append(threading.get_ident())
        return "fresh"

    def caller() -> None:
        results.append(cache.remember_sync("k", 30, compute))

    threads = [threading.Thread(target=caller) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(HANG)
    assert results == ["fresh"] * 16
    assert len(calls) == 1 and calls[0] in {t.ident for t in threads}


def test_remember_sync_refuses_an_async_factory() -> None:
    async def compute() -> str:
        return "never"

    with pytest.raises(TypeError, match="await cache.remember"):
        make_cache().remember_sync("k", 30, compute)  # type: ignore[arg-type]


def test_with_lock_block_excludes_other_threads_and_times_out() -> None:
    table = Table("l", 8, Lock.columns(), key_size=128)
    inside = [0]
    overlaps: list[int] = []

    def worker() -> None:
        for _ in range(50):
            with Lock(table, "job").block(HANG, poll=0.0005):
                inside[0] += 1
                if inside[0] != 1:
                    overlaps.append(inside[0])
                inside[0] -= 1

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(HANG)
    assert overlaps == []
    holder = Lock(table, "job")
    assert holder.acquire()
    with pytest.raises(LockTimeout, match="'job' not acquired within 0.05s"), \
            Lock(table, "job").block(0.05):
        pass


def test_lock_block_still_works_with_async_with(run: Any) -> None:
    table = Table("l", 8, Lock.columns(), key_size=128)

    async def main() -> bool:
        async with Lock(table, "job").block(1) as lock:
            return not Lock(table, "job").acquire() and lock.name == "job"

    assert run(main())


# -- tasks.run_sync / dispatch_sync (no task workers: in this process) ---------------------

def test_tasks_run_sync_and_dispatch_sync_from_a_thread_of_a_request(run: Any) -> None:
    rt = make_runtime()
    dispatched = threading.Event()
    seen: list[str] = []

    def note() -> None:
        seen.append(octo.resolve_sync(User).name)  # the request's scope went along
        dispatched.set()

    def view() -> int:
        rt.tasks.dispatch_sync(note)
        return int(rt.tasks.run_sync(pow, 2, 10))

    async def request() -> int:
        value = int(await in_thread(view))
        await asyncio.to_thread(dispatched.wait, HANG)
        return value

    assert run(in_request(rt, "alice", request)) == 1024
    assert seen == ["alice"]


def test_tasks_run_sync_timeout_is_a_task_timeout(run: Any) -> None:
    rt = make_runtime()

    async def slow() -> None:
        await asyncio.Event().wait()

    def view() -> str:
        with pytest.raises(octo.TaskTimeout) as info:
            rt.tasks.run_sync(slow, timeout=0.05)
        return str(info.value)

    message = run(in_request(rt, "alice", lambda: in_thread(view)))
    assert message.startswith("task ") and "slow did not finish within 0.05s" in message


def test_task_timeout_survives_pickling() -> None:
    """A task worker sends it back pickled (when its deadline fires first)."""
    import pickle

    sent = octo.TaskTimeout(["mod.fn"], 1.5, "task mod.fn did not finish within 1.5s")
    got = pickle.loads(pickle.dumps(sent))
    assert isinstance(got, octo.TaskTimeout) and isinstance(got, TimeoutError)
    assert (got.pending, got.timeout, str(got)) == (["mod.fn"], 1.5, str(sent))
