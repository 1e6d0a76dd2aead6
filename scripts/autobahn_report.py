#!/usr/bin/env python3
"""Summarise an Autobahn|Testsuite fuzzing-client report (``reports/servers/index.json``).

Prints, per server (agent), how many cases ended in each behavior (OK, NON-STRICT,
INFORMATIONAL, UNIMPLEMENTED, FAILED, ...), how the closing handshakes went, and every FAILED
case with the reason from its case report. Exit status: 0 when no case FAILED, 1 when some
did (or fewer cases than ``--expect-cases`` are in the report), 2 when the report cannot be
read. Cases given to ``--allow-failed`` are still listed when they FAIL, on a line of their
own (``allowed FAILED: ...``), but do not make the status 1. Usage::

    scripts/autobahn_report.py .autobahn/reports/servers/index.json
    scripts/autobahn_report.py --quick .autobahn/reports/servers    # ignore 9.*, 12.*, 13.*

The standard library is all it needs.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BEHAVIORS = ("OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED")
QUICK_EXCLUDES = ("9.*", "12.*", "13.*")
"""Performance/large messages (9.*) and permessage-deflate (12.*, 13.*): the slow part."""


@dataclass(frozen=True)
class CaseResult:
    case_id: str
    behavior: str
    behavior_close: str
    duration_ms: int | None
    remote_close_code: int | None
    reason: str


@dataclass
class AgentSummary:
    agent: str
    cases: list[CaseResult]
    allowed: frozenset[str] = frozenset()
    """FAILED cases that do not count as failures (known, accepted ones)."""

    def counts(self) -> Counter[str]:
        return Counter(case.behavior for case in self.cases)

    def close_counts(self) -> Counter[str]:
        return Counter(case.behavior_close for case in self.cases)

    def failed(self) -> list[CaseResult]:
        """Every FAILED case, allowed or not."""
        return [case for case in self.cases if case.behavior == "FAILED"]

    def failures(self) -> list[CaseResult]:
        """The FAILED cases that are not allowed."""
        return [case for case in self.failed() if case.case_id not in self.allowed]

    def allowed_failures(self) -> list[CaseResult]:
        return [case for case in self.failed() if case.case_id in self.allowed]


def case_key(case_id: str) -> tuple[int, ...]:
    """``"10.1.1"`` sorts after ``"9.8.6"``."""
    return tuple(int(part) if part.isdigit() else 0 for part in case_id.split("."))


def pattern_regex(pattern: str) -> re.Pattern[str]:
    """A case pattern as wstest reads it: ``*`` is any text, everything else is literal."""
    return re.compile("^" + ".*".join(re.escape(part) for part in pattern.split("*")) + "$")


def select(case_ids: Iterable[str], include: Sequence[str], exclude: Sequence[str]) -> list[str]:
    inc = [pattern_regex(p) for p in include]
    exc = [pattern_regex(p) for p in exclude]
    return sorted((c for c in case_ids
                   if any(r.match(c) for r in inc) and not any(r.match(c) for r in exc)),
                  key=case_key)


def _reason(report_dir: Path, entry: dict[str, Any]) -> str:
    """The case report's own words on the outcome, or what the index says when it is gone."""
    name = entry.get("reportfile")
    details: dict[str, Any] = {}
    if isinstance(name, str) and name:
        try:
            details = json.loads((report_dir / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            details = {}
    parts = list(dict.fromkeys(str(details[key]) for key in ("result", "resultClose")
                               if details.get(key)))
    if details.get("remoteCloseReason"):
        parts.append(f"the server's close reason: {details['remoteCloseReason']!r}")
    if not parts:
        parts = [f"behaviorClose={entry.get('behaviorClose')}",
                 f"remoteCloseCode={entry.get('remoteCloseCode')}"]
    return "; ".join(parts)


def load(index_path: Path, include: Sequence[str], exclude: Sequence[str],
         allow_failed: Sequence[str] = ()) -> list[AgentSummary]:
    """Read index.json (and the case reports beside it for FAILED cases)."""
    data = json.loads(index_path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{index_path}: expected a JSON object of agents")
    summaries = []
    for agent in sorted(data):
        entries = data[agent]
        if not isinstance(entries, dict):
            raise ValueError(f"{index_path}: agent {agent!r} is not an object of cases")
        results = []
        for case_id in select(entries, include, exclude):
            entry = entries[case_id]
            behavior = str(entry.get("behavior", "?"))
            results.append(CaseResult(
                case_id=case_id,
                behavior=behavior,
                behavior_close=str(entry.get("behaviorClose", "?")),
                duration_ms=entry.get("duration"),
                remote_close_code=entry.get("remoteCloseCode"),
                reason=_reason(index_path.parent, entry) if behavior == "FAILED" else "",
            ))
        allowed = frozenset(select(entries, allow_failed, ())) if allow_failed else frozenset()
        summaries.append(AgentSummary(agent, results, allowed))
    return summaries


def _format_counts(counts: Counter[str], order: Sequence[str]) -> str:
    names = [*order, *sorted(set(counts) - set(order))]
    return ", ".join(f"{name} {counts.get(name, 0)}" for name in names)


def render(summary: AgentSummary) -> str:
    lines = [f"Autobahn fuzzingclient: {summary.agent}: {len(summary.cases)} cases"]
    lines.append("  behavior: " + _format_counts(summary.counts(), BEHAVIORS))
    lines.append("  closing:  " + _format_counts(summary.close_counts(), ("OK",)))
    total_ms = sum(case.duration_ms or 0 for case in summary.cases)
    slowest = sorted(summary.cases, key=lambda c: c.duration_ms or 0, reverse=True)[:3]
    if slowest:
        lines.append(f"  case time: {total_ms / 1000:.1f}s in all; slowest "
                     + ", ".join(f"{c.case_id} {(c.duration_ms or 0) / 1000:.1f}s"
                                 for c in slowest))
    failed = summary.failed()
    if failed:
        lines.append(f"  FAILED ({len(failed)}):")
        lines.extend(f"    {case.case_id}: {case.reason} (close: {case.behavior_close}, "
                     f"code {case.remote_close_code})" for case in failed)
    allowed = summary.allowed_failures()
    if allowed:
        lines.append("  allowed FAILED: " + " ".join(case.case_id for case in allowed))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report", type=Path, nargs="?",
                        default=Path(".autobahn/reports/servers/index.json"),
                        help="index.json, or the directory holding it "
                             "(default: .autobahn/reports/servers/index.json)")
    parser.add_argument("--cases", default="*",
                        help="comma-separated case patterns to count (default: *, all)")
    parser.add_argument("--exclude", action="append", default=[], metavar="PATTERNS",
                        help="comma-separated case patterns to leave out (repeatable)")
    parser.add_argument("--quick", action="store_true",
                        help="leave out " + ", ".join(QUICK_EXCLUDES) + " (as in a quick run)")
    parser.add_argument("--allow-failed", action="append", default=[], metavar="PATTERNS",
                        help="comma-separated case patterns whose FAILED result is listed "
                             "but does not make the exit status 1 (repeatable)")
    parser.add_argument("--agent", help="only this server (agent) of the report")
    parser.add_argument("--expect-cases", type=int, metavar="N",
                        help="fail unless each agent has N cases (wstest stops early and "
                             "still writes a report when the server goes away)")
    parser.add_argument("--json", action="store_true",
                        help="print the summary as JSON instead of text")
    args = parser.parse_args(argv)

    index_path: Path = args.report
    if index_path.is_dir():
        index_path = index_path / "index.json"
    include = [p.strip() for p in args.cases.split(",") if p.strip()]
    exclude = [p.strip() for value in args.exclude for p in value.split(",") if p.strip()]
    if args.quick:
        exclude.extend(QUICK_EXCLUDES)
    allow = [p.strip() for value in args.allow_failed for p in value.split(",") if p.strip()]
    try:
        summaries = load(index_path, include, exclude, allow)
    except (OSError, ValueError) as exc:
        print(f"autobahn_report: cannot read the report: {exc}", file=sys.stderr)
        return 2
    if args.agent is not None:
        summaries = [s for s in summaries if s.agent == args.agent]
    if not summaries:
        print(f"autobahn_report: no results in {index_path}", file=sys.stderr)
        return 1

    problems = []
    for summary in summaries:
        if summary.failures():
            problems.append(f"{summary.agent}: {len(summary.failures())} case(s) FAILED")
        if args.expect_cases is not None and len(summary.cases) != args.expect_cases:
            problems.append(f"{summary.agent}: {len(summary.cases)} cases in the report, "
                            f"{args.expect_cases} expected (did the server stop answering?)")
        if not summary.cases:
            problems.append(f"{summary.agent}: no cases")

    if args.json:
        print(json.dumps({s.agent: {"cases": len(s.cases), "behavior": dict(s.counts()),
                                    "closing": dict(s.close_counts()),
                                    "failed": {c.case_id: c.reason for c in s.failed()},
                                    "allowed_failed": [c.case_id for c in s.allowed_failures()]}
                          for s in summaries}, indent=2, sort_keys=True))
    else:
        print("\n".join(render(s) for s in summaries))
    for problem in problems:
        print(f"autobahn_report: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
