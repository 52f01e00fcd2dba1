"""terraform/: the module and its example root parse, are documented, wire only settings the service
knows, keep the lifecycle rules the binary renders, and pass checkov and `terraform fmt`."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import (
    EXAMPLE,
    MODULE,
    REPO,
    blocks,
    data_backup_bin,
    module_text,
    parse_tf,
    resources,
    tf_files,
    tool,
    unquote,
)

DOCS = REPO / "docs" / "deploy.md"
BEGIN = "# BEGIN data-backup lifecycle --format terraform"
END = "# END data-backup lifecycle --format terraform"


def all_tf_files() -> list[Path]:
    return sorted((REPO / "terraform").rglob("*.tf"))


def test_every_terraform_file_parses():
    files = all_tf_files()
    assert len(files) >= 8, files
    for path in files:
        parse_tf(path)  # raises on a syntax error


@pytest.mark.parametrize("directory", [MODULE, EXAMPLE], ids=["module", "example"])
def test_every_variable_has_a_type_and_a_description(directory):
    variables = blocks(directory, "variable")
    assert variables
    for name, body in variables.items():
        assert "type" in body, f"variable {name} has no type"
        description = unquote(body.get("description", ""))
        assert len(description) > 10, f"variable {name} has no description"


@pytest.mark.parametrize("directory", [MODULE, EXAMPLE], ids=["module", "example"])
def test_every_output_has_a_description(directory):
    for name, body in blocks(directory, "output").items():
        assert len(unquote(body.get("description", ""))) > 10, f"output {name} has no description"


def test_the_module_declares_every_variable_it_uses_and_uses_every_one_it_declares():
    declared = set(blocks(MODULE, "variable"))
    used = set(re.findall(r"\bvar\.([a-z_][a-z0-9_]*)", module_text()))
    assert used - declared == set(), "used but not declared"
    assert declared - used == set(), "declared but never used"


def test_the_docs_describe_every_module_variable_and_output():
    docs = DOCS.read_text(encoding="utf-8")
    for kind in ("variable", "output"):
        for name in blocks(MODULE, kind):
            assert f"`{name}`" in docs, f"docs/deploy.md does not describe the {kind} `{name}`"


def test_the_example_passes_declared_variables_and_every_required_one():
    module_vars = blocks(MODULE, "variable")
    calls = blocks(EXAMPLE, "module")
    assert set(calls) == {"data_backup"}
    call = calls["data_backup"]
    assert unquote(call["source"]) == "../../modules/data-backup"
    assert (EXAMPLE / "../../modules/data-backup").resolve() == MODULE
    args = {k for k in call if not k.startswith("__") and k not in ("source", "providers", "depends_on")}
    assert args - set(module_vars) == set(), "the example passes variables the module does not declare"
    required = {name for name, body in module_vars.items() if "default" not in body}
    assert required - args == set(), "the example leaves required variables out"
    example_vars = set(blocks(EXAMPLE, "variable"))
    used = set(re.findall(r"\bvar\.([a-z_][a-z0-9_]*)", "\n".join(p.read_text() for p in tf_files(EXAMPLE))))
    assert used == example_vars


def test_the_tfvars_example_sets_only_declared_variables():
    text = (EXAMPLE / "terraform.tfvars.example").read_text(encoding="utf-8")
    names = set(re.findall(r"^([a-z_]+)\s*=", text, re.M))
    assert names and names <= set(blocks(EXAMPLE, "variable"))


# --- The service's settings ----------------------------------------------------------------------

def module_locals() -> dict:
    merged: dict = {}
    for path in tf_files(MODULE):
        for block in parse_tf(path).get("locals", []):
            merged.update({k: v for k, v in block.items() if not k.startswith("__")})
    return merged


def field_type(schema: dict, struct: str, field: str) -> str | None:
    return schema.get(struct, {}).get(field)


def struct_of(type_text: str) -> str:
    """`Vec<SourceSettings>` / `Option<Foo>` / `Foo` → the innermost struct name."""
    return re.findall(r"\w+", type_text)[-1]


# Variables the service reads that are not settings (README "Configuration"; src/telemetry.rs).
NOT_SETTINGS = {"DATA_BACKUP_LOG_FORMAT", "DATA_BACKUP_CONFIG"}


def test_the_service_environment_names_only_known_settings(settings_schema):
    loc = module_locals()
    names = [k for k in {**loc["env_base"], **loc["env_optional"]} if k.startswith("DATA_BACKUP_")]
    assert "DATA_BACKUP_STORE__URL" in names
    unknown = []
    for name in names:
        if name in NOT_SETTINGS:
            continue
        path = name.removeprefix("DATA_BACKUP_").lower().split("__")
        struct = "Settings"
        for i, segment in enumerate(path):
            t = field_type(settings_schema, struct, segment)
            if t is None:
                unknown.append(name)
                break
            if t.startswith("BTreeMap<") and i == len(path) - 2:
                break  # a map keyed by the last segment (auth.route_emails.<route>)
            struct = struct_of(t)
    assert unknown == [], f"not settings of src/settings/: {unknown}"


def test_the_gcp_source_sets_only_known_keys(settings_schema):
    text = module_locals()["gcp_source"]
    keys = re.findall(r'"(\w+)=', text)
    assert {"name", "kind", "folders", "projects", "strategy"} <= set(keys)
    known = set(settings_schema["GcpSourceSettings"])
    assert set(keys) - known == set()


def test_cloud_run_and_the_queue_fit_the_export_wait():
    variables = blocks(MODULE, "variable")
    wait = variables["export_wait_secs"]["default"]
    timeout = variables["request_timeout_secs"]["default"]
    # Cloud Tasks waits 10 minutes for an answer (the service sets no dispatch deadline), Cloud Run
    # at most 3600 s; the service answers 503 at the end of the wait, 30 s before its own limit.
    assert wait + 60 <= timeout <= 3600
    assert wait < 600
    run = resources(MODULE)[("google_cloud_run_v2_service", "service")]
    template = run["template"][0]
    assert template["timeout"] == '"${var.request_timeout_secs}s"'
    assert template["scaling"][0]["min_instance_count"] == 0
    env = module_locals()["env_base"]
    assert "var.request_timeout_secs - 10" in env["DATA_BACKUP_HTTP__LONG_REQUEST_TIMEOUT_SECS"]
    assert "var.export_wait_secs" in env["DATA_BACKUP_EXPORT__WAIT_SECS"]
    job = resources(MODULE)[("google_cloud_scheduler_job", "schedule")]
    assert "min(var.request_timeout_secs, 1800)" in job["attempt_deadline"]


def test_scheduler_and_tasks_call_with_the_invoker_and_the_service_url_as_audience():
    res = resources(MODULE)
    target = res[("google_cloud_scheduler_job", "schedule")]["http_target"][0]
    assert unquote(target["http_method"]) == "POST"
    assert target["uri"].endswith('/schedule"')
    oidc = target["oidc_token"][0]
    assert oidc["service_account_email"] == "${local.invoker}"
    assert oidc["audience"] == "${local.service_url}"
    env = module_locals()["env_base"]
    assert env["DATA_BACKUP_QUEUE__SERVICE_ACCOUNT"] == "${local.invoker}"
    assert env["DATA_BACKUP_QUEUE__AUDIENCE"] == env["DATA_BACKUP_AUTH__OIDC_AUDIENCE"] == "${local.service_url}"
    queue = res[("google_cloud_tasks_queue", "exports")]
    assert queue["retry_config"][0]["max_retry_duration"] == '"${var.task_max_retry_duration_secs}s"'


def test_the_bucket_is_private_uniform_and_soft_deleting():
    bucket = resources(MODULE)[("google_storage_bucket", "backups")]
    assert bucket["uniform_bucket_level_access"] is True
    assert unquote(bucket["public_access_prevention"]) == "enforced"
    assert bucket["force_destroy"] is False
    assert bucket["soft_delete_policy"]
    dynamic = {unquote(k) for d in bucket["dynamic"] for k in d}
    assert {"retention_policy", "encryption", "logging"} <= dynamic


def test_the_alerts_of_the_runbooks_exist():
    res = resources(MODULE)
    policies = {name for (rtype, name) in res if rtype == "google_monitoring_alert_policy"}
    assert policies == {"scheduler_failure", "export_errors", "exports_not_running", "not_fresh"}
    metrics = {name for (rtype, name) in res if rtype == "google_logging_metric"}
    assert metrics == {"export_failed_attempts", "export_failures_reported", "scheduler_failures"}
    docs = DOCS.read_text(encoding="utf-8")
    for name in policies:
        title = unquote(res[("google_monitoring_alert_policy", name)]["display_name"]).split(": ", 1)[1]
        assert title.lower() in docs.lower(), f"docs/deploy.md has no runbook for `{title}`"
        assert res[("google_monitoring_alert_policy", name)]["documentation"], f"{name} has no documentation"


def test_the_service_url_is_an_output():
    assert "service_url" in blocks(MODULE, "output")
    assert "service_url" in blocks(EXAMPLE, "output")


# --- Lifecycle rules: rendered by the binary, never by hand --------------------------------------

def lifecycle_block() -> str:
    text = (MODULE / "bucket.tf").read_text(encoding="utf-8")
    start, end = text.index(BEGIN), text.index(END)
    lines = text[start:end].splitlines()[1:]
    return "\n".join(line[2:] if line.startswith("  ") else line for line in lines) + "\n"


def lifecycle_render_env() -> dict[str, str]:
    """The settings the block was rendered with, from its BEGIN line (`…, rendered with: K=V K=V`)."""
    text = (MODULE / "bucket.tf").read_text(encoding="utf-8")
    line = text[text.index(BEGIN):].splitlines()[0]
    settings = dict(word.split("=", 1) for word in line.split("rendered with:", 1)[1].split())
    assert "DATA_BACKUP_STORE__URL" in settings and all(k.startswith("DATA_BACKUP_") for k in settings)
    return settings


def test_the_lifecycle_block_holds_only_rendered_rules():
    block = lifecycle_block()
    code = [line for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert code[0] == "lifecycle_rule {"
    prefixes = re.findall(r'matches_prefix = \["([a-z]+)/"\]', block)
    assert sorted(prefixes) == sorted(["daily", "weekly", "monthly", "quarterly", "yearly"])


def test_the_service_gets_the_retention_the_rules_were_rendered_with():
    rendered = {k: v for k, v in lifecycle_render_env().items() if k.startswith("DATA_BACKUP_RETENTION__")}
    service = {k: unquote(v) for k, v in module_locals()["env_retention"].items()}
    assert service == rendered, "local.env_retention (main.tf) and bucket.tf's BEGIN line must name the same settings"


def test_the_lifecycle_rules_equal_a_fresh_render():
    binary = data_backup_bin()
    if binary is None:
        pytest.skip("no data-backup binary (build it, or set DATA_BACKUP_BIN) to render the lifecycle rules")
    with tempfile.TemporaryDirectory() as cwd:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **lifecycle_render_env()}
        out = subprocess.run(
            [str(binary), "lifecycle", "--format", "terraform"],
            cwd=cwd, env=env, capture_output=True, text=True, timeout=60,
        )
    assert out.returncode == 0, out.stderr
    block = lifecycle_block()
    assert out.stdout in block, (
        "terraform/modules/data-backup/bucket.tf's lifecycle rules differ from "
        "`data-backup lifecycle --format terraform` with the settings of its BEGIN line: render again and "
        "paste the output between the BEGIN and END markers (indented by two spaces)\n" + out.stdout
    )
    extra = [line for line in block.replace(out.stdout, "").splitlines() if line.strip() and not line.startswith("#")]
    assert extra == [], "the lifecycle block holds more than the render"


# --- Tools -----------------------------------------------------------------------------------------

def test_every_checkov_skip_gives_its_reason():
    skips = re.findall(r"#\s*checkov:skip=([A-Z_0-9]+)(?::(.*))?", module_text() + (REPO / "Dockerfile").read_text())
    for check, reason in skips:
        assert reason and len(reason.split()) >= 5, f"the skip of {check} gives no reason"


def test_checkov_finds_no_failed_check():
    checkov = tool("DEPLOY_CHECKOV", "checkov")
    if checkov is None:
        pytest.skip("checkov is not installed (scripts/deploy-checks.sh installs it)")
    failed = []
    for args in (["-d", "terraform", "--framework", "terraform"], ["-f", "Dockerfile", "--framework", "dockerfile"]):
        out = subprocess.run(
            [checkov, *args, "--skip-download", "-o", "json"],
            cwd=REPO, capture_output=True, text=True, timeout=300,
        )
        assert out.stdout.strip(), out.stderr[-2000:]
        reports = json.loads(out.stdout)
        for report in reports if isinstance(reports, list) else [reports]:
            summary = report.get("summary", {})
            assert summary.get("passed", 0) + summary.get("skipped", 0) > 0, f"checkov checked nothing: {args}"
            failed += [
                f"{c['check_id']} {c['resource']} {c['file_path']}"
                for c in report.get("results", {}).get("failed_checks", [])
            ]
    assert failed == []


def terraform() -> str:
    binary = shutil.which("terraform")
    if binary is None:
        pytest.skip("terraform is not installed (CI's terraform job runs fmt and validate)")
    return binary


def test_terraform_fmt_has_nothing_to_change():
    out = subprocess.run(
        [terraform(), "fmt", "-check", "-recursive", "-diff", "terraform"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_terraform_validate_accepts_the_example():
    binary = terraform()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "terraform"
        shutil.copytree(REPO / "terraform", work, ignore=shutil.ignore_patterns(".terraform", "*.tfstate*"))
        root = work / "examples" / "organisation"
        init = subprocess.run(
            [binary, "init", "-backend=false", "-input=false", "-no-color"],
            cwd=root, capture_output=True, text=True, timeout=120,
        )
        if init.returncode != 0:
            pytest.skip("the Google provider cannot be installed here (no registry access); CI's terraform job validates")
        out = subprocess.run(
            [binary, "validate", "-no-color"], cwd=root, capture_output=True, text=True, timeout=120,
        )
        assert out.returncode == 0, out.stdout + out.stderr


def test_scheduler_jobs_send_their_scope_as_the_schedule_body_with_the_fields_the_service_reads():
    res = resources(MODULE)
    main = res[("google_cloud_scheduler_job", "schedule")]["http_target"][0]
    assert "jsonencode(var.schedule_scope)" in main["body"]
    scoped = res[("google_cloud_scheduler_job", "scoped")]
    assert scoped["for_each"] == "${var.extra_schedules}"
    target = scoped["http_target"][0]
    assert target["uri"].endswith('/schedule"')
    assert "jsonencode(each.value.scope)" in target["body"]
    assert target["oidc_token"][0]["service_account_email"] == "${local.invoker}"
    # The scope object's attributes are exactly RunScope's fields (src/runs/scope.rs).
    source = (REPO / "src" / "runs" / "scope.rs").read_text(encoding="utf-8")
    struct = source.split("pub struct RunScope {", 1)[1].split("\n}", 1)[0]
    fields = set(re.findall(r"^\s*pub (\w+):", struct, re.M))
    variables = blocks(MODULE, "variable")
    for name in ("schedule_scope", "extra_schedules"):
        declared = set(re.findall(r"(\w+)\s*=\s*optional\(", str(variables[name]["type"])))
        assert declared == fields, (name, declared, fields)
    # The failure alert watches every job that POSTs /schedule.
    metric = res[("google_logging_metric", "scheduler_failures")]
    assert "job_id=~" in metric["filter"]


def test_the_service_gets_the_follow_up_settings_and_no_description_promises_503_polling():
    env = module_locals()["env_base"]
    for key in ("FOLLOW_UP", "FOLLOW_UP_MIN_SECS", "FOLLOW_UP_MAX_SECS", "FOLLOW_UP_DEFAULT_SECS", "FOLLOW_UP_MAX_CHECKS"):
        assert f"var.export_{key.lower()}" in env[f"DATA_BACKUP_EXPORT__{key}"], key
    variables = blocks(MODULE, "variable")
    assert variables["export_follow_up"]["default"] is True
    for name in ("export_wait_secs", "task_max_retry_duration_secs", "concurrency"):
        description = variables[name]["description"]
        assert "follow-up" in description, f"`{name}` still describes 503 polling: {description}"
    res = resources(MODULE)
    errors = res[("google_monitoring_alert_policy", "export_errors")]["documentation"][0]["content"]
    assert "follow_ups_exhausted" in errors and "never an error" in errors
    fresh = res[("google_monitoring_alert_policy", "not_fresh")]["documentation"][0]["content"]
    assert "reason" in fresh and "follow_ups_exhausted" in fresh
    # Waiting is logged at INFO: the log-based metrics behind the alerts count ERROR entries only.
    assert "severity>=ERROR" in module_locals()["run_logs"]


def test_the_export_job_runs_the_service_image_with_its_settings_and_the_service_may_run_it():
    def bare(v):
        return v.strip('"') if isinstance(v, str) else v

    res = resources(MODULE)
    job = res[("google_cloud_run_v2_job", "export")]
    assert bare(job["count"]) == "${var.export_job ? 1 : 0}"
    assert bare(job["name"]) == "${var.name}-export"
    task = job["template"][0]["template"][0]
    container = task["containers"][0]
    assert bare(container["image"]) == "${var.image}"
    assert [bare(a) for a in container["args"]] == ["export"]
    assert bare(task["service_account"]) == "${google_service_account.runtime.email}"
    assert task["max_retries"] == 0
    assert "local.env" in str(container["dynamic"])
    grant = res[("google_cloud_run_v2_job_iam_member", "runtime_runs_export")]
    assert bare(grant["role"]) == "roles/run.developer"
    assert bare(grant["member"]) == "${google_service_account.runtime.member}"
    env = module_locals()
    assert "local.export_job_id" in env["env_optional"]["DATA_BACKUP_EXPORT__JOB"]
    assert bare(env["export_job_id"]).endswith("/jobs/${var.name}-export")
    assert "var.export_job_after_secs" in env["env_base"]["DATA_BACKUP_EXPORT__JOB_AFTER_SECS"]
