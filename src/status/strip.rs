//! The strip of a database's last nights (one cell per night: proven, backed up, failed, missing)
//! and the sparklines of its size and export duration, computed from its history
//! (`crate::store::history`). Pure: the pages (`page.rs`, `detail.rs`) and the terminal table draw
//! what this file computes.
//!
//! A night's cell, first match wins: `proven` (a backup, and a successful drill of it) ·
//! `backed-up` (a backup) · `failed` (a failure was reported, no backup) · `missing` (no backup and
//! no failure, after the database's first backup and before today: a gap) · `pending` (today, not
//! backed up yet) · `none` (before its first backup).

use std::fmt::Write as _;

use chrono::NaiveDate;

use crate::store::history::{History, Night, NightBackup};

/// The histories of the databases a page shows, by (project, instance, database).
pub type Histories = std::collections::HashMap<(String, String, String), History>;

/// Nights the overview's strip shows.
pub const STRIP_NIGHTS: usize = 30;

/// What one night of one database was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CellKind {
    /// Backed up, and a drill restored that backup.
    Proven,
    /// Backed up.
    BackedUp,
    /// A failure was reported and there is no backup.
    Failed,
    /// Neither a backup nor a failure, after its first backup: a gap.
    Missing,
    /// Today, not backed up yet.
    Pending,
    /// Before its first backup.
    None,
}

impl CellKind {
    /// The cell's class name (`proven`, `backed-up`, …).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Proven => "proven",
            Self::BackedUp => "backed-up",
            Self::Failed => "failed",
            Self::Missing => "missing",
            Self::Pending => "pending",
            Self::None => "none",
        }
    }

    /// One character for the terminal.
    #[must_use]
    pub fn glyph(self) -> char {
        match self {
            Self::Proven => '█',
            Self::BackedUp => '▓',
            Self::Failed => '✗',
            Self::Missing => '·',
            Self::Pending => '░',
            Self::None => ' ',
        }
    }

    fn ansi(self) -> &'static str {
        match self {
            Self::Proven => "\x1b[32m",
            Self::BackedUp => "\x1b[92m",
            Self::Failed => "\x1b[1;31m",
            Self::Missing => "\x1b[33m",
            Self::Pending | Self::None => "\x1b[2m",
        }
    }
}

/// One night's cell.
#[derive(Clone, Debug, PartialEq)]
pub struct Cell {
    /// The night.
    pub date: NaiveDate,
    /// What it was.
    pub kind: CellKind,
    /// Its tooltip: the date and what happened.
    pub title: String,
}

/// A size in words (`12.3 MiB`).
#[must_use]
pub fn size_words(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    #[expect(clippy::cast_precision_loss, reason = "display only")]
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{v:.1} {}", UNITS[unit]) }
}

/// A duration in words (`4.2 s`, `3 min 05 s`, `1 h 02 min`).
#[must_use]
pub fn duration_words(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return "-".to_owned();
    }
    if secs < 60.0 {
        return format!("{secs:.1} s");
    }
    #[expect(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "a finite non-negative duration")]
    let whole = secs.round() as u64;
    if whole < 3600 {
        format!("{} min {:02} s", whole / 60, whole % 60)
    } else {
        format!("{} h {:02} min", whole / 3600, whole % 3600 / 60)
    }
}

/// The kind of `night` (`None` when the history has no entry for it).
fn kind_of(night: Option<&Night>, date: NaiveDate, first_backup: Option<NaiveDate>, today: NaiveDate) -> CellKind {
    if let Some(n) = night {
        if n.backup.is_some() {
            let proven = n.verification.as_ref().is_some_and(|v| v.result == "ok");
            return if proven { CellKind::Proven } else { CellKind::BackedUp };
        }
        if n.failure.is_some() {
            return CellKind::Failed;
        }
    }
    match first_backup {
        Some(first) if date > first && date < today => CellKind::Missing,
        Some(first) if date > first => CellKind::Pending,
        _ => CellKind::None,
    }
}

fn title_of(night: Option<&Night>, date: NaiveDate, kind: CellKind) -> String {
    let mut t = format!("{date}: ");
    let n = night.cloned().unwrap_or_default();
    match kind {
        CellKind::Proven | CellKind::BackedUp => {
            let b = n.backup.as_ref().expect("a backed-up night has its backup");
            let _ = write!(t, "backed up, {} in {}", size_words(b.bytes), duration_words(b.duration_secs()));
            if let Some(v) = &n.verification {
                let _ = write!(t, "; drill {} {}", v.result, v.finished_at.format("%Y-%m-%d"));
            }
        }
        CellKind::Failed => {
            let f = n.failure.as_ref().expect("a failed night has its failure");
            let _ = write!(t, "failed ({}): {}", f.error_class, f.message);
        }
        CellKind::Missing => t.push_str("no backup and no failure reported"),
        CellKind::Pending => t.push_str("not backed up yet"),
        CellKind::None => t.push_str("before its first backup"),
    }
    t
}

