"""State-leak detector (``--detect-leaks``): the Python form of Octane's warning about
``static`` variables in a long-lived process.

After each request it fingerprints the app's module-level mutable containers and the
attributes of built singletons, and warns once per name when one grows or changes between
requests. The first request sets the baseline (lazy initialisation is not a leak).
"""

from __future__ import annotations

import inspect
import os
import sys
from collections import deque
from typing import TYPE_CHECKING, Any

from octo import handoff
from octo.logs import error_log

if TYPE_CHECKING:
    from octo.runtime.container import Container

_CONTAINERS = (list, dict, set, bytearray, deque)


def _fingerprint(value: Any) -> tuple[int, int]:
    if isinstance(value, _CONTAINERS):
        return id(value), len(value)
    return id(value), -1


class LeakDetector:
    def __init__(self, container: Container, app: Any) -> None:
        self.container = container  # its built singletons are watched too
        module = inspect.getmodule(app) or inspect.getmodule(type(app))
        base = getattr(module, "__file__", None)
        self.roots = [os.path.dirname(os.path.abspath(base))] if base else []
        self.roots.append(handoff.settings().app_dir)
        self.baseline: dict[str, tuple[int, int]] | None = None
        self.reported: set[str] = set()

    def _app_modules(self) -> list[Any]:
        found = []
        for module in list(sys.modules.values()):
            path = getattr(module, "__file__", None)
            if not path or "site-packages" in path or module.__name__.startswith("octo"):
                continue
            path = os.path.abspath(path)
            if any(path.startswith(root + os.sep) for root in self.roots):
                found.append(module)
        return found

    def snapshot(self) -> dict[str, tuple[int, int]]:
        prints: dict[str, tuple[int, int]] = {}
        for module in self._app_modules():
            for name, value in list(vars(module).items()):
                if not name.startswith("__") and isinstance(value, _CONTAINERS):
                    prints[f"global {module.__name__}.{name}"] = _fingerprint(value)
        for key, instance in list(self.container.singletons.items()):
            attrs = getattr(instance, "__dict__", None)
            if attrs is None:
                continue
            owner = getattr(key, "__name__", repr(key))
            for name, value in list(attrs.items()):
                prints[f"singleton {owner} attribute {name!r}"] = _fingerprint(value)
        return prints

    def check(self) -> None:
        current = self.snapshot()
        if self.baseline is None:
            self.baseline = current
            return
        for name, now in current.items():
            before = self.baseline.get(name)
            if before is None or before == now or name in self.reported:
                continue
            self.reported.add(name)
            how = (f"grew from {before[1]} to {now[1]} items" if before[0] == now[0]
                   and now[1] > before[1] else "changed")
            error_log.warning("possible state leak: %s %s across requests; it lives as long "
                              "as the worker and every later request sees it", name, how)
        self.baseline = current
