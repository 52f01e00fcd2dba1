# Sourced by the scripts that run PyPI tools: each tool set lives in a virtualenv of its own under
# ${XDG_CACHE_HOME:-~/.cache}/data-backup/, never in the system's Python (Debian refuses that: PEP 668,
# `externally-managed-environment`). The virtualenv is made with the python3 on PATH (Debian's
# needs python3-venv, which scripts/emulators.sh installs) and reused while its pins are unchanged.

VENV_CACHE=${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/data-backup

# venv DIR PIN...: a virtualenv at DIR holding exactly these pins (made again when they change or
# its Python is gone).
venv() {
  local dir=$1
  shift
  if [ -x "$dir/bin/python" ] && "$dir/bin/python" -c '' 2>/dev/null &&
    [ "$(cat "$dir/.pins" 2>/dev/null)" = "$*" ]; then
    return 0
  fi
  printf '%s\n' "installing $* into $dir" >&2
  rm -rf "$dir"
  mkdir -p "$(dirname "$dir")"
  if ! python3 -m venv "$dir"; then
    printf '%s\n' "error: python3 cannot make a virtualenv (Debian: apt-get install python3-venv)" >&2
    rm -rf "$dir"
    return 1
  fi
  "$dir/bin/python" -m pip install --quiet --disable-pip-version-check "$@"
  printf '%s' "$*" >"$dir/.pins"
}
