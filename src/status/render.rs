//! The status in words: the terminal table of `data-backup status` ([`render_table`]: the totals,
//! then one row per database with the strip of its last nights and its off-site copies), its exit
//! status ([`exit_status`]), and the size, age, restore-time and copy words the pages share.

use std::fmt::Write as _;

use crate::status::strip::{Histories, STRIP_NIGHTS, cells, size_words, terminal};
use crate::status::{CopyState, DatabaseStatus, DbState, StatusReport, age_words};

/// A drill's restore time in words: `restore 12.3 s at 45.6 MiB/s`; `None` without a figure.
#[must_use]
pub fn restore_time_words(restore_secs: Option<f64>, bytes_per_sec: Option<f64>) -> Option<String> {
    let secs = restore_secs?;
    let rate = bytes_per_sec
        .filter(|b| b.is_finite() && *b >= 0.0)
        .map(|b| {
            #[expect(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "a non-negative rate")]
            let b = b as u64;
            format!(" at {}/s", crate::restore::human_bytes(b))
        })
        .unwrap_or_default();
    Some(format!("restore {secs:.1} s{rate}"))
}

/// Human words for a size and its trend (`12.3 MiB (+4.0%)`).
#[must_use]
pub fn size_and_trend(row: &DatabaseStatus) -> String {
    match (row.bytes, row.bytes_change_percent) {
        (Some(b), Some(c)) => format!("{} ({c:+.1}%)", size_words(b)),
        (Some(b), None) => size_words(b),
        _ => "-".to_owned(),
    }
}

/// Human words for an age in hours.
#[must_use]
pub fn age_text(hours: Option<f64>) -> String {
    hours.map_or_else(|| "-".to_owned(), age_words)
}

/// ANSI colour of a state.
fn ansi(state: DbState) -> &'static str {
    match state {
        DbState::Failing | DbState::Missing | DbState::Suspect | DbState::Stale => "\x1b[1;31m",
        DbState::Unverified => "\x1b[33m",
        DbState::Unverifiable => "\x1b[36m",
        DbState::Ok => "\x1b[32m",
        DbState::Gone | DbState::Excluded => "\x1b[2m",
    }
}

/// The status as a terminal table (coloured when `color`): the newest run's summary and the
/// totals on top, then one row per database with the strip of its last nights from `histories`.
#[must_use]
pub fn render_table(report: &StatusReport, histories: &Histories, color: bool) -> String {
    let mut out = String::new();
    match &report.latest_run {
        Some(r) => {
            let _ = writeln!(
                out,
                "newest run {} ({}): discovered {}, excluded {}, expected {}, exported {}, failed {}, not backed up {}{}",
                r.run_id,
                r.run_date,
                r.discovered,
                r.excluded,
                r.expected,
                r.exported,
                r.failed,
                r.not_backed_up,
                if r.complete { "" } else { ", DISCOVERY INCOMPLETE" }
            );
        }
        None => out.push_str("no run in the last days\n"),
    }
    let counts: Vec<String> = report.counts.iter().filter(|(_, n)| **n > 0).map(|(s, n)| format!("{s} {n}")).collect();
    let stored: u64 = report.databases.iter().filter(|r| r.state.in_scope()).filter_map(|r| r.bytes).sum();
    let _ = writeln!(
        out,
        "{} databases: {}; {} backed up, {} proven, {} stored (newest backups)",
        report.databases.len(),
        counts.join(", "),
        report.backed_up,
        report.proven,
        size_words(stored)
    );
    if let Some(line) = copies_line(report) {
        let _ = writeln!(out, "{line}");
    }
    let _ = writeln!(
        out,
        "last {STRIP_NIGHTS} nights, oldest first: █ proven  ▓ backed up  ✗ failed  · missing  ░ not yet tonight\n"
    );
    let today = report.generated_at.date_naive();
    let header = ["STATE", "DATABASE", "LAST 30 NIGHTS", "LAST BACKUP", "AGE", "SIZE", "VERIFIED", "COPIES", "WHY"];
    let rows: Vec<[String; 9]> = report
        .databases
        .iter()
        .map(|r| {
            [
                r.state.as_str().to_owned(),
                format!("{}/{}/{}", r.project, r.instance, r.database),
                terminal(
                    &cells(
                        histories.get(&(r.project.clone(), r.instance.clone(), r.database.clone())),
                        today,
                        STRIP_NIGHTS,
                    ),
                    false,
                ),
                r.last_backup_at.map_or_else(|| "-".to_owned(), |t| t.format("%Y-%m-%d %H:%M").to_string()),
                age_text(r.age_hours),
                size_and_trend(r),
                r.last_verification
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), |v| format!("{} {}", v.result, v.verified_at.format("%Y-%m-%d"))),
                copies_words(r),
                r.reason.clone(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                let _ = write!(s, "{cell:<w$}  ");
            }
        }
        s.trim_end().to_owned()
    };
    let _ = writeln!(out, "{}", line(&header.map(str::to_owned)));
    for (row, r) in rows.iter().zip(&report.databases) {
        let text = line(row);
        if color {
            let _ = writeln!(out, "{}{text}\x1b[0m", ansi(r.state));
        } else {
            let _ = writeln!(out, "{text}");
        }
    }
    out
}

