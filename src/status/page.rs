//! The overview page (`GET /`, and `GET /status` asked for HTML): totals tiles, the newest run,
//! one row per database with the strip of its last [`STRIP_NIGHTS`] nights and the sparklines of
//! its size and export duration, filtered and sorted by the query. With off-site copies, a tile
//! and a line count the databases with a copy behind or missing, and a column shows each copy's
//! state per database, marked (`⚠`, class `copy-alarm`) when one is not `ok`. Rendered from
//! `templates/status/overview.html` (askama: checked when the crate compiles, every value escaped);
//! no JavaScript, light and dark colour schemes, usable on a phone, refreshing itself.
//!
//! Input: the computed status and every database's history (`crate::store::history`), so a page
//! costs no read of its own.

use askama::Template;
use serde::Deserialize;

use crate::runs::summary::RunReport;
use crate::status::render::{age_text, copies_line, copies_words, size_and_trend};
use crate::status::strip::{Cell, STRIP_NIGHTS, cells, duration_words, series, size_words, sparkline};
use crate::status::{DatabaseStatus, DbState, StatusFilter, StatusReport};
use crate::store::history::History;

/// The histories of the databases, by (project, instance, database).
pub use crate::status::strip::Histories;

/// Seconds between two refreshes of the page.
pub const REFRESH_SECS: u64 = 300;

/// How the rows are sorted (`?sort=`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SortBy {
    /// Most severe state first (the default).
    #[default]
    State,
    /// By project, instance and database.
    Name,
    /// Largest newest backup first.
    Size,
    /// Oldest newest backup first.
    Age,
    /// Slowest newest export first.
    Duration,
}

impl SortBy {
    /// The name in the query.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::State => "state",
            Self::Name => "name",
            Self::Size => "size",
            Self::Age => "age",
            Self::Duration => "duration",
        }
    }
}

