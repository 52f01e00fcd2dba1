//! Cloud Storage bucket IAM fake (`GET /storage/v1/b/{bucket}/iam`, the JSON API's
//! `buckets.getIamPolicy`): fake-gcs-server has no IAM. Answers the bindings set for a bucket,
//! 404 for any other.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use super::google::error;

/// Bindings (role, members) per bucket.
type Policies = Arc<Mutex<BTreeMap<String, Vec<(String, Vec<String>)>>>>;

/// The running fake.
pub struct StorageIamFake {
    /// The server.
    pub server: MockServer,
    /// Bindings (role → members) per bucket.
    pub policies: Policies,
}

struct Policy(Policies);

impl Respond for Policy {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let bucket = request.url.path().trim_start_matches("/storage/v1/b/").trim_end_matches("/iam");
        let Some(bindings) = self.0.lock().unwrap().get(bucket).cloned() else {
            return error(404, "NOT_FOUND", "The specified bucket does not exist.", "notFound");
        };
        let bindings: Vec<Value> =
            bindings.into_iter().map(|(role, members)| json!({"role": role, "members": members})).collect();
        ResponseTemplate::new(200).set_body_json(
            json!({"kind": "storage#policy", "resourceId": format!("projects/_/buckets/{bucket}"), "version": 1, "etag": "CAE=", "bindings": bindings}),
        )
    }
}

impl StorageIamFake {
    /// Starts the fake.
    pub async fn start() -> Self {
        let server = MockServer::start().await;
        let policies = Arc::new(Mutex::new(BTreeMap::new()));
        Mock::given(method("GET"))
            .and(path_regex(r"^/storage/v1/b/[^/]+/iam$"))
            .respond_with(Policy(policies.clone()))
            .mount(&server)
            .await;
        Self { server, policies }
    }

    /// Binds `members` to `role` on `bucket`.
    pub fn grant(&self, bucket: &str, role: &str, members: &[&str]) {
        self.policies
            .lock()
            .unwrap()
            .entry(bucket.to_owned())
            .or_default()
            .push((role.to_owned(), members.iter().map(|m| (*m).to_owned()).collect()));
    }
}
