//! `[[copies]]`: further stores (off-site copies) that every dated backup is copied to once its
//! manifest commits in the primary store, with their checks. A copy's `options` may hold
//! credentials, so its `Debug` prints only the option names.

use std::collections::BTreeMap;

use serde::Deserialize;
use url::Url;

use super::error::SettingsError;
use super::retention::{RetentionLock, SourceRetentionSettings};
use crate::model::calendar::RetentionClass;

/// One `[[copies]]` entry.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CopySettings {
    /// Unique name (`[a-z0-9-]+`), used in logs, reports and the "reported once" marker.
    pub name: String,
    /// `file://DIR`, `gs://BUCKET[/PREFIX]`, `s3://BUCKET[/PREFIX]` or `az://CONTAINER[/PREFIX]`.
    pub url: String,
    /// `object_store` options for `s3://` and `az://` (endpoint, region, credentials; the
    /// environment's `AWS_*`/`AZURE_*` variables apply too). Never logged.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// Encrypt the copy to these age X25519 recipients (`age1…`) when the primary object is
    /// plaintext; empty: copied as it is.
    #[serde(default)]
    pub age_recipients: Vec<String>,
    /// The retention classes copied (`daily`, `weekly`, `monthly`, `quarterly`, `yearly`);
    /// unset: all of them.
    #[serde(default)]
    pub classes: Option<Vec<String>>,
    /// Object retention of each copied dump and manifest until its class expires in this copy
    /// (`off`, `unlocked`: GCS `Unlocked` / S3 Object Lock `GOVERNANCE`, `locked`: GCS `Locked` /
    /// S3 `COMPLIANCE`); `gs://` and `s3://` copies only (an S3 bucket made with Object Lock on).
    #[serde(default)]
    pub lock: RetentionLock,
    /// `[copies.retention.<class>] keep_days = N`: how long this copy keeps a class, when not as
    /// long as the primary (`[retention]`); the prune of the copy and its lock follow it.
    #[serde(default)]
    pub retention: SourceRetentionSettings,
}

impl std::fmt::Debug for CopySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CopySettings")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("options", &self.options.keys().collect::<Vec<_>>())
            .field("age_recipients", &self.age_recipients)
            .field("classes", &self.classes)
            .field("lock", &self.lock)
            .field("retention", &self.retention)
            .finish()
    }
}

impl CopySettings {
    /// Whether backups of `class` are copied here.
    #[must_use]
    pub fn copies_class(&self, class: RetentionClass) -> bool {
        self.classes.as_ref().is_none_or(|list| list.iter().any(|c| c == class.as_str()))
    }
}

