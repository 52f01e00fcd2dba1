//! One restore drill: a throwaway account (and, by default, a throwaway server) for a scratch
//! database, the restore into it, the row counts compared with the manifest's, the check queries,
//! and the cleanup that always runs.

use std::collections::BTreeMap;
use std::time::Instant;

use chrono::Utc;

use super::{Target, Verifier, VerifyError};
use crate::model::{DatabasePath, Engine};
use crate::restore::{
    DrillAccount, RestoreError, RestoreOptions, SCRATCH_PREFIX, ScratchServer, count_rows, dumped_major, path_text,
    query_value, restore_manifest,
};
use crate::settings::{ServerUrl, SourceKind, VerifyCheck};
use crate::store::BackupStore;
use crate::store::manifest::Manifest;
use crate::store::verification::{CheckOutcome, TableCount, VerificationRecord, VerificationResult};

/// Whether a check query's answer means "passed": true, `t`, `yes`, `on`, or a non-zero number.
fn truthy(value: Option<&str>) -> bool {
    let Some(v) = value.map(|v| v.trim().to_ascii_lowercase()) else { return false };
    matches!(v.as_str(), "t" | "true" | "yes" | "on") || v.parse::<f64>().is_ok_and(|n| n != 0.0)
}

/// Compares restored row counts with the manifest's. Answers (tables, errors, compared).
fn compare(manifest: &Manifest, restored: &BTreeMap<String, u64>) -> (Vec<TableCount>, Vec<String>, bool) {
    let Some(expected) = &manifest.row_counts else {
        let tables = restored
            .iter()
            .map(|(t, n)| TableCount { table: t.clone(), expected: None, restored: Some(*n), matches: true })
            .collect();
        return (tables, Vec::new(), false);
    };
    let exact = manifest.row_counts_exact.unwrap_or(manifest.engine == Engine::Postgres);
    let names: std::collections::BTreeSet<&String> = expected.keys().chain(restored.keys()).collect();
    let mut tables = Vec::new();
    let mut errors = Vec::new();
    for name in names {
        let (e, r) = (expected.get(name).copied(), restored.get(name).copied());
        let matches = e == r;
        if !matches && exact {
            errors.push(match (e, r) {
                (Some(e), Some(r)) => format!("row count of {name}: the manifest records {e}, the restore holds {r}"),
                (Some(_), None) => format!("table {name} is in the manifest but not in the restore"),
                _ => format!("table {name} is in the restore but not in the manifest"),
            });
        }
        tables.push(TableCount { table: name.clone(), expected: e, restored: r, matches });
    }
    (tables, errors, exact)
}

impl Verifier {
    /// Runs the drill on its target: the configured server, or a scratch server started for it and
    /// stopped after it, also when the drill fails or is interrupted.
    pub(super) async fn drill_on(
        &self,
        store: &BackupStore,
        db: &DatabasePath,
        manifest: &Manifest,
        target: Target,
    ) -> Result<VerificationRecord, VerifyError> {
        let _running = self.running.read().await;
        if self.stop.is_cancelled() {
            return Err(VerifyError::Interrupted);
        }
        match target {
            Target::Configured(url) => {
                // Not raced with the stop: the drill abandons its restore itself and still drops
                // its account and database on the configured server.
                let record = self.drill(store, db, manifest, &url).await;
                if self.stop.is_cancelled() { Err(VerifyError::Interrupted) } else { Ok(record) }
            }
            Target::Scratch => {
                let started_at = Utc::now();
                let min = if manifest.engine == Engine::Postgres { dumped_major(&manifest.tools.server) } else { None };
                let start =
                    ScratchServer::start(manifest.engine, &self.tools, min, self.settings.scratch_dir.as_deref());
                let server = tokio::select! {
                    s = start => s,
                    () = self.stop.cancelled() => return Err(VerifyError::Interrupted),
                };
                let server = match server {
                    Ok(s) => s,
                    Err(e) => {
                        let mut record = Self::unverifiable(db, manifest, "");
                        record.result = VerificationResult::Failed;
                        record.reason = None;
                        record.started_at = started_at;
                        record.server = "scratch".into();
                        record.errors = vec![format!("cannot start a scratch server for the drill: {e}")];
                        return Ok(record);
                    }
                };
                let outcome = tokio::select! {
                    record = self.drill(store, db, manifest, server.url()) => Ok(record),
                    () = self.stop.cancelled() => Err(VerifyError::Interrupted),
                };
                server.stop().await;
                outcome
            }
        }
    }

