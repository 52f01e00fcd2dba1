//! Only verified callers: bearer tokens, Google ID tokens (signed by test-only keys served from a
//! wiremock JWKS), the start-up refusal, the time and concurrency limits, and secrets kept out of
//! the logs. Rows 1–6 of the fault matrix.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use crate::support::fakes::jwks::{self, AUDIENCE, Jwks, auth_toml, claims, with};
use crate::support::{PgDb, TestApp, pg_source};

const NOTHING: &str = "never_matches_*";

/// POST `path` with `Authorization: <authorization>` (none when `None`); (status, headers, body).
async fn post_as(
    app: &TestApp,
    path: &str,
    authorization: Option<&str>,
    body: Option<&Value>,
) -> (u16, HeaderMap, Value) {
    let mut request = app.client.post(format!("{}{path}", app.address));
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.expect("body");
    (status, headers, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn challenge(headers: &HeaderMap) -> &str {
    headers.get("www-authenticate").and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// A problem document with `status`, and the challenge RFC 6750 asks for.
fn assert_rejected(
    case: &str,
    (status, headers, problem): &(u16, HeaderMap, Value),
    expected: u16,
    error: Option<&str>,
) {
    assert_eq!(*status, expected, "{case}: {problem}");
    assert_eq!(headers["content-type"], "application/problem+json", "{case}");
    assert_eq!(problem["status"], expected, "{case}");
    assert!(problem["detail"].as_str().is_some_and(|d| !d.is_empty()), "{case}: {problem}");
    let challenge = challenge(headers);
    assert!(challenge.starts_with("Bearer realm=\"data-backup\""), "{case}: {challenge:?}");
    match error {
        Some(code) => assert!(challenge.contains(&format!("error=\"{code}\"")), "{case}: {challenge:?}"),
        None => assert!(!challenge.contains("error="), "{case}: {challenge:?}"),
    }
}

#[tokio::test]
async fn without_valid_credentials_export_is_refused_401_and_nothing_is_exported() {
    let db = PgDb::create("auth_none");
    db.sql("CREATE TABLE t AS SELECT generate_series(1, 10) g");
    let app =
        TestApp::spawn(&format!("{}[auth]\nbearer_token = \"s3cret-token\"\n", pg_source("pgsrc", &db.name))).await;
    let body = json!({"project": "pgsrc", "instance": "pg", "database": db.name});

    let cases = [
        ("no Authorization", None, None),
        ("wrong token", Some(bearer("guess")), Some("invalid_token")),
        ("empty token", Some("Bearer ".to_owned()), Some("invalid_token")),
        ("wrong scheme", Some("Basic czNjcmV0LXRva2Vu".to_owned()), None),
        ("token without scheme", Some("s3cret-token".to_owned()), None),
        ("token with a suffix", Some(bearer("s3cret-token2")), Some("invalid_token")),
        ("a JWT instead", Some(bearer(&jwks::sign(&jwks::key(1), &claims("ops@example.com")))), Some("invalid_token")),
    ];
    for (case, authorization, error) in cases {
        let answer = post_as(&app, "/export", authorization.as_deref(), Some(&body)).await;
        assert_rejected(case, &answer, 401, error);
    }
    app.wait_idle().await;
    assert!(app.store_files().is_empty(), "{:?}", app.store_files());

    let (right, _, manifest) = post_as(&app, "/export", Some(&bearer("s3cret-token")), Some(&body)).await;
    let (lowercase_scheme, _, _) = post_as(&app, "/schedule?dry_run=true", Some("bearer s3cret-token"), None).await;
    assert_eq!(right, 200, "{manifest}");
    assert_eq!(lowercase_scheme, 200);
}

#[tokio::test]
async fn every_route_but_healthz_needs_a_caller_once_authentication_is_configured() {
    let app =
        TestApp::spawn(&format!("{}[auth]\nbearer_token = \"s3cret-token\"\n", pg_source("pgsrc", NOTHING))).await;
    let doc = serde_json::to_value(data_backup::http::openapi()).unwrap();
    let health = app.client.get(format!("{}/healthz", app.address)).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if path == "/healthz" {
                continue;
            }
            let concrete = path.replace(['{', '}'], "");
            let url = format!("{}{concrete}", app.address);
            let m = reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap();
            let answer = app.client.request(m, &url).send().await.unwrap();
            assert_eq!(answer.status(), 401, "{method} {path}");
            checked += 1;
        }
    }
    let openapi = app.client.get(format!("{}/openapi.json", app.address)).send().await.unwrap();
    assert_eq!(openapi.status(), 401);
    assert!(checked >= 4, "{checked}");
}

/// A service verifying Google ID tokens against `jwks`, with `extra` `[auth]` lines.
async fn oidc_app(jwks: &Jwks, extra: &str) -> TestApp {
    TestApp::spawn(&format!("{}{}", pg_source("pgsrc", NOTHING), auth_toml(&jwks.url(), extra))).await
}

#[tokio::test]
async fn a_valid_google_id_token_is_accepted_and_every_invalid_one_is_refused_401() {
    let (key1, key2) = (jwks::key(1), jwks::key(2));
    let jwks = Jwks::serving(&[&key1]).await;
    let app = oidc_app(&jwks, "").await;
    let now = jwks::now();
    let ops = claims("ops@example.com");
    let valid = |changes: Value| jwks::sign(&key1, &with(ops.clone(), &changes));

    let accepted = [
        ("valid", valid(json!({}))),
        ("issuer without scheme", valid(json!({"iss": "accounts.google.com"}))),
        ("expired within the 10 s skew", valid(json!({"iat": now - 3600, "exp": now - 5}))),
        ("issued slightly in the future, within the skew", valid(json!({"iat": now + 5}))),
        ("email in another case", valid(json!({"email": "Ops@Example.com"}))),
    ];
    for (case, token) in accepted {
        let (status, _, body) = post_as(&app, "/schedule?dry_run=true", Some(&bearer(&token)), None).await;
        assert_eq!(status, 200, "{case}: {body}");
    }

    let refused = [
        ("expired beyond the skew", valid(json!({"iat": now - 3700, "exp": now - 60}))),
        ("issued in the future", valid(json!({"iat": now + 120, "exp": now + 3720}))),
        ("not valid yet", valid(json!({"nbf": now + 120}))),
        ("wrong audience", valid(json!({"aud": "https://other-service.test"}))),
        ("audience list", valid(json!({"aud": [AUDIENCE, "https://other-service.test"]}))),
        ("wrong issuer", valid(json!({"iss": "https://evil.example"}))),
        ("no issuer", valid(json!({"iss": null}))),
        ("no expiry", valid(json!({"exp": null}))),
        ("no iat", valid(json!({"iat": null}))),
        ("alg none", jwks::unsigned(&key1.kid, &ops)),
        ("HS256 keyed with the public key", jwks::hs256_with_public_key(&key1, &ops)),
        ("signed by another key under key 1's kid", jwks::sign_as(&key2, &key1.kid, &ops)),
        ("no kid", jwks::sign_without_kid(&key1, &ops)),
        ("tampered claims", {
            let token = valid(json!({}));
            let forged = jwks::sign(&key1, &with(ops.clone(), &json!({"email": "admin@example.com"})));
            let parts: Vec<&str> = token.split('.').collect();
            let forged_parts: Vec<&str> = forged.split('.').collect();
            format!("{}.{}.{}", parts[0], forged_parts[1], parts[2])
        }),
        ("malformed", "abc.def.ghi".to_owned()),
        ("garbage", "%%%".to_owned()),
    ];
    for (case, token) in refused {
        let answer = post_as(&app, "/schedule?dry_run=true", Some(&bearer(&token)), None).await;
        assert_rejected(case, &answer, 401, Some("invalid_token"));
        assert!(!answer.2.to_string().contains(&token), "{case}: the answer repeats the token");
    }
    assert_eq!(jwks.fetches().await, 1, "the keys are cached by kid");
}

#[tokio::test]
async fn verified_identities_that_may_not_call_a_route_are_refused_403() {
    let key = jwks::key(1);
    let jwks = Jwks::serving(&[&key]).await;
    let app = oidc_app(
        &jwks,
        "[auth.route_emails]\nschedule = [\"scheduler@ops.iam.gserviceaccount.com\"]\nexport = [\"tasks@ops.iam.gserviceaccount.com\"]\n",
    )
    .await;
    let token = |email: &str, changes: Value| bearer(&jwks::sign(&key, &with(claims(email), &changes)));
    let export_body = json!({"project": "pgsrc", "instance": "pg", "database": "not_backed_up_here"});

    let forbidden = [
        ("stranger on /schedule", "/schedule?dry_run=true", token("stranger@example.com", json!({})), None),
        (
            "unverified email",
            "/schedule?dry_run=true",
            token("ops@example.com", json!({"email_verified": false})),
            None,
        ),
        (
            "email_verified missing",
            "/schedule?dry_run=true",
            token("ops@example.com", json!({"email_verified": null})),
            None,
        ),
        ("no email", "/schedule?dry_run=true", token("ops@example.com", json!({"email": null})), None),
        (
            "tasks account on /schedule",
            "/schedule?dry_run=true",
            token("tasks@ops.iam.gserviceaccount.com", json!({})),
            None,
        ),
        (
            "scheduler account on /export",
            "/export",
            token("scheduler@ops.iam.gserviceaccount.com", json!({})),
            Some(&export_body),
        ),
        ("scheduler account on /prune", "/prune", token("scheduler@ops.iam.gserviceaccount.com", json!({})), None),
    ];
    for (case, path, authorization, body) in forbidden {
        let answer = post_as(&app, path, Some(&authorization), body).await;
        assert_rejected(case, &answer, 403, Some("insufficient_scope"));
    }

    assert!(app.store_files().is_empty(), "refused callers changed nothing: {:?}", app.store_files());

    let (scheduler, _, _) =
        post_as(&app, "/schedule?dry_run=true", Some(&token("scheduler@ops.iam.gserviceaccount.com", json!({}))), None)
            .await;
    let (operator, _, _) =
        post_as(&app, "/schedule?dry_run=true", Some(&token("ops@example.com", json!({}))), None).await;
    let (tasks, _, reached) =
        post_as(&app, "/export", Some(&token("tasks@ops.iam.gserviceaccount.com", json!({}))), Some(&export_body))
            .await;
    let (string_verified, _, _) = post_as(
        &app,
        "/schedule?dry_run=true",
        Some(&token("ops@example.com", json!({"email_verified": "true"}))),
        None,
    )
    .await;
    assert_eq!(scheduler, 200);
    assert_eq!(operator, 200);
    assert!(![401, 403].contains(&tasks), "the tasks account reaches /export: {tasks} {reached}");
    assert_eq!(string_verified, 200);
}

#[tokio::test]
async fn an_unknown_kid_refetches_the_keys_at_most_once_a_minute() {
    let (key1, key2) = (jwks::key(1), jwks::key(2));
    let jwks = Jwks::serving(&[&key1, &key2]).await;
    let app = oidc_app(&jwks, "").await;
    let ops = claims("ops@example.com");

    let (first, _, _) = post_as(&app, "/schedule?dry_run=true", Some(&bearer(&jwks::sign(&key1, &ops))), None).await;
    for _ in 0..5 {
        let unknown =
            post_as(&app, "/schedule?dry_run=true", Some(&bearer(&jwks::sign_as(&key1, "gone-key", &ops))), None).await;
        assert_rejected("unknown kid", &unknown, 401, Some("invalid_token"));
    }
    let (second_key, _, _) =
        post_as(&app, "/schedule?dry_run=true", Some(&bearer(&jwks::sign(&key2, &ops))), None).await;

    assert_eq!(first, 200);
    assert_eq!(second_key, 200);
    assert_eq!(jwks.fetches().await, 1, "unknown kids within the minute did not refetch");
}

#[tokio::test]
async fn a_rotated_key_is_fetched_on_its_first_token_and_a_kid_unknown_after_refetch_is_refused() {
    let (key1, key2) = (jwks::key(1), jwks::key(2));
    let jwks = Jwks::serving(&[&key1]).await;
    let app = oidc_app(&jwks, "jwks_min_refresh_secs = 0\n").await;
    let ops = claims("ops@example.com");

    let (before, _, _) = post_as(&app, "/schedule?dry_run=true", Some(&bearer(&jwks::sign(&key1, &ops))), None).await;
    jwks.serve(&[&key2]).await;
    let (rotated, _, body) =
        post_as(&app, "/schedule?dry_run=true", Some(&bearer(&jwks::sign(&key2, &ops))), None).await;
    let fetched_for_rotation = jwks.fetches().await;
    let unknown =
        post_as(&app, "/schedule?dry_run=true", Some(&bearer(&jwks::sign_as(&key2, "never-published", &ops))), None)
            .await;

    assert_eq!(before, 200);
    assert_eq!(rotated, 200, "{body}");
    assert_eq!(fetched_for_rotation, 1);
    assert_rejected("unknown kid after refetch", &unknown, 401, Some("invalid_token"));
    assert_eq!(jwks.fetches().await, 2, "the unknown kid was looked up once more");
}

#[tokio::test]
async fn an_unreachable_jwks_answers_503_with_retry_after_not_401_and_recovers() {
    let key = jwks::key(1);
    let jwks = Jwks::serving(&[&key]).await;
    jwks.fail().await;
    let app = oidc_app(&jwks, "jwks_min_refresh_secs = 0\n").await;
    let token = bearer(&jwks::sign(&key, &claims("ops@example.com")));

    let (down, headers, problem) = post_as(&app, "/schedule?dry_run=true", Some(&token), None).await;
    assert_eq!(down, 503, "{problem}");
    assert_eq!(headers["content-type"], "application/problem+json");
    assert!(headers.get("retry-after").is_some_and(|v| v.to_str().unwrap().parse::<u64>().unwrap() >= 1));
    assert!(!headers.contains_key("www-authenticate"));

    jwks.serve(&[&key]).await;
    let (up, _, _) = post_as(&app, "/schedule?dry_run=true", Some(&token), None).await;
    assert_eq!(up, 200, "the next attempt succeeds once the keys are reachable");
}

#[tokio::test]
async fn a_jwks_address_nobody_listens_on_answers_503() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let key = jwks::key(1);
    let app = TestApp::spawn(&format!(
        "{}{}",
        pg_source("pgsrc", NOTHING),
        auth_toml(&format!("http://{closed}/oauth2/v3/certs"), "")
    ))
    .await;
    let (status, headers, problem) =
        post_as(&app, "/schedule?dry_run=true", Some(&bearer(&jwks::sign(&key, &claims("ops@example.com")))), None)
            .await;
    assert_eq!(status, 503, "{problem}");
    assert!(headers.contains_key("retry-after"));
}

