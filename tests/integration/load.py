"""Bounded load from a second process: ``python load.py URL SECONDS CONCURRENCY [REQUESTS]``.

Each thread keeps one keep-alive connection (http.client) and requests URL in a loop until
SECONDS pass, or, given REQUESTS, until it has made that many requests (SECONDS is then
only a deadline that ends a hung run), or until the process gets SIGTERM: a test that waits
for events rather than for time starts a long load and stops it once it has seen them.
Prints one JSON object: counts of OK responses,
failures by kind, and the ordered list of distinct bodies seen (to tell old code from new
after a reload).
"""

from __future__ import annotations

import http.client
import json
import signal
import sys
import threading
import time
from collections import Counter
from urllib.parse import urlsplit

STOP = threading.Event()  # set by SIGTERM: finish the request in hand, then report


def worker(url: str, until: float, requests: int | None, results: Counter[str],
           bodies: list[tuple[float, str]], lock: threading.Lock) -> None:
    parts = urlsplit(url)
    conn: http.client.HTTPConnection | None = None
    made = 0
    while (time.monotonic() < until and not STOP.is_set()
           and (requests is None or made < requests)):
        made += 1
        try:
            if conn is None:
                conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
            conn.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""))
            response = conn.getresponse()
            body = response.read().decode("utf-8", "replace")
            kind = "ok" if response.status == 200 else f"status_{response.status}"
            if response.getheader("connection", "").lower() == "close":
                conn.close()
                conn = None
        except ConnectionRefusedError:
            kind, body = "refused", ""
            conn = None
        except (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected):
            kind, body = "reset", ""
            conn = None
        except OSError as exc:
            kind, body = f"error_{type(exc).__name__}", ""
            conn = None
        with lock:
            results[kind] += 1
            if kind == "ok" and (not bodies or bodies[-1][1] != body):
                bodies.append((time.monotonic(), body))
    if conn is not None:
        conn.close()


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: STOP.set())
    url, seconds, concurrency = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    requests = int(sys.argv[4]) if len(sys.argv) > 4 else None
    until = time.monotonic() + seconds
    results: Counter[str] = Counter()
    bodies: list[tuple[float, str]] = []
    lock = threading.Lock()
    threads = [threading.Thread(target=worker, args=(url, until, requests, results, bodies, lock))
               for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 30)
    print(json.dumps({"counts": dict(results), "bodies": [b for _, b in bodies]}))


if __name__ == "__main__":
    main()
