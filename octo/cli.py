"""The ``octo`` command line."""

from __future__ import annotations

import json
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import click

from octo import config as config_mod
from octo._version import __version__
from octo.logs import setup as setup_logging


def _print_version(ctx: click.Context, _: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from octo.http import core  # only here: the command line itself does not serve

    try:
        described = core.current().describe()
    except (ImportError, ValueError) as exc:  # OCTO_CORE=compiled without one, or a typo
        described = str(exc)
    click.echo(f"octo {__version__} ({described})")
    ctx.exit()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-V", "--version", is_flag=True, expose_value=False, is_eager=True,
              callback=_print_version, help="Show the version and the HTTP core, and exit.")
def cli() -> None:
    """octo: a persistent-process ASGI server."""


@cli.command()
@click.argument("app", required=False)
@click.option("--host", help="Bind address. [default: 127.0.0.1]")
@click.option("--port", type=int, help="Bind port. [default: 8000]")
@click.option("--uds", help="Bind to this Unix domain socket instead.")
@click.option("--fd", type=int, help="Serve an already listening socket given by file descriptor.")
@click.option("--app-dir", help="Directory added to sys.path before importing APP. [default: .]")
@click.option("--factory", is_flag=True, default=None, help="APP is a callable returning the app.")
@click.option("--root-path", help="ASGI root_path when mounted below a URL prefix.")
@click.option("--proxy-headers/--no-proxy-headers", default=None,
              help="Trust X-Forwarded-Proto/For from --forwarded-allow-ips. [default: on]")
@click.option("--forwarded-allow-ips",
              help="Proxy addresses/networks to trust (comma-separated), or '*'. [127.0.0.1]")
@click.option("--timeout-keep-alive", type=float,
              help="Close idle keep-alive connections after this many seconds. [5]")
@click.option("--header-timeout", type=float,
              help="Seconds a client has to send a whole request head (slowloris guard; the "
                   "timer does not restart per byte). [default: 10]")
@click.option("--body-timeout", type=float,
              help="Window in seconds over which a request body must arrive at "
                   "--body-min-rate; a slower one gets 408 and a close. 0: off. [30]")
@click.option("--body-min-rate", type=float,
              help="Least request-body bytes per second, over each --body-timeout window "
                   "(time the server is not reading does not count). [240]")
@click.option("--send-timeout", type=float,
              help="Abort a connection whose response makes no write progress for this "
                   "many seconds (a client that stops reading). 0: off. [60]")
@click.option("--graceful-timeout", "--timeout-graceful-shutdown", "graceful_timeout",
              type=float, help="Seconds to let in-flight requests finish on stop. [30]")
@click.option("--limit-concurrency", type=int,
              help="Answer 503 at once beyond this many concurrent requests/connections.")
@click.option("--limit-request-line", type=int, help="Max request-target bytes (414). [8190]")
@click.option("--limit-request-fields", type=int, help="Max header fields (431). [100]")
@click.option("--limit-request-head", type=int, help="Max request line + headers bytes (431). "
                                                     "[65536]")
@click.option("--limit-request-field-size", type=int,
              help="Max bytes of one header or trailer line (431). [8190]")
@click.option("--limit-chunk-extension", type=int,
              help="Max bytes of one chunk-size line: size and chunk extensions (413). "
                   "[16384]")
@click.option("--limit-request-body", type=int, help="Max request body bytes (413). [64 MiB]")
@click.option("--backlog", type=int, help="listen() backlog. [default: 2048]")
@click.option("--lifespan", type=click.Choice(["auto", "on", "off"]), help="[default: auto]")
@click.option("--log-level",
              type=click.Choice(["critical", "error", "warning", "info", "debug", "trace"]),
              help="[default: info]")
@click.option("--access-log/--no-access-log", default=None, help="[default: on]")
@click.option("--access-log-format",
              help="Access line in gunicorn's atoms, e.g. '%(h)s \"%(r)s\" %(s)s %(b)s "
                   "%(M)s %({x-request-id}i)s'. [the default line]")
@click.option("--access-log-json/--no-access-log-json", default=None,
              help="One JSON object per request: time, method, path, status, bytes, "
                   "duration, client, request_id, pid, user_agent. [off]")
