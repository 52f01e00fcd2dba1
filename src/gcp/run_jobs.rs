//! Cloud Run Admin API v2, the two calls `export.job` needs (REST reference: `jobs.run`,
//! `jobs.executions.list`): run the job with overridden container args, and list its executions
//! with their args and state, so a check attaches to the execution of its task instead of running
//! the job twice. Authorised with the `[gcp]` credentials, like every Google call of the service.

use std::time::Duration;

use chrono::{DateTime, Utc};
use google_cloud_auth::credentials::{CacheableResource, Credentials};
use serde_json::{Value, json};

use crate::settings::GcpSettings;

/// Google's Cloud Run Admin endpoint.
const DEFAULT_ENDPOINT: &str = "https://run.googleapis.com";

/// One execution of a job, as the list says it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Execution {
    /// `projects/P/locations/L/jobs/J/executions/E`.
    pub name: String,
    /// Its container's args (the first container's).
    pub args: Vec<String>,
    /// `createTime`.
    pub created: Option<DateTime<Utc>>,
    /// Whether it ended (`completionTime` is set).
    pub done: bool,
    /// Whether it ended with its task succeeded (and none failed).
    pub succeeded: bool,
}

/// The Cloud Run Admin client.
pub struct RunJobs {
    endpoint: String,
    credentials: Credentials,
    http: reqwest::Client,
}

impl RunJobs {
    /// A client with the `[gcp]` credentials and endpoint.
    pub fn new(gcp: &GcpSettings) -> Result<Self, String> {
        let endpoint =
            gcp.run_endpoint.as_ref().map_or(DEFAULT_ENDPOINT, |u| u.as_str()).trim_end_matches('/').to_owned();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| format!("building the Cloud Run Admin client: {e}"))?;
        Ok(Self { endpoint, credentials: crate::gcp::credentials::credentials(gcp)?, http })
    }

    async fn headers(&self) -> Result<http::HeaderMap, String> {
        match self.credentials.headers(http::Extensions::new()).await {
            Ok(CacheableResource::New { data, .. }) => Ok(data),
            Ok(CacheableResource::NotModified) => Ok(http::HeaderMap::new()),
            Err(e) => Err(format!("no credentials for Cloud Run Admin: {e}")),
        }
    }

    async fn answer(response: Result<reqwest::Response, reqwest::Error>, what: &str) -> Result<Value, String> {
        let response = response.map_err(|e| format!("Cloud Run Admin is unreachable ({what}: {})", e.without_url()))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() {
            let detail: String = text.chars().take(300).collect();
            return Err(format!("Cloud Run Admin answered {status} to {what}: {detail}"));
        }
        serde_json::from_str(&text).map_err(|e| format!("Cloud Run Admin's answer to {what} is not JSON: {e}"))
    }

    /// `jobs.run` of `job` with its container's args overridden: the execution's name.
    pub async fn run(&self, job: &str, args: &[String]) -> Result<String, String> {
        let body = json!({"overrides": {"containerOverrides": [{"args": args}], "taskCount": 1}});
        let url = format!("{}/v2/{job}:run", self.endpoint);
        let response = self.http.post(url).headers(self.headers().await?).json(&body).send().await;
        let operation = Self::answer(response, "jobs.run").await?;
        operation["metadata"]["name"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("jobs.run answered no execution: {operation}"))
    }

    /// `jobs.executions.list` of `job`, newest first as the API lists them (first page: a job's
    /// executions of a day are far fewer than a page).
    pub async fn executions(&self, job: &str) -> Result<Vec<Execution>, String> {
        let url = format!("{}/v2/{job}/executions?pageSize=1000", self.endpoint);
        let response = self.http.get(url).headers(self.headers().await?).send().await;
        let list = Self::answer(response, "jobs.executions.list").await?;
        Ok(list["executions"].as_array().into_iter().flatten().map(execution).collect())
    }
}

fn execution(v: &Value) -> Execution {
    let count = |k: &str| v[k].as_u64().unwrap_or(0);
    let time =
        |k: &str| v[k].as_str().and_then(|t| DateTime::parse_from_rfc3339(t).ok()).map(|t| t.with_timezone(&Utc));
    Execution {
        name: v["name"].as_str().unwrap_or_default().to_owned(),
        args: v["template"]["containers"][0]["args"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a.as_str().map(str::to_owned))
            .collect(),
        created: time("createTime"),
        done: time("completionTime").is_some(),
        succeeded: count("succeededCount") >= 1 && count("failedCount") == 0,
    }
}
