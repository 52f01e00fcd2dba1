//! `Layout`: the one place object keys are built, and parsed back.
//!
//! ```text
//! <class>/<project>/<instance>/<database>/<YYYY-MM-DD>/<database>.<ext>            the dump
//! <class>/<project>/<instance>/<database>/<YYYY-MM-DD>/<database>.manifest.json   makes it a backup
//! latest/<project>/<instance>/<database>.json                                     newest manifest, copied
//! runs/<YYYY-MM-DD>/<run_id>.json                                                 the run ledger
//! leases/<project>/<instance>/<database>/<YYYY-MM-DD>/<seq>.json                  export leases
//! reports/<YYYY-MM-DD>/<project>/<instance>/<database>.json                      "reported once" markers
//! reports/copies/<copy>/<YYYY-MM-DD>/<project>/<instance>/<database>.json        the same, of a failed off-site copy
//! verifications/<project>/<instance>/<database>/<YYYY-MM-DD>.json                restore drill verdicts
//! reports/prune/<YYYY-MM-DD>/<id>.json                                            what an applied prune did
//! reports/runs/<YYYY-MM-DD>/<run_id>.json                                         "run summary sent" markers
//! labels/<label>/<project>/<instance>/<database>/<database>.<ext>                 a named backup's dump
//! labels/<label>/<project>/<instance>/<database>/<database>.manifest.json         makes it a backup
//! leases/labels/<label>/<project>/<instance>/<database>/<seq>.json               its export leases
//! holds/<project>/<instance>/<database>/<YYYY-MM-DD>.json                        a backup held by the tripwire
//! history/<project>/<instance>/<database>/<seq>.json                             the nights of a database (newest seq wins)
//! ```
//! A named (labelled) backup has no date in its key: a label names one backup of a database, so
//! exporting the same label again finds its manifest and does nothing. Nothing that expires
//! backups (prune, lifecycle rules) looks under `labels/`.
//! Each name is one segment, written by [`key_segment`]: ASCII outside `[A-Za-z0-9._-]` and control
//! characters percent-encoded, other Unicode kept as UTF-8 (so the longest name of every engine fits
//! a file name of a local store). Every key parses back to the values it was built from, and only
//! the one spelling [`Key::path`] writes parses: a key is the same string on every backend (the
//! buckets store it verbatim), so listing, parsing and building it again always name one object.

use crate::model::calendar::{RetentionClass, class_of};
use crate::model::{
    DatabaseName, DatabasePath, DatabaseRef, InstanceName, Label, ProjectId, RunDate, RunId, from_key_segment,
    key_segment,
};
use crate::store::manifest::DumpFormat;
use chrono::{NaiveDate, Weekday};

/// Every kind of object the service writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Key {
    /// A dump (not a backup until its manifest exists); `.age` appended when encrypted.
    Dump { class: RetentionClass, db: DatabasePath, date: RunDate, format: DumpFormat, encrypted: bool },
    /// The manifest that makes a dump a backup; written last.
    Manifest { class: RetentionClass, db: DatabasePath, date: RunDate },
    /// Copy of the newest manifest of a database.
    Latest { db: DatabasePath },
    /// What one `/schedule` run discovered, excluded and enqueued.
    RunLedger { date: RunDate, run_id: RunId },
    /// One lease (generation `seq`) on the export of a database for a day.
    Lease { db: DatabasePath, date: RunDate, seq: u32 },
    /// Marker that the failure of a database's export for a day was reported.
    Report { db: DatabasePath, date: RunDate },
    /// Marker that the failure of the copy of a database's backup of a day to the off-site copy
    /// `copy` (a `[[copies]]` name) was reported.
    CopyReport { copy: String, db: DatabasePath, date: RunDate },
    /// The verdict of the last restore drill of a database's backup of a day (overwritten by each drill).
    Verification { db: DatabasePath, date: RunDate },
    /// What one applied prune kept, deleted and skipped; `date` is the day it ran, `id` the run id
    /// of the `/schedule` it followed, or its own id.
    PruneReport { date: RunDate, id: RunId },
    /// Marker that the summary of run `run_id` of `date` was sent (`cloud_tasks` mode sends it once).
    RunSummary { date: RunDate, run_id: RunId },
    /// The dump of a named backup; `.age` appended when encrypted.
    LabelDump { label: Label, db: DatabasePath, format: DumpFormat, encrypted: bool },
    /// The manifest of a named backup.
    LabelManifest { label: Label, db: DatabasePath },
    /// One lease (generation `seq`) on the export of a named backup.
    LabelLease { label: Label, db: DatabasePath, seq: u32 },
    /// Marker that the backup of a database of a day is held (the data-loss tripwire): prune
    /// leaves it alone until an operator releases it (deletes the marker).
    Hold { db: DatabasePath, date: RunDate },
    /// Generation `seq` of the history of a database (its last nights: backups, failures, drills);
    /// each update creates the next generation, so concurrent writers never lose an entry.
    History { db: DatabasePath, seq: u32 },
}

