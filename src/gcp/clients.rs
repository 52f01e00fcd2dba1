//! The Google API clients of discovery, built once with the `[gcp]` credentials and endpoint
//! overrides (tests point them at fakes), and the per-API limiters of the process ([`GcpApis`]).

use std::time::Duration;

use google_cloud_asset_v1::client::AssetService;
use google_cloud_gax::retry_policy::NeverRetry;
use google_cloud_resourcemanager_v3::client::{Folders, Projects};
use google_cloud_sql_v1::client::{SqlDatabasesService, SqlInstancesService};

use super::api::Api;
use super::credentials::credentials;
use crate::settings::GcpSettings;

/// The per-API limiters of a process: shared by every `gcp` source, since quotas are per caller.
#[derive(Debug)]
pub struct GcpApis {
    /// Resource Manager v3.
    pub resource_manager: Api,
    /// Cloud SQL Admin v1.
    pub sql_admin: Api,
    /// Cloud Asset v1.
    pub asset: Api,
}

impl GcpApis {
    /// Limits from `[gcp]`.
    #[must_use]
    pub fn new(gcp: &GcpSettings) -> Self {
        let api = |name, per_minute| {
            Api::new(
                name,
                per_minute,
                gcp.discovery_concurrency,
                gcp.max_attempts,
                Duration::from_millis(gcp.retry_initial_ms),
            )
        };
        Self {
            resource_manager: api("resourcemanager", gcp.resource_manager_per_minute),
            sql_admin: api("sqladmin", gcp.sql_admin_per_minute),
            asset: api("cloudasset", gcp.asset_per_minute),
        }
    }
}

/// The clients discovery calls.
pub struct Clients {
    /// Resource Manager folders.
    pub folders: Folders,
    /// Resource Manager projects.
    pub projects: Projects,
    /// Cloud SQL Admin instances.
    pub instances: SqlInstancesService,
    /// Cloud SQL Admin databases.
    pub databases: SqlDatabasesService,
    /// Cloud Asset inventory.
    pub asset: AssetService,
}

macro_rules! build_client {
    ($ty:ty, $endpoint:expr, $creds:expr) => {{
        let mut b = <$ty>::builder().with_credentials($creds.clone()).with_retry_policy(NeverRetry);
        if let Some(ep) = $endpoint {
            b = b.with_endpoint(ep.as_str().trim_end_matches('/'));
        }
        b.build().await.map_err(|e| format!("building the {} client: {e}", stringify!($ty)))?
    }};
}

impl Clients {
    /// Every client, with the `[gcp]` credentials and endpoints and the SDK's retries off.
    pub async fn build(gcp: &GcpSettings) -> Result<Self, String> {
        let creds = credentials(gcp)?;
        Ok(Self {
            folders: build_client!(Folders, &gcp.resource_manager_endpoint, creds),
            projects: build_client!(Projects, &gcp.resource_manager_endpoint, creds),
            instances: build_client!(SqlInstancesService, &gcp.sql_admin_endpoint, creds),
            databases: build_client!(SqlDatabasesService, &gcp.sql_admin_endpoint, creds),
            asset: build_client!(AssetService, &gcp.asset_endpoint, creds),
        })
    }
}
