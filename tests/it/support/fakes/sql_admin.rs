//! Cloud SQL Admin v1 fake: `instances.list` (paged by `maxResults`, with `warnings`),
//! `instances.get` and `databases.list`. A project's [`SqlAccess`] decides whether it answers 403
//! `SERVICE_DISABLED`, 403 `PERMISSION_DENIED`, or lists with a `REGION_UNREACHABLE` warning.

use std::sync::Arc;

use serde_json::{Value, json};
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use super::google::{ApiState, Shared, SqlAccess, error, page};

/// The running fake.
pub struct SqlAdminFake {
    /// The server.
    pub server: MockServer,
    /// Counters and 429 bursts.
    pub api: Arc<ApiState>,
}

struct Sql(Arc<Shared>, Arc<ApiState>);

fn refused(access: SqlAccess, project: &str) -> Option<ResponseTemplate> {
    match access {
        SqlAccess::Disabled => Some(error(
            403,
            "PERMISSION_DENIED",
            &format!("Cloud SQL Admin API has not been used in project {project} before or it is disabled."),
            "SERVICE_DISABLED",
        )),
        SqlAccess::Denied => Some(error(
            403,
            "PERMISSION_DENIED",
            "The client is not authorized to make this request.",
            "IAM_PERMISSION_DENIED",
        )),
        _ => None,
    }
}

impl Respond for Sql {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        if let Some(r) = self.1.enter(request) {
            return r;
        }
        let parts: Vec<&str> = request.url.path().trim_start_matches("/v1/").split('/').collect();
        let org = self.0.org.lock().unwrap();
        let project = parts.get(1).copied().unwrap_or_default();
        let Some(p) = org.project_by_id(project) else {
            return error(404, "NOT_FOUND", &format!("project {project} not found"), "RESOURCE_NOT_FOUND");
        };
        if let Some(r) = refused(p.sql, project) {
            return r;
        }
        let instances: Vec<_> = org.instances.iter().filter(|i| i.project == project).collect();
        match parts.as_slice() {
            ["projects", _, "instances"] => {
                let items: Vec<Value> = instances.iter().map(|i| i.json()).collect();
                let (items, next) = page(request, "maxResults", self.0.page_size, &items);
                let mut body = json!({"kind": "sql#instancesList", "items": items, "nextPageToken": next});
                if p.sql == SqlAccess::RegionUnreachable {
                    body["warnings"] = json!([{"code": "REGION_UNREACHABLE", "message": "One or more regions are unreachable; the result may be incomplete.", "region": "asia-east2"}]);
                }
                ResponseTemplate::new(200).set_body_json(body)
            }
            ["projects", _, "instances", name] => match instances.iter().find(|i| i.name == *name) {
                Some(i) => ResponseTemplate::new(200).set_body_json(i.json()),
                None => error(404, "NOT_FOUND", "The Cloud SQL instance does not exist.", "INSTANCE_NOT_FOUND"),
            },
            ["projects", _, "instances", name, "databases"] => match instances.iter().find(|i| i.name == *name) {
                Some(i) => ResponseTemplate::new(200).set_body_json(json!({
                    "kind": "sql#databasesList",
                    "items": i.databases.iter().map(|d| json!({"kind": "sql#database", "name": d, "instance": i.name, "project": i.project, "charset": "UTF8"})).collect::<Vec<_>>(),
                })),
                None => error(404, "NOT_FOUND", "The Cloud SQL instance does not exist.", "INSTANCE_NOT_FOUND"),
            },
            _ => error(404, "NOT_FOUND", "no such method in the fake", "NOT_FOUND"),
        }
    }
}

impl SqlAdminFake {
    /// Starts the fake over `shared`.
    pub async fn start(shared: Arc<Shared>) -> Self {
        let server = MockServer::start().await;
        let api = Arc::new(ApiState::default());
        Mock::given(method("GET"))
            .and(path_regex(r"^/v1/projects/[^/]+/instances(/[^/]+(/databases)?)?$"))
            .respond_with(Sql(shared, api.clone()))
            .mount(&server)
            .await;
        Self { server, api }
    }
}
