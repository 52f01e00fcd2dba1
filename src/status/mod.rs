//! Freshness and coverage: the state of every database, computed from the store. This file holds
//! the states, the report types and [`classify`] (pure); [`compute`] reads the store, [`service`]
//! caches the status and the histories ([`StatusService`](service::StatusService)), [`render`] draws
//! the terminal table, [`copies`] reads the state of each off-site copy, [`strip`] each database's
//! last nights, [`page`] the overview page and [`detail`] the per-database and per-run pages. The
//! children import this file and each other by path; this file names none of them.
//!
//! What is read, per computation (never the whole history of backups):
//! - `latest/`: one listing, then one read per database (the copy of its newest manifest);
//! - the newest run ledger: one listing of `runs/<day>/` per day, from today back at most
//!   [`LEDGER_LOOKBACK_DAYS`](crate::runs::ledger::LEDGER_LOOKBACK_DAYS) days, then one read;
//! - `reports/<run date>/`: one listing (the failures reported for the newest run's day);
//! - `verifications/`: one listing (one record per verified backup), then one read per database;
//! - the previous day's manifest of each database (one read, for the size trend);
//! - `holds/`: one listing, then one read per hold (holds are rare: each is a suspected data loss);
//! - each off-site copy's `latest/`: one listing, then one read per database (`copies`);
//! - with the status, for the pages and the per-database metrics: `history/`, one listing, then one
//!   read per database (its history object, `crate::store::history`).
//!
//! States, first match wins ([`classify`]):
//! `excluded` (the newest run excluded it on purpose) · `gone` (has a backup, the newest run did not
//! discover it, and its source was listed without error) · `failing` (expected by the newest run,
//! a failure was reported for that day, no backup for it) · `missing` (expected by the newest run,
//! never backed up) · `suspect` (the data-loss tripwire holds one of its backups: a table lost
//! most of its rows or vanished, or the dump shrank, until an operator releases the hold) ·
//! `stale` (newest backup older than `slo_hours`) · `unverifiable` (fresh, but no
//! drill can restore it: a SQL Server BAK file; neutral, never counted as proven) · `unverified` (no
//! successful restore drill within `verify_within_days`; 0 turns both off) · `ok`.
//!
//! **Proven** is what the badge and the totals count: a database in state `ok` with a successful
//! drill on record (within `verify_within_days` when drills are required). `backed_up` counts the
//! databases with a backup that are still in scope (not `gone` or `excluded`), so "4 backed up,
//! 0 proven" is never "fine": [`StatusReport::all_proven`] is false, the page's badge says so, and
//! `data-backup status` exits 3 ([`exit_status`](render::exit_status)).
//!
//! **Off-site copies** (`[[copies]]`, ADR 0023): each row of a database with a primary backup also
//! says how each copy holds it ([`CopyStatus`]: `ok`, `behind`, `missing`, or `error` when the
//! copy cannot be read; the rule and its grace are in [`copies`]). A copy behind never changes the
//! database's own state nor `healthy`; [`StatusReport::copies_behind`] counts the databases with a
//! copy not `ok`, and `data-backup status` exits 4 when it is not 0 (and nothing exits 2).
//!
//! [`StatusService`](service::StatusService) caches a computed status for `cache_secs` and per-run
//! reports (for good once their day is two days past). The run reports and the one summary
//! notification per run are `crate::runs`'s.

pub mod compute;
pub mod copies;
pub mod detail;
pub mod page;
pub mod render;
pub mod service;
pub mod strip;

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::model::Engine;
use crate::runs::summary::RunReport;
use crate::settings::StatusSettings;
use crate::store::manifest::Manifest;

/// The state of one database.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DbState {
    /// A failure was reported for the newest run's day and there is no backup for it.
    Failing,
    /// Expected by the newest run, never backed up.
    Missing,
    /// The data-loss tripwire holds one of its backups (a possible data loss) until released.
    Suspect,
    /// The newest backup is older than the SLO.
    Stale,
    /// Fresh, but no successful restore drill within `verify_within_days`.
    Unverified,
    /// Fresh, but no drill can restore it here (a SQL Server BAK file): not proven, not an alarm.
    Unverifiable,
    /// Fresh (and verified, when drills are required).
    Ok,
    /// Backed up before, no longer discovered.
    Gone,
    /// Discovered, and excluded by a pattern.
    Excluded,
}

