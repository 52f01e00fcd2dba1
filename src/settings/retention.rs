//! `[retention]`: the settings of the retention calendar, and the [`RetentionPolicy`] they resolve
//! to (one [`ClassRule`] per class, and per source where overridden), checked as they resolve.
//!
//! The policy drives both ways an expired backup goes away: bucket lifecycle rules and the prune.
//! A backup of class `c` with run date `d` is **expired** on `as_of` when `as_of - d >
//! keep_days(c)` (per-source overrides apply to the backups whose project segment is the source's
//! name).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, NaiveTime, Utc, Weekday};
use serde::{Deserialize, Serialize};

use super::error::SettingsError;
use crate::model::calendar::{RetentionClass, class_of};

/// `[retention]`: the retention calendar and how long each class is kept.
///
/// ```toml
/// [retention]
/// weekly_on = "monday"            # the weekly class's weekday
/// prune_after_schedule = false    # prune (as of the run date) after each non-dry-run /schedule
/// [retention.daily]               # also weekly, monthly, quarterly, yearly
/// keep_days = 9                   # defaults: daily 9, weekly 40, monthly 365, quarterly 2190, yearly 43800
/// colder_after_days = 30          # optional: move to colder storage after this many days (0: never)
/// colder_storage = "nearline"     # nearline (default) | coldline | archive
/// [retention.sources.legacy.daily]  # per-source override of any of the three keys above
/// keep_days = 3
/// ```
/// A per-source override names a configured source and applies to the backups whose key's project
/// segment is that name, which is every backup of a self-hosted source (`<class>/<source>/…`), so
/// bucket lifecycle rules can match it by prefix. Keys it leaves out are inherited from the class.
/// Every value is resolved and checked by [`RetentionPolicy::resolve`].
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionSettings {
    /// Weekday of the weekly class (`monday` … `sunday`).
    pub weekly_on: WeekdayName,
    /// Run a prune (evaluated as of the run date) after each `/schedule` has enqueued its tasks.
    pub prune_after_schedule: bool,
    /// Object retention (`gs://` and `s3://` stores): `off`, `unlocked` (GCS mode `Unlocked`, S3
    /// Object Lock `GOVERNANCE`: an administrator may shorten the date) or `locked` (GCS `Locked`,
    /// S3 `COMPLIANCE`: nobody can delete the backup before it, ever). Every new backup's dump and
    /// manifest are retained until the end of their class's `keep_days`.
    pub lock: RetentionLock,
    /// `[retention.daily]`.
    pub daily: ClassRetentionSettings,
    /// `[retention.weekly]`.
    pub weekly: ClassRetentionSettings,
    /// `[retention.monthly]`.
    pub monthly: ClassRetentionSettings,
    /// `[retention.quarterly]`.
    pub quarterly: ClassRetentionSettings,
    /// `[retention.yearly]`.
    pub yearly: ClassRetentionSettings,
    /// `[retention.sources.<source name>.<class>]`: per-source overrides.
    pub sources: BTreeMap<String, SourceRetentionSettings>,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        Self {
            weekly_on: WeekdayName(Weekday::Mon),
            prune_after_schedule: false,
            lock: RetentionLock::Off,
            daily: ClassRetentionSettings::default(),
            weekly: ClassRetentionSettings::default(),
            monthly: ClassRetentionSettings::default(),
            quarterly: ClassRetentionSettings::default(),
            yearly: ClassRetentionSettings::default(),
            sources: BTreeMap::new(),
        }
    }
}

/// `[retention.<class>]`: how long one class is kept; a key left out takes its default.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClassRetentionSettings {
    /// Days a backup of this class is kept after its run date (at least 1).
    pub keep_days: Option<u32>,
    /// Days after which it moves to colder storage (lifecycle rules only; 0 or absent: never).
    pub colder_after_days: Option<u32>,
    /// The colder storage: `nearline` (default), `coldline` or `archive`.
    pub colder_storage: Option<ColderStorage>,
}

/// `[retention.sources.<name>]`: one source's overrides, class by class.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourceRetentionSettings {
    /// `[retention.sources.<name>.daily]`.
    pub daily: ClassRetentionSettings,
    /// `[retention.sources.<name>.weekly]`.
    pub weekly: ClassRetentionSettings,
    /// `[retention.sources.<name>.monthly]`.
    pub monthly: ClassRetentionSettings,
    /// `[retention.sources.<name>.quarterly]`.
    pub quarterly: ClassRetentionSettings,
    /// `[retention.sources.<name>.yearly]`.
    pub yearly: ClassRetentionSettings,
}

