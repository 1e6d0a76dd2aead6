"""A log-linear latency histogram (HDR-style): fixed memory, ~1% relative precision.

Values are microseconds. Bucket ``b`` covers a range whose width grows with the magnitude,
so recording is O(1) and merging two histograms (one per load process) is adding arrays.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

SUB_BUCKETS = 128  # per power of two: resolution 1/128 ~ 0.8 %
MAX_EXPONENT = 40  # 2**40 us ~ 12.7 days: anything a load test can see
SIZE = SUB_BUCKETS * (MAX_EXPONENT + 2)


class Histogram:
    __slots__ = ("counts", "total", "max", "min", "sum")

    def __init__(self) -> None:
        self.counts = [0] * SIZE
        self.total = 0
        self.max = 0
        self.min = 0
        self.sum = 0

    @staticmethod
    def index(value: int) -> int:
        if value < 2 * SUB_BUCKETS:
            return value
        shift = value.bit_length() - 8  # value >> shift is in [128, 256)
        return min(shift * SUB_BUCKETS + (value >> shift), SIZE - 1)

    @staticmethod
    def value_at(index: int) -> int:
        """The upper edge of bucket *index* (what a percentile reports)."""
        if index < 2 * SUB_BUCKETS:
            return index
        shift = index // SUB_BUCKETS - 1
        mantissa = index - shift * SUB_BUCKETS
        return ((mantissa + 1) << shift) - 1

    def record(self, value: int) -> None:
        value = max(0, int(value))
        self.counts[self.index(value)] += 1
        if self.total == 0 or value < self.min:
            self.min = value
        self.total += 1
        self.sum += value
        if value > self.max:
            self.max = value

    def merge(self, other: Histogram) -> None:
        if other.total == 0:
            return
        self.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]
        self.min = other.min if self.total == 0 else min(self.min, other.min)
        self.total += other.total
        self.sum += other.sum
        self.max = max(self.max, other.max)

    def percentile(self, pct: float) -> int:
        if self.total == 0:
            return 0
        rank = max(1, math.ceil(self.total * pct / 100.0))
        seen = 0
        for index, count in enumerate(self.counts):
            seen += count
            if seen >= rank:
                return min(self.value_at(index), self.max)
        return self.max

    def mean(self) -> float:
        return self.sum / self.total if self.total else 0.0

    def to_dict(self) -> dict[str, object]:
        sparse = {str(i): c for i, c in enumerate(self.counts) if c}
        return {"counts": sparse, "total": self.total, "max": self.max, "min": self.min,
                "sum": self.sum}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Histogram:
        hist = cls()
        counts = data["counts"]
        assert isinstance(counts, dict)
        for key, count in counts.items():
            hist.counts[int(key)] = int(count)
        for name in ("total", "max", "min", "sum"):
            value = data[name]
            assert isinstance(value, int)
            setattr(hist, name, value)
        return hist

    @classmethod
    def of(cls, values: Iterable[int]) -> Histogram:
        hist = cls()
        for value in values:
            hist.record(value)
        return hist
