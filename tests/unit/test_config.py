from __future__ import annotations

from pathlib import Path

import pytest

from octo.config import Config, ConfigError, TrustedProxies, build


def test_precedence_cli_over_env_over_file(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        "[tool.octo]\nport = 7000\nhost = '0.0.0.0'\ntimeout-keep-alive = 9\n")
    env = {"OCTO_PORT": "7100", "OCTO_ACCESS_LOG": "false"}
    cfg = build({"port": 7200}, env, tmp_path)
    assert cfg.port == 7200 and cfg.host == "0.0.0.0"
    assert cfg.timeout_keep_alive == 9.0 and cfg.access_log is False
    assert build({}, env, tmp_path).port == 7100
    assert build({}, {}, tmp_path).port == 7000


def test_unknown_file_setting_is_named(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.octo]\nwokers = 3\n")
    with pytest.raises(ConfigError, match="wokers"):
        build({}, {}, tmp_path)


def test_bad_env_value_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="port"):
        build({}, {"OCTO_PORT": "eighty"}, tmp_path)


@pytest.mark.parametrize("kwargs, text", [
    ({"lifespan": "maybe"}, "lifespan"),
    ({"limit_request_fields": 0}, "limit_request_fields"),
    ({"ssl_keyfile": "k.pem"}, "ssl"),
    ({"forwarded_allow_ips": "not-an-ip"}, "not-an-ip"),
])
def test_invalid_values(kwargs: dict[str, object], text: str) -> None:
    with pytest.raises(ConfigError, match=text):
        Config(app="a:b", **kwargs)  # type: ignore[arg-type]


def test_trusted_proxies() -> None:
    trusted = TrustedProxies.parse("127.0.0.1, 10.0.0.0/8, ::1, unix:")
    assert trusted.trusts("127.0.0.1") and trusted.trusts("10.1.2.3") and trusted.trusts("::1")
    assert trusted.trusts(None)  # unix socket peer
    assert not trusted.trusts("192.168.1.1") and not trusted.trusts("garbage")
    assert TrustedProxies.parse("*").trusts("203.0.113.5")


def test_every_setting_is_one_generated_option_with_its_default() -> None:
    """``octo serve --help`` is made from the Config fields: every setting has its flag, its
    declared help and the "[default: ...]" of the field's own default."""
    import dataclasses

    import click

    import octo.cli
    from octo.config import flag_name, flag_of, shown_default

    ctx = click.Context(octo.cli.serve)
    lines = {}
    for param in octo.cli.serve.get_params(ctx):
        record = param.get_help_record(ctx)
        if record is not None:
            decls, text = record
            lines[param.name] = (decls, text)
    defaults = Config()
    for field in dataclasses.fields(Config):
        if field.name == "app":
            continue
        decls, line = lines.pop(field.name)
        assert f"--{flag_name(field.name)}" in decls.replace(",", " ").split(), decls
        assert flag_of(field.name).help in line, line
        shown = shown_default(field.name)
        if shown is None:
            assert "[default:" not in line, line
            continue
        assert line.endswith(f"[default: {shown}]"), line
        value = getattr(defaults, field.name)
        if isinstance(value, (int, float)) and not isinstance(value, bool) \
                and flag_of(field.name).shown is None:
            assert float(shown) == value, (field.name, shown)  # the default, not a copy
    help_option = octo.cli.serve.get_help_option(ctx)
    assert help_option is not None
    assert set(lines) <= {"app", help_option.name}  # no option that is not a setting


@pytest.mark.parametrize("name, raw, value", [
    ("limit_concurrency", "none", None), ("limit_concurrency", "7", 7),
    ("access_log", "off", False), ("timeout", "2.5", 2.5), ("workers", "3", 3),
    ("uds", "none", "none"), ("static", ["/a=b"], ("/a=b",)),
])
def test_values_are_read_by_the_fields_type(name: str, raw: object, value: object) -> None:
    from octo.config import coerce

    assert coerce(name, raw) == value


def test_a_literal_setting_accepts_only_its_choices(tmp_path: Path) -> None:
    with pytest.raises(ConfigError,
                       match=r"--ws 'bogus': choose auto, none, wsproto or websockets"):
        build({}, {"OCTO_WS": "bogus"}, tmp_path)
    with pytest.raises(ConfigError, match=r"--log-level 'loud'"):
        build({"log_level": "loud"}, {}, tmp_path)
