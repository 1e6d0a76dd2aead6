#!/usr/bin/env bash
# Prepare the benchmark environment:
#   benchmarks/.venv  competitor servers (uvicorn+httptools+uvloop, granian, starlette) and a
#                     copy of octo taken from the work tree now (not an editable install, so
#                     edits made while a suite runs do not change what it measures);
#   wrk               the load generator, from Debian's packages when missing.
# The venv's dependencies are reinstalled only when requirements.txt or pyproject.toml changed;
# octo itself is reinstalled from the work tree on every call (a few seconds).
# Usage: benchmarks/setup.sh [--no-wrk]
# Exit status: 0 ready, 1 venv failed, 2 bad usage, 3 wrk missing and could not be installed.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$HERE")"
VENV="$HERE/.venv"
PYTHON="${PYTHON:-python3}"
STAMP="$VENV/.installed"
LOG="$VENV/setup.log"

want_wrk=1
for arg in "$@"; do
    case "$arg" in
        --no-wrk) want_wrk=0 ;;
        *) echo "setup.sh: unknown argument $arg" >&2; exit 2 ;;
    esac
done

inputs_hash() {
    cat "$HERE/requirements.txt" "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1
}

# A copy of what building octo needs, so the build writes nothing into the work tree.
snapshot_octo() {
    local dir="$1"
    cp -r "$ROOT/pyproject.toml" "$ROOT/README.md" "$ROOT/octo" "$dir/"
    find "$dir" -name __pycache__ -prune -exec rm -rf {} +
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
    "$PYTHON" -m venv "$VENV"
    pip_quietly install --upgrade pip
    pip_quietly install -r "$HERE/requirements.txt"
    pip_quietly install --no-build-isolation --force-reinstall "$src"
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
snapshot_octo "$src"
install_all "$src" || { echo "setup.sh: could not prepare $VENV (log: $LOG)" >&2; exit 1; }
if (( want_wrk )) && ! ensure_wrk; then
    echo "setup.sh: ERROR: wrk is not installed and 'apt-get install -y wrk' failed;" \
         "install wrk by hand or choose another load generator" >&2
    exit 3
fi