    pub(super) fn applies(check: &VerifyCheck, db: &DatabasePath, engine: Engine) -> bool {
        let engine_ok = match check.engine {
            Some(SourceKind::Postgres) => engine == Engine::Postgres,
            Some(SourceKind::Mysql) => engine == Engine::Mysql,
            None => true,
        };
        let path = path_text(db);
        engine_ok
            && (check.databases.is_empty()
                || check.databases.iter().any(|g| crate::util::glob::compile_glob(g).is_ok_and(|m| m.is_match(&path))))
    }

    pub(super) async fn drill(
        &self,
        store: &BackupStore,
        db: &DatabasePath,
        manifest: &Manifest,
        server: &ServerUrl,
    ) -> VerificationRecord {
        let started_at = Utc::now();
        let t0 = Instant::now();
        let mut errors = Vec::new();
        let mut warnings = Vec::new();
        let (mut tables, mut checks, mut compared, mut bytes) = (Vec::new(), Vec::new(), false, 0);
        let mut restore_secs = None;
        let mut restore_jobs = None;
        let identities = match &self.settings.identity_file {
            Some(path) => match crate::crypto::read_identity_file(path) {
                Ok(ids) => Some(ids),
                Err(e) => {
                    errors.push(format!("verify.identity_file: {e}"));
                    None
                }
            },
            None => None,
        };
        // The backup's code runs during the restore and the checks: all of it as a throwaway
        // account that owns only the scratch database (module `restore::drill_account`, ADR 0012).
        let account = if errors.is_empty() {
            match DrillAccount::create(server).await {
                Ok(a) => Some(a),
                Err(e) => {
                    errors.push(format!("cannot create the drill's scratch database and account: {e}"));
                    None
                }
            }
        } else {
            None
        };
        let scratch = account.as_ref().map_or_else(|| format!("{SCRATCH_PREFIX}-"), |a| a.database().to_owned());
        // Interrupted (the service stops), the restore is abandoned but the account and its
        // database are still dropped below: the drill leaves nothing on the server.
        let mut interrupted = false;
        if let Some(account) = &account {
            interrupted = tokio::select! {
                () = async {
                    let as_account = account.url();
                    // The scratch database is dropped whatever happens: a parallel restore may load it in place.
                    let options = RestoreOptions {
                        create: true,
                        strip_definers: true,
                        jobs: self.restore_jobs,
                        temp_dir: self.temp_dir.clone(),
                        scratch: true,
                        ..RestoreOptions::default()
                    };
                    let restore_started = Instant::now();
                    match restore_manifest(
                        store,
                        &self.tools,
                        manifest,
                        as_account,
                        &scratch,
                        identities.as_deref(),
                        &[],
                        &options,
                    )
                    .await
                    {
                        Ok(report) => {
                            bytes = report.bytes;
                            restore_jobs = report.parallel_jobs;
                            restore_secs = Some(restore_started.elapsed().as_secs_f64());
                            match count_rows(as_account, &scratch).await {
                                Ok(restored) => {
                                    let (t, e, c) = compare(manifest, &restored);
                                    (tables, compared) = (t, c);
                                    errors.extend(e);
                                }
                                Err(e) => errors.push(format!("cannot count the restored rows: {e}")),
                            }
                            for check in self.settings.checks.iter().filter(|c| Self::applies(c, db, manifest.engine)) {
                                let outcome = match query_value(as_account, &scratch, &check.sql).await {
                                    Ok(v) => CheckOutcome {
                                        name: check.name.clone(),
                                        passed: truthy(v.as_deref()),
                                        detail: v.unwrap_or_else(|| "no value".into()),
                                    },
                                    Err(e) => CheckOutcome { name: check.name.clone(), passed: false, detail: e.to_string() },
                                };
                                if !outcome.passed {
                                    errors.push(format!("check `{}` failed: {}", outcome.name, outcome.detail));
                                }
                                checks.push(outcome);
                            }
                        }
                        Err(RestoreError::Encrypted { .. }) => errors.push(
                            "the backup is encrypted and `verify.identity_file` is not set: it cannot be verified here".into(),
                        ),
                        Err(e) => errors.push(format!("restore failed: {e}")),
                    }
                } => false,
                () = self.stop.cancelled() => true,
            };
        }
        if interrupted {
            errors.push("interrupted: the service is stopping".into());
        }
        if let Some(account) = &account
            && let Err(e) = account.remove().await
        {
            warnings.push(format!("the scratch database or the drill's account was not dropped: {e}"));
        }
        let rows: u64 = tables.iter().filter_map(|t| t.restored).sum();
        #[expect(clippy::cast_precision_loss, reason = "a rate needs no more than f64's 52 bits")]
        let per_sec = |n: u64| restore_secs.filter(|s| *s > 0.0).map(|s| (n as f64 / s).round());
        let (bytes_per_sec, rows_per_sec) = (per_sec(bytes), per_sec(rows));
        let result = if errors.is_empty() { VerificationResult::Ok } else { VerificationResult::Failed };
        VerificationRecord {
            started_at,
            finished_at: Utc::now(),
            duration_secs: t0.elapsed().as_secs_f64(),
            server: server.to_string(),
            scratch_database: scratch,
            bytes_checked: bytes,
            row_counts_compared: compared,
            tables,
            checks,
            errors,
            warnings,
            restore_secs,
            bytes_per_sec,
            rows_per_sec,
            restore_jobs,
            ..Self::record_of(db, manifest, result)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::manifest::{DumpFormat, ToolVersions};

    fn manifest(counts: &[(&str, u64)], exact: Option<bool>, engine: Engine) -> Manifest {
        Manifest {
            version: 1,
            source: "s".into(),
            project: "p".into(),
            instance: "i".into(),
            database: "d".into(),
            engine,
            run_date: "2026-11-20".into(),
            run_id: "r".into(),
            class: "daily".into(),
            key: "k".into(),
            format: DumpFormat::PgCustomZstd,
            compression: "zstd".into(),
            compression_level: None,
            bytes: 1,
            raw_bytes: None,
            sha256: None,
            object_version: None,
            started_at: Utc::now(),
            finished_at: Utc::now(),
            tools: ToolVersions { dump: String::new(), server: String::new(), data_backup: String::new() },
            encryption: None,
            row_counts: Some(counts.iter().map(|(t, n)| ((*t).to_owned(), *n)).collect()),
            row_counts_exact: exact,
            cloud_sql: None,
        }
    }

    #[test]
    fn exact_counts_must_match_table_by_table() {
        let m = manifest(&[("public.a", 3), ("public.b", 0)], Some(true), Engine::Postgres);
        let restored: BTreeMap<String, u64> = [("public.a".to_owned(), 2), ("public.c".to_owned(), 1)].into();
        let (tables, errors, compared) = compare(&m, &restored);
        assert!(compared);
        assert_eq!(tables.len(), 3);
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[0].contains("manifest records 3, the restore holds 2"));
    }

    #[test]
    fn inexact_counts_are_information_only() {
        let m = manifest(&[("a", 3)], Some(false), Engine::Mysql);
        let (tables, errors, compared) = compare(&m, &[("a".to_owned(), 4)].into());
        assert!(!compared && errors.is_empty());
        assert!(!tables[0].matches);
    }

    #[test]
    fn check_answers_are_read_as_booleans() {
        for yes in ["t", "true", "1", " 42 ", "YES"] {
            assert!(truthy(Some(yes)), "{yes}");
        }
        for no in ["f", "false", "0", "", "nope"] {
            assert!(!truthy(Some(no)), "{no}");
        }
        assert!(!truthy(None));
    }
}
