//! The prune of the off-site copies (`[[copies]]`, ADR 0023): the same policy and the same plan
//! as the primary's prune, run against each copy's own listing (its manifests, dumps and drill
//! records) under the copy's own policy (`[copies.retention]` over `[retention]`), applied and
//! recorded in the copy's store. A copy's failure (a listing refused, a
//! delete that stops it) is answered in its [`CopyPrune`], never stopping the primary's prune nor
//! another copy's; a copy's `classes` need nothing here (a class not copied is never in it).

use chrono::NaiveDate;

use super::error::RetentionError;
use super::plan::{CopyPrune, PrunePlan};
use super::prune::{prune, prune_as};
use crate::model::run::{RunDate, RunId};
use crate::settings::retention::RetentionPolicy;
use crate::store::BackupStore;

/// [`prune`] of the primary `store`, then of every copy in `copies` (name and store): the primary's
/// plan with each copy's in `copies`.
pub async fn prune_with_copies(
    store: &BackupStore,
    copies: &[(String, BackupStore)],
    policy: &RetentionPolicy,
    as_of: NaiveDate,
    apply: bool,
) -> Result<PrunePlan, RetentionError> {
    let mut plan = prune(store, policy, as_of, apply).await?;
    plan.copies = prune_copies(store, copies, policy, as_of, apply, None).await;
    Ok(plan)
}

/// Prunes each copy in turn as of `as_of` (recorded under `run_id` when given), keeping what the
/// `primary` store holds (its `holds/`); one answer per copy.
pub async fn prune_copies(
    primary: &BackupStore,
    copies: &[(String, BackupStore)],
    policy: &RetentionPolicy,
    as_of: NaiveDate,
    apply: bool,
    run_id: Option<&RunId>,
) -> Vec<CopyPrune> {
    let mut answers = Vec::with_capacity(copies.len());
    for (name, store) in copies {
        let answer = match prune_as(store, primary, &policy.for_copy(name), as_of, apply, run_id).await {
            Ok(plan) => CopyPrune::of(name, plan, None),
            Err(e) => {
                tracing::error!(copy.name = %name, error = %e, "the prune of the copy `{name}` failed: {e}");
                CopyPrune::failed(name, e.to_string())
            }
        };
        if !answer.skipped.is_empty() {
            tracing::warn!(copy.name = %name, prune.skipped = answer.skipped.len(), "the copy `{name}` kept objects the plan expired");
        }
        answers.push(answer);
    }
    answers
}

/// The prune of every copy after a `/schedule` run (see [`super::prune::prune_after_schedule`]):
/// applied as of the run date, recorded in each copy under the run's id, failures logged.
pub async fn prune_copies_after_schedule(
    primary: &BackupStore,
    copies: &[(String, BackupStore)],
    policy: &RetentionPolicy,
    run_date: RunDate,
    run_id: &str,
) {
    let id = RunId::parse(run_id).ok();
    for answer in prune_copies(primary, copies, policy, run_date.date(), true, id.as_ref()).await {
        tracing::info!(
            run.id = run_id, copy.name = %answer.name, prune.deleted = answer.deleted.len(),
            prune.skipped = answer.skipped.len(), prune.bytes_freed = answer.bytes_freed,
            "pruned the copy after the schedule run"
        );
    }
}
