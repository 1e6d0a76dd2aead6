"""The master: binds once, forks workers, and keeps the right number of healthy ones.

It runs no event loop and never imports the app. Signal handlers only enqueue the signal
and poke a self-pipe; the loop wakes, dispatches to ``handle_<name>``, then reaps children,
checks heartbeats and recycling limits, advances a rolling reload and scales.

Idle, it sleeps until its next deadline (a heartbeat due to be checked, --max-lifetime, the
next load sample...), not on a fixed beat: whatever needs it sooner wakes it. Signals (a
worker's exit is SIGCHLD) poke the self-pipe; so does a worker whose slot changes state
(it serves, it reached --max-requests: see ``SlotWriter.beat``), through the pipe's write
end it inherits; the control and metrics sockets and a --watch pipe wake the poll too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import faulthandler
import json
import os
import random
import select
import signal
import socket
import stat
import sys
import tempfile
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from octo.config import WORKER_LIMIT, Config
from octo.logs import error_log
from octo.master.autoscale import (
    STEP,
    Autoscaler,
    LoadMeter,
    LoadSample,
    LongWaitWatch,
    ScalePolicy,
)
from octo.master.control import ControlServer, Refused
from octo.master.dashboard import History
from octo.master.dashboard import state as dashboard_state
from octo.master.exposition import Snapshot, WorkerSample, render
from octo.master.lifecycle import Event, WorkerInfo
from octo.master.metrics import MetricsServer
from octo.master.reload import PollingWatcher, WatchfilesWatcher, make_watcher, syntax_errors
from octo.master.taskscale import TaskLoadMeter, task_policy
from octo.process import orphan
from octo.process.exits import BOOT_ERRORS, EXIT_BOOT_ERROR, describe_exit
from octo.process.slots import Slots, SlotState, SlotWriter, StatsView
from octo.process.usage import TickRow, TickTotals, parse_usage
from octo.runtime.rundir import RuntimeDir, RuntimeDirError, SocketPlace, default_root, serve_from
from octo.runtime.shmfiles import remove_server_files, remove_stale_files, task_socket_name

if TYPE_CHECKING:
    pass

HANDLED = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGTTIN,
           signal.SIGTTOU, signal.SIGCHLD)
EXIT_WORKER_BOOT = EXIT_BOOT_ERROR  # the worker's code, passed on as the server's status
MAX_SLOTS = 2 * WORKER_LIMIT  # room for a replacement beside every worker
LOOP_INTERVAL = 0.1  # seconds between passes while stopping or polling --watch
# At most this long between two passes, whatever the deadlines say: a bound on what a missed
# wake-up could delay (none is known). Measured under callgrind (benchmarks/callgrind.py
# --idle-only), the idle master of one worker: 613k instructions a second when it passed
# every 0.1 s, 11.6k now (a pass every 10 s and one per --timeout for the heartbeat).
IDLE_LIMIT = 10.0
# A heartbeat is checked this long after it is due: the check needs silence > --timeout.
LIVENESS_SLACK = 0.01
SPAWN_PER_PASS = 4  # forks per pass of the loop: signals and control are served in between
FAST_GRACE = 2.0  # seconds a fast stop (SIGINT, SIGQUIT, stop --fast) gives the workers
KILL_GRACE = 5.0  # after SIGKILL at the stop deadline, before the master gives up waiting
MEMORY_STRIKES = 3  # consecutive RSS samples over --max-memory before recycling
DUMP_GRACE = 0.5  # seconds between the stack-dump signal and SIGKILL for a hung worker
STACK_DUMP_SIGNAL = signal.SIGUSR2


@dataclasses.dataclass(slots=True)
class ReloadStatus:
    """The latest reload: *state* is running, done (every worker runs *generation*),
    abandoned (a new worker failed to boot: *error* says why) or interrupted (a stop)."""

    generation: int
    state: str = "running"
    error: str = ""


class Arbiter:
    """Supervises workers for one server; ``run()`` returns the exit status."""

    def __init__(self, config: Config, sockets: list[socket.socket],
                 control: str | SocketPlace | None,
                 directory: RuntimeDir | None = None, uds: SocketPlace | None = None) -> None:
        self.config = config
        self.sockets = sockets
        self.uds = uds  # the --uds path this server bound, unlinked when it stops listening
        self.pid = os.getpid()
        self.target = config.workers
        self.task_target = config.task_workers
        self.directory = directory
        self.task_sock: socket.socket | None = None
        self.slots = Slots(MAX_SLOTS)
        self.workers: dict[int, WorkerInfo] = {}
        self.generation = 0
        self.signals: deque[int] = deque()
        self.reload_queue: deque[int] = deque()
        self.stopping = False
        self.fast = False  # the stop is a fast one
        self.stop_deadline = 0.0
        self.reload_status: ReloadStatus | None = None
        self.spawn_budget = SPAWN_PER_PASS
        self.exit_code = 0
        self.crashes: deque[float] = deque(maxlen=10)
        self.next_spawn = 0.0
        self.ever_ready = False
        self.last_sample = 0.0
        self.control_where = control
        self.control: ControlServer | None = None
        self.watcher: PollingWatcher | WatchfilesWatcher | None = None
        self.lifeline: orphan.Lifeline | None = None  # made by run(), in the master itself
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        # --metrics: the listener, what exited workers counted, restarts by cause.
        self.metrics: MetricsServer | None = None
        self.retired = StatsView()
        self.retired_ticks_skipped = 0
        self.restarts: dict[str, int] = {}
        self.tick_totals = TickTotals()  # by tick name, of the workers that exited
        self.history = History()  # the dashboard's plots, a point per STEP
        self.started_at = time.time()
        self.draining_until: float | None = None  # SIGTERM with --shutdown-delay
        # Once a STEP: the load, the --max-wait-time watch and the autoscaler.
        self.meter = LoadMeter()
        self.next_step = 0.0
        self.load: LoadSample | None = None
        self.long_wait = LongWaitWatch(config.max_wait_time) if config.max_wait_time else None
        self.long_wait_since: float | None = None
        self.autoscaler = Autoscaler(ScalePolicy(
            config.min_workers, config.max_workers, config.scale_up_wait, config.scale_up_busy,
            config.scale_down_busy, config.scale_cooldown)) if config.autoscale else None
        # --task-workers MIN:MAX: the same, from the dispatched-task queue.
        self.task_meter = TaskLoadMeter()
        self.task_load: LoadSample | None = None
        self.task_scaler = Autoscaler(task_policy(config)) if config.task_autoscale else None

    # -- main loop --------------------------------------------------------------------------

    def run(self) -> int:
        self._install_signals()
        if self.directory is None:
            self.directory = open_runtime_dir(self.config)
        stale = remove_stale_files(self.directory)
        if stale:
            error_log.info("removed %d file(s) left by a server that was killed from %s",
                           stale, self.directory.path)
        # Workers inherit the directory, this server's id (naming its files) and its key.
        self.pid = os.getpid()
        self.lifeline = orphan.Lifeline()
        serve_from(self.directory, str(self.pid))
        try:
            self._start()
            while True:
                self._dispatch_signals()
                self.reap()
                if self.stopping:
                    if not self.workers:
                        break
                    self._stop_task_workers_without_callers()
                    self._enforce_stop_deadline()
                else:
                    self.maintain()
                if self.control is not None:
                    self.control.settle()
                self._sleep(max(0.0, self._next_pass(time.monotonic()) - time.monotonic()))
        finally:
            self._cleanup()
        return self.exit_code

    def _start(self) -> None:
        if self.task_target:
            self._bind_task_socket()
        if self.config.metrics is not None:
            self.metrics = MetricsServer(self.config, self)
        if self.control_where is not None:
            self.control = ControlServer(self.control_where, self)
        if self.config.watch:
            includes = [p.strip() for p in self.config.watch_include.split(",") if p.strip()]
            self.watcher = make_watcher(os.path.abspath(self.config.app_dir), includes)
            error_log.info("--watch: watching %s (%s)", self.config.app_dir,
                           self.watcher.backend)
        error_log.info("master %d starting %d worker(s)", os.getpid(), self.target)
        _log_core()
        if self.autoscaler is not None:
            error_log.info("autoscaling between %d and %d worker(s)", self.config.min_workers,
                           self.config.max_workers)
        if self.task_scaler is not None:
            error_log.info("autoscaling between %d and %d task worker(s)",
                           self.config.min_task_workers, self.config.max_task_workers)

    def maintain(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self.spawn_budget = SPAWN_PER_PASS
        if self.draining_until is not None and now >= self.draining_until:
            error_log.info("--shutdown-delay %s s passed: stopping", self.config.shutdown_delay)
            self.stop(graceful=True)
            return
        if now >= self.next_step and self.config.reads_load:
            self.next_step = now + STEP
            self._step(now)
        self._check_watch()
        self.refresh_ready()
        self._check_liveness(now)
        self._check_recycling(now)
        self._advance_reload()
        self._scale(now)
        self._check_reload_done()

    def _next_pass(self, now: float) -> float:
        """When the loop must run again by itself (monotonic): the earliest deadline of what
        it does on a clock. Everything else wakes it (see the module docstring)."""
        if self.stopping or isinstance(self.watcher, PollingWatcher):
            return now + LOOP_INTERVAL  # stop deadlines, task workers, an mtime scan
        if self.spawn_budget <= 0:
            return now  # forks were left for the next pass
        times = [now + IDLE_LIMIT]
        if self.next_spawn > now:
            times.append(self.next_spawn)  # a crash backoff: forks wait until then
        if self.draining_until is not None:
            times.append(self.draining_until)
        if self.config.reads_load:
            times.append(self.next_step)
        if self.config.max_memory > 0:
            times.append(self.last_sample + 1.0)
        if self.metrics is not None:
            times.append(self.metrics.next_deadline())
        times.extend(self._worker_deadlines())
        return min(times)

    def _worker_deadlines(self) -> list[float]:
        """Per worker: its SIGKILL after a stack dump, else when its heartbeat's silence
        would pass --timeout, and its --max-lifetime."""
        timeout, lifetime = self.config.timeout, self.config.max_lifetime
        times = []
        for info in self.workers.values():
            if info.kill_at is not None:
                times.append(info.kill_at)
                continue
            if info.ready and info.beat_seen_at is not None:
                times.append(info.beat_seen_at + timeout + LIVENESS_SLACK)
            if lifetime and info.ready and info.counted:
                times.append(info.spawned + lifetime + LIVENESS_SLACK)
        return times

    def _sleep(self, timeout: float) -> None:
        # poll, not select: a master of a thousand workers may hold descriptors past 1024.
        poller = select.poll()
        poller.register(self.wake_r, select.POLLIN)
        if isinstance(self.watcher, WatchfilesWatcher) and not self.watcher.ended:
            # A change wakes the loop (an ended pipe would wake it all the time).
            poller.register(self.watcher.read_fd, select.POLLIN)
        if self.control is not None:
            poller.register(self.control.sock, select.POLLIN)
        metrics = self.metrics
        if metrics is not None:
            for sock in metrics.readers():
                poller.register(sock, select.POLLIN)
            for sock in metrics.writers():
                poller.register(sock, select.POLLOUT | select.POLLIN
                                if sock in metrics.readers() else select.POLLOUT)
        try:
            events = poller.poll(timeout * 1000)
        except InterruptedError:
            return
        readable = {fd for fd, mask in events if mask & (select.POLLIN | select.POLLHUP |
                                                          select.POLLERR)}
        writable = {fd for fd, mask in events if mask & (select.POLLOUT | select.POLLERR)}
        if self.wake_r in readable:
            with contextlib.suppress(BlockingIOError):
                while os.read(self.wake_r, 4096):
                    pass
        if self.control is not None and self.control.sock.fileno() in readable:
            self.control.handle_pending()
        if metrics is not None:
            metrics.handle(readable, writable)

    def _bind_task_socket(self) -> None:
        assert self.directory is not None
        name = task_socket_name(self.directory.server_id)
        try:
            self.task_sock = self.directory.socket(name).listen(1024, "--runtime-dir")
        except RuntimeDirError as exc:
            raise SystemExit(f"octo: {exc}") from None
        self.directory.task_socket = name  # inherited by every worker

    # -- signals: handlers only enqueue --------------------------------------------------------

    def _install_signals(self) -> None:
        for sig in HANDLED:
            signal.signal(sig, self._enqueue)

    def _enqueue(self, sig: int, frame: Any) -> None:
        self.signals.append(sig)
        with contextlib.suppress(BlockingIOError):
            os.write(self.wake_w, b"!")

    def _dispatch_signals(self) -> None:
        while self.signals:
            sig = self.signals.popleft()
            name = signal.Signals(sig).name[3:].lower()
            getattr(self, f"handle_{name}")()

    def handle_chld(self) -> None:
        self.reap()

    def handle_hup(self) -> None:
        try:
            self.reload()
        except Refused as exc:
            error_log.warning("SIGHUP: not reloading: %s", exc)

    def handle_term(self) -> None:
        delay = self.config.shutdown_delay
        if delay > 0 and not self.stopping and self.draining_until is None:
            # Kubernetes removes the pod from its Services' endpoints while it sends
            # SIGTERM, and proxies learn it a moment later: meanwhile requests still come.
            self.draining_until = time.monotonic() + delay
            error_log.info("SIGTERM: /readyz fails from now on; serving %s s more "
                           "(--shutdown-delay), then stopping", delay)
            return
        self.stop(graceful=True)

    def handle_int(self) -> None:
        self.stop(graceful=False)

    def handle_quit(self) -> None:
        self.stop(graceful=False)

    def handle_ttin(self) -> None:
        try:
            self.scale(self.target + 1)
        except Refused as exc:
            error_log.warning("SIGTTIN: %s", exc)

    def handle_ttou(self) -> None:
        with contextlib.suppress(Refused):  # only while stopping, when it means nothing
            self.scale(max(1, self.target - 1))

    # -- commands (signals and the control socket both end here) -----------------------------

    def reload(self) -> int:
        """Rolling restart: each old worker is retired once its replacement serves.
        Returns the new generation (reload_outcome tells when it has ended)."""
        if self.stopping:
            raise Refused("the server is stopping")
        self.generation += 1
        self.reload_status = ReloadStatus(self.generation)
        self.reload_queue = deque(pid for pid, info in self.workers.items() if info.counted)
        error_log.info("reload: replacing %d worker(s) one at a time", len(self.reload_queue))
        return self.generation

    def reload_outcome(self, generation: int) -> tuple[bool, str] | None:
        """How the reload to *generation* ended: (True, "") once every worker runs it (or a
        later one) and serves, (False, why) if it was abandoned or the server stops, None
        while it runs."""
        status = self.reload_status
        if status is not None and status.state == "abandoned":
            return False, status.error  # the workers are back on older code, whatever the wait
        if self._runs(generation):
            return True, ""
        if self.stopping:
            return False, "the server is stopping: the reload did not finish"
        return None

    def _runs(self, generation: int) -> bool:
        """Every worker (draining ones included) is of *generation* or later, and serves;
        never when none is left (a stop whose workers exited before the reload's waiter
        was answered: the reload did not finish)."""
        return bool(self.workers) and all(
            info.generation >= generation and info.ready and not info.stopping
            for info in self.workers.values())

    def _check_reload_done(self) -> None:
        status = self.reload_status
        if status is not None and status.state == "running" and self._runs(status.generation):
            status.state = "done"
            error_log.info("reload: every worker runs generation %d", status.generation)

    def stop(self, graceful: bool) -> float:
        """Stop listening at once, then let the workers drain; returns the seconds left
        until the master kills what still runs. Repeating a stop (a SIGINT storm) changes
        nothing; a fast stop after a graceful one hurries it."""
        now = time.monotonic()
        if self.stopping and (graceful or self.fast):
            return max(0.0, self.stop_deadline - now) + KILL_GRACE
        self.fast = not graceful
        grace = self.config.graceful_timeout if graceful else FAST_GRACE
        deadline = now + grace + 1.0
        self.stop_deadline = min(self.stop_deadline, deadline) if self.stopping else deadline
        if not self.stopping:
            self.stopping = True
            self.stop_listening()
            if self.reload_status is not None and self.reload_status.state == "running":
                self.reload_status.state = "interrupted"
        self.reload_queue.clear()
        error_log.info("%s stop: %d worker(s)", "graceful" if graceful else "fast",
                       len(self.workers))
        for pid, info in list(self.workers.items()):
            if graceful and info.role == "task":
                continue  # after the HTTP workers: see _stop_task_workers_without_callers
            # A booting worker gets SIGTERM either way: it has no requests to drop, and
            # SIGQUIT's default action (it may not have its handlers yet) dumps core.
            fast = not graceful and info.ready
            self._signal(pid, signal.SIGQUIT if fast else signal.SIGTERM)
            info.on(Event.STOP)
        return self.stop_deadline - now + KILL_GRACE

    def _stop_task_workers_without_callers(self) -> None:
        """A graceful stop stops the task workers once the HTTP workers have exited: the
        requests they finish may still run tasks, and the tasks they queued are still being
        handed over (all within the same stop deadline)."""
        if any(info.role != "task" for info in self.workers.values()):
            return
        for pid, info in self.workers.items():
            if not info.stopping:
                self._signal(pid, signal.SIGTERM)
                info.on(Event.STOP)

    def stop_listening(self) -> None:
        """A stop's first step: close the master's copies of the listening sockets (and
        unlink the --uds path). Once the workers have closed theirs, which they do first
        on SIGTERM, a new connection is refused at once instead of waiting in a backlog
        nobody accepts from. (A socket inherited with --fd stays open in whoever passed
        it.) Reloads and recycling keep the sockets: the master holds them for the new
        workers."""
        for sock in self.sockets:
            sock.close()
        if self.uds is not None:
            self.uds.remove()
            self.uds.close()
            self.uds = None

    def scale(self, count: int) -> None:
        """Set the number of HTTP workers; the loop forks toward it a few per pass."""
        if self.stopping:
            raise Refused("the server is stopping")
        if self.config.autoscale and count < self.config.min_workers:
            raise Refused(f"cannot scale to {count} workers: below --min-workers "
                          f"{self.config.min_workers}")
        ceiling = self.config.worker_ceiling()
        if count > ceiling:
            chosen = "" if self.config.max_workers else \
                " (the default: 4 per CPU, at most one per 64 MiB of memory)"
            raise Refused(f"cannot scale to {count} workers: above --max-workers "
                          f"{ceiling}{chosen}")
        count = max(1, count)
        error_log.info("scaling from %d to %d worker(s)", self.target, count)
        self.target = count

    # -- children ------------------------------------------------------------------------------

    def spawn(self, replaces: int | None = None, role: str = "http") -> int:
        if replaces is not None and replaces in self.workers:
            role = self.workers[replaces].role
        used = {info.index for info in self.workers.values()}
        index = self.slots.free_index(used)
        self.slots.clear(index)
        retire = 0
        if self.config.max_requests:
            retire = self.config.max_requests + random.randint(
                0, max(0, self.config.max_requests_jitter))
        self.slots.set_high(used | {index})
        self.spawn_budget -= 1
        pid = self._fork()
        if pid == 0:
            self._become_worker(index, retire, role)
        info = WorkerInfo(pid, index, self.generation, time.monotonic(), role=role,
                          replaces=replaces)
        self.workers[pid] = info
        if replaces is not None and replaces in self.workers:
            self.workers[replaces].replaced_by = pid
        return pid

    def _fork(self) -> int:
        return os.fork()

    def _become_worker(self, index: int, retire_after: int, role: str) -> None:
        """In the child: never returns."""
        code = 1
        try:
            for sig in HANDLED:
                signal.signal(sig, signal.SIG_DFL)
            lifeline = self.lifeline
            if lifeline is not None:
                lifeline.in_child()
            os.close(self.wake_r)  # the write end stays: the slot writer pokes the master
            if self.control is not None:
                self.control.close_inherited()
            if self.metrics is not None:
                self.metrics.close()
            if self.uds is not None:
                self.uds.close()
            faulthandler.register(STACK_DUMP_SIGNAL, all_threads=True)
            writer = SlotWriter(self.slots, index, os.getpid(), time.time(), self.pid,
                                wake_fd=self.wake_w)
            error_log.addHandler(writer.note_errors())  # a boot failure's reason, for reload
            if role == "task":
                from octo.process.taskworker import TaskWorker

                for sock in self.sockets:
                    sock.close()
                if lifeline is not None:
                    lifeline.watch_from_thread()
                assert self.task_sock is not None
                code = TaskWorker(self.config, self.task_sock, writer).run()
            else:
                from octo.process.worker import Worker

                if self.task_sock is not None:
                    self.task_sock.close()
                code = Worker(self.config, self.sockets, slot=writer, retire_after=retire_after,
                              lifeline=lifeline.read_fd if lifeline else None).run()
        except BaseException:
            error_log.exception("worker crashed")
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            info = self.workers.pop(pid, None)
            if info is not None:
                self._on_exit(info, os.waitstatus_to_exitcode(status))

    def _on_exit(self, info: WorkerInfo, code: int) -> None:
        note = self.slots.note(info.index)
        self._retire_counters(info)
        self.slots.clear(info.index)
        if info.replaced_by is not None and info.replaced_by in self.workers:
            self.workers[info.replaced_by].replaces = None
        if info.replaces is not None and info.replaces in self.workers:
            self.workers[info.replaces].replaced_by = None
        if info.stopping or self.stopping:
            error_log.info("worker %d exited (%s)", info.pid, describe_exit(code))
            return
        if not info.ready and code in BOOT_ERRORS:
            self._boot_failed(info, code, note)
            return
        error_log.error("worker %d died unexpectedly (%s); replacing it", info.pid,
                        describe_exit(code))
        self._count_restart(info.cause or "crash")
        self._crashed()

    def _crashed(self, now: float | None = None) -> float:
        """Count a crash; back off (or give up before any worker served). Returns the delay
        before the next spawn."""
        now = time.monotonic() if now is None else now
        self.crashes.append(now)
        recent = [t for t in self.crashes if now - t < 10.0]
        if len(recent) >= 5 and not self.ever_ready:
            error_log.error("workers keep dying before they serve; stopping the server")
            self.exit_code = 1
            self.stop(graceful=False)
        elif len(recent) >= 5:
            delay = min(5.0, 0.1 * 2.0 ** (len(recent) - 5))
            self.next_spawn = now + delay
            error_log.warning("%d crashes in 10 s: next worker in %.1f s", len(recent), delay)
            return delay
        return 0.0

    def _boot_failed(self, info: WorkerInfo, code: int, note: str = "") -> None:
        # Only workers of its own role can stand in for it: task workers whose lifespan
        # fails while the HTTP workers serve is a server that cannot run its tasks.
        if self.ever_ready and any(not w.stopping and w.ready and w.role == info.role
                                   for w in self.workers.values()):
            why = f"new worker {info.pid} failed to boot ({describe_exit(code)})" + \
                (f": {note}" if note else "")
            status = self.reload_status
            if status is not None and status.state == "running":
                # A reload with broken code: keep the old workers serving.
                status.state, status.error = "abandoned", f"reload abandoned: {why}"
                error_log.error("%s; the running workers keep serving", status.error)
                self.reload_queue.clear()
                return
            # A recycled or replaced worker whose code (changed on disk, or its lifespan)
            # no longer boots: the others keep serving, and it is retried with backoff.
            delay = self._crashed()
            error_log.error("%s; the running workers keep serving (next try in %.1f s)", why,
                            delay)
            return
        # The worker already logged the reason (one line with the app's file:line); this says
        # what follows — at ERROR too, since it ends the server.
        error_log.error("worker failed to boot (%s); stopping the server", describe_exit(code))
        self.exit_code = code
        self.stop(graceful=False)

    # -- health, recycling, reload, scale -------------------------------------------------------

    def refresh_ready(self) -> None:
        """READY for each worker whose slot says it serves; a replacement that serves
        retires the worker it replaces (a reload's or a recycling's second half)."""
        for info in self.workers.values():
            if not info.ready:
                slot = self.slots.read(info.index)
                if slot.pid == info.pid and slot.state in (SlotState.READY, SlotState.RETIRING):
                    info.on(Event.READY)
                    self.ever_ready = True
                    self.crashes.clear()
                    if info.replaces is not None:
                        self._retire(info.replaces)

    def _retire(self, pid: int) -> None:
        """STOP for worker *pid*, gracefully (SIGTERM), unless it was told already."""
        old = self.workers.get(pid)
        if old is not None and not old.stopping:
            old.on(Event.STOP)
            self._signal(pid, signal.SIGTERM)

    def _check_watch(self) -> None:
        if self.watcher is None:
            return
        changed = self.watcher.poll()
        if not changed:
            return
        shown = ", ".join(os.path.relpath(p) for p in changed[:3])
        problems = syntax_errors(changed)
        if problems:
            for problem in problems:
                error_log.error("--watch: not reloading, syntax error in %s", problem)
            return
        error_log.info("--watch: %s changed; reloading", shown)
        self.reload()

    def _check_liveness(self, now: float) -> None:
        timeout = self.config.timeout
        for info in list(self.workers.values()):
            if info.kill_at is not None:
                if now >= info.kill_at:
                    self._signal(info.pid, signal.SIGKILL)
                    info.kill_at = None
                continue
            if not info.ready:
                continue
            silent = self._silence(info, now)
            if silent > timeout:
                error_log.error("worker %d: event loop blocked for %.1f s (--timeout %s s, a "
                                "liveness limit, not a request timeout); dumping its stack and "
                                "killing it", info.pid, silent, timeout)
                self._signal(info.pid, STACK_DUMP_SIGNAL)
                info.kill_at = now + DUMP_GRACE  # then it is reaped and replaced like a crash
                info.cause = "liveness"

    def _silence(self, info: WorkerInfo, now: float) -> float:
        """Seconds since *info*'s heartbeat last changed, as far as the master can tell.

        Only progress counts: a change seen now happened since the previous read, so it is
        dated by the heartbeat's value only when that lies between the two reads, else by
        now. A heartbeat read as 0, stale, torn or from another clock can then at worst delay
        a kill, never cause one. (Reading ``now - heartbeat`` once killed a busy, healthy
        worker for "6520 s" of silence: the machine's uptime, from a heartbeat read as 0
        mid-write.) Dating by the value keeps the kill at --timeout after the last beat
        though the master reads the heartbeat only about once per --timeout.
        """
        slot = self.slots.read(info.index)
        if slot.pid != info.pid:
            return 0.0  # the slot is not (or no longer) this worker's
        if info.beat_seen_at is None:
            info.last_beat, info.beat_seen_at = slot.heartbeat, now
        elif slot.heartbeat != info.last_beat:
            beat = slot.heartbeat
            info.last_beat = beat
            info.beat_seen_at = beat if info.beat_read_at < beat <= now else now
        info.beat_read_at = now
        return now - info.beat_seen_at

    def _check_recycling(self, now: float) -> None:
        cfg = self.config
        sample = cfg.max_memory > 0 and now - self.last_sample >= 1.0
        if sample:
            self.last_sample = now
        for info in list(self.workers.values()):
            if not info.counted or not info.ready:
                continue
            reason = cause = None
            if self.slots.read(info.index).state is SlotState.RETIRING:
                reason, cause = "max requests reached", "max-requests"
            elif cfg.max_lifetime and now - info.spawned > cfg.max_lifetime:
                reason, cause = f"--max-lifetime {cfg.max_lifetime}s reached", "max-lifetime"
            elif sample and self._over_memory(info):
                reason, cause = f"RSS above --max-memory {cfg.max_memory} MB", "max-memory"
            if reason is not None and cause is not None and self.spawn_budget > 0 and \
                    now >= self.next_spawn:
                error_log.info("recycling worker %d: %s", info.pid, reason)
                self._count_restart(cause)
                self.spawn(replaces=info.pid)

    def _over_memory(self, info: WorkerInfo) -> bool:
        rss = process_stats(info)[0]
        if rss is None:
            return False
        rss_mb = rss / (1024 * 1024)
        info.memory_strikes = info.memory_strikes + 1 if rss_mb > self.config.max_memory else 0
        return info.memory_strikes >= MEMORY_STRIKES

    def _advance_reload(self) -> None:
        if any(info.replaces is not None for info in self.workers.values()):
            return  # one replacement at a time
        while self.reload_queue:
            old = self.reload_queue.popleft()
            info = self.workers.get(old)
            if info is not None and info.counted:
                if self.spawn_budget <= 0:
                    self.reload_queue.appendleft(old)  # next pass
                    return
                self._count_restart("reload")
                self.spawn(replaces=old)
                return

    def _scale(self, now: float) -> None:
        for role, target in (("http", self.target), ("task", self.task_target)):
            counted = [info for info in self.workers.values()
                       if info.role == role and info.counted]
            if len(counted) < target and now >= self.next_spawn:
                # A few per pass: a big scale-up never holds up signals or the control
                # socket (forking 1000 at once used to leave SIGINT unserved for 19 s).
                for _ in range(min(target - len(counted), self.spawn_budget)):
                    self.spawn(role=role)
            elif len(counted) > target and not self.reload_queue:
                for info in sorted(counted, key=self._keep_first)[target:]:
                    error_log.info("scaling down: stopping worker %d", info.pid)
                    self._retire(info.pid)

    def _keep_first(self, info: WorkerInfo) -> tuple[bool, float]:
        """Scaling down stops the newest workers; task workers running a task last (so a
        long task is not cut short when an idle one can go instead)."""
        idle = info.role != "task" or self.slots.read(info.index).in_flight == 0
        return idle, info.spawned

    # -- load: --max-wait-time and autoscaling ----------------------------------------------

    def _step(self, now: float) -> None:
        """Once a STEP: sample the HTTP workers' load, then watch the wait and scale."""
        serving = {info.pid: self.slots.read_stats(info.index) for info in self._serving()}
        self.load = self.meter.sample(now, serving)
        if self.long_wait is not None:
            self._watch_wait(now)
        if self.autoscaler is not None:
            self._autoscale(now)
        if self.task_scaler is not None:
            self._task_autoscale(now)
        if self.metrics is not None:
            self._record_history(now)

    def _serving(self) -> list[WorkerInfo]:
        """HTTP workers that serve (ready, not stopping, their slot theirs), oldest first."""
        return [info for info in sorted(self.workers.values(), key=lambda w: w.spawned)
                if info.role == "http" and info.ready and not info.stopping
                and self.slots.read(info.index).pid == info.pid]

    def _watch_wait(self, now: float) -> None:
        watch = self.long_wait
        assert watch is not None
        wait = self.load.wait if self.load is not None else None
        change = watch.observe(wait)
        if change == "started" and wait is not None:
            self.long_wait_since = time.time()
            error_log.warning("requests wait %.0f ms before the app is called, above "
                              "--max-wait-time %s s (LongWaitDetected); add workers or "
                              "find what blocks them", wait * 1000, watch.limit)
            serving = self._serving()
            index = serving[0].index if serving else -1
            self.slots.announce_long_wait(watch.episodes, index, wait, watch.limit)
        elif change == "ended":
            error_log.info("request queue wait back below --max-wait-time %s s (peak %.0f "
                           "ms)", watch.limit, watch.peak * 1000)

    def _autoscale(self, now: float) -> None:
        scaler = self.autoscaler
        assert scaler is not None
        busy = any(info.role == "http" and not info.ready and not info.stopping
                   for info in self.workers.values())
        if busy or self.reload_queue or any(info.replaces is not None
                                            for info in self.workers.values()):
            return  # a worker boots (or replaces one): its effect is not measured yet
        decision = scaler.decide(now, self.target, self.load)
        if decision is None:
            return
        count = self.target + decision.change
        error_log.info("autoscale: %d -> %d worker(s): %s", self.target, count,
                       decision.reason)
        self.target = count

    def _task_autoscale(self, now: float) -> None:
        """Once a STEP with --task-workers MIN:MAX: sample the task queue, maybe scale."""
        scaler = self.task_scaler
        assert scaler is not None
        queued, handed, waited = 0, self.retired.tasks_handed, self.retired.task_wait
        busy: dict[int, float] = {}
        settling = False
        for info in self.workers.values():
            if self.slots.read(info.index).pid != info.pid:
                settling = settling or info.role == "task"
                continue
            stats = self.slots.read_stats(info.index)
            if info.role == "http":
                queued, handed = queued + stats.task_queued, handed + stats.tasks_handed
                waited += stats.task_wait
            elif info.ready and not info.stopping:
                busy[info.pid] = stats.busy
            settling = settling or (info.role == "task" and not info.ready
                                    and not info.stopping)
        self.task_load = self.task_meter.sample(now, queued, handed, waited, busy)
        if settling:
            return  # a task worker boots: its effect is not measured yet
        decision = scaler.decide(now, self.task_target, self.task_load)
        if decision is None:
            return
        count = self.task_target + decision.change
        error_log.info("autoscale: %d -> %d task worker(s): %s", self.task_target, count,
                       decision.reason)
        self.task_target = count

    # -- metrics ----------------------------------------------------------------------------

    def _count_restart(self, cause: str) -> None:
        self.restarts[cause] = self.restarts.get(cause, 0) + 1

    def _retire_counters(self, info: WorkerInfo) -> None:
        """An exiting worker's counters join the retired totals (counters never go down)."""
        slot = self.slots.read(info.index)
        if slot.pid == info.pid:
            self.retired.add(self.slots.read_stats(info.index))
            self.retired_ticks_skipped += slot.ticks_skipped
            self.tick_totals.retire(parse_usage(self.slots.read_tables(info.index))[1])

    def snapshot(self) -> Snapshot:
        now = time.monotonic()
        samples = []
        tables: list[tuple[str, int, int]] = []
        ticks: list[list[TickRow]] = []
        for info in sorted(self.workers.values(), key=lambda w: w.spawned):
            slot = self.slots.read(info.index)
            if slot.pid != info.pid:
                continue  # not beating yet: nothing of it to show
            state = "stopping" if info.stopping else slot.state.name.lower()
            samples.append(WorkerSample(
                info.index, info.pid, info.role, state, slot.requests, slot.in_flight,
                slot.connections, slot.loop_lag, max(0.0, now - slot.heartbeat),
                process_stats(info)[0], slot.ticks_skipped, self.slots.read_stats(info.index)))
            worker_tables, worker_ticks = parse_usage(self.slots.read_tables(info.index))
            tables = tables or worker_tables  # shared: any worker's view is the server's
            ticks.append(worker_ticks)
        cfg = self.config
        watch = self.long_wait
        return Snapshot(
            samples, self.retired, self.retired_ticks_skipped, self.restarts, self.target,
            cfg.min_workers or self.target, cfg.worker_ceiling(), self.task_target,
            self.draining_until is not None, self.stopping, watch.episodes if watch else 0,
            bool(watch and watch.active), cfg.max_wait_time,
            self.autoscaler.changes if self.autoscaler else {}, tables,
            self.tick_totals.summed(ticks),
            self.task_scaler.changes if self.task_scaler else {})

    def metrics_text(self) -> str:
        return render(self.snapshot())

    def dashboard_json(self) -> str:
        return json.dumps(dashboard_state(self.snapshot(), self.history, self.started_at))

    def _record_history(self, now: float) -> None:
        """A point of the dashboard's plots (once a STEP, with --metrics)."""
        summed = StatsView()
        summed.add(self.retired)
        queued = 0
        counts = {"http": 0, "task": 0}
        cpu = {}
        for info in self.workers.values():
            if self.slots.read(info.index).pid != info.pid:
                continue
            stats = self.slots.read_stats(info.index)
            summed.add(stats)
            cpu[info.pid] = stats.cpu
            queued += stats.task_queued
            if not info.stopping:
                counts[info.role] += 1
        self.history.observe(now, summed, counts["http"], counts["task"], queued)
        self.history.observe_cpu(now, cpu)

    def livez(self) -> tuple[bool, str]:
        """The master runs (it answers) and a worker's heartbeat moved within --timeout."""
        now = time.monotonic()
        beating = [info for info in self.workers.values() if info.role == "http"
                   and info.ready and info.kill_at is None
                   and self._silence(info, now) <= self.config.timeout]
        if beating:
            return True, f"live: {len(beating)} worker(s) beating"
        return False, "not live: no worker has a heartbeat (booting, or all blocked)"

    def readyz(self) -> tuple[bool, str]:
        """A worker serves and the server is not draining."""
        if self.stopping or self.draining_until is not None:
            return False, "not ready: draining (stopping)"
        ready = [info for info in self._serving()
                 if self.slots.read(info.index).state is SlotState.READY]
        if ready:
            return True, f"ready: {len(ready)} worker(s) serving"
        return False, "not ready: no worker serves yet"

    def _enforce_stop_deadline(self) -> None:
        if time.monotonic() > self.stop_deadline:
            for pid in list(self.workers):
                error_log.warning("worker %d still running at the stop deadline: killing", pid)
                self._signal(pid, signal.SIGKILL)
            self.stop_deadline = time.monotonic() + KILL_GRACE

    def _signal(self, pid: int, sig: int) -> None:
        try:
            os.kill(pid, sig)
        except OSError as exc:
            if exc.errno != errno.ESRCH:
                raise

    # -- status ------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        now = time.monotonic()
        rows = []
        for info in sorted(self.workers.values(), key=lambda w: w.spawned):
            slot = self.slots.read(info.index)
            rss, cpu = process_stats(info)
            state = slot.state.name.lower() if slot.pid == info.pid else "booting"
            if info.stopping:
                state = "stopping"
            rows.append({
                "pid": info.pid, "role": info.role, "state": state,
                "generation": info.generation,
                "uptime": round(now - info.spawned, 1), "requests": slot.requests,
                "in_flight": slot.in_flight, "connections": slot.connections,
                "ticks_skipped": slot.ticks_skipped,
                "rss": rss, "cpu_percent": cpu,
                "heartbeat_age": round(now - slot.heartbeat, 2) if slot.heartbeat else None,
                "loop_lag_max": round(slot.loop_lag, 4),
            })
        reload = dataclasses.asdict(self.reload_status) if self.reload_status else None
        return {"master": os.getpid(), "target": self.target, "generation": self.generation,
                "max_workers": self.config.worker_ceiling(), "task_target": self.task_target,
                "stopping": self.stopping, "draining": self.draining_until is not None,
                "reload": reload, "workers": rows, **self._load_status()}

    def _load_status(self) -> dict[str, Any]:
        load = self.load
        out: dict[str, Any] = {
            "load": None if load is None else {
                "wait": None if load.wait is None else round(load.wait, 4),
                "busy": round(load.busy, 3), "workers": load.workers},
            "restarts": dict(self.restarts),
        }
        if self.long_wait is not None:
            watch = self.long_wait
            out["long_wait"] = {"limit": watch.limit, "active": watch.active,
                                "episodes": watch.episodes, "since": self.long_wait_since,
                                "peak": round(watch.peak, 4)}
        if self.autoscaler is not None:
            out["autoscale"] = {"min": self.config.min_workers, "max": self.config.max_workers,
                                "changes": dict(self.autoscaler.changes)}
        if self.task_scaler is not None:
            task = self.task_load
            out["task_autoscale"] = {
                "min": self.config.min_task_workers, "max": self.config.max_task_workers,
                "changes": dict(self.task_scaler.changes),
                "load": None if task is None else {
                    "wait": None if task.wait is None or task.wait == float("inf")
                    else round(task.wait, 4), "busy": round(task.busy, 3)}}
        return out

    def _cleanup(self) -> None:
        # Done supervising: a late signal (a SIGINT storm outlasting the stop) must not
        # kill the exiting master and turn its exit status into "killed by SIGINT".
        for sig in HANDLED:
            if sig != signal.SIGCHLD:
                signal.signal(sig, signal.SIG_IGN)
        if self.task_sock is not None:
            self.task_sock.close()
        if self.directory is not None:
            remove_server_files(self.directory, self.directory.server_id)
        if self.control is not None:
            self.control.close()
        if self.metrics is not None:
            self.metrics.close()
        if self.watcher is not None:
            self.watcher.close()
        for fd in (self.wake_r, self.wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        if self.lifeline is not None:
            self.lifeline.close()
        self.slots.release()


def process_stats(info: WorkerInfo) -> tuple[int | None, float | None]:
    """RSS and CPU % of a worker, (None, None) if it is gone.

    psutil is imported here, on first use (--max-memory, status), not with the master: every
    worker is forked from the master and would carry it (~3 MB of RSS) for nothing.
    """
    import psutil

    try:
        if info.process is None:
            info.process = psutil.Process(info.pid)
        return info.process.memory_info().rss, info.process.cpu_percent(interval=None)
    except psutil.Error:
        return None, None


def open_runtime_dir(config: Config) -> RuntimeDir:
    """The server's private runtime directory, or exit with one line saying why not."""
    try:
        return RuntimeDir.create(config.runtime_dir or default_root())
    except RuntimeDirError as exc:
        raise SystemExit(f"octo: {exc}") from None


def write_pid_file(path: str) -> tuple[int, int]:
    """Write a new file and rename it over *path*: a link planted at *path* is replaced,
    never followed, and a file of another user in a sticky directory is not replaced.
    Returns the file's (device, inode), to remove only this file at exit."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".octo-pid-")
    except OSError as exc:
        raise SystemExit(f"octo: cannot write --pid {path}: {exc.strerror}") from None
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "w") as fh:
            fh.write(f"{os.getpid()}\n")
            st = os.fstat(fh.fileno())
        os.rename(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise SystemExit(f"octo: cannot write --pid {path}: {exc.strerror}") from None
    return st.st_dev, st.st_ino


def _remove_own_file(path: str, inode: tuple[int, int]) -> None:
    """Unlink *path* if it is still the file this server wrote (not a later server's)."""
    with contextlib.suppress(OSError):
        st = os.lstat(path)
        if (st.st_dev, st.st_ino) == inode and not stat.S_ISLNK(st.st_mode):
            os.unlink(path)


def main(config: Config) -> int:
    """``octo serve``: check the runtime directory, bind, write the pid file, supervise
    until stopped."""
    from octo.master.control import control_address
    from octo.process.sockets import bind_master_sockets

    directory = open_runtime_dir(config)  # refuse an unsafe one before binding anything
    sockets, uds = ([], None) if config.reuse_port else bind_master_sockets(config)
    port = sockets[0].getsockname()[1] if sockets and sockets[0].family != socket.AF_UNIX \
        else config.port
    address = control_address(config, port)
    control = address.path if address.path is not None else directory.socket(address.name)
    arbiter = Arbiter(config, sockets, control, directory, uds)
    pid_inode = None
    try:
        if config.pid:
            pid_inode = write_pid_file(config.pid)
        return arbiter.run()
    finally:
        arbiter.stop_listening()  # done already unless the master ended before a stop
        if config.pid and pid_inode is not None:
            _remove_own_file(config.pid, pid_inode)


def _log_core() -> None:
    """One line saying which HTTP core the workers serve with (the workers choose the same:
    the choice depends only on OCTO_CORE and the files installed)."""
    from octo.http import core  # the workers import it anyway; the master only here

    chosen = core.current()
    if chosen.name == "compiled":
        error_log.info("serving with the %s", chosen.describe())
    else:
        error_log.warning("serving with the %s", chosen.describe())
