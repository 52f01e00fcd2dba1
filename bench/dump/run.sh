#!/usr/bin/env bash
# bench/dump: `data-backup export` against `pg_dump -Fc` and the `pg_dump -Fc -Z0 > /dev/null` floor,
# on generated databases of ~0.8 GB (bench_dump_1x) and twice that (bench_dump_2x), plus a sweep of
# zstd_level x zstd_threads. See bench/README.md.
#
#   bash bench/dump/run.sh            # everything (~15 minutes on 2 cores once the databases exist)
#   BENCH_REPS=5 bash bench/dump/run.sh
#   bash bench/dump/run.sh --no-sweep # extra arguments go to bench.py
#
# Environment: PGHOST/PGPORT/PGUSER (default 127.0.0.1:5432, postgres), BENCH_BIN (a data-backup
# binary to use instead of building one), CARGO_TARGET_DIR (default the
# repo's target/), BENCH_WORK (scratch directory, default /tmp/bench-dump), BENCH_REPS (default 3),
# BENCH_REGENERATE=1 to drop and recreate the bench_dump_* databases.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
export PGHOST="${PGHOST:-127.0.0.1}" PGPORT="${PGPORT:-5432}" PGUSER="${PGUSER:-postgres}"
work="${BENCH_WORK:-/tmp/bench-dump}"
reps="${BENCH_REPS:-3}"
target="${CARGO_TARGET_DIR:-$repo/target}"

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# --- tools ----------------------------------------------------------------------------------------
need_apt=()
[ -x /usr/bin/time ] || need_apt+=(time)
command -v zstd >/dev/null || need_apt+=(zstd)
if [ ${#need_apt[@]} -gt 0 ]; then
    log "installing ${need_apt[*]}"
    apt-get install -y -qq "${need_apt[@]}" >/dev/null || { apt-get update -qq && apt-get install -y -qq "${need_apt[@]}" >/dev/null; }
fi
python="$(command -v python3.11 || command -v python3)"

# The pg_dump data-backup itself picks: the newest /usr/lib/postgresql/N/bin, else PATH's.
pg_dump="$(ls -d /usr/lib/postgresql/*/bin/pg_dump 2>/dev/null | sort -V | tail -1 || true)"
[ -n "$pg_dump" ] || pg_dump="$(command -v pg_dump)"

# --- the binary -----------------------------------------------------------------------------------
if [ -n "${BENCH_BIN:-}" ]; then
    bin="$BENCH_BIN" # a binary built beforehand (e.g. a copy, while the sources are being edited)
    log "using $bin"
else
    log "building data-backup (release, target dir $target)"
    CARGO_TARGET_DIR="$target" cargo build --release --quiet --manifest-path "$repo/Cargo.toml"
    bin="$target/release/data-backup"
fi

# --- the databases --------------------------------------------------------------------------------
psql_q() { psql -XqAt -v ON_ERROR_STOP=1 "$@"; }
psql_q -d postgres -c 'SELECT 1' >/dev/null || { echo "PostgreSQL is not reachable at $PGHOST:$PGPORT" >&2; exit 1; }

ensure_db() { # name scale
    local db="$1" scale="$2" ok=""
    if [ "${BENCH_REGENERATE:-0}" = 1 ]; then
        psql_q -d postgres -c "DROP DATABASE IF EXISTS $db" # only ever a bench_dump_* database
    fi
    if [ "$(psql_q -d postgres -c "SELECT 1 FROM pg_database WHERE datname = '$db'")" = 1 ]; then
        # Complete only when the generator's last statement ran.
        ok="$(psql_q -d "$db" -c "SELECT 1 FROM bench_meta WHERE generator = 'bench/dump/generate.sql v1' AND scale = $scale" 2>/dev/null || true)"
        if [ "$ok" = 1 ]; then
            log "reusing $db ($(psql_q -d postgres -c "SELECT pg_size_pretty(pg_database_size('$db'))"))"
            return
        fi
        log "$db is incomplete or from another generator: recreating it"
        psql_q -d postgres -c "DROP DATABASE $db"
    fi
    local avail_kb
    avail_kb="$(df -Pk "$(psql_q -d postgres -c 'SHOW data_directory' 2>/dev/null || echo /)" 2>/dev/null | awk 'NR==2 {print $4}')"
    avail_kb="${avail_kb:-$(df -Pk / | awk 'NR==2 {print $4}')}"
    if [ "$avail_kb" -lt $((scale * 3 * 1024 * 1024)) ]; then
        echo "not enough disk for $db: $((avail_kb / 1024)) MiB free, need about $((scale * 3)) GiB" >&2
        exit 1
    fi
    log "generating $db (scale $scale; about a minute per 0.8 GB on 2 cores)"
    psql_q -d postgres -c "CREATE DATABASE $db"
    psql_q -d "$db" -v scale="$scale" -f "$here/generate.sql" >/dev/null
    log "$db: $(psql_q -d postgres -c "SELECT pg_size_pretty(pg_database_size('$db'))")"
}
ensure_db bench_dump_1x 1
ensure_db bench_dump_2x 2

# --- scratch space ----------------------------------------------------------------------------------
mkdir -p "$work"
avail_kb="$(df -Pk "$work" | awk 'NR==2 {print $4}')"
if [ "$avail_kb" -lt $((2 * 1024 * 1024)) ]; then
    echo "not enough space in $work: $((avail_kb / 1024)) MiB free, need 2 GiB" >&2
    exit 1
fi

# --- measure ----------------------------------------------------------------------------------------
exec "$python" "$here/bench.py" --bin "$bin" --pg-dump "$pg_dump" --work "$work" --reps "$reps" \
    --pg-host "$PGHOST" --pg-port "$PGPORT" --pg-user "$PGUSER" "$@"
