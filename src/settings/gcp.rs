//! `[gcp]` (Google clients: credentials, endpoints, rate limits) and the `[[sources]]` with
//! `kind = "gcp"` ([`GcpSourceSettings`]), with their checks.

use std::collections::HashSet;

use serde::Deserialize;
use url::Url;

use super::error::SettingsError;
use super::sources::SourceSettings;
use crate::model::names::{ProjectId, SourceName};

/// `[gcp]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GcpSettings {
    /// `default` (Application Default Credentials) or `anonymous` (emulators).
    pub credentials: GcpCredentials,
    /// Cloud Storage endpoint (default Google's); tests use fake-gcs-server.
    pub storage_endpoint: Option<Url>,
    /// Resource Manager v3 endpoint (default Google's); tests use a fake.
    pub resource_manager_endpoint: Option<Url>,
    /// Cloud SQL Admin v1 endpoint (default Google's); tests use a fake.
    pub sql_admin_endpoint: Option<Url>,
    /// Cloud Tasks v2 endpoint (default Google's); tests use a fake.
    pub cloud_tasks_endpoint: Option<Url>,
    /// Cloud Asset v1 endpoint (default Google's); tests use a fake.
    pub asset_endpoint: Option<Url>,
    /// Pub/Sub v1 endpoint (default Google's); tests use a fake.
    pub pubsub_endpoint: Option<Url>,
    /// Cloud Run Admin v2 endpoint (default Google's), for `export.job`; tests use a fake.
    pub run_endpoint: Option<Url>,
    /// Endpoint of the bucket IAM policy call of `doctor` (default: `storage_endpoint`);
    /// fake-gcs-server has no IAM, so tests point it at a fake.
    pub storage_iam_endpoint: Option<Url>,
    /// Client-side limit of Resource Manager calls per minute (quota: 600 list calls a minute).
    pub resource_manager_per_minute: u32,
    /// Client-side limit of Cloud SQL Admin calls per minute (quota: about 180 a minute per user).
    pub sql_admin_per_minute: u32,
    /// Client-side limit of Cloud Asset search calls per minute (quota: 400 a minute per project).
    pub asset_per_minute: u32,
    /// Client-side limit of Cloud Tasks createTask calls per minute.
    pub cloud_tasks_per_minute: u32,
    /// Discovery calls in flight at once (per API, on top of the rate limits).
    pub discovery_concurrency: usize,
    /// Attempts per discovery call; 429 and 5xx are retried with backoff honouring `Retry-After`.
    pub max_attempts: u32,
    /// First retry delay of a discovery or createTask call, in milliseconds (doubled each attempt).
    pub retry_initial_ms: u64,
}

impl Default for GcpSettings {
    fn default() -> Self {
        Self {
            credentials: GcpCredentials::Default,
            storage_endpoint: None,
            resource_manager_endpoint: None,
            sql_admin_endpoint: None,
            cloud_tasks_endpoint: None,
            asset_endpoint: None,
            pubsub_endpoint: None,
            run_endpoint: None,
            storage_iam_endpoint: None,
            resource_manager_per_minute: 500,
            sql_admin_per_minute: 150,
            asset_per_minute: 300,
            cloud_tasks_per_minute: 6000,
            discovery_concurrency: 8,
            max_attempts: 5,
            retry_initial_ms: 1000,
        }
    }
}