@click.option("--request-id/--no-request-id", default=None,
              help="Give each request an id: the --request-id-header value when safe, else "
                   "a generated one; in scope['state']['request_id'] and the access log. [on]")
@click.option("--request-id-header", help="Header carrying the request id. [X-Request-ID]")
@click.option("--echo-request-id/--no-echo-request-id", default=None,
              help="Send the request id back in the --request-id-header response header. "
                   "[off]")
@click.option("--static", multiple=True, metavar="/PREFIX=DIR",
              help="Serve files under DIR at /PREFIX without calling the app (repeatable).")
@click.option("--static-max-age", type=int,
              help="Cache-Control max-age in seconds for static files (0: no-cache); names "
                   "with a content hash (app.3f2a9c.js) get a year, immutable. [3600]")
@click.option("--server-header/--no-server-header", default=None, help="[default: on]")
@click.option("--ssl-keyfile", help="TLS private key file.")
@click.option("--ssl-certfile", help="TLS certificate chain file.")
@click.option("--ssl-keyfile-password",
              help="Password of an encrypted --ssl-keyfile (OCTO_SSL_KEYFILE_PASSWORD keeps "
                   "it out of the process list).")
@click.option("--ssl-ca-certs", help="CA certificates file to verify client certificates.")
@click.option("--ssl-cert-reqs", type=click.IntRange(0, 2),
              help="Client certificates: 0 not asked, 1 optional, 2 required (with "
                   "--ssl-ca-certs). [0]")
@click.option("--workers", "-w",
              help="Worker processes, 'auto' for one per CPU, or MIN:MAX to autoscale "
                   "between MIN and MAX. [1]")
@click.option("--max-workers", type=int,
              help="The most workers `octo scale`, SIGTTIN and the autoscaler may ask for. "
                   "[4 per CPU, at most one per 64 MiB of memory]")
@click.option("--min-workers", type=int,
              help="Autoscale (with --max-workers): never fewer HTTP workers than this. [off]")
@click.option("--scale-up-wait", type=float,
              help="Autoscaling: add a worker when the mean request queue wait stays above "
                   "this many seconds. [0.05]")
@click.option("--scale-up-busy", type=float,
              help="Autoscaling: add a worker when the workers are busy (a request in "
                   "flight) more than this share of the time, 0-1. [0.8]")
@click.option("--scale-down-busy", type=float,
              help="Autoscaling: remove a worker when they are busy less than this. [0.3]")
@click.option("--scale-cooldown", type=float,
              help="Autoscaling: seconds after a change before the next one. [5]")
@click.option("--metrics",
              help="Serve /metrics (Prometheus), /livez, /readyz and a dashboard at / on "
                   "HOST:PORT, from the master. [off]")
@click.option("--max-wait-time", type=float,
              help="Warn (and fire LongWaitDetected) when requests wait longer than this "
                   "many seconds before the app is called. [off]")
@click.option("--shutdown-delay", type=float,
              help="On SIGTERM, fail /readyz and keep serving this many seconds before "
                   "stopping (for load balancers, Kubernetes). [0]")
@click.option("--interface", type=click.Choice(["auto", "asgi3", "asgi2", "wsgi"]),
              help="The app's interface; auto: WSGI if it takes (environ, start_response), "
                   "ASGI 2 if it is a class, else ASGI 3. [auto]")
@click.option("--threads", type=int,
              help="Threads per worker running a WSGI app's requests. [1]")
@click.option("--ws", type=click.Choice(["auto", "none", "wsproto", "websockets"]),
              help="WebSocket framing engine; auto: websockets if installed, else wsproto; "
                   "none: upgrades are served as plain HTTP. [auto]")
@click.option("--ws-max-size", type=int, help="Largest WebSocket message in bytes. [16 MiB]")
@click.option("--ws-ping-interval", type=float, help="Seconds between keepalive pings. [20]")
@click.option("--ws-ping-timeout", type=float, help="Seconds to wait for a pong. [20]")
@click.option("--ws-per-message-deflate/--no-ws-per-message-deflate", default=None,
              help="Offer permessage-deflate compression. [on]")
@click.option("--task-workers",
              help="Processes for rt.tasks / concurrently(in_workers=True), or MIN:MAX to "
                   "autoscale them from the task queue. [0]")
