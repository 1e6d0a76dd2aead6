"""The dashboard at / of --metrics, loaded in headless Chromium from a real server.

The page fetches /dashboard.json itself (the master answers from the workers' slots);
Chromium runs its script (``--virtual-time-budget`` lets its polls happen), and the test
reads what the page *rendered* (``--dump-dom``) against the server's own numbers, then
takes a screenshot whose path the test names in a warning (shown in pytest's summary).
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import struct
import subprocess
import warnings
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_metrics_real import (
    appdir,
    metrics_url,
    ready_workers,
    sample,
    scrape,
    serve,
    wait_for,
)

__all__ = ["appdir"]  # the fixture, used by name

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
BROWSER_TIMEOUT = 120.0  # only ends a hung browser


def browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("headless Chromium is not installed (Debian: apt-get install chromium; "
                "scripts/install-test-tools does it when run as root): the dashboard page "
                "is not tested in a browser")


def chromium(binary: str, profile: Path, url: str,
             *args: str) -> subprocess.CompletedProcess[bytes]:
    command = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
               "--hide-scrollbars", f"--user-data-dir={profile}", "--window-size=1280,900",
               # Virtual time: the page's timers and fetches run until this budget is spent,
               # so its polling loop renders several times before the DOM is taken.
               "--virtual-time-budget=4000", *args, url]
    done = subprocess.run(command, capture_output=True, timeout=BROWSER_TIMEOUT, check=False,
                          env={**os.environ, "HOME": str(profile)})
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
    return done


def cells(dom: str, table: str) -> list[list[str]]:
    """The rows (cell texts) of the table with id *table* in the dumped DOM."""
    match = re.search(rf'<table id="{table}">(.*?)</table>', dom, re.S)
    assert match, f"no table {table} in the page"
    body = match.group(1).split("<tbody>", 1)[-1]
    return [[html.unescape(re.sub(r"<[^>]+>", "", c)).strip()
             for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
            for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)]


def text_of(dom: str, element: str) -> str:
    match = re.search(rf'id="{element}">([^<]*)<', dom)
    assert match, f"no #{element} in the page"
    return html.unescape(match.group(1)).strip()


def number(text: str) -> float:
    return float(text.replace(",", "").split()[0])


def test_the_dashboard_renders_the_live_numbers_in_chromium(appdir: Path, tmp_path: Path) -> None:
    binary = browser()
    with serve(appdir, "--workers", "2") as srv:
        url = metrics_url(srv)
        wait_for(lambda: len(ready_workers(appdir)) == 2, "two ready workers")
        with httpx.Client(base_url=srv.url, timeout=10) as client:
            for _ in range(40):
                assert client.get("/").status_code == 200
            for _ in range(3):
                assert client.get("/status/503").status_code == 503

        def counted() -> dict[str, Any] | None:
            data: dict[str, Any] = httpx.get(url + "/dashboard.json", timeout=10).json()
            beats = [row for row in data["ticks"]["by_name"] if row[0] == "beat"]
            enough = data["requests"]["by_class"]["5xx"] == 3 and data["requests"]["total"] >= 43
            return data if enough and beats and beats[0][1] >= 1 and data["history"] else None

        data = wait_for(counted, "the requests and ticks in /dashboard.json")
        # The same per-tick counts in /metrics, labelled by the tick's name.
        families = scrape(url)
        assert sample(families, "octo_tick_runs_total", tick="beat", outcome="run") >= 1
        assert sample(families, "octo_tick_runs_total", tick="beat", outcome="failed") == 0
        page = httpx.get(url + "/", timeout=10)
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        policy = page.headers["content-security-policy"]
        assert "default-src 'none'" in policy and "connect-src 'self'" in policy
        # Only the page's own script and style run (by hash): the page rendering at all
        # below shows the hashes are those of what it serves.
        assert "'unsafe-inline'" not in policy and "script-src 'sha256-" in policy
        # Self-contained: no script, style, image or font from anywhere else.
        assert not re.search(r'(src|href)\s*=\s*["\']?(https?:)?//', page.text)

        dom = chromium(binary, tmp_path / "profile", url + "/", "--dump-dom").stdout.decode()
        assert int(re.search(r'data-updates="(\d+)"', dom).group(1)) >= 2, dom[:2000]  # type: ignore[union-attr]
        assert text_of(dom, "meta").startswith("up "), text_of(dom, "meta")  # not an error
        # What the page shows comes from the live JSON, taken after the one above.
        assert number(text_of(dom, "v-requests")) >= data["requests"]["total"]
        assert number(text_of(dom, "v-workers")) == 2
        workers = cells(dom, "t-workers")
        pids = {str(w["pid"]) for w in data["workers"]}
        assert {row[0] for row in workers} == pids
        assert all(row[1] == "http" and row[2] == "ready" for row in workers), workers
        assert sum(int(row[3].replace(",", "")) for row in workers) >= data["requests"]["total"]
        assert all(row[6].endswith("MiB") and number(row[6]) > 1 for row in workers), workers
        assert all(row[7].endswith("%") for row in workers), workers  # CPU over the last step
        ticks = {row[0]: row for row in cells(dom, "t-ticks")}
        assert number(ticks["beat"][1]) >= 1 and ticks["beat"][3] == "0"
        restarts = dict(cells(dom, "t-restarts"))
        assert restarts["crash"] == "0" and "max-requests" in restarts
        assert "p99" in dom and "<path" in dom  # the plots have lines
        assert text_of(dom, "v-p99").endswith("ms") or text_of(dom, "v-p99").endswith(" s")

        shot = tmp_path / "dashboard.png"
        chromium(binary, tmp_path / "profile", url + "/", f"--screenshot={shot}")
        head = shot.read_bytes()[:24]
        assert head[:8] == b"\x89PNG\r\n\x1a\n"
        assert struct.unpack(">II", head[16:24]) == (1280, 900)
        # A blank page compresses to a few KiB; the rendered cards, plots and tables do not.
        assert shot.stat().st_size > 20_000
        warnings.warn(f"dashboard screenshot: {shot}", stacklevel=1)
        print(f"\ndashboard screenshot: {shot}\n{json.dumps(data['requests'])}")

