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
