//! Google credentials for the `[gcp]` settings: anonymous (tests, emulators) or Application Default
//! Credentials.

use google_cloud_auth::credentials::{Builder as AdcBuilder, Credentials, anonymous};

use crate::settings::{GcpCredentials, GcpSettings};

/// A Google credentials object for the `[gcp]` settings.
pub fn credentials(gcp: &GcpSettings) -> Result<Credentials, String> {
    match gcp.credentials {
        GcpCredentials::Anonymous => Ok(anonymous::Builder::new().build()),
        GcpCredentials::Default => {
            AdcBuilder::default().build().map_err(|e| format!("loading Application Default Credentials: {e}"))
        }
    }
}
