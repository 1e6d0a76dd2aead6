"""The ``octo`` command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from octo import config as config_mod
from octo._version import __version__
from octo.logs import setup as setup_logging


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="octo",
                      message="%(prog)s %(version)s")
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
@click.option("--graceful-timeout", type=float,
              help="Seconds to let in-flight requests finish on stop. [default: 30]")
@click.option("--limit-concurrency", type=int,
              help="Answer 503 at once beyond this many concurrent requests/connections.")
@click.option("--limit-request-line", type=int, help="Max request-target bytes (414). [8190]")
@click.option("--limit-request-fields", type=int, help="Max header fields (431). [100]")
@click.option("--limit-request-head", type=int, help="Max request line + headers bytes (431). "
                                                     "[65536]")
@click.option("--limit-request-body", type=int, help="Max request body bytes (413). [64 MiB]")
@click.option("--backlog", type=int, help="listen() backlog. [default: 2048]")
@click.option("--lifespan", type=click.Choice(["auto", "on", "off"]), help="[default: auto]")
@click.option("--log-level",
              type=click.Choice(["critical", "error", "warning", "info", "debug", "trace"]),
              help="[default: info]")
@click.option("--access-log/--no-access-log", default=None, help="[default: on]")
@click.option("--server-header/--no-server-header", default=None, help="[default: on]")
@click.option("--ssl-keyfile", help="TLS private key file.")
@click.option("--ssl-certfile", help="TLS certificate chain file.")
@click.option("--workers", "-w", help="Worker processes, or 'auto' for one per CPU. [1]")
@click.option("--reuse-port/--no-reuse-port", default=None,
              help="Give each worker its own SO_REUSEPORT socket. [off]")
@click.option("--timeout", type=float,
              help="Liveness limit: a worker whose event loop has not beaten for this many "
                   "seconds gets its stack dumped and is replaced. Not a request timeout. [30]")
@click.option("--max-execution-time", type=float,
              help="Per-request deadline in seconds: 504 and the request is cancelled. [off]")
@click.option("--max-requests", type=int, help="Recycle a worker after N requests. [off]")
@click.option("--max-requests-jitter", type=int, help="Add 0..J to --max-requests. [0]")
@click.option("--max-memory", type=float, help="Recycle a worker above this RSS in MB. [off]")
@click.option("--max-lifetime", type=float, help="Recycle a worker after S seconds. [off]")
@click.option("--watch/--no-watch", default=None,
              help="Development: roll the workers when *.py files under --app-dir change.")
@click.option("--watch-include", help="Extra comma-separated globs to watch (e.g. '*.html').")
@click.option("--log-config", help="logging configuration file (.json dictConfig, or .ini).")
@click.option("--pid", help="Write the master's pid to this file.")
@click.option("--control", help="Control socket path. [next to --pid/--uds, else per port]")
def serve(app: str | None, **options: Any) -> None:
    """Serve the ASGI application APP, given as module:attribute."""
    cli_values = {k: v for k, v in options.items() if v is not None}
    if app is not None:
        cli_values["app"] = app
    try:
        cfg = config_mod.build(cli_values, directory=Path(cli_values.get("app_dir", ".")))
    except (config_mod.ConfigError, TypeError) as exc:
        raise click.UsageError(str(exc)) from None
    if not cfg.app:
        raise click.UsageError("missing APP (module:attribute), e.g. octo serve main:app")
    setup_logging(cfg.log_level, cfg.access_log, cfg.log_config)
    from octo.master.arbiter import main as serve_main

    sys.exit(serve_main(cfg))


def _control_options(func: Any) -> Any:
    for option in (
        click.option("--control", help="Control socket path."),
        click.option("--pid", help="The server's --pid file (its control socket is next to it)."),
        click.option("--uds", help="The server's --uds path."),
        click.option("--port", type=int, default=8000, show_default=True,
                     help="The server's port."),
    ):
        func = option(func)
    return func


def _ask(message: dict[str, Any], control: str | None, pid: str | None, uds: str | None,
         port: int) -> dict[str, Any]:
    from octo.master.control import NotRunning, default_path, request

    path = control or default_path(port, uds, pid)
    try:
        reply = request(path, message)
    except NotRunning as exc:
        click.echo(f"octo: {exc}", err=True)
        sys.exit(1)
    if not reply.get("ok"):
        click.echo(f"octo: {reply.get('error')}", err=True)
        sys.exit(1)
    return reply


@cli.command()
@_control_options
@click.option("--json", "as_json", is_flag=True, help="Print the raw JSON.")
def status(as_json: bool, **where: Any) -> None:
    """Show the running server's workers."""
    reply = _ask({"cmd": "status"}, **where)
    if as_json:
        click.echo(json.dumps(reply, indent=2))
    else:
        click.echo(format_status(reply))


@cli.command()
@_control_options
def reload(**where: Any) -> None:
    """Rolling restart of the workers (new code, zero downtime)."""
    _ask({"cmd": "reload"}, **where)
    click.echo("reload started")


@cli.command()
@_control_options
@click.option("--fast", is_flag=True, help="Do not wait for in-flight requests.")
def stop(fast: bool, **where: Any) -> None:
    """Stop the server (graceful unless --fast)."""
    _ask({"cmd": "stop", "fast": fast}, **where)
    click.echo("stopping")


@cli.command()
@_control_options
@click.argument("workers", type=int)
def scale(workers: int, **where: Any) -> None:
    """Set the number of workers."""
    _ask({"cmd": "scale", "workers": workers}, **where)
    click.echo(f"scaling to {workers} worker(s)")


def format_status(reply: dict[str, Any]) -> str:
    head = (f"master {reply['master']}  workers {len(reply['workers'])}/{reply['target']}  "
            f"generation {reply['generation']}{'  STOPPING' if reply['stopping'] else ''}")
    columns = ["PID", "STATE", "GEN", "UPTIME", "REQUESTS", "INFLIGHT", "CONNS", "RSS", "CPU%",
               "BEAT", "LAG"]
    rows = [columns, *(_status_row(w) for w in reply["workers"])]
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
             for row in rows]
    return "\n".join([head, *lines])


def _status_row(w: dict[str, Any]) -> list[str]:
    return [
        str(w["pid"]), w["state"], str(w["generation"]), _duration(w["uptime"]),
        str(w["requests"]), str(w["in_flight"]), str(w["connections"]),
        f"{w['rss'] / 1048576:.1f}M" if w["rss"] else "-",
        f"{w['cpu_percent']:.0f}" if w["cpu_percent"] is not None else "-",
        f"{w['heartbeat_age']:.1f}s" if w["heartbeat_age"] is not None else "-",
        f"{w['loop_lag_max'] * 1000:.0f}ms",
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
