"""The slowly moving part of a worker's report: its tables' usage and its tick counts.

A worker writes it as one small JSON document into its slot's usage area every few
heartbeats (``Slots.write_tables``) and once more as it exits; the master reads it for
``--metrics`` and the dashboard. Tables are shared by every worker, so any worker's view of
them is the server's; tick counts are the worker's own, so the master adds them up over the
workers and keeps those of the workers that exited (:class:`TickTotals`), like every other
counter: a total never goes down when workers are recycled.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

TableRow = tuple[str, int, int]  # name, rows used, capacity
TickRow = tuple[str, int, int, int]  # name, runs, skipped, failed
MAX_TICKS = 24  # tick names reported (the usage area is 2 KiB; names are cut to 48 chars)
NAME_CHARS = 48


def usage_json(tables: Iterable[TableRow], ticks: Iterable[TickRow]) -> bytes:
    """The document a worker writes."""
    shown = [(name[:NAME_CHARS], *rest) for name, *rest in list(ticks)[:MAX_TICKS]]
    return json.dumps({"tables": list(tables), "ticks": shown},
                      separators=(",", ":")).encode()


def parse_usage(document: Any) -> tuple[list[TableRow], list[TickRow]]:
    """(tables, ticks) from what ``Slots.read_tables`` decoded (None: nothing yet);
    anything malformed counts as nothing (the area is the worker's to write)."""
    if not isinstance(document, dict):
        return [], []
    tables = [(str(r[0]), int(r[1]), int(r[2])) for r in document.get("tables") or []
              if _row(r, 3)]
    ticks = [(str(r[0]), int(r[1]), int(r[2]), int(r[3])) for r in document.get("ticks") or []
             if _row(r, 4)]
    return tables, ticks


def _row(row: Any, width: int) -> bool:
    return (isinstance(row, list) and len(row) == width and isinstance(row[0], str)
            and all(isinstance(v, int) for v in row[1:]))


class TickTotals:
    """Tick counts by name: those of exited workers, plus the running ones' on demand."""

    def __init__(self) -> None:
        self.retired: dict[str, list[int]] = {}

    def retire(self, ticks: Iterable[TickRow]) -> None:
        """A worker exits: its last reported counts join the retired totals."""
        _add(self.retired, ticks)

    def summed(self, running: Iterable[Iterable[TickRow]]) -> list[TickRow]:
        """Totals by name: retired plus every running worker's *running* counts."""
        out = {name: list(values) for name, values in self.retired.items()}
        for ticks in running:
            _add(out, ticks)
        return sorted((name, v[0], v[1], v[2]) for name, v in out.items())


def _add(into: dict[str, list[int]], ticks: Iterable[TickRow]) -> None:
    for name, *values in ticks:
        mine = into.setdefault(name, [0, 0, 0])
        for i, value in enumerate(values):
            mine[i] += value
