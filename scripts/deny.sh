#!/usr/bin/env bash
# cargo deny (deny.toml): licences, duplicate versions (warnings), crate sources and RustSec advisories.
#
#   scripts/deny.sh
#
# cargo-deny is installed once (`cargo install --locked`, a few minutes on 2 cores) into
# ${XDG_CACHE_HOME:-~/.cache}/data-backup/cargo-deny-VERSION and reused. The advisory database is a
# git repository on GitHub: when it cannot be fetched, the last copy fetched is used, and with none
# the advisories are skipped with a warning, so that a machine without that network still checks the
# rest. DENY_REQUIRE_ADVISORIES=1 (the pipeline's `deny` job) makes that a failure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

version=0.20.2
root=${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/data-backup/cargo-deny-$version
deny=$root/bin/cargo-deny
say() { printf '%s\n' "deny: $*" >&2; }

if [ ! -x "$deny" ]; then
  say "installing cargo-deny $version into $root"
  # Its own target directory, so that the project's build settings and target/ stay out of it.
  CARGO_TARGET_DIR=$root/build cargo install --quiet cargo-deny --locked --version "$version" --root "$root"
  rm -rf "$root/build"
fi

checks=(licenses bans sources)
fetch=()
if "$deny" fetch db >/dev/null 2>&1; then
  checks+=(advisories)
elif compgen -G "${CARGO_HOME:-${HOME:-/tmp}/.cargo}/advisory-dbs/*/.git" >/dev/null; then
  say "the advisory database could not be fetched: checking against the copy fetched before"
  checks+=(advisories)
  fetch=(--disable-fetch)
elif [ "${DENY_REQUIRE_ADVISORIES:-0}" = 1 ]; then
  say "error: the advisory database could not be fetched"
  exit 1
else
  say "warning: the advisory database (github.com/RustSec/advisory-db) could not be fetched and no copy exists: advisories NOT checked"
fi
exec "$deny" --log-level error check "${fetch[@]}" --show-stats "${checks[@]}"