impl DbState {
    /// Every state, most severe first.
    pub const ALL: [Self; 9] = [
        Self::Failing,
        Self::Missing,
        Self::Suspect,
        Self::Stale,
        Self::Unverified,
        Self::Unverifiable,
        Self::Ok,
        Self::Gone,
        Self::Excluded,
    ];

    /// The state's name (`ok`, `stale`, …).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Failing => "failing",
            Self::Missing => "missing",
            Self::Suspect => "suspect",
            Self::Stale => "stale",
            Self::Unverified => "unverified",
            Self::Unverifiable => "unverifiable",
            Self::Ok => "ok",
            Self::Gone => "gone",
            Self::Excluded => "excluded",
        }
    }

    /// Parses a state's name.
    #[must_use]
    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == value)
    }

    /// Whether this state needs someone (the CLI exits non-zero): stale, failing, missing or suspect.
    #[must_use]
    pub fn is_alarm(self) -> bool {
        matches!(self, Self::Failing | Self::Missing | Self::Suspect | Self::Stale)
    }

    /// Whether a database in this state counts towards the totals (not `gone`, not `excluded`).
    #[must_use]
    pub fn in_scope(self) -> bool {
        !matches!(self, Self::Gone | Self::Excluded)
    }
}

/// How one off-site copy holds one database's backups (see `crate::status::copies` for the rule).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CopyState {
    /// The copy's store could not be read (its listing failed): every database's state in it.
    Error,
    /// The copy holds no backup of the database, and should.
    Missing,
    /// The copy's newest backup is older than the one it should hold.
    Behind,
    /// The copy holds the newest primary backup it should hold (or a newer one).
    Ok,
}

impl CopyState {
    /// Every state, most severe first.
    pub const ALL: [Self; 4] = [Self::Error, Self::Missing, Self::Behind, Self::Ok];

    /// The state's name (`ok`, `behind`, `missing`, `error`).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Missing => "missing",
            Self::Behind => "behind",
            Self::Ok => "ok",
        }
    }

    /// Whether this state needs someone: every state but `ok`.
    #[must_use]
    pub fn is_alarm(self) -> bool {
        self != Self::Ok
    }
}

/// One database in one off-site copy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CopyStatus {
    /// The copy's `[[copies]]` name.
    pub name: String,
    /// Run date of the newest backup the copy holds (its `latest/`), null when none (or unread).
    pub newest_run_date: Option<String>,
    /// `ok`, `behind`, `missing` or `error`.
    pub state: CopyState,
}

/// One off-site copy over every database with a primary backup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CopySummary {
    /// The copy's `[[copies]]` name.
    pub name: String,
    /// Databases per copy state (`ok`, `behind`, `missing`, `error`; zeros included).
    pub counts: BTreeMap<String, usize>,
    /// Why the copy's store could not be read, when it could not.
    pub error: Option<String>,
}

/// The last restore drill of a database.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VerificationSeen {
    /// `ok` or `failed`.
    pub result: String,
    /// When it finished.
    pub verified_at: DateTime<Utc>,
    /// The run date of the backup it restored.
    pub run_date: String,
    /// Seconds its restore took (the database's measured restore time), when it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_secs: Option<f64>,
    /// Stored bytes restored per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_per_sec: Option<f64>,
}

/// One database's row.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DatabaseStatus {
    /// Project (self-hosted: the source's name).
    pub project: String,
    /// Instance.
    pub instance: String,
    /// Database.
    pub database: String,
    /// Source that found it, when known.
    pub source: Option<String>,
    /// Engine, when known.
    pub engine: Option<Engine>,
    /// Its state.
    pub state: DbState,
    /// Why, in words.
    pub reason: String,
    /// When its newest backup finished.
    pub last_backup_at: Option<DateTime<Utc>>,
    /// Age of that backup in hours (one decimal).
    pub age_hours: Option<f64>,
    /// Run date of that backup.
    pub last_backup_date: Option<String>,
    /// Stored size of that backup.
    pub bytes: Option<u64>,
    /// Stored size of the backup of the day before, when there is one.
    pub previous_bytes: Option<u64>,
    /// Size change against the day before, in percent (one decimal).
    pub bytes_change_percent: Option<f64>,
    /// Its last restore drill.
    pub last_verification: Option<VerificationSeen>,
    /// How each off-site copy (`[[copies]]`) holds it, for a database with a primary backup;
    /// absent without copies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub copies: Vec<CopyStatus>,
}

