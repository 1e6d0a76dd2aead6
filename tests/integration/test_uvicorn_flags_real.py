"""uvicorn's flags through a real ``octo serve``: --env-file before the app is imported, and
the TLS options (an encrypted key with --ssl-keyfile-password, client certificates checked
against --ssl-ca-certs)."""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from server import ROOT, Server, run_server

APP_DIR = ("--app-dir", str(ROOT / "tests"))
PASSWORD = "s3cret-pass"


def test_env_file_is_in_the_environment_when_the_app_is_imported(tmp_path: Path) -> None:
    env = tmp_path / "prod.env"
    env.write_text('# loaded by octo\nOCTO_TEST_GREETING="hello from the env file"\n'
                   "OCTO_SERVER_HEADER=false\n")
    with run_server("apps.env_app:app", *APP_DIR, "--env-file", str(env)) as server:
        response = httpx.get(server.url + "/", timeout=10)
        assert response.text == "hello from the env file"
        assert "server" not in response.headers  # OCTO_SERVER_HEADER=false from the file
    with run_server("apps.env_app:app", *APP_DIR, "--env-file", str(env),
                    env={"OCTO_TEST_GREETING": "from the shell"}) as server:
        # A variable already set wins over the file, as with python-dotenv and uvicorn.
        assert httpx.get(server.url + "/", timeout=10).text == "from the shell"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA; a server certificate for 127.0.0.1 with a password-encrypted key; a client
    certificate signed by the CA; and one signed by nobody."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed: cannot make test certificates")
    d = tmp_path_factory.mktemp("pki")
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1")
    _openssl("req", "-x509", *ec, "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
             "-subj", "/CN=octo test CA", "-days", "1", cwd=d)
    (d / "server.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl("req", *ec, "-keyout", "server.key", "-passout", f"pass:{PASSWORD}",
             "-out", "server.csr", "-subj", "/CN=127.0.0.1", cwd=d)
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "server.crt", "-days", "1", "-extfile", "server.ext",
             cwd=d)
    _openssl("req", *ec, "-nodes", "-keyout", "client.key", "-out", "client.csr",
             "-subj", "/CN=client", cwd=d)
    _openssl("x509", "-req", "-in", "client.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "client.crt", "-days", "1", cwd=d)
    _openssl("req", "-x509", *ec, "-nodes", "-keyout", "rogue.key", "-out", "rogue.crt",
             "-subj", "/CN=rogue", "-days", "1", cwd=d)
    assert (d / "server.key").read_text().startswith("-----BEGIN ENCRYPTED PRIVATE KEY")
    return d


def _client(pki: Path, cert: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    if cert is not None:
        ctx.load_cert_chain(str(pki / f"{cert}.crt"), str(pki / f"{cert}.key"))
    return ctx


def _https(server: Server) -> str:
    return server.url.replace("http://", "https://")


def _tls_ready(pki: Path) -> object:
    def ready(server: Server) -> bool:
        try:
            httpx.get(_https(server), verify=_client(pki, "client"), timeout=0.5)
        except httpx.HTTPError:
            return False
        return True
    return ready


def _tls_args(pki: Path, *extra: str) -> tuple[str, ...]:
    return ("--ssl-certfile", str(pki / "server.crt"), "--ssl-keyfile", str(pki / "server.key"),
            "--ssl-keyfile-password", PASSWORD, *extra)


def test_an_encrypted_key_serves_with_its_password(pki: Path) -> None:
    with run_server("examples.hello.app:app", *_tls_args(pki),
                    ready=_tls_ready(pki)) as server:  # type: ignore[arg-type]
        response = httpx.get(_https(server) + "/", verify=_client(pki, None), timeout=10)
        assert response.status_code == 200  # no client certificate asked for


def test_client_certificates_are_checked_against_the_ca_certs(pki: Path) -> None:
    args = _tls_args(pki, "--ssl-ca-certs", str(pki / "ca.crt"), "--ssl-cert-reqs", "2")
    with run_server("examples.hello.app:app", *args,
                    ready=_tls_ready(pki)) as server:  # type: ignore[arg-type]
        url = _https(server) + "/"
        assert httpx.get(url, verify=_client(pki, "client"), timeout=10).status_code == 200
        for stranger in (None, "rogue"):
            with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
                httpx.get(url, verify=_client(pki, stranger), timeout=10)
        assert "Traceback" not in server.log()


@pytest.mark.parametrize(("password", "message"), [
    ("wrong", "wrong --ssl-keyfile-password?"),
    (None, "is encrypted: give its password with --ssl-keyfile-password"),
])
def test_a_wrong_or_missing_key_password_is_one_line_before_any_worker(
        pki: Path, password: str | None, message: str) -> None:
    args = ["--ssl-certfile", str(pki / "server.crt"), "--ssl-keyfile", str(pki / "server.key")]
    if password is not None:
        args += ["--ssl-keyfile-password", password]
    # stdin is not a terminal either way; without a password callback OpenSSL would try to
    # prompt on the controlling terminal.
    result = subprocess.run([sys.executable, "-m", "octo", "serve", "examples.hello.app:app",
                             "--port", "0", *args], cwd=ROOT, capture_output=True, text=True,
                            stdin=subprocess.DEVNULL, timeout=60, start_new_session=True)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert "booting" not in result.stderr  # refused before any worker was forked


def test_the_runtime_settings_reach_the_worker_without_the_environment() -> None:
    """--detect-leaks, --gc-threshold, --graceful-timeout and --redis-url reach the app's
    runtime through the hand-off across the fork: the worker's environment gains no
    OCTO_* variable (that namespace is the user's settings: a child process the app starts
    must not read them as its own)."""
    with run_server("apps.handoff_app:app", *APP_DIR, "--detect-leaks", "--gc-threshold",
                    "5", "--graceful-timeout", "7", "--redis-url",
                    "redis://127.0.0.1:1/0", "--workers", "2") as server:
        seen = httpx.get(server.url + "/", timeout=10).json()
    # Only what the server inherited (make test sets OCTO_REQUIRE_COMPILED for the suite).
    inherited = sorted(name for name in os.environ if name.startswith("OCTO_"))
    assert seen == {"env": inherited, "leaks": True, "gc_threshold": 5 * 1024 * 1024,
                    "graceful_timeout": 7.0, "redis_url": "redis://127.0.0.1:1/0"}, seen
