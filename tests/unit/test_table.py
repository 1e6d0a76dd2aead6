from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import octo
from octo.runtime import rundir, shmfiles, shmlock
from octo.runtime import table as table_mod
from octo.runtime.table import Float, Int, Str, Table, TableFull, ValueTooLarge

COLUMNS = {"count": Int, "avg": Float, "name": Str(8)}


def make(rows: int = 16, server_id: str | None = None, **kw: object) -> Table:
    return Table("hits", rows, COLUMNS, server_id=server_id, **kw)  # type: ignore[arg-type]


@pytest.fixture
def shm_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private runtime directory that tables of this process are shared through, as the
    tables of a server's workers are."""
    path = tmp_path / "run"
    directory = rundir.RuntimeDir.create(str(path))
    monkeypatch.setattr(rundir, "_current", directory)
    yield path
    directory.close()


def test_set_get_partial_rows_and_columns() -> None:
    t = make()
    assert t.get("a") is None and not t.exists("a")
    t.set("a", {"count": 3, "name": "x"})
    t.set("a", {"avg": 1.5})  # partial: other columns kept
    assert t.get("a") == {"count": 3, "avg": 1.5, "name": "x"}
    assert t.get("a", "name") == "x" and len(t) == 1


def test_incr_decr_start_at_zero() -> None:
    t = make()
    assert t.incr("k", "count") == 1 and t.incr("k", "count", 5) == 6
    assert t.decr("k", "count", 2) == 4
    assert t.incr("k", "avg", 0.5) == 0.5


def test_delete_iterate_clear() -> None:
    t = make()
    for i in range(5):
        t.set(f"k{i}", {"count": i})
    assert t.delete("k2") and not t.delete("k2")
    assert dict((k, r["count"]) for k, r in t) == {"k0": 0, "k1": 1, "k3": 3, "k4": 4}
    t.set("k2", {"count": 9})  # reuses the tombstone
    assert len(t) == 5
    t.clear()
    assert len(t) == 0 and list(t) == []


def test_limits_are_errors_naming_table_and_size() -> None:
    t = make(rows=2, key_size=4)
    with pytest.raises(ValueTooLarge, match="key of 5 bytes .* key size 4"):
        t.set("abcde", {"count": 1})
    with pytest.raises(ValueTooLarge, match="column 'name' holds 8 bytes, value has 9"):
        t.set("a", {"name": "123456789"})
    t.set("a", {"count": 1})
    t.set("b", {"count": 1})
    with pytest.raises(TableFull, match=r"table 'hits' is full \(2 rows\)"):
        t.set("c", {"count": 1})
    with pytest.raises(KeyError, match="no column 'nope'"):
        t.set("a", {"nope": 1})
    with pytest.raises(TypeError, match="column 'count' is Int, got str"):
        t.set("a", {"count": "1"})
    with pytest.raises(TypeError, match="is Str"):
        t.incr("a", "name")


def test_threads_incr_exactly() -> None:
    t = make()

    def work() -> None:
        for _ in range(2000):
            t.incr("n", "count")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert t.get("n", "count") == 8000


def test_shared_file_survives_reopen_and_schema_change_is_fresh(shm_dir, caplog) -> None:
    a = make(server_id="123")
    a.incr("x", "count", 7)
    again = make(server_id="123")  # a reloaded worker, same schema: same data
    assert again.get("x", "count") == 7
    changed = Table("hits", 16, {"count": Int}, server_id="123")
    assert changed.get("x") is None
    assert "schema changed" in caplog.text
    directory = rundir.current()
    assert directory is not None
    assert shmfiles.remove_server_files(directory, "123") == 2
    assert os.listdir(shm_dir) == []


def test_stale_files_of_dead_masters_are_removed(shm_dir) -> None:
    dead = 4_000_000  # above pid_max on Linux: never alive
    (shm_dir / f"{dead}-hits-abc.tbl").write_bytes(b"x")
    (shm_dir / f"{dead}-tasks.sock").symlink_to("/etc/hostname")  # unlinked, not followed
    alive = os.getppid()  # a live server's
    (shm_dir / f"{alive}-hits-abc.tbl").write_bytes(b"x")
    (shm_dir / f"{os.getpid()}-hits-abc.tbl").write_bytes(b"x")  # a dead one's, same pid
    (shm_dir / "octo-8000.ctl").write_bytes(b"")  # not a socket: not ours to judge
    directory = rundir.current()
    assert directory is not None
    live = directory.socket("octo-8001.ctl").listen(4)
    directory.socket("octo-8002.ctl").listen(4).close()  # its server was killed
    assert shmfiles.remove_stale_files(directory) == 4
    assert sorted(os.listdir(shm_dir)) == [f"{alive}-hits-abc.tbl", "octo-8000.ctl",
                                           "octo-8001.ctl"]
    assert os.path.exists("/etc/hostname")
    live.close()


