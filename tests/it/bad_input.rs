//! Hostile and malformed requests: each is answered 400/413/422 with a problem document naming the
//! field, and nothing is written to the store.

use serde_json::{Value, json};

use crate::support::TestApp;

fn valid() -> Value {
    json!({"project": "pgsrc", "instance": "pg", "database": "app"})
}

fn with(field: &str, value: Value) -> Value {
    let mut body = valid();
    body[field] = value;
    body
}

#[tokio::test]
async fn every_bad_export_request_is_refused_with_a_problem_naming_the_field_and_writes_nothing() {
    let app = TestApp::spawn(&crate::support::pg_source("pgsrc", "never_matches_*")).await;
    // Names are data (`..`, `a/b`, `%`, newlines are names like any other): only what no object
    // key can hold is refused.
    let long = "x".repeat(201);
    let cases: Vec<(Value, u16, &str)> = vec![
        (with("database", json!("a\u{0}b")), 422, "database"),
        (with("database", json!(long)), 422, "database"),
        (with("project", json!(" ".repeat(70))), 422, "project"),
        (with("instance", json!("")), 422, "instance"),
        (with("run_date", json!("2026-13-01")), 422, "run_date"),
        (with("run_date", json!("tomorrow")), 422, "run_date"),
        (with("run_date", json!("2999-01-01")), 422, "run_date"),
        (with("run_date", json!("1999-12-31")), 422, "run_date"),
        (with("run_id", json!("a b")), 422, "run_id"),
        (with("source", json!("nope")), 422, "source"),
        (with("instance", json!("other")), 422, "instance"),
        (with("label", json!("x".repeat(129))), 422, "label"),
        (with("label", json!("")), 422, "label"),
        // Outside the source's `databases` globs (`never_matches_*`): refused, naming the rule.
        (with("database", json!("../etc")), 422, "never_matches_*"),
        (with("database", json!("app")), 422, "databases"),
        (with("database", json!(42)), 400, "database"),
        (with("ignore_scope", json!("yes")), 400, "ignore_scope"),
        (with("colour", json!("blue")), 400, "colour"),
        (
            {
                let mut b = valid();
                b.as_object_mut().unwrap().remove("database");
                b
            },
            400,
            "database",
        ),
    ];
    for (body, status, field) in cases {
        let (got, headers, problem) = app.post("/export", &body).await;
        assert_eq!(got, status, "{body} → {problem}");
        assert_eq!(headers["content-type"], "application/problem+json", "{body}");
        assert_eq!(problem["status"], status);
        let names_field = problem["field"] == field || problem["detail"].as_str().unwrap_or("").contains(field);
        assert!(names_field, "{body} → {problem} does not name {field}");
    }
    assert!(app.store_files().is_empty(), "{:?}", app.store_files());
}

#[tokio::test]
async fn a_run_date_older_than_every_retention_class_keeps_is_refused() {
    let app = TestApp::spawn(&format!(
        "{}[retention.daily]\nkeep_days = 3\n[retention.weekly]\nkeep_days = 3\n[retention.monthly]\nkeep_days = 3\n\
         [retention.quarterly]\nkeep_days = 3\n[retention.yearly]\nkeep_days = 30\n",
        crate::support::pg_source("pgsrc", "app")
    ))
    .await;
    let old = (chrono::Utc::now().date_naive() - chrono::Days::new(31)).to_string();

    let (status, _, problem) = app.post("/export", &with("run_date", json!(old))).await;

    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["field"], "run_date", "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("30 days"), "{problem}");
    assert!(app.store_files().is_empty(), "{:?}", app.store_files());
}

#[tokio::test]
async fn malformed_json_and_oversized_bodies_are_refused() {
    let app = TestApp::spawn(&crate::support::pg_source("pgsrc", "never_matches_*")).await;

    let (malformed, _, p1) = app.post_raw("/export", "{\"project\": ").await;
    let (not_object, _, _) = app.post_raw("/export", "[1, 2]").await;
    let (too_large, _, p2) = app.post_raw("/export", format!("{{\"project\": \"{}\"}}", "x".repeat(70 * 1024))).await;
    let no_type = app.client.post(format!("{}/export", app.address)).body(valid().to_string()).send().await.unwrap();

    assert_eq!(malformed, 400, "{p1}");
    assert!(p1["detail"].as_str().unwrap().contains("malformed JSON"));
    assert_eq!(not_object, 400);
    assert_eq!(too_large, 413, "{p2}");
    assert_eq!(p2["status"], 413);
    assert_eq!(no_type.status(), 400);
    let (bad_query, _, _) = app.post("/schedule?dry_run=maybe", &json!(null)).await;
    assert_eq!(bad_query, 400);
    let bad_time = app
        .client
        .post(format!("{}/schedule", app.address))
        .header("X-CloudScheduler-ScheduleTime", "yesterday")
        .send()
        .await
        .unwrap();
    assert_eq!(bad_time.status(), 422);
    assert!(app.store_files().is_empty(), "{:?}", app.store_files());
}

#[tokio::test]
async fn a_configured_bearer_token_is_required_everywhere_but_healthz() {
    let app = TestApp::spawn(&format!(
        "{}[auth]\nbearer_token = \"s3cret-token\"\n",
        crate::support::pg_source("pgsrc", "never_matches_*")
    ))
    .await;
    let url = |p: &str| format!("{}{p}", app.address);

    let health = app.client.get(url("/healthz")).send().await.unwrap();
    let none = app.client.post(url("/schedule?dry_run=true")).send().await.unwrap();
    let wrong = app.client.post(url("/schedule?dry_run=true")).bearer_auth("guess").send().await.unwrap();
    let right = app.client.post(url("/schedule?dry_run=true")).bearer_auth("s3cret-token").send().await.unwrap();

    assert_eq!(health.status(), 200);
    assert_eq!(none.status(), 401);
    assert!(none.headers().contains_key("www-authenticate"));
    assert_eq!(wrong.status(), 401);
    assert_eq!(right.status(), 200);
}