fn db_segments(db: &DatabasePath) -> String {
    format!(
        "{}/{}/{}",
        key_segment(db.project.as_str()),
        key_segment(db.instance.as_str()),
        key_segment(db.database.as_str())
    )
}

fn parse_db(project: &str, instance: &str, database: &str) -> Option<DatabasePath> {
    Some(DatabasePath {
        project: ProjectId::parse(from_key_segment(project)?).ok()?,
        instance: InstanceName::parse(from_key_segment(instance)?).ok()?,
        database: DatabaseName::parse(from_key_segment(database)?).ok()?,
    })
}

fn parse_date(s: &str) -> Option<RunDate> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok().filter(|_| s.len() == 10).map(RunDate::from_date)
}

impl Key {
    /// The object key, relative to the store's prefix.
    #[must_use]
    pub fn path(&self) -> String {
        match self {
            Self::Dump { class, db, date, format, encrypted } => format!(
                "{}/{}/{date}/{}.{}{}",
                class.as_str(),
                db_segments(db),
                key_segment(db.database.as_str()),
                format.ext(),
                if *encrypted { ".age" } else { "" }
            ),
            Self::Manifest { class, db, date } => {
                format!(
                    "{}/{}/{date}/{}.manifest.json",
                    class.as_str(),
                    db_segments(db),
                    key_segment(db.database.as_str())
                )
            }
            Self::Latest { db } => format!(
                "latest/{}/{}/{}.json",
                key_segment(db.project.as_str()),
                key_segment(db.instance.as_str()),
                key_segment(db.database.as_str())
            ),
            Self::RunLedger { date, run_id } => format!("runs/{date}/{run_id}.json"),
            Self::Lease { db, date, seq } => format!("leases/{}/{date}/{seq:010}.json", db_segments(db)),
            Self::Report { db, date } => format!("reports/{date}/{}.json", db_segments(db)),
            Self::CopyReport { copy, db, date } => {
                format!("reports/copies/{}/{date}/{}.json", key_segment(copy), db_segments(db))
            }
            Self::Verification { db, date } => format!("verifications/{}/{date}.json", db_segments(db)),
            Self::Hold { db, date } => format!("holds/{}/{date}.json", db_segments(db)),
            Self::History { db, seq } => format!("history/{}/{seq:010}.json", db_segments(db)),
            Self::PruneReport { date, id } => format!("reports/prune/{date}/{id}.json"),
            Self::RunSummary { date, run_id } => format!("reports/runs/{date}/{run_id}.json"),
            Self::LabelDump { label, db, format, encrypted } => format!(
                "labels/{}/{}/{}.{}{}",
                key_segment(label.as_str()),
                db_segments(db),
                key_segment(db.database.as_str()),
                format.ext(),
                if *encrypted { ".age" } else { "" }
            ),
            Self::LabelManifest { label, db } => {
                format!(
                    "labels/{}/{}/{}.manifest.json",
                    key_segment(label.as_str()),
                    db_segments(db),
                    key_segment(db.database.as_str())
                )
            }
            Self::LabelLease { label, db, seq } => {
                format!("leases/labels/{}/{}/{seq:010}.json", key_segment(label.as_str()), db_segments(db))
            }
        }
    }

