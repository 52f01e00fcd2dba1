//! The per-database page (`GET /database?project=&instance=&database=`) and the per-run page
//! (`GET /runs/{id}` asked for HTML), rendered from `templates/status/database.html` and
//! `templates/status/run.html` (askama: checked when the crate compiles, every value escaped).
//!
//! A database page shows every backup of the database (the catalog's listing: date, class, label,
//! size, encryption, its drill and restore time), what its history adds (export time, row-count
//! changes, failures, the strip of its nights), its holds, and the `restore` command of each
//! backup. A run page shows what the run expected, exported, failed, excluded (with the pattern)
//! and skipped (with the reason), how long its exports took and the slowest of them.

use askama::Template;
use chrono::{DateTime, NaiveDate, Utc};

use crate::model::{DatabasePath, key_segment};
use crate::restore::BackupPage;
use crate::runs::summary::RunReport;
use crate::status::DatabaseStatus;
use crate::status::page::{Histories, database_href};
use crate::status::strip::{Cell, cells, duration_words, series, size_words, sparkline};
use crate::store::history::{History, KEEP_NIGHTS};
use crate::store::holds::Hold;

struct BackupRow {
    state: &'static str,
    date: String,
    class: String,
    label: String,
    size: String,
    duration: String,
    encryption: String,
    rows: String,
    verification: String,
    copies: String,
    restore: String,
}