@click.option("--min-task-workers", type=int,
              help="Autoscale task workers (with --max-task-workers): never fewer. [off]")
@click.option("--max-task-workers", type=int,
              help="Autoscale task workers: never more than this. [off]")
@click.option("--task-scale-up-wait", type=float,
              help="Task-worker autoscaling: add one when clearing the dispatched-task "
                   "queue would take longer than this many seconds (queued / taken per "
                   "second), or the tasks taken waited that long. [1]")
@click.option("--reuse-port/--no-reuse-port", default=None,
              help="Give each worker its own SO_REUSEPORT socket. [off]")
@click.option("--timeout", type=float,
              help="Liveness limit: a worker whose event loop has not beaten for this many "
                   "seconds gets its stack dumped and is replaced. Not a request timeout. [30]")
@click.option("--max-execution-time", type=float,
              help="Per-request deadline in seconds: 504 and the request is cancelled. [off]")
@click.option("--max-requests", "--limit-max-requests", "max_requests", type=int,
              help="Recycle a worker after N requests. [off]")
@click.option("--max-requests-jitter", "--limit-max-requests-jitter", "max_requests_jitter",
              type=int, help="Add 0..J to --max-requests. [0]")
@click.option("--max-memory", type=float, help="Recycle a worker above this RSS in MB. [off]")
@click.option("--max-lifetime", type=float, help="Recycle a worker after S seconds. [off]")
@click.option("--watch/--no-watch", "--reload/--no-reload", "watch", default=None,
              help="Development: roll the workers when *.py files under --app-dir change.")
@click.option("--watch-include", help="Extra comma-separated globs to watch (e.g. '*.html').")
@click.option("--env-file", help="Load KEY=VALUE lines from this dotenv file into the "
                                  "environment before the app is imported (set variables "
                                  "win).")
@click.option("--log-config", help="logging configuration file (.json dictConfig, or .ini).")
@click.option("--detect-leaks/--no-detect-leaks", default=None,
              help="Debug: warn when app globals or singleton attributes change between "
                   "requests (octo.Octo runtime).")
@click.option("--gc-threshold", type=float,
              help="Collect garbage between requests once RSS grew this many MB. [off]")
@click.option("--redis-url", help="Redis for one_server ticks, e.g. redis://127.0.0.1:6379/0.")
@click.option("--pid", help="Write the master's pid to this file.")
@click.option("--control", help="Control socket path. [next to --pid/--uds, else per port in "
                                 "--runtime-dir]")
@click.option("--runtime-dir",
              help="Private directory (mode 0700, created if missing) for the tables and "
                   "sockets. [$XDG_RUNTIME_DIR/octo, else /dev/shm/octo-<uid>]")
def serve(app: str | None, **options: Any) -> None:
    """Serve the ASGI application APP, given as module:attribute."""
    if app is not None:
        options["app"] = app
    options["static"] = options.get("static") or None  # not given: env / [tool.octo]
    cfg = settings(options)
    if cfg.env_file:
        _load_env_file(cfg.env_file)
        cfg = settings(options)  # OCTO_* variables from the file count too
    if not cfg.app:
        raise click.UsageError("missing APP (module:attribute), e.g. octo serve main:app")
    _check_tls(cfg)
    from octo.http.static import StaticConfigError

    try:
        cfg.static_mounts(check=True)
    except StaticConfigError as exc:
        raise click.UsageError(str(exc)) from None
    setup_logging(cfg.log_level, cfg.access_log, cfg.log_config, cfg.app_dir)
    from octo.master.arbiter import main as serve_main

    sys.exit(serve_main(cfg))


def _load_env_file(path: str) -> None:
    from octo.envfile import EnvFileError, load

    try:
        load(path)
    except EnvFileError as exc:
        raise click.UsageError(str(exc)) from None


def _check_tls(cfg: config_mod.Config) -> None:
    """Build the TLS context once before anything forks: a wrong file or password is one
    line here, not a boot failure in every worker."""
    if cfg.is_ssl:
        from octo.tls import ssl_context

        try:
            ssl_context(cfg)
        except config_mod.ConfigError as exc:
            raise click.UsageError(str(exc)) from None