impl DatabaseStatus {
    /// Whether an off-site copy of it is behind, missing or unreadable.
    #[must_use]
    pub fn copy_alarm(&self) -> bool {
        self.copies.iter().any(|c| c.state.is_alarm())
    }
}

/// The whole status.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StatusReport {
    /// When it was computed.
    pub generated_at: DateTime<Utc>,
    /// Hours after which a backup is stale.
    pub slo_hours: u32,
    /// Days within which a successful restore drill is required (0: not required).
    pub verify_within_days: u32,
    /// False when any database is stale, failing, missing or suspect.
    pub healthy: bool,
    /// Databases with a backup, `gone` and `excluded` ones left out.
    pub backed_up: usize,
    /// Of those, the ones proven restorable: state `ok` with a successful restore drill on record
    /// (within `verify_within_days` when drills are required).
    pub proven: usize,
    /// True when nothing is in an alarm state and every database backed up is proven (`unverified`
    /// and `unverifiable` ones are not).
    pub all_proven: bool,
    /// Databases per state (every state, zeros included), over all databases.
    pub counts: BTreeMap<String, usize>,
    /// The newest run (without its database list).
    pub latest_run: Option<RunReport>,
    /// One row per database, most severe first (filtered when the request asked).
    pub databases: Vec<DatabaseStatus>,
    /// Databases (not `gone` or `excluded`) with an off-site copy `behind`, `missing` or
    /// unreadable (`error`); 0 without copies. Not part of `healthy`; `data-backup status` exits 4.
    #[serde(default)]
    pub copies_behind: usize,
    /// Each off-site copy over every database; absent without copies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub copies: Vec<CopySummary>,
}

/// A filter over the rows (`?project=&instance=&state=`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatusFilter {
    /// Only this project.
    pub project: Option<String>,
    /// Only this instance.
    pub instance: Option<String>,
    /// Only this state.
    pub state: Option<DbState>,
}

impl StatusFilter {
    fn keeps(&self, row: &DatabaseStatus) -> bool {
        let empty = |v: &Option<String>| v.as_deref().is_none_or(str::is_empty);
        (empty(&self.project) || self.project.as_deref() == Some(row.project.as_str()))
            && (empty(&self.instance) || self.instance.as_deref() == Some(row.instance.as_str()))
            && self.state.is_none_or(|s| s == row.state)
    }
}

impl StatusReport {
    /// The same report with only the rows `filter` keeps (counts stay over all databases).
    #[must_use]
    pub fn filtered(&self, filter: &StatusFilter) -> Self {
        let mut out = self.clone();
        out.databases.retain(|r| filter.keeps(r));
        out
    }
}

// ---------------------------------------------------------------------------------------------
// Classification (pure)

/// How the newest run saw a database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expectation {
    /// No run ledger was found.
    NoRun,
    /// The run was to back it up.
    Expected,
    /// The run discovered it and excluded it by this pattern.
    Excluded(Option<String>),
    /// The run did not discover it; `source_failed` when its source could not be (fully) listed.
    NotListed {
        /// Its source met an error in that run.
        source_failed: bool,
    },
}

/// What is known of one database, the input of [`classify`].
#[derive(Clone, Debug)]
pub struct Facts<'a> {
    /// Copy of its newest manifest.
    pub latest: Option<&'a Manifest>,
    /// How the newest run saw it.
    pub expectation: Expectation,
    /// The newest run's date.
    pub run_date: Option<NaiveDate>,
    /// The failure reported for the newest run's day, if any.
    pub failure: Option<&'a str>,
    /// When its newest successful restore drill finished.
    pub verified_ok_at: Option<DateTime<Utc>>,
    /// Why the data-loss tripwire holds one of its backups, if it does.
    pub held: Option<&'a str>,
}