#[tokio::test]
async fn bearer_tokens_and_google_id_tokens_work_together() {
    let key = jwks::key(1);
    let jwks = Jwks::serving(&[&key]).await;
    let app = oidc_app(&jwks, "bearer_token = \"s3cret-token\"\n").await;
    let id_token = jwks::sign(&key, &claims("ops@example.com"));
    let stranger = jwks::sign(&key, &claims("stranger@example.com"));

    let (by_bearer, _, _) = post_as(&app, "/schedule?dry_run=true", Some(&bearer("s3cret-token")), None).await;
    let (by_id_token, _, _) = post_as(&app, "/schedule?dry_run=true", Some(&bearer(&id_token)), None).await;
    let wrong_bearer = post_as(&app, "/schedule?dry_run=true", Some(&bearer("guess")), None).await;
    let forbidden = post_as(&app, "/schedule?dry_run=true", Some(&bearer(&stranger)), None).await;
    let none = post_as(&app, "/schedule?dry_run=true", None, None).await;

    assert_eq!(by_bearer, 200);
    assert_eq!(by_id_token, 200);
    assert_rejected("wrong bearer", &wrong_bearer, 401, Some("invalid_token"));
    assert_rejected("stranger", &forbidden, 403, Some("insufficient_scope"));
    assert_rejected("none", &none, 401, None);
}

