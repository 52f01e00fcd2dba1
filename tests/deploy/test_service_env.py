"""The environment the module gives the Cloud Run service is accepted by the service itself: the
module's `locals` are evaluated for sample inputs (a small evaluator for the few expression shapes
they use; an unknown shape fails the test, so it is kept in step), then the binary loads and
validates them (`data-backup lifecycle --format gcs` loads the whole configuration and writes nothing)."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import MODULE, blocks, data_backup_bin, parse_tf, tf_files

# Sample values of what the module computes from resources; variables take their defaults except these.
RESOURCES = {
    "local.invoker": "data-backup-invoker@ops-prod.iam.gserviceaccount.com",
    "local.service_url": "https://data-backup-123456789012.europe-west1.run.app",
    "local.queue_id": "projects/ops-prod/locations/europe-west1/queues/data-backup-exports",
    "local.topic_id": "projects/ops-prod/topics/data-backup-reports",
    "local.folder_names": ["folders/234567890123", "folders/345678901234"],
    "google_storage_bucket.backups.name": "example-org-data-backup",
}
VARIABLES = {
    "projects": ["billing-prod", "crm-prod"],
    "exclude_patterns": ["*-dev-*/*/*", "*/*/scratch_*"],
    "operator_emails": ["ops-oncall@example.org", "ops-bot@ops-prod.iam.gserviceaccount.com"],
}


def defaults() -> dict:
    values = {}
    for name, body in blocks(MODULE, "variable").items():
        value = body.get("default")
        values[name] = value[1:-1] if isinstance(value, str) and value.startswith('"') else value
    values.update(VARIABLES)
    return values


def locals_() -> dict:
    merged: dict = {}
    for path in tf_files(MODULE):
        for block in parse_tf(path).get("locals", []):
            merged.update(block)
    return merged


def split_top(text: str, sep: str = ",") -> list[str]:
    """Split at `sep` outside quotes, brackets and interpolations."""
    parts, depth, quoted, current, i = [], 0, False, "", 0
    while i < len(text):
        c = text[i]
        if quoted:
            current += c
            if c == "\\":
                current += text[i + 1]
                i += 1
            elif c == '"':
                quoted = False
        elif c == '"':
            quoted, current = True, current + c
        elif c in "([{":
            depth, current = depth + 1, current + c
        elif c in ")]}":
            depth, current = depth - 1, current + c
        elif c == sep and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += c
        i += 1
    if current.strip():
        parts.append(current.strip())
    return parts


class Evaluator:
    def __init__(self):
        self.var = defaults()
        self.local = locals_()

    def ref(self, name: str):
        if name in RESOURCES:
            return RESOURCES[name]
        if name.startswith("var."):
            return self.var[name[4:]]
        raise AssertionError(f"the evaluator does not know `{name}`: add a sample value to RESOURCES")

    def expr(self, e: str):
        e = e.strip()
        if m := re.fullmatch(r"(var|local)\.\w+|google_storage_bucket\.backups\.name", e):
            if e.startswith("local.") and e not in RESOURCES:
                return self.value(self.local[e[6:]])
            return self.ref(e)
        if m := re.fullmatch(r"tostring\((.*)\)", e):
            v = self.expr(m.group(1))
            return str(v).lower() if isinstance(v, bool) else str(v)
        if m := re.fullmatch(r"jsonencode\((.*)\)", e):
            return json.dumps(self.expr(m.group(1)), separators=(",", ":"))  # as terraform writes it
        if m := re.fullmatch(r"\[(.*)\]", e):
            return [self.expr(x) for x in split_top(m.group(1))]
        if re.fullmatch(r"\d+", e):
            return int(e)
        if m := re.fullmatch(r"(max|min)\((.*)\)", e):
            args = [self.expr(x) for x in split_top(m.group(2))]
            return max(args) if m.group(1) == "max" else min(args)
        if m := re.fullmatch(r"(.+) - (\d+)", e):
            return self.expr(m.group(1)) - int(m.group(2))
        if m := re.fullmatch(r"(.*?) \? (.*) : null", e, re.S):
            return self.expr(m.group(2)) if self.expr(m.group(1)) else None
        if m := re.fullmatch(r"length\((.*)\) > 0", e):
            return len(self.expr(m.group(1))) > 0
        if m := re.fullmatch(r"join\(\"(.*?)\", compact\(\[(.*)\]\)\)", e, re.S):
            items = [self.element(x) for x in split_top(m.group(2))]
            return m.group(1).join(x for x in items if x)
        if e.startswith('"') and e.endswith('"'):
            return self.template(e[1:-1])
        raise AssertionError(f"the evaluator does not know the expression `{e}`")

    def element(self, e: str) -> str:
        if m := re.fullmatch(r'(.*?) \? (".*") : ""', e):
            return self.expr(m.group(2)) if self.expr(m.group(1)) else ""
        return self.expr(e)

    def template(self, body: str) -> str:
        out, i = "", 0
        while i < len(body):
            if body.startswith("${", i):
                depth, j = 1, i + 2
                while depth:
                    depth += {"{": 1, "}": -1}.get(body[j], 0)
                    j += 1
                v = self.expr(body[i + 2 : j - 1])
                out += str(v).lower() if isinstance(v, bool) else str(v)
                i = j
            elif body.startswith('\\"', i):
                out, i = out + '"', i + 2
            else:
                out, i = out + body[i], i + 1
        return out

    def value(self, v):
        if isinstance(v, str):
            if v.startswith("${") and v.endswith("}") and v.count("${") == 1:
                return self.expr(v[2:-1])
            return self.template(v[1:-1]) if v.startswith('"') else self.template(v)
        return v


@pytest.fixture(scope="module")
def service_env() -> dict[str, str]:
    ev = Evaluator()
    env = {}
    for key in ("env_base", "env_optional"):
        for name, value in ev.local[key].items():
            v = ev.value(value)
            if v is not None:
                env[name] = v
    return env


def test_the_evaluated_environment_looks_right(service_env):
    assert service_env["DATA_BACKUP_STORE__URL"] == "gs://example-org-data-backup"
    assert service_env["DATA_BACKUP_QUEUE__TARGET_URL"] == RESOURCES["local.service_url"] + "/export"
    assert service_env["DATA_BACKUP_SOURCES"] == (
        '[{name="gcp",kind="gcp",folders=["folders/234567890123","folders/345678901234"],'
        'projects=["billing-prod","crm-prod"],strategy="walk",include_replicas=false,'
        "include_stopped=false,keep_postgres_database=false}]"
    )
    assert service_env["DATA_BACKUP_HTTP__LONG_REQUEST_TIMEOUT_SECS"] == "1790"
    assert json.loads(service_env["DATA_BACKUP_AUTH__ROUTE_EMAILS__EXPORT"]) == [RESOURCES["local.invoker"]]
    assert service_env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://localhost:4318"


def test_the_service_accepts_the_environment_the_module_sets(service_env):
    binary = data_backup_bin()
    if binary is None:
        pytest.skip("no data-backup binary (build it, or set DATA_BACKUP_BIN) to load the settings")
    with tempfile.TemporaryDirectory() as cwd:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **service_env}
        env.pop("OTEL_EXPORTER_OTLP_ENDPOINT")  # nothing listens here
        out = subprocess.run(
            [str(binary), "lifecycle", "--format", "gcs"], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
        )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["lifecycle"]["rule"]

    # And a wrong value is refused, so the acceptance above means something.
    broken = {**env, "DATA_BACKUP_SOURCES": service_env["DATA_BACKUP_SOURCES"].replace("folders/234567890123", "x")}
    with tempfile.TemporaryDirectory() as cwd:
        out = subprocess.run(
            [str(binary), "lifecycle", "--format", "gcs"], cwd=cwd, env=broken, capture_output=True, text=True, timeout=60
        )
    assert out.returncode != 0 and "folders" in out.stderr, out.stderr


def test_the_service_starts_with_that_environment_and_guards_its_routes(service_env):
    binary = data_backup_bin()
    if binary is None:
        pytest.skip("no data-backup binary (build it, or set DATA_BACKUP_BIN) to start the service")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as home:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home, **service_env}
        env.pop("OTEL_EXPORTER_OTLP_ENDPOINT")
        env["DATA_BACKUP_BIND"] = f"127.0.0.1:{port}"  # as on Cloud Run, but on loopback
        proc = subprocess.Popen([str(binary), "serve"], cwd=home, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            while True:
                try:
                    assert urllib.request.urlopen(f"{base}/healthz", timeout=2).status == 200
                    break
                except (urllib.error.URLError, ConnectionError):
                    assert proc.poll() is None, "the service exited"
                    assert time.monotonic() < deadline, "no /healthz within 30 s"
                    time.sleep(0.2)
            for method, route in (("POST", "/schedule"), ("POST", "/export"), ("GET", "/status")):
                with pytest.raises(urllib.error.HTTPError) as answer:
                    urllib.request.urlopen(urllib.request.Request(base + route, method=method), timeout=5)
                assert answer.value.code == 401, route
        finally:
            proc.terminate()
            output = proc.communicate(timeout=20)[0]
    assert proc.returncode == 0, output


def copies_setting(copies_hcl: str) -> str:
    """The module's DATA_BACKUP_COPIES for `copies_hcl`, evaluated by terraform itself: its `copies`
    variable and the two locals that render it, copied verbatim into a root module of their own
    (no provider needed), and `terraform console`."""
    terraform = shutil.which("terraform")
    if terraform is None:
        pytest.skip("terraform is not on PATH")
    variables = (MODULE / "variables.tf").read_text(encoding="utf-8")
    variable = re.search(r'^variable "copies" \{\n.*?^\}\n', variables, re.S | re.M).group(0)
    main = (MODULE / "main.tf").read_text(encoding="utf-8")
    rendering = re.search(r"^  copy_tables = .*?^  copies_setting = [^\n]*\n", main, re.S | re.M).group(0)
    with tempfile.TemporaryDirectory() as root:
        Path(root, "main.tf").write_text(f"{variable}\nlocals {{\n{rendering}}}\n", encoding="utf-8")
        Path(root, "terraform.tfvars").write_text(f"copies = {copies_hcl}\n", encoding="utf-8")
        env = {**os.environ, "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1"}
        init = subprocess.run([terraform, "init", "-input=false"], cwd=root, env=env, capture_output=True, text=True, timeout=120)
        assert init.returncode == 0, init.stderr
        out = subprocess.run(
            [terraform, "console"], cwd=root, env=env, input="local.copies_setting\n", capture_output=True, text=True, timeout=120
        )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_copies_variable_becomes_a_setting_the_service_accepts(service_env):
    copies = """[
  { name = "offsite", url = "s3://acme-offsite/db \\"x\\"", options = { aws_region = "eu-central-1" }, lock = "locked",
    age_recipients = ["age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"] },
  { name = "vault", url = "az://vault", classes = ["monthly", "yearly"], keep_days = { yearly = 3650 },
    credentials = { AZURE_STORAGE_ACCOUNT_KEY = { secret = "vault-key" } } },
]"""
    wired = Evaluator().local
    assert "local.copies_setting" in wired["env_optional"]["DATA_BACKUP_COPIES"]
    assert "c.credentials" in wired["secret_env"], "each copy's credentials come from Secret Manager"
    setting = copies_setting(copies)
    assert setting == (
        '[{name="offsite",url="s3://acme-offsite/db \\"x\\"",options={aws_region="eu-central-1"},'
        'age_recipients=["age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"],lock="locked"},'
        '{name="vault",url="az://vault",classes=["monthly","yearly"],retention={yearly={keep_days=3650}}}]'
    ), "no credential reaches the plain environment"
    binary = data_backup_bin()
    if binary is None:
        pytest.skip("no data-backup binary (build it, or set DATA_BACKUP_BIN) to load the settings")

    def load(value: str) -> subprocess.CompletedProcess:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **service_env, "DATA_BACKUP_COPIES": value}
        env.pop("OTEL_EXPORTER_OTLP_ENDPOINT")
        with tempfile.TemporaryDirectory() as cwd:
            return subprocess.run(
                [str(binary), "lifecycle", "--format", "gcs"], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
            )

    out = load(setting)
    assert out.returncode == 0, out.stderr
    # The service reads it: the same setting with a class it does not know is refused.
    out = load(setting.replace('"yearly"', '"hourly"'))
    assert out.returncode != 0 and "copies[1].classes" in out.stderr, out.stderr
