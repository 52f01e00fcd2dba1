//! [`SettingsError`]: one configuration problem, naming the dotted key and the reason.

/// A configuration problem: the dotted key and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: `{key}`: {reason}")]
pub struct SettingsError {
    /// Dotted key (`store.url`, `sources[1].url`).
    pub key: String,
    /// What is wrong, and how to fix it.
    pub reason: String,
}

impl SettingsError {
    /// A problem with `key`, for `reason`.
    pub(crate) fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self { key: key.into(), reason: reason.into() }
    }
}
