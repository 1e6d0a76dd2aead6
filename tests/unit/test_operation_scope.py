"""One operation scope (octo.runtime.sandbox.OperationScope) for requests, ticks and tasks:
enter → the caller's events and work → finish → terminated events → leave."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from octo.runtime import events as ev
from octo.runtime.sandbox import Operation, OperationScope, current_operation


class Host:
    """A runtime that records what the scope asks of it, and what was current then."""

    def __init__(self, fail_finish: bool = False) -> None:
        self.events = ev.Events()
        self.seen: list[Any] = []
        self.fail_finish = fail_finish
        self.events.listen(ev.Event, lambda e: self.seen.append(
            (type(e).__name__, current_operation() is not None)))

    async def finish(self, op: Operation) -> None:
        self.seen.append(("finish", current_operation() is op))
        if self.fail_finish:
            raise RuntimeError("dispose failed")


@pytest.mark.parametrize("kind", ["request", "tick", "task"])
def test_each_kind_finishes_then_terminates_then_leaves(kind: str) -> None:
    host = Host()
    scope = {"type": "http"} if kind == "request" else None

    async def run() -> Operation:
        async with OperationScope(kind, host, scope) as op:
            assert current_operation() is op and op.state["runtime"] is host
            op.status = 201
        assert current_operation() is None
        return op

    op = asyncio.run(run())
    closing = [("RequestTerminated", True)] if kind == "request" else []
    assert host.seen == [("finish", True), *closing, ("OperationTerminated", True)]
    assert op.kind == kind


def test_a_raising_block_still_finishes_and_the_error_goes_on() -> None:
    host = Host()

    async def run() -> None:
        async with OperationScope("request", host, {"type": "http"}):
            raise ValueError("app failed")

    with pytest.raises(ValueError, match="app failed"):
        asyncio.run(run())
    assert [name for name, _ in host.seen] == ["finish", "RequestTerminated",
                                               "OperationTerminated"]


def test_the_operation_is_left_even_when_finishing_fails() -> None:
    async def run() -> Operation | None:
        with pytest.raises(RuntimeError, match="dispose failed"):
            async with OperationScope("tick", Host(fail_finish=True)):
                pass
        return current_operation()

    assert asyncio.run(run()) is None


def test_without_a_runtime_the_operation_only_carries_the_context() -> None:
    async def run() -> tuple[Operation | None, Operation | None]:
        async with OperationScope("task", None) as op:
            inside = current_operation()
        assert op.state == {}
        return inside, current_operation()

    inside, after = asyncio.run(run())
    assert inside is not None and inside.kind == "task" and after is None