/// A weekday written in English (`monday`, `Mon`).
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(try_from = "String")]
pub struct WeekdayName(pub Weekday);

impl TryFrom<String> for WeekdayName {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse::<Weekday>().map(Self).map_err(|_| format!("`{value}` is not a weekday"))
    }
}

/// Object retention of new backups (`retention.lock`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetentionLock {
    /// No retention is set.
    #[default]
    Off,
    /// Retained; an administrator may still shorten the date.
    Unlocked,
    /// Retained; nobody can delete or shorten it before the date.
    Locked,
}

impl RetentionSettings {
    /// Checks that object retention is asked of a store that has it.
    pub(crate) fn validate_lock(&self, store_url: &str) -> Result<(), SettingsError> {
        self.lock.validate_for("retention.lock", store_url)
    }
}

impl RetentionLock {
    /// Checks that a store at `url` can retain objects: `gs://` (object retention) and `s3://`
    /// (Object Lock, on a bucket created with it enabled); `key` names the setting in errors.
    pub(crate) fn validate_for(self, key: &str, url: &str) -> Result<(), SettingsError> {
        if self == Self::Off || url.starts_with("gs://") || url.starts_with("s3://") {
            return Ok(());
        }
        let reason = if url.starts_with("az://") {
            "object retention is set on gs:// and s3:// stores only; for Azure Blob, set a time-based \
             immutability policy on the container (this service does not set per-blob policies)"
        } else {
            "object retention is set on gs:// and s3:// stores only"
        };
        Err(SettingsError::new(key, reason))
    }
}

/// Colder storage a class may move to after some days (bucket lifecycle rules only).
///
/// | setting | GCS | S3 |
/// | --- | --- | --- |
/// | `nearline` | `NEARLINE` | `STANDARD_IA` |
/// | `coldline` | `COLDLINE` | `GLACIER_IR` |
/// | `archive` | `ARCHIVE` | `GLACIER_IR` |
///
/// The S3 mapping keeps every backup readable at once (no restore request), as the GCS classes are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColderStorage {
    /// GCS Nearline (30-day minimum storage), S3 Standard-IA.
    #[default]
    Nearline,
    /// GCS Coldline (90 days), S3 Glacier Instant Retrieval.
    Coldline,
    /// GCS Archive (365 days), S3 Glacier Instant Retrieval.
    Archive,
}

impl ColderStorage {
    /// The GCS storage class.
    #[must_use]
    pub fn gcs(self) -> &'static str {
        match self {
            Self::Nearline => "NEARLINE",
            Self::Coldline => "COLDLINE",
            Self::Archive => "ARCHIVE",
        }
    }

    /// The S3 storage class.
    #[must_use]
    pub fn s3(self) -> &'static str {
        match self {
            Self::Nearline => "STANDARD_IA",
            Self::Coldline | Self::Archive => "GLACIER_IR",
        }
    }
}

/// A move to colder storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Colder {
    /// Days after the backup's creation.
    pub after_days: u32,
    /// Where to.
    pub storage: ColderStorage,
}

/// How long one class (of one source) is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClassRule {
    /// Days kept after the run date (at least 1).
    pub keep_days: u32,
    /// Optional move to colder storage, always before `keep_days`.
    pub colder: Option<Colder>,
}

impl ClassRule {
    /// Kept `keep_days`, never moved.
    #[must_use]
    pub fn keep(keep_days: u32) -> Self {
        Self { keep_days, colder: None }
    }
}

/// The resolved `[retention]` settings: one rule per class, and per source where overridden.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetentionPolicy {
    weekly_on: Weekday,
    prune_after_schedule: bool,
    classes: BTreeMap<RetentionClass, ClassRule>,
    /// Configured source names (lifecycle rules list them when a class has overrides).
    sources: BTreeSet<String>,
    /// Resolved rules of the (source, class) pairs that have an override.
    overrides: BTreeMap<(String, RetentionClass), ClassRule>,
    /// Resolved rules of the (copy, class) pairs a `[copies.retention]` overrides.
    copies: BTreeMap<(String, RetentionClass), ClassRule>,
}

