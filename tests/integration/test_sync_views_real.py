"""Sync Django views using the runtime under a real ``octo serve`` (2 HTTP workers, 2 task
workers): octo.resolve_sync with request-scoped services, cache.remember_sync, ``with
lock.block()``, tasks.run_sync and tasks.dispatch_sync, with concurrent users that must
never see each other's objects; and the misuse errors, which must come back as errors
(not coroutines, not a deadlocked worker)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator

import httpx
import pytest
from server import ROOT, Server, run_server

APP = "apps.django_sync.asgi:asgi"
USERS = ("alice", "bob", "carol")
PER_USER = 30
CONCURRENCY = 12  # bounded: enough to interleave the workers' threads, no load test
DEADLINE = 60.0
MAX_ROUNDS = 5


@pytest.fixture(scope="module")
def django_sync() -> Iterator[Server]:
    with run_server(APP, "--app-dir", str(ROOT / "tests"), "--workers", "2",
                    "--task-workers", "2", "--no-access-log", ready_path="/tally?user=x") as srv:
        yield srv


async def _all_users(url: str) -> list[tuple[str, int, dict[str, object]]]:
    jobs = [(user, i) for user in USERS for i in range(PER_USER)]
    random.Random(15).shuffle(jobs)  # users interleaved, reproducibly
    gate = asyncio.Semaphore(CONCURRENCY)
    async with httpx.AsyncClient(base_url=url, timeout=DEADLINE,
                                 limits=httpx.Limits(max_connections=CONCURRENCY)) as client:

        async def one(user: str, n: int) -> tuple[str, int, dict[str, object]]:
            async with gate:
                reply = await client.get("/whoami", params={"user": user, "n": n})
            assert reply.status_code == 200, reply.text
            return user, n, reply.json()

        return await asyncio.gather(*(one(user, n) for user, n in jobs))


def test_sync_views_use_every_sync_entry_point_and_users_never_cross(
        django_sync: Server) -> None:
    http_pids, task_pids = set(), set()
    rounds = 0
    # Which worker accepts a connection is the kernel's and the acceptors' business: more
    # rounds (bounded) until both workers served users, so "never cross" spans both.
    while len(http_pids) < 2 and rounds < MAX_ROUNDS:
        rounds += 1
        results = asyncio.run(asyncio.wait_for(_all_users(django_sync.url), DEADLINE * 2))
        _check_answers(results, http_pids, task_pids)
    assert len(http_pids) == 2 and not http_pids & task_pids, (rounds, http_pids, task_pids)
    with httpx.Client(base_url=django_sync.url, timeout=DEADLINE) as client:
        for user in USERS:
            deadline = time.monotonic() + DEADLINE
            while (tally := client.get("/tally", params={"user": user}).json())[
                    "dispatched"] != PER_USER * rounds:
                assert time.monotonic() < deadline, f"dispatched tasks of {user}: {tally}"
                time.sleep(0.05)
            # Computed once across the stampede and both workers; the lock never shared.
            assert tally == {"builds": 1, "dispatched": PER_USER * rounds, "overlaps": 0}


def _check_answers(results: list[tuple[str, int, dict[str, object]]], http_pids: set[object],
                   task_pids: set[object]) -> None:
    for user, n, body in results:
        assert body["user"] == user == body["asked"], body  # the request's own Profile
        assert body["same"] is True  # one Profile per request, resolved thrice
        assert body["same_via_async_to_sync"] is True  # Django's idiom works too
        assert body["factory_used_view_thread"] is True  # a thread-sensitive factory
        assert body["view_in_main_thread"] is False  # the view ran in a thread...
        assert body["factory_in_main_thread"] is True  # ...its async factory on the loop
        assert body["settings_pid"] == body["pid"]  # the worker's own singleton
        assert body["greeting"] == f"hello {user}"
        assert body["squared"] == n * n
        assert body["task_pid"] == body["task_settings_pid"] != body["pid"]  # a task worker
        http_pids.add(body["pid"])
        task_pids.add(body["task_pid"])


def test_async_entry_points_without_await_in_a_sync_view_are_errors(
        django_sync: Server) -> None:
    mark = django_sync.log_size()
    errors = httpx.get(django_sync.url + "/misuse-sync", timeout=DEADLINE).json()
    assert errors == {
        "resolve": "NotAwaited: octo.resolve(Profile) is async and was not awaited, so this "
                   "is a coroutine, not its result: use octo.resolve_sync(Profile) in sync "
                   "code (a sync view, a thread), or await octo.resolve(Profile) in async "
                   "code",
        "remember": "NotAwaited: cache.remember('k', ...) is async and was not awaited, so "
                    "this is a coroutine, not its result: use cache.remember_sync('k', ...) "
                    "in sync code (a sync view, a thread), or await cache.remember('k', ...) "
                    "in async code",
        "run": "NotAwaited: rt.tasks.run(apps.django_sync.tasks.square) is async and was not "
               "awaited, so this is a coroutine, not its result: use "
               "rt.tasks.run_sync(apps.django_sync.tasks.square) in sync code (a sync view, "
               "a thread), or await rt.tasks.run(apps.django_sync.tasks.square) in async "
               "code",
    }
    log = django_sync.wait_for_log("was called without await", DEADLINE, since=mark)
    assert ("rt.tasks.dispatch(apps.django_sync.tasks.note) was called without await in sync "
            "code, so it never ran: use rt.tasks.dispatch_sync(apps.django_sync.tasks.note) "
            "there") in log
    assert "was never awaited" not in django_sync.log()  # octo's message, not Python's


def test_sync_entry_points_in_an_async_view_raise_instead_of_deadlocking(
        django_sync: Server) -> None:
    errors = httpx.get(django_sync.url + "/misuse-async", timeout=DEADLINE).json()
    assert set(errors) == {"resolve_sync", "remember_sync", "block", "run_sync",
                           "dispatch_sync"}
    for name, message in errors.items():
        assert "called on the event loop's thread" in message, (name, message)
    assert errors["resolve_sync"].endswith("use await octo.resolve(Profile) in async code")
    assert errors["block"].endswith("use async with lock.block() (lock 'x') in async code")
    # The workers are fine afterwards.
    assert httpx.get(django_sync.url + "/whoami", params={"user": "dave", "n": 3},
                     timeout=DEADLINE).json()["squared"] == 9


def test_a_view_activating_a_language_leaves_the_next_request_in_the_default(
        django_sync: Server) -> None:
    """Django keeps the active translation and timezone in asgiref Locals, which live in
    the request's context, not in the thread: a sync view that activates French and never
    deactivates leaves it behind for nobody, though the next request's view may run in
    the same worker thread. (octo used to hop to a thread after every Django request to
    deactivate both; it reset nothing the next request could see.)"""
    seen: list[dict[str, object]] = []
    with httpx.Client(base_url=django_sync.url, timeout=DEADLINE) as client:
        for _ in range(20):
            assert client.get("/activate").status_code == 200
            seen.append(client.get("/language").json())
    assert {(s["language"], s["timezone"]) for s in seen} == {("en-us", "UTC")}
