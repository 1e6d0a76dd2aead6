"""The hand-off across the fork (octo.handoff): a worker's runtime reads what the server
handed over, a runtime under another server reads the user's OCTO_<SETTING> variables."""

from __future__ import annotations

import pytest

from octo import handoff
from octo.config import Config
from octo.process.worker import load_configured_app


@pytest.fixture(autouse=True)
def _no_handoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(handoff, "_current", None)
    for name in ("OCTO_GRACEFUL_TIMEOUT", "OCTO_DETECT_LEAKS", "OCTO_GC_THRESHOLD",
                 "OCTO_REDIS_URL", "OCTO_APP_DIR", "OCTO_ROLE"):
        monkeypatch.delenv(name, raising=False)


def test_outside_octo_serve_the_settings_come_from_the_environment(
        monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    assert handoff.settings() == handoff.Handoff(None, handoff.settings().app_dir, 30.0, False,
                                                 0.0, "")
    monkeypatch.setenv("OCTO_GRACEFUL_TIMEOUT", "4")
    monkeypatch.setenv("OCTO_DETECT_LEAKS", "1")
    monkeypatch.setenv("OCTO_REDIS_URL", "redis://r/0")
    monkeypatch.setenv("OCTO_APP_DIR", str(tmp_path))
    seen = handoff.settings()
    assert (seen.graceful_timeout, seen.detect_leaks, seen.redis_url, seen.app_dir) == \
        (4.0, True, "redis://r/0", str(tmp_path))
    monkeypatch.setenv("OCTO_GRACEFUL_TIMEOUT", "soon")
    assert handoff.settings().graceful_timeout == 30.0  # unreadable: the default


def test_a_worker_reads_its_hand_off_and_leaves_the_environment_alone(
        monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    import os

    monkeypatch.setattr("octo.process.worker.load_app", lambda *args: "the app")
    monkeypatch.setenv("OCTO_GRACEFUL_TIMEOUT", "99")  # the user's, for another server
    before = dict(os.environ)
    cfg = Config(app="m:app", app_dir=str(tmp_path), graceful_timeout=3, detect_leaks=True,
                 gc_threshold=2.5, redis_url="redis://h/1")
    assert load_configured_app(cfg) == "the app"
    assert dict(os.environ) == before
    assert handoff.settings() == handoff.Handoff("http", str(tmp_path), 3.0, True, 2.5,
                                                 "redis://h/1")
    try:
        load_configured_app(cfg, role="task")
        assert handoff.settings().role == "task"
        assert os.environ["OCTO_ROLE"] == "task"  # for the app to tell the task worker apart
    finally:
        os.environ.pop("OCTO_ROLE", None)