impl Default for RetentionPolicy {
    /// Seed 004's policy: Mondays weekly; daily 9 days, weekly 40, monthly 365, quarterly 2190,
    /// yearly 43800; no colder storage, no overrides, no prune after the schedule.
    fn default() -> Self {
        Self {
            weekly_on: Weekday::Mon,
            prune_after_schedule: false,
            classes: RetentionClass::ALL.into_iter().map(|c| (c, ClassRule::keep(c.default_keep_days()))).collect(),
            sources: BTreeSet::new(),
            overrides: BTreeMap::new(),
            copies: BTreeMap::new(),
        }
    }
}

fn class_settings(s: &RetentionSettings, class: RetentionClass) -> &ClassRetentionSettings {
    pick(class, [&s.daily, &s.weekly, &s.monthly, &s.quarterly, &s.yearly])
}

fn source_class_settings(s: &SourceRetentionSettings, class: RetentionClass) -> &ClassRetentionSettings {
    pick(class, [&s.daily, &s.weekly, &s.monthly, &s.quarterly, &s.yearly])
}

/// The settings of `class` among the five, in the order daily, weekly, monthly, quarterly, yearly.
fn pick(
    class: RetentionClass,
    [daily, weekly, monthly, quarterly, yearly]: [&ClassRetentionSettings; 5],
) -> &ClassRetentionSettings {
    match class {
        RetentionClass::Daily => daily,
        RetentionClass::Weekly => weekly,
        RetentionClass::Monthly => monthly,
        RetentionClass::Quarterly => quarterly,
        RetentionClass::Yearly => yearly,
    }
}

/// `s` over `base`; errors name `{prefix}.<key>`.
fn resolve_class(prefix: &str, s: &ClassRetentionSettings, base: ClassRule) -> Result<ClassRule, SettingsError> {
    let error = |key: &str, reason: String| SettingsError { key: format!("{prefix}.{key}"), reason };
    let keep_days = s.keep_days.unwrap_or(base.keep_days);
    if keep_days == 0 {
        return Err(error(
            "keep_days",
            "must be at least 1 (a backup kept 0 days is deleted by the next prune)".into(),
        ));
    }
    let after = match s.colder_after_days {
        Some(0) => None,
        Some(days) => Some(days),
        None => base.colder.map(|c| c.after_days),
    };
    let storage = s.colder_storage.or(base.colder.map(|c| c.storage)).unwrap_or_default();
    if s.colder_storage.is_some() && after.is_none() {
        return Err(error("colder_storage", "is set but colder_after_days is not: say after how many days".into()));
    }
    if let Some(after) = after
        && after >= keep_days
    {
        let key = if s.colder_after_days.is_some() { "colder_after_days" } else { "keep_days" };
        return Err(error(
            key,
            format!(
                "colder_after_days ({after}) must be less than keep_days ({keep_days}): the backup would be deleted before it moves"
            ),
        ));
    }
    Ok(ClassRule { keep_days, colder: after.map(|after_days| Colder { after_days, storage }) })
}

impl RetentionPolicy {
    /// Resolves and checks `[retention]` for the configured `sources` (their names); an error names
    /// the offending key. `RetentionPolicy::from_settings` calls it with the whole settings.
    pub fn resolve(r: &RetentionSettings, sources: impl IntoIterator<Item = String>) -> Result<Self, SettingsError> {
        let mut policy =
            Self { weekly_on: r.weekly_on.0, prune_after_schedule: r.prune_after_schedule, ..Self::default() };
        for class in RetentionClass::ALL {
            let rule = resolve_class(
                &format!("retention.{}", class.as_str()),
                class_settings(r, class),
                ClassRule::keep(class.default_keep_days()),
            )?;
            policy.classes.insert(class, rule);
        }
        policy.sources = sources.into_iter().collect();
        for (name, overrides) in &r.sources {
            if !policy.sources.contains(name) {
                let known: Vec<&str> = policy.sources.iter().map(String::as_str).collect();
                return Err(SettingsError {
                    key: format!("retention.sources.{name}"),
                    reason: format!("`{name}` is not a configured source (configured: {})", known.join(", ")),
                });
            }
            for class in RetentionClass::ALL {
                let s = source_class_settings(overrides, class);
                if s.keep_days.is_none() && s.colder_after_days.is_none() && s.colder_storage.is_none() {
                    continue;
                }
                let prefix = format!("retention.sources.{name}.{}", class.as_str());
                let rule = resolve_class(&prefix, s, policy.classes[&class])?;
                policy.overrides.insert((name.clone(), class), rule);
            }
        }
        Ok(policy)
    }

