//! `[status]` (what counts as fresh, for the primary and its off-site copies) and `[tripwire]` (when a new backup looks like data was
//! lost), with their checks.

use serde::Deserialize;

use super::error::SettingsError;

/// `[tripwire]`: when a new backup is `suspect` against the previous backup of its database.
///
/// ```toml
/// [tripwire]
/// enabled = true
/// table_loss_share = 0.5   # a table that lost more than this share of its rows trips
/// shrink_share = 0.5       # a dump that shrank by more than this share trips
/// min_rows = 1000          # tables with fewer rows before are never compared (nor missed)
/// min_bytes = 1048576      # dumps smaller than this before are never compared by size
/// ```
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TripwireSettings {
    /// Whether new backups are compared with the previous ones at all.
    pub enabled: bool,
    /// Share of a table's rows (0 < x < 1) whose loss makes the backup suspect.
    pub table_loss_share: f64,
    /// Share of the stored size (0 < x < 1) whose loss makes the backup suspect.
    pub shrink_share: f64,
    /// Tables with fewer rows than this in the previous backup are left out.
    pub min_rows: u64,
    /// Dumps smaller than this (bytes) in the previous backup are not compared by size.
    pub min_bytes: u64,
}

impl Default for TripwireSettings {
    fn default() -> Self {
        Self { enabled: true, table_loss_share: 0.5, shrink_share: 0.5, min_rows: 1000, min_bytes: 1 << 20 }
    }
}

/// `[status]`: what counts as fresh, and how long a computed status is reused.
///
/// ```toml
/// [status]
/// slo_hours = 26            # a backup older than this is `stale`
/// verify_within_days = 8    # no successful restore drill within this many days: `unverified` (0: off)
/// cache_secs = 30           # a computed status is served this long before the store is read again
/// runs_days = 7             # days of runs `GET /runs` lists by default
/// copy_grace_minutes = 60   # an off-site copy may lag its newest primary backup this long
/// ```
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatusSettings {
    /// Hours after which the newest backup of a database is `stale`.
    pub slo_hours: u32,
    /// Days within which a database needs a successful restore drill; 0 turns `unverified` off.
    pub verify_within_days: u32,
    /// Seconds a computed status is reused.
    pub cache_secs: u64,
    /// Days of runs listed by `GET /runs` when the request does not say.
    pub runs_days: u32,
    /// Minutes after a primary backup finishes during which an off-site copy that still holds the
    /// backup due before it counts as `ok` (its copy may be in flight); 0: no grace.
    pub copy_grace_minutes: u32,
}

impl Default for StatusSettings {
    fn default() -> Self {
        Self { slo_hours: 26, verify_within_days: 8, cache_secs: 30, runs_days: 7, copy_grace_minutes: 60 }
    }
}

impl TripwireSettings {
    /// Checks the shares lie strictly between 0 and 1.
    pub(crate) fn validate(&self) -> Result<(), SettingsError> {
        for (key, share) in
            [("tripwire.table_loss_share", self.table_loss_share), ("tripwire.shrink_share", self.shrink_share)]
        {
            if !(share > 0.0 && share < 1.0) {
                return Err(SettingsError::new(key, format!("must lie strictly between 0 and 1, not {share}")));
            }
        }
        Ok(())
    }
}

impl StatusSettings {
    /// Checks the freshness, cache and listing limits.
    pub(crate) fn validate(&self) -> Result<(), SettingsError> {
        if self.slo_hours == 0 {
            return Err(SettingsError::new("status.slo_hours", "must be at least 1"));
        }
        if self.cache_secs > 3600 {
            return Err(SettingsError::new("status.cache_secs", "must be at most 3600"));
        }
        if !(1..=366).contains(&self.runs_days) {
            return Err(SettingsError::new("status.runs_days", "must be between 1 and 366"));
        }
        if self.copy_grace_minutes > 1440 {
            return Err(SettingsError::new("status.copy_grace_minutes", "must be at most 1440 (a day)"));
        }
        Ok(())
    }
}