fn age_words(hours: f64) -> String {
    if hours < 48.0 { format!("{hours:.1} h") } else { format!("{:.1} days", hours / 24.0) }
}

fn hours_since(t: DateTime<Utc>, now: DateTime<Utc>) -> f64 {
    #[expect(clippy::cast_precision_loss, reason = "ages in seconds are far below 2^52")]
    let secs = (now - t).num_seconds() as f64;
    (secs / 360.0).round() / 10.0
}

/// The state of a database and why (see the module docs for the rules).
#[must_use]
pub fn classify(facts: &Facts<'_>, now: DateTime<Utc>, settings: &StatusSettings) -> (DbState, String) {
    let backed_up_for_run = match (facts.latest, facts.run_date) {
        (Some(m), Some(day)) => NaiveDate::parse_from_str(&m.run_date, "%Y-%m-%d").is_ok_and(|d| d >= day),
        _ => false,
    };
    match &facts.expectation {
        Expectation::Excluded(pattern) => {
            let by = pattern.as_deref().map(|p| format!(" by `{p}`")).unwrap_or_default();
            return (DbState::Excluded, format!("discovered by the newest run and excluded{by}"));
        }
        Expectation::NotListed { source_failed: false } if facts.latest.is_some() => {
            return (DbState::Gone, "backed up before, not discovered by the newest run".into());
        }
        Expectation::Expected if !backed_up_for_run => {
            if let Some(error) = facts.failure {
                return (DbState::Failing, format!("the newest run's export failed: {error}"));
            }
            if facts.latest.is_none() {
                return (DbState::Missing, "expected by the newest run, never backed up".into());
            }
        }
        _ => {}
    }
    let Some(latest) = facts.latest else {
        return (DbState::Missing, "never backed up".into());
    };
    if let Some(why) = facts.held {
        return (DbState::Suspect, why.to_owned());
    }
    let age = hours_since(latest.finished_at, now);
    if age > f64::from(settings.slo_hours) {
        return (DbState::Stale, format!("newest backup is {} old (SLO {} h)", age_words(age), settings.slo_hours));
    }
    if settings.verify_within_days > 0
        && let Some(why) = crate::restore::unrestorable(latest)
    {
        return (DbState::Unverifiable, format!("fresh backup, not provable here: {why}"));
    }
    if settings.verify_within_days > 0 {
        let within = chrono::Duration::days(i64::from(settings.verify_within_days));
        if facts.verified_ok_at.is_none_or(|t| now - t > within) {
            let days = settings.verify_within_days;
            let why = match facts.verified_ok_at {
                Some(_) => format!("last successful restore drill is older than {days} days"),
                None => "no successful restore drill on record".to_owned(),
            };
            return (DbState::Unverified, why);
        }
    }
    (DbState::Ok, format!("fresh backup ({} old)", age_words(age)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(run_date: &str, finished_hours_ago: i64, now: DateTime<Utc>) -> Manifest {
        Manifest {
            run_date: run_date.to_owned(),
            finished_at: now - chrono::Duration::hours(finished_hours_ago),
            ..placeholder_manifest()
        }
    }

    #[test]
    fn each_fact_pattern_gets_its_state_first_match_wins() {
        let now = Utc::now();
        let today = now.date_naive();
        let settings = StatusSettings::default();
        let d = |n: i64| (today - chrono::Duration::days(n)).format("%Y-%m-%d").to_string();
        let fresh = manifest(&d(0), 1, now);
        let old = manifest(&d(3), 72, now);
        let verified = Some(now - chrono::Duration::days(1));
        let long_ago = Some(now - chrono::Duration::days(30));
        let sql_server = |m: &Manifest| Manifest {
            engine: Engine::Sqlserver,
            format: crate::store::manifest::DumpFormat::SqlServerBak,
            ..m.clone()
        };
        let (bak, old_bak) = (sql_server(&fresh), sql_server(&old));
        let facts = |latest, expectation, failure, verified_ok_at| Facts {
            latest,
            expectation,
            run_date: Some(today),
            failure,
            verified_ok_at,
            held: None,
        };
        let table: Vec<(Facts<'_>, DbState)> = vec![
            (facts(Some(&fresh), Expectation::Expected, None, verified), DbState::Ok),
            (facts(Some(&old), Expectation::Expected, None, verified), DbState::Stale),
            (facts(Some(&old), Expectation::Expected, Some("boom"), verified), DbState::Failing),
            (facts(Some(&fresh), Expectation::Expected, Some("reported, then a retry made it"), verified), DbState::Ok),
            (facts(None, Expectation::Expected, None, None), DbState::Missing),
            (facts(None, Expectation::Expected, Some("boom"), None), DbState::Failing),
            (facts(Some(&fresh), Expectation::NotListed { source_failed: false }, None, verified), DbState::Gone),
            (facts(Some(&old), Expectation::NotListed { source_failed: true }, None, verified), DbState::Stale),
            (facts(Some(&fresh), Expectation::Excluded(Some("*/*/tmp_*".into())), None, None), DbState::Excluded),
            (facts(Some(&fresh), Expectation::Expected, None, long_ago), DbState::Unverified),
            (facts(Some(&fresh), Expectation::NoRun, None, None), DbState::Unverified),
            (facts(Some(&old), Expectation::NoRun, None, None), DbState::Stale),
            (facts(Some(&bak), Expectation::Expected, None, None), DbState::Unverifiable),
            (facts(Some(&old_bak), Expectation::Expected, None, None), DbState::Stale),
        ];
        for (i, (f, want)) in table.iter().enumerate() {
            let (got, why) = classify(f, now, &settings);
            assert_eq!(got, *want, "case {i}: {why}");
        }
        let off = StatusSettings { verify_within_days: 0, ..StatusSettings::default() };
        assert_eq!(classify(&facts(Some(&fresh), Expectation::NoRun, None, None), now, &off).0, DbState::Ok);
        assert_eq!(classify(&facts(Some(&bak), Expectation::NoRun, None, None), now, &off).0, DbState::Ok);
        // A hold makes a backed-up database suspect, before staleness and drills; not a failing one.
        let held = |f| Facts { held: Some("possible data loss"), ..f };
        assert_eq!(
            classify(&held(facts(Some(&old), Expectation::Expected, None, None)), now, &settings).0,
            DbState::Suspect
        );
        assert_eq!(
            classify(&held(facts(Some(&fresh), Expectation::NoRun, None, verified)), now, &settings).0,
            DbState::Suspect
        );
        assert_eq!(
            classify(&held(facts(Some(&old), Expectation::Expected, Some("boom"), None)), now, &settings).0,
            DbState::Failing
        );
    }

    #[test]
    fn alarm_states_are_stale_failing_missing_and_suspect() {
        let alarms: Vec<_> = DbState::ALL.into_iter().filter(|s| s.is_alarm()).map(DbState::as_str).collect();
        assert_eq!(alarms, ["failing", "missing", "suspect", "stale"]);
        assert_eq!(DbState::parse("gone"), Some(DbState::Gone));
    }

    fn placeholder_manifest() -> Manifest {
        Manifest {
            version: 0,
            source: String::new(),
            project: String::new(),
            instance: String::new(),
            database: String::new(),
            engine: Engine::Postgres,
            run_date: String::new(),
            run_id: String::new(),
            class: String::new(),
            key: String::new(),
            format: crate::store::manifest::DumpFormat::PgCustomZstd,
            compression: String::new(),
            compression_level: None,
            bytes: 0,
            raw_bytes: None,
            sha256: None,
            object_version: None,
            started_at: DateTime::<Utc>::MIN_UTC,
            finished_at: DateTime::<Utc>::MIN_UTC,
            tools: crate::store::manifest::ToolVersions {
                dump: String::new(),
                server: String::new(),
                data_backup: String::new(),
            },
            encryption: None,
            row_counts: None,
            row_counts_exact: None,
            cloud_sql: None,
        }
    }
}
