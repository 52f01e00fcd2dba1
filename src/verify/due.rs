//! Which drills are due: the nightly pick of the least recently verified databases, within the
//! `[verify]` budget (`nightly_count` drills, none started after `nightly_secs`).

use std::time::{Duration, Instant};

use super::{Verifier, VerifyError};
use crate::restore::path_text;
use crate::store::verification::{VerificationRecord, VerificationResult};

impl Verifier {
    /// The nightly drill: verifies the newest backups of the `n` least recently verified databases
    /// (databases whose engine has no verification server are skipped; an `unverifiable` verdict
    /// is recorded and returned but does not count towards `n`).
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
        for (db, last) in crate::store::catalog::least_recently_verified(&self.store).await? {
            if drilled >= n {
                break;
            }
            // The time budget never starves the first drill.
            if !records.is_empty() && budget.is_some_and(|b| t0.elapsed() >= b) {
                tracing::info!(db.path = %path_text(&db), "the drills' time budget is spent: left for the next run");
                break;
            }
            match self.verify(&db, None).await {
                Ok(r) => {
                    drilled += usize::from(r.result != VerificationResult::Unverifiable);
                    records.push(r);
                }
                Err(e @ (VerifyError::NotConfigured(_) | VerifyError::NotFound(_))) => {
                    tracing::info!(db.path = %path_text(&db), last_verified = ?last, "skipped by the drill: {e}");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(records)
    }
}