#[test]
fn auth_settings_errors_name_the_key() {
    use data_backup::settings::Settings;
    let cases = [
        ("[auth]\noidc_audience = \"https://svc\"\n", "`auth.oidc_allowed_emails`"),
        ("[auth]\noidc_allowed_emails = [\"ops@example.com\"]\n", "`auth.oidc_audience`"),
        (
            "[auth]\noidc_audience = \"https://svc\"\noidc_allowed_emails = [\"not-an-email\"]\n",
            "`auth.oidc_allowed_emails[0]`",
        ),
        (
            "[auth]\noidc_audience = \"https://svc\"\n[auth.route_emails]\nexport = [\"nope\"]\n",
            "`auth.route_emails.export[0]`",
        ),
        (
            "[auth]\noidc_audience = \"https://svc\"\n[auth.route_emails]\n\"/export\" = [\"a@b.c\"]\n",
            "`auth.route_emails./export`",
        ),
        ("[auth]\njwks_url = \"ftp://keys\"\n", "`auth.jwks_url`"),
        ("[auth]\nbearer_token_file = \"/nonexistent/token\"\n", "`auth.bearer_token_file`"),
        ("[http]\nmax_concurrent_requests = 0\n", "`http.max_concurrent_requests`"),
        ("[http]\nrequest_timeout_secs = 0\n", "`http.request_timeout_secs`"),
        ("bind = \"0.0.0.0:8080\"\n", "auth.oidc_audience"),
        ("bind = \"0.0.0.0:8080\"\n[auth]\nbearer_token = \"\"\n", "no authentication is configured"),
    ];
    for (toml, expected) in cases {
        let err = Settings::from_toml(toml).expect_err(toml).to_string();
        assert!(err.contains(expected), "{toml:?} gave {err:?}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    let google_only = "bind = \"0.0.0.0:8080\"\n[auth]\noidc_audience = \"https://svc\"\n[auth.route_emails]\nexport = [\"tasks@p.iam.gserviceaccount.com\"]\n";
    assert!(Settings::from_toml(google_only).is_ok(), "ID tokens alone are enough beyond loopback");
    assert!(Settings::from_toml("bind = \"0.0.0.0:8080\"\n[auth]\nbearer_token = \"t\"\n").is_ok());
}

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_data-backup"));
    c.env_remove("DATA_BACKUP_CONFIG")
        .env_remove("DATA_BACKUP_AUTH__BEARER_TOKEN")
        .env("RUST_LOG", "info")
        .env("DATA_BACKUP_LOG_FORMAT", "json");
    c
}

#[test]
fn serve_refuses_to_listen_beyond_loopback_without_authentication_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = bin()
        .env("DATA_BACKUP_BIND", "0.0.0.0:0")
        .env("DATA_BACKUP_STORE__URL", format!("file://{}", dir.path().display()))
        .arg("serve")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    for hint in
        ["`bind`", "auth.bearer_token_file", "DATA_BACKUP_AUTH__BEARER_TOKEN", "auth.oidc_audience", "127.0.0.1"]
    {
        assert!(err.contains(hint), "{hint} missing from {err}");
    }
}