/// `[[sources]]` with `kind = "gcp"`: every Cloud SQL database under some folders and projects.
///
/// ```toml
/// [[sources]]
/// name = "gcp"
/// kind = "gcp"
/// folders = ["folders/123456789"]     # walked recursively (or bare numbers)
/// projects = ["billing-prod"]         # and these projects
/// strategy = "walk"                   # walk (default) | asset_inventory
/// include_replicas = false            # back up read replicas too
/// include_stopped = false             # and instances whose activation policy is NEVER
/// keep_postgres_database = false      # keep the `postgres` database of PostgreSQL instances
/// ```
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcpSourceSettings {
    /// Unique name.
    pub name: SourceName,
    /// Always `gcp`.
    pub kind: String,
    /// Folders walked recursively (`folders/N` or `N`).
    #[serde(default)]
    pub folders: Vec<String>,
    /// Projects listed explicitly (project ids).
    #[serde(default)]
    pub projects: Vec<ProjectId>,
    /// How instances are found.
    #[serde(default)]
    pub strategy: GcpStrategy,
    /// Back up read replicas too (default: skipped, their primary is backed up).
    #[serde(default)]
    pub include_replicas: bool,
    /// Back up stopped instances (activation policy `NEVER`) too (default: skipped).
    #[serde(default)]
    pub include_stopped: bool,
    /// Keep the `postgres` database of PostgreSQL instances (default: dropped like the system ones).
    #[serde(default)]
    pub keep_postgres_database: bool,
}

impl GcpSourceSettings {
    /// The configured folders as `folders/N`.
    #[must_use]
    pub fn folder_names(&self) -> Vec<String> {
        self.folders
            .iter()
            .map(|f| if f.starts_with("folders/") { f.clone() } else { format!("folders/{f}") })
            .collect()
    }
}

/// How a `gcp` source finds its Cloud SQL instances.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GcpStrategy {
    /// Resource Manager folders.list + projects.list recursively, then instances.list per project.
    #[default]
    Walk,
    /// One Cloud Asset searchAllResources query per folder for every instance of the tree.
    AssetInventory,
}

/// How Google clients authenticate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GcpCredentials {
    /// Application Default Credentials.
    Default,
    /// No credentials (emulators and fakes).
    Anonymous,
}

/// `folder` (`folders/N` or `N`) as `folders/N`, or why it is no folder.
pub fn folder_name(folder: &str) -> Result<String, String> {
    let id = folder.strip_prefix("folders/").unwrap_or(folder);
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("`{folder}` is not a folder (expected `folders/NUMBER`)"));
    }
    Ok(format!("folders/{id}"))
}

/// Checks the `gcp` sources (numbered after the `self_hosted` ones, which come first in
/// `[[sources]]`): unique names, something to list, well-formed folders.
pub(crate) fn validate_gcp_sources(
    self_hosted: &[SourceSettings],
    gcp_sources: &[GcpSourceSettings],
) -> Result<(), SettingsError> {
    let mut names: HashSet<&str> = self_hosted.iter().map(|s| s.name.as_str()).collect();
    for (i, source) in gcp_sources.iter().enumerate() {
        let key = |k: &str| format!("sources[{}].{k}", self_hosted.len() + i);
        if !names.insert(source.name.as_str()) {
            return Err(SettingsError::new(key("name"), format!("`{}` is used twice", source.name)));
        }
        if source.folders.is_empty() && source.projects.is_empty() {
            return Err(SettingsError::new(key("folders"), "a `gcp` source needs `folders` or `projects`"));
        }
        for (j, folder) in source.folders.iter().enumerate() {
            folder_name(folder).map_err(|reason| SettingsError::new(key(&format!("folders[{j}]")), reason))?;
        }
    }
    Ok(())
}

impl GcpSettings {
    /// Checks the rate limits, attempts and concurrency.
    pub(crate) fn validate(&self) -> Result<(), SettingsError> {
        let gcp = self;
        for (k, v) in [
            ("gcp.resource_manager_per_minute", gcp.resource_manager_per_minute),
            ("gcp.sql_admin_per_minute", gcp.sql_admin_per_minute),
            ("gcp.asset_per_minute", gcp.asset_per_minute),
            ("gcp.cloud_tasks_per_minute", gcp.cloud_tasks_per_minute),
            ("gcp.max_attempts", gcp.max_attempts),
        ] {
            if v == 0 {
                return Err(SettingsError::new(k, "must be at least 1"));
            }
        }
        if !(1..=64).contains(&gcp.discovery_concurrency) {
            return Err(SettingsError::new("gcp.discovery_concurrency", "must be between 1 and 64"));
        }
        Ok(())
    }
}
