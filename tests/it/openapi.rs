//! The checked-in OpenAPI document is the one the code generates, and the service serves it.

use crate::support::TestApp;

#[test]
fn checked_in_openapi_document_matches_the_code() {
    let generated = serde_json::to_string_pretty(&data_backup::http::openapi()).unwrap() + "\n";
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json");
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(path, &generated).unwrap();
    }
    let checked_in = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "openapi/openapi.json is out of date: run `UPDATE_OPENAPI=1 cargo test openapi` (or `data-backup openapi > openapi/openapi.json`)"
    );
}

#[test]
fn openapi_document_describes_the_contract() {
    let doc = serde_json::to_value(data_backup::http::openapi()).unwrap();
    insta::assert_json_snapshot!(
        "openapi_paths",
        doc["paths"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(p, ops)| (p.clone(), ops.as_object().unwrap().keys().cloned().collect::<Vec<_>>()))
            .collect::<Vec<_>>()
    );
    assert_eq!(doc["openapi"], "3.1.0");
    let responses = &doc["paths"]["/export"]["post"]["responses"];
    for code in ["200", "400", "409", "413", "422", "503"] {
        assert!(responses.get(code).is_some(), "/export documents {code}");
    }
}

/// A parameter the document puts in the path is in that path's template; every other one is a
/// query parameter (a client built from the document sends it where the service reads it).
#[test]
fn every_parameter_is_where_the_route_reads_it() {
    let doc = serde_json::to_value(data_backup::http::openapi()).unwrap();
    let mut misplaced = Vec::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            for param in op["parameters"].as_array().into_iter().flatten() {
                let (name, place) = (param["name"].as_str().unwrap(), param["in"].as_str().unwrap());
                let in_template = path.contains(&format!("{{{name}}}"));
                if (place == "path") != in_template || !matches!(place, "path" | "query" | "header") {
                    misplaced.push(format!("{method} {path}: `{name}` in {place}"));
                }
            }
        }
    }
    assert!(misplaced.is_empty(), "parameters not where the route reads them: {misplaced:?}");
}

/// Every route behind caller verification is documented as requiring the bearer scheme and as
/// answering 401 the way the middleware does (with its `WWW-Authenticate` header), because it sits
/// in the protected router; the liveness probe, open to every caller, is neither.
#[test]
fn every_protected_route_documents_the_bearer_scheme_and_the_middlewares_401() {
    let doc = serde_json::to_value(data_backup::http::openapi()).unwrap();
    let mut wrong = Vec::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let open = path == "/healthz";
            let bearer = op["security"] == serde_json::json!([{"bearer": []}]);
            let challenge = op["responses"]["401"]["headers"].get("WWW-Authenticate").is_some();
            if bearer == open || challenge == open {
                wrong.push(format!("{method} {path}: bearer {bearer}, 401 with WWW-Authenticate {challenge}"));
            }
        }
    }
    assert!(wrong.is_empty(), "operations documented unlike the router guards them: {wrong:?}");
}

#[tokio::test]
async fn service_serves_its_openapi_document_and_healthz() {
    let app = TestApp::spawn(&crate::support::pg_source("pgsrc", "never_matches_*")).await;
    let doc: serde_json::Value =
        app.client.get(format!("{}/openapi.json", app.address)).send().await.unwrap().json().await.unwrap();
    let health = app.client.get(format!("{}/healthz", app.address)).send().await.unwrap();
    assert_eq!(doc, serde_json::to_value(data_backup::http::openapi()).unwrap());
    assert_eq!(health.status(), 200);
}