    /// Parses a key written by [`Key::path`]; `None` for anything else.
    #[must_use]
    pub fn parse(path: &str) -> Option<Self> {
        let parts: Vec<&str> = path.split('/').collect();
        match parts.as_slice() {
            ["latest", p, i, file] => Some(Self::Latest { db: parse_db(p, i, file.strip_suffix(".json")?)? }),
            ["runs", date, file] => Some(Self::RunLedger {
                date: parse_date(date)?,
                run_id: RunId::parse(file.strip_suffix(".json")?).ok()?,
            }),
            ["leases", p, i, d, date, file] => Some(Self::Lease {
                db: parse_db(p, i, d)?,
                date: parse_date(date)?,
                seq: file.strip_suffix(".json")?.parse().ok()?,
            }),
            ["labels", label, p, i, d, file] => {
                let label = Label::parse(from_key_segment(label)?).ok()?;
                let db = parse_db(p, i, d)?;
                let rest = file.strip_prefix(d)?.strip_prefix('.')?;
                if rest == "manifest.json" {
                    Some(Self::LabelManifest { label, db })
                } else {
                    let (ext, encrypted) = rest.strip_suffix(".age").map_or((rest, false), |e| (e, true));
                    Some(Self::LabelDump { label, db, format: DumpFormat::from_ext(ext)?, encrypted })
                }
            }
            ["leases", "labels", label, p, i, d, file] => Some(Self::LabelLease {
                label: Label::parse(from_key_segment(label)?).ok()?,
                db: parse_db(p, i, d)?,
                seq: file.strip_suffix(".json")?.parse().ok()?,
            }),
            ["reports", "runs", date, file] => Some(Self::RunSummary {
                date: parse_date(date)?,
                run_id: RunId::parse(file.strip_suffix(".json")?).ok()?,
            }),
            ["reports", "prune", date, file] => {
                Some(Self::PruneReport { date: parse_date(date)?, id: RunId::parse(file.strip_suffix(".json")?).ok()? })
            }
            ["reports", "copies", copy, date, p, i, file] => Some(Self::CopyReport {
                copy: from_key_segment(copy)?,
                date: parse_date(date)?,
                db: parse_db(p, i, file.strip_suffix(".json")?)?,
            }),
            ["reports", date, p, i, file] => {
                Some(Self::Report { date: parse_date(date)?, db: parse_db(p, i, file.strip_suffix(".json")?)? })
            }
            ["verifications", p, i, d, file] => {
                Some(Self::Verification { db: parse_db(p, i, d)?, date: parse_date(file.strip_suffix(".json")?)? })
            }
            ["history", p, i, d, file] => Some(Self::History {
                db: parse_db(p, i, d)?,
                seq: file.strip_suffix(".json").filter(|s| s.len() == 10)?.parse().ok()?,
            }),
            ["holds", p, i, d, file] => {
                Some(Self::Hold { db: parse_db(p, i, d)?, date: parse_date(file.strip_suffix(".json")?)? })
            }
            [class, p, i, d, date, file] => {
                let class = RetentionClass::from_segment(class)?;
                let db = parse_db(p, i, d)?;
                let date = parse_date(date)?;
                let rest = file.strip_prefix(d)?.strip_prefix('.')?;
                if rest == "manifest.json" {
                    Some(Self::Manifest { class, db, date })
                } else {
                    let (ext, encrypted) = rest.strip_suffix(".age").map_or((rest, false), |e| (e, true));
                    Some(Self::Dump { class, db, date, format: DumpFormat::from_ext(ext)?, encrypted })
                }
            }
            _ => None,
        }
    }
}

/// The first segments of a key's path with a trailing `/` (`daily/`, `holds/`, `daily/<project>/`):
/// what a listing takes to find every key that starts alike. Built from a [`Key`], so the segments
/// are encoded as [`Key::path`] encodes them and no prefix is spelled by hand.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Prefix(String);

impl Prefix {
    /// The first `segments` segments of `key`'s path, with a trailing `/`.
    #[must_use]
    pub fn of(key: &Key, segments: usize) -> Self {
        let path = key.path();
        let mut prefix = path.split('/').take(segments).collect::<Vec<_>>().join("/");
        prefix.push('/');
        Self(prefix)
    }

    /// The prefix as the buckets take it.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The prefix as an owned string.
    #[must_use]
    pub fn into_string(self) -> String {
        self.0
    }
}

impl std::fmt::Display for Prefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A database that only fills a probe key whose [`Prefix`] stops before the database
/// (`Key::Latest { db: any_db() }` then `Prefix::of(&key, 1)`).
#[must_use]
pub fn any_db() -> DatabasePath {
    DatabasePath {
        project: ProjectId::parse("_").expect("valid name"),
        instance: InstanceName::parse("_").expect("valid name"),
        database: DatabaseName::parse("_").expect("valid name"),
    }
}

/// A run date that only fills a probe key whose [`Prefix`] stops before the date.
#[must_use]
pub fn any_date() -> RunDate {
    RunDate::from_date(NaiveDate::MIN)
}

