//! `[store]`: where backups are written, and the check of its URL.

use std::collections::BTreeMap;

use serde::Deserialize;
use url::Url;

use super::error::SettingsError;

/// `[store]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSettings {
    /// `file://DIR`, `gs://BUCKET[/PREFIX]`, `s3://BUCKET[/PREFIX]` or `az://CONTAINER[/PREFIX]`.
    pub url: String,
    /// Extra `object_store` options for `s3://` and `az://` (e.g. `aws_endpoint`, `aws_allow_http`);
    /// credentials belong in the environment (`AWS_ACCESS_KEY_ID`, `AZURE_STORAGE_ACCOUNT_KEY`, …).
    pub options: BTreeMap<String, String>,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self { url: "file://./backups".to_owned(), options: BTreeMap::new() }
    }
}

impl StoreSettings {
    /// Checks the URL's scheme.
    pub(crate) fn validate(&self) -> Result<(), SettingsError> {
        let url = Url::parse(&self.url).map_err(|e| SettingsError::new("store.url", format!("not a URL ({e})")))?;
        if !matches!(url.scheme(), "file" | "gs" | "s3" | "az") {
            return Err(SettingsError::new(
                "store.url",
                format!("unsupported scheme `{}` (expected file://, gs://, s3:// or az://)", url.scheme()),
            ));
        }
        Ok(())
    }
}