    /// Resolves each copy's `[copies.retention.<class>]` (its name and that table, in the order of
    /// `[[copies]]`) over this policy's class rules; an error
    /// names `copies[i].retention.<class>.<key>`. A copy keeps no colder-storage move (bucket
    /// lifecycle rules are the primary's), so `colder_*` keys are refused there.
    pub fn resolve_copies<'a>(
        mut self,
        copies: impl IntoIterator<Item = (&'a str, &'a SourceRetentionSettings)>,
    ) -> Result<Self, SettingsError> {
        for (i, (name, retention)) in copies.into_iter().enumerate() {
            for class in RetentionClass::ALL {
                let s = source_class_settings(retention, class);
                let prefix = format!("copies[{i}].retention.{}", class.as_str());
                if s.colder_after_days.is_some() || s.colder_storage.is_some() {
                    return Err(SettingsError::new(
                        prefix,
                        "a copy keeps no colder storage (lifecycle rules are the primary store's): set keep_days only",
                    ));
                }
                if s.keep_days.is_some() {
                    let rule = resolve_class(&prefix, s, ClassRule::keep(0))?;
                    self.copies.insert((name.to_owned(), class), rule);
                }
            }
        }
        Ok(self)
    }

    /// The policy of the copy `name`: this one, with the classes its `[copies.retention]` sets
    /// kept that many days for every source (per-source overrides of those classes give way).
    #[must_use]
    pub fn for_copy(&self, name: &str) -> Self {
        let mut policy = self.clone();
        for ((copy, class), rule) in &self.copies {
            if copy == name {
                policy.classes.insert(*class, *rule);
                policy.overrides.retain(|(_, c), _| c != class);
            }
        }
        policy.copies.clear();
        policy
    }

    /// Replaces the rule of `class` (tests and tools; overrides already set are kept as they are).
    #[must_use]
    pub fn with_class_rule(mut self, class: RetentionClass, rule: ClassRule) -> Self {
        self.classes.insert(class, rule);
        self
    }

    /// Adds the configured source `source`, with `rule` for `class` (tests and tools).
    #[must_use]
    pub fn with_source_rule(mut self, source: &str, class: RetentionClass, rule: ClassRule) -> Self {
        self.sources.insert(source.to_owned());
        self.overrides.insert((source.to_owned(), class), rule);
        self
    }

    /// Sets the weekly weekday.
    #[must_use]
    pub fn with_weekly_on(mut self, weekly_on: Weekday) -> Self {
        self.weekly_on = weekly_on;
        self
    }

    /// The weekly class's weekday.
    #[must_use]
    pub fn weekly_on(&self) -> Weekday {
        self.weekly_on
    }

    /// Whether `/schedule` runs a prune after enqueueing.
    #[must_use]
    pub fn prune_after_schedule(&self) -> bool {
        self.prune_after_schedule
    }

    /// The class of a run date under this policy's calendar.
    #[must_use]
    pub fn class_of(&self, date: NaiveDate) -> RetentionClass {
        class_of(date, self.weekly_on)
    }

    /// The rule of `class` itself, per-source overrides aside.
    #[must_use]
    pub fn class_rule(&self, class: RetentionClass) -> ClassRule {
        self.classes[&class]
    }

    /// Whether some source's rule for `class` differs from the class's own.
    #[must_use]
    pub fn has_source_overrides(&self, class: RetentionClass) -> bool {
        let default = self.class_rule(class);
        self.overrides.iter().any(|((_, c), rule)| *c == class && *rule != default)
    }

    /// The configured sources' names, in order.
    pub fn sources(&self) -> impl Iterator<Item = &str> {
        self.sources.iter().map(String::as_str)
    }

    /// The rule of `class` for the backups whose project segment is `project`.
    #[must_use]
    pub fn rule(&self, class: RetentionClass, project: &str) -> ClassRule {
        self.overrides.get(&(project.to_owned(), class)).copied().unwrap_or(self.classes[&class])
    }

    /// When a backup of `class` and `project` run on `run_date` expires: it is expired once more
    /// than `keep_days` have passed ([`Self::is_expired`]), so it is retained through the end of
    /// that last day (object retention, S3 Object Lock).
    #[must_use]
    pub fn retain_until(&self, class: RetentionClass, project: &str, run_date: NaiveDate) -> DateTime<Utc> {
        let keep = self.rule(class, project).keep_days;
        run_date.and_time(NaiveTime::MIN).and_utc() + chrono::Duration::days(i64::from(keep) + 1)
    }

    /// Whether a backup of `class` and `project` run on `run_date` is expired on `as_of`.
    #[must_use]
    pub fn is_expired(&self, class: RetentionClass, project: &str, run_date: NaiveDate, as_of: NaiveDate) -> bool {
        (as_of - run_date).num_days() > i64::from(self.rule(class, project).keep_days)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Settings;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn settings(toml: &str) -> Result<RetentionPolicy, String> {
        Settings::from_toml(toml)
            .map_err(|e| e.to_string())
            .and_then(|s| RetentionPolicy::from_settings(&s).map_err(|e| e.to_string()))
    }

    const SOURCES: &str = "[[sources]]\nname = \"main\"\nkind = \"postgres\"\nurl = \"postgres://h/\"\n\
                           [[sources]]\nname = \"legacy\"\nkind = \"mysql\"\nurl = \"mysql://h/\"\n";

    #[test]
    fn defaults_are_seed_004s() {
        let policy = settings("").unwrap();
        assert_eq!(policy.sources, BTreeSet::from(["local".to_owned()]));
        assert!(policy.overrides.is_empty());
        let keeps: Vec<u32> = RetentionClass::ALL.iter().map(|c| policy.rule(*c, "local").keep_days).collect();
        assert_eq!(keeps, [9, 40, 365, 2190, 43800]);
        assert!(!policy.prune_after_schedule());
        assert_eq!(policy.weekly_on(), Weekday::Mon);
    }

    #[test]
    fn source_overrides_inherit_what_they_leave_out() {
        let policy = settings(&format!(
            "{SOURCES}[retention]\nweekly_on = \"sunday\"\nprune_after_schedule = true\n\
             [retention.daily]\nkeep_days = 14\ncolder_after_days = 7\ncolder_storage = \"coldline\"\n\
             [retention.sources.legacy.daily]\nkeep_days = 30\n[retention.sources.legacy.monthly]\nkeep_days = 90\n"
        ))
        .unwrap();
        let coldline7 = Some(Colder { after_days: 7, storage: ColderStorage::Coldline });
        assert_eq!(policy.rule(RetentionClass::Daily, "main"), ClassRule { keep_days: 14, colder: coldline7 });
        assert_eq!(policy.rule(RetentionClass::Daily, "legacy"), ClassRule { keep_days: 30, colder: coldline7 });
        assert_eq!(policy.rule(RetentionClass::Monthly, "legacy"), ClassRule::keep(90));
        assert_eq!(policy.rule(RetentionClass::Monthly, "unknown-project"), ClassRule::keep(365));
        assert_eq!(policy.class_of(d("2026-11-22")), RetentionClass::Weekly);
        assert!(policy.prune_after_schedule());
        let never = settings(&format!(
            "{SOURCES}[retention.daily]\ncolder_after_days = 3\n[retention.sources.main.daily]\ncolder_after_days = 0\n"
        ))
        .unwrap();
        assert_eq!(never.rule(RetentionClass::Daily, "main"), ClassRule::keep(9));
    }

    #[test]
    fn retention_errors_name_the_key() {
        let cases = [
            ("[retention.daily]\nkeep_days = 0", "`retention.daily.keep_days`"),
            ("[retention.weekly]\ncolder_after_days = 40", "`retention.weekly.colder_after_days`"),
            ("[retention.weekly]\ncolder_storage = \"archive\"", "`retention.weekly.colder_storage`"),
            ("[retention.monthly]\ncolder_storage = \"tape\"", "retention.monthly.colder_storage"),
            ("[retention.hourly]\nkeep_days = 1", "unknown field"),
            ("[retention.daily]\nkeep_days = -1", "retention.daily.keep_days"),
            ("[retention.sources.nosuch.daily]\nkeep_days = 1", "`retention.sources.nosuch`"),
            ("[retention.sources.main.hourly]\nkeep_days = 1", "retention.sources.main"),
            (
                "[retention.daily]\ncolder_after_days = 5\n[retention.sources.main.daily]\nkeep_days = 4",
                "`retention.sources.main.daily.keep_days`",
            ),
        ];
        for (toml, expected) in cases {
            let err = settings(&format!("{SOURCES}{toml}")).unwrap_err();
            assert!(err.contains(expected), "{toml:?} gave {err:?}");
            assert_eq!(err.lines().count(), 1, "{err}");
        }
    }
}