/// Builds keys from domain values; knows the retention calendar. A labelled layout
/// ([`Layout::labelled`]) puts the dump and manifest of an export under `labels/<label>/…`.
#[derive(Clone, Debug)]
pub struct Layout {
    weekly_on: Weekday,
    label: Option<Label>,
}

impl Default for Layout {
    fn default() -> Self {
        Self { weekly_on: Weekday::Mon, label: None }
    }
}

impl Layout {
    /// A layout whose weekly class falls on `weekly_on`.
    #[must_use]
    pub fn new(weekly_on: Weekday) -> Self {
        Self { weekly_on, label: None }
    }

    /// The same layout, building the keys of the named backup `label`.
    #[must_use]
    pub fn labelled(&self, label: Label) -> Self {
        Self { weekly_on: self.weekly_on, label: Some(label) }
    }

    /// The label of a labelled layout.
    #[must_use]
    pub fn label(&self) -> Option<&Label> {
        self.label.as_ref()
    }

    /// The retention class of a run date.
    #[must_use]
    pub fn class(&self, date: RunDate) -> RetentionClass {
        class_of(date.date(), self.weekly_on)
    }

    /// The dump of `db` for `date`.
    #[must_use]
    pub fn dump(&self, db: &DatabaseRef, date: RunDate, format: DumpFormat, encrypted: bool) -> Key {
        match &self.label {
            Some(label) => Key::LabelDump { label: label.clone(), db: path_of(db), format, encrypted },
            None => Key::Dump { class: self.class(date), db: path_of(db), date, format, encrypted },
        }
    }

    /// The manifest of `db` for `date` (of a labelled layout: of the named backup, whatever the date).
    #[must_use]
    pub fn manifest(&self, db: &DatabaseRef, date: RunDate) -> Key {
        match &self.label {
            Some(label) => Key::LabelManifest { label: label.clone(), db: path_of(db) },
            None => Key::Manifest { class: self.class(date), db: path_of(db), date },
        }
    }

    /// Lease `seq` on the export of `db` for `date` (of a labelled layout: of the named backup).
    #[must_use]
    pub fn lease(&self, db: &DatabasePath, date: RunDate, seq: u32) -> Key {
        match &self.label {
            Some(label) => Key::LabelLease { label: label.clone(), db: db.clone(), seq },
            None => Key::Lease { db: db.clone(), date, seq },
        }
    }
}