/// Checks every `[[copies]]` entry: names unique and `[a-z0-9-]+`, a supported URL that is not the
/// primary store's (`store_url`) nor another copy's, age recipients that parse, known classes.
pub(crate) fn validate_copies(copies: &[CopySettings], store_url: &str) -> Result<(), SettingsError> {
    for (i, copy) in copies.iter().enumerate() {
        let key = |field: &str| format!("copies[{i}].{field}");
        let name_ok = !copy.name.is_empty()
            && copy.name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !name_ok {
            return Err(SettingsError::new(key("name"), "must be lowercase letters, digits and `-` (at least one)"));
        }
        if copies[..i].iter().any(|c| c.name == copy.name) {
            return Err(SettingsError::new(key("name"), format!("`{}` names another copy too", copy.name)));
        }
        let url = Url::parse(&copy.url).map_err(|e| SettingsError::new(key("url"), format!("not a URL ({e})")))?;
        if !matches!(url.scheme(), "file" | "gs" | "s3" | "az") {
            return Err(SettingsError::new(
                key("url"),
                format!("unsupported scheme `{}` (expected file://, gs://, s3:// or az://)", url.scheme()),
            ));
        }
        let same = |other: &str| other.trim_end_matches('/') == copy.url.trim_end_matches('/');
        if same(store_url) || copies[..i].iter().any(|c| same(&c.url)) {
            return Err(SettingsError::new(
                key("url"),
                "is the primary store's or another copy's: a copy must go elsewhere",
            ));
        }
        copy.lock.validate_for(&key("lock"), &copy.url)?;
        crate::crypto::parse_recipients(&copy.age_recipients)
            .map_err(|e| SettingsError::new(key("age_recipients"), e))?;
        for (j, class) in copy.classes.iter().flatten().enumerate() {
            if RetentionClass::from_segment(class).is_none() {
                return Err(SettingsError::new(
                    format!("copies[{i}].classes[{j}]"),
                    format!("`{class}` is not a retention class (daily, weekly, monthly, quarterly, yearly)"),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::Settings;

    const KEY: &str = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";

    #[test]
    fn copies_parse_and_options_never_print() {
        let s = Settings::from_toml(&format!(
            "[[copies]]\nname = \"offsite-1\"\nurl = \"s3://b/p\"\nage_recipients = [\"{KEY}\"]\nclasses = [\"monthly\"]\n\
             options = {{ aws_secret_access_key = \"hunter2\" }}\n\
             [[copies]]\nname = \"az\"\nurl = \"az://c\"\n"
        ))
        .unwrap();
        assert_eq!(s.copies.len(), 2);
        assert!(s.copies[0].copies_class(crate::model::calendar::RetentionClass::Monthly));
        assert!(!s.copies[0].copies_class(crate::model::calendar::RetentionClass::Daily));
        assert!(s.copies[1].copies_class(crate::model::calendar::RetentionClass::Daily));
        let printed = format!("{s:?}");
        assert!(!printed.contains("hunter2") && printed.contains("aws_secret_access_key"), "{printed}");
    }

    #[test]
    fn copy_errors_name_the_key() {
        let cases = [
            ("[[copies]]\nname = \"Off\"\nurl = \"s3://b\"", "`copies[0].name`"),
            (
                "[[copies]]\nname = \"a\"\nurl = \"s3://b\"\n[[copies]]\nname = \"a\"\nurl = \"az://c\"",
                "`copies[1].name`",
            ),
            ("[[copies]]\nname = \"a\"\nurl = \"ftp://b\"", "`copies[0].url`"),
            ("[[copies]]\nname = \"a\"\nurl = \"s3://b\"\nage_recipients = [\"nope\"]", "`copies[0].age_recipients`"),
            ("[[copies]]\nname = \"a\"\nurl = \"s3://b\"\nclasses = [\"daily\", \"hourly\"]", "`copies[0].classes[1]`"),
            ("[[copies]]\nurl = \"s3://b\"", "name"),
            ("[store]\nurl = \"s3://b/p\"\n[[copies]]\nname = \"a\"\nurl = \"s3://b/p/\"", "`copies[0].url`"),
            ("[[copies]]\nname = \"a\"\nurl = \"az://c\"\nlock = \"locked\"", "`copies[0].lock`"),
            ("[[copies]]\nname = \"a\"\nurl = \"file:///x\"\nlock = \"unlocked\"", "`copies[0].lock`"),
            (
                "[[copies]]\nname = \"a\"\nurl = \"s3://b\"\n[copies.retention.monthly]\ncolder_after_days = 30",
                "`copies[0].retention.monthly`",
            ),
            ("[[copies]]\nname = \"a\"\nurl = \"s3://b\"\n[copies.retention.daily]\nkeep_days = 0", "keep_days"),
        ];
        for (toml, expected) in cases {
            let err = Settings::from_toml(toml).unwrap_err().to_string();
            assert!(err.contains(expected), "{toml:?} gave {err:?}");
        }
    }

    #[test]
    fn a_copy_keeps_the_primary_policy_but_for_the_classes_it_sets() {
        use crate::model::calendar::RetentionClass::{Daily, Monthly, Yearly};
        use crate::settings::RetentionPolicy;
        let s = Settings::from_toml(
            "[[sources]]\nname = \"legacy\"\nkind = \"mysql\"\nurl = \"mysql://h/\"\n\
             [retention.sources.legacy.daily]\nkeep_days = 3\n\
             [[copies]]\nname = \"vault\"\nurl = \"s3://b\"\nlock = \"locked\"\n\
             [copies.retention.daily]\nkeep_days = 30\n[copies.retention.yearly]\nkeep_days = 3650\n\
             [[copies]]\nname = \"plain\"\nurl = \"az://c\"\n",
        )
        .unwrap();
        let policy = RetentionPolicy::from_settings(&s).unwrap();
        let vault = policy.for_copy("vault");
        assert_eq!(vault.rule(Daily, "legacy").keep_days, 30, "the copy's class rule wins over the source's");
        assert_eq!(vault.rule(Yearly, "legacy").keep_days, 3650);
        assert_eq!(vault.rule(Monthly, "legacy").keep_days, policy.rule(Monthly, "legacy").keep_days);
        assert_eq!(
            policy.for_copy("plain"),
            policy.for_copy("no-such-copy"),
            "a copy without its own is the primary's"
        );
        assert_eq!(policy.rule(Daily, "legacy").keep_days, 3, "the primary's policy is untouched");
        let day = chrono::NaiveDate::from_ymd_opt(2026, 11, 20).unwrap();
        assert_eq!(vault.retain_until(Daily, "legacy", day).to_rfc3339(), "2026-12-21T00:00:00+00:00");
    }
}
