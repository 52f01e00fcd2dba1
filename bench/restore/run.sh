#!/usr/bin/env bash
# bench/restore: `data-backup restore` of the ~0.8 GB benchmark database (bench_dump_1x) against
# `pg_restore` of a `pg_dump -Fc` file of it, one run each, same machine. See bench/restore/README.md.
#
#   bash bench/restore/run.sh
#
# Environment: PGHOST/PGPORT/PGUSER (default 127.0.0.1:5432, postgres), BENCH_BIN (a data-backup
# binary to use instead of building one), CARGO_TARGET_DIR (default /tmp/bench-target, so the
# release build does not block the repository's target/), BENCH_WORK (scratch, default
# /tmp/bench-restore, needs ~1 GB). Creates bench_dump_1x with bench/dump/generate.sql when it is
# missing (the same database bench/dump uses); only bench_dump_1x and bench_restore_* databases are
# ever created or dropped.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
export PGHOST="${PGHOST:-127.0.0.1}" PGPORT="${PGPORT:-5432}" PGUSER="${PGUSER:-postgres}"
work="${BENCH_WORK:-/tmp/bench-restore}"
target="${CARGO_TARGET_DIR:-/tmp/bench-target}"

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

[ -x /usr/bin/time ] || { log "installing time"; apt-get install -y -qq time >/dev/null || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }; }
python="$(command -v python3.11 || command -v python3)"

# The tools data-backup itself picks: the newest /usr/lib/postgresql/N/bin, else PATH's.
pg_restore="$(ls -d /usr/lib/postgresql/*/bin/pg_restore 2>/dev/null | sort -V | tail -1 || true)"
[ -n "$pg_restore" ] || pg_restore="$(command -v pg_restore)"
bindir="$(dirname "$pg_restore")"

if [ -n "${BENCH_BIN:-}" ]; then
    bin="$BENCH_BIN"
    log "using $bin"
else
    log "building data-backup (release, target dir $target)"
    CARGO_TARGET_DIR="$target" cargo build --release --quiet --manifest-path "$repo/Cargo.toml"
    bin="$target/release/data-backup"
fi

psql_q() { "$bindir/psql" -XqAt -v ON_ERROR_STOP=1 "$@"; }
psql_q -d postgres -c 'SELECT 1' >/dev/null || { echo "PostgreSQL is not reachable at $PGHOST:$PGPORT" >&2; exit 1; }
ok="$(psql_q -d bench_dump_1x -c "SELECT 1 FROM bench_meta WHERE generator = 'bench/dump/generate.sql v1' AND scale = 1" 2>/dev/null || true)"
if [ "$ok" = 1 ]; then
    log "reusing bench_dump_1x ($(psql_q -d postgres -c "SELECT pg_size_pretty(pg_database_size('bench_dump_1x'))"))"
else
    log "bench_dump_1x is missing or incomplete: generating it (about a minute per 0.8 GB)"
    psql_q -d postgres -c "DROP DATABASE IF EXISTS bench_dump_1x"
    psql_q -d postgres -c "CREATE DATABASE bench_dump_1x"
    psql_q -d bench_dump_1x -v scale=1 -f "$repo/bench/dump/generate.sql" >/dev/null
fi

mkdir -p "$work"
avail_kb="$(df -Pk "$work" | awk 'NR==2 {print $4}')"
if [ "$avail_kb" -lt $((1024 * 1024)) ]; then
    echo "not enough space in $work: $((avail_kb / 1024)) MiB free, need 1 GiB" >&2
    exit 1
fi

exec "$python" "$here/bench.py" --bin "$bin" --pg-bin-dir "$bindir" --work "$work" \
    --pg-host "$PGHOST" --pg-port "$PGPORT" --pg-user "$PGUSER" "$@"