/// `data-backup serve` on a free loopback port with `config`; its port, once it listens.
fn serve(config: &str, dir: &std::path::Path) -> (Child, u16, std::sync::mpsc::Receiver<String>) {
    let cfg = dir.join("serve.toml");
    std::fs::write(&cfg, config).unwrap();
    let mut child =
        bin().arg("--config").arg(&cfg).arg("serve").stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now())) {
        if let Some(port) = line.split("127.0.0.1:").nth(1).filter(|_| line.contains("listening")) {
            let port = port.chars().take_while(char::is_ascii_digit).collect::<String>().parse().unwrap();
            return (child, port, rx);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("serve did not listen");
}

#[tokio::test]
async fn rejections_are_logged_with_the_identity_and_reason_and_no_secret_reaches_the_logs() {
    let key = jwks::key(1);
    let jwks = Jwks::serving(&[&key]).await;
    let dir = tempfile::tempdir().unwrap();
    // The source's password is in its URL; the server at that address refuses connections, so the
    // export fails and logs its failure.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let config = format!(
        "bind = \"127.0.0.1:0\"\n[store]\nurl = \"file://{}\"\n[schedule]\ndaily_at = \"\"\n\
         [[sources]]\nname = \"pgsrc\"\nkind = \"postgres\"\nurl = \"postgres://backup:hunter2-in-url@{closed}/\"\ninstance = \"pg\"\n\
         [auth]\nbearer_token = \"s3cret-bearer-token\"\noidc_audience = \"{AUDIENCE}\"\noidc_allowed_emails = [\"ops@example.com\"]\njwks_url = \"{}\"\n",
        dir.path().join("store").display(),
        jwks.url()
    );
    let (mut child, port, logs) = serve(&config, dir.path());
    let client = reqwest::Client::new();
    let url = |p: &str| format!("http://127.0.0.1:{port}{p}");
    let stranger = jwks::sign(&key, &claims("stranger@example.com"));
    let wrong_bearer = "wrong-bearer-token-value";

    let forbidden = client.post(url("/schedule?dry_run=true")).bearer_auth(&stranger).send().await.unwrap();
    let invalid = client.post(url("/schedule?dry_run=true")).bearer_auth(wrong_bearer).send().await.unwrap();
    let export = client
        .post(url("/export"))
        .bearer_auth("s3cret-bearer-token")
        .json(&json!({"project": "pgsrc", "instance": "pg", "database": "app"}))
        .send()
        .await
        .unwrap();
    let export_status = export.status().as_u16();
    let export_body = export.text().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    child.kill().unwrap();
    child.wait().unwrap();
    let logged: Vec<String> = logs.try_iter().collect();
    let logged = logged.join("\n");

    assert_eq!(forbidden.status(), 403);
    assert_eq!(invalid.status(), 401);
    assert!(export_status >= 400, "{export_status} {export_body}");
    assert!(logged.contains("backup:***@"), "the failing export logged its (redacted) URL: {logged}");
    assert!(logged.contains("caller rejected"), "{logged}");
    assert!(logged.contains("stranger@example.com"), "the rejected identity is logged: {logged}");
    assert!(logged.contains("may not call /schedule"), "{logged}");
    for secret in ["hunter2-in-url", "s3cret-bearer-token", wrong_bearer, stranger.as_str()] {
        assert!(!logged.contains(secret), "`{secret}` reached the logs:\n{logged}");
        assert!(!export_body.contains(secret), "`{secret}` reached an answer: {export_body}");
    }
}

