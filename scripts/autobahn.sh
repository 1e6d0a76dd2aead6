#!/usr/bin/env bash
# Run the Autobahn|Testsuite fuzzing client (wstest -m fuzzingclient) against a WebSocket
# echo server that is already listening, then summarise the report with autobahn_report.py.
# `make autobahn` starts octo on tests/apps/ws_echo.py first; `WS=wsproto make autobahn` (or
# WS=websockets) picks its WebSocket engine, and the report goes to .autobahn/reports/octo-$WS.
#
# Usage: scripts/autobahn.sh [options] [URL]          URL default: ws://127.0.0.1:$PORT/ (8000)
#   --quick            leave out the 9.* (performance, messages up to 16 MiB) and the
#                      12.*/13.* (permessage-deflate) cases
#   --cases LIST       comma-separated case patterns to run (default: *, all cases)
#   --exclude LIST     comma-separated case patterns to leave out (added to --quick's)
#   --allow-failed LIST  comma-separated case patterns that may FAIL without making the
#                      status 1 (they are still listed: "allowed FAILED: ...")
#   --agent NAME       the server's name in the report (default: server)
#   --outdir DIR       where the report goes (default: .autobahn/reports/servers); its old
#                      *.json and *.html files are removed first
#   --timeout SECONDS  limit for the whole wstest run (default: 1800; 600 with --quick)
#   --wait SECONDS     how long to wait for the server to accept connections (default: 10)
#   --install-only     only make sure the testsuite is installed
#   -h, --help         this text
#
# The testsuite is Python 2.7 only. It is installed once (again only when the pins below
# change) into the prefix .autobahn/py27 with the Python 2.7 interpreter from
# $AUTOBAHN_PYTHON, ~/.pyenv/versions/2.7*/bin/python, python2.7 or python2. Nothing is
# installed into that interpreter itself. The report is read with $AUTOBAHN_PYTHON3
# (default: .venv/bin/python, else python3). AUTOBAHN_HOME moves .autobahn elsewhere;
# AUTOBAHN_PIP_TIMEOUT (seconds, default 900) bounds each pip call of the install.
#
# Exit status: 0  every case ran and none FAILED
#              1  some case FAILED, or cases are missing from the report (server died?)
#              2  bad usage
#              3  the run itself broke: server unreachable, wstest crashed or timed out
#              77 Python 2.7 or the testsuite cannot be had here (a test should skip)
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$HERE")"
HOME_DIR="${AUTOBAHN_HOME:-$ROOT/.autobahn}"
PREFIX="$HOME_DIR/py27"
STAMP="$PREFIX/.installed"
INSTALL_LOG="$HOME_DIR/install.log"
QUICK_EXCLUDES="9.*,12.*,13.*"

# What installs and runs on Python 2.7 from PyPI: autobahntestsuite 25.10.1 is the
# Python-2.7 release with exact pins of its own; the rest are the versions pip 19.2.3 chose
# for its dependencies, pinned so that later releases cannot change the set.
PINS="autobahntestsuite==25.10.1
autobahn[accelerate,twisted]==0.10.9
txaio==2.1.0
Twisted==19.10.0
zope.interface==4.6.0
incremental==16.10.1
constantly==15.1.0
Automat==22.10.0
attrs==21.4.0
hyperlink==21.0.0
idna==2.10
typing==3.10.0.0
PyHamcrest==1.10.1
klein==17.10.0
Werkzeug==1.0.1
jinja2==2.11.3
markupsafe==1.1.1
pyOpenSSL==19.1.0
cryptography==3.3.2
cffi==1.15.1
pycparser==2.21
enum34==1.1.10
ipaddress==1.0.23
service-identity==18.1.0
pyasn1==0.5.1
pyasn1-modules==0.3.0
six==1.16.0
unittest2==1.1.0
argparse==1.4.0
linecache2==1.0.0
traceback2==1.4.0
wsaccel==0.6.6
ujson==2.0.3"
SETUPTOOLS_PIN="setuptools==44.0.0"

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
die() { echo "autobahn.sh: $2" >&2; exit "$1"; }

