""".gitlab-ci.yml: parses, has the expected jobs, and each runs what its name says."""

from __future__ import annotations

import re

import pytest
import yaml

from conftest import REPO

CI = REPO / ".gitlab-ci.yml"
EXPECTED_JOBS = {"fmt", "clippy", "test", "openapi", "terraform", "checkov", "build-image", "release"}
KEYWORDS = {"stages", "variables", "workflow", "default", "include", "image", "services", "cache", "before_script", "after_script"}


@pytest.fixture(scope="module")
def ci() -> dict:
    return yaml.safe_load(CI.read_text(encoding="utf-8"))


def jobs(ci: dict) -> dict[str, dict]:
    return {k: v for k, v in ci.items() if k not in KEYWORDS and not k.startswith(".") and isinstance(v, dict)}


def script(job: dict) -> str:
    parts = []
    for key in ("before_script", "script"):
        value = job.get(key, [])
        parts += value if isinstance(value, list) else [value]
    return "\n".join(parts)


def resolved(ci: dict, name: str) -> dict:
    """A job with its `extends` templates merged in (one level of keys, as GitLab does)."""
    job = ci[name]
    merged: dict = {}
    extends = job.get("extends", [])
    for parent in [extends] if isinstance(extends, str) else extends:
        merged.update(resolved(ci, parent))
    merged.update(job)
    return merged


def test_the_expected_jobs_exist_in_declared_stages(ci):
    found = jobs(ci)
    assert EXPECTED_JOBS <= set(found)
    for name in found:
        assert resolved(ci, name).get("stage") in ci["stages"], f"{name}: undeclared stage"


def test_tests_run_the_test_command_against_postgresql_and_mariadb_services(ci):
    job = resolved(ci, "test")
    images = " ".join(s["name"] if isinstance(s, dict) else s for s in job["services"])
    assert re.search(r"\bpostgres:\d+", images) and re.search(r"\bmariadb:\d+", images)
    assert "bash scripts/test.sh" in script(job)


def test_lint_jobs_deny_warnings_and_check_formatting(ci):
    assert "cargo fmt --all -- --check" in script(resolved(ci, "fmt"))
    assert "cargo clippy --all-targets --locked -- -D warnings" in script(resolved(ci, "clippy"))


def test_openapi_drift_runs_the_openapi_test(ci):
    assert re.search(r"cargo test .*--test it .*openapi", script(resolved(ci, "openapi")))


def test_terraform_job_checks_formatting_and_validates(ci):
    text = script(resolved(ci, "terraform"))
    assert "terraform fmt -check -recursive" in text
    assert "init -backend=false" in text and "validate" in text


def test_checkov_job_scans_terraform_and_the_dockerfile(ci):
    text = script(resolved(ci, "checkov"))
    assert "checkov" in text and "terraform" in text and "Dockerfile" in text


def on_release_tags_only(job: dict) -> bool:
    rules = job.get("rules", [])
    return bool(rules) and all("CI_COMMIT_TAG" in r.get("if", "") for r in rules if r.get("when") != "never")


def test_the_image_is_built_with_kaniko_and_pushed_on_tags_only(ci):
    job = resolved(ci, "build-image")
    image = job["image"]["name"] if isinstance(job["image"], dict) else job["image"]
    assert "kaniko" in image
    assert on_release_tags_only(job)
    text = script(job)
    assert "/kaniko/executor" in text and "--dockerfile" in text and "--destination" in text


def test_a_release_follows_the_image(ci):
    job = resolved(ci, "release")
    assert on_release_tags_only(job)
    assert "build-image" in [n if isinstance(n, str) else n["job"] for n in job.get("needs", [])]
    assert job["release"]["tag_name"] == "$CI_COMMIT_TAG"


def test_every_repository_path_a_job_names_exists(ci):
    text = "\n".join(script(resolved(ci, name)) for name in jobs(ci))
    for path in set(re.findall(r"\b((?:scripts|terraform|tests)/[\w./-]+|Dockerfile)\b", text)):
        assert (REPO / path).exists(), f".gitlab-ci.yml names {path}, which does not exist"