/// The cells of the `nights` nights ending with `today`, oldest first.
#[must_use]
pub fn cells(history: Option<&History>, today: NaiveDate, nights: usize) -> Vec<Cell> {
    let first = history.and_then(History::first_backup);
    (0..nights)
        .rev()
        .map(|back| {
            let date = today - chrono::Duration::days(i64::try_from(back).unwrap_or(0));
            let night = history.and_then(|h| h.nights.get(&date));
            let kind = kind_of(night, date, first, today);
            Cell { date, kind, title: title_of(night, date, kind) }
        })
        .collect()
}

/// The strip as terminal text, coloured when `color`.
#[must_use]
pub fn terminal(cells: &[Cell], color: bool) -> String {
    let mut out = String::new();
    for c in cells {
        if color {
            let _ = write!(out, "{}{}\x1b[0m", c.kind.ansi(), c.kind.glyph());
        } else {
            out.push(c.kind.glyph());
        }
    }
    out
}

/// The size (bytes) and export duration (seconds) of each of the `nights` nights ending with
/// `today`, oldest first; `None` for a night without a backup.
#[must_use]
pub fn series(history: Option<&History>, today: NaiveDate, nights: usize) -> (Vec<Option<f64>>, Vec<Option<f64>>) {
    (0..nights)
        .rev()
        .map(|back| {
            let date = today - chrono::Duration::days(i64::try_from(back).unwrap_or(0));
            let b = history.and_then(|h| h.nights.get(&date)).and_then(|n| n.backup.as_ref());
            #[expect(clippy::cast_precision_loss, reason = "a sparkline needs no more than f64's 52 bits")]
            let size = b.map(|b| b.bytes as f64);
            (size, b.map(NightBackup::duration_secs))
        })
        .unzip()
}

/// The `points` of an SVG polyline drawing `values` in a `width` × `height` box (y grows down, the
/// largest value at the top; a night without a value is left out); empty with fewer than two.
#[must_use]
pub fn sparkline(values: &[Option<f64>], width: f64, height: f64) -> String {
    let known: Vec<(usize, f64)> =
        values.iter().enumerate().filter_map(|(i, v)| v.filter(|v| v.is_finite()).map(|v| (i, v))).collect();
    if known.len() < 2 {
        return String::new();
    }
    let (lo, hi) = known.iter().fold((f64::MAX, f64::MIN), |(lo, hi), (_, v)| (lo.min(*v), hi.max(*v)));
    let span = if hi > lo { hi - lo } else { 1.0 };
    #[expect(clippy::cast_precision_loss, reason = "at most a few dozen nights")]
    let step = width / (values.len().max(2) - 1) as f64;
    let mut out = String::new();
    for (i, v) in known {
        #[expect(clippy::cast_precision_loss, reason = "at most a few dozen nights")]
        let x = i as f64 * step;
        let y = height - 1.0 - (v - lo) / span * (height - 2.0);
        if !out.is_empty() {
            out.push(' ');
        }
        let _ = write!(out, "{x:.1},{y:.1}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::history::{NightFailure, NightVerification};
    use chrono::{TimeZone as _, Utc};

    fn backup(bytes: u64) -> NightBackup {
        let at = Utc.with_ymd_and_hms(2026, 11, 1, 2, 0, 0).unwrap();
        NightBackup {
            run_id: "020000-abc".into(),
            class: "daily".into(),
            bytes,
            started_at: at,
            finished_at: at + chrono::Duration::seconds(90),
            encrypted: false,
            tables: None,
            rows: None,
        }
    }

    #[test]
    fn each_night_gets_its_kind_and_a_tooltip() {
        let d = |day: u32| NaiveDate::from_ymd_opt(2026, 11, day).unwrap();
        let at = Utc.with_ymd_and_hms(2026, 11, 3, 2, 0, 0).unwrap();
        let mut h = History {
            version: 1,
            project: "p".into(),
            instance: "i".into(),
            database: "d".into(),
            nights: Default::default(),
        };
        h.nights.insert(d(2), Night { backup: Some(backup(1024)), ..Night::default() });
        h.nights.insert(
            d(3),
            Night {
                backup: Some(backup(2048)),
                verification: Some(NightVerification { result: "ok".into(), finished_at: at, restore_secs: None }),
                ..Night::default()
            },
        );
        h.nights.insert(
            d(5),
            Night {
                failure: Some(NightFailure { error_class: "dump_failed".into(), message: "boom".into(), at }),
                ..Night::default()
            },
        );
        let cells = cells(Some(&h), d(7), 7);
        let kinds: Vec<&str> = cells.iter().map(|c| c.kind.as_str()).collect();
        assert_eq!(kinds, ["none", "backed-up", "proven", "missing", "failed", "missing", "pending"]);
        assert_eq!(cells[1].title, "2026-11-02: backed up, 1.0 KiB in 1 min 30 s");
        assert_eq!(cells[4].title, "2026-11-05: failed (dump_failed): boom");
        assert_eq!(terminal(&cells, false), " ▓█·✗·░");
    }

    #[test]
    fn a_sparkline_spans_its_box_and_skips_nights_without_a_value() {
        assert_eq!(sparkline(&[Some(1.0), None, Some(3.0)], 100.0, 20.0), "0.0,19.0 100.0,1.0");
        assert_eq!(sparkline(&[Some(1.0)], 100.0, 20.0), "");
        assert_eq!(duration_words(3725.0), "1 h 02 min");
        assert_eq!(duration_words(185.0), "3 min 05 s");
    }
}
