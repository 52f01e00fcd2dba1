//! Resource Manager v3 fake: `GET /v3/folders?parent=` and `GET /v3/projects?parent=`, direct
//! children only, paged; `GET /v3/projects/{id}` and `GET /v3/folders/{n}` (`projects.get`,
//! `folders.get`), whose `parent` lets a caller walk a project's ancestry. As in Google's API, a
//! project or folder that does not exist answers 403 `PERMISSION_DENIED` ("or it may not exist"),
//! as does a folder in `Org::denied_folders`. Projects in every state are returned (as with `showDeleted=true`), so
//! that discovery's own `ACTIVE` filter is what the tests check. A folder in `Org::denied_folders`
//! answers both listings with 403 `PERMISSION_DENIED`, as a folder the caller has no
//! `resourcemanager.folders.list` / `projects.list` on does.

use std::sync::Arc;

use serde_json::{Value, json};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use super::google::{ApiState, Shared, error, page, query};

/// The 403 of a listing under a folder the caller may not list.
fn denied(parent: &str, permission: &str) -> ResponseTemplate {
    let message = format!("Permission '{permission}' denied on resource '{parent}' (or it may not exist).");
    error(403, "PERMISSION_DENIED", &message, "IAM_PERMISSION_DENIED")
}

/// The running fake.
pub struct ResourceManagerFake {
    /// The server.
    pub server: MockServer,
    /// Counters and 429 bursts.
    pub api: Arc<ApiState>,
}

struct Folders(Arc<Shared>, Arc<ApiState>);
struct Projects(Arc<Shared>, Arc<ApiState>);

impl Respond for Folders {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        if let Some(r) = self.1.enter(request) {
            return r;
        }
        let parent = query(request, "parent");
        let org = self.0.org.lock().unwrap();
        if org.denied_folders.contains(&parent) {
            return denied(&parent, "resourcemanager.folders.list");
        }
        let items: Vec<Value> = org
            .folders
            .iter()
            .filter(|f| f.parent == parent)
            .map(|f| json!({"name": f.name, "parent": f.parent, "displayName": f.name, "state": "ACTIVE"}))
            .collect();
        let (items, next) = page(request, "pageSize", self.0.page_size, &items);
        ResponseTemplate::new(200).set_body_json(json!({"folders": items, "nextPageToken": next}))
    }
}

impl Respond for Projects {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        if let Some(r) = self.1.enter(request) {
            return r;
        }
        let parent = query(request, "parent");
        let org = self.0.org.lock().unwrap();
        if org.denied_folders.contains(&parent) {
            return denied(&parent, "resourcemanager.projects.list");
        }
        let items: Vec<Value> = org
            .projects
            .iter()
            .enumerate()
            .filter(|(_, p)| p.parent == parent)
            .map(|(n, p)| {
                json!({"name": format!("projects/{}", 1000 + n), "parent": p.parent, "projectId": p.id,
                       "displayName": p.id, "state": p.state})
            })
            .collect();
        let (items, next) = page(request, "pageSize", self.0.page_size, &items);
        ResponseTemplate::new(200).set_body_json(json!({"projects": items, "nextPageToken": next}))
    }
}

struct GetProject(Arc<Shared>, Arc<ApiState>);
struct GetFolder(Arc<Shared>, Arc<ApiState>);

impl Respond for GetProject {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        if let Some(r) = self.1.enter(request) {
            return r;
        }
        let name = request.url.path().trim_start_matches("/v3/").to_owned();
        let org = self.0.org.lock().unwrap();
        let id = name.trim_start_matches("projects/");
        match org.projects.iter().position(|p| p.id == id) {
            Some(n) => {
                let p = &org.projects[n];
                ResponseTemplate::new(200).set_body_json(json!({"name": format!("projects/{}", 1000 + n),
                    "parent": p.parent, "projectId": p.id, "displayName": p.id, "state": p.state}))
            }
            None => denied(&name, "resourcemanager.projects.get"),
        }
    }
}

impl Respond for GetFolder {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        if let Some(r) = self.1.enter(request) {
            return r;
        }
        let name = request.url.path().trim_start_matches("/v3/").to_owned();
        let org = self.0.org.lock().unwrap();
        match org.folders.iter().find(|f| f.name == name) {
            Some(f) if !org.denied_folders.contains(&f.name) => ResponseTemplate::new(200)
                .set_body_json(json!({"name": f.name, "parent": f.parent, "displayName": f.name, "state": "ACTIVE"})),
            _ => denied(&name, "resourcemanager.folders.get"),
        }
    }
}

impl ResourceManagerFake {
    /// Starts the fake over `shared`.
    pub async fn start(shared: Arc<Shared>) -> Self {
        let server = MockServer::start().await;
        let api = Arc::new(ApiState::default());
        Mock::given(method("GET"))
            .and(path("/v3/folders"))
            .respond_with(Folders(shared.clone(), api.clone()))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/v3/projects"))
            .respond_with(Projects(shared.clone(), api.clone()))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path_regex("^/v3/projects/[^/]+$"))
            .respond_with(GetProject(shared.clone(), api.clone()))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path_regex("^/v3/folders/[^/]+$"))
            .respond_with(GetFolder(shared, api.clone()))
            .mount(&server)
            .await;
        Self { server, api }
    }
}
