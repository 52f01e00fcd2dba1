//! The end of a run: its one summary notification (counts, and the databases not backed up),
//! sent once per run through every notifier.
//!
//! When: [`report_run`] when the embedded queue is idle; in `cloud_tasks` mode (no process sees a
//! run's tasks end, ADR 0008) [`report_run_if_resolved`] after each export and
//! [`report_overdue_runs`] at each `/schedule`, once per run: the marker
//! `reports/runs/<day>/<run id>.json` is created first with a conditional create, and only the call
//! that creates it sends.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::model::{RunDate, RunId};
use crate::notify::{Notifier, RunSummaryReport};
use crate::runs::ledger::{DbKey, PlanAction, RunLedger, date_of, db_ref, find_ledger, key_of, ledgers_of};
use crate::runs::summary::{RunReport, run_report};
use crate::store::layout::{Key, Prefix, any_db};
use crate::store::{BackupStore, StoreError};

/// Sends the one summary of run `run_id` of `day` through every notifier: counts, and the
/// databases not backed up. Answers the report sent (`None` when the ledger is not found).
pub async fn report_run(
    store: &BackupStore,
    notifiers: &[Arc<dyn Notifier>],
    run_id: &RunId,
    day: RunDate,
) -> Result<Option<RunSummaryReport>, StoreError> {
    let Some(ledger) = find_ledger(store, run_id, Some(day), day.date()).await? else { return Ok(None) };
    let summary = summary_of(store, &ledger).await?;
    send_summary(notifiers, &summary).await;
    Ok(Some(summary))
}

/// The summary of the run `ledger` describes, as it stands.
async fn summary_of(store: &BackupStore, ledger: &RunLedger) -> Result<RunSummaryReport, StoreError> {
    let report = run_report(store, ledger, None, true).await?;
    let not_backed_up: Vec<String> = report
        .databases
        .iter()
        .flatten()
        .filter(|d| d.outcome == "failed" || d.outcome == "not_backed_up")
        .map(|d| match &d.error {
            Some(e) => format!("{}/{}/{} ({}: {e})", d.project, d.instance, d.database, d.outcome),
            None => format!("{}/{}/{} ({})", d.project, d.instance, d.database, d.outcome),
        })
        .collect();
    Ok(run_summary(&report, not_backed_up))
}

async fn send_summary(notifiers: &[Arc<dyn Notifier>], summary: &RunSummaryReport) {
    for n in notifiers {
        if let Err(e) = n.notify_run(summary).await {
            tracing::warn!(error = %e, run.id = %summary.run_id, "{e}");
        }
    }
}

/// Sends the summary of the run `ledger` describes unless it was sent already: the marker
/// `reports/runs/<day>/<run id>.json` (holding the summary) is created first with a conditional
/// create, so however many exports or instances get here, one sends it.
async fn report_ledger_once(
    store: &BackupStore,
    notifiers: &[Arc<dyn Notifier>],
    ledger: &RunLedger,
) -> Result<Option<RunSummaryReport>, StoreError> {
    let (Some(day), Ok(run_id)) = (date_of(&ledger.run_date), RunId::parse(ledger.run_id.clone())) else {
        return Ok(None);
    };
    let summary = summary_of(store, ledger).await?;
    match store.create_json(&Key::RunSummary { date: day, run_id }, &summary).await? {
        crate::store::bucket::PutOutcome::Created => {
            send_summary(notifiers, &summary).await;
            Ok(Some(summary))
        }
        crate::store::bucket::PutOutcome::AlreadyExists => Ok(None),
    }
}