/// The `project/instance/database` of a database.
#[must_use]
pub fn path_of(db: &DatabaseRef) -> DatabasePath {
    DatabasePath { project: db.project.clone(), instance: db.instance.clone(), database: db.database.clone() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(p: &str, i: &str, d: &str) -> DatabasePath {
        DatabasePath {
            project: ProjectId::parse(p).unwrap(),
            instance: InstanceName::parse(i).unwrap(),
            database: DatabaseName::parse(d).unwrap(),
        }
    }

    #[test]
    fn every_key_kind_has_a_fixed_path_and_parses_back() {
        let date = RunDate::parse("2026-11-22").unwrap();
        let table = [
            (
                Key::Dump {
                    class: RetentionClass::Daily,
                    db: db("p", "i", "app"),
                    date,
                    format: DumpFormat::PgCustomZstd,
                    encrypted: false,
                },
                "daily/p/i/app/2026-11-22/app.dump.zst",
            ),
            (
                Key::Dump {
                    class: RetentionClass::Weekly,
                    db: db("p", "i", "shop"),
                    date,
                    format: DumpFormat::MysqlSqlZstd,
                    encrypted: true,
                },
                "weekly/p/i/shop/2026-11-22/shop.sql.zst.age",
            ),
            (
                Key::Dump {
                    class: RetentionClass::Yearly,
                    db: db("p", "i", "x"),
                    date,
                    format: DumpFormat::CloudSqlGz,
                    encrypted: false,
                },
                "yearly/p/i/x/2026-11-22/x.sql.gz",
            ),
            (
                Key::Manifest { class: RetentionClass::Monthly, db: db("p", "i", "app"), date },
                "monthly/p/i/app/2026-11-22/app.manifest.json",
            ),
            (
                Key::Manifest { class: RetentionClass::Daily, db: db("my proj", "é", "a.b"), date },
                "daily/my%20proj/é/a.b/2026-11-22/a.b.manifest.json",
            ),
            (
                Key::Dump {
                    class: RetentionClass::Daily,
                    db: db("p", "i", "--result-file=x.txt"),
                    date,
                    format: DumpFormat::MysqlSqlZstd,
                    encrypted: false,
                },
                "daily/p/i/--result-file%3Dx.txt/2026-11-22/--result-file%3Dx.txt.sql.zst",
            ),
            (
                Key::Manifest { class: RetentionClass::Daily, db: db("50% off", "a/b", ".."), date },
                "daily/50%25%20off/a%2Fb/.%2E/2026-11-22/.%2E.manifest.json",
            ),
            (Key::Latest { db: db("p", "i", "app") }, "latest/p/i/app.json"),
            (Key::RunLedger { date, run_id: RunId::parse("020000-abc").unwrap() }, "runs/2026-11-22/020000-abc.json"),
            (Key::Lease { db: db("p", "i", "app"), date, seq: 3 }, "leases/p/i/app/2026-11-22/0000000003.json"),
            (Key::Report { db: db("p", "i", "app"), date }, "reports/2026-11-22/p/i/app.json"),
            (Key::Verification { db: db("p", "i", "app"), date }, "verifications/p/i/app/2026-11-22.json"),
            (Key::Hold { db: db("p", "i", "app"), date }, "holds/p/i/app/2026-11-22.json"),
            (
                Key::CopyReport { copy: "off-1".to_owned(), db: db("my proj", "i", "a/b"), date },
                "reports/copies/off-1/2026-11-22/my%20proj/i/a%2Fb.json",
            ),
            (Key::Hold { db: db("my proj", "é", "a.b"), date }, "holds/my%20proj/é/a.b/2026-11-22.json"),
            (Key::History { db: db("p", "i", "app"), seq: 7 }, "history/p/i/app/0000000007.json"),
            (Key::History { db: db("50% off", "a/b", ".."), seq: 1 }, "history/50%25%20off/a%2Fb/.%2E/0000000001.json"),
            (
                Key::RunSummary { date, run_id: RunId::parse("031500-1a2b3c4d").unwrap() },
                "reports/runs/2026-11-22/031500-1a2b3c4d.json",
            ),
            (
                Key::PruneReport { date, id: RunId::parse("031500-1a2b3c4d").unwrap() },
                "reports/prune/2026-11-22/031500-1a2b3c4d.json",
            ),
            (
                Key::LabelDump {
                    label: Label::parse("before-incident-42").unwrap(),
                    db: db("p", "i", "app"),
                    format: DumpFormat::PgCustomZstd,
                    encrypted: true,
                },
                "labels/before-incident-42/p/i/app/app.dump.zst.age",
            ),
            (
                Key::LabelManifest { label: Label::parse("v 1.0").unwrap(), db: db("p", "i", "app") },
                "labels/v%201.0/p/i/app/app.manifest.json",
            ),
            (
                Key::LabelLease { label: Label::parse("x").unwrap(), db: db("p", "i", "app"), seq: 2 },
                "leases/labels/x/p/i/app/0000000002.json",
            ),
        ];
        for (key, path) in table {
            assert_eq!(key.path(), path);
            assert_eq!(Key::parse(path), Some(key), "{path}");
        }
    }

    #[test]
    fn foreign_keys_do_not_parse() {
        for path in [
            "",
            "daily",
            "hourly/p/i/d/2026-11-22/d.manifest.json",
            "daily/p/i/d/2026-13-01/d.manifest.json",
            "daily/p/i/d/2026-11-22/other.manifest.json",
            "daily/p/i/d/2026-11-22/d.exe",
            "daily/p/i/../2026-11-22/...manifest.json",
            "daily/p/i/caf%C3%A9/2026-11-22/caf%C3%A9.manifest.json",
            "latest/p/i/a b.json",
            "history/p/i/app/7.json",
        ] {
            assert_eq!(Key::parse(path), None, "{path}");
        }
    }

    #[test]
    fn a_prefix_is_the_first_segments_of_a_key_with_a_slash() {
        let date = RunDate::parse("2026-11-22").unwrap();
        let key = Key::Hold { db: db("my proj", "i", "d"), date };
        assert_eq!(Prefix::of(&key, 1).as_str(), "holds/");
        assert_eq!(Prefix::of(&key, 2).to_string(), "holds/my%20proj/");
        assert_eq!(Prefix::of(&key, 2).into_string(), format!("holds/{}/", key_segment("my proj")));
    }
}
