#!/usr/bin/env bash
# The test command: formatting, clippy, cargo deny (licences, advisories, duplicates), the build, then
# every test against real PostgreSQL and MariaDB and the storage emulators (fake-gcs-server, moto,
# azurite), installed and started when needed.
#
#   scripts/test.sh [--no-lint] [--no-fuzz] [TEST ARGS...]
#
# --no-lint skips cargo fmt, clippy and cargo deny (scripts/deny.sh); --no-fuzz skips the
# schemathesis run (scripts/fuzz.sh) that follows the tests (it also runs only when no TEST ARGS are
# given). The other arguments go to the test binaries: a test-name filter, --nocapture,
# --test-threads 1, ...
# Needs root to install Debian packages, start the database servers and bind fake-gcs-server to port
# 80 (README "Set-up"); as another user, run `sudo scripts/emulators.sh up` first.
# Emulators started here are stopped on exit; ones already answering (scripts/emulators.sh up) are
# reused and left running.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

lint=1
fuzz=1
args=()
for arg in "$@"; do
  case "$arg" in
    --no-lint) lint=0 ;;
    --no-fuzz) fuzz=0 ;;
    *) args+=("$arg") ;;
  esac
done

EMU_STATE=$(mktemp -d "${TMPDIR:-/tmp}/data-backup-test.XXXXXX")
# shellcheck source=scripts/emulators.sh
. scripts/emulators.sh

started=$(emu_now)
timings=()
step_name=
step_started=

# step NAME CMD...: run CMD as the step NAME and record how long it took.
step() {
  step_name=$1 step_started=$(emu_now)
  shift
  echo "==> $step_name: $*"
  "$@"
  timings+=("$step_name $(emu_elapsed "$step_started")")
  step_name=
}

finish() {
  local rc=$? log
  [ -z "$step_name" ] || timings+=("$step_name FAILED after $(emu_elapsed "$step_started")")
  emu_down
  if [ "$rc" != 0 ] && [ "$step_name" = test ]; then
    for log in "$EMU_STATE"/*.log; do
      [ -s "$log" ] || continue
      echo "--- last lines of the $(basename "$log" .log) log"
      tail -n 20 "$log"
    done
  fi
  echo "scripts/test.sh: ${timings[*]/%/,} total $(emu_elapsed "$started")"
  # One closing line over all the test binaries (cargo prints a "test result" per binary, doc tests last).
  if [ -f "$EMU_STATE/test.out" ]; then
    awk '/^test result: / { n++; for (i = 2; i <= NF; i++) {
           if ($i ~ /^passed/) p += $(i - 1); if ($i ~ /^failed/) f += $(i - 1); if ($i ~ /^ignored/) s += $(i - 1) } }
         END { if (n) printf "tests: %d passed, %d failed, %d skipped\n", p, f, s }' "$EMU_STATE/test.out"
  fi
  rm -rf "$EMU_STATE"
  exit "$rc"
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

step services emu_up
# The status page test renders the page in headless Chromium (Debian's package), when missing.
install_chromium() {
  [ "$(id -u)" = 0 ] || { echo "chromium is missing (run: sudo apt-get install chromium)" >&2; return 1; }
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
}
command -v chromium >/dev/null 2>&1 || step chromium install_chromium
export "${EMU_TEST_ENV[@]}"
export RUST_BACKTRACE=${RUST_BACKTRACE:-1}

if [ "$lint" = 1 ]; then
  step fmt cargo fmt --all -- --check
  step clippy cargo clippy --all-targets --locked -- -D warnings
  step deny bash scripts/deny.sh
fi
step build cargo test --locked --no-run
# Dockerfile, Terraform, .gitlab-ci.yml: parsed, checkov, hadolint, cross-checked with the code (issue 9).
step deploy bash scripts/deploy-checks.sh

run_tests() {
  local color=()
  if [ -t 1 ]; then color=(--color always); fi # kept through the pipe when on a terminal
  echo "    ${EMU_AWS_ENV[*]} cargo test --locked -- ${args[*]}"
  env "${EMU_AWS_ENV[@]}" cargo test --locked "${color[@]}" -- "${color[@]}" "${args[@]}" 2>&1 |
    tee "$EMU_STATE/test.out"
}
step test run_tests

# Fuzz the HTTP contract with schemathesis against the binary the build step made (a full run only:
# a test-name filter or --no-fuzz skips it).
if [ "$fuzz" = 1 ] && [ "${#args[@]}" = 0 ]; then
  step fuzz scripts/fuzz.sh "${CARGO_TARGET_DIR:-target}/debug/data-backup"
fi
