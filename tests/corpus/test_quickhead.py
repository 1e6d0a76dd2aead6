"""The simple-head scanner (octo.http.quickhead, and its C twin headscan.c) against llhttp.

Its promise: whatever it accepts, llhttp accepts and reports the same way (method, target,
fields as octo's callbacks store them, HTTP/1.1, no body, keep-alive), and octo's request
line check passes; the C scanner returns what the Python one returns, for every input.
Checked on hand-written heads, on every corpus vector, and on seeded random mutations of
both (the fuzz target, tests/fuzz/fuzz_headscan.py, keeps mutating from there).
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from harness import Client, echo, parse_responses
from headscan_oracle import C_SCANNER, DECLINED, SIMPLE, Parse, check, mutate, seeds

from octo.config import Config
from octo.http import quickhead
from octo.http.validate import RequestError


def _implementations() -> list[Any]:
    reason = "the compiled core (octo._ccore._headscan) is not built"
    if os.environ.get("OCTO_REQUIRE_COMPILED") == "1":
        assert C_SCANNER is not None, reason
    c = C_SCANNER.parse if C_SCANNER is not None else None
    return [pytest.param(quickhead.parse, id="python"),
            pytest.param(c, id="c", marks=pytest.mark.skipif(c is None, reason=reason))]


IMPLEMENTATIONS = _implementations()


@pytest.mark.parametrize("parse", IMPLEMENTATIONS)
@pytest.mark.parametrize("data", SIMPLE)
def test_simple_heads_are_read_as_llhttp_reads_them(parse: Parse, data: bytes) -> None:
    assert check(parse, data) is not None


@pytest.mark.parametrize("parse", IMPLEMENTATIONS)
@pytest.mark.parametrize("data", DECLINED)
def test_anything_else_is_left_to_the_parser(parse: Parse, data: bytes) -> None:
    assert check(parse, data) is None


@pytest.mark.parametrize("parse", IMPLEMENTATIONS)
def test_fields_are_lowercased_and_stripped_and_counted(parse: Parse) -> None:
    data = b"GET /p?q HTTP/1.1\r\nHost: a\r\nX-A-B:  1 2 \t\r\nConnection: KEEP-alive\r\n\r\n"
    assert parse(data) == (b"GET", b"/p?q", [(b"host", b"a"), (b"x-a-b", b"1 2"),
                                             (b"connection", b"KEEP-alive")],
                           4 + (4 + 1 + 4) + (5 + 3 + 4) + (10 + 10 + 4))


@pytest.mark.skipif(C_SCANNER is None, reason="the compiled core is not built")
def test_the_c_scanner_takes_bytes_only() -> None:
    assert C_SCANNER is not None
    with pytest.raises(TypeError, match="takes bytes"):
        C_SCANNER.parse(bytearray(SIMPLE[0]))


TARGETS = [b"/", b"/a/b.c", b"/p?q", b"/p#f", b"/%41", b"?", b"#", b"%", b"", b"/a?",
           b"*", b"http://h/p", bytes(range(256))]


def test_plain_targets_are_those_without_query_fragment_or_escape() -> None:
    rng = random.Random(16)
    heads = [mutate(rng, data) for data in seeds()[:500] for _ in range(4)]
    targets = TARGETS + [head.split(b" ")[1] if head.count(b" ") > 1 else head
                         for head in heads]
    for target in targets:
        plain = not any(c in target for c in b"?#%")
        assert quickhead.plain_target(target) is plain, target
        if C_SCANNER is not None:
            assert C_SCANNER.plain_target(target) is plain, target
    if C_SCANNER is not None:
        with pytest.raises(TypeError, match="takes bytes"):
            C_SCANNER.plain_target(bytearray(b"/"))


@pytest.mark.parametrize("parse", IMPLEMENTATIONS)
def test_corpus_vectors(parse: Parse) -> None:
    accepted = sum(check(parse, data) is not None for data in seeds())
    assert accepted >= len(SIMPLE)  # the corpus holds simple heads too


@pytest.mark.parametrize("parse", IMPLEMENTATIONS)
def test_random_mutations(parse: Parse) -> None:
    rng = random.Random(20261202)
    bases = seeds()
    accepted = 0
    for _ in range(int(os.environ.get("OCTO_MUTATIONS", "6000"))):
        data = mutate(rng, rng.choice(bases))
        accepted += check(parse, data) is not None
    assert accepted  # some mutations stay simple heads: both branches were checked


# -- through the protocol ---------------------------------------------------------------------


class _FeedSpy:
    """Wraps the connection's parser, counting the reads fed to it."""

    def __init__(self, parser: Any) -> None:
        self.parser = parser
        self.fed = 0

    def feed_data(self, data: bytes) -> None:
        self.fed += 1
        self.parser.feed_data(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.parser, name)


async def _served(client: Client, data: bytes) -> list[Any]:
    client.send(data)
    await client.settle()
    return parse_responses(client.take())


