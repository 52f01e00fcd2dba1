#!/usr/bin/env bash
# bench/startup: exec → first 200 on /healthz and idle RSS of `data-backup serve`, beside a minimal
# FastAPI + uvicorn app that imports the Google client libraries (bench/startup/app.py), in one run.
# See bench/README.md.
#
#   bash bench/startup/run.sh                 # 20 alternating runs of each (about 2 minutes)
#   BENCH_RUNS=50 bash bench/startup/run.sh
#
# Environment: BENCH_BIN (a data-backup binary to use instead of building one), CARGO_TARGET_DIR
# (default the repo's target/), BENCH_VENV (the Python venv, default
# ${XDG_CACHE_HOME:-~/.cache}/data-backup-bench/venv; created and filled from requirements.txt when
# missing), BENCH_WORK (default /tmp/bench-startup), BENCH_RUNS (default 20). Ports 18080
# (data-backup) and 18081 (uvicorn) must be free.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$repo/target}"
venv="${BENCH_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/data-backup-bench/venv}"
work="${BENCH_WORK:-/tmp/bench-startup}"
runs="${BENCH_RUNS:-20}"

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

if [ -n "${BENCH_BIN:-}" ]; then
    bin="$BENCH_BIN" # a binary built beforehand (e.g. a copy, while the sources are being edited)
    log "using $bin"
else
    log "building data-backup (release, target dir $target)"
    CARGO_TARGET_DIR="$target" cargo build --release --quiet --manifest-path "$repo/Cargo.toml"
    bin="$target/release/data-backup"
fi

check='import fastapi, uvicorn, google.auth, googleapiclient.discovery
from google.cloud import storage, tasks_v2, resourcemanager_v3'
if ! "$venv/bin/python" -c "$check" 2>/dev/null; then
    python="$(command -v python3.11 || command -v python3)"
    log "preparing the Python venv $venv ($("$python" --version))"
    mkdir -p "$(dirname "$venv")"
    [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
    "$venv/bin/python" -c "$check"
fi

rm -rf "$work/store"
exec "$venv/bin/python" "$here/startup.py" --bin "$bin" --python "$venv/bin/python" --runs "$runs" --work "$work" "$@"
