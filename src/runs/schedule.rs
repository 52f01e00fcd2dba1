//! One `/schedule` run: discover every database of every source (or of the sources a run's scope
//! narrowed, see `scope.rs`), apply the exclusions, enqueue one
//! `ExportTask` per database as soon as discovery finds it, write the run ledger (the expected set),
//! and summarise.
//!
//! A failing source never stops the others: its error is logged and listed in the summary. A dry
//! run answers the plan and writes and enqueues nothing. A source made of many parts (`gcp`: folders,
//! projects, instances) reports what it walked, skipped and could not see; when some part could not
//! be seen, the run is `complete: false` in the summary and the ledger.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::Utc;
use futures::StreamExt as _;
use tracing::Instrument as _;

use crate::discovery::Exclusions;
use crate::export::source::Source;
use crate::model::{DatabaseRef, ExportTask, RunDate, RunId};
use crate::queue::{Enqueued, TaskQueue};
use crate::runs::ledger::{PlanAction, PlannedTask, RunError, RunLedger, ScheduleSummary, SkippedItem};
use crate::runs::scope::RunScope;
use crate::store::BackupStore;
use crate::store::layout::Key;

/// Adds `db` to the plan; its export task unless an exclusion pattern matches it.
fn plan_one(
    plan: &mut Vec<PlannedTask>,
    exclusions: &Exclusions,
    db: DatabaseRef,
    run_date: RunDate,
    run_id: &RunId,
) -> Option<ExportTask> {
    let excluded_by = exclusions.excluded_by(&db).map(str::to_owned);
    plan.push(PlannedTask {
        source: db.source.to_string(),
        project: db.project.to_string(),
        instance: db.instance.to_string(),
        database: db.database.to_string(),
        engine: db.engine,
        action: if excluded_by.is_some() { PlanAction::Excluded } else { PlanAction::Export },
        excluded_by: excluded_by.clone(),
    });
    excluded_by.is_none().then(|| ExportTask { db, run_date, run_id: run_id.clone() })
}

