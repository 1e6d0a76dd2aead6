"""done: the finished awaitable send returns, in C (compiled core) and Python, behaves as a
finished coroutine does wherever apps and libraries take one."""

from __future__ import annotations

import asyncio
import collections.abc
from typing import Any

import anyio
import harness
import pytest


@pytest.fixture
def done(http_core: str) -> Any:
    value = harness.CORE.module("done").done()
    if http_core == "compiled":
        assert type(value).__module__ == "octo._ccore._done"  # the C twin, not the class
    return value


def test_awaiting_it_returns_none_and_it_can_be_awaited_again(done: Any, run: Any) -> None:
    async def twice() -> list[object]:
        return [await done, await done]

    assert run(twice()) == [None, None]


def test_it_is_a_coroutine_to_asyncio_and_anyio(done: Any) -> None:
    assert isinstance(done, collections.abc.Coroutine)
    assert asyncio.iscoroutine(done)

    async def main() -> list[object]:
        got: list[object] = [await asyncio.create_task(done)]
        async with anyio.create_task_group() as group:
            group.start_soon(lambda: done)  # anyio checks for a coroutine object
        got.append(await asyncio.wait_for(done, 5))
        got.append(await asyncio.gather(done, done))
        return got

    assert asyncio.run(main()) == [None, None, [None, None]]


def test_send_close_and_throw_as_on_a_finished_coroutine(done: Any) -> None:
    # Unlike a spent coroutine (RuntimeError: "cannot reuse already awaited coroutine"),
    # DONE may be awaited again: it is shared by every send.
    for _ in range(2):
        with pytest.raises(StopIteration) as stop:
            done.send(None)
        assert stop.value.value is None
    assert done.close() is None
    # throw raises what it is given, as a finished generator (a future's __await__) does.
    error = ValueError("instance")
    with pytest.raises(ValueError) as raised:
        done.throw(error)
    assert raised.value is error
    with pytest.raises(KeyError) as by_class:
        done.throw(KeyError)
    assert type(by_class.value) is KeyError
    try:
        raise RuntimeError("with a traceback")
    except RuntimeError as exc:
        tb = exc.__traceback__
    with pytest.raises(OSError) as with_value:
        done.throw(OSError, OSError(5, "value"), tb)
    assert with_value.value.errno == 5
    frames = []
    walk = with_value.value.__traceback__
    while walk is not None:
        frames.append(walk)
        walk = walk.tb_next
    assert tb in frames
    with pytest.raises(TypeError):
        done.throw(42)
    with pytest.raises(TypeError):
        done.throw(ValueError("x"), "separate value")


def test_send_returns_it_for_a_whole_response(done: Any, run: Any) -> None:
    """Both messages of a whole response are answered with DONE, not a coroutine each; a
    send the cycle refuses is a coroutine that raises when awaited."""
    returned: list[object] = []
    late_error: list[BaseException] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        for message in ({"type": "http.response.start", "status": 200, "headers": []},
                        {"type": "http.response.body", "body": b"hi"}):
            awaitable = send(message)
            returned.append(awaitable)
            await awaitable
        late = send({"type": "http.response.body", "body": b"again"})
        returned.append(late)
        try:
            await late
        except Exception as exc:
            late_error.append(exc)

    out, _ = run(harness.exchange(app, [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"]))
    assert out.startswith(b"HTTP/1.1 200 ") and out.endswith(b"\r\n\r\nhi")
    assert returned[0] is done and returned[1] is done
    assert asyncio.iscoroutine(returned[2]) and returned[2] is not done
    assert late_error and "after the response completed" in str(late_error[0])