quick=0 cases="*" excludes="" agent="server" install_only=0 timeout_s="" allow_failed="" wait_s=10
outdir="$HOME_DIR/reports/servers"
url="ws://127.0.0.1:${PORT:-8000}/"
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) quick=1 ;;
        --cases) [ $# -ge 2 ] || die 2 "--cases needs a value"; cases="$2"; shift ;;
        --exclude) [ $# -ge 2 ] || die 2 "--exclude needs a value"; excludes="$2"; shift ;;
        --agent) [ $# -ge 2 ] || die 2 "--agent needs a value"; agent="$2"; shift ;;
        --allow-failed) [ $# -ge 2 ] || die 2 "--allow-failed needs a value"
                        allow_failed="$2"; shift ;;
        --outdir) [ $# -ge 2 ] || die 2 "--outdir needs a value"; outdir="$2"; shift ;;
        --timeout) [ $# -ge 2 ] || die 2 "--timeout needs a value"; timeout_s="$2"; shift ;;
        --wait) [ $# -ge 2 ] || die 2 "--wait needs a value"; wait_s="$2"; shift ;;
        --install-only) install_only=1 ;;
        -h|--help) usage; exit 0 ;;
        -*) die 2 "unknown option $1 (see --help)" ;;
        *) url="$1" ;;
    esac
    shift
done
case "$url" in ws://*|wss://*) ;; *) die 2 "URL must start with ws:// or wss://: $url" ;; esac
case "$timeout_s" in
    "") if [ "$quick" = 1 ]; then timeout_s=600; else timeout_s=1800; fi ;;
    *[!0-9]*) die 2 "--timeout takes whole seconds: $timeout_s" ;;
esac
case "$wait_s" in ""|*[!0-9]*) die 2 "--wait takes whole seconds: $wait_s" ;; esac
if [ "$quick" = 1 ]; then excludes="${excludes:+$excludes,}$QUICK_EXCLUDES"; fi