def settings(options: dict[str, Any]) -> config_mod.Config:
    """The server's settings from flags (*options*, None: not given), ``OCTO_*`` and
    ``[tool.octo]`` of --app-dir's pyproject.toml. ``octo serve`` and the control commands
    both build them here, so a client finds the control socket where its server put it."""
    cli_values = {k: v for k, v in options.items() if v is not None}
    try:
        return config_mod.build(cli_values, directory=Path(cli_values.get("app_dir", ".")))
    except (config_mod.ConfigError, TypeError) as exc:
        raise click.UsageError(str(exc)) from None


def _control_options(func: Any) -> Any:
    for option in (
        click.option("--runtime-dir",
                     help="The server's --runtime-dir (its control socket is in it)."),
        click.option("--control", help="The server's --control socket path."),
        click.option("--pid", help="The server's --pid file (its control socket is next to it)."),
        click.option("--uds", help="The server's --uds path."),
        click.option("--port", type=int, help="The server's port. [8000]"),
        click.option("--app-dir", help="Where the server's pyproject.toml ([tool.octo]) is. "
                                       "[.]"),
    ):
        func = option(func)
    return func


def _timeout_option(text: str) -> Callable[[Any], Any]:
    return click.option("--timeout", "wait_timeout", type=float, help=text)


_WAIT = click.option("--wait/--no-wait", default=True,
                     help="Return when it has ended, with its outcome as the exit status "
                          "(for scripts: octo stop && octo serve). [--wait]")


def _ask(message: dict[str, Any], where: dict[str, Any],
         wait_timeout: float | None = None) -> dict[str, Any]:
    """Send *message* to the control socket of the server these settings describe (found
    as the server finds it); any failure is one line on stderr and exit status 1."""
    from octo.master.control import (
        REPLY_TIMEOUT,
        NoAnswer,
        NotRunning,
        control_address,
        locate,
        request,
    )
    from octo.runtime.rundir import RuntimeDirError

    address = control_address(settings(where))
    timeout = REPLY_TIMEOUT if wait_timeout is None else min(REPLY_TIMEOUT, wait_timeout)
    try:
        reply = request(locate(address), message, timeout=timeout, wait_timeout=wait_timeout,
                        address=address)
    except (NotRunning, NoAnswer, RuntimeDirError) as exc:
        _fail(str(exc))
    if not reply.get("ok"):
        _fail(str(reply.get("error")))
    return reply


def _fail(message: str) -> NoReturn:
    click.echo(f"octo: {message}", err=True)
    sys.exit(1)


@cli.command()
@_control_options
@_timeout_option("Seconds to wait for the answer. [5]")
@click.option("--json", "as_json", is_flag=True, help="Print the raw JSON.")
@click.option("--watch", is_flag=True,
              help="Refresh the view every --interval seconds until Ctrl-C.")
@click.option("--interval", type=float, default=1.0, show_default=True,
              help="With --watch: seconds between refreshes.")
def status(as_json: bool, wait_timeout: float | None, watch: bool, interval: float,
           **where: Any) -> None:
    """Show the running server's workers (--watch: a refreshing view)."""
    if not watch:
        reply = _ask({"cmd": "status"}, where, wait_timeout)
        click.echo(json.dumps(reply, indent=2) if as_json else format_status(reply))
        return
    if interval <= 0:
        raise click.UsageError("--interval must be positive")
    _watch_status(where, wait_timeout, interval, as_json)


def _watch_status(where: dict[str, Any], wait_timeout: float | None, interval: float,
                  as_json: bool) -> None:
    """Redraw the status until Ctrl-C (exit 0) or the server is gone (exit 1): on a
    terminal in place, elsewhere (a pipe, a log) one block per refresh."""
    clear = sys.stdout.isatty()
    # Ctrl-C quits even when started with SIGINT ignored (from a background job or nohup,
    # where Python installs no handler of its own).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        while True:
            reply = _ask({"cmd": "status"}, where, wait_timeout)
            shown = json.dumps(reply) if as_json else format_status(reply)
            stamp = time.strftime("%H:%M:%S")
            if clear:
                click.echo("\x1b[H\x1b[2J", nl=False)
            click.echo(f"{stamp}  every {interval:g}s, Ctrl-C to quit\n{shown}\n", nl=clear)
            sys.stdout.flush()
            time.sleep(interval)  # the refresh period itself
    except KeyboardInterrupt:
        return


