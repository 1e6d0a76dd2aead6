"""What a worker counts for --metrics: in the HTTP protocol (in memory) and in octo.stats."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from harness import Client, hello, parse_responses

from octo.config import Config
from octo.http import counters
from octo.http.protocol import EAGER
from octo.stats import BOUNDS, BUCKETS, Histogram, RequestStats, request_start_age

# The in-memory tests run on both HTTP cores (see tests/conftest.py).
pytestmark = pytest.mark.usefixtures("http_core")

GET = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"


def test_status_classes_durations_and_busy_time_are_counted(run) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        status = int(scope["path"][1:])
        if status == 500:
            raise RuntimeError("boom")
        await asyncio.sleep(0.02)
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def main() -> None:
        client = Client(app)
        for path in (b"/200", b"/204", b"/302", b"/404", b"/500"):
            client.send(b"GET " + path + b" HTTP/1.1\r\nHost: a\r\n\r\n")
            await client.settle()
        stats = client.state.stats
        assert stats.status == [0, 0, 2, 1, 1, 1]
        assert stats.duration.count == 5
        assert stats.duration.total >= 4 * 0.02  # four requests slept 20 ms in the app
        assert stats.busy >= 4 * 0.02 and client.state.in_flight == 0
        # None waited behind another (a loop round each: under 25 ms on a busy machine).
        assert stats.wait.count == 5 and sum(stats.wait.counts[:5]) == 5

    run(main())


def test_a_request_the_server_rejects_is_counted_by_its_status(run) -> None:
    async def main() -> None:
        client = Client(hello)
        client.send(b"GET / HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n")
        await client.settle()
        assert parse_responses(client.take())[0].status == 400
        assert client.state.stats.status[4] == 1

    run(main())


def test_a_pipelined_request_waits_for_the_one_before_it(run) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["path"] == "/slow":
            await asyncio.sleep(0.06)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"x"})

    async def main() -> None:
        client = Client(app)
        client.send(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\nGET /next HTTP/1.1\r\nHost: a\r\n\r\n")
        deadline = time.monotonic() + 20
        out = b""
        while len(parse_responses(out)) < 2:
            assert time.monotonic() < deadline
            await client.settle()
            out += client.take()
        waits = client.state.stats.wait
        assert waits.count == 2
        assert sum(waits.counts[:5]) == 1  # /slow started at once (a loop round: < 25 ms)
        assert waits.total >= 0.05  # /next waited for /slow's 60 ms

    run(main())


@pytest.mark.skipif(EAGER, reason="from Python 3.12 the app is called inside the read that "
                                  "completed its head (an eager task): no loop turn to wait for")
def test_a_request_waiting_for_its_turn_on_the_event_loop_counts_that_wait(run) -> None:
    """Queue wait ends at the app call, not where its task is made: three connections'
    requests read in one pass of the loop, each app holding the loop 30 ms before its
    first await, start 0, 30 and 60 ms after their heads were parsed."""
    async def app(scope: Any, receive: Any, send: Any) -> None:
        end = time.monotonic() + 0.03
        while time.monotonic() < end:  # CPU-bound: nothing else runs on the loop meanwhile
            pass
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"x"})

    async def main() -> None:
        clients = [Client(app) for _ in range(3)]
        for client in clients:
            client.send(GET)
        for client in clients:
            await client.settle()
            assert parse_responses(client.take())[0].status == 200
        waits = [client.state.stats.wait for client in clients]
        assert [w.count for w in waits] == [1, 1, 1]
        assert waits[1].total >= 0.025 and waits[2].total >= 0.055, [w.total for w in waits]

    run(main())


def _request_start(value: bytes, peer: str) -> bytes:
    return (b"GET / HTTP/1.1\r\nHost: a\r\nX-Request-Start: " + value + b"\r\n\r\n"), peer


def test_x_request_start_counts_only_from_a_trusted_proxy(run) -> None:
    async def main() -> None:
        stamp = b"t=%d" % int((time.time() - 2.0) * 1000)  # milliseconds, as Heroku sends
        trusted = Client(hello, peer=("127.0.0.1", 5000))
        trusted.send(b"GET / HTTP/1.1\r\nHost: a\r\nX-Request-Start: " + stamp + b"\r\n\r\n")
        await trusted.settle()
        proxied = trusted.state.stats.proxy_wait
        assert proxied.count == 1 and 1.5 < proxied.total < 60
        # Anyone else could make the server look overloaded (and scale it up): ignored.
        stranger = Client(hello, Config(app="x:y"), peer=("203.0.113.9", 5000))
        stranger.send(b"GET / HTTP/1.1\r\nHost: a\r\nX-Request-Start: " + stamp + b"\r\n\r\n")
        await stranger.settle()
        assert stranger.state.stats.proxy_wait.count == 0

    run(main())


def test_request_start_formats() -> None:
    now = 1_700_000_000.0
    assert request_start_age(b"t=1699999999.5", now) == 0.5  # nginx ${msec}: seconds
    assert request_start_age(b"1699999998000", now) == 2.0  # milliseconds
    assert request_start_age(b"t=1699999999000000", now) == 1.0  # microseconds (HAProxy)
    assert request_start_age(b"t=1700000001.0", now) == 0.0  # another host's clock ahead
    for bad in (b"", b"t=", b"soon", b"t=nan", b"-5", b"0", b"t=1000"):
        assert request_start_age(bad, now) is None, bad


def test_histogram_buckets_and_status_classes() -> None:
    histogram = Histogram()
    for value in (0.0, 0.001, 0.0011, 29.0, 31.0):
        histogram.observe(value)
    assert histogram.counts[0] == 2  # le=0.001 holds 0.001 itself
    assert histogram.counts[1] == 1
    assert histogram.counts[len(BOUNDS) - 1] == 1 and histogram.counts[len(BOUNDS)] == 1
    assert histogram.count == 5
    stats = RequestStats()
    for status in (0, 99, 101, 200, 599, 600, 1000):
        stats.count_status(status)
    assert stats.status == [4, 1, 1, 0, 0, 1]
    assert stats.busy_seconds(10.0, 0) == 0.0
    stats.busy_since = 8.0
    assert stats.busy_seconds(10.0, 1) == 2.0


def test_buckets_are_those_of_bisect(http_core: str) -> None:
    """``bucket`` (written out to compile to float comparisons) is bisect_left over BOUNDS,
    the bounds themselves, values between and beyond, and NaN included."""
    from bisect import bisect_left

    import harness

    bucket = harness.CORE.protocol.bucket  # the core's own (compiled, or this module's)
    assert (bucket is counters.bucket) == (http_core == "python")
    assert BUCKETS == len(BOUNDS) + 1
    values = [-1.0, 0.0, float("nan"), float("inf"), 1e9, *BOUNDS]
    values += [b * f for b in BOUNDS for f in (0.999, 1.001)]
    for value in values:
        assert bucket(value) == bisect_left(BOUNDS, value), value
