//! Hardening of the HTTP service against what a self-hosted deployment meets without a front end:
//! slow and half-open clients, web pages that reach the loopback service through the operator's
//! browser (cross-site requests, DNS rebinding), HTML and error answers a browser may misread, and
//! names that would turn into chat mentions.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{TestApp, pg_source};

const NOTHING: &str = "never_matches_*";

fn port(app: &TestApp) -> u16 {
    app.address.rsplit(':').next().unwrap().parse().unwrap()
}

/// Whether the server closed `stream` (end-of-file or reset) within a generous bound.
async fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 256];
    matches!(tokio::time::timeout(Duration::from_secs(20), stream.read(&mut buf)).await, Ok(Ok(0) | Err(_)))
}

/// Opens `n` connections; every other one sends the start of a request whose headers never end.
async fn half_open(app: &TestApp, n: usize) -> Vec<TcpStream> {
    let mut streams = Vec::with_capacity(n);
    for i in 0..n {
        let mut stream = TcpStream::connect(("127.0.0.1", port(app))).await.expect("connects");
        if i % 2 == 0 {
            stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n").await.unwrap();
        }
        streams.push(stream);
    }
    streams
}

async fn healthz(client: &reqwest::Client, app: &TestApp) -> u16 {
    client.get(format!("{}/healthz", app.address)).send().await.map(|r| r.status().as_u16()).unwrap_or(0)
}

/// Request headers of a test case.
type Headers = &'static [(&'static str, &'static str)];

fn is_problem(headers: &reqwest::header::HeaderMap) -> bool {
    headers.get("content-type").is_some_and(|v| v == "application/problem+json")
}