def test_octo_table_outside_serve_warns_and_is_local(monkeypatch, caplog) -> None:
    monkeypatch.delenv("OCTO_SERVER_ID", raising=False)
    t = octo.Octo().table("local", rows=8, columns={"n": octo.Int})
    t.incr("a", "n")
    assert t.path is None and "lives in this process only" in caplog.text


def test_table_names_cannot_leave_the_runtime_directory(shm_dir) -> None:
    with pytest.raises(ValueError, match="cannot be a file name"):
        Table("../escape", 4, {"n": Int}, server_id="1")


@pytest.fixture(params=["atomic", "fcntl"])
def lock_kind(request, monkeypatch) -> str:
    """Both locking schemes: CAS owner word (libatomic) and the fcntl fallback."""
    if request.param == "atomic" and not shmlock.atomic_available():
        pytest.skip("libatomic is not loadable here: only the fcntl lock is used")
    if request.param == "fcntl":
        monkeypatch.setattr(table_mod, "atomic_available", lambda: False)
    return str(request.param)


def test_tables_use_the_lock_kind(shm_dir, lock_kind) -> None:
    t = make(server_id="5")
    expected = shmlock.AtomicLock if lock_kind == "atomic" else shmlock.FileLock
    assert isinstance(t.lock, expected)


def test_sigkilled_lock_holder_blocks_nobody(shm_dir, lock_kind) -> None:
    import signal
    import time

    t = make(server_id="77")
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the "worker": takes the lock and hangs inside it
        child = make(server_id="77")
        with child.locked():
            os.write(ready_w, b"x")
            time.sleep(60)
        os._exit(0)
    os.read(ready_r, 1)
    # A daemon thread: on a broken lock it would wait for ever, and must not hold up pytest.
    blocked = threading.Thread(target=lambda: t.incr("k", "count"), daemon=True)
    blocked.start()
    blocked.join(0.3)  # excluded while the holder lives (on a slow machine: not yet started)
    assert blocked.is_alive(), "the lock did not exclude the other process"
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    blocked.join(20)  # at once in practice; a lock waiting for a timeout would not be
    assert not blocked.is_alive() and t.get("k", "count") == 1


def wait_until_zombie(pid: int, timeout: float = 20.0) -> None:
    """Until *pid* has died but is not reaped yet (state Z in /proc)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        with open(f"/proc/{pid}/stat") as fh:
            if fh.read().rsplit(")", 1)[1].split()[0] == "Z":
                return
        assert time.monotonic() < deadline, f"process {pid} did not die"
        time.sleep(0.005)


def test_killed_but_unreaped_holder_counts_as_dead(shm_dir) -> None:
    """A SIGKILLed worker stays a zombie until the master reaps it; it holds nothing."""
    import signal
    import time

    if not shmlock.atomic_available():
        pytest.skip("libatomic is not loadable here")
    t = make(server_id="78")
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        with make(server_id="78").locked():
            os.write(ready_w, b"x")
            time.sleep(60)
        os._exit(0)
    os.read(ready_r, 1)
    assert t.lock.holder() == pid  # type: ignore[union-attr]
    os.kill(pid, signal.SIGKILL)
    try:
        wait_until_zombie(pid)  # dead, not reaped
        got: list[int | float] = []
        taker = threading.Thread(target=lambda: got.append(t.incr("k", "count")), daemon=True)
        taker.start()
        taker.join(20)
        assert got == [1], "a dead but unreaped holder still holds the lock"
        assert t.lock.holder() == 0  # type: ignore[union-attr]
    finally:
        os.waitpid(pid, 0)


def test_owner_token_tells_a_reused_pid_from_its_holder() -> None:
    me = shmlock.owner_token(os.getpid())
    assert shmlock.holder_alive(me)
    assert not shmlock.holder_alive(me ^ (1 << 40))  # same pid, another start time
    assert not shmlock.holder_alive(4_000_000)  # above pid_max: never alive


def test_processes_and_threads_incr_exactly(shm_dir, lock_kind) -> None:
    make(server_id="79")

    def work() -> None:
        t = make(server_id="79")
        threads = [threading.Thread(target=lambda: [t.incr(f"k{i % 3}", "count")
                                                    for i in range(3000)]) for _ in range(3)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()

    pids = []
    for _ in range(2):
        pid = os.fork()
        if pid == 0:
            try:
                work()
            finally:
                os._exit(0)
        pids.append(pid)
    for pid in pids:
        os.waitpid(pid, 0)
    t = make(server_id="79")
    assert [t.get(f"k{i}", "count") for i in range(3)] == [6000, 6000, 6000]


def test_stale_row_hints_after_another_worker_moves_rows(shm_dir) -> None:
    """A worker's remembered row offset must not survive a delete and reuse elsewhere."""
    a = make(rows=4, server_id="80")
    b = make(rows=4, server_id="80")  # "another worker": its own hints
    a.incr("x", "count", 5)
    assert b.get("x", "count") == 5
    a.delete("x")
    for key in ("p", "q", "r", "s"):  # refill: x's old slot now holds another key
        a.set(key, {"count": 1})
    assert b.get("x", "count") is None and b.get("x") is None
    with pytest.raises(TableFull):
        b.incr("x", "count")
    a.delete("q")
    assert b.incr("x", "count") == 1 and a.get("x", "count") == 1
    assert sorted(k for k, _ in a) == ["p", "r", "s", "x"]


