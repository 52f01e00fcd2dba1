//! Cloud Asset v1 fake: `GET /v1/{scope}:searchAllResources` over `folders/N` (the whole subtree)
//! or `projects/P`, for `assetTypes=sqladmin.googleapis.com/Instance`, paged. Instances of
//! projects that are not `ACTIVE` are left out; an instance made with `asset_attributes: false`
//! comes without `additionalAttributes` (discovery then reads it with `instances.get`).

use std::sync::Arc;

use serde_json::{Value, json};
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use super::google::{ApiState, Shared, error, page};

/// The running fake.
pub struct AssetFake {
    /// The server.
    pub server: MockServer,
    /// Counters and 429 bursts.
    pub api: Arc<ApiState>,
}

struct Search(Arc<Shared>, Arc<ApiState>);

impl Respond for Search {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        if let Some(r) = self.1.enter(request) {
            return r;
        }
        let scope = request.url.path().trim_start_matches("/v1/").trim_end_matches(":searchAllResources").to_owned();
        let types: Vec<String> =
            request.url.query_pairs().filter(|(k, _)| k == "assetTypes").map(|(_, v)| v.into_owned()).collect();
        if !types.is_empty() && !types.iter().any(|t| t == "sqladmin.googleapis.com/Instance") {
            return ResponseTemplate::new(200).set_body_json(json!({"results": []}));
        }
        let org = self.0.org.lock().unwrap();
        let projects: Vec<&str> = if let Some(id) = scope.strip_prefix("projects/") {
            org.projects.iter().filter(|p| p.id == id).map(|p| p.id.as_str()).collect()
        } else if scope.starts_with("folders/") {
            let tree = org.subtree(&scope);
            org.projects.iter().filter(|p| tree.contains(&p.parent)).map(|p| p.id.as_str()).collect()
        } else {
            return error(400, "INVALID_ARGUMENT", &format!("invalid scope {scope}"), "INVALID_SCOPE");
        };
        let items: Vec<Value> = org
            .instances
            .iter()
            .filter(|i| projects.contains(&i.project.as_str()))
            .filter(|i| org.project_by_id(&i.project).is_some_and(|p| p.state == "ACTIVE"))
            .map(|i| {
                let mut r = json!({
                    "name": format!("//cloudsql.googleapis.com/projects/{}/instances/{}", i.project, i.name),
                    "assetType": "sqladmin.googleapis.com/Instance",
                    "project": "projects/123456",
                    "displayName": i.name,
                    "location": "europe-west1",
                    "state": i.state,
                });
                if i.asset_attributes {
                    let mut attrs = json!({
                        "databaseVersion": i.version,
                        "instanceType": i.instance_type,
                        "activationPolicy": i.activation_policy,
                    });
                    if let Some(m) = i.json().get("masterInstanceName") {
                        attrs["masterInstanceName"] = m.clone();
                    }
                    r["additionalAttributes"] = attrs;
                }
                r
            })
            .collect();
        let (items, next) = page(request, "pageSize", self.0.page_size, &items);
        ResponseTemplate::new(200).set_body_json(json!({"results": items, "nextPageToken": next}))
    }
}

impl AssetFake {
    /// Starts the fake over `shared`.
    pub async fn start(shared: Arc<Shared>) -> Self {
        let server = MockServer::start().await;
        let api = Arc::new(ApiState::default());
        Mock::given(method("GET"))
            .and(path_regex(r"^/v1/(folders|projects|organizations)/[^/:]+:searchAllResources$"))
            .respond_with(Search(shared, api.clone()))
            .mount(&server)
            .await;
        Self { server, api }
    }
}
