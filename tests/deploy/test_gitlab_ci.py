""".gitlab-ci.yml: parses, and its structure is the release flow docs/deploy.md describes: stages in
order, merge requests checked and planned, the image built with a maintained builder and pushed,
the plan applied to staging automatically and to production by hand, each environment with its own
state, releases prepared by release-plz and made with glab, and no deprecated image."""

from __future__ import annotations

import re
import tomllib

import pytest
import yaml

from conftest import REPO

CI = REPO / ".gitlab-ci.yml"
KEYWORDS = {"stages", "variables", "workflow", "default", "include", "image", "services", "cache", "before_script", "after_script"}
EXPECTED_JOBS = {
    "fmt", "clippy", "deny", "test", "openapi", "terraform", "checkov",
    "build-image", "push-image",
    "plan-staging", "apply-staging", "plan-production", "apply-production",
    "release-mr", "release-tag", "release",
}
# The order the stages must keep: nothing is built before it is tested, applied before it is
# planned, or reaches production before staging.
STAGE_ORDER = ["lint", "test", "build", "plan", "staging", "production"]
ENVIRONMENTS = ["staging", "production"]
# Images that are archived or replaced: kaniko (archived), release-cli (glab replaces it), GitLab's
# Terraform images and templates (deprecated), and any unpinned `latest`.
DEPRECATED_IMAGES = [
    r"kaniko",
    r"gitlab-org/release-cli",
    r"gitlab-org/terraform-images",
    r"gitlab-terraform",
    r":latest$",
]


@pytest.fixture(scope="module")
def ci() -> dict:
    return yaml.safe_load(CI.read_text(encoding="utf-8"))


def jobs(ci: dict) -> dict[str, dict]:
    return {k: v for k, v in ci.items() if k not in KEYWORDS and not k.startswith(".") and isinstance(v, dict)}


def deep_merge(base: dict, over: dict) -> dict:
    """GitLab's `extends` merge: mappings merge key by key, anything else (lists too) is replaced."""
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def resolved(ci: dict, name: str) -> dict:
    """A job with its `extends` templates merged in, as GitLab does."""
    job = ci[name]
    merged: dict = {}
    extends = job.get("extends", [])
    for parent in [extends] if isinstance(extends, str) else extends:
        merged = deep_merge(merged, resolved(ci, parent))
    return deep_merge(merged, job)


def script(job: dict) -> str:
    parts = []
    for key in ("before_script", "script"):
        value = job.get(key, [])
        parts += value if isinstance(value, list) else [value]
    return "\n".join(parts)


def image_of(ci: dict, job: dict) -> str:
    """The job's image with `$VARIABLE`s of the pipeline's `variables` expanded."""
    image = job.get("image", ci.get("image", ""))
    image = image["name"] if isinstance(image, dict) else image
    return re.sub(r"\$\{?(\w+)\}?", lambda m: str(ci.get("variables", {}).get(m.group(1), m.group(0))), image)


def needs(job: dict) -> list[str]:
    return [n if isinstance(n, str) else n["job"] for n in job.get("needs", [])]


def rules(job: dict) -> list[dict]:
    return [r for r in job.get("rules", []) if r.get("when") != "never"]


def env_name(job: dict) -> str | None:
    env = job.get("environment")
    return env if isinstance(env, str) or env is None else env["name"]


# --- structure ------------------------------------------------------------------------------------

def test_the_expected_jobs_exist_in_declared_stages(ci):
    found = jobs(ci)
    assert EXPECTED_JOBS <= set(found), f"missing: {EXPECTED_JOBS - set(found)}"
    for name in found:
        assert resolved(ci, name).get("stage") in ci["stages"], f"{name}: undeclared stage"


def test_the_stages_are_in_order(ci):
    stages = ci["stages"]
    assert [s for s in stages if s in STAGE_ORDER] == STAGE_ORDER, stages
    assert stages.index("release") > stages.index("build")


def test_every_need_names_a_job_of_the_same_or_an_earlier_stage(ci):
    stages = ci["stages"]
    for name in jobs(ci):
        job = resolved(ci, name)
        for need in needs(job):
            assert need in jobs(ci), f"{name} needs {need}, which does not exist"
            assert stages.index(resolved(ci, need)["stage"]) <= stages.index(job["stage"]), f"{name} needs the later {need}"


