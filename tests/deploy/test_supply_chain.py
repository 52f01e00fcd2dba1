"""What the build and the deployment are pinned to: the toolchain, the licence, cargo deny's policy,
the Terraform providers' lock file, and the Terraform module's own README."""

from __future__ import annotations

import re
import tomllib

import pytest

from conftest import EXAMPLE, MODULE, REPO, blocks

CARGO = tomllib.loads((REPO / "Cargo.toml").read_text(encoding="utf-8"))


def test_the_toolchain_is_pinned_with_rustfmt_and_clippy():
    toolchain = tomllib.loads((REPO / "rust-toolchain.toml").read_text(encoding="utf-8"))["toolchain"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", toolchain["channel"]), "an exact release, not a channel"
    assert {"rustfmt", "clippy"} <= set(toolchain["components"])
    pinned = tuple(map(int, toolchain["channel"].split(".")))
    msrv = tuple(map(int, CARGO["package"]["rust-version"].split(".")))
    assert msrv <= pinned[: len(msrv)], "Cargo.toml's rust-version is newer than the pinned toolchain"


def test_the_license_file_is_the_license_cargo_toml_names():
    assert CARGO["package"]["license"] == "Apache-2.0"
    text = (REPO / "LICENSE").read_text(encoding="utf-8")
    assert re.search(r"^\s*Apache License\s*\n\s*Version 2\.0, January 2004", text, re.M)
    assert "END OF TERMS AND CONDITIONS" in text, "the whole licence, not a reference to it"


def test_cargo_deny_checks_licences_advisories_and_sources_and_warns_on_duplicates():
    deny = tomllib.loads((REPO / "deny.toml").read_text(encoding="utf-8"))
    assert deny["bans"]["multiple-versions"] == "warn"
    assert deny["licenses"]["allow"] and deny["licenses"]["unused-allowed-license"] == "deny"
    assert deny["sources"]["unknown-registry"] == "deny" and deny["sources"]["unknown-git"] == "deny"
    assert deny["advisories"]["yanked"] == "deny"
    test_sh = (REPO / "scripts" / "test.sh").read_text(encoding="utf-8")
    assert re.search(r"^\s*step deny bash scripts/deny\.sh$", test_sh, re.M), "the test command runs cargo deny"
    assert "cargo install --quiet cargo-deny --locked" in (REPO / "scripts" / "deny.sh").read_text(encoding="utf-8")


def test_the_deployed_root_commits_its_provider_lock_file():
    lock = EXAMPLE / ".terraform.lock.hcl"
    if not lock.exists():
        pytest.skip(
            f"{lock.relative_to(REPO)} is not committed yet: make it where registry.terraform.io is "
            "reachable with `terraform providers lock -platform=linux_amd64 -platform=linux_arm64 "
            "-platform=darwin_arm64` in that directory"
        )
    text = lock.read_text(encoding="utf-8")
    assert 'provider "registry.terraform.io/hashicorp/google"' in text
    assert re.search(r'"h1:[A-Za-z0-9+/=]{40,}"', text), "the lock file carries the providers' hashes"


def test_the_module_has_a_readme_with_every_input_and_output_and_an_example():
    readme = (MODULE / "README.md").read_text(encoding="utf-8")
    for kind, heading in (("variable", "## Inputs"), ("output", "## Outputs")):
        assert heading in readme
        section = readme.split(heading, 1)[1].split("\n## ", 1)[0]
        for name in blocks(MODULE, kind):
            assert f"| `{name}` |" in section, f"the module README does not list the {kind} `{name}`"
    example = re.search(r"```hcl\n(.*?)```", readme.split("## Example", 1)[1], re.S)
    assert example and 'module "data_backup"' in example.group(1)
    required = {n for n, body in blocks(MODULE, "variable").items() if "default" not in body}
    for name in required:
        assert re.search(rf"^\s*{name}\s*=", example.group(1), re.M), f"the example leaves out the required `{name}`"
    for name, body in blocks(MODULE, "variable").items():
        row = re.search(rf"^\| `{name}` \|.*$", readme, re.M).group(0)
        assert ("**required**" in row) == ("default" not in body), f"`{name}`: required or not"
