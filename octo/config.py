"""One typed configuration for the server, built from CLI > env ``OCTO_*`` > ``[tool.octo]``.

Each setting is declared once, as a ``Config`` field made by :func:`setting`: its type (the
annotation), its default, its help and its flag names. ``octo serve``'s options, their
``[default: ...]`` help, the ``OCTO_<NAME>`` variables and the ``[tool.octo]`` keys are all
generated from these fields (see :func:`options` and octo.cli).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import tomllib
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

LifespanMode = Literal["auto", "on", "off"]
LogLevel = Literal["critical", "error", "warning", "info", "debug", "trace"]
WsBackend = Literal["auto", "none", "wsproto", "websockets"]
Interface = Literal["auto", "asgi3", "asgi2", "wsgi"]


class ConfigError(ValueError):
    """A configuration value that cannot be used; the message names the setting."""


@dataclasses.dataclass(frozen=True, slots=True)
class Flag:
    """How one setting appears on the command line (the field metadata of :func:`setting`)."""

    help: str
    # The "[default: ...]" text; None: derived from the field's default.
    shown: str | None = None
    # More names for the same option: uvicorn's (--reload), a short one (-w).
    aliases: tuple[str, ...] = ()
    metavar: str | None = None
    # Reads an env/file/flag text where the annotation's type alone cannot (--workers).
    parse: Callable[[str], Any] | None = None
    # False: not an option of ``octo serve`` (APP is its argument).
    option: bool = True


def setting(default: Any, help: str, *, shown: str | None = None,
            aliases: tuple[str, ...] = (), metavar: str | None = None,
            parse: Callable[[str], Any] | None = None, option: bool = True) -> Any:
    """A Config field: its default, plus the one description every source is made from."""
    flag = Flag(help, shown, aliases, metavar, parse, option)
    return dataclasses.field(default=default, metadata={"flag": flag})


def _parse_workers(text: str) -> int | str:
    """--workers N, ``auto`` (one per CPU) or ``MIN:MAX`` (split later by worker_range)."""
    if text.lower() == "auto":
        return os.cpu_count() or 1
    return text if ":" in text else int(text)


def _parse_task_workers(text: str) -> int | str:
    """--task-workers N or ``MIN:MAX`` (split later by task_worker_range)."""
    return text if ":" in text else int(text)


@dataclasses.dataclass(slots=True)
class Config:
    """Everything a worker needs to serve; the master hands it over unchanged."""

    app: str = setting("", "The ASGI application, module:attribute.", option=False)
    # Binding.
    host: str = setting("127.0.0.1", "Bind address.")
    port: int = setting(8000, "Bind port.")
    uds: str | None = setting(None, "Bind to this Unix domain socket instead.")
    fd: int | None = setting(None, "Serve an already listening socket given by file "
                                   "descriptor.")
    backlog: int = setting(2048, "listen() backlog.")
    reuse_port: bool = setting(False, "Give each worker its own SO_REUSEPORT socket.")
    # The application.
    app_dir: str = setting(".", "Directory added to sys.path before importing APP.")
    factory: bool = setting(False, "APP is a callable returning the app.")
    root_path: str = setting("", "ASGI root_path when mounted below a URL prefix.")
    lifespan: LifespanMode = setting("auto", "ASGI lifespan events: auto (if the app "
                                             "handles them), on or off.")
    env_file: str | None = setting(None, "Load KEY=VALUE lines from this dotenv file into "
                                         "the environment before the app is imported (set "
                                         "variables win).")
    # Proxies.
    proxy_headers: bool = setting(True, "Trust X-Forwarded-Proto/For from "
                                        "--forwarded-allow-ips.")
    forwarded_allow_ips: str = setting("127.0.0.1", "Proxy addresses/networks to trust "
                                                    "(comma-separated), or '*'.")
    # Logging.
    log_level: LogLevel = setting("info", "Log level.")
    log_config: str | None = setting(None, "logging configuration file (.json dictConfig, "
                                           "or .ini).")
    access_log: bool = setting(True, "Log one line per request.")
    # None: the default line; else gunicorn's atoms (see octo.http.access).
    access_log_format: str | None = setting(
        None, "Access line in gunicorn's atoms, e.g. '%(h)s \"%(r)s\" %(s)s %(b)s %(M)s "
              "%({x-request-id}i)s'.", shown="the default line")
    access_log_json: bool = setting(
        False, "One JSON object per request: time, method, path, status, bytes, duration, "
               "client, request_id, pid, user_agent.")
    # Request ids: the incoming header's value when it is safe, else a generated one.
    request_id: bool = setting(
        True, "Give each request an id: the --request-id-header value when safe, else a "
              "generated one; in scope['state']['request_id'] and the access log.")
    request_id_header: str = setting("x-request-id", "Header carrying the request id.")
    echo_request_id: bool = setting(False, "Send the request id back in the "
                                           "--request-id-header response header.")
    server_header: bool = setting(True, "Send a Server header.")
    # Static files: "/prefix=directory" mounts served by the worker (octo.http.static).
    static: tuple[str, ...] = setting(
        (), "Serve files under DIR at /PREFIX without calling the app (repeatable).",
        metavar="/PREFIX=DIR")
    static_max_age: int = setting(
        3600, "Cache-Control max-age in seconds for static files (0: no-cache); names with "
              "a content hash (app.3f2a9c.js) get a year, immutable.")
    # TLS.
    ssl_keyfile: str | None = setting(None, "TLS private key file.")
    ssl_certfile: str | None = setting(None, "TLS certificate chain file.")
    ssl_keyfile_password: str | None = setting(
        None, "Password of an encrypted --ssl-keyfile (OCTO_SSL_KEYFILE_PASSWORD keeps it "
              "out of the process list).")
    ssl_ca_certs: str | None = setting(None, "CA certificates file to verify client "
                                             "certificates.")
    # ssl.CERT_NONE / CERT_OPTIONAL / CERT_REQUIRED, as uvicorn.
    ssl_cert_reqs: int = setting(0, "Client certificates: 0 not asked, 1 optional, 2 "
                                    "required (with --ssl-ca-certs).")
    # Process model (master).
    workers: int = setting(1, "Worker processes, 'auto' for one per CPU, or MIN:MAX to "
                              "autoscale between MIN and MAX.", aliases=("-w",),
                           parse=_parse_workers)
    # 0: from CPUs and memory (see default_max_workers).
    max_workers: int = setting(0, "The most workers `octo scale`, SIGTTIN and the "
                                  "autoscaler may ask for.",
                               shown="4 per CPU, at most one per 64 MiB of memory")
    # Autoscaling (--workers MIN:MAX, or --min-workers with --max-workers); 0: off.
    min_workers: int = setting(0, "Autoscale (with --max-workers): never fewer HTTP "
                                  "workers than this.", shown="off")
    scale_up_wait: float = setting(0.05, "Autoscaling: add a worker when the mean request "
                                         "queue wait stays above this many seconds.")
    scale_up_busy: float = setting(0.8, "Autoscaling: add a worker when the workers are "
                                        "busy (a request in flight) more than this share "
                                        "of the time, 0-1.")
    scale_down_busy: float = setting(0.3, "Autoscaling: remove a worker when they are busy "
                                          "less than this.")
    scale_cooldown: float = setting(5.0, "Autoscaling: seconds after a change before the "
                                         "next one.")
    task_workers: int = setting(0, "Processes for rt.tasks / "
                                   "concurrently(in_workers=True), or MIN:MAX to autoscale "
                                   "them from the task queue.", parse=_parse_task_workers)
    # Task-worker autoscaling (--task-workers MIN:MAX, or --min/--max-task-workers); 0: off.
    min_task_workers: int = setting(0, "Autoscale task workers (with --max-task-workers): "
                                       "never fewer.", shown="off")
    max_task_workers: int = setting(0, "Autoscale task workers: never more than this.",
                                    shown="off")
    task_scale_up_wait: float = setting(
        1.0, "Task-worker autoscaling: add one when clearing the dispatched-task queue would "
             "take longer than this many seconds (queued / taken per second), or the tasks "
             "taken waited that long.")
    pid: str | None = setting(None, "Write the master's pid to this file.")
    control: str | None = setting(None, "Control socket path.",
                                  shown="next to --pid/--uds, else per port in --runtime-dir")
    # Private directory for tables and sockets (see octo.runtime.rundir).
    runtime_dir: str | None = setting(
        None, "Private directory (mode 0700, created if missing) for the tables and "
              "sockets.", shown="$XDG_RUNTIME_DIR/octo, else /dev/shm/octo-<uid>")
    watch: bool = setting(False, "Development: roll the workers when *.py files under "
                                 "--app-dir change.", aliases=("--reload/--no-reload",))
    watch_include: str = setting("", "Extra comma-separated globs to watch (e.g. "
                                     "'*.html').")
    # Recycling: replace a worker after this many requests / MB RSS / seconds.
    max_requests: int = setting(0, "Recycle a worker after N requests.", shown="off",
                                aliases=("--limit-max-requests",))
    max_requests_jitter: int = setting(0, "Add 0..J to --max-requests.",
                                       aliases=("--limit-max-requests-jitter",))
    max_memory: float = setting(0.0, "Recycle a worker above this RSS in MB.", shown="off")
    max_lifetime: float = setting(0.0, "Recycle a worker after S seconds.", shown="off")
    # The app's interface (octo.wsgi for WSGI apps).
    interface: Interface = setting("auto", "The app's interface; auto: WSGI if it takes "
                                           "(environ, start_response), ASGI 2 if it is a "
                                           "class, else ASGI 3.")
    threads: int = setting(1, "Threads per worker running a WSGI app's requests.")
    reuse_sync_threads: bool = setting(True, "Run each Django request's sync code on a "
                                             "pooled thread instead of one started for it.")
    # WebSockets.
    ws: WsBackend = setting("auto", "WebSocket framing engine; auto: websockets if "
                                    "installed, else wsproto; none: upgrades are served as "
                                    "plain HTTP.")
    ws_max_size: int = setting(16 * 1024 * 1024, "Largest WebSocket message in bytes.",
                               shown="16 MiB")
    ws_ping_interval: float = setting(20.0, "Seconds between keepalive pings.")
    ws_ping_timeout: float = setting(20.0, "Seconds to wait for a pong.")
    ws_per_message_deflate: bool = setting(True, "Offer permessage-deflate compression.")
    # Runtime (octo.Octo): debug leak detector, collect garbage when RSS grew this many MB.
    detect_leaks: bool = setting(False, "Debug: warn when app globals or singleton "
                                        "attributes change between requests (octo.Octo "
                                        "runtime).")
    redis_url: str | None = setting(None, "Redis for one_server ticks, e.g. "
                                          "redis://127.0.0.1:6379/0.")
    gc_threshold: float = setting(0.0, "Collect garbage between requests once RSS grew "
                                       "this many MB.", shown="off")
    # Operations: the metrics/health listener (HOST:PORT), long-wait warning, SIGTERM delay.
    metrics: str | None = setting(None, "Serve /metrics (Prometheus), /livez, /readyz and a "
                                        "dashboard at / on HOST:PORT, from the master.",
                                  shown="off")
    max_wait_time: float = setting(0.0, "Warn (and fire LongWaitDetected) when requests "
                                        "wait longer than this many seconds before the app "
                                        "is called.", shown="off")
    shutdown_delay: float = setting(0.0, "On SIGTERM, fail /readyz and keep serving this "
                                         "many seconds before stopping (for load balancers, "
                                         "Kubernetes).")
    # Timeouts (seconds); 0 turns the ones that say so off.
    timeout: float = setting(30.0, "Liveness limit: a worker whose event loop has not "
                                   "beaten for this many seconds gets its stack dumped and "
                                   "is replaced. Not a request timeout.")
    max_execution_time: float = setting(0.0, "Per-request deadline in seconds: 504 and the "
                                             "request is cancelled.", shown="off")
    timeout_keep_alive: float = setting(5.0, "Close idle keep-alive connections after this "
                                             "many seconds.")
    header_timeout: float = setting(10.0, "Seconds a client has to send a whole request "
                                          "head (slowloris guard; the timer does not "
                                          "restart per byte).")
    # A request body must arrive at --body-min-rate bytes/s, measured over each window of
    # this many seconds.
    body_timeout: float = setting(30.0, "Window in seconds over which a request body must "
                                        "arrive at --body-min-rate; a slower one gets 408 "
                                        "and a close. 0: off.")
    # Kestrel's MinRequestBodyDataRate.
    body_min_rate: float = setting(240.0, "Least request-body bytes per second, over each "
                                          "--body-timeout window (time the server is not "
                                          "reading does not count).")
    # As nginx's send_timeout.
    send_timeout: float = setting(60.0, "Abort a connection whose response makes no write "
                                        "progress for this many seconds (a client that "
                                        "stops reading). 0: off.")
    graceful_timeout: float = setting(30.0, "Seconds to let in-flight requests finish on "
                                            "stop.", aliases=("--timeout-graceful-shutdown",))
    # Limits, each with a log line when it fires.
    limit_concurrency: int | None = setting(None, "Answer 503 at once beyond this many "
                                                  "concurrent requests/connections.")
    limit_request_line: int = setting(8190, "Max request-target bytes (414).")
    limit_request_fields: int = setting(100, "Max header fields (431).")
    limit_request_head: int = setting(65536, "Max request line + headers bytes (431).")
    # gunicorn's default.
    limit_request_field_size: int = setting(8190, "Max bytes of one header or trailer line "
                                                  "(431).")
    # Node.js's.
    limit_chunk_extension: int = setting(16384, "Max bytes of one chunk-size line: size and "
                                                "chunk extensions (413).")
    limit_request_body: int = setting(64 * 1024 * 1024, "Max request body bytes (413).",
                                      shown="64 MiB")

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ConfigError naming the first setting that is out of range."""
        for name, choices in CHOICES.items():
            if getattr(self, name) not in choices:
                listed = f"{', '.join(choices[:-1])} or {choices[-1]}"
                raise ConfigError(f"--{flag_name(name)} {getattr(self, name)!r}: choose "
                                  f"{listed}")
        for name in ("limit_request_line", "limit_request_fields", "limit_request_head",
                     "limit_request_field_size", "limit_chunk_extension"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive")
        for name in ("body_timeout", "body_min_rate", "send_timeout"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must not be negative (0 turns it off)")
        self._validate_workers()
        if self.reuse_port and (self.fd is not None or self.uds is not None):
            raise ConfigError("--reuse-port needs --host/--port (not --fd or --uds)")
        if self.timeout <= 0:
            raise ConfigError("timeout must be positive (it is the worker liveness limit)")
        if self.threads < 1:
            raise ConfigError(f"threads must be at least 1, not {self.threads}")
        self._validate_operations()
        if self.limit_concurrency is not None and self.limit_concurrency <= 0:
            raise ConfigError("limit_concurrency must be positive")
        self._validate_tls()
        self.trusted_proxies()  # parse early so a typo fails at start, not per request

    def _validate_tls(self) -> None:
        if (self.ssl_keyfile is None) != (self.ssl_certfile is None):
            raise ConfigError("--ssl-keyfile and --ssl-certfile must be given together")
        if self.ssl_cert_reqs not in (0, 1, 2):
            raise ConfigError("--ssl-cert-reqs must be 0 (none), 1 (optional) or 2 "
                              "(required)")
        if self.ssl_certfile is None and (self.ssl_keyfile_password is not None
                                          or self.ssl_ca_certs or self.ssl_cert_reqs):
            raise ConfigError("--ssl-keyfile-password, --ssl-ca-certs and --ssl-cert-reqs "
                              "need --ssl-certfile and --ssl-keyfile")
        if self.ssl_cert_reqs and not self.ssl_ca_certs:
            raise ConfigError("--ssl-cert-reqs needs --ssl-ca-certs (the CAs that sign the "
                              "client certificates)")
        self.trusted_proxies()  # parse early so a typo fails at start, not per request
        self._validate_edge()

    def _validate_edge(self) -> None:
        """Static mounts, the access-log format and the request-id header."""
        from octo.http.access import AccessFormatError, compile_format
        from octo.http.static import StaticConfigError
        from octo.http.validate import TOKEN_CHARS

        if isinstance(self.static, str):
            self.static = tuple(item for item in self.static.split(",") if item.strip())
        self.static = tuple(self.static)
        try:
            self.static_mounts()
        except StaticConfigError as exc:
            raise ConfigError(str(exc)) from None
        if self.static_max_age < 0:
            raise ConfigError("--static-max-age must not be negative")
        if self.access_log_format is not None and self.access_log_json:
            raise ConfigError("--access-log-format and --access-log-json exclude each other")
        header = self.request_id_header.encode("latin-1", "replace")
        if not header or header.translate(None, TOKEN_CHARS):
            raise ConfigError(f"--request-id-header {self.request_id_header!r} is not a "
                              "header name")
        if self.access_log_format is not None:
            try:
                compile_format(self.access_log_format, header.lower())
            except AccessFormatError as exc:
                raise ConfigError(str(exc)) from None

    def static_mounts(self, check: bool = False) -> list[Any]:
        """The ``--static`` mounts (octo.http.static.Mount), parsed; *check*: their
        directories must exist (StaticConfigError)."""
        from octo.http.static import Mount

        mounts = [Mount.parse(spec) for spec in self.static]
        for mount in mounts if check else ():
            mount.check()
        return mounts

    def _validate_workers(self) -> None:
        if self.workers < 1:
            raise ConfigError("workers must be at least 1")
        if self.max_workers < 0 or self.task_workers < 0:
            raise ConfigError("--max-workers and --task-workers cannot be negative")
        if self.max_workers and self.workers > self.max_workers:
            raise ConfigError(f"--workers {self.workers} is above --max-workers "
                              f"{self.max_workers}")
        most = max(self.workers, self.max_workers)
        tasks = self.task_worker_ceiling()
        if most + tasks > WORKER_LIMIT:
            raise ConfigError(f"--workers/--max-workers {most} plus --task-workers "
                              f"{tasks} is above the {WORKER_LIMIT} worker "
                              "processes one server supervises")

    def _validate_operations(self) -> None:
        if self.metrics is not None:
            self.metrics_address()
        for name in ("max_wait_time", "shutdown_delay", "scale_cooldown"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} cannot be negative")
        check_task_scaling(self)
        if not self.min_workers:
            return
        if not self.max_workers:
            raise ConfigError("--min-workers needs --max-workers (the autoscaling ceiling); "
                              "or give both as --workers MIN:MAX")
        if not 1 <= self.min_workers <= self.workers <= self.max_workers:
            raise ConfigError(f"autoscaling needs 1 <= --min-workers ({self.min_workers}) <= "
                              f"--workers ({self.workers}) <= --max-workers "
                              f"({self.max_workers})")
        if not 0 <= self.scale_down_busy < self.scale_up_busy <= 1:
            raise ConfigError("need 0 <= --scale-down-busy < --scale-up-busy <= 1")
        if self.scale_up_wait <= 0:
            raise ConfigError("--scale-up-wait must be positive")

    @property
    def reads_load(self) -> bool:
        """Something reads the workers' counters (--metrics, --max-wait-time, autoscaling):
        only then do they copy them into their slots and the master sample them."""
        return (self.metrics is not None or self.max_wait_time > 0 or self.autoscale
                or self.task_autoscale)

    @property
    def autoscale(self) -> bool:
        """The master adds and removes HTTP workers itself (--workers MIN:MAX)."""
        return self.min_workers > 0

    def metrics_address(self) -> tuple[str, int]:
        """--metrics as (host, port): ``HOST:PORT``, ``[IPv6]:PORT`` or ``:PORT`` (every
        interface)."""
        spec = self.metrics or ""
        host, sep, port = spec.rpartition(":")
        if not sep or not port.isdigit() or int(port) > 65535:
            raise ConfigError(f"--metrics {spec!r}: expected HOST:PORT, e.g. 127.0.0.1:9090")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        return host or "0.0.0.0", int(port)

    def worker_ceiling(self) -> int:
        """The most HTTP workers this server may scale to: --max-workers, else the default
        from CPUs and memory, never below --workers."""
        ceiling = self.max_workers or default_max_workers()
        return min(max(ceiling, self.workers), WORKER_LIMIT - self.task_worker_ceiling())

    def task_worker_ceiling(self) -> int:
        """The most task workers this server runs: --max-task-workers when autoscaling."""
        return max(self.task_workers, self.max_task_workers)

    @property
    def task_autoscale(self) -> bool:
        """The master adds and removes task workers itself (--task-workers MIN:MAX)."""
        return self.min_task_workers > 0

    @property
    def is_ssl(self) -> bool:
        return self.ssl_certfile is not None

    def trusted_proxies(self) -> TrustedProxies:
        return TrustedProxies.parse(self.forwarded_allow_ips)


@dataclasses.dataclass(frozen=True, slots=True)
class TrustedProxies:
    """The ``--forwarded-allow-ips`` list: ``*``, addresses, networks, or ``unix:``."""

    any: bool
    hosts: frozenset[str]
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]

    @classmethod
    def parse(cls, spec: str) -> TrustedProxies:
        items = [item.strip() for item in spec.split(",") if item.strip()]
        hosts: set[str] = set()
        networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for item in items:
            if item == "*":
                return cls(True, frozenset(), ())
            if item.startswith("unix:") or "/" not in item:
                if not item.startswith("unix:"):
                    _check_ip(item)
                hosts.add(item)
            else:
                try:
                    networks.append(ipaddress.ip_network(item, strict=False))
                except ValueError:
                    raise ConfigError(f"forwarded_allow_ips: bad network {item!r}") from None
        return cls(False, frozenset(hosts), tuple(networks))

    def trusts(self, host: str | None) -> bool:
        if self.any:
            return True
        if host is None:
            return "unix:" in self.hosts
        if host in self.hosts:
            return True
        if not self.networks:
            return False
        try:
            addr = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(addr in net for net in self.networks)


def _check_ip(item: str) -> None:
    try:
        ipaddress.ip_address(item)
    except ValueError:
        raise ConfigError(f"forwarded_allow_ips: bad address {item!r}") from None


WORKER_LIMIT = 1024  # worker processes per server (the slot table holds twice that)
WORKERS_PER_CPU = 4
MEMORY_PER_WORKER = 64 * 1024 * 1024  # bytes of memory set aside per worker by the default


def default_max_workers(cpus: int | None = None, memory: int | None = None) -> int:
    """The default --max-workers: 4 per CPU this process may run on, and no more than one
    per 64 MiB of memory (the cgroup limit when lower than the machine's), within
    1..WORKER_LIMIT."""
    cpus = cpus or usable_cpus()
    memory = memory if memory is not None else usable_memory()
    ceiling = WORKERS_PER_CPU * cpus
    if memory:
        ceiling = min(ceiling, memory // MEMORY_PER_WORKER)
    return max(1, min(ceiling, WORKER_LIMIT))


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def usable_memory() -> int | None:
    """Bytes of memory: the machine's, or the cgroup v2 limit when lower; None if unknown."""
    try:
        memory: int | None = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        memory = None
    try:
        with open("/sys/fs/cgroup/memory.max") as fh:
            limit = fh.read().strip()
    except OSError:
        return memory
    if limit.isdigit():
        memory = min(int(limit), memory) if memory else int(limit)
    return memory


FIELDS = {f.name: f for f in dataclasses.fields(Config)}


def _kind(hint: Any) -> tuple[Any, bool]:
    """(the type, whether None is allowed) of a field's annotation: ``int | None`` is
    (int, True), ``Literal["a", "b"]`` is (Literal["a", "b"], False), ``tuple[str, ...]``
    is (tuple, False)."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        return next(arg for arg in args if arg is not type(None)), True
    return typing.get_origin(hint) or hint, False


# Each field's resolved annotation, read once: coerce and the CLI dispatch on types, never
# on annotation text.
KINDS: dict[str, tuple[Any, bool]] = {
    name: _kind(hint) for name, hint in typing.get_type_hints(Config).items()
    if name in FIELDS}
# The settings whose annotation is a Literal: the values each accepts.
CHOICES: dict[str, tuple[str, ...]] = {
    name: typing.get_args(hint) for name, hint in typing.get_type_hints(Config).items()
    if typing.get_origin(hint) is Literal}


def flag_of(name: str) -> Flag:
    """The command-line description of setting *name*."""
    flag: Flag = FIELDS[name].metadata["flag"]
    return flag


def flag_name(name: str) -> str:
    """``max_requests`` as its flag (``max-requests``), as in messages and [tool.octo]."""
    return name.replace("_", "-")


def shown_default(name: str) -> str | None:
    """The "[default: ...]" text of setting *name*, or None when there is nothing to show
    (no value, an empty string)."""
    flag, default = flag_of(name), FIELDS[name].default
    if flag.shown is not None:
        return flag.shown
    if isinstance(default, bool):
        return "on" if default else "off"
    if isinstance(default, float):
        return f"{default:g}"
    if default is None or default in ("", ()):
        return None
    return str(default)


def _read_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(text)


_READERS: dict[Any, Callable[[str], Any]] = {bool: _read_bool, int: int, float: float}


def coerce(name: str, raw: Any) -> Any:
    """Turn an env/file value into the field's type, naming the setting on failure."""
    kind, optional = KINDS[name]
    if not isinstance(raw, str):
        return tuple(raw) if isinstance(raw, list) and kind is tuple else raw
    text = raw.strip()
    parse = flag_of(name).parse or _READERS.get(kind)
    if parse is None:
        return text  # str, a Literal (checked by validate), tuple (split by validate)
    if optional and text.lower() in ("", "none"):
        return None
    try:
        return parse(text)
    except ValueError:
        kind_name = getattr(kind, "__name__", str(kind))
        raise ConfigError(f"{name}: cannot read {raw!r} as {kind_name}") from None


def worker_range(values: dict[str, Any]) -> dict[str, Any]:
    """Split ``workers = "MIN:MAX"`` of one source into --min-workers, --max-workers and the
    starting --workers (MIN)."""
    values = task_worker_range(values)
    spec = values.get("workers")
    if not isinstance(spec, str) or ":" not in spec:
        return values
    low, _, high = spec.partition(":")
    try:
        minimum, maximum = int(low), int(high)
    except ValueError:
        raise ConfigError(f"--workers {spec!r}: expected N, auto or MIN:MAX (e.g. "
                          "2:8)") from None
    return {**values, "workers": minimum, "min_workers": minimum, "max_workers": maximum}


def task_worker_range(values: dict[str, Any]) -> dict[str, Any]:
    """``task_workers = "MIN:MAX"``: --min-task-workers, --max-task-workers, and MIN to
    start with."""
    spec = values.get("task_workers")
    if not isinstance(spec, str):
        return values
    low, _, high = spec.partition(":")
    try:
        minimum, maximum = (int(low), int(high)) if ":" in spec else (int(spec), 0)
    except ValueError:
        raise ConfigError(f"--task-workers {spec!r}: expected N or MIN:MAX (e.g. "
                          "1:4)") from None
    if not maximum:
        return {**values, "task_workers": minimum}
    return {**values, "task_workers": minimum, "min_task_workers": minimum,
            "max_task_workers": maximum}


def check_task_scaling(config: Config) -> None:
    """--task-workers MIN:MAX (or --min/--max-task-workers) makes sense."""
    low, high = config.min_task_workers, config.max_task_workers
    if low < 0 or high < 0:
        raise ConfigError("--min-task-workers and --max-task-workers cannot be negative")
    if not low and not high:
        return
    if not low or not high:
        raise ConfigError("task-worker autoscaling needs both --min-task-workers and "
                          "--max-task-workers; or give both as --task-workers MIN:MAX")
    if not 1 <= low <= config.task_workers <= high:
        raise ConfigError(f"task-worker autoscaling needs 1 <= --min-task-workers ({low}) "
                          f"<= --task-workers ({config.task_workers}) <= --max-task-workers "
                          f"({high})")
    if config.task_scale_up_wait <= 0:
        raise ConfigError("--task-scale-up-wait must be positive")


def from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    """Settings from ``OCTO_<NAME>`` variables (e.g. ``OCTO_PORT=9000``)."""
    out: dict[str, Any] = {}
    for name in FIELDS:
        key = f"OCTO_{name.upper()}"
        if key in environ:
            out[name] = coerce(name, environ[key])
    return worker_range(out)


def from_pyproject(directory: Path) -> dict[str, Any]:
    """Settings from ``[tool.octo]`` of ``pyproject.toml`` in *directory*, if present."""
    path = directory / "pyproject.toml"
    if not path.is_file():
        return {}
    with path.open("rb") as fh:
        table = tomllib.load(fh).get("tool", {}).get("octo", {})
    out: dict[str, Any] = {}
    for key, value in table.items():
        name = key.replace("-", "_")
        if name not in FIELDS:
            raise ConfigError(f"{path}: unknown setting [tool.octo] {key}")
        out[name] = coerce(name, value)
    return worker_range(out)


def build(cli: Mapping[str, Any], environ: Mapping[str, str] | None = None,
          directory: Path | None = None) -> Config:
    """Merge the three sources with CLI > env > file precedence."""
    merged = from_pyproject(directory or Path.cwd())
    merged.update(from_env(os.environ if environ is None else environ))
    merged.update(worker_range({k: coerce(k, v) for k, v in cli.items() if v is not None}))
    if merged.get("min_workers") and "workers" not in merged:
        merged["workers"] = merged["min_workers"]  # autoscaling starts at MIN
    if merged.get("min_task_workers") and "task_workers" not in merged:
        merged["task_workers"] = merged["min_task_workers"]
    return Config(**merged)