#[tokio::test]
async fn requests_beyond_the_concurrency_limit_and_past_their_time_limit_get_503_with_retry_after() {
    // A "database server" that accepts connections and never answers: discovery hangs.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let app = TestApp::spawn(&format!(
        "[[sources]]\nname = \"pgsrc\"\nkind = \"postgres\"\nurl = \"postgres://postgres@{addr}/\"\ninstance = \"pg\"\n\
         [auth]\nbearer_token = \"s3cret-token\"\n[http]\nmax_concurrent_requests = 1\nlong_request_timeout_secs = 3\n"
    ))
    .await;
    let slow = {
        let client = app.client.clone();
        let url = format!("{}/schedule?dry_run=true", app.address);
        tokio::spawn(async move { client.post(url).bearer_auth("s3cret-token").send().await.unwrap() })
    };
    let mut shed = None;
    for _ in 0..100 {
        let answer =
            app.client.get(format!("{}/openapi.json", app.address)).bearer_auth("s3cret-token").send().await.unwrap();
        if answer.status() == 503 {
            shed = Some(answer);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let shed = shed.expect("a second request is shed while the first holds the only slot");
    assert!(shed.headers().contains_key("retry-after"));
    assert_eq!(shed.headers()["content-type"], "application/problem+json");
    let health = app.client.get(format!("{}/healthz", app.address)).send().await.unwrap();
    assert_eq!(health.status(), 200, "/healthz is not counted");
    let unauthenticated = app.client.get(format!("{}/openapi.json", app.address)).send().await.unwrap();
    assert_eq!(unauthenticated.status(), 401, "callers are checked before they take a slot");

    let cut = slow.await.unwrap();
    assert_eq!(cut.status(), 503);
    assert!(cut.headers().contains_key("retry-after"));
    let problem: Value = cut.json().await.unwrap();
    assert!(problem["detail"].as_str().unwrap().contains("longer than 3 s"), "{problem}");
    let after =
        app.client.get(format!("{}/openapi.json", app.address)).bearer_auth("s3cret-token").send().await.unwrap();
    assert_eq!(after.status(), 200, "the slot is free again");
    drop(silent);
}

#[test]
fn call_sends_the_bearer_token_prints_the_answer_and_fails_on_non_2xx() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let app = runtime
        .block_on(TestApp::spawn(&format!("{}[auth]\nbearer_token = \"s3cret-token\"\n", pg_source("pgsrc", NOTHING))));
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret-token\n").unwrap();
    let wrong_file = dir.path().join("wrong");
    std::fs::write(&wrong_file, "guess\n").unwrap();
    let run = |args: &[&str], env: Option<(&str, &str)>| {
        let mut c = bin();
        c.env("RUST_LOG", "warn").args(args);
        if let Some((k, v)) = env {
            c.env(k, v);
        }
        c.output().unwrap()
    };

    let plan = run(
        &["call", "schedule", "--dry-run", "--url", &app.address, "--token-file", token_file.to_str().unwrap()],
        None,
    );
    let by_env = run(
        &["call", "--url", &app.address, "schedule", "--dry-run"],
        Some(("DATA_BACKUP_AUTH__BEARER_TOKEN", "s3cret-token")),
    );
    let refused = run(
        &["call", "schedule", "--dry-run", "--url", &app.address, "--token-file", wrong_file.to_str().unwrap()],
        None,
    );
    let invalid = run(
        &["call", "export", "--database", "pgsrc/pg/not_there_db", "--date", "2999-01-01", "--url", &app.address],
        Some(("DATA_BACKUP_AUTH__BEARER_TOKEN", "s3cret-token")),
    );

    assert!(plan.status.success(), "{}", String::from_utf8_lossy(&plan.stderr));
    let summary: Value = serde_json::from_slice(&plan.stdout).unwrap();
    assert!(summary["run_id"].is_string(), "{summary}");
    assert!(by_env.status.success(), "{}", String::from_utf8_lossy(&by_env.stderr));
    assert!(!refused.status.success());
    let problem: Value = serde_json::from_slice(&refused.stdout).unwrap();
    assert_eq!(problem["status"], 401);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("401"));
    assert!(!invalid.status.success());
    let problem: Value = serde_json::from_slice(&invalid.stdout).unwrap();
    assert_eq!(problem["field"], "run_date", "{problem}");
    for out in [&plan, &by_env, &refused, &invalid] {
        let printed = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(!printed.contains("s3cret-token"), "the token was printed: {printed}");
    }
    runtime.block_on(app.stop());
}