@cli.command()
@_control_options
@_WAIT
@_timeout_option("With --wait: seconds to wait for every worker to run the new code, then "
                 "exit 1 (the reload carries on). [60]")
def reload(wait: bool, wait_timeout: float | None, **where: Any) -> None:
    """Rolling restart of the workers (new code, zero downtime). With --wait (the default),
    exit 0 once every worker runs the new code, 1 with the reason if the reload was
    abandoned (the new code does not boot; the old workers keep serving)."""
    reply = _ask({"cmd": "reload", "wait": wait}, where, wait_timeout)
    if wait:
        click.echo(f"reloaded: every worker runs generation {reply['generation']}")
    else:
        click.echo(f"reload started (generation {reply['generation']})")


@cli.command()
@_control_options
@_WAIT
@_timeout_option("With --wait: seconds to wait for the master to exit, then exit 1 (the stop "
                 "carries on). [the server's --graceful-timeout + 16]")
@click.option("--fast", is_flag=True, help="Do not wait for in-flight requests.")
def stop(fast: bool, wait: bool, wait_timeout: float | None, **where: Any) -> None:
    """Stop the server (graceful unless --fast). With --wait (the default), return once the
    master has exited: its port, socket and pid file are free."""
    _ask({"cmd": "stop", "fast": fast, "wait": wait}, where, wait_timeout)
    click.echo("stopped" if wait else "stopping")


@cli.command()
@_control_options
@_timeout_option("Seconds to wait for the answer. [5]")
@click.argument("workers", type=int)
def scale(workers: int, wait_timeout: float | None, **where: Any) -> None:
    """Set the number of workers (at most the server's --max-workers)."""
    _ask({"cmd": "scale", "workers": workers}, where, wait_timeout)
    click.echo(f"scaling to {workers} worker(s)")


@cli.command()
@click.argument("url")
@click.option("--connections", "-c", type=int, default=64, show_default=True)
@click.option("--duration", "-d", type=float, help="Seconds to run. [10 unless --requests]")
@click.option("--requests", "-n", type=int, help="Stop after this many responses.")
@click.option("--rate", "-R", type=float,
              help="Open model: schedule this many requests/s in total; latency counts from "
                   "the scheduled time (coordinated-omission corrected).")
@click.option("--method", "-m", default="GET", show_default=True)
@click.option("--header", "-H", "headers", multiple=True, help="'Name: value', repeatable.")
@click.option("--body", "-b", default="", help="Request body (prefix @ to read a file).")
@click.option("--pipeline", "-p", type=int, default=1, show_default=True,
              help="Requests in flight per connection (closed model).")
@click.option("--warmup", type=float, default=0.0, show_default=True,
              help="Seconds of load before measuring.")
@click.option("--timeout", type=float, default=10.0, show_default=True,
              help="Seconds before a request counts as a timeout.")
@click.option("--processes", "--threads", "-t", "processes", type=int, default=1,
              show_default=True, help="Load processes (connections are split between them).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--allow-remote", is_flag=True, help="Allow a target that is not loopback.")
def bench(url: str, connections: int, duration: float | None, requests: int | None,
          rate: float | None, method: str, headers: tuple[str, ...], body: str, pipeline: int,
          warmup: float, timeout: float, processes: int, as_json: bool,
          allow_remote: bool) -> None:
    """Load-test URL (HTTP/1.1) and report throughput and latency percentiles."""
    from octo.bench import load, report

    plan = _bench_plan(url, connections, duration, requests, rate, method, headers, body,
                       pipeline, warmup, timeout)
    host, _ = plan.address()
    if not allow_remote and not load.is_loopback(host):
        raise click.UsageError(f"{host} is not a loopback address; pass --allow-remote to "
                               "load a remote server")
    show = None
    if not as_json and sys.stderr.isatty():
        def show(stats: load.Stats, elapsed: float) -> None:
            sys.stderr.write(report.progress_line(stats, elapsed))
            sys.stderr.flush()
    stats = load.run(plan, processes, show)
    if show is not None:
        sys.stderr.write("\n")
    data = report.summary(plan, stats, processes)
    click.echo(json.dumps(data, indent=2) if as_json else report.text(data))
    if not stats.connected:
        raise click.ClickException(
            f"could not connect to {url}: {stats.errors.get('connect', 0)} connection "
            "attempts failed, no request was sent")


