//! Which drills are due: the nightly pick of the least recently verified (store, database) pairs
//! over the primary store and every off-site copy (`[[copies]]`), within the `[verify]` budget
//! (`nightly_count` drills, none started after `nightly_secs`). A copy's drill restores from the
//! copy and records in the copy's store; its record names the copy (`copy`).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::{Verifier, VerifyError};
use crate::model::DatabasePath;
use crate::restore::path_text;
use crate::store::catalog::{least_recently_verified, least_recently_verified_among};
use crate::store::verification::{VerificationRecord, VerificationResult};

impl Verifier {
    /// The nightly drill: verifies the newest backups of the `n` least recently verified databases,
    /// each in the primary store or one of the off-site copies (see `candidates`; databases whose
    /// engine has no verification server, or a copy without a backup of the database, are skipped;
    /// an `unverifiable` verdict is recorded and returned but does not count towards `n`).
    pub async fn pick(&self, n: usize) -> Result<Vec<VerificationRecord>, VerifyError> {
        self.pick_within(n, None).await
    }

    /// The drills due after a run: [`Verifier::pick`] of `nightly_count` databases, none but the
    /// first started later than `nightly_secs` after the first.
    pub async fn drill_due(&self) -> Result<Vec<VerificationRecord>, VerifyError> {
        let Ok(_due) = self.due.try_lock() else {
            tracing::info!("the drills due are already running: nothing more to do");
            return Ok(Vec::new());
        };
        let budget = Duration::from_secs(self.settings.nightly_secs);
        let records = self.pick_within(self.settings.nightly_count, Some(budget)).await?;
        tracing::info!(drills = records.len(), "the drills due after the run are done");
        Ok(records)
    }

    pub(super) async fn pick_within(
        &self,
        n: usize,
        budget: Option<Duration>,
    ) -> Result<Vec<VerificationRecord>, VerifyError> {
        let t0 = Instant::now();
        let mut records = Vec::new();
        let mut drilled = 0;
        for (copy, db, last) in self.candidates().await? {
            if drilled >= n {
                break;
            }
            // The time budget never starves the first drill.
            if !records.is_empty() && budget.is_some_and(|b| t0.elapsed() >= b) {
                tracing::info!(db.path = %path_text(&db), copy.name = copy, "the drills' time budget is spent: left for the next run");
                break;
            }
            let store = match copy {
                None => &self.store,
                Some(name) => &self.copies.iter().find(|(c, _)| c == name).expect("a candidate's copy is configured").1,
            };
            match self.verify_in(store, copy, &db, None).await {
                Ok(r) => {
                    drilled += usize::from(r.result != VerificationResult::Unverifiable);
                    records.push(r);
                }
                Err(e @ (VerifyError::NotConfigured(_) | VerifyError::NotFound(_))) => {
                    tracing::info!(db.path = %path_text(&db), copy.name = copy, last_verified = ?last, "skipped by the drill: {e}");
                }
                // A copy's store failing never stops the drills of the primary or another copy.
                Err(VerifyError::Store(e)) if copy.is_some() => {
                    tracing::warn!(db.path = %path_text(&db), copy.name = copy, error = %e, "the copy's drill did not run: {e}");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(records)
    }

    /// What the nightly pick may drill, least recently verified first (never verified first of
    /// all; on a tie the database, then the primary before the copies in their configured order):
    /// every database with a backup in the primary store, once in the primary (`None`) and once in
    /// each off-site copy (its name), each with the time of its last drill there. A copy that
    /// cannot be listed is left out of tonight's pick, logged; the primary's failure fails it.
    async fn candidates(&self) -> Result<Vec<(Option<&str>, DatabasePath, Option<DateTime<Utc>>)>, VerifyError> {
        let primary = least_recently_verified(&self.store).await?;
        let dbs: BTreeSet<DatabasePath> = primary.iter().map(|(db, _)| db.clone()).collect();
        let mut out: Vec<_> = primary.into_iter().map(|(db, last)| (None, db, last)).collect();
        for (name, store) in &self.copies {
            match least_recently_verified_among(store, dbs.clone()).await {
                Ok(list) => out.extend(list.into_iter().map(|(db, last)| (Some(name.as_str()), db, last))),
                Err(e) => {
                    tracing::warn!(copy.name = %name, error = %e, "the copy's drills are not picked tonight: {e}")
                }
            }
        }
        let rank =
            |copy: Option<&str>| copy.map_or(0, |c| 1 + self.copies.iter().position(|(n, _)| n == c).unwrap_or(0));
        // `None` sorts before `Some`: never-verified first, then the oldest verification.
        out.sort_by(|a, b| a.2.cmp(&b.2).then_with(|| a.1.cmp(&b.1)).then_with(|| rank(a.0).cmp(&rank(b.0))));
        Ok(out)
    }
}
