"""The ``octo`` command line."""

from __future__ import annotations

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
    setup_logging(cfg.log_level, cfg.access_log)
    from octo.worker import main_single

    sys.exit(main_single(cfg))


def main() -> None:
    cli(prog_name="octo")


if __name__ == "__main__":
    main()
