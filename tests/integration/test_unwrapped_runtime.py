"""Serving the plain app of a module that also builds an ``octo.Octo()`` runtime: the worker
warns at boot, naming the wrapped app to serve, and ``octo.resolve`` says what is wrong."""

from __future__ import annotations

import httpx
from server import ROOT, run_server

APP_DIR = ("--app-dir", str(ROOT / "tests"))


def test_unwrapped_app_warns_at_boot_and_resolve_names_rt_wrap() -> None:
    with run_server("apps.runtime_app:app", *APP_DIR) as srv:
        log = srv.wait_for_log("is served without the octo runtime", timeout=30)
        line = next(ln for ln in log.splitlines() if "served without the octo runtime" in ln)
        assert "WARNING" in line and "apps.runtime_app.rt" in line
        assert "serve apps.runtime_app:asgi instead" in line
        response = httpx.get(srv.url + "/whoami", params={"user": "ann"}, timeout=30)
        assert response.status_code == 500
        log = srv.wait_for_log("rt.wrap(app)", timeout=30)
        assert "octo.resolve(Greeter) outside a request" in log


def test_wrapped_app_does_not_warn() -> None:
    with run_server("apps.runtime_app:asgi", *APP_DIR) as srv:
        response = httpx.get(srv.url + "/whoami", params={"user": "ann"}, timeout=30)
        assert response.status_code == 200
        assert "served without the octo runtime" not in srv.log()
