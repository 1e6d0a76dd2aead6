from __future__ import annotations

import asyncio
import contextvars
import os
import threading
import time
import traceback

import pytest

import octo
from octo.runtime.concurrent import shutdown_pool
from octo.runtime.sandbox import Operation, current_operation, enter, leave

who: contextvars.ContextVar[str] = contextvars.ContextVar("who", default="nobody")


@pytest.fixture(autouse=True, scope="module")
def _no_pool_threads_after_this_module():
    # Later tests fork; a process with idle pool threads should not.
    yield
    shutdown_pool()


def test_results_in_argument_order_mixing_async_and_threads(run) -> None:
    async def slow() -> str:
        await asyncio.sleep(0.03)
        return "slow"

    async def fast() -> int:
        return 2

    def blocking() -> str:
        time.sleep(0.02)
        return threading.current_thread().name

    async def main() -> tuple[str, int, str]:
        return await octo.concurrently(slow, fast, blocking)

    slow_r, fast_r, thread_name = run(main())
    assert (slow_r, fast_r) == ("slow", 2) and thread_name.startswith("octo-concurrently")


def test_they_really_run_at_the_same_time(run) -> None:
    # Each of the four waits until all four have started: run one after another, the first
    # would wait for the others in vain (until the deadline) and report False.
    started = [0]
    lock = threading.Lock()
    in_threads = threading.Event()
    on_loop: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    def arrive() -> None:
        with lock:
            started[0] += 1
            if started[0] == 4:
                in_threads.set()
                loop, event = on_loop[0]
                loop.call_soon_threadsafe(event.set)

    async def nap() -> bool:
        arrive()
        try:
            await asyncio.wait_for(on_loop[0][1].wait(), 20)
        except TimeoutError:
            return False
        return True

    def block() -> bool:
        arrive()
        return in_threads.wait(20)

    async def main() -> tuple[bool, ...]:
        on_loop.append((asyncio.get_running_loop(), asyncio.Event()))
        return await octo.concurrently(nap, nap, block, block)

    assert run(main()) == (True, True, True, True)


def test_empty_call() -> None:
    assert asyncio.run(octo.concurrently()) == ()


def test_timeout_cancels_the_rest_and_names_them(run) -> None:
    cancelled: list[str] = []

    async def quick() -> int:
        return 1

    async def forever() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append("forever")
            raise

    async def main() -> None:
        await octo.concurrently(quick, forever, timeout=0.05)

    with pytest.raises(octo.TaskTimeout, match="forever") as info:
        run(main())
    assert info.value.pending == [
        "test_timeout_cancels_the_rest_and_names_them.<locals>.forever"]
    assert cancelled == ["forever"]


def test_first_exception_cancels_others_and_keeps_traceback(run) -> None:
    cancelled: list[bool] = []

    async def boom() -> None:
        await asyncio.sleep(0.01)
        raise ValueError("original")

    async def long() -> None:
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    async def main() -> None:
        await octo.concurrently(long, boom)

    with pytest.raises(ValueError, match="original") as info:
        run(main())
    assert cancelled == [True]
    assert "boom" in "".join(traceback.format_tb(info.value.__traceback__))


def test_caller_cancellation_cancels_children(run) -> None:
    cancelled: list[bool] = []

    running: list[bool] = []
    both: list[asyncio.Event] = []

    async def long() -> None:
        running.append(True)
        if len(running) == 2:
            both[0].set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    async def main() -> None:
        both.append(asyncio.Event())
        task = asyncio.ensure_future(octo.concurrently(long, long))
        await asyncio.wait_for(both[0].wait(), 20)  # both children wait: cancel the caller
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(main())
    assert cancelled == [True, True]


def test_context_and_sandbox_scope_propagate(run) -> None:
    async def in_coro() -> tuple[str, str | None]:
        op = current_operation()
        return who.get(), op.kind if op else None

    def in_thread() -> tuple[str, str | None]:
        op = current_operation()
        return who.get(), op.kind if op else None

    async def main() -> tuple[tuple[str, str | None], tuple[str, str | None]]:
        who.set("alice")
        token = enter(Operation("request"))
        try:
            return await octo.concurrently(in_coro, in_thread)
        finally:
            leave(token)

    assert run(main()) == (("alice", "request"), ("alice", "request"))


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_gets_a_working_pool() -> None:
    # The child inherits the pool object but not its threads; work must still run there.
    assert asyncio.run(octo.concurrently(lambda: 1)) == (1,)
    pid = os.fork()
    if pid == 0:
        try:
            result = asyncio.run(asyncio.wait_for(octo.concurrently(lambda: 2), 5))
            os._exit(0 if result == (2,) else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