@pytest.mark.usefixtures("http_core")
def test_simple_reads_skip_the_parser_others_do_not() -> None:
    async def run() -> None:
        client = Client(echo)
        spy = client.protocol.parser = _FeedSpy(client.protocol.parser)
        responses = await _served(client, b"GET /a?b HTTP/1.1\r\nHost: h\r\n\r\n")
        assert [r.status for r in responses] == [200] and spy.fed == 0
        assert responses[0].header(b"x-path") == b"/a"
        assert responses[0].header(b"x-query") == b"b"
        client.send(b"GET /c HTTP/1.1\r\n")  # a head in two reads: the parser's
        responses = await _served(client, b"Host: h\r\n\r\n")
        assert [r.status for r in responses] == [200] and spy.fed == 2
        responses = await _served(client, b"POST /d HTTP/1.1\r\nHost: h\r\n"
                                          b"Content-Length: 2\r\n\r\nok")
        assert responses[0].body == b"ok" and spy.fed == 3
        responses = await _served(client, b"GET /e HTTP/1.1\r\nHost: h\r\n\r\n")
        assert responses[0].header(b"x-path") == b"/e" and spy.fed == 3
        assert not client.closed

    asyncio.run(run())


@pytest.mark.usefixtures("http_core")
@pytest.mark.parametrize(("config", "data", "status"), [
    ({"limit_request_fields": 1}, b"GET / HTTP/1.1\r\nHost: h\r\nA: b\r\n\r\n", 431),
    ({"limit_request_line": 4}, b"GET /abcd HTTP/1.1\r\nHost: h\r\n\r\n", 414),
    ({"limit_request_head": 40}, b"GET / HTTP/1.1\r\nHost: h\r\nA: " + b"b" * 40 + b"\r\n\r\n",
     431),
    ({}, b"GET / HTTP/1.1\r\nHost: h\r\nHost: i\r\n\r\n", 400),
    ({}, b"GET / HTTP/1.1\r\n\r\n", 400),
])
def test_a_simple_head_over_a_limit_or_bad_is_refused(config: dict[str, Any], data: bytes,
                                                      status: int) -> None:
    async def run() -> None:
        client = Client(echo, Config(app="x:y", **config))
        responses = await _served(client, data)
        assert [r.status for r in responses] == [status]
        assert client.closed

    asyncio.run(run())


def test_a_bad_simple_head_is_not_an_error_of_the_scanner() -> None:
    # Two Host fields: a simple head to the scanner; octo's checks after it refuse it.
    data = b"GET / HTTP/1.1\r\nHost: h\r\nHost: i\r\n\r\n"
    assert quickhead.parse(data) is not None
    with pytest.raises(RequestError):
        from octo.http.validate import inspect_headers
        inspect_headers(quickhead.parse(data)[2], True)  # type: ignore[index]


# -- the fuzz target and the C scanner under AddressSanitizer ------------------------------

FUZZ_TARGET = Path(__file__).resolve().parents[1] / "fuzz" / "fuzz_headscan.py"
HEADSCAN_C = Path(__file__).resolve().parents[2] / "octo" / "http" / "headscan.c"


def test_a_short_fuzz_run_finds_nothing(tmp_path: Path) -> None:
    pytest.importorskip("atheris", reason="atheris (a dev extra on Linux x86_64) is not "
                                          "installed: the fuzz target cannot run")
    seeds = tmp_path / "seeds"
    subprocess.run([sys.executable, str(FUZZ_TARGET), "--write-seeds", str(seeds)], check=True)
    run = subprocess.run([sys.executable, str(FUZZ_TARGET), str(seeds), "-runs=30000",
                          "-seed=20261202", "-max_len=512"],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "Done 30000 runs" in run.stderr


def _asan_build(tmp_path: Path) -> tuple[Path, Path]:
    import sysconfig

    library = subprocess.run(["gcc", "-print-file-name=libasan.so"], capture_output=True,
                             text=True).stdout.strip()
    if not library or not Path(library).exists():
        pytest.skip("gcc's AddressSanitizer runtime (libasan) is not installed")
    out = tmp_path / "_headscan_asan.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-g", "-O1", "-fsanitize=address",
                    "-fno-omit-frame-pointer", f"-I{sysconfig.get_paths()['include']}",
                    str(HEADSCAN_C), "-o", str(out)], check=True)
    return Path(library), out


@pytest.mark.skipif(os.environ.get("OCTO_HEADSCAN") is not None, reason="the ASan run itself")
def test_the_c_scanner_under_address_sanitizer(tmp_path: Path) -> None:
    """The tests above, again, with headscan.c built with -fsanitize=address and every
    Python allocation through malloc (PYTHONMALLOC=malloc): a read past a bytes object's
    end, or a write anywhere it should not, aborts the run."""
    if subprocess.run(["gcc", "--version"], capture_output=True).returncode != 0:
        pytest.skip("no gcc to build the scanner with AddressSanitizer")
    library, module = _asan_build(tmp_path)
    env = {**os.environ, "OCTO_HEADSCAN": str(module), "LD_PRELOAD": str(library),
           "PYTHONMALLOC": "malloc", "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1",
           "OCTO_MUTATIONS": "40000"}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "-p", "no:xdist", str(Path(__file__)), "-k",
                          "not fuzz and not address_sanitizer"],
                         capture_output=True, text=True, env=env, timeout=900)
    at = run.stderr.find("==ERROR")
    report = run.stderr[at:at + 4000] if at != -1 else run.stderr[-3000:]
    assert run.returncode == 0, run.stdout[-2000:] + report
    assert " passed" in run.stdout and "AddressSanitizer" not in run.stderr
