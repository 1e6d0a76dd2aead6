"""The server's TLS context, from --ssl-certfile, --ssl-keyfile, --ssl-keyfile-password,
--ssl-ca-certs and --ssl-cert-reqs (uvicorn's flags, with uvicorn's meanings)."""

from __future__ import annotations

import ssl

from octo.config import Config, ConfigError


def ssl_context(config: Config) -> ssl.SSLContext | None:
    """The context every worker serves TLS with; None without --ssl-certfile. Raises
    ConfigError with one line naming the flag when a file or the password is wrong (the
    master builds it once before forking, so a worker never fails on it)."""
    if not config.is_ssl:
        return None
    assert config.ssl_certfile is not None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.load_cert_chain(config.ssl_certfile, config.ssl_keyfile,
                            lambda: _password(config))
    except _NoPassword:
        raise ConfigError(f"--ssl-keyfile {config.ssl_keyfile} is encrypted: give its "
                          "password with --ssl-keyfile-password") from None
    except ssl.SSLError as exc:
        hint = (" (wrong --ssl-keyfile-password?)" if config.ssl_keyfile_password
                else " (do the key and certificate match?)")
        raise ConfigError(f"--ssl-certfile {config.ssl_certfile} / --ssl-keyfile "
                          f"{config.ssl_keyfile}: {exc.reason or exc}{hint}") from None
    except OSError as exc:  # no file name in it: name both
        raise ConfigError(f"--ssl-certfile {config.ssl_certfile} / --ssl-keyfile "
                          f"{config.ssl_keyfile}: {exc.strerror or exc}") from None
    if config.ssl_ca_certs:
        try:
            ctx.load_verify_locations(config.ssl_ca_certs)
        except (OSError, ssl.SSLError) as exc:
            reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc
            raise ConfigError(f"--ssl-ca-certs {config.ssl_ca_certs}: {reason}") from None
    ctx.verify_mode = ssl.VerifyMode(config.ssl_cert_reqs)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


class _NoPassword(Exception):
    pass


def _password(config: Config) -> str:
    # Called by OpenSSL only for an encrypted key. Without this callback OpenSSL would
    # prompt on the terminal, and a server started by systemd would hang there.
    if config.ssl_keyfile_password is None:
        raise _NoPassword
    return config.ssl_keyfile_password