/// Percent-encodes a query value.
#[must_use]
pub fn q(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// The per-database page's address of a database.
#[must_use]
pub fn database_href(project: &str, instance: &str, database: &str) -> String {
    format!("/database?project={}&instance={}&database={}", q(project), q(instance), q(database))
}

/// The per-run page's address of a run.
#[must_use]
pub fn run_href(run_id: &str, run_date: &str) -> String {
    format!("/runs/{}?date={}&format=html", q(run_id), q(run_date))
}

struct Tile {
    id: &'static str,
    label: &'static str,
    value: String,
    note: String,
}

struct RunView {
    href: String,
    run_id: String,
    run_date: String,
    started: String,
    figures: Vec<(&'static str, usize)>,
    complete: bool,
    errors: Vec<String>,
}

struct Chip {
    state: &'static str,
    count: usize,
    href: String,
}

struct Opt {
    value: String,
    selected: bool,
}

struct Select {
    name: &'static str,
    options: Vec<Opt>,
}

struct Header {
    label: &'static str,
    href: Option<String>,
    active: bool,
    num: bool,
}

struct Row {
    state: &'static str,
    path: String,
    href: String,
    project: String,
    instance: String,
    database: String,
    cells: Vec<Cell>,
    size_points: String,
    duration_points: String,
    size: String,
    duration: String,
    age: String,
    verified: String,
    copies: String,
    copy_alarm: bool,
    reason: String,
}

#[derive(Template)]
#[template(path = "status/overview.html")]
struct Overview {
    refresh_secs: u64,
    badge_class: &'static str,
    badge_text: String,
    tiles: Vec<Tile>,
    copies_line: Option<String>,
    copies_alarm: bool,
    has_copies: bool,
    run: Option<RunView>,
    chips: Vec<Chip>,
    selects: Vec<Select>,
    sort: &'static str,
    nights: usize,
    headers: Vec<Header>,
    rows: Vec<Row>,
    generated: String,
    slo_hours: u32,
    verify_words: String,
}

/// The badge's class and words: only what is proven counts as fine ("4 backed up, 0 proven" is not).
#[must_use]
pub fn overall(report: &StatusReport) -> (&'static str, String) {
    let alarms = report.databases.iter().filter(|r| r.state.is_alarm()).count();
    let total = report.databases.len();
    let tally = format!("{} backed up, {} proven", report.backed_up, report.proven);
    let unverifiable = report.counts.get(DbState::Unverifiable.as_str()).copied().unwrap_or(0);
    let unverifiable = if unverifiable > 0 { format!(", {unverifiable} unverifiable") } else { String::new() };
    if !report.healthy {
        ("alarm", format!("{alarms} of {total} databases need attention · {tally}{unverifiable}"))
    } else if report.backed_up == 0 {
        ("empty", "no database backed up".to_owned())
    } else if report.all_proven {
        ("healthy", format!("all {} databases backed up and proven", report.proven))
    } else {
        ("unproven", format!("{tally}{unverifiable}"))
    }
}

fn run_view(r: &RunReport) -> RunView {
    RunView {
        href: run_href(&r.run_id, &r.run_date),
        run_id: r.run_id.clone(),
        run_date: r.run_date.clone(),
        started: r.started_at.format("%Y-%m-%d %H:%M UTC").to_string(),
        figures: vec![
            ("discovered", r.discovered),
            ("excluded", r.excluded),
            ("expected", r.expected),
            ("exported", r.exported),
            ("failed", r.failed),
            ("not backed up", r.not_backed_up),
        ],
        complete: r.complete,
        errors: r.errors.iter().map(|e| format!("{}: {}", e.scope, e.message)).collect(),
    }
}

fn tiles(report: &StatusReport) -> Vec<Tile> {
    let total = report.databases.iter().filter(|r| r.state.in_scope()).count();
    let bytes: u64 = report.databases.iter().filter(|r| r.state.in_scope()).filter_map(|r| r.bytes).sum();
    let last = report.databases.iter().filter_map(|r| r.last_backup_at).max();
    let alarms = report.databases.iter().filter(|r| r.state.is_alarm()).count();
    let mut tiles = vec![
        Tile {
            id: "databases",
            label: "Databases",
            value: total.to_string(),
            note: format!("{alarms} need attention"),
        },
        Tile {
            id: "protected",
            label: "Protected",
            value: report.backed_up.to_string(),
            note: "with a backup".to_owned(),
        },
        Tile {
            id: "proven",
            label: "Proven",
            value: report.proven.to_string(),
            note: "restored by a drill".to_owned(),
        },
        Tile { id: "bytes", label: "Bytes stored", value: size_words(bytes), note: "newest backups".to_owned() },
        Tile {
            id: "last-run",
            label: "Last run",
            value: report.latest_run.as_ref().map_or_else(|| "none".to_owned(), |r| r.run_date.clone()),
            note: last.map_or_else(|| "no backup yet".to_owned(), |t| format!("last backup {}", t.format("%H:%M UTC"))),
        },
    ];
    if !report.copies.is_empty() {
        let names: Vec<&str> = report.copies.iter().map(|c| c.name.as_str()).collect();
        tiles.push(Tile {
            id: "copies",
            label: "Off-site copies",
            value: format!("{} behind", report.copies_behind),
            note: format!("databases with a copy behind or missing ({})", names.join(", ")),
        });
    }
    tiles
}

fn row(r: &DatabaseStatus, history: Option<&History>, today: chrono::NaiveDate) -> Row {
    let (sizes, durations) = series(history, today, STRIP_NIGHTS);
    let duration = durations.iter().rev().flatten().next().copied();
    let verified = r.last_verification.as_ref().map_or_else(
        || "never".to_owned(),
        |v| {
            let rto = crate::status::render::restore_time_words(v.restore_secs, v.bytes_per_sec)
                .map(|w| format!(" · {w}"))
                .unwrap_or_default();
            format!("{} {}{rto}", v.result, v.verified_at.format("%Y-%m-%d"))
        },
    );
    Row {
        state: r.state.as_str(),
        path: format!("{}/{}/{}", r.project, r.instance, r.database),
        href: database_href(&r.project, &r.instance, &r.database),
        project: r.project.clone(),
        instance: r.instance.clone(),
        database: r.database.clone(),
        cells: cells(history, today, STRIP_NIGHTS),
        size_points: sparkline(&sizes, 90.0, 20.0),
        duration_points: sparkline(&durations, 90.0, 20.0),
        size: size_and_trend(r),
        duration: duration.map_or_else(|| "-".to_owned(), duration_words),
        age: age_text(r.age_hours),
        verified,
        copies: copies_words(r),
        copy_alarm: r.state.in_scope() && r.copy_alarm(),
        reason: r.reason.clone(),
    }
}

fn query_href(filter: &StatusFilter, sort: SortBy) -> String {
    let mut parts = Vec::new();
    for (name, value) in [
        ("project", filter.project.as_deref()),
        ("instance", filter.instance.as_deref()),
        ("state", filter.state.map(DbState::as_str)),
    ] {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            parts.push(format!("{name}={}", q(v)));
        }
    }
    parts.push(format!("sort={}", sort.as_str()));
    format!("/?{}", parts.join("&"))
}

fn select(name: &'static str, values: impl Iterator<Item = String>, selected: Option<&str>) -> Select {
    let mut values: Vec<String> = values.collect();
    values.sort();
    values.dedup();
    Select {
        name,
        options: values.into_iter().map(|v| Opt { selected: selected == Some(v.as_str()), value: v }).collect(),
    }
}

/// The overview page of `report`, rows kept by `filter` and sorted by `sort`, each with its
/// history from `histories`.
#[must_use]
pub fn render_overview(report: &StatusReport, histories: &Histories, filter: &StatusFilter, sort: SortBy) -> String {
    let (badge_class, badge_text) = overall(report);
    let today = report.generated_at.date_naive();
    let shown = report.filtered(filter);
    let key = |r: &DatabaseStatus| (r.project.clone(), r.instance.clone(), r.database.clone());
    let mut rows: Vec<(&DatabaseStatus, Row)> =
        shown.databases.iter().map(|r| (r, row(r, histories.get(&key(r)), today))).collect();
    let last_duration = |r: &DatabaseStatus| {
        histories
            .get(&key(r))
            .and_then(|h| h.nights.values().rev().find_map(|n| n.backup.as_ref()))
            .map(|b| b.duration_secs())
    };
    match sort {
        SortBy::State => {}
        SortBy::Name => rows.sort_by(|a, b| a.1.path.cmp(&b.1.path)),
        SortBy::Size => rows.sort_by_key(|r| std::cmp::Reverse(r.0.bytes)),
        SortBy::Age => {
            rows.sort_by(|a, b| b.0.age_hours.unwrap_or(f64::MAX).total_cmp(&a.0.age_hours.unwrap_or(f64::MAX)))
        }
        SortBy::Duration => {
            rows.sort_by(|a, b| last_duration(b.0).unwrap_or(-1.0).total_cmp(&last_duration(a.0).unwrap_or(-1.0)));
        }
    }
    let header = |label, by: Option<SortBy>, num| Header {
        label,
        href: by.map(|s| query_href(filter, s)),
        active: by == Some(sort),
        num,
    };
    let page = Overview {
        refresh_secs: REFRESH_SECS,
        badge_class,
        badge_text,
        tiles: tiles(report),
        copies_line: copies_line(report),
        copies_alarm: report.copies_behind > 0 || report.copies.iter().any(|c| c.error.is_some()),
        has_copies: !report.copies.is_empty(),
        run: report.latest_run.as_ref().map(run_view),
        chips: DbState::ALL
            .iter()
            .map(|s| (s.as_str(), report.counts.get(s.as_str()).copied().unwrap_or(0)))
            .filter(|(_, n)| *n > 0)
            .map(|(state, count)| Chip { state, count, href: format!("/?state={state}") })
            .collect(),
        selects: vec![
            select("project", report.databases.iter().map(|r| r.project.clone()), filter.project.as_deref()),
            select("instance", report.databases.iter().map(|r| r.instance.clone()), filter.instance.as_deref()),
            select("state", DbState::ALL.iter().map(|s| s.as_str().to_owned()), filter.state.map(DbState::as_str)),
        ],
        sort: sort.as_str(),
        nights: STRIP_NIGHTS,
        headers: [
            Some(header("State", Some(SortBy::State), false)),
            Some(header("Database", Some(SortBy::Name), false)),
            Some(header("Last 30 nights", None, false)),
            Some(header("Size (vs day before)", Some(SortBy::Size), true)),
            Some(header("Export time", Some(SortBy::Duration), true)),
            Some(header("Age", Some(SortBy::Age), true)),
            Some(header("Last verification", None, false)),
            (!report.copies.is_empty()).then(|| header("Off-site copies", None, false)),
            Some(header("Why", None, false)),
        ]
        .into_iter()
        .flatten()
        .collect(),
        rows: rows.into_iter().map(|(_, r)| r).collect(),
        generated: report.generated_at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        slo_hours: report.slo_hours,
        verify_words: if report.verify_within_days > 0 {
            format!("; a successful restore drill is due every {} days", report.verify_within_days)
        } else {
            String::new()
        },
    };
    page.render().expect("the overview template renders plain values")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_encode_names_as_query_values() {
        assert_eq!(q("a b/c"), "a%20b%2Fc");
        assert_eq!(database_href("p", "i/x", "<d>"), "/database?project=p&instance=i%2Fx&database=%3Cd%3E");
        assert_eq!(run_href("010000-x", "2026-11-22"), "/runs/010000%2Dx?date=2026%2D11%2D22&format=html");
    }
}