def _bench_plan(url: str, connections: int, duration: float | None, requests: int | None,
                rate: float | None, method: str, headers: tuple[str, ...], body: str,
                pipeline: int, warmup: float, timeout: float) -> Any:
    from octo.bench.load import Plan

    if connections < 1 or pipeline < 1:
        raise click.UsageError("--connections and --pipeline must be at least 1")
    if rate is not None and rate <= 0:
        raise click.UsageError("--rate must be positive")
    if duration is None and requests is None:
        duration = 10.0
    parsed = []
    for header in headers:
        name, sep, value = header.partition(":")
        if not sep or not name.strip():
            raise click.UsageError(f"--header must look like 'Name: value', not {header!r}")
        parsed.append((name.strip(), value.strip()))
    data = body.encode()
    if body.startswith("@"):
        with open(body[1:], "rb") as fh:
            data = fh.read()
    plan = Plan(url, connections, duration, requests, rate, method.upper(), tuple(parsed),
                data, pipeline, warmup, timeout)
    try:
        plan.address()
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    return plan


def format_status(reply: dict[str, Any]) -> str:
    ceiling = f"  max {reply['max_workers']}" if reply.get("max_workers") else ""
    scaling = reply.get("autoscale")
    if scaling:
        ceiling = f"  autoscale {scaling['min']}..{scaling['max']}"
    head = (f"master {reply['master']}  workers {len(reply['workers'])}/{reply['target']}  "
            f"generation {reply['generation']}{ceiling}"
            f"{'  STOPPING' if reply['stopping'] else ''}"
            f"{'  DRAINING' if reply.get('draining') and not reply['stopping'] else ''}")
    columns = ["PID", "STATE", "GEN", "UPTIME", "REQUESTS", "INFLIGHT", "CONNS", "RSS", "CPU%",
               "BEAT", "LAG", "TICKSKIP"]
    rows = [columns, *(_status_row(w) for w in reply["workers"])]
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
             for row in rows]
    lines += _load_lines(reply)
    from octo.master.taskscale import status_lines

    lines += status_lines(reply)
    last = reply.get("reload")
    if last and last["state"] != "done":
        lines.append(f"reload to generation {last['generation']}: {last['state']}"
                     + (f" ({last['error']})" if last["error"] else ""))
    return "\n".join([head, *lines])


def _load_lines(reply: dict[str, Any]) -> list[str]:
    """The load of the last second, a long wait, restarts (what --metrics also shows)."""
    lines = []
    load = reply.get("load")
    if load:
        wait = "-" if load["wait"] is None else f"{load['wait'] * 1000:.1f}ms"
        lines.append(f"load: queue wait {wait}  busy {load['busy']:.0%}")
    watch = reply.get("long_wait")
    if watch and watch["active"]:
        since = time.strftime("%H:%M:%S", time.localtime(watch["since"])) \
            if watch["since"] else "?"
        lines.append(f"LONG WAIT since {since}: requests wait above --max-wait-time "
                     f"{watch['limit']}s (peak {watch['peak'] * 1000:.0f}ms; LongWaitDetected "
                     f"episode {watch['episodes']})")
    elif watch and watch["episodes"]:
        lines.append(f"long waits: {watch['episodes']} episode(s), none now")
    restarts = reply.get("restarts")
    if restarts:
        lines.append("restarts: " + ", ".join(f"{cause} {count}" for cause, count
                                              in sorted(restarts.items())))
    return lines


def _status_row(w: dict[str, Any]) -> list[str]:
    return [
        str(w["pid"]), w["state"], str(w["generation"]), _duration(w["uptime"]),
        str(w["requests"]), str(w["in_flight"]), str(w["connections"]),
        f"{w['rss'] / 1048576:.1f}M" if w["rss"] else "-",
        f"{w['cpu_percent']:.0f}" if w["cpu_percent"] is not None else "-",
        f"{w['heartbeat_age']:.1f}s" if w["heartbeat_age"] is not None else "-",
        f"{w['loop_lag_max'] * 1000:.0f}ms", str(w.get("ticks_skipped", 0)),
    ]


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def main() -> None:
    cli(prog_name="octo")


if __name__ == "__main__":
    main()
