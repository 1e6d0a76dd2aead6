"""uvicorn's flag names accepted by ``octo serve`` (--reload, --timeout-graceful-shutdown,
--limit-max-requests(-jitter), --env-file, --ssl-keyfile-password, --ssl-ca-certs, --ssl-cert-reqs),
and the --env-file reader."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import octo.cli
import octo.master.arbiter
from octo.config import Config, ConfigError
from octo.envfile import EnvFileError, load, parse


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """``octo serve`` up to the point it would start the master: the settings it would
    serve with, and the environment then. ``--env-file`` writes into this process's
    environment: it is put back afterwards (an OCTO_MAX_REQUESTS=5 left behind made every
    server the suite started later recycle its workers after 5 requests)."""
    seen: list[Any] = []
    saved = dict(os.environ)

    def fake_main(cfg: Config) -> int:
        seen.append((cfg, dict(os.environ)))
        return 0

    monkeypatch.setattr(octo.master.arbiter, "main", fake_main)
    monkeypatch.setattr(octo.cli, "setup_logging", lambda *a: None)
    for name in [k for k in os.environ if k.startswith("OCTO_")]:
        monkeypatch.delenv(name)
    yield seen
    os.environ.clear()
    os.environ.update(saved)


def serve(*args: str) -> Any:
    return CliRunner().invoke(octo.cli.cli, ["serve", "m:app", *args])


@pytest.mark.parametrize(("uvicorn", "octo_flag", "setting", "value"), [
    (["--reload"], ["--watch"], "watch", True),
    (["--no-reload"], ["--no-watch"], "watch", False),
    (["--timeout-graceful-shutdown", "7"], ["--graceful-timeout", "7"], "graceful_timeout", 7.0),
    (["--limit-max-requests", "9"], ["--max-requests", "9"], "max_requests", 9),
    (["--limit-max-requests-jitter", "4"], ["--max-requests-jitter", "4"],
     "max_requests_jitter", 4),
])
def test_a_uvicorn_flag_sets_what_octo_s_own_flag_sets(served, uvicorn: list[str],
                                                       octo_flag: list[str], setting: str,
                                                       value: object) -> None:
    for args in (uvicorn, octo_flag):
        result = serve(*args)
        assert result.exit_code == 0, result.output
    [(by_uvicorn, _), (by_octo, _)] = served
    assert getattr(by_uvicorn, setting) == getattr(by_octo, setting) == value


def test_env_file_is_loaded_before_the_server_starts(served, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    env = tmp_path / ".env"
    env.write_text("# settings\nAPP_GREETING='hi there'\nexport APP_MODE=prod # inline\n"
                   "ALREADY=from-file\nOCTO_MAX_REQUESTS=5\n")
    monkeypatch.setenv("ALREADY", "from-shell")
    monkeypatch.delenv("APP_GREETING", raising=False)
    monkeypatch.delenv("APP_MODE", raising=False)
    result = serve("--env-file", str(env))
    assert result.exit_code == 0, result.output
    [(cfg, environ)] = served
    assert environ["APP_GREETING"] == "hi there" and environ["APP_MODE"] == "prod"
    assert environ["ALREADY"] == "from-shell"  # the environment wins, as with python-dotenv
    assert cfg.max_requests == 5  # OCTO_* settings from the file count too
    assert serve("--env-file", str(env), "--max-requests", "3").exit_code == 0
    assert served[1][0].max_requests == 3  # and flags still beat them


def test_a_missing_or_broken_env_file_is_one_line(served, tmp_path: Path) -> None:
    result = serve("--env-file", str(tmp_path / "nope.env"))
    assert result.exit_code == 2 and "--env-file" in result.output
    assert "No such file or directory" in result.output
    bad = tmp_path / "bad.env"
    bad.write_text("GOOD=1\nthis is not a setting\n")
    result = serve("--env-file", str(bad))
    assert result.exit_code == 2 and f"{bad}:2: expected KEY=VALUE" in result.output
    assert served == [] and "Traceback" not in result.output


@pytest.mark.parametrize(("args", "message"), [
    (["--ssl-keyfile-password", "x"], "need --ssl-certfile and --ssl-keyfile"),
    (["--ssl-ca-certs", "ca.pem"], "need --ssl-certfile and --ssl-keyfile"),
    (["--ssl-certfile", "c.pem", "--ssl-keyfile", "k.pem", "--ssl-cert-reqs", "2"],
     "--ssl-cert-reqs needs --ssl-ca-certs"),
])
def test_tls_options_without_what_they_need_are_refused(served, args: list[str],
                                                        message: str) -> None:
    result = serve(*args)
    assert result.exit_code == 2 and message in result.output, result.output
    assert served == []


def test_the_tls_options_reach_the_settings(served, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(octo.cli, "_check_tls", lambda cfg: None)  # no real files here
    result = serve("--ssl-certfile", "c.pem", "--ssl-keyfile", "k.pem",
                   "--ssl-keyfile-password", "s3cret", "--ssl-ca-certs", "ca.pem",
                   "--ssl-cert-reqs", "2")
    assert result.exit_code == 0, result.output
    [(cfg, _)] = served
    assert (cfg.ssl_keyfile_password, cfg.ssl_ca_certs, cfg.ssl_cert_reqs) == \
        ("s3cret", "ca.pem", 2)
    with pytest.raises(ConfigError, match="--ssl-cert-reqs must be"):
        Config(app="m:app", ssl_certfile="c", ssl_keyfile="k", ssl_ca_certs="ca",
               ssl_cert_reqs=3)


# -- the env-file reader -------------------------------------------------------------------------

def test_env_file_syntax() -> None:
    text = (
        "\n# a comment\n"
        "PLAIN=value\n"
        "SPACED = padded value  \n"
        "export EXPORTED=1\n"
        "INLINE=kept # dropped\n"
        "HASH=a#b\n"
        "EMPTY=\n"
        "SINGLE='no $escapes \\n here # kept'\n"
        'DOUBLE="tab\\there \\"quoted\\" \\\\ # kept" # dropped\n'
        'MULTI="line one\nline two"\n'
        "URL=postgres://u:p@h/db?x=1\n"
    )
    assert parse(text) == {
        "PLAIN": "value", "SPACED": "padded value", "EXPORTED": "1", "INLINE": "kept",
        "HASH": "a#b", "EMPTY": "", "SINGLE": "no $escapes \\n here # kept",
        "DOUBLE": 'tab\there "quoted" \\ # kept', "MULTI": "line one\nline two",
        "URL": "postgres://u:p@h/db?x=1",
    }


@pytest.mark.parametrize(("text", "error"), [
    ("NOEQUALS\n", "f.env:1: expected KEY=VALUE"),
    ("OK=1\n1BAD=x\n", "f.env:2: expected KEY=VALUE"),
    ("Q='never closed\n", "f.env:1: the value's closing ' is missing"),
    ('Q="a" b\n', "f.env:1: unexpected text after the quoted value"),
])
def test_env_file_errors_name_the_line(text: str, error: str) -> None:
    with pytest.raises(EnvFileError, match=error):
        parse(text, "f.env")


def test_load_sets_only_what_is_unset(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text("A=file\nB=file\n")
    environ = {"A": "shell"}
    assert load(str(path), environ) == {"B": "file"}
    assert environ == {"A": "shell", "B": "file"}