#[derive(Template)]
#[template(path = "status/database.html")]
struct DatabasePage {
    path: String,
    project: String,
    instance: String,
    database: String,
    badge_class: &'static str,
    state: String,
    reason: String,
    tiles: Vec<(&'static str, String)>,
    cells: Vec<Cell>,
    size_points: String,
    duration_points: String,
    holds: Vec<String>,
    backups: Vec<BackupRow>,
    failures: Vec<String>,
    generated: String,
}

fn signed(n: i128) -> String {
    if n > 0 { format!("+{n}") } else { n.to_string() }
}

/// The rows of each night's backup and the change against the night before, from the history.
fn rows_words(history: Option<&History>, date: NaiveDate) -> String {
    let Some(h) = history else { return "-".to_owned() };
    let Some(rows) = h.nights.get(&date).and_then(|n| n.backup.as_ref()).and_then(|b| b.rows) else {
        return "-".to_owned();
    };
    let before = h.nights.range(..date).rev().find_map(|(_, n)| n.backup.as_ref().and_then(|b| b.rows));
    match before {
        Some(b) => format!("{rows} ({})", signed(i128::from(rows) - i128::from(b))),
        None => rows.to_string(),
    }
}

/// The `restore` command of one backup (names as the command line takes them, `%`-encoded).
fn restore_command(db: &DatabasePath, date: &str, label: Option<&str>) -> String {
    let which = match label {
        Some(l) => format!("--label {}", key_segment(l)),
        None => format!("--date {date}"),
    };
    format!(
        "data-backup restore --database {}/{}/{} {which} --target URL --create",
        key_segment(db.project.as_str()),
        key_segment(db.instance.as_str()),
        key_segment(db.database.as_str())
    )
}

/// Where a backup is held: the primary store's key, and each off-site copy whose newest backup
/// (its `latest/` pointer, moved only after the copy was checked on arrival) is this one. An older
/// backup's copies are not listed: the pointer proves only the newest.
fn copies_cell(status: Option<&DatabaseStatus>, backup: &crate::restore::BackupSummary) -> String {
    let held: Vec<&str> = status
        .map(|s| s.copies.as_slice())
        .unwrap_or_default()
        .iter()
        .filter(|c| backup.label.is_none() && c.newest_run_date.as_deref() == Some(backup.run_date.as_str()))
        .map(|c| c.name.as_str())
        .collect();
    if held.is_empty() {
        format!("primary ({})", backup.key)
    } else {
        format!("primary ({}); off-site: {}", backup.key, held.join(", "))
    }
}

/// The page of one database: its row of the status (when it has one), its backups, history and holds.
#[must_use]
pub fn render_database(
    db: &DatabasePath,
    status: Option<&DatabaseStatus>,
    backups: &BackupPage,
    history: Option<&History>,
    holds: &[Hold],
    now: DateTime<Utc>,
) -> String {
    let today = now.date_naive();
    let (sizes, durations) = series(history, today, KEEP_NIGHTS);
    let night = |date: &str| {
        let d = NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
        history.and_then(|h| h.nights.get(&d)).map(|n| (d, n))
    };
    let rows = backups
        .backups
        .iter()
        .map(|b| {
            let n = night(&b.run_date);
            let backup = n.and_then(|(_, n)| n.backup.as_ref()).filter(|_| b.label.is_none());
            let verification = b.verification.as_ref().map_or_else(
                || "not verified".to_owned(),
                |v| {
                    let rto = crate::status::render::restore_time_words(v.restore_secs, v.bytes_per_sec)
                        .map(|w| format!(" · {w}"))
                        .unwrap_or_default();
                    let result = serde_json::to_value(v.result).ok().and_then(|r| r.as_str().map(str::to_owned));
                    let error = v.error.as_deref().map(|e| format!(": {e}")).unwrap_or_default();
                    format!("{} {}{rto}{error}", result.unwrap_or_default(), v.verified_at.format("%Y-%m-%d"))
                },
            );
            let proven = b.verification.as_ref().is_some_and(|v| {
                serde_json::to_value(v.result).ok().and_then(|r| r.as_str().map(|s| s == "ok")).unwrap_or(false)
            });
            BackupRow {
                state: if proven { "ok" } else { "unverified" },
                date: b.run_date.clone(),
                class: b.class.clone(),
                label: b.label.clone().unwrap_or_default(),
                size: size_words(b.bytes),
                duration: backup.map_or_else(|| "-".to_owned(), |b| duration_words(b.duration_secs())),
                encryption: if b.encrypted {
                    format!("age ({} recipients)", b.recipients.len())
                } else {
                    "none".to_owned()
                },
                rows: if b.label.is_some() {
                    "-".to_owned()
                } else {
                    n.map_or_else(|| "-".to_owned(), |(d, _)| rows_words(history, d))
                },
                verification,
                copies: copies_cell(status, b),
                restore: restore_command(db, &b.run_date, b.label.as_deref()),
            }
        })
        .collect();
    let failures = history
        .map(|h| {
            h.nights
                .iter()
                .rev()
                .filter_map(|(d, n)| n.failure.as_ref().map(|f| format!("{d}: {} ({})", f.message, f.error_class)))
                .collect()
        })
        .unwrap_or_default();
    let (badge_class, state, reason) = match status {
        Some(s) if s.state.is_alarm() => ("alarm", s.state.as_str().to_owned(), s.reason.clone()),
        Some(s) if s.state == crate::status::DbState::Ok => ("healthy", "ok".to_owned(), s.reason.clone()),
        Some(s) => ("unproven", s.state.as_str().to_owned(), s.reason.clone()),
        None => ("empty", "unknown".to_owned(), "not in the current status".to_owned()),
    };
    let newest = backups.backups.iter().find(|b| b.label.is_none());
    let mut tiles = vec![
        ("backups", backups.backups.len().to_string()),
        ("newest", newest.map_or_else(|| "-".to_owned(), |b| b.run_date.clone())),
        ("size", newest.map_or_else(|| "-".to_owned(), |b| size_words(b.bytes))),
        ("stored", size_words(backups.backups.iter().map(|b| b.bytes).sum())),
        ("failures", history.map_or(0, |h| h.nights.values().filter(|n| n.failure.is_some()).count()).to_string()),
    ];
    if let Some(s) = status.filter(|s| !s.copies.is_empty()) {
        tiles.push(("off-site", crate::status::render::copies_words(s)));
    }
    let page = DatabasePage {
        path: format!("{}/{}/{}", db.project, db.instance, db.database),
        project: db.project.to_string(),
        instance: db.instance.to_string(),
        database: db.database.to_string(),
        badge_class,
        state,
        reason,
        tiles,
        cells: cells(history, today, KEEP_NIGHTS),
        size_points: sparkline(&sizes, 180.0, 28.0),
        duration_points: sparkline(&durations, 180.0, 28.0),
        holds: holds
            .iter()
            .map(|h| {
                let release = crate::store::holds::release_command(&h.project, &h.instance, &h.database, &h.run_date);
                format!("{} (suspect {}): {} — release: {release}", h.run_date, h.suspect_run_date, h.reason)
            })
            .collect(),
        backups: rows,
        failures,
        generated: now.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    };
    page.render().expect("the database template renders plain values")
}

struct Slow {
    href: String,
    path: String,
    duration: String,
    size: String,
}

struct RunRow {
    outcome: String,
    href: String,
    path: String,
    engine: String,
    detail: String,
}

struct Group {
    title: &'static str,
    detail: &'static str,
    rows: Vec<RunRow>,
}

#[derive(Template)]
#[template(path = "status/run.html")]
struct RunPage {
    badge_class: &'static str,
    run_id: String,
    run_date: String,
    run_id_q: String,
    run_date_q: String,
    started: String,
    duration: String,
    figures: Vec<(&'static str, usize)>,
    complete: bool,
    errors: Vec<String>,
    slowest: Vec<Slow>,
    groups: Vec<Group>,
}

/// Slowest exports a run page lists.
pub const SLOWEST: usize = 10;

/// The page of one run (`report` with its databases), its export times from `histories`.
#[must_use]
pub fn render_run(report: &RunReport, histories: &Histories) -> String {
    let day = NaiveDate::parse_from_str(&report.run_date, "%Y-%m-%d").ok();
    let dbs = report.databases.clone().unwrap_or_default();
    let mut exports: Vec<(String, String, f64, u64, DateTime<Utc>)> = Vec::new();
    for d in &dbs {
        let key = (d.project.clone(), d.instance.clone(), d.database.clone());
        let b = day.and_then(|day| histories.get(&key)?.nights.get(&day)?.backup.clone());
        if let Some(b) = b.filter(|b| b.run_id == report.run_id || d.outcome == "exported") {
            exports.push((
                database_href(&d.project, &d.instance, &d.database),
                format!("{}/{}/{}", d.project, d.instance, d.database),
                b.duration_secs(),
                b.bytes,
                b.finished_at,
            ));
        }
    }
    let last_finish = exports.iter().map(|e| e.4).max();
    let duration = last_finish.map_or_else(String::new, |end| {
        #[expect(clippy::cast_precision_loss, reason = "seconds of a run fit an f64")]
        let secs = (end - report.started_at).num_seconds().max(0) as f64;
        duration_words(secs)
    });
    exports.sort_by(|a, b| b.2.total_cmp(&a.2));
    let slowest = exports
        .iter()
        .take(SLOWEST)
        .map(|e| Slow { href: e.0.clone(), path: e.1.clone(), duration: duration_words(e.2), size: size_words(e.3) })
        .collect();
    let group = |title, detail, outcome: &str, words: &dyn Fn(&crate::runs::summary::RunDatabase) -> String| Group {
        title,
        detail,
        rows: dbs
            .iter()
            .filter(|d| d.outcome == outcome)
            .map(|d| RunRow {
                outcome: d.outcome.clone(),
                href: database_href(&d.project, &d.instance, &d.database),
                path: format!("{}/{}/{}", d.project, d.instance, d.database),
                engine: d.engine.as_str().to_owned(),
                detail: words(d),
            })
            .collect(),
    };
    let groups = vec![
        group("Failed", "Error", "failed", &|d| d.error.clone().unwrap_or_default()),
        group("Skipped", "Reason", "not_backed_up", &|_| {
            "expected, neither backed up nor reported failed (still running, or lost)".to_owned()
        }),
        group("Excluded", "Pattern", "excluded", &|d| d.excluded_by.clone().unwrap_or_else(|| "-".to_owned())),
        group("Exported", "Export time", "exported", &|d| {
            let key = (d.project.clone(), d.instance.clone(), d.database.clone());
            day.and_then(|day| {
                histories.get(&key)?.nights.get(&day)?.backup.as_ref().map(|b| duration_words(b.duration_secs()))
            })
            .unwrap_or_else(|| "-".to_owned())
        }),
    ];
    let badge_class =
        if report.failed > 0 || report.not_backed_up > 0 || !report.complete { "alarm" } else { "healthy" };
    let page = RunPage {
        badge_class,
        run_id: report.run_id.clone(),
        run_date: report.run_date.clone(),
        run_id_q: crate::status::page::q(&report.run_id),
        run_date_q: crate::status::page::q(&report.run_date),
        started: report.started_at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        duration,
        figures: vec![
            ("discovered", report.discovered),
            ("expected", report.expected),
            ("exported", report.exported),
            ("failed", report.failed),
            ("excluded", report.excluded),
            ("skipped", report.not_backed_up),
        ],
        complete: report.complete,
        errors: report.errors.iter().map(|e| format!("{}: {}", e.scope, e.message)).collect(),
        slowest,
        groups,
    };
    page.render().expect("the run template renders plain values")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{DatabaseName, InstanceName, ProjectId};

    #[test]
    fn the_restore_command_names_the_backup_with_hostile_names_encoded() {
        let db = DatabasePath {
            project: ProjectId::parse("p").unwrap(),
            instance: InstanceName::parse("a/b").unwrap(),
            database: DatabaseName::parse("x y").unwrap(),
        };
        assert_eq!(
            restore_command(&db, "2026-11-22", None),
            "data-backup restore --database p/a%2Fb/x%20y --date 2026-11-22 --target URL --create"
        );
        assert!(restore_command(&db, "2026-11-22", Some("v 1")).contains("--label v%201 "));
    }
}