/// `cloud_tasks` mode (no process sees a run's tasks end): called after each export of run
/// `run_id` of `day` that resolved its database (backed up, or failed and reported). When every
/// database the run's ledger expected has a backup for `day` or a reported failure, sends the run's
/// summary, once. Cost: one read of the marker; when absent, the ledger, one listing of the day's
/// failure markers and one manifest read per expected database, stopping at the first unresolved.
pub async fn report_run_if_resolved(
    store: &BackupStore,
    notifiers: &[Arc<dyn Notifier>],
    run_id: &RunId,
    day: RunDate,
) -> Result<Option<RunSummaryReport>, StoreError> {
    if store.bucket().head(&Key::RunSummary { date: day, run_id: run_id.clone() }.path()).await?.is_some() {
        return Ok(None);
    }
    let Some(ledger) = find_ledger(store, run_id, Some(day), day.date()).await? else { return Ok(None) };
    let failed: std::collections::HashSet<DbKey> = store
        .bucket()
        .list(Prefix::of(&Key::Report { db: any_db(), date: day }, 2).as_str())
        .await?
        .into_iter()
        .filter_map(|o| match Key::parse(&o.key) {
            Some(Key::Report { db, .. }) => Some(key_of(&db)),
            _ => None,
        })
        .collect();
    for t in ledger.databases.iter().filter(|t| t.action == PlanAction::Export) {
        if failed.contains(&(t.project.clone(), t.instance.clone(), t.database.clone())) {
            continue;
        }
        let Some(db) = db_ref(&t.source, &t.project, &t.instance, &t.database, t.engine) else { continue };
        if store.manifest(&db, day).await?.is_none() {
            return Ok(None);
        }
    }
    report_ledger_once(store, notifiers, &ledger).await
}

/// How long a run may take before its summary goes out with what it has (the day's deadline).
pub const RUN_DEADLINE: chrono::TimeDelta = chrono::TimeDelta::hours(24);

/// `cloud_tasks` mode, at each `/schedule`: sends, once, the summary of every run of the last
/// three days (`today` included) that started more than [`RUN_DEADLINE`] before `now` and whose
/// summary was not sent (some of its tasks never resolved).
pub async fn report_overdue_runs(
    store: &BackupStore,
    notifiers: &[Arc<dyn Notifier>],
    now: DateTime<Utc>,
) -> Result<Vec<RunSummaryReport>, StoreError> {
    let mut sent = Vec::new();
    for back in 0..3 {
        let day = RunDate::from_date(now.date_naive() - chrono::Duration::days(back));
        for ledger in ledgers_of(store, day).await? {
            let Ok(run_id) = RunId::parse(ledger.run_id.clone()) else { continue };
            if now - ledger.started_at < RUN_DEADLINE
                || store.bucket().head(&Key::RunSummary { date: day, run_id }.path()).await?.is_some()
            {
                continue;
            }
            sent.extend(report_ledger_once(store, notifiers, &ledger).await?);
        }
    }
    Ok(sent)
}

/// The summary notification of `report`; `not_backed_up` lists the databases without a backup.
#[must_use]
pub fn run_summary(report: &RunReport, not_backed_up: Vec<String>) -> RunSummaryReport {
    let missing = report.failed + report.not_backed_up;
    let bad = missing > 0 || !report.complete || !report.errors.is_empty();
    let mut text = format!(
        "{} data-backup: run {} of {}: {} of {} databases backed up, {} failed, {} not backed up, {} excluded",
        if bad { ":red_circle:" } else { ":large_green_circle:" },
        report.run_id,
        report.run_date,
        report.exported,
        report.expected,
        report.failed,
        report.not_backed_up,
        report.excluded,
    );
    if !report.complete {
        text.push_str("; discovery was incomplete");
    }
    if !not_backed_up.is_empty() {
        let shown: Vec<&str> = not_backed_up.iter().take(20).map(String::as_str).collect();
        text.push_str(&format!(": {}", shown.join(", ")));
        if not_backed_up.len() > shown.len() {
            text.push_str(&format!(" and {} more", not_backed_up.len() - shown.len()));
        }
    }
    RunSummaryReport {
        kind: "run_summary".to_owned(),
        run_id: report.run_id.clone(),
        run_date: report.run_date.clone(),
        discovered: report.discovered,
        excluded: report.excluded,
        expected: report.expected,
        exported: report.exported,
        failed: report.failed,
        not_backed_up: report.not_backed_up,
        complete: report.complete,
        errors: report.errors.iter().map(|e| format!("{}: {}", e.scope, e.message)).collect(),
        databases_not_backed_up: not_backed_up,
        text,
    }
}
