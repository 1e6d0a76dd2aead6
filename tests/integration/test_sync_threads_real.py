"""--reuse-sync-threads under a real ``octo serve`` of a Django app: a sync view's thread
serves the next request too (Django alone starts one thread a request), and with
--no-reuse-sync-threads every request gets a new one again."""

from __future__ import annotations

import httpx
import pytest
from server import ROOT, run_server

APP = "apps.django_sync.asgi:asgi"
REQUESTS = 5
DEADLINE = 60.0


def _served(url: str) -> list[tuple[int, int]]:
    """(thread, the thread-local request count) the sync view reports, for requests one
    after another."""
    with httpx.Client(base_url=url, timeout=DEADLINE) as client:
        return [(body["thread"], body["served"]) for body in
                (client.get("/sync-thread").json() for _ in range(REQUESTS))]


@pytest.mark.parametrize("flag", ["--reuse-sync-threads", "--no-reuse-sync-threads"])
def test_a_sync_views_thread_is_reused_only_when_asked(flag: str) -> None:
    with run_server(APP, "--app-dir", str(ROOT / "tests"), "--workers", "1", flag,
                    "--no-access-log", ready_path="/tally?user=x") as srv:
        served = _served(srv.url)
    if flag == "--no-reuse-sync-threads":
        assert [count for _, count in served] == [1] * REQUESTS, served  # new each time
        return
    # Django finishes a request (response.close(), request_finished) after the client has
    # its answer, so the next request may find that thread still busy and take another:
    # fewer threads than requests, each counting its own requests from 1.
    threads = {thread for thread, _ in served}
    assert len(threads) < REQUESTS, served
    for thread in threads:
        counts = [count for t, count in served if t == thread]
        assert counts == list(range(1, len(counts) + 1)), served
