#!/usr/bin/env bash
# Fuzzes the HTTP contract: starts `data-backup serve` on a free loopback port with a throwaway
# configuration (a random bearer token, a local store in a temporary directory, one PostgreSQL source
# limited to databases named `fuzz_nothing_*` so that nothing real is exported, no nightly timer),
# then runs schemathesis (PyPI, in the virtualenv ${XDG_CACHE_HOME:-~/.cache}/data-backup/fuzz)
# against the service's own /openapi.json with valid credentials.
# Checks: no 5xx, and every status code, content type and body conforms to the document.
#
#   scripts/fuzz.sh [BINARY]          default target/debug/data-backup (built by `cargo test --no-run`)
#
# Environment: DATA_BACKUP_TEST_PG_URL (the PostgreSQL server; default postgres://postgres@127.0.0.1:5432/),
# FUZZ_MAX_EXAMPLES (per operation, default 100), FUZZ_SEED (default: random; printed for replay).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bin=${1:-${CARGO_TARGET_DIR:-target}/debug/data-backup}
if [ ! -x "$bin" ]; then
  echo "fuzz: $bin is missing: build it first (cargo test --no-run)" >&2
  exit 1
fi
# schemathesis in a virtualenv of its own (scripts/venv.sh), run through its python.
# shellcheck source=scripts/venv.sh
. scripts/venv.sh
venv "$VENV_CACHE/fuzz" "schemathesis==4.32.5"
py=$VENV_CACHE/fuzz/bin/python

work=$(mktemp -d "${TMPDIR:-/tmp}/data-backup-fuzz.XXXXXX")
server=
cleanup() {
  local rc=$?
  if [ -n "$server" ]; then
    kill -TERM "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
  fi
  if [ "$rc" != 0 ] && [ -s "$work/serve.log" ]; then
    echo "--- last lines of the service's log"
    tail -n 30 "$work/serve.log"
  fi
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
token=$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')
printf '%s\n' "$token" >"$work/token"
chmod 600 "$work/token"
cat >"$work/config.toml" <<EOF
bind = "127.0.0.1:$port"
[store]
url = "file://$work/store"
[schedule]
daily_at = ""
[[sources]]
name = "fuzz"
kind = "postgres"
url = "${DATA_BACKUP_TEST_PG_URL:-postgres://postgres@127.0.0.1:5432/}"
instance = "pg"
databases = ["fuzz_nothing_*"]
[auth]
bearer_token_file = "$work/token"
EOF

env -u DATA_BACKUP_CONFIG -u DATA_BACKUP_AUTH__BEARER_TOKEN RUST_LOG=warn \
  "$bin" --config "$work/config.toml" serve >"$work/serve.log" 2>&1 &
server=$!
for _ in $(seq 1 100); do
  if curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$server" 2>/dev/null; then
    echo "fuzz: the service stopped at start" >&2
    exit 1
  fi
  sleep 0.1
done

seed=${FUZZ_SEED:-$RANDOM$RANDOM}
echo "fuzz: schemathesis against http://127.0.0.1:$port (seed $seed)"
# Run from the temporary directory so that nothing schemathesis writes lands in the repository. One
# worker: a run with two crashed in schemathesis' coverage phase inside Python 3.11.7's ast module (CPython gh-106905).
(
  cd "$work"
  "$py" -m schemathesis.cli run "http://127.0.0.1:$port/openapi.json" \
    --header "Authorization: Bearer $token" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
    --phases examples,coverage,fuzzing \
    --max-examples "${FUZZ_MAX_EXAMPLES:-100}" \
    --seed "$seed" \
    --workers 1 \
    --request-timeout 60 \
    --generation-database none \
    --no-color
)
