"""Worker process: load the app, run lifespan, serve inherited sockets, drain on stop.

A worker never binds: it is handed listening sockets (by ``octo serve`` directly, or by the
master after fork) and imports the app itself, so a restarted worker loads new code.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import os
import signal
import socket
import ssl
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from octo import handoff
from octo.config import Config
from octo.http import core
from octo.http.response import DateHeader
from octo.logs import error_log
from octo.process import orphan
from octo.process.accept import BalancedAcceptor, accept_queued
from octo.process.exits import EXIT_OK
from octo.process.importer import AppLoadError, load_app
from octo.process.lifespan import start_app
from octo.process.slots import SlotState, SlotWriter
from octo.process.sockets import bind_sockets, describe
from octo.process.syncthreads import reuse_sync_threads
from octo.process.tls import ssl_context
from octo.process.usage import usage_json
from octo.stats import (
    TASKS,
    TICKS_FAILED,
    TICKS_RUN,
    TICKS_SKIPPED,
    clock,
    table_usage,
    tick_counts,
)
from octo.types import ASGIApp
from octo.wsgi import WSGIAdapter, looks_like_wsgi

if TYPE_CHECKING:
    from octo.http.protocol import HttpProtocol, ServerState

CLOCK_INTERVAL = 0.5
TABLES_EVERY = 4  # pulses between two reports of the tables' usage
ATTACH_WAIT = 2.0  # seconds connections accepted while closing get to finish attaching


def new_event_loop() -> asyncio.AbstractEventLoop:
    import uvloop

    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


class Worker:
    """Serves *sockets* with the app named in *config* until told to stop."""

    def __init__(self, config: Config, sockets: list[socket.socket],
                 slot: SlotWriter | None = None, retire_after: int = 0,
                 lifeline: int | None = None) -> None:
        self.config = config
        self.sockets = sockets
        self.slot = slot
        self.lifeline = lifeline  # read end of the master's lifeline (see octo.process.orphan)
        self.retire_after = retire_after  # --max-requests (+ jitter) for this worker; 0: never
        self.phase = SlotState.BOOTING
        self.lags: collections.deque[float] = collections.deque(maxlen=20)
        self.state: ServerState | None = None
        self.servers: list[asyncio.AbstractServer] = []
        self.acceptors: list[BalancedAcceptor] = []
        self.factory: Callable[[], asyncio.Protocol] | None = None
        self.ctx: ssl.SSLContext | None = None
        self.listening = True  # until _stop_listening
        self.attaching: set[asyncio.Task[None]] = set()  # connections accepted while closing
        self.stop_requested: asyncio.Event | None = None
        self.force = False
        self.started_at = time.time()
        self.pulse: asyncio.TimerHandle | None = None
        self.background: set[asyncio.Task[None]] = set()
        self.tables_written = b""  # the table usage last put in the slot
        self.reports = 0
        self.long_wait_seen = slot.slots.long_wait()[0] if slot is not None else 0

    def run(self, loop: asyncio.AbstractEventLoop | None = None) -> int:
        """Blocking entry point; returns the process exit code."""
        loop = loop or new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            return loop.run_until_complete(self.serve())
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def serve(self) -> int:
        error_log.info("worker %d booting (octo %s, python %s)", os.getpid(), _version(),
                       sys.version.split()[0])
        self._watch_lifeline(asyncio.get_running_loop())
        started = await start_app(self.load, self.config.lifespan,
                                  self.config.log_level == "debug")
        if isinstance(started, int):
            return started
        app, lifespan = started
        loop = asyncio.get_running_loop()
        # The compiled core's classes when it is built (octo.http.core); same interface.
        protocol = core.current().protocol
        self.state = protocol.ServerState(self.config, app, loop,
                                          lifespan.state if lifespan.supported else None,
                                          websocket_handler(self.config))
        self.stop_requested = asyncio.Event()
        self._install_signals(loop)
        await self._listen(loop)
        _freeze_boot_objects()
        self.phase = SlotState.READY
        self._pulse(loop)
        ticking = loop.create_task(self._clock())
        await self.stop_requested.wait()
        self.phase = SlotState.STOPPING
        self._beat(loop)
        await self._drain()
        # Keep beating through the app's shutdown: a retiring worker whose shutdown awaits
        # longer than --timeout is not blocked, and the master still checks it.
        await lifespan.shutdown()
        ticking.cancel()
        if self.pulse is not None:
            self.pulse.cancel()
        self._report(loop, final=True)
        return EXIT_OK

    def _watch_lifeline(self, loop: asyncio.AbstractEventLoop) -> None:
        """From the first await on (the lifespan startup), a master that dies is noticed at
        once: the lifeline reads end of file."""
        fd, slot = self.lifeline, self.slot
        if fd is None or slot is None:
            return

        def readable() -> None:
            try:
                if os.read(fd, 1):
                    return  # a stray byte; only the end of file means anything
            except BlockingIOError:
                return
            except OSError:
                pass
            loop.remove_reader(fd)
            orphan.master_gone(slot.master_pid)

        loop.add_reader(fd, readable)

    def load(self) -> ASGIApp:
        app = load_configured_app(self.config)
        if "octo.runtime.app" in sys.modules:  # only an app that created a runtime can be one
            from octo.runtime.app import unwrapped_runtime_warning

            warning = unwrapped_runtime_warning(app, self.config.app)
            if warning:
                error_log.warning("%s", warning)
        served = as_asgi(app, self.config)
        if self.config.reuse_sync_threads and not isinstance(served, WSGIAdapter):
            served = reuse_sync_threads(served)
        if self.retire_after:
            served = limit_requests(served, self.retire_after, self._max_requests_reached)
        return served

    def _max_requests_reached(self) -> bool:
        """The --max-requests-th request has started: ask the master for a replacement and,
        unless this worker's socket is its own (--reuse-port: nobody else would accept on
        it), take no more work. Returns True when this worker stopped taking work; its
        later responses then close their connections."""
        if self.phase is not SlotState.READY:
            return False
        error_log.info("served %d requests (--max-requests): asking to be replaced",
                       self.retire_after)
        self.phase = SlotState.RETIRING
        self._beat(asyncio.get_running_loop())
        if self.slot is None or self.config.reuse_port:
            return False
        # The master holds the shared socket: connections wait in its backlog for the
        # other workers and the replacement.
        self._stop_listening(take_queued=False)
        return True

    async def _listen(self, loop: asyncio.AbstractEventLoop) -> None:
        state = self.state
        assert state is not None
        ctx = ssl_context(self.config)

        protocol_class: type[HttpProtocol] = core.current().protocol.HttpProtocol

        def factory() -> asyncio.Protocol:
            # An asyncio protocol by its methods, not by subclassing (see HttpProtocol).
            return cast(asyncio.Protocol, protocol_class(state))

        self.factory, self.ctx = factory, ctx
        DateHeader.refresh(time.time())
        if not self.listening:
            return  # stopped while booting
        if not self.sockets:  # --reuse-port: each worker binds its own socket
            self.sockets = bind_sockets(self.config, reuse_port=True)
        if self.slot is not None:
            state.on_connections = self.slot.set_connections
            self.slot.set_connections(0)
        balance = self.slot is not None and self.config.workers > 1 and not self.config.reuse_port
        for sock in self.sockets:
            if balance:
                assert self.slot is not None
                acceptor = BalancedAcceptor(loop, sock, factory, ctx, self.slot.fair_to_accept)
                acceptor.start()
                self.acceptors.append(acceptor)
            elif sock.family == socket.AF_UNIX:
                self.servers.append(await loop.create_unix_server(
                    factory, sock=sock, ssl=ctx, backlog=self.config.backlog))
            else:
                self.servers.append(await loop.create_server(
                    factory, sock=sock, ssl=ctx, backlog=self.config.backlog))
            error_log.info("Listening on %s (worker %d)", describe(sock, ctx is not None),
                           os.getpid())

    async def _clock(self) -> None:
        """Refresh the Date header once a second and enforce connection deadlines."""
        state = self.state
        assert state is not None
        loop = asyncio.get_running_loop()
        last = 0
        while True:
            now = time.time()
            if int(now) != last:
                last = int(now)
                DateHeader.refresh(now)
            mono = state.now = loop.time()
            for conn in list(state.connections):
                conn.tick(mono)
            self._beat(loop)
            expected = loop.time() + CLOCK_INTERVAL
            await asyncio.sleep(CLOCK_INTERVAL)
            self.lags.append(max(0.0, loop.time() - expected))

    def _pulse(self, loop: asyncio.AbstractEventLoop) -> None:
        """Beat now and every CLOCK_INTERVAL from a timer callback. A timer runs in the loop
        iteration in which it falls due; a task it wakes (the clock) runs only after every
        callback already queued, so on a saturated loop clock beats came two iterations
        apart and a busy worker could pass for a blocked one."""
        self._beat(loop)
        self._report(loop)
        self.pulse = loop.call_later(CLOCK_INTERVAL, self._pulse, loop)

    def _beat(self, loop: asyncio.AbstractEventLoop) -> None:
        """Write the heartbeat from the event loop: a blocked loop stops beating."""
        if self.slot is None or self.state is None:
            return
        state = self.state
        slot = self.slot
        slot.beat(self.phase, time.monotonic(), state.requests, state.in_flight,
                  max(self.lags, default=0.0), len(state.connections), TICKS_SKIPPED[0])

    def _report(self, loop: asyncio.AbstractEventLoop, final: bool = False) -> None:
        """Copy the --metrics counters into the slot (from the pulse, twice a second, and
        once more at the end: the master adds a gone worker's last counts to its totals)."""
        if self.slot is None or self.state is None or not self.config.reads_load:
            return  # nobody reads them: no cost while idle
        state = self.state
        slot = self.slot
        slot.write_stats(state.stats, clock(), state.in_flight, time.process_time(),
                         len(state.websockets), (TICKS_RUN[0], TICKS_FAILED[0]),
                         (TASKS.queued(), TASKS.handed, TASKS.waited))
        self.reports += 1
        if final or self.reports % TABLES_EVERY == 1:  # usage moves slowly: every 2 s
            tables = usage_json(table_usage(), tick_counts())
            if tables != self.tables_written:
                slot.write_tables(tables)
                self.tables_written = tables
        self._announce_long_wait(loop)

    def _announce_long_wait(self, loop: asyncio.AbstractEventLoop) -> None:
        """Fire LongWaitDetected in the app's runtime when the master chose this worker to
        announce a new long-wait episode (--max-wait-time)."""
        assert self.slot is not None
        episode, index, wait, limit = self.slot.slots.long_wait()
        if episode == self.long_wait_seen:
            return
        self.long_wait_seen = episode
        if index != self.slot.index or "octo.runtime.app" not in sys.modules:
            return
        from octo.runtime.app import booted_runtimes
        from octo.runtime.events import LongWaitDetected

        for runtime in booted_runtimes():
            task = loop.create_task(runtime.events.dispatch(LongWaitDetected(wait, limit)))
            self.background.add(task)
            task.add_done_callback(self.background.discard)

    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
            loop.add_signal_handler(sig, self.handle_stop_signal, sig)

    def handle_stop_signal(self, sig: int) -> None:
        if sig in (signal.SIGINT, signal.SIGQUIT) and (sig == signal.SIGQUIT or
                                                       self._stopping()):
            self.force = True
        self.request_stop()

    def _stopping(self) -> bool:
        return self.stop_requested is not None and self.stop_requested.is_set()

    def request_stop(self) -> None:
        if self.stop_requested is not None:
            # Stop listening now, from the signal handler: on a stop the master has closed
            # its copy already, so a new connection is refused as soon as every worker has.
            self._stop_listening(take_queued=not self.force)
            self.stop_requested.set()

    def _stop_listening(self, take_queued: bool) -> None:
        """Close this worker's listening sockets (idempotent), first accepting what the
        kernel already queued on them if *take_queued*: once the last copy of a socket is
        closed, its queued connections are reset."""
        if not self.listening:
            return
        self.listening = False
        loop = asyncio.get_running_loop()
        if take_queued and self.factory is not None:
            for sock in self.sockets:
                self.attaching |= accept_queued(loop, sock, self.factory, self.ctx,
                                                self.config.backlog)
        for acceptor in self.acceptors:
            acceptor.close()
            self.attaching |= acceptor.pending
        for server in self.servers:
            server.close()
        for sock in self.sockets:
            sock.close()
        self.acceptors, self.servers, self.sockets = [], [], []
        if self.state is not None:
            self.state.on_connections = None
        if self.slot is not None:
            self.slot.set_connections(-1)  # siblings stop waiting for us to take connections

    async def _drain(self) -> None:
        """Stop listening, let in-flight requests finish (up to --graceful-timeout)."""
        state = self.state
        assert state is not None
        self._stop_listening(take_queued=not self.force)
        # Connections accepted just before (or while) closing finish attaching before the
        # server counts as stopping: one attached after would be closed unanswered.
        pending = [task for task in self.attaching if not task.done()]
        if pending and not self.force:
            await asyncio.wait(pending, timeout=ATTACH_WAIT)
        await asyncio.sleep(0)  # connection_made callbacks queued by a last accept run first
        state.stopping = True
        for ws in list(state.websockets):
            ws.shutdown()
        for conn in list(state.connections):
            conn.shutdown()
        deadline = time.monotonic() + self.config.graceful_timeout
        # A task cancelled before its first step never runs the cycle's cleanup, so it
        # may stay in the set done: wait only for the pending ones.
        while (state.connections or any(not t.done() for t in state.tasks)) \
                and not self.force:
            if time.monotonic() > deadline:
                error_log.warning("graceful timeout: %d connections still open, closing them",
                                  len(state.connections))
                break
            await asyncio.sleep(0.05)
        why = ("the stop was forced" if self.force else
               f"--graceful-timeout {self.config.graceful_timeout}s ran out")
        for conn in list(state.connections):
            conn.expire(why)  # 503 for what was not answered yet, before the apps are cut
        for task in list(state.tasks):
            task.cancel()
        if state.tasks:
            await asyncio.wait(list(state.tasks), timeout=1.0)


def _freeze_boot_objects() -> None:
    """Move everything the boot created (modules, app, singletons) out of the collector's
    reach: a full collection then walks only request-time objects, which keeps its pauses
    (and the p99 they cause) short. Measured: hello with Connection: close, p99 8-11 ms
    before, 3-4 ms after."""
    gc.collect()
    gc.freeze()


def websocket_handler(cfg: Config) -> Any:
    """The upgrade hook for --ws, or None (upgrade requests are then served as HTTP). The
    hook imports the WebSocket layer on the first upgrade only (its library costs a worker
    megabytes of RSS)."""
    from octo.ws import BackendMissing, resolve, upgrade_hook

    try:
        backend = resolve(cfg.ws)
    except BackendMissing as exc:
        raise SystemExit(f"octo: {exc}") from None
    if backend is None:
        if cfg.ws == "auto":
            error_log.info("WebSockets disabled: install octo-server[ws] (wsproto or websockets)")
        return None
    return upgrade_hook(backend)


def load_configured_app(cfg: Config, role: handoff.Role = "http") -> Any:
    """Import the app after handing the runtime (octo.Octo, created at import time) its
    settings: the hand-off is fixed before the app's first line runs."""
    handoff.receive(handoff.Handoff(
        role=role, app_dir=os.path.abspath(cfg.app_dir),
        graceful_timeout=cfg.graceful_timeout, detect_leaks=cfg.detect_leaks,
        gc_threshold=cfg.gc_threshold, redis_url=cfg.redis_url or ""))
    return load_app(cfg.app, cfg.app_dir, cfg.factory)


def limit_requests(app: ASGIApp, limit: int, reached: Callable[[], bool]) -> ASGIApp:
    """--max-requests: count the HTTP requests given to *app* and call *reached* as the
    *limit*-th starts (not on a clock: a worker recycled at 500 + 50 used to serve up to
    1160). If *reached* returns True (the worker takes no more work), that response and
    any later one (a request already on the wire of another connection) close their
    connection, so a client's next request goes to another worker."""
    served = 0
    closing = False

    async def counted(scope: Any, receive: Any, send: Any) -> None:
        nonlocal served, closing
        if scope["type"] == "http":
            served += 1
            if served == limit:
                closing = reached()
            if closing:
                send = _closing(send)
        await app(scope, receive, send)

    return counted


def _closing(send: Any) -> Any:
    async def send_closing(message: Any) -> None:
        if message["type"] == "http.response.start":
            headers = [*message.get("headers", ()), (b"connection", b"close")]
            message = {**message, "headers": headers}
        await send(message)

    return send_closing


def as_asgi(app: Any, config: Config) -> ASGIApp:
    """The app as ASGI 3, by --interface; auto: a WSGI callable (two arguments) runs in
    --threads threads, a class is an ASGI 2 (double-callable) app, else ASGI 3."""
    interface = config.interface
    if interface == "wsgi" and not looks_like_wsgi(app):
        raise AppLoadError(f"--interface wsgi: {config.app} is not a WSGI app (a callable "
                           "taking environ and start_response)")
    if interface == "wsgi" or (interface == "auto" and looks_like_wsgi(app)):
        error_log.info("serving %s as a WSGI app, %d thread(s) per worker (--threads)",
                       config.app, config.threads)
        return WSGIAdapter(app, config.threads)
    if interface == "asgi2" or (interface == "auto" and isinstance(app, type)):
        factory = app

        async def asgi3(scope: Any, receive: Any, send: Any) -> None:
            await factory(scope)(receive, send)

        return asgi3
    return app  # type: ignore[no-any-return]


def _version() -> str:
    from octo._version import __version__

    return __version__
