"""The ``octo`` command line."""

from __future__ import annotations

import dataclasses
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


def setting_option(name: str, help: str | None = None) -> Callable[[Any], Any]:
    """The click option of Config field *name*, made from its declaration: flag names,
    type, choices and help with its "[default: ...]". Every option defaults to None (not
    given), so ``OCTO_*`` and ``[tool.octo]`` fill what the command line leaves out.
    *help*: another command's wording (``octo stop --port``: the server's port)."""
    flag = config_mod.flag_of(name)
    kind, _ = config_mod.KINDS[name]
    decls = [f"--{config_mod.flag_name(name)}", *flag.aliases]
    extra: dict[str, Any] = {}
    if kind is bool:
        decls = [f"{decl}/--no-{decl[2:]}" if decl.startswith("--") and "/" not in decl
                 else decl for decl in decls]
    elif name in config_mod.CHOICES:
        extra["type"] = click.Choice(config_mod.CHOICES[name])
    elif flag.parse is None and kind in (int, float):
        extra["type"] = kind
    shown = config_mod.shown_default(name)
    text = help if help is not None else flag.help
    if shown is not None:
        text = f"{text} [default: {shown}]"
    return click.option(*decls, name, help=text, default=None, metavar=flag.metavar,
                        multiple=kind is tuple, **extra)


def setting_options(func: Any) -> Any:
    """Every Config setting as an option of *func*, in the order they are declared."""
    for field in reversed(dataclasses.fields(config_mod.Config)):
        if config_mod.flag_of(field.name).option:
            func = setting_option(field.name)(func)
    return func


@cli.command()
@click.argument("app", required=False)
@setting_options
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
    preflight(cfg)
    setup_logging(cfg.log_level, cfg.access_log, cfg.log_config, cfg.app_dir)
    from octo.master.arbiter import main as serve_main

    sys.exit(serve_main(cfg))


def _load_env_file(path: str) -> None:
    from octo.envfile import EnvFileError, load

    try:
        load(path)
    except EnvFileError as exc:
        raise click.UsageError(str(exc)) from None


def preflight(cfg: config_mod.Config) -> None:
    """Check, before anything forks, what every worker would otherwise find out for itself
    at boot: the TLS files, the static directories and the --ws backend. Each failure is one
    usage error here, not a crash (and a traceback) per worker."""
    _check_tls(cfg)
    from octo.http.static import StaticConfigError
    from octo.ws import BackendMissing, resolve

    try:
        cfg.static_mounts(check=True)
        resolve(cfg.ws)
    except (StaticConfigError, BackendMissing) as exc:
        raise click.UsageError(str(exc)) from None


def _check_tls(cfg: config_mod.Config) -> None:
    """Build the TLS context once before anything forks: a wrong file or password is one
    line here, not a boot failure in every worker."""
    if cfg.is_ssl:
        from octo.process.tls import ssl_context

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
    for name, text in (
        ("runtime_dir", "The server's --runtime-dir (its control socket is in it)."),
        ("control", "The server's --control socket path."),
        ("pid", "The server's --pid file (its control socket is next to it)."),
        ("uds", "The server's --uds path."),
        ("port", "The server's port."),
        ("app_dir", "Where the server's pyproject.toml ([tool.octo]) is."),
    ):
        func = setting_option(name, text)(func)
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
