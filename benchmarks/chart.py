"""The report's chart: grouped bars per scenario, one bar per server, error bars min–max.

Bars show req/s relative to the baseline server (median of the per-round ratios, whiskers
their min–max) when the baseline took part, else absolute req/s (median, whiskers min–max).
matplotlib is imported only when drawing, so the rest of the suite works without it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from report import Summary

COLORS = {"octo": "#d9480f", "uvicorn": "#1c7ed6", "granian": "#37b24d",
          "hypercorn": "#7048e8", "raw-ceiling": "#868e96"}
FALLBACK_COLORS = ("#f59f00", "#0ca678", "#e64980", "#495057")
GROUP_WIDTH = 0.8  # share of a scenario's slot taken by its bars
CLIP_FACTOR = 1.6  # a bar this many times higher than any other is cut off, value written


class ChartUnavailable(RuntimeError):
    """matplotlib is missing (the message says so)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Bar:
    scenario: str
    server: str
    value: float
    low: float
    high: float


def bars(summaries: Sequence[Summary], relative: bool) -> list[Bar]:
    """One bar per summary with a number: the ratio to the baseline, or req/s."""
    out = []
    for s in summaries:
        value, low, high = ((s.ratio_median, s.ratio_min, s.ratio_max) if relative
                            else (s.rps_median, s.rps_min, s.rps_max))
        if value is not None and low is not None and high is not None:
            out.append(Bar(s.scenario, s.server, value, low, high))
    return out


def offsets(count: int, slots: int) -> list[float]:
    """x offsets of *count* bars centred in a group sized for *slots* bars."""
    width = GROUP_WIDTH / max(slots, 1)
    return [(i - (count - 1) / 2) * width for i in range(count)]


def clip_limit(drawn: Sequence[Bar]) -> float | None:
    """A y limit when one bar towers over the rest (the raw ceiling), so the others stay
    readable; None when no bar does."""
    highs = sorted((b.high for b in drawn), reverse=True)
    if len(highs) < 2 or highs[0] <= CLIP_FACTOR * highs[1]:
        return None
    return highs[1] * 1.2


def color(server: str, servers: Sequence[str]) -> str:
    if server in COLORS:
        return COLORS[server]
    return FALLBACK_COLORS[servers.index(server) % len(FALLBACK_COLORS)]


def group_label(scenario: str, summaries: Sequence[Summary], baseline: str,
                relative: bool) -> str:
    """The scenario name, and in relative mode the baseline's absolute req/s below it."""
    if not relative:
        return scenario
    base = next((s.rps_median for s in summaries
                 if s.scenario == scenario and s.server == baseline), None)
    return scenario if base is None else f"{scenario}\n{baseline} {base / 1000:,.1f}k/s"


def draw(summaries: Sequence[Summary], scenarios: Sequence[str], servers: Sequence[str],
         baseline: str, title: str, path: Path) -> None:
    """Write the chart to *path* (PNG); ChartUnavailable without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ChartUnavailable(f"matplotlib is not installed ({exc})") from exc
    relative = any(s.server == baseline and s.ratio_median is not None for s in summaries)
    drawn = bars(summaries, relative)
    shown = [sc for sc in scenarios if any(b.scenario == sc for b in drawn)]
    slots = max((sum(1 for b in drawn if b.scenario == sc) for sc in shown), default=1)
    fig, ax = plt.subplots(figsize=(max(8.0, 1.15 * len(shown) + 2.5), 5.6), dpi=120)
    limit = clip_limit(drawn)
    seen: set[str] = set()
    for x, scenario in enumerate(shown):
        group = sorted((b for b in drawn if b.scenario == scenario),
                       key=lambda b: servers.index(b.server))
        for bar, dx in zip(group, offsets(len(group), slots), strict=True):
            label = bar.server if bar.server not in seen else None
            seen.add(bar.server)
            ax.bar(x + dx, bar.value, GROUP_WIDTH / slots * 0.92, label=label,
                   color=color(bar.server, servers),
                   yerr=[[bar.value - bar.low], [bar.high - bar.value]], capsize=2,
                   error_kw={"elinewidth": 0.8, "ecolor": "#212529"})
            if limit is not None and bar.value > limit:
                ax.text(x + dx, limit * 0.97, f"{bar.value:.2f}{'x' if relative else ''} (cut)",
                        ha="center", va="top", rotation=90, fontsize=7, color="white")
    if limit is not None:
        ax.set_ylim(0, limit)
    if relative:
        ax.axhline(1.0, color="#495057", linewidth=0.8, linestyle="--")
    ax.set_xticks(range(len(shown)),
                  [group_label(sc, summaries, baseline, relative) for sc in shown], fontsize=8)
    ax.set_ylabel(f"req/s relative to {baseline}" if relative else "req/s")
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", linewidth=0.4, alpha=0.6)
    ax.set_axisbelow(True)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.005, 1.0), frameon=False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
