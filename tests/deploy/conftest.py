"""Shared helpers of the deployment checks (run by scripts/deploy-checks.sh)."""

from __future__ import annotations

import functools
import os
import re
import shutil
from pathlib import Path

import hcl2
import pytest

REPO = Path(__file__).resolve().parents[2]
MODULE = REPO / "terraform" / "modules" / "data-backup"
EXAMPLE = REPO / "terraform" / "examples" / "organisation"


@functools.cache
def parse_tf(path: Path) -> dict:
    """One .tf file as python-hcl2 sees it."""
    with path.open(encoding="utf-8") as f:
        return hcl2.load(f)


def tf_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.tf"))


def unquote(value):
    """python-hcl2 keeps the quotes of string literals (`"x"`); drop them."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def blocks(directory: Path, kind: str) -> dict[str, dict]:
    """Top-level blocks of one kind (`variable`, `output`, `module`) by name, over a directory."""
    found: dict[str, dict] = {}
    for path in tf_files(directory):
        for block in parse_tf(path).get(kind, []):
            for name, body in block.items():
                found[unquote(name)] = body
    return found


def resources(directory: Path) -> dict[tuple[str, str], dict]:
    """Resources by (type, name), over a directory."""
    found: dict[tuple[str, str], dict] = {}
    for path in tf_files(directory):
        for block in parse_tf(path).get("resource", []):
            for rtype, named in block.items():
                for name, body in named.items():
                    found[(unquote(rtype), unquote(name))] = body
    return found


def module_text() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in tf_files(MODULE))


def data_backup_bin() -> Path | None:
    """The binary for checks that run it, or None."""
    value = os.environ.get("DATA_BACKUP_BIN")
    candidates = [Path(value)] if value else []
    candidates.append(REPO / os.environ.get("CARGO_TARGET_DIR", "target") / "debug" / "data-backup")
    for c in candidates:
        c = c if c.is_absolute() else REPO / c
        if c.is_file() and os.access(c, os.X_OK):
            return c
    return None


def tool(env_name: str, command: str) -> str | None:
    """A tool installed by scripts/deploy-checks.sh ($env_name), else one on PATH."""
    value = os.environ.get(env_name)
    if value and Path(value).is_file():
        return value
    return shutil.which(command)


@pytest.fixture(scope="session")
def settings_schema() -> dict[str, dict[str, str]]:
    """Struct name → {field: type} for every `pub struct` of src/settings/ (one file per section)."""
    text = "\n".join(p.read_text(encoding="utf-8") for p in sorted((REPO / "src" / "settings").glob("*.rs")))
    schema: dict[str, dict[str, str]] = {}
    for m in re.finditer(r"^pub struct (\w+) \{\n(.*?)^\}", text, re.S | re.M):
        fields = dict(re.findall(r"^    pub (\w+): (.+?),\s*$", m.group(2), re.M))
        schema[m.group(1)] = fields
    return schema
