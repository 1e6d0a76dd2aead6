"""benchmarks/cgprofile.py: reading callgrind's output format (self costs, compressed names,
call lines) and grouping objects for the instructions-per-request report."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import cgprofile  # noqa: E402  (benchmarks/ is not a package)

PY = "/opt/python/lib/libpython3.11.so.1.0"
UVLOOP = "/venv/lib/python3.11/site-packages/uvloop/loop.cpython-311-x86_64-linux-gnu.so"
HTTPTOOLS = ("/venv/lib/python3.11/site-packages/httptools/parser/"
             "parser.cpython-311-x86_64-linux-gnu.so")

# Two objects; eval calls itself (a ' suffix) and into uvloop; costs of call lines (the
# line after calls=) are inclusive and must not count as the caller's own.
DUMP = f"""# callgrind format
version: 1
creator: callgrind-3.19.0
pid: 4242
cmd:  /venv/bin/python server.py --port 1
part: 2

desc: Trigger: Client Request: window

positions: line
events: Ir
summary: 1175

ob=(1) {PY}
fl=(1) ceval.c
fn=(1) _PyEval_EvalFrameDefault
10 100
+2 50
cob=(2) {UVLOOP}
cfi=(2) loop.c
cfn=(2) uv_run
calls=3 40
* 900
-1 25

fn=(3) _PyEval_EvalFrameDefault'2
5 200
cfn=(1)
calls=1 10
5 175

ob=(2)
fl=(2)
fn=(2)
40 300
fi=(3) inline.h
41 100
fe=(2)
42 200
+1
ob=(3) {HTTPTOOLS}
fl=(4) parser.c
fn=(4) cb_on_url
7 200
"""


def write(tmp_path: Path, text: str, name: str = "callgrind.out.4242.2") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_self_costs_per_function_skip_inclusive_call_costs(tmp_path: Path) -> None:
    profile = cgprofile.read(write(tmp_path, DUMP))
    assert profile.pid == 4242 and profile.command == "/venv/bin/python server.py --port 1"
    assert profile.total == 1175
    assert profile.by_function[PY, "_PyEval_EvalFrameDefault"] == 175
    assert profile.by_function[PY, "_PyEval_EvalFrameDefault'2"] == 200
    # uv_run named first in a cfn= line, its own costs given under ob=(2) later
    assert profile.by_function[UVLOOP, "uv_run"] == 600
    assert profile.by_object() == {PY: 375, UVLOOP: 600, HTTPTOOLS: 200}


def test_costs_that_miss_the_summary_are_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, DUMP.replace("summary: 1175", "summary: 1000"))
    with pytest.raises(cgprofile.ProfileError, match="add up to 1,175"):
        cgprofile.read(path)


def test_a_name_used_before_it_is_defined_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, DUMP.replace(f"ob=(3) {HTTPTOOLS}", "ob=(9)"))
    with pytest.raises(cgprofile.ProfileError, match=r"\(9\) used before"):
        cgprofile.read(path)


def test_groups_and_top_functions_merge_recursion_levels(tmp_path: Path) -> None:
    profile = cgprofile.read(write(tmp_path, DUMP))
    assert cgprofile.grouped([profile, profile]) == {
        "interpreter (libpython)": 750, "uvloop": 1200, "httptools": 400}
    assert cgprofile.top_functions([profile], 2) == [
        ("loop.cpython-311-x86_64-linux-gnu.so", "uv_run", 600),
        ("libpython3.11.so.1.0", "_PyEval_EvalFrameDefault", 375)]


@pytest.mark.parametrize(("obj", "group"), [
    ("/usr/bin/python3.12", "interpreter (libpython)"),
    ("/venv/lib/python3.11/site-packages/octo/http/protocol.cpython-311-x86_64-linux-gnu.so",
     "octo compiled"),
    ("/venv/lib/python3.11/site-packages/octo__mypyc.cpython-311-x86_64-linux-gnu.so",
     "octo compiled"),
    ("/venv/lib/python3.11/site-packages/81d243bd2c585b0f4821__mypyc.cpython-311-x86_64-linux"
     "-gnu.so", "other C extensions"),  # another package's mypyc runtime
    ("/tmp/x/octo/.venv/lib/python3.11/site-packages/httptools/parser/parser.cpython-311-"
     "x86_64-linux-gnu.so", "httptools"),  # a checkout in a directory named octo
    ("/tmp/x/octo/octo/http/protocol.cpython-311-x86_64-linux-gnu.so", "octo compiled"),
    ("/venv/lib/python3.11/site-packages/granian/_granian.cpython-311-x86_64-linux-gnu.so",
     "granian (Rust)"),
    ("/opt/python/lib/python3.11/lib-dynload/_asyncio.cpython-311-x86_64-linux-gnu.so",
     "_asyncio (C tasks)"),
    ("/opt/python/lib/python3.11/lib-dynload/_json.cpython-311-x86_64-linux-gnu.so",
     "other C extensions"),
    ("/usr/lib/x86_64-linux-gnu/libc.so.6", "libc, ld.so, libm"),
    ("/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", "libc, ld.so, libm"),
    ("???", cgprofile.OTHER),
])
def test_object_groups(obj: str, group: str) -> None:
    assert cgprofile.group_of(obj) == group


def test_dumps_lists_numbered_non_empty_parts_only(tmp_path: Path) -> None:
    write(tmp_path, DUMP, "callgrind.out.7.1")
    write(tmp_path, DUMP, "callgrind.out.7.12")
    write(tmp_path, "", "callgrind.out.8.1")  # created, nothing dumped yet
    write(tmp_path, DUMP, "callgrind.out.7")  # the final dump at exit, not a part
    assert [p.name for p in cgprofile.dumps(tmp_path)] == ["callgrind.out.7.1",
                                                           "callgrind.out.7.12"]
