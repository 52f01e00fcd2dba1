//! The nightly jobs of `serve`: the embedded timer that runs one schedule every day at
//! `[schedule] daily_at` (UTC); the run's summary and its drills follow from `AppState::schedule`.

use chrono::{NaiveTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::http::state::AppState;
use crate::model::RunDate;

/// The embedded timer: one schedule run every day at `at` (UTC), until `stop`.
pub async fn run(state: AppState, at: NaiveTime, stop: CancellationToken) {
    loop {
        let now = Utc::now();
        let mut next = now.date_naive().and_time(at).and_utc();
        if next <= now {
            next += chrono::Duration::days(1);
        }
        tracing::info!(next = %next, "next nightly schedule run");
        let wait = (next - now).to_std().unwrap_or_default();
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = stop.cancelled() => return,
        }
        state.schedule(RunDate::from_date(next.date_naive()), false).await;
    }
}
