"""--static: path confinement, validators, ranges and encodings, in memory (no sockets).

The real-socket path (sendfile, a client that stops reading, files changing while sent) is
in tests/integration/test_static_real.py.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from harness import Client, Response, parse_responses

from octo.config import Config, ConfigError
from octo.http.response import http_date
from octo.http.static import (
    UNSATISFIABLE,
    Mount,
    StaticConfigError,
    StaticFiles,
    content_type,
    not_modified,
    parse_http_date,
    parse_range,
    range_applies,
    relative_path,
)

# The in-memory tests run on both HTTP cores (see tests/conftest.py).
pytestmark = pytest.mark.usefixtures("http_core")

SECRET = b"top secret, outside the root"
CALLED: list[str] = []


async def app(scope: Any, receive: Any, send: Any) -> None:
    CALLED.append(scope["path"])
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"from the app"})


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """public/ (the root) beside secret.txt, with text, hashed, compressed and hidden files."""
    root = tmp_path / "public"
    (root / "css").mkdir(parents=True)
    (root / "css" / "site.css").write_bytes(b"body { color: red }\n")
    (root / "app.3f2a9c.js").write_bytes(b"console.log(1)\n")
    (root / "data.bin").write_bytes(bytes(range(256)) * 4)
    (root / "page.html").write_bytes(b"<p>plain</p>" * 10)
    (root / "page.html.gz").write_bytes(b"GZIP-BYTES")
    (root / "page.html.br").write_bytes(b"BROTLI-BYTES")
    (root / ".env").write_bytes(b"SECRET=1")
    (root / "caf\u00e9.txt").write_bytes(b"unicode name")
    (tmp_path / "secret.txt").write_bytes(SECRET)
    (tmp_path / "public-evil").mkdir()
    (tmp_path / "public-evil" / "x.txt").write_bytes(SECRET)
    return root


def get(site: Path, target: str, *headers: str, method: str = "GET",
        run: Any = None, **config: Any) -> Response:
    """One request through HttpProtocol with /static mounted on *site*."""
    import asyncio

    async def main() -> bytes:
        client = Client(app, Config(app="x:y", static=(f"/static={site}",), **config))
        head = "".join(f"{h}\r\n" for h in headers)
        client.send(f"{method} {target} HTTP/1.1\r\nHost: a\r\n{head}\r\n".encode("latin-1"))
        await client.settle()
        return client.take()

    out = asyncio.run(main()) if run is None else run(main())
    if method == "HEAD":  # the response parser would wait for the body
        head, _, rest = out.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        fields = [tuple(line.split(b": ", 1)) for line in lines[1:]]
        return Response(int(lines[0].split()[1]), fields, rest)  # type: ignore[arg-type]
    [response] = parse_responses(out)
    return response


# -- path confinement ------------------------------------------------------------------------

@pytest.mark.parametrize("rest", [
    b"../secret.txt", b"css/../../secret.txt", b"%2e%2e/secret.txt", b"%2E%2E/secret.txt",
    b"css/%2e%2e/%2e%2e/secret.txt", b"..%2fsecret.txt", b"..%2Fsecret.txt",
    b"css%2f..%2f..%2fsecret.txt", b"..%5csecret.txt", b"..\\secret.txt",
    b"page.html%00.png", b"page.html\x00", b"./page.html", b"css//site.css", b"",
    b".env", b"css/.hidden", b"%2e/page.html", b"%252e%252e/secret.txt/x",
    b"\xff.txt", b"%ff.txt", b"css%2fsite.css", b"css%5Csite.css",
])
def test_relative_path_refuses_what_could_escape_or_hide(rest: bytes) -> None:
    result = relative_path(rest)
    if rest == b"%252e%252e/secret.txt/x":  # decoded once: a file literally named "%2e%2e"
        assert result == "%2e%2e/secret.txt/x"
    else:
        assert result is None


def test_relative_path_decodes_once_as_utf8() -> None:
    assert relative_path(b"css/site.css") == "css/site.css"
    assert relative_path(b"caf%C3%A9.txt") == "caf\u00e9.txt"
    assert relative_path(b"a%20b.txt") == "a b.txt"


@pytest.mark.parametrize("target", [
    "/static/../secret.txt", "/static/%2e%2e/secret.txt", "/static/%2E%2e/secret.txt",
    "/static/..%2fsecret.txt", "/static/css%2F..%2F..%2Fsecret.txt", "/static/..%5csecret.txt",
    "/static/page.html%00", "/static/.env", "/static/css/../../secret.txt",
    "/static/../public-evil/x.txt", "/static/%2e%2e/public-evil/x.txt",
])
def test_traversal_through_the_server_is_404_and_never_the_app(site: Path, run,
                                                                target: str) -> None:
    CALLED.clear()
    response = get(site, target, run=run)
    assert response.status == 404
    assert SECRET not in response.body and b"SECRET" not in response.body
    assert CALLED == []


def test_symlink_out_of_the_root_is_refused(site: Path, run, caplog) -> None:
    (site / "leak.txt").symlink_to(site.parent / "secret.txt")
    (site / "leakdir").symlink_to(site.parent / "public-evil")
    assert get(site, "/static/leak.txt", run=run).status == 404
    assert get(site, "/static/leakdir/x.txt", run=run).status == 404
    assert "resolves outside" in caplog.text


def test_symlink_inside_the_root_and_a_symlinked_root_are_served(site: Path, run,
                                                                  tmp_path: Path) -> None:
    (site / "alias.css").symlink_to(site / "css" / "site.css")
    assert get(site, "/static/alias.css", run=run).body == b"body { color: red }\n"
    linked = tmp_path / "current"
    linked.symlink_to(site)  # a deploy's "current -> release" link as the root
    response = get(linked, "/static/css/site.css", run=run)
    assert response.status == 200 and response.body == b"body { color: red }\n"


def test_fifo_and_directory_are_not_files(site: Path, run) -> None:
    os.mkfifo(site / "pipe")
    assert get(site, "/static/pipe", run=run).status == 404  # and the worker did not block
    assert get(site, "/static/css", run=run).status == 404


def test_other_paths_still_reach_the_app(site: Path, run) -> None:
    CALLED.clear()
    assert get(site, "/staticfoo/x", run=run).body == b"from the app"
    assert get(site, "/static", run=run).body == b"from the app"
    assert CALLED == ["/staticfoo/x", "/static"]


# -- responses -------------------------------------------------------------------------------

def test_get_has_type_validators_and_cache_control(site: Path, run) -> None:
    response = get(site, "/static/css/site.css", run=run)
    assert response.status == 200 and response.body == b"body { color: red }\n"
    assert response.header(b"content-type") == b"text/css; charset=utf-8"
    assert response.header(b"content-length") == b"20"
    stat = (site / "css" / "site.css").stat()
    assert response.header(b"last-modified") == http_date(int(stat.st_mtime))
    assert response.header(b"etag") == b'"%x-%x"' % (stat.st_mtime_ns, stat.st_size)
    assert response.header(b"cache-control") == b"public, max-age=3600"
    assert response.header(b"accept-ranges") == b"bytes"
    assert response.header(b"vary") == b"Accept-Encoding"


def test_hashed_names_are_immutable_and_max_age_is_configurable(site: Path, run) -> None:
    hashed = get(site, "/static/app.3f2a9c.js", run=run)
    assert hashed.header(b"cache-control") == b"public, max-age=31536000, immutable"
    assert hashed.header(b"content-type") in (b"text/javascript; charset=utf-8",
                                              b"application/javascript; charset=utf-8")
    plain = get(site, "/static/css/site.css", run=run, static_max_age=60)
    assert plain.header(b"cache-control") == b"public, max-age=60"
    assert get(site, "/static/css/site.css", run=run, static_max_age=0).header(
        b"cache-control") == b"no-cache"


def test_head_has_the_headers_and_no_body(site: Path, run) -> None:
    response = get(site, "/static/data.bin", method="HEAD", run=run)
    assert response.status == 200 and response.body == b""
    assert response.header(b"content-length") == b"1024"


def test_other_methods_get_405_with_allow(site: Path, run) -> None:
    response = get(site, "/static/data.bin", "Content-Length: 0", method="POST", run=run)
    assert response.status == 405 and response.header(b"allow") == b"GET, HEAD"


def test_if_none_match_and_if_modified_since_give_304(site: Path, run) -> None:
    first = get(site, "/static/css/site.css", run=run)
    etag = first.header(b"etag")
    assert etag is not None
    last = first.header(b"last-modified")
    assert last is not None
    again = get(site, "/static/css/site.css", f"If-None-Match: {etag.decode()}", run=run)
    assert again.status == 304 and again.body == b"" and again.header(b"etag") == etag
    weak = get(site, "/static/css/site.css", f'If-None-Match: "x", W/{etag.decode()}', run=run)
    assert weak.status == 304
    assert get(site, "/static/css/site.css", "If-None-Match: *", run=run).status == 304
    assert get(site, "/static/css/site.css", f"If-Modified-Since: {last.decode()}",
               run=run).status == 304
    # If-None-Match decides when both are there: a stale tag means a full answer.
    both = get(site, "/static/css/site.css", 'If-None-Match: "old"',
               f"If-Modified-Since: {last.decode()}", run=run)
    assert both.status == 200
    older = get(site, "/static/css/site.css", "If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT",
                run=run)
    assert older.status == 200 and older.body == b"body { color: red }\n"


def test_range_206_and_416(site: Path, run) -> None:
    data = (site / "data.bin").read_bytes()
    part = get(site, "/static/data.bin", "Range: bytes=10-19", run=run)
    assert part.status == 206 and part.body == data[10:20]
    assert part.header(b"content-range") == b"bytes 10-19/1024"
    assert get(site, "/static/data.bin", "Range: bytes=-5", run=run).body == data[-5:]
    assert get(site, "/static/data.bin", "Range: bytes=1000-", run=run).body == data[1000:]
    beyond = get(site, "/static/data.bin", "Range: bytes=1024-2000", run=run)
    assert beyond.status == 416 and beyond.header(b"content-range") == b"bytes */1024"


@pytest.mark.parametrize("spec, status, body", [
    ("bytes=5-2", 200, slice(None)),  # reversed: invalid, so ignored
    ("bytes=0-1,1-2", 200, slice(None)),  # several (overlapping) ranges: answered whole
    ("bytes=0-99999999999999999999999999", 206, slice(None)),  # huge end: clipped
    ("bytes=99999999999999999999999999-", 416, None),  # huge start: past the end
    ("bytes=-99999999999999999999999999", 206, slice(None)),  # huge suffix: the whole file
    ("bytes=-0", 416, None),
    ("items=0-1", 200, slice(None)),
    ("bytes=a-b", 200, slice(None)),
    ("bytes=+1-2", 200, slice(None)),
    ("bytes=1000-1023", 206, slice(1000, 1024)),
])
def test_lying_ranges(site: Path, run, spec: str, status: int, body: slice | None) -> None:
    data = (site / "data.bin").read_bytes()
    response = get(site, "/static/data.bin", f"Range: {spec}", run=run)
    assert response.status == status, spec
    if body is not None:
        assert response.body == data[body]


def test_if_range_honours_the_range_only_for_the_same_file(site: Path, run) -> None:
    etag = get(site, "/static/data.bin", run=run).header(b"etag")
    assert etag is not None
    same = get(site, "/static/data.bin", "Range: bytes=0-0", f"If-Range: {etag.decode()}",
               run=run)
    assert same.status == 206
    other = get(site, "/static/data.bin", "Range: bytes=0-0", 'If-Range: "changed"', run=run)
    assert other.status == 200 and len(other.body) == 1024


def test_precompressed_sibling_by_accept_encoding(site: Path, run) -> None:
    br = get(site, "/static/page.html", "Accept-Encoding: gzip, deflate, br", run=run)
    assert br.body == b"BROTLI-BYTES" and br.header(b"content-encoding") == b"br"
    assert br.header(b"content-type") == b"text/html; charset=utf-8"
    assert br.header(b"vary") == b"Accept-Encoding"
    gz = get(site, "/static/page.html", "Accept-Encoding: gzip, br;q=0", run=run)
    assert gz.body == b"GZIP-BYTES" and gz.header(b"content-encoding") == b"gzip"
    plain = get(site, "/static/page.html", run=run)
    assert plain.body == b"<p>plain</p>" * 10 and plain.header(b"content-encoding") is None
    assert br.header(b"etag") != plain.header(b"etag") != gz.header(b"etag")
    # A range counts bytes of the file itself, never of a compressed sibling.
    ranged = get(site, "/static/page.html", "Accept-Encoding: br", "Range: bytes=0-2", run=run)
    assert ranged.body == b"<p>" and ranged.header(b"content-encoding") is None


def test_compressed_sibling_symlinked_out_is_not_used(site: Path, run) -> None:
    (site / "css" / "site.css.gz").symlink_to(site.parent / "secret.txt")
    response = get(site, "/static/css/site.css", "Accept-Encoding: gzip", run=run)
    assert response.body == b"body { color: red }\n"


def test_non_ascii_name(site: Path, run) -> None:
    assert get(site, "/static/caf%C3%A9.txt", run=run).body == b"unicode name"


# -- pieces ----------------------------------------------------------------------------------

def test_parse_range() -> None:
    assert parse_range(b"bytes=0-0", 10) == (0, 0)
    assert parse_range(b"bytes=2-", 10) == (2, 9)
    assert parse_range(b"bytes=-3", 10) == (7, 9)
    assert parse_range(b"bytes=-30", 10) == (0, 9)
    assert parse_range(b"bytes=10-", 10) == UNSATISFIABLE
    assert parse_range(b"bytes=0-5", 0) == UNSATISFIABLE
    assert parse_range(b"bytes=3-1", 10) is None
    assert parse_range(b"bytes=-", 10) is None
    assert parse_range(b"bytes=1-2, 4-5", 10) is None
    assert parse_range(b"bytes = 1 - 2", 10) == (1, 2)


def test_conditionals() -> None:
    assert not_modified({b"if-none-match": b'"a", "b"'}, b'"b"', 0)
    assert not not_modified({b"if-none-match": b'"a"'}, b'"b"', 0)
    stamp = parse_http_date(b"Sun, 06 Nov 1994 08:49:37 GMT")
    assert stamp == 784111777
    assert not_modified({b"if-modified-since": b"Sun, 06 Nov 1994 08:49:37 GMT"}, b"", stamp)
    assert not not_modified({b"if-modified-since": b"Sun, 06 Nov 1994 08:49:37 GMT"}, b"",
                            stamp + 1)
    assert not not_modified({b"if-modified-since": b"yesterday"}, b"", 0)
    assert parse_http_date(b"Sun, 06 Foo 1994 08:49:37 GMT") is None
    assert range_applies(None, b'"a"', b"date")
    assert range_applies(b'"a"', b'"a"', b"date") and not range_applies(b'W/"a"', b'"a"', b"x")
    assert range_applies(b"date", b'"a"', b"date") and not range_applies(b"other", b'"a"', b"x")


def test_content_types() -> None:
    assert content_type("a.css") == b"text/css; charset=utf-8"
    assert content_type("a.png") == b"image/png"
    assert content_type("a.woff2") in (b"font/woff2", b"application/octet-stream")
    assert content_type("noext") == b"application/octet-stream"


def test_mounts_are_checked_at_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--static"):
        Config(app="x:y", static=("static=./x",))
    missing = Config(app="x:y", static=(f"/static={tmp_path / 'missing'}",))
    with pytest.raises(StaticConfigError, match="not a directory"):
        missing.static_mounts(check=True)  # by `octo serve`; `octo status` need not see it
    with pytest.raises(ConfigError, match="plain path"):
        Config(app="x:y", static=(f"/a/../b={tmp_path}",))
    assert Mount.parse(f"/assets/={tmp_path}").prefix == "/assets"
    cfg = Config(app="x:y", static=f"/a={tmp_path},/b={tmp_path}")  # type: ignore[arg-type]
    assert cfg.static == (f"/a={tmp_path}", f"/b={tmp_path}")


def test_head_counts_no_body_bytes(site: Path, run, caplog) -> None:
    import logging

    caplog.set_level(logging.INFO, "octo.access")
    get(site, "/static/data.bin", method="HEAD", run=run, log_config="logging.json")
    get(site, "/static/data.bin", "Range: bytes=0-9", run=run, log_config="logging.json")
    assert [r.__dict__["bytes"] for r in caplog.records if r.name == "octo.access"] == [0, 10]


def test_longest_prefix_wins(tmp_path: Path) -> None:
    (tmp_path / "outer").mkdir()
    (tmp_path / "inner").mkdir()
    files = StaticFiles([Mount("/s", str(tmp_path / "outer")),
                         Mount("/s/admin", str(tmp_path / "inner"))], 60)
    assert files.locate(b"/s/admin/x.css") == (str(tmp_path / "inner"), "x.css")
    assert files.locate(b"/s/x.css") == (str(tmp_path / "outer"), "x.css")
