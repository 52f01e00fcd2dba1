//! The binary itself: configuration errors, `export` and `openapi` from the shell.

use std::process::Command;

use crate::support::{PgDb, pg_url};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_data-backup"));
    c.env_remove("DATA_BACKUP_CONFIG").env("RUST_LOG", "warn");
    c
}

#[test]
fn a_bad_configuration_stops_with_one_line_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[store]\nurl = \"ftp://nope\"\n").unwrap();

    let bad_file = bin().arg("--config").arg(&cfg).args(["schedule", "--dry-run"]).output().unwrap();
    let bad_env = bin().env("DATA_BACKUP_QUEUE__WORKERS", "0").args(["schedule", "--dry-run"]).output().unwrap();
    let missing = bin().args(["--config", "/nonexistent.toml", "schedule"]).output().unwrap();

    for (out, key) in [(&bad_file, "store.url"), (&bad_env, "queue.workers"), (&missing, "--config")] {
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 1, "{err}");
        assert!(lines[0].contains(key), "{err}");
    }
}

#[test]
fn export_from_the_shell_prints_the_manifest_and_the_environment_overrides_the_file() {
    let db = PgDb::create("cli_exp");
    db.sql("CREATE TABLE t AS SELECT generate_series(1, 10) g");
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!("[store]\nurl = \"file:///nonexistent-overridden\"\n[[sources]]\nname = \"pgsrc\"\nkind = \"postgres\"\nurl = \"{}\"\ninstance = \"pg\"\n[schedule]\ndaily_at = \"\"\n", pg_url()),
    )
    .unwrap();
    let store = dir.path().join("store");

    let out = bin()
        .arg("--config")
        .arg(&cfg)
        .env("DATA_BACKUP_STORE__URL", format!("file://{}", store.display()))
        .args(["export", "--database", &format!("pgsrc/pg/{}", db.name), "--date", "2026-11-20"])
        .output()
        .unwrap();

    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let manifest: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(manifest["database"], db.name.as_str());
    assert!(store.join(manifest["key"].as_str().unwrap()).is_file());
    assert_eq!(manifest["row_counts"]["public.t"], 10);
}

#[test]
fn openapi_command_prints_the_checked_in_document() {
    let out = bin().arg("openapi").output().unwrap();
    let checked_in = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json")).unwrap();
    assert!(out.stdout == checked_in, "run `data-backup openapi > openapi/openapi.json`");
}

#[test]
fn every_example_configuration_is_valid() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        if entry.path().extension().is_some_and(|e| e == "toml") {
            data_backup::settings::Settings::load(Some(&entry.path()))
                .unwrap_or_else(|e| panic!("{}: {e}", entry.path().display()));
            seen += 1;
        }
    }
    assert!(seen >= 2);
}

#[test]
fn schedule_from_the_shell_backs_up_every_database_and_exits_zero() {
    let prefix = crate::support::unique_name("cli_sch");
    let db = PgDb::create(&format!("{prefix}_a"));
    db.sql("CREATE TABLE t AS SELECT generate_series(1, 5) g");
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    let store = dir.path().join("store");
    std::fs::write(
        &cfg,
        format!(
            "[store]\nurl = \"file://{}\"\n{}[schedule]\ndaily_at = \"\"\n",
            store.display(),
            crate::support::pg_source("pgsrc", &format!("{prefix}*"))
        ),
    )
    .unwrap();

    let out = bin().arg("--config").arg(&cfg).arg("schedule").output().unwrap();

    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["enqueued"], 1);
    let files = crate::support::files_under(&store);
    assert!(files.iter().any(|f| f.ends_with(&format!("{}.manifest.json", db.name))), "{files:?}");
}
