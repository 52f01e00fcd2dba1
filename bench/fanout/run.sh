#!/usr/bin/env bash
# bench/fanout: POST /schedule over a fake organisation of 1,000 projects / 3,000 databases, walk vs
# asset_inventory, against quota-enforcing fakes with 50 ms latency. See bench/README.md.
#
#   bash bench/fanout/run.sh          # about 3 minutes once the binary is built
#
# Environment: BENCH_BIN (a data-backup binary to use instead of building one), CARGO_TARGET_DIR
# (default the repo's target/), BENCH_WORK (default /tmp/bench-fanout).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$repo/target}"
python="$(command -v python3.11 || command -v python3)"
if [ -n "${BENCH_BIN:-}" ]; then
    bin="$BENCH_BIN"
else
    CARGO_TARGET_DIR="$target" cargo build --release --quiet --manifest-path "$repo/Cargo.toml" --bin data-backup
    bin="$target/release/data-backup"
fi
exec "$python" "$here/bench.py" --bin "$bin" --work "${BENCH_WORK:-/tmp/bench-fanout}" "$@"
