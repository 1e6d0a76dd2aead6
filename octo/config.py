"""One typed configuration for the server, built from CLI > env ``OCTO_*`` > ``[tool.octo]``."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

LifespanMode = Literal["auto", "on", "off"]
LogLevel = Literal["critical", "error", "warning", "info", "debug", "trace"]


class ConfigError(ValueError):
    """A configuration value that cannot be used; the message names the setting."""


@dataclasses.dataclass(slots=True)
class Config:
    """Everything a worker needs to serve; the master hands it over unchanged."""

    app: str = ""
    host: str = "127.0.0.1"
    port: int = 8000
    uds: str | None = None
    fd: int | None = None
    app_dir: str = "."
    factory: bool = False
    root_path: str = ""
    proxy_headers: bool = True
    forwarded_allow_ips: str = "127.0.0.1"
    backlog: int = 2048
    log_level: LogLevel = "info"
    log_config: str | None = None
    access_log: bool = True
    # None: the default line; else gunicorn's atoms (see octo.http.access).
    access_log_format: str | None = None
    access_log_json: bool = False
    # Request ids: the incoming header's value when it is safe, else a generated one.
    request_id: bool = True
    request_id_header: str = "x-request-id"
    echo_request_id: bool = False
    # Static files: "/prefix=directory" mounts served by the worker (octo.http.static).
    static: tuple[str, ...] = ()
    static_max_age: int = 3600
    ssl_keyfile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile_password: str | None = None
    ssl_ca_certs: str | None = None  # CA bundle to verify client certificates with
    ssl_cert_reqs: int = 0  # ssl.CERT_NONE / CERT_OPTIONAL / CERT_REQUIRED, as uvicorn
    env_file: str | None = None  # dotenv file loaded before the app is imported
    lifespan: LifespanMode = "auto"
    server_header: bool = True
    # Process model (master).
    workers: int = 1
    # The most HTTP workers `octo scale`/SIGTTIN may ask for; 0: from CPUs and memory
    # (see default_max_workers).
    max_workers: int = 0
    # Autoscaling (--workers MIN:MAX, or --min-workers with --max-workers); 0: off.
    min_workers: int = 0
    scale_up_wait: float = 0.05  # mean request queue wait (s) that adds a worker
    scale_up_busy: float = 0.8  # share of time with a request in flight that adds one
    scale_down_busy: float = 0.3  # below this (and no wait) a worker is removed
    scale_cooldown: float = 5.0  # seconds after a change before the next
    task_workers: int = 0
    # Task-worker autoscaling (--task-workers MIN:MAX, or --min/--max-task-workers); 0: off.
    min_task_workers: int = 0
    max_task_workers: int = 0
    task_scale_up_wait: float = 1.0  # seconds to clear the dispatch queue that add one
    reuse_port: bool = False
    pid: str | None = None
    control: str | None = None
    # Private directory for tables and sockets (default: $XDG_RUNTIME_DIR/octo or
    # /dev/shm/octo-<uid>; see octo.runtime.rundir).
    runtime_dir: str | None = None
    watch: bool = False
    watch_include: str = ""
    # Recycling: replace a worker after this many requests / MB RSS / seconds.
    max_requests: int = 0
    max_requests_jitter: int = 0
    max_memory: float = 0.0
    max_lifetime: float = 0.0
    # WebSockets.
    interface: str = "auto"  # auto | asgi3 | asgi2 | wsgi (auto: detected, see octo.wsgi)
    threads: int = 1  # --interface wsgi: the app's threads per worker
    ws: str = "auto"  # auto | none | wsproto | websockets
    ws_max_size: int = 16 * 1024 * 1024
    ws_ping_interval: float = 20.0
    ws_ping_timeout: float = 20.0
    ws_per_message_deflate: bool = True
    # Runtime (octo.Octo): debug leak detector, collect garbage when RSS grew this many MB.
    detect_leaks: bool = False
    redis_url: str | None = None  # for one_server ticks
    gc_threshold: float = 0.0
    # Timeouts (seconds).
    # Operations: the metrics/health listener (HOST:PORT), long-wait warning, SIGTERM delay.
    metrics: str | None = None
    max_wait_time: float = 0.0
    shutdown_delay: float = 0.0
    timeout: float = 30.0  # liveness: a worker whose loop has not beaten this long is killed
    max_execution_time: float = 0.0  # per-request deadline; 0 = none
    timeout_keep_alive: float = 5.0
    header_timeout: float = 10.0
    # A request body must arrive at --body-min-rate bytes/s, measured over each window of
    # this many seconds; 0 = no limit (like the others below).
    body_timeout: float = 30.0
    body_min_rate: float = 240.0  # Kestrel's MinRequestBodyDataRate
    send_timeout: float = 60.0  # no progress writing a response for this long: abort (nginx)
    graceful_timeout: float = 30.0
    # Limits, each with a log line when it fires.
    limit_concurrency: int | None = None
    limit_request_line: int = 8190
    limit_request_fields: int = 100
    limit_request_head: int = 65536
    limit_request_field_size: int = 8190  # one header or trailer line (gunicorn's default)
    limit_chunk_extension: int = 16384  # one chunk-size line: size and extensions (Node.js)
    limit_request_body: int = 64 * 1024 * 1024

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ConfigError naming the first setting that is out of range."""
        if self.lifespan not in ("auto", "on", "off"):
            raise ConfigError(f"lifespan must be auto, on or off, not {self.lifespan!r}")
        if self.interface not in ("auto", "asgi3", "asgi2", "wsgi"):
            raise ConfigError(f"interface must be auto, asgi3, asgi2 or wsgi, not "
                              f"{self.interface!r}")
        if self.threads < 1:
            raise ConfigError(f"threads must be at least 1, not {self.threads}")
        if self.log_level not in ("critical", "error", "warning", "info", "debug", "trace"):
            raise ConfigError(f"unknown log level {self.log_level!r}")
        for name in ("limit_request_line", "limit_request_fields", "limit_request_head",
                     "limit_request_field_size", "limit_chunk_extension"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive")
        for name in ("body_timeout", "body_min_rate", "send_timeout"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must not be negative (0 turns it off)")
        if self.ws not in ("auto", "none", "wsproto", "websockets"):
            raise ConfigError(f"--ws {self.ws!r}: choose auto, none, wsproto or websockets")
        self._validate_workers()
        if self.reuse_port and (self.fd is not None or self.uds is not None):
            raise ConfigError("--reuse-port needs --host/--port (not --fd or --uds)")
        if self.timeout <= 0:
            raise ConfigError("timeout must be positive (it is the worker liveness limit)")
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


def coerce(name: str, raw: Any) -> Any:
    """Turn an env/file value into the field's type, naming the setting on failure."""
    field = FIELDS[name]
    kind = str(field.type)
    if not isinstance(raw, str):
        return tuple(raw) if isinstance(raw, list) and kind.startswith("tuple") else raw
    text = raw.strip()
    try:
        if kind == "bool":
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if name == "workers" and text.lower() == "auto":
            return os.cpu_count() or 1
        if name in ("workers", "task_workers") and ":" in text:
            return text  # MIN:MAX, split by worker_range
        if kind.startswith("int"):
            return None if text.lower() in ("", "none") and "None" in kind else int(text)
        if kind.startswith("float"):
            return float(text)
    except ValueError:
        raise ConfigError(f"{name}: cannot read {raw!r} as {kind}") from None
    return text


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