/// How the off-site copies hold a database, in words: `-` without copies, else each copy as
/// `name state` (with the run date it holds when not `ok`), e.g. `offsite ok, cold behind 2026-12-01`.
#[must_use]
pub fn copies_words(row: &DatabaseStatus) -> String {
    if row.copies.is_empty() {
        return "-".to_owned();
    }
    let words: Vec<String> = row
        .copies
        .iter()
        .map(|c| match (&c.newest_run_date, c.state) {
            (_, CopyState::Ok) | (None, _) => format!("{} {}", c.name, c.state.as_str()),
            (Some(date), state) => format!("{} {} {date}", c.name, state.as_str()),
        })
        .collect();
    words.join(", ")
}

/// The summary line of the off-site copies (`None` without copies): the databases with a copy not
/// `ok`, then each copy's counts, or why it could not be read.
#[must_use]
pub fn copies_line(report: &StatusReport) -> Option<String> {
    if report.copies.is_empty() {
        return None;
    }
    let each: Vec<String> = report
        .copies
        .iter()
        .map(|c| {
            if let Some(e) = &c.error {
                return format!("{}: cannot be read ({e})", c.name);
            }
            let counts: Vec<String> =
                c.counts.iter().filter(|(_, n)| **n > 0).map(|(s, n)| format!("{s} {n}")).collect();
            let counts = if counts.is_empty() { "no database".to_owned() } else { counts.join(", ") };
            format!("{}: {counts}", c.name)
        })
        .collect();
    Some(format!(
        "off-site copies: {} databases with a copy behind or missing; {}",
        report.copies_behind,
        each.join("; ")
    ))
}

/// The rows whose state needs someone (stale, failing, missing): the CLI exits non-zero when any.
#[must_use]
pub fn alarming(report: &StatusReport) -> Vec<&DatabaseStatus> {
    report.databases.iter().filter(|r| r.state.is_alarm()).collect()
}

/// Exit status of `data-backup status` for the rows `report` shows: 2 when any is stale, failing,
/// missing or suspect; else 4 when an off-site copy of any (not `gone` or `excluded`) is behind,
/// missing or cannot be read; else 3 when any is `unverified` (backed up, not proven by a recent
/// drill); else 0 (every database proven, or `unverifiable` by nature, `gone` or `excluded`). 1 is
/// left for errors.
#[must_use]
pub fn exit_status(report: &StatusReport) -> u8 {
    if !alarming(report).is_empty() {
        2
    } else if report.databases.iter().any(|r| r.state.in_scope() && r.copy_alarm()) {
        4
    } else if report.databases.iter().any(|r| r.state == DbState::Unverified) {
        3
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_trends_read_as_words() {
        let mut row = DatabaseStatus {
            project: "p".into(),
            instance: "i".into(),
            database: "d".into(),
            source: None,
            engine: None,
            state: DbState::Ok,
            reason: String::new(),
            last_backup_at: None,
            age_hours: Some(50.0),
            last_backup_date: None,
            bytes: Some(3 * 1024 * 1024),
            previous_bytes: Some(2 * 1024 * 1024),
            bytes_change_percent: Some(50.0),
            last_verification: None,
            copies: Vec::new(),
        };
        assert_eq!(size_and_trend(&row), "3.0 MiB (+50.0%)");
        row.bytes_change_percent = None;
        assert_eq!(size_and_trend(&row), "3.0 MiB");
        assert_eq!(age_text(Some(50.0)), "2.1 days");
        assert_eq!(age_text(Some(3.25)), "3.2 h");
    }

    #[test]
    fn a_copy_behind_exits_4_after_the_alarms_and_before_unverified() {
        let row = |state, copy| DatabaseStatus {
            project: "p".into(),
            instance: "i".into(),
            database: "d".into(),
            source: None,
            engine: None,
            state,
            reason: String::new(),
            last_backup_at: None,
            age_hours: None,
            last_backup_date: None,
            bytes: None,
            previous_bytes: None,
            bytes_change_percent: None,
            last_verification: None,
            copies: vec![crate::status::CopyStatus {
                name: "offsite".into(),
                newest_run_date: Some("2026-12-01".into()),
                state: copy,
            }],
        };
        let report = |rows: Vec<DatabaseStatus>| StatusReport {
            generated_at: chrono::Utc::now(),
            slo_hours: 26,
            verify_within_days: 8,
            healthy: true,
            backed_up: 0,
            proven: 0,
            all_proven: false,
            counts: std::collections::BTreeMap::new(),
            latest_run: None,
            databases: rows,
            copies_behind: 0,
            copies: Vec::new(),
        };
        assert_eq!(exit_status(&report(vec![row(DbState::Ok, CopyState::Ok)])), 0);
        assert_eq!(exit_status(&report(vec![row(DbState::Ok, CopyState::Behind)])), 4);
        assert_eq!(exit_status(&report(vec![row(DbState::Unverified, CopyState::Missing)])), 4);
        assert_eq!(exit_status(&report(vec![row(DbState::Unverified, CopyState::Ok)])), 3);
        assert_eq!(exit_status(&report(vec![row(DbState::Stale, CopyState::Error)])), 2);
        assert_eq!(exit_status(&report(vec![row(DbState::Gone, CopyState::Behind)])), 0, "out of scope");
        assert_eq!(copies_words(&row(DbState::Ok, CopyState::Behind)), "offsite behind 2026-12-01");
        assert_eq!(copies_words(&row(DbState::Ok, CopyState::Ok)), "offsite ok");
    }
}