def test_numeric_columns_are_word_aligned_whatever_the_declaration_order() -> None:
    t = Table("t", 3, {"s": Str(3), "f": Float, "i": Int}, key_size=5)
    assert t.slot_size % 8 == 0
    assert all(t.offsets[c] % 8 == 0 for c in ("f", "i"))
    t.set("k", {"s": "abc", "f": 2.5, "i": -7})
    assert t.get("k") == {"s": "abc", "f": 2.5, "i": -7}
    assert t.incr("k", "f", 1) == 3.5 and t.incr("k", "i", 10) == 3


DEADLINE = 20.0  # only ends a hung test


@pytest.fixture(params=["local", "atomic", "fcntl"])
def any_table(request, tmp_path, monkeypatch) -> Table:
    """A table with each kind of lock: process-local, CAS owner word, fcntl."""
    if request.param == "local":
        return make()
    if request.param == "atomic" and not shmlock.atomic_available():
        pytest.skip("libatomic is not loadable here: only the fcntl lock is used")
    if request.param == "fcntl":
        monkeypatch.setattr(table_mod, "atomic_available", lambda: False)
    directory = rundir.RuntimeDir.create(str(tmp_path / "run"))
    monkeypatch.setattr(rundir, "_current", directory)
    request.addfinalizer(directory.close)
    return make(server_id="81")


def in_thread(fn: Callable[[], Any]) -> tuple[Any, BaseException | None]:
    """Run *fn* in a daemon thread (a deadlock there cannot hold up pytest): (its result,
    the exception it raised)."""
    outcome: list[tuple[Any, BaseException | None]] = []

    def target() -> None:
        try:
            outcome.append((fn(), None))
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            outcome.append((None, exc))

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(DEADLINE)
    assert outcome, "deadlocked: the lock was waited for by the thread that holds it"
    return outcome[0]


def test_sync_lock_re_entered_on_its_thread_raises_instead_of_deadlocking(any_table) -> None:
    t = any_table

    def nested() -> None:
        with t.locked():
            t.set_unlocked("k", {"count": 1})  # the way to work inside a section
            t.get("k")  # a locking call inside the section: would wait for itself

    _, exc = in_thread(nested)
    assert isinstance(exc, octo.LockReentered), exc
    assert "table 'hits'" in str(exc) and "async with table.locked()" in str(exc)
    assert "_unlocked" in str(exc)
    assert t.get("k", "count") == 1  # released on the way out: usable again


def test_sync_section_held_across_an_await_fails_the_second_task_loudly(
        any_table, run) -> None:
    """Two requests of one worker each `with table.locked():` across an await: the second
    used to block the loop's thread on the lock the first can only release on that loop."""
    t = any_table

    async def main() -> list[Any]:
        inside, release = asyncio.Event(), asyncio.Event()

        async def first() -> str:
            with t.locked():
                inside.set()
                await release.wait()
                t.set_unlocked("k", {"count": 1})
            return "done"

        async def second() -> None:
            await inside.wait()
            try:
                with t.locked():
                    pass
            finally:
                release.set()

        return await asyncio.gather(first(), second(), return_exceptions=True)

    (first, second), exc = in_thread(lambda: run(main()))
    assert exc is None and first == "done"
    assert isinstance(second, octo.LockReentered), second
    assert "async with table.locked()" in str(second)
    assert t.get("k", "count") == 1  # the lock is free again


