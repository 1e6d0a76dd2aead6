#!/usr/bin/env bash
# Prepare the benchmark environment:
#   benchmarks/.venv  competitor servers (uvicorn+httptools+uvloop, granian, hypercorn), the
#                     apps' frameworks (starlette, django), matplotlib for the chart, and a
#                     copy of octo taken from the work tree now (not an editable install, so
#                     edits made while a suite runs do not change what it measures);
#   wrk               the load generator, from Debian's packages when missing.
# The venv's dependencies are reinstalled only when requirements.txt or pyproject.toml changed;
# octo itself is reinstalled from the work tree on every call (a few seconds).
# Usage: benchmarks/setup.sh [--no-wrk | --wrk-optional] [--octo-rev=REV]
#   --no-wrk        do not look for wrk (octo bench will load the servers)
#   --wrk-optional  try to install wrk, but carry on without it (the suite then uses octo bench)
#   --octo-rev=REV  install octo as committed at REV (git archive), not the work tree
# Exit status: 0 ready, 1 venv failed, 2 bad usage (or no such --octo-rev), 3 wrk missing
# and could not be installed.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$HERE")"
VENV="${BENCH_VENV:-$HERE/.venv}"  # another Python: PYTHON=python3.12 BENCH_VENV=...
PYTHON="${PYTHON:-python3}"
STAMP="$VENV/.installed"
LOG="$VENV/setup.log"

want_wrk=1  # 0: skip, 1: required, 2: optional
octo_rev=""  # empty: the work tree as it is now
for arg in "$@"; do
    case "$arg" in
        --no-wrk) want_wrk=0 ;;
        --wrk-optional) want_wrk=2 ;;
        --octo-rev=*) octo_rev="${arg#--octo-rev=}" ;;
        *) echo "setup.sh: unknown argument $arg" >&2; exit 2 ;;
    esac
done

inputs_hash() {
    cat "$HERE/requirements.txt" "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1
}

# A copy of what building octo needs, so the build writes nothing into the work tree: from
# the work tree, or with --octo-rev from that commit (uncommitted edits left out).
snapshot_octo() {
    local dir="$1"
    if [[ -n "$octo_rev" ]]; then
        # setup.py (the compiled HTTP core) when the revision has one.
        git -C "$ROOT" archive "$octo_rev" pyproject.toml README.md octo \
            $(git -C "$ROOT" ls-tree --name-only "$octo_rev" setup.py) \
            | tar -x -C "$dir" || return 1
    else
        cp -r "$ROOT/pyproject.toml" "$ROOT/README.md" "$ROOT/setup.py" "$ROOT/octo" "$dir/" \
            || return 1
    fi
    find "$dir" -name __pycache__ -prune -exec rm -rf {} +
    # The work tree's in-place build of the compiled core is not the snapshot's.
    find "$dir" \( -name '*.so' -o -name .built \) -delete
}

pip_quietly() {
    "$VENV/bin/python" -m pip "$@" >> "$LOG" 2>&1 || { tail -n 30 "$LOG" >&2; return 1; }
}

install_all() {
    local src="$1" want
    want="$(inputs_hash)"
    if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then
        pip_quietly install --no-deps --no-build-isolation --force-reinstall "$src"
        return
    fi
    echo "setup.sh: building $VENV" >&2
    # Each step checked by hand: called as 'install_all || ...', this function runs without
    # set -e, and a failed step must not leave a stamp saying the venv is complete.
    rm -f "$STAMP"
    "$PYTHON" -m venv "$VENV" || return 1
    pip_quietly install --upgrade pip || return 1
    pip_quietly install -r "$HERE/requirements.txt" || return 1
    pip_quietly install --no-build-isolation --force-reinstall "$src" || return 1
    echo "$want" > "$STAMP"
}

as_root() {
    if [[ "$(id -u)" == 0 ]]; then
        "$@"
    elif command -v sudo > /dev/null; then
        sudo -n "$@"
    else
        return 1
    fi
}

ensure_wrk() {
    command -v wrk > /dev/null && return 0
    command -v apt-get > /dev/null || return 1
    echo "setup.sh: installing wrk with apt-get" >&2
    as_root apt-get install -y -q wrk > /dev/null 2>&1 && return 0
    as_root apt-get update -q > /dev/null 2>&1 || return 1
    as_root apt-get install -y -q wrk > /dev/null 2>&1
}

mkdir -p "$VENV"
: > "$LOG"
src="$(mktemp -d)"
trap 'rm -rf "$src"' EXIT
if ! snapshot_octo "$src"; then
    echo "setup.sh: could not copy octo ${octo_rev:+at $octo_rev }from $ROOT" >&2
    exit 2
fi
install_all "$src" || { echo "setup.sh: could not prepare $VENV (log: $LOG)" >&2; exit 1; }
if (( want_wrk )) && ! ensure_wrk; then
    if (( want_wrk == 2 )); then
        echo "setup.sh: wrk is not installed and 'apt-get install -y wrk' failed;" \
             "octo bench will generate the load" >&2
    else
        echo "setup.sh: ERROR: wrk is not installed and 'apt-get install -y wrk' failed;" \
             "install wrk by hand or choose another load generator" >&2
        exit 3
    fi
fi
