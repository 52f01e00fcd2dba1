#!/usr/bin/env bash
# bench/status: how long the status pages take over a store of N databases × 30 nights, each
# with its history object (ADR 0021). See bench/status/README.md.
#
#   bash bench/status/run.sh            # 100 and 1,000 databases (~2 min once built)
#
# Environment: BENCH_BIN (a data-backup binary to use instead of building one), CARGO_TARGET_DIR
# (default /tmp/bench-target, so the release build does not block the repository's target/),
# BENCH_WORK (scratch, default /tmp/bench-status), BENCH_SIZES (default "100 1000"), BENCH_REPS
# (default 7), BENCH_NO_QUIET=1 (do not wait for an idle machine).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
work="${BENCH_WORK:-/tmp/bench-status}"
target="${CARGO_TARGET_DIR:-/tmp/bench-target}"

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

if [ -n "${BENCH_BIN:-}" ]; then
  bin="$BENCH_BIN"
else
  log "building data-backup (release) into $target"
  (cd "$repo" && CARGO_TARGET_DIR="$target" cargo build --release --locked --quiet)
  bin="$target/release/data-backup"
fi
python="$(command -v python3.11 || command -v python3)"
mkdir -p "$work"
PYTHONPATH="$repo/bench/lib" exec "$python" "$here/bench.py" --bin "$bin" --work "$work" \
  --sizes ${BENCH_SIZES:-100 1000} --reps "${BENCH_REPS:-7}"
