"""Dockerfile: the runtime stage installs every database client binary src/ calls, the build caches
dependencies with cargo-chef, the service runs as non-root on $PORT in exec form; hadolint is clean.
(The image itself is built by CI's kaniko job; no Docker daemon is needed here.)"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import REPO, tool

DOCKERFILE = REPO / "Dockerfile"

# Database client binaries the code may run, and the Debian package of the runtime stage that
# provides each (postgresql-client-N from PGDG puts them in /usr/lib/postgresql/N/bin and on PATH).
CLIENT_PACKAGES = {
    "pg_dump": "postgresql-client-",
    "pg_dumpall": "postgresql-client-",
    "pg_restore": "postgresql-client-",
    "psql": "postgresql-client-",
    "createdb": "postgresql-client-",
    "dropdb": "postgresql-client-",
    "mariadb-dump": "mariadb-client",
    "mysqldump": "mariadb-client",
    "mariadb": "mariadb-client",
    "mysql": "mariadb-client",
    # The servers a restore drill starts for itself (src/restore/scratch_server.rs), and setpriv, which
    # runs them as their system user when the service runs as root.
    "initdb": "postgresql-${PG_MAJOR}",
    "postgres": "postgresql-${PG_MAJOR}",
    "pg_ctl": "postgresql-${PG_MAJOR}",
    "mariadbd": "mariadb-server-core",
    "mysqld": "mariadb-server-core",
    "mariadb-install-db": "mariadb-server-core",
    "mysql_install_db": "mariadb-server-core",
    "setpriv": "util-linux",
}
# A line that names a tool to run (not a URL scheme or an engine name): a path is built from it or it
# is one of the names tried in turn.
TOOL_CONTEXT = re.compile(r"newest_pg\(|first_of\(|PathBuf::from\(|\.join\(|with_file_name\(|Command::new\(|for \w+ in \[|bin/")


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    text = DOCKERFILE.read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    out = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def stages() -> dict[str, list[tuple[str, str]]]:
    """Instructions by stage name, in order."""
    result: dict[str, list[tuple[str, str]]] = {}
    current = None
    for word, rest in instructions():
        if word == "FROM":
            m = re.search(r"\bAS\s+(\S+)", rest, re.I)
            current = m.group(1) if m else rest
            result[current] = []
        elif current is not None:
            result[current].append((word, rest))
    return result


def runtime() -> list[tuple[str, str]]:
    return list(stages().values())[-1]


def tools_called_by_src() -> list[set[str]]:
    """The client binaries src/ runs, as groups of alternatives (`for name in ["mariadb-dump",
    "mysqldump"]` or `first_of(dir, &["mariadb-dump", "mysqldump"])`: one of them is enough)."""
    groups: list[set[str]] = []
    unknown = []
    for path in sorted((REPO / "src").rglob("*.rs")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.lstrip().startswith("//"):
                continue
            for literal in re.findall(r'Command::new\("([^"]+)"\)', line):
                if literal not in CLIENT_PACKAGES:
                    unknown.append(f"{path.relative_to(REPO)}: {literal}")
            if not TOOL_CONTEXT.search(line):
                continue
            literals = re.findall(r'"([^"]*)"', line)
            names = {n for n in literals if n in CLIENT_PACKAGES}
            if not names:
                continue
            if re.search(r"for \w+ in \[|first_of\(", line):
                # Names tried in turn: a list of tools only (`for db in ["mysql", "sys", …]` is not).
                if names == set(literals):
                    groups.append(names)
            else:
                groups.extend({n} for n in names)
    assert unknown == [], f"src/ runs binaries this check does not know (add them to CLIENT_PACKAGES and the Dockerfile): {unknown}"
    unique: list[set[str]] = []
    for g in groups:
        if g not in unique:
            unique.append(g)
    return unique


def test_the_scan_finds_the_dump_and_restore_tools():
    groups = tools_called_by_src()
    flat = set().union(*groups)
    # A scan that finds nothing would pass the check below vacuously.
    assert {"pg_dump", "pg_restore", "psql"} <= flat
    assert {"mariadb-dump", "mysqldump"} in groups
    assert {"mariadb", "mysql"} in groups


def test_the_runtime_stage_installs_every_client_binary_the_code_calls():
    runs = " ".join(rest for word, rest in runtime() if word == "RUN")
    installed = set(re.findall(r"(?:^|&&|;)\s*(?:\"?/usr/lib/postgresql/\$\{PG_MAJOR\}/bin/)?([a-z_-]+)\"? --version", runs))
    packages = set(re.findall(r"apt-get install [^&;]*", runs)[-1].split())
    missing = []
    for group in tools_called_by_src():
        answering = group & installed
        if not answering:
            missing.append(f"none of {sorted(group)} is run with --version in the runtime stage")
            continue
        for name in answering:
            package = CLIENT_PACKAGES[name]
            if not any(p.strip('"').startswith(package) for p in packages):
                missing.append(f"{name}: its package {package}… is not installed")
    assert missing == []


def test_the_newest_pg_dump_is_where_the_exporter_looks_for_it():
    # src/export/dump.rs takes the newest /usr/lib/postgresql/N/bin/pg_dump.
    runs = " ".join(rest for word, rest in runtime() if word == "RUN")
    assert '"/usr/lib/postgresql/${PG_MAJOR}/bin/pg_dump" --version' in runs
    assert "apt.postgresql.org" in runs, "the PostgreSQL client comes from PGDG (the newest major)"
    args = dict(rest.split("=", 1) for word, rest in runtime() if word == "ARG" and "=" in rest)
    assert int(args["PG_MAJOR"]) >= 17


def test_dependencies_are_cooked_with_cargo_chef_before_the_sources_are_copied():
    s = stages()
    assert list(s) == ["chef", "planner", "builder", "runtime"]
    assert any("cargo install cargo-chef --locked --version" in rest for _, rest in s["chef"])
    assert any("cargo chef prepare" in rest for _, rest in s["planner"])
    builder = [f"{w} {r}" for w, r in s["builder"]]
    cook = next(i for i, line in enumerate(builder) if "cargo chef cook --release --locked" in line)
    copy = next(i for i, line in enumerate(builder) if line.startswith("COPY . ."))
    build = next(i for i, line in enumerate(builder) if "cargo build --release --locked" in line)
    assert cook < copy < build


def test_the_service_runs_as_non_root_in_exec_form_on_port():
    stage = runtime()
    users = [rest for word, rest in stage if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    entrypoint = json.loads(next(rest for word, rest in stage if word == "ENTRYPOINT"))
    cmd = json.loads(next(rest for word, rest in stage if word == "CMD"))
    assert entrypoint[:2] == ["/usr/bin/tini", "--"], "tini is PID 1: signals reach the service, children are reaped"
    assert cmd == ["serve"]
    env = " ".join(rest for word, rest in stage if word == "ENV")
    assert "PORT=8080" in env
    assert any(word == "EXPOSE" and rest == "8080" for word, rest in stage)
    assert any(word == "HEALTHCHECK" and "/healthz" in rest for word, rest in stage)


def entrypoint_script() -> tuple[str, str]:
    entrypoint = json.loads(next(rest for word, rest in runtime() if word == "ENTRYPOINT"))
    shell, flag, script, name = entrypoint[2:]
    assert (shell, flag) == ("/bin/sh", "-c")
    return script, name


@pytest.mark.parametrize(
    ("args", "env", "bind"),
    [
        (["serve"], {"PORT": "9090"}, "0.0.0.0:9090"),
        (["serve"], {}, "0.0.0.0:8080"),
        (["serve"], {"PORT": "9090", "DATA_BACKUP_BIND": "127.0.0.1:7000"}, "127.0.0.1:7000"),
        (["lifecycle", "--format", "terraform"], {"PORT": "9090"}, ""),
    ],
    ids=["serve-on-port", "serve-default-port", "explicit-bind-wins", "other-commands-keep-the-default-bind"],
)
def test_the_entrypoint_binds_serve_to_port(args, env, bind):
    script, name = entrypoint_script()
    with tempfile.TemporaryDirectory() as tmp:
        stub = Path(tmp) / "data-backup"
        stub.write_text('#!/bin/sh\nprintf "%s|%s" "${DATA_BACKUP_BIND:-}" "$*"\n')
        stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
        out = subprocess.run(
            ["/bin/sh", "-c", script.replace("/usr/local/bin/data-backup", str(stub)), name, *args],
            env={"PATH": "/usr/bin:/bin", **env}, capture_output=True, text=True, timeout=10,
        )
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"{bind}|{' '.join(args)}"


def test_the_build_context_keeps_what_cargo_reads_and_drops_the_rest():
    ignored = {
        line.strip().rstrip("/")
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {"target", ".git", "terraform"} <= ignored
    for needed in ("src", "tests", "Cargo.toml", "Cargo.lock", "examples"):
        assert needed not in ignored, f"{needed} is needed by cargo build"


def test_hadolint_finds_nothing():
    hadolint = tool("DEPLOY_HADOLINT", "hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (scripts/deploy-checks.sh installs it from PyPI where a wheel exists)")
    out = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_hadolint_ignore_gives_its_reason():
    lines = DOCKERFILE.read_text().splitlines()
    for i, line in enumerate(lines):
        if "hadolint ignore=" in line:
            assert i > 0 and lines[i - 1].startswith("#") and "hadolint" not in lines[i - 1], (
                f"line {i + 1}: say why above the ignore"
            )