def test_no_job_uses_a_deprecated_or_unpinned_image(ci):
    for name in jobs(ci):
        job = resolved(ci, name)
        image = image_of(ci, job)
        assert image and "$" not in image, f"{name}: image {image!r} is not set by the pipeline"
        assert ":" in image.rsplit("/", 1)[-1], f"{name}: image {image} has no tag"
        for pattern in DEPRECATED_IMAGES:
            assert not re.search(pattern, image), f"{name}: deprecated image {image}"
        assert "release" not in job, f"{name}: the release keyword runs release-cli"
        assert "/kaniko/" not in script(job) and "release-cli" not in script(job), name


def test_the_rust_image_is_the_pinned_toolchain(ci):
    channel = tomllib.loads((REPO / "rust-toolchain.toml").read_text())["toolchain"]["channel"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", channel), "rust-toolchain.toml pins an exact release"
    assert ci["variables"]["RUST_IMAGE"].startswith(f"rust:{channel}-")
    assert re.search(rf"^ARG RUST_VERSION={re.escape(channel)}$", (REPO / "Dockerfile").read_text(), re.M)


# --- checks ---------------------------------------------------------------------------------------

def test_tests_run_the_test_command_against_postgresql_and_mariadb_services(ci):
    job = resolved(ci, "test")
    images = " ".join(s["name"] if isinstance(s, dict) else s for s in job["services"])
    assert re.search(r"\bpostgres:\d+", images) and re.search(r"\bmariadb:\d+", images)
    assert "bash scripts/test.sh" in script(job)


def test_lint_jobs_deny_warnings_check_formatting_and_run_cargo_deny(ci):
    assert "cargo fmt --all -- --check" in script(resolved(ci, "fmt"))
    assert "cargo clippy --all-targets --locked -- -D warnings" in script(resolved(ci, "clippy"))
    deny = resolved(ci, "deny")
    assert "scripts/deny.sh" in script(deny)
    assert deny["variables"].get("DENY_REQUIRE_ADVISORIES") == "1", "where the network is, advisories must be checked"


def test_openapi_drift_runs_the_openapi_test(ci):
    assert re.search(r"cargo test .*--test it .*openapi", script(resolved(ci, "openapi")))


def test_terraform_job_checks_formatting_and_validates(ci):
    text = script(resolved(ci, "terraform"))
    assert "terraform fmt -check -recursive" in text
    assert "init -backend=false" in text and "validate" in text


def test_checkov_job_scans_terraform_and_the_dockerfile(ci):
    text = script(resolved(ci, "checkov"))
    assert "checkov" in text and "terraform" in text and "Dockerfile" in text


# --- the image ------------------------------------------------------------------------------------

def runs_on_default_branch(job: dict) -> bool:
    return any("$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH" in r.get("if", "") for r in rules(job))


def runs_on_release_tags(job: dict) -> bool:
    return any("$CI_COMMIT_TAG =~ /^v" in r.get("if", "") for r in rules(job))


def runs_on_merge_requests(job: dict) -> bool:
    return any("merge_request_event" in r.get("if", "") for r in rules(job))


def test_the_image_is_built_with_buildkit_rootless_on_the_default_branch_and_tags(ci):
    job = resolved(ci, "build-image")
    assert "moby/buildkit" in image_of(ci, job) and image_of(ci, job).endswith("-rootless")
    assert runs_on_default_branch(job) and runs_on_release_tags(job) and not runs_on_merge_requests(job)
    text = script(job)
    assert "buildctl-daemonless.sh build" in text and "--frontend dockerfile.v0" in text and "push=true" in text


def test_the_image_is_pushed_to_artifact_registry_by_digest(ci):
    job = resolved(ci, "push-image")
    assert needs(job) == ["build-image"]
    assert "gcrane copy" in script(job) and "$IMAGE_REPOSITORY" in script(job) and "$IMAGE_DIGEST" in script(job)
    assert "GCP_WIF_CONFIG" in script(job), "pushes as a service account through workload identity federation"


# --- plan and apply -------------------------------------------------------------------------------

@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_each_environment_is_planned_on_merge_requests_and_the_default_branch(ci, env):
    job = resolved(ci, f"plan-{env}")
    assert job["stage"] == "plan"
    assert runs_on_merge_requests(job) and runs_on_default_branch(job)
    assert "terraform plan" in script(job) and "-out=plan.cache" in script(job)
    assert any(p.endswith("plan.cache") for p in job["artifacts"]["paths"]), "the plan is an artifact"
    assert env_name(job) == env and job["environment"].get("action") == "prepare"


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_each_environment_has_its_own_state_and_variables(ci, env):
    for name in (f"plan-{env}", f"apply-{env}"):
        job = resolved(ci, name)
        assert job["variables"]["TF_STATE_NAME"] == env, name
        assert env_name(job) == env, f"{name}: environment-scoped variables (TFVARS, GCP_WIF_CONFIG) need the environment"
        text = script(job)
        assert "-backend-config" in text and "$TF_STATE_ADDRESS" in text, name
    address = resolved(ci, f"plan-{env}")["variables"]["TF_STATE_ADDRESS"]
    assert address.endswith("/terraform/state/$TF_STATE_NAME"), "a GitLab-managed state per environment"
    assert '-var-file="$TFVARS"' in script(resolved(ci, f"plan-{env}"))


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_apply_applies_the_plan_made_before_it(ci, env):
    stages = ci["stages"]
    plan, apply = resolved(ci, f"plan-{env}"), resolved(ci, f"apply-{env}")
    assert f"plan-{env}" in needs(apply)
    assert stages.index(plan["stage"]) < stages.index(apply["stage"])
    text = script(apply)
    assert re.search(r"terraform apply .*plan\.cache", text)
    assert "terraform plan" not in text and "-auto-approve" not in text
    assert runs_on_default_branch(apply) and not runs_on_merge_requests(apply) and not runs_on_release_tags(apply)
    assert apply.get("resource_group") == env, "one apply at a time per environment"


def test_staging_is_applied_automatically(ci):
    job = resolved(ci, "apply-staging")
    assert job["stage"] == "staging"
    assert all(r.get("when", "on_success") == "on_success" for r in rules(job)) and job.get("when") != "manual"


def test_production_is_applied_by_hand_after_staging(ci):
    job = resolved(ci, "apply-production")
    assert job["stage"] == "production"
    assert rules(job) and all(r.get("when") == "manual" for r in rules(job)), "production is a play button"
    assert "apply-staging" in needs(job)
    assert job["environment"].get("deployment_tier") == "production"


def test_the_default_branch_deploys_the_image_it_built(ci):
    plan = resolved(ci, "plan-staging")
    assert "push-image" in needs(plan)
    assert "TF_VAR_image" in script(plan) and "$IMAGE" in script(plan)


# --- release --------------------------------------------------------------------------------------

def test_release_plz_keeps_the_release_merge_request_and_tags_it(ci):
    config = tomllib.loads((REPO / "release-plz.toml").read_text())["workspace"]
    assert config["git_tag_name"] == "v{{ version }}" and config["publish"] is False and config["git_only"] is True
    assert config["pr_draft"] is True and config["release_always"] is False
    assert config["git_release_enable"] is False, "the tag pipeline makes the release, once the image exists"
    mr, tag = resolved(ci, "release-mr"), resolved(ci, "release-tag")
    assert "release-plz release-pr --forge gitlab" in script(mr)
    assert "release-plz release --forge gitlab" in script(tag)
    for job in (mr, tag):
        assert runs_on_default_branch(job) and not runs_on_merge_requests(job)
        assert "$RELEASE_TOKEN" in script(job), "a job token's tag would start no pipeline"
    # The tags release-plz makes are the ones the tag pipeline builds and releases.
    tag = config["git_tag_name"].replace("{{ version }}", "1.2.3")
    for name in ("build-image", "push-image", "release"):
        patterns = [m.group(1) for r in rules(resolved(ci, name)) if (m := re.search(r"\$CI_COMMIT_TAG =~ /(.+)/", r.get("if", "")))]
        assert patterns and all(re.fullmatch(p, tag) for p in patterns), name


def test_a_release_is_made_with_glab_after_the_image(ci):
    job = resolved(ci, "release")
    assert "gitlab-org/cli" in image_of(ci, job)
    assert runs_on_release_tags(job) and not runs_on_default_branch(job)
    assert "build-image" in needs(job)
    assert 'glab release create "$CI_COMMIT_TAG"' in script(job)


def test_every_repository_path_a_job_names_exists(ci):
    text = "\n".join(script(resolved(ci, name)) for name in jobs(ci))
    for path in set(re.findall(r"\b((?:scripts|terraform|tests)/[\w./-]+|Dockerfile)\b", text)):
        assert (REPO / path).exists(), f".gitlab-ci.yml names {path}, which does not exist"
    assert (REPO / resolved(ci, "plan-staging")["variables"].get("TF_ROOT", ci["variables"]["TF_ROOT"])).is_dir()
