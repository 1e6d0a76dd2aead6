"""asyncio's task registry with a compiled ``add`` and weakref callback.

Every Task that is scheduled enters the registry behind ``asyncio.all_tasks()``, a
``weakref.WeakSet``, through its ``add``, which the C Task looks up by name on the instance
each time; the weakref callback that takes the task out when it is freed is WeakSet's own
closure. Both are Python frames: on Python 3.11, where every request's Task is registered,
1,990 and 1,370 of the 36,800 instructions a hello request cost (callgrind; 3.12 registers
only the eager tasks that suspend). ``install`` gives the registry compiled versions of
the two that do exactly what WeakSet's do: the same entry per task (a weakref), removals
deferred while the set is being iterated, committed at the next ``add``.

A core module (compiled with the others, see octo.http.core).
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any, Final

_ref: Final = weakref.ref
_WeakSet: Final = weakref.WeakSet
# 3.12+ keeps the scheduled (not eager) tasks here; 3.11 every task under the older name.
_NAMES: Final = ("_scheduled_tasks", "_all_tasks")


class CompiledRegistry:
    """``add`` and the weakref callback of one WeakSet, as WeakSet defines them."""

    def __init__(self, registry: Any) -> None:
        self.registry = registry
        # WeakSet never rebinds these three: every change is made in place.
        self.data: set[Any] = registry.data
        self.pending: list[Any] = registry._pending_removals
        self.iterating: set[Any] = registry._iterating
        self.callback = self.removed  # bound once, not per entry

    def add(self, item: object) -> None:
        if self.pending:
            self.registry._commit_removals()
        self.data.add(_ref(item, self.callback))

    def removed(self, entry: Any) -> None:
        """The weakref callback: *entry*'s task was freed."""
        if self.iterating:
            self.pending.append(entry)  # an iteration is running: it commits them
        else:
            self.data.discard(entry)


def registry() -> Any:
    """asyncio's task registry, when it is the WeakSet this module knows; else None."""
    for name in _NAMES:
        found = getattr(asyncio.tasks, name, None)
        if found is not None:
            return found if type(found) is _WeakSet else None
    return None


def install() -> bool:
    """Give asyncio's task registry the compiled ``add`` (once per process). False when it
    is not a plain WeakSet or its ``add`` is replaced already (by this or by anyone else:
    instrumentation is left alone)."""
    found = registry()
    if found is None or "add" in vars(found):  # installed (by either core), or not ours
        return False
    found.add = CompiledRegistry(found).add
    return True


def uninstall() -> None:
    """Back to WeakSet's own ``add`` (for tests). Entries made meanwhile keep their callback."""
    found = registry()
    if found is not None and _ours(vars(found).get("add")):
        del found.add


def _ours(add: object) -> bool:
    """Whether *add* is a CompiledRegistry's, of either core (pure or compiled)."""
    owner = type(getattr(add, "__self__", None))
    return owner.__name__ == "CompiledRegistry" and owner.__module__.endswith(".taskreg")