#[test]
fn call_without_url_says_so() {
    let out = bin().args(["call", "schedule"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--url"));
}

/// A metadata server (Cloud Run, GCE) that mints Google ID tokens: `GET
/// /computeMetadata/v1/instance/service-accounts/default/identity?audience=A&format=full` with
/// `Metadata-Flavor: Google` answers a token for `A`, signed by `key`, for `email`.
struct MintIdentity {
    key: jwks::TestKey,
    email: String,
}

impl wiremock::Respond for MintIdentity {
    fn respond(&self, request: &wiremock::Request) -> wiremock::ResponseTemplate {
        if request.headers.get("metadata-flavor").and_then(|v| v.to_str().ok()) != Some("Google") {
            return wiremock::ResponseTemplate::new(403).set_body_string("Missing Metadata-Flavor:Google header.");
        }
        let audience =
            request.url.query_pairs().find(|(k, _)| k == "audience").map(|(_, v)| v.into_owned()).unwrap_or_default();
        let token = jwks::sign(&self.key, &with(claims(&self.email), &json!({"aud": audience})));
        wiremock::ResponseTemplate::new(200).insert_header("metadata-flavor", "Google").set_body_string(token)
    }
}

#[test]
fn call_mints_a_google_id_token_for_the_audience_from_the_metadata_server() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let key = jwks::key(1);
    let (jwks, metadata, app) = runtime.block_on(async {
        let jwks = Jwks::serving(&[&key]).await;
        let metadata = wiremock::MockServer::start().await;
        wiremock::Mock::given(wiremock::matchers::method("GET"))
            .and(wiremock::matchers::path("/computeMetadata/v1/instance/service-accounts/default/identity"))
            .respond_with(MintIdentity { key: jwks::key(1), email: "ops@example.com".into() })
            .mount(&metadata)
            .await;
        let app = TestApp::spawn(&format!("{}{}", pg_source("pgsrc", NOTHING), auth_toml(&jwks.url(), ""))).await;
        (jwks, metadata, app)
    });
    let home = tempfile::tempdir().unwrap();
    let call = |audience: &str| {
        bin()
            .env("RUST_LOG", "warn")
            // No ADC file anywhere: the library falls back to the metadata server, here the fake.
            .env("HOME", home.path())
            .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
            .env_remove("DATA_BACKUP_AUTH__BEARER_TOKEN")
            .env("GCE_METADATA_HOST", metadata.address().to_string())
            .args(["call", "schedule", "--dry-run", "--url", &app.address, "--audience", audience])
            .output()
            .unwrap()
    };

    let ok = call(AUDIENCE);
    let wrong_audience = call("https://some-other-service.test");

    assert!(ok.status.success(), "{}{}", String::from_utf8_lossy(&ok.stdout), String::from_utf8_lossy(&ok.stderr));
    let summary: Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert!(summary["run_id"].is_string(), "{summary}");
    let minted = runtime.block_on(metadata.received_requests()).unwrap();
    assert!(
        minted.iter().any(|r| r.url.query().unwrap_or_default().contains("format=full")),
        "the token carries the email"
    );
    assert!(!wrong_audience.status.success(), "a token for another audience is refused by the service");
    let problem: Value = serde_json::from_slice(&wrong_audience.stdout).unwrap();
    assert_eq!(problem["status"], 401);
    assert!(runtime.block_on(jwks.fetches()) >= 1);
    runtime.block_on(app.stop());
}
