//! `[schedule]`: the embedded nightly timer.

use serde::Deserialize;

use super::error::SettingsError;

/// `[schedule]`: the embedded timer that runs `/schedule` every day while `serve` runs, so a
/// self-hosted deployment needs no cron. Turn it off (`daily_at = ""`) when an external scheduler
/// (Cloud Scheduler, cron) calls `POST /schedule`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleSettings {
    /// UTC time of day `HH:MM` of the nightly run; empty: no embedded timer.
    pub daily_at: String,
}

impl Default for ScheduleSettings {
    fn default() -> Self {
        Self { daily_at: "03:00".to_owned() }
    }
}

impl ScheduleSettings {
    /// The time of day of the nightly run, if the timer is on.
    pub fn daily_at(&self) -> Result<Option<chrono::NaiveTime>, SettingsError> {
        if self.daily_at.trim().is_empty() {
            return Ok(None);
        }
        chrono::NaiveTime::parse_from_str(self.daily_at.trim(), "%H:%M").map(Some).map_err(|_| {
            SettingsError::new("schedule.daily_at", format!("`{}` is not a time of day HH:MM (UTC)", self.daily_at))
        })
    }
}