# ---- Python 2.7 --------------------------------------------------------------------------
is_py27() { [ -x "$1" ] && "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (2, 7))' \
    >/dev/null 2>&1; }
find_py27() {  # prints the interpreter, or (status 1) why there is none
    local candidate
    if [ -n "${AUTOBAHN_PYTHON:-}" ]; then
        is_py27 "$AUTOBAHN_PYTHON" && { echo "$AUTOBAHN_PYTHON"; return 0; }
        echo "AUTOBAHN_PYTHON=$AUTOBAHN_PYTHON is not a Python 2.7 interpreter"
        return 1
    fi
    for candidate in "${HOME:-/nonexistent}"/.pyenv/versions/2.7*/bin/python \
            "$(command -v python2.7 || true)" "$(command -v python2 || true)"; do
        if [ -n "$candidate" ] && is_py27 "$candidate"; then echo "$candidate"; return 0; fi
    done
    echo "no Python 2.7 interpreter (looked at \$AUTOBAHN_PYTHON, ~/.pyenv/versions/2.7*," \
        "python2.7, python2), and the Autobahn testsuite runs on Python 2.7 only"
    return 1
}
PY27="$(find_py27)" || die 77 "SKIP: $PY27"

SITE="$("$PY27" -c 'import sys; from distutils.sysconfig import get_python_lib
print(get_python_lib(prefix=sys.argv[1]))' "$PREFIX")"
# .pth files (zope's namespace package among them) are read only in site directories, not
# in PYTHONPATH entries: the sitecustomize.py that install_testsuite writes there turns the
# prefix into one. PYTHONNOUSERSITE and PIP_* keep the user's site and pip settings out.
py27_env=(env PYTHONPATH="$SITE" PYTHONNOUSERSITE=1 PYTHONDONTWRITEBYTECODE=1
          PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PIP_USER=0 PIP_REQUIRE_VIRTUALENV=0)

wstest_works() {
    "${py27_env[@]}" "$PY27" -c 'from autobahntestsuite.wstest import run' >/dev/null 2>&1
}

install_testsuite() {
    local wanted="$PINS
$SETUPTOOLS_PIN
python: $("$PY27" -c 'import sys; print(sys.version.split()[0])') $PY27"
    if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$wanted" ] && wstest_works; then
        return 0
    fi
    echo "autobahn.sh: installing the Autobahn testsuite into $PREFIX (log: $INSTALL_LOG)" >&2
    rm -rf "$PREFIX"
    mkdir -p "$SITE"
    cat > "$SITE/sitecustomize.py" <<'EOF'
import os
import site

site.addsitedir(os.path.dirname(os.path.abspath(__file__)))
EOF
    printf '%s\n' "$PINS" > "$PREFIX/requirements.txt"
    # -I (--ignore-installed) matters: with --prefix, pip otherwise *uninstalls* a package
    # it finds in the interpreter's own site-packages (its setuptools) before installing the
    # pinned one into the prefix. setuptools 44 goes in first: the sdists build with it.
    local pip=("${py27_env[@]}" timeout "${AUTOBAHN_PIP_TIMEOUT:-900}" "$PY27" -m pip install -I --prefix "$PREFIX"
               --no-warn-script-location)
    if ! { "${pip[@]}" "$SETUPTOOLS_PIN" && "${pip[@]}" -r "$PREFIX/requirements.txt"; } \
            > "$INSTALL_LOG" 2>&1; then
        tail -n 15 "$INSTALL_LOG" >&2
        rm -rf "$PREFIX"
        die 77 "SKIP: pip could not install the Autobahn testsuite for $PY27 (see $INSTALL_LOG)"
    fi
    if ! wstest_works; then
        "${py27_env[@]}" "$PY27" -c 'from autobahntestsuite.wstest import run' 2>&1 \
            | tail -n 5 >&2 || true
        rm -rf "$PREFIX"
        die 77 "SKIP: the Autobahn testsuite installed but does not import (see $INSTALL_LOG)"
    fi
    printf '%s\n' "$wanted" > "$STAMP"
}

mkdir -p "$HOME_DIR"
{
    flock -w 1200 9 || die 3 "another autobahn.sh is installing; gave up waiting"
    install_testsuite
} 9> "$HOME_DIR/.install.lock"
[ "$install_only" = 1 ] && { echo "autobahn.sh: testsuite ready in $PREFIX"; exit 0; }

# ---- the run -----------------------------------------------------------------------------
if [ -n "${AUTOBAHN_PYTHON3:-}" ]; then PY3="$AUTOBAHN_PYTHON3"
elif [ -x "$ROOT/.venv/bin/python" ]; then PY3="$ROOT/.venv/bin/python"
else PY3="python3"; fi

# Is anything listening? (A clear message beats a report with no cases in it.)
"$PY3" - "$url" "$wait_s" <<'EOF' || die 3 "nothing accepts connections at $url"
import socket, sys, time, urllib.parse
u = urllib.parse.urlsplit(sys.argv[1])
port = u.port or (443 if u.scheme == "wss" else 80)
deadline = time.monotonic() + float(sys.argv[2])
while True:
    try:
        socket.create_connection((u.hostname, port), timeout=5).close()
        break
    except OSError as exc:
        if time.monotonic() >= deadline:
            sys.exit(f"autobahn.sh: {u.hostname}:{port}: {exc}")
        time.sleep(0.2)
EOF

mkdir -p "$outdir"
outdir="$(cd "$outdir" && pwd)"
rm -f "$outdir"/*.json "$outdir"/*.html
"$PY3" - "$outdir/spec.json" "$url" "$agent" "$cases" "$excludes" <<'EOF'
import json, sys
path, url, agent, cases, excludes = sys.argv[1:]
split = lambda s: [p.strip() for p in s.split(",") if p.strip()]
spec = {
    "outdir": path.rsplit("/", 1)[0],
    "options": {"failByDrop": False},
    "servers": [{"agent": agent, "url": url}],
    "cases": split(cases),
    "exclude-cases": split(excludes),
    "exclude-agent-cases": {},
}
with open(path, "w") as fh:
    json.dump(spec, fh, indent=2)
EOF

echo "autobahn.sh: wstest -m fuzzingclient against $url, cases [$cases]" \
     "excluding [${excludes:-nothing}], limit ${timeout_s}s; wstest log: $outdir/wstest.log"
start=$(date +%s)
set +e
# The working directory is the report's, so wstest leaves nothing elsewhere.
(cd "$outdir" && "${py27_env[@]}" timeout -k 10 "$timeout_s" "$PY27" "$PREFIX/bin/wstest" \
    -m fuzzingclient -s "$outdir/spec.json") > "$outdir/wstest.log" 2>&1
rc=$?
set -e
elapsed=$(( $(date +%s) - start ))
echo "autobahn.sh: wstest exited with status $rc after ${elapsed}s"
if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    tail -n 5 "$outdir/wstest.log" >&2
    die 3 "wstest did not finish within ${timeout_s}s"
fi
if [ "$rc" != 0 ] || [ ! -f "$outdir/index.json" ]; then
    tail -n 20 "$outdir/wstest.log" >&2
    die 3 "wstest failed (status $rc); see $outdir/wstest.log"
fi
if grep -q "^Connection to .* failed" "$outdir/wstest.log"; then
    grep "^Connection to .* failed" "$outdir/wstest.log" >&2
fi
expected="$(sed -n 's/^Ok, will run \([0-9]*\) test cases.*/\1/p' "$outdir/wstest.log")"
set +e
"$PY3" "$HERE/autobahn_report.py" "$outdir/index.json" ${expected:+--expect-cases "$expected"} \
    ${allow_failed:+--allow-failed "$allow_failed"}
rc=$?
set -e
case "$rc" in
    0|1) exit "$rc" ;;
    *) die 3 "the report in $outdir could not be read (autobahn_report.py status $rc)" ;;
esac
