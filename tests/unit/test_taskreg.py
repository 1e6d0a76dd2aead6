"""taskreg: asyncio's task registry with a compiled add keeps WeakSet's behaviour."""

from __future__ import annotations

import asyncio
import gc
import weakref
from types import ModuleType
from typing import Any

import harness
import pytest


@pytest.fixture
def taskreg(http_core: str) -> ModuleType:
    return harness.CORE.module("taskreg")


class Item:
    """Something a WeakSet can hold."""


def patched(taskreg: ModuleType) -> weakref.WeakSet[Any]:
    """A WeakSet of its own with the compiled add, as install() gives asyncio's."""
    weakset: weakref.WeakSet[Any] = weakref.WeakSet()
    weakset.add = taskreg.CompiledRegistry(weakset).add  # type: ignore[method-assign]
    return weakset


def test_entries_are_those_of_weakset(taskreg: ModuleType) -> None:
    ours, plain = patched(taskreg), weakref.WeakSet[Any]()
    items = [Item() for _ in range(5)]
    for item in items:
        ours.add(item)
        plain.add(item)
    assert len(ours) == len(plain) == 5
    assert set(ours) == set(plain) == set(items)
    assert all(item in ours for item in items) and Item() not in ours
    ours.add(items[0])  # again: still one entry, as WeakSet keeps it
    assert len(ours) == 5
    del item
    items.pop()  # freed: the callback takes it out at once
    assert len(ours) == len(ours.data) == 4


def test_removals_during_an_iteration_wait_for_it_to_end(taskreg: ModuleType) -> None:
    ours = patched(taskreg)
    items = [Item() for _ in range(3)]
    for item in items:
        ours.add(item)
    del item
    walk = iter(ours)
    current = next(walk)  # an iteration is running (WeakSet's guard); it holds *current*
    items.remove(current)
    items.pop()  # not the one the iteration holds: freed now
    assert len(ours.data) == 3 and len(ours._pending_removals) == 1  # type: ignore[attr-defined]
    assert len(ours) == 2
    extra = Item()
    ours.add(extra)  # an add meanwhile commits the pending removal first, as WeakSet's
    assert len(ours._pending_removals) == 0  # type: ignore[attr-defined]
    assert len(ours.data) == 3
    items.pop()
    assert len(ours._pending_removals) == 1  # type: ignore[attr-defined]
    del walk, current  # the iteration ends: its guard commits what was deferred
    gc.collect()
    assert len(ours) == len(ours.data) == 1 and extra in ours


def test_install_is_once_and_leaves_other_adds_alone(taskreg: ModuleType) -> None:
    registry = taskreg.registry()
    assert isinstance(registry, weakref.WeakSet)
    before = vars(registry).get("add")
    taskreg.uninstall()
    try:
        assert taskreg.install() is True
        assert taskreg.install() is False  # installed already
        taskreg.uninstall()
        registry.add = print  # type: ignore[method-assign]  # someone else's instrumentation
        assert taskreg.install() is False
        taskreg.uninstall()  # not ours: left in place
        assert vars(registry)["add"] is print
    finally:
        vars(registry).pop("add", None)
        if before is not None:
            registry.add = before  # type: ignore[method-assign]


def test_tasks_are_listed_while_they_run_and_leave_when_freed(taskreg: ModuleType) -> None:
    registry = taskreg.registry()
    taskreg.uninstall()
    taskreg.install()
    assert type(registry.add.__self__) is taskreg.CompiledRegistry
    freed: list[weakref.ref[Any]] = []
    base = len(registry.data)

    async def main() -> None:
        release = asyncio.Event()

        async def waiter() -> None:
            await release.wait()

        tasks = [asyncio.create_task(waiter()) for _ in range(10)]
        await asyncio.sleep(0)
        assert set(tasks) <= asyncio.all_tasks()
        assert len(registry.data) >= base + 10
        release.set()
        for task in tasks:
            await task
        freed.extend(weakref.ref(task) for task in tasks)

    try:
        asyncio.run(main())
        gc.collect()
        assert all(ref() is None for ref in freed)  # the tasks are gone, and so are
        assert len(registry.data) <= base  # their entries, through the compiled callback
    finally:
        taskreg.uninstall()
        taskreg.install()