#[tokio::test]
async fn half_open_connections_neither_stop_healthz_nor_outlive_the_header_timeout() {
    let app = TestApp::spawn(&format!(
        "{}[http]\nheader_read_timeout_secs = 1\nmax_connections = 400\n",
        pg_source("pgsrc", NOTHING)
    ))
    .await;
    let mut streams = half_open(&app, 300).await;

    let status = healthz(&app.client, &app).await;

    assert_eq!(status, 200, "/healthz answers next to 300 half-open connections");
    for (i, stream) in streams.iter_mut().enumerate() {
        assert!(closed_by_server(stream).await, "half-open connection {i} was closed after the header timeout");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_connection_beyond_the_cap_is_closed_and_the_open_ones_keep_working() {
    let app = TestApp::spawn(&format!(
        "{}[http]\nheader_read_timeout_secs = 60\nmax_connections = 3\n",
        pg_source("pgsrc", NOTHING)
    ))
    .await;
    // One client with a kept-alive connection, then two connections that never send a request.
    let client = reqwest::Client::new();
    assert_eq!(healthz(&client, &app).await, 200);
    let idle = half_open(&app, 2).await;

    let mut beyond = TcpStream::connect(("127.0.0.1", port(&app))).await.expect("the kernel accepts it");

    assert!(closed_by_server(&mut beyond).await, "the fourth connection is closed at once");
    assert_eq!(healthz(&client, &app).await, 200, "the client holding a connection is still served");
    drop(idle);
    let mut fresh = 0;
    for _ in 0..100 {
        fresh = healthz(&reqwest::Client::new(), &app).await;
        if fresh == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(fresh, 200, "closed connections give their slots back");
    app.stop().await;
}

#[tokio::test]
async fn without_auth_a_foreign_host_is_refused_on_every_route() {
    let app = TestApp::spawn(&pg_source("pgsrc", NOTHING)).await;
    let p = port(&app);

    for (path, host) in [("/healthz", "evil.example".to_owned()), ("/status", format!("evil.example:{p}"))] {
        let r = app.client.get(format!("{}{path}", app.address)).header("host", &host).send().await.unwrap();
        assert_eq!(r.status(), 421, "{path} with Host {host}");
        assert!(is_problem(r.headers()), "{path}: {:?}", r.headers());
    }
    for host in [format!("localhost:{p}"), format!("127.0.0.1:{p}"), format!("[::1]:{p}")] {
        let r = app.client.get(format!("{}/healthz", app.address)).header("host", &host).send().await.unwrap();
        assert_eq!(r.status(), 200, "Host {host}");
    }
    app.stop().await;
}

#[tokio::test]
async fn with_auth_the_host_is_not_checked() {
    let app =
        TestApp::spawn(&format!("{}[auth]\nbearer_token = \"s3cret-token\"\n", pg_source("pgsrc", NOTHING))).await;

    let r = app.client.get(format!("{}/healthz", app.address)).header("host", "data-backup-xyz.a.run.app").send().await;

    assert_eq!(r.unwrap().status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn without_auth_a_cross_site_prune_is_refused_and_deletes_nothing() {
    let app = TestApp::spawn(&pg_source("pgsrc", NOTHING)).await;
    crate::retention::january(&app).await;
    let before = app.store_files();
    let url = format!("{}/prune?apply=true&as_of=2025-01-25", app.address);

    // What a page can send without a CORS preflight: a form or text/plain body, its Origin, its site.
    let cases: [(&str, Headers, u16); 5] = [
        ("text/plain body", &[("content-type", "text/plain")], 415),
        ("form body", &[("content-type", "application/x-www-form-urlencoded")], 415),
        ("foreign Origin", &[("origin", "https://evil.example")], 403),
        ("opaque Origin", &[("origin", "null")], 403),
        ("cross-site fetch", &[("sec-fetch-site", "cross-site")], 403),
    ];
    for (case, headers, expected) in cases {
        let mut request = app.client.post(&url).body("{}");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let r = request.send().await.unwrap();
        assert_eq!(r.status(), expected, "{case}");
        assert!(is_problem(r.headers()), "{case}");
    }

    assert_eq!(app.store_files(), before, "nothing was pruned");
    app.stop().await;
}

#[tokio::test]
async fn without_auth_a_command_line_post_still_works() {
    let app = TestApp::spawn(&pg_source("pgsrc", NOTHING)).await;

    // curl -X POST …/schedule?dry_run=true: no content type, no body, no Origin.
    let plain = app.client.post(format!("{}/schedule?dry_run=true", app.address)).send().await.unwrap();
    let same_origin = app
        .client
        .post(format!("{}/prune", app.address))
        .header("origin", format!("http://localhost:{}", port(&app)))
        .header("sec-fetch-site", "same-origin")
        .json(&json!({"as_of": "2025-01-25"}))
        .send()
        .await
        .unwrap();

    assert_eq!(plain.status(), 200);
    assert_eq!(same_origin.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn status_page_forbids_scripts_framing_and_sniffing() {
    let app = TestApp::spawn(&pg_source("pgsrc", NOTHING)).await;

    let page = app.client.get(format!("{}/", app.address)).send().await.unwrap();
    let json = app.client.get(format!("{}/status", app.address)).send().await.unwrap();

    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(!csp.contains("script-src") && !csp.contains("unsafe-eval"), "{csp}");
    assert_eq!(page.headers()["x-content-type-options"], "nosniff");
    assert_eq!(page.headers()["referrer-policy"], "no-referrer");
    assert_eq!(json.headers()["x-content-type-options"], "nosniff");
    app.stop().await;
}

#[tokio::test]
async fn every_error_answer_is_a_problem_document() {
    let app = TestApp::spawn(&pg_source("pgsrc", NOTHING)).await;
    let url = |path: &str| format!("{}{path}", app.address);
    let big = json!({"apply": false, "as_of": "x".repeat(70 * 1024)}).to_string();

    let cases = [
        ("unknown route", app.client.get(url("/nope")), 404),
        ("method not allowed", app.client.get(url("/export")), 405),
        ("method not allowed on healthz", app.client.delete(url("/healthz")), 405),
        (
            "prune body over the limit",
            app.client.post(url("/prune")).header("content-type", "application/json").body(big.clone()),
            413,
        ),
        (
            "export body over the limit",
            app.client.post(url("/export")).header("content-type", "application/json").body(big),
            413,
        ),
        ("malformed JSON", app.client.post(url("/verify")).header("content-type", "application/json").body("{"), 400),
        ("JSON of the wrong shape", app.client.post(url("/verify")).json(&json!({"project": 1})), 400),
        ("unreadable query", app.client.get(url("/runs?days=many")), 400),
        ("unreadable path", app.client.get(url("/runs/%FF")), 400),
    ];
    for (case, request, expected) in cases {
        let r = request.send().await.unwrap();
        let (status, headers) = (r.status().as_u16(), r.headers().clone());
        let body: Value = r.json().await.unwrap_or(Value::Null);
        assert_eq!(status, expected, "{case}: {body}");
        assert!(is_problem(&headers), "{case}: {headers:?}");
        assert_eq!(body["status"], expected, "{case}: {body}");
        assert!(body["type"].as_str().is_some_and(|t| t.starts_with("urn:data-backup:problem:")), "{case}: {body}");
        if expected == 405 {
            assert!(headers.contains_key("allow"), "{case}: {headers:?}");
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn names_reach_the_webhook_text_without_mentions_or_links() {
    let hook = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).mount(&hook).await;
    let app = TestApp::spawn(&format!(
        "{}\n[notify]\nwebhook_url = \"{}/hook\"\nwebhook_attempts = 1\n",
        pg_source("pgsrc", "*"),
        hook.uri()
    ))
    .await;
    let name = "<!channel> & <@U123>";

    let (status, _, problem) = app
        .post("/export", &json!({"project": "pgsrc", "instance": "pg", "database": name, "run_date": "2026-11-20"}))
        .await;

    assert_eq!(status, 404, "a database that does not exist is a reported failure: {problem}");
    let reports = hook.received_requests().await.unwrap();
    assert_eq!(reports.len(), 1);
    let report: Value = serde_json::from_slice(&reports[0].body).unwrap();
    let text = report["text"].as_str().unwrap();
    assert!(text.contains("&lt;!channel&gt; &amp; &lt;@U123&gt;"), "{text}");
    assert!(!text.contains('<') && !text.contains('>'), "{text}");
    assert_eq!(report["database"], name, "the structured field keeps the name as it is");
    app.stop().await;
}