/// Runs one schedule (see the module docs), in a `schedule` span.
#[tracing::instrument(name = "schedule", skip_all, fields(run.date = %run_date, run.dry_run = dry_run, run.id = tracing::field::Empty))]
pub async fn schedule(
    sources: &[Source],
    exclusions: &Exclusions,
    store: &BackupStore,
    queue: &Arc<dyn TaskQueue>,
    run_date: RunDate,
    dry_run: bool,
    scope: Option<&RunScope>,
) -> ScheduleSummary {
    let run_id = RunId::generate();
    tracing::Span::current().record("run.id", tracing::field::display(&run_id));
    let started_at = Utc::now();
    // Discovery hands each database over as soon as it is known, and its task is enqueued at once:
    // createTask runs alongside the discovery calls instead of after them (ADR 0010).
    let (found, databases) = futures::channel::mpsc::unbounded::<DatabaseRef>();
    let discover = async move {
        let found = found;
        futures::future::join_all(sources.iter().map(|s| {
            let span = tracing::info_span!("discovery", source.name = %s.name);
            let found = found.clone();
            async move { (s, s.discovery.discover_into(&found).await) }.instrument(span)
        }))
        .await
    };
    let mut plan = Vec::new();
    let mut seen = HashSet::new();
    let run = &run_id;
    let enqueue = databases
        .filter_map(|db| {
            // A database found twice (overlapping asset search scopes, say) is planned and enqueued once.
            let task = seen.insert(db.clone()).then(|| plan_one(&mut plan, exclusions, db, run_date, run));
            std::future::ready(task.flatten().filter(|_| !dry_run))
        })
        .map(|task| async move {
            let path = task.db.path();
            let span = tracing::info_span!("enqueue", db.path = %path);
            (path, queue.enqueue(task).instrument(span).await)
        })
        // Unordered: a slow createTask must not hold the slots of the ones that finished after it.
        .buffer_unordered(queue.max_in_flight().max(1))
        .collect::<Vec<_>>();
    let (found, results) = tokio::join!(discover, enqueue);
    plan.sort_by(|a, b| {
        (&a.source, &a.project, &a.instance, &a.database).cmp(&(&b.source, &b.project, &b.instance, &b.database))
    });
    let mut errors = Vec::new();
    let (mut folders, mut projects, mut instances, mut skipped, mut complete) = (0, 0, 0, Vec::new(), true);
    let mut api_calls = Vec::new();
    for (source, result) in found {
        match result {
            Ok(report) => {
                api_calls.extend(report.api_calls.into_iter().map(|c| (source.name.to_string(), c)));
                folders += report.folders;
                projects += report.projects;
                instances += report.instances;
                complete &= report.complete;
                skipped.extend(report.skipped.into_iter().map(|s| SkippedItem { scope: s.scope, reason: s.reason }));
                errors.extend(
                    report
                        .errors
                        .into_iter()
                        .map(|(scope, message)| RunError { scope: format!("source:{}:{scope}", source.name), message }),
                );
            }
            Err(e) => {
                complete = false;
                tracing::error!(source.name = %source.name, run.id = %run_id, error = %e, "discovery failed: {e}");
                errors.push(RunError { scope: format!("source:{}", source.name), message: e.to_string() });
            }
        }
    }
    let excluded = plan.iter().filter(|t| t.excluded_by.is_some()).count();
    let mut summary = ScheduleSummary {
        run_id: run_id.to_string(),
        run_date: run_date.to_string(),
        dry_run,
        discovered: plan.len(),
        excluded,
        enqueued: 0,
        already_queued: 0,
        errors,
        not_enqueued: 0,
        folders,
        projects,
        instances,
        skipped,
        complete,
        scope: scope.cloned(),
        tasks: None,
        api_calls,
    };
    if dry_run {
        summary.tasks = Some(plan);
        return summary;
    }
    for (path, result) in results {
        match result {
            Ok(Enqueued::Enqueued) => summary.enqueued += 1,
            Ok(Enqueued::AlreadyQueued) => summary.already_queued += 1,
            Err(e) => {
                summary.not_enqueued += 1;
                summary.errors.push(RunError { scope: format!("enqueue:{path}"), message: e.to_string() });
            }
        }
    }
    // The ledger is written once every task is enqueued (or could not be): exports that finish
    // earlier are matched against it when it lands (status reads it on demand; in cloud_tasks mode
    // `/schedule` checks the run's completion itself right after, see ADR 0010).
    let ledger = RunLedger {
        run_id: run_id.to_string(),
        run_date: run_date.to_string(),
        started_at,
        databases: plan,
        errors: summary.errors.clone(),
        folders: summary.folders,
        projects: summary.projects,
        instances: summary.instances,
        skipped: summary.skipped.clone(),
        complete: summary.complete,
        scope: summary.scope.clone(),
    };
    if let Err(e) = store.write_ledger(&Key::RunLedger { date: run_date, run_id: run_id.clone() }, &ledger).await {
        tracing::error!(run.id = %run_id, error = %e, "could not write the run ledger: {e}");
        summary.errors.push(RunError { scope: "ledger".into(), message: e.to_string() });
    }
    tracing::info!(
        run.id = %summary.run_id, run.date = %summary.run_date, discovered = summary.discovered,
        excluded = summary.excluded, enqueued = summary.enqueued, already_queued = summary.already_queued,
        errors = summary.errors.len(), not_enqueued = summary.not_enqueued, complete = summary.complete,
        "schedule run done"
    );
    summary
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use async_trait::async_trait;
    use tokio::sync::Notify;

    use super::*;
    use crate::discovery::{Discovery, DiscoveryError, DiscoveryReport, Found};
    use crate::export::{ExportError, Exporter};
    use crate::model::{DatabaseName, Engine, InstanceName, ProjectId, SourceName};
    use crate::queue::QueueError;
    use crate::store::bucket::object_store::ObjectStoreBucket;
    use crate::store::layout::Layout;
    use crate::store::manifest::Manifest;

    fn db(name: &str) -> DatabaseRef {
        DatabaseRef {
            source: SourceName::parse("org").unwrap(),
            project: ProjectId::parse("p").unwrap(),
            instance: InstanceName::parse("i").unwrap(),
            database: DatabaseName::parse(name).unwrap(),
            engine: Engine::Postgres,
        }
    }

    /// Finds `a`, then finds `b` only once `a`'s task exists (as a slow listing would, later).
    struct Stepwise {
        name: SourceName,
        enqueued: Arc<Notify>,
    }

    #[async_trait]
    impl Discovery for Stepwise {
        fn name(&self) -> &SourceName {
            &self.name
        }
        async fn discover(&self) -> Result<Vec<DatabaseRef>, DiscoveryError> {
            unreachable!("schedule streams")
        }
        async fn discover_into(&self, found: &Found) -> Result<DiscoveryReport, DiscoveryError> {
            found.unbounded_send(db("a")).unwrap();
            self.enqueued.notified().await;
            found.unbounded_send(db("b")).unwrap();
            // The same database named twice is planned and enqueued once.
            found.unbounded_send(db("b")).unwrap();
            Ok(DiscoveryReport { complete: true, instances: 1, ..DiscoveryReport::default() })
        }
        async fn exists(&self, _: &DatabaseName) -> Result<bool, DiscoveryError> {
            Ok(true)
        }
    }

    struct Never;

    #[async_trait]
    impl Exporter for Never {
        async fn export(&self, _: &ExportTask, _: &BackupStore) -> Result<Manifest, ExportError> {
            unreachable!("schedule only enqueues")
        }
    }

    /// Records each task and whether the run's ledger existed when it was enqueued.
    struct Recording {
        store: BackupStore,
        enqueued: Arc<Notify>,
        seen: Mutex<Vec<(String, bool)>>,
    }

    #[async_trait]
    impl TaskQueue for Recording {
        async fn enqueue(&self, task: ExportTask) -> Result<Enqueued, QueueError> {
            let key = Key::RunLedger { date: task.run_date, run_id: task.run_id.clone() };
            let ledger = self.store.bucket().head(&key.path()).await.unwrap().is_some();
            self.seen.lock().unwrap().push((task.db.database.to_string(), ledger));
            self.enqueued.notify_one();
            Ok(Enqueued::Enqueued)
        }
        async fn wait_idle(&self) {}
        fn max_in_flight(&self) -> usize {
            4
        }
    }

    #[tokio::test]
    async fn tasks_are_enqueued_while_discovery_runs_and_the_ledger_lands_after_them() {
        let dir = tempfile::tempdir().unwrap();
        let url = url::Url::from_directory_path(dir.path()).unwrap();
        let bucket = Arc::new(ObjectStoreBucket::open(&url, &Default::default()).unwrap());
        let store = BackupStore::new(bucket, Layout::new(chrono::Weekday::Sun));
        let enqueued = Arc::new(Notify::new());
        let source = Source {
            name: SourceName::parse("org").unwrap(),
            project: ProjectId::parse("p").unwrap(),
            instance: InstanceName::parse("i").unwrap(),
            engine: Engine::Postgres,
            discovery: Arc::new(Stepwise { name: SourceName::parse("org").unwrap(), enqueued: enqueued.clone() }),
            exporter: Arc::new(Never),
            any_instance: true,
        };
        let recording = Arc::new(Recording { store: store.clone(), enqueued, seen: Mutex::default() });
        let queue: Arc<dyn TaskQueue> = recording.clone();
        let date = RunDate::parse("2026-03-04").unwrap();
        let (sources, exclusions) = ([source], Exclusions::new(&[]).unwrap());
        let run = schedule(&sources, &exclusions, &store, &queue, date, false, None);
        // Were `a` enqueued only after discovery ended, discovery would wait for it forever.
        let summary = tokio::time::timeout(Duration::from_secs(30), run)
            .await
            .expect("a database found early must be enqueued while discovery still runs");
        assert_eq!((summary.discovered, summary.enqueued), (2, 2), "{summary:?}");
        let seen = recording.seen.lock().unwrap().clone();
        assert_eq!(seen, [("a".to_owned(), false), ("b".to_owned(), false)]);
        let key = Key::RunLedger { date, run_id: RunId::parse(summary.run_id.clone()).unwrap() };
        let ledger: RunLedger = store.read(&key).await.unwrap().expect("the ledger is written");
        let planned: Vec<_> = ledger.databases.iter().map(|t| (t.database.as_str(), t.action.as_str())).collect();
        assert_eq!(planned, [("a", "export"), ("b", "export")]);
    }
}
