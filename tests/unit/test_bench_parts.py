from __future__ import annotations

import math
import random

import pytest

from octo.bench.histogram import Histogram
from octo.bench.load import Plan, Stats, is_loopback


def test_histogram_percentiles_within_one_percent() -> None:
    rng = random.Random(7)
    values = [rng.randint(1, 5_000_000) for _ in range(50_000)]
    hist = Histogram.of(values)
    values.sort()
    for pct in (50, 90, 99, 99.9):
        exact = values[max(0, math.ceil(len(values) * pct / 100) - 1)]
        assert abs(hist.percentile(pct) / exact - 1) < 0.01
    assert hist.percentile(100) == hist.max == values[-1]
    assert hist.min == values[0]


def test_histogram_small_values_are_exact_and_merge_adds() -> None:
    a, b = Histogram.of([1, 2, 3]), Histogram.of([100, 200])
    a.merge(b)
    assert a.total == 5 and a.percentile(40) == 2 and a.max == 200 and a.min == 1
    assert Histogram.from_dict(a.to_dict()).percentile(80) == a.percentile(80)


def test_stats_roundtrip() -> None:
    stats = Stats()
    stats.latency.record(1500)
    stats.statuses[200] += 3
    stats.errors["read"] += 1
    copy = Stats.from_dict(stats.to_dict())
    assert copy.statuses == {200: 3} and copy.errors == {"read": 1}
    assert copy.latency.percentile(50) == stats.latency.percentile(50)


def test_request_bytes() -> None:
    plan = Plan("http://127.0.0.1:9/x?y=1", method="POST", headers=(("X-A", "b"),), body=b"hi")
    assert plan.request_bytes() == (b"POST /x?y=1 HTTP/1.1\r\nHost: 127.0.0.1:9\r\nX-A: b\r\n"
                                    b"Content-Length: 2\r\n\r\nhi")
    with pytest.raises(ValueError, match="http://"):
        Plan("https://127.0.0.1/").address()


def test_loopback_detection() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("192.0.2.1") and not is_loopback("no-such-host.invalid")