def test_async_lock_held_across_awaits_by_two_tasks_in_turn(any_table, run) -> None:
    t = any_table
    active, peak, turns = [0], [0], [0]

    async def add_one(name: str, order: list[str]) -> None:
        async with t.locked():
            active[0] += 1
            peak[0] = max(peak[0], active[0])
            order.append(name)
            value = (t.row_unlocked("k") or {"count": 0})["count"]
            await asyncio.sleep(0.01)  # across an await: another task of this loop runs
            t.set_unlocked("k", {"count": value + 1})
            active[0] -= 1

    async def ticker(stop: asyncio.Event) -> None:
        while not stop.is_set():
            turns[0] += 1
            await asyncio.sleep(0)

    async def main() -> list[str]:
        order: list[str] = []
        stop = asyncio.Event()
        spin = asyncio.ensure_future(ticker(stop))
        await asyncio.wait_for(asyncio.gather(add_one("a", order), add_one("b", order)),
                               DEADLINE)
        stop.set()
        await spin
        return order

    order = run(main())
    assert sorted(order) == ["a", "b"] and peak[0] == 1
    assert t.get("k", "count") == 2
    assert turns[0] > 2, "the loop did not run other tasks while the lock was awaited"


def test_async_lock_cancelled_waiter_holds_nothing(any_table, run) -> None:
    t = any_table

    async def main() -> None:
        async with t.locked():
            waiter = asyncio.ensure_future(t.locked().__aenter__())
            await asyncio.sleep(0.01)
            assert not waiter.done()
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiter
        async with t.locked():  # free again: the cancelled waiter took nothing
            t.set_unlocked("k", {"count": 5})
        with pytest.raises(octo.LockReentered, match="entered again by the task"):
            async with t.locked():
                async with t.locked():
                    pass

    run(main())
    assert t.get("k", "count") == 5


def hold_in_child(table_of_child, release_r: int | None = None):  # type: ignore[no-untyped-def]
    """Fork a process that takes the table's lock (sync) and holds it until *release_r*
    is readable (or for ever); returns its pid once it holds the lock."""
    import time

    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            with table_of_child().locked():
                os.write(ready_w, b"x")
                if release_r is None:
                    time.sleep(60)
                else:
                    os.read(release_r, 1)
        finally:
            os._exit(0)
    os.read(ready_r, 1)
    os.close(ready_r)
    os.close(ready_w)
    return pid


def test_async_waiter_for_another_process_keeps_its_loop_running(shm_dir, lock_kind,
                                                                 run) -> None:
    t = make(server_id="82")
    release_r, release_w = os.pipe()
    holder = hold_in_child(lambda: make(server_id="82"), release_r)
    turns = [0]

    async def main() -> None:
        got = asyncio.Event()

        async def waiter() -> None:
            async with t.locked():
                got.set()
                t.set_unlocked("k", {"count": 1})

        task = asyncio.ensure_future(waiter())
        # The loop keeps turning while the waiter waits for the other process.
        while turns[0] < 50:
            turns[0] += 1
            await asyncio.sleep(0.001)
        assert not got.is_set(), "the lock did not exclude the other process"
        os.write(release_w, b"x")
        await asyncio.wait_for(task, DEADLINE)

    try:
        in_thread(lambda: run(main()))
    finally:
        os.write(release_w, b"x")
        os.waitpid(holder, 0)
    assert turns[0] >= 50, "the waiter blocked its event loop"
    assert t.get("k", "count") == 1


def test_async_waiter_takes_over_from_a_sigkilled_holder(shm_dir, lock_kind, run) -> None:
    import signal

    t = make(server_id="83")
    holder = hold_in_child(lambda: make(server_id="83"))

    async def main() -> None:
        async def waiter() -> None:
            async with t.locked():
                t.set_unlocked("k", {"count": 1})

        task = asyncio.ensure_future(waiter())
        await asyncio.sleep(0.05)
        assert not task.done(), "the lock did not exclude the other process"
        os.kill(holder, signal.SIGKILL)  # reaped only after: a zombie holds nothing either
        await asyncio.wait_for(task, DEADLINE)

    try:
        run(main())
    finally:
        os.kill(holder, signal.SIGKILL)
        os.waitpid(holder, 0)
    assert t.get("k", "count") == 1
