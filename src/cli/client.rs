//! `data-backup call`: the CLI as a client of a running service, so operators need no hand-made
//! `curl` calls. It POSTs `/schedule` or `/export` to `--url`, prints the JSON answer, and exits
//! non-zero on any answer but 2xx.
//!
//! Credentials, first found wins: `--token-file` (a bearer token, or an ID token someone minted);
//! `DATA_BACKUP_AUTH__BEARER_TOKEN`; else a Google ID token for the audience (`--audience`, default
//! the URL's origin, which is what a Cloud Run service expects) minted from the local Application
//! Default Credentials through google-cloud-auth: a service account key, an impersonated service
//! account (`gcloud auth application-default login --impersonate-service-account SA`) or the
//! metadata server. Plain user credentials cannot mint ID tokens for an audience. Tokens are never
//! printed.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use url::Url;

use crate::model::DatabasePath;

/// `data-backup call`.
#[derive(Debug, clap::Args)]
pub struct CallArgs {
    /// The service's base URL (`https://data-backup-xyz.a.run.app`, `http://127.0.0.1:8080`).
    #[arg(long, global = true)]
    pub url: Option<Url>,
    /// File holding the token to send (its first line). Default: `DATA_BACKUP_AUTH__BEARER_TOKEN`,
    /// else a Google ID token minted from the local credentials.
    #[arg(long, global = true)]
    pub token_file: Option<PathBuf>,
    /// Audience of the minted Google ID token (default: the URL's origin).
    #[arg(long, global = true)]
    pub audience: Option<String>,
    /// What to ask.
    #[command(subcommand)]
    pub what: CallCommand,
}

/// The calls.
#[derive(Debug, clap::Subcommand)]
pub enum CallCommand {
    /// `POST /schedule`: discover every database and enqueue its export.
    Schedule {
        /// Answer the plan; enqueue nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// `POST /export`: export one database now.
    Export {
        /// PROJECT/INSTANCE/DATABASE (self-hosted: SOURCE/INSTANCE/DATABASE); the service takes a
        /// Cloud SQL database's engine from its instance.
        #[arg(long)]
        database: DatabasePath,
        /// Day the backup belongs to (default today, UTC).
        #[arg(long)]
        date: Option<String>,
        /// Source, when the service has several.
        #[arg(long)]
        source: Option<String>,
        /// Store it as the named backup LABEL (`labels/LABEL/…`), which retention never removes.
        #[arg(long)]
        label: Option<String>,
        /// Export even when the database lies outside what the service is configured to back up.
        #[arg(long)]
        ignore_scope: bool,
    },
}

/// Why a call could not be made (an answer that is not 2xx is not an error: it is printed).
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// No `--url`.
    #[error("`--url` is required (the service's base URL)")]
    NoUrl,
    /// The token file cannot be read.
    #[error("--token-file: {0}")]
    TokenFile(String),
    /// No Google ID token could be minted.
    #[error(
        "cannot mint a Google ID token for `{audience}`: {reason}. Use a service account key \
         (GOOGLE_APPLICATION_CREDENTIALS), `gcloud auth application-default login \
         --impersonate-service-account SA`, or pass a token with --token-file"
    )]
    Mint {
        /// The audience.
        audience: String,
        /// Why.
        reason: String,
    },
    /// The request could not be sent or its answer not read.
    #[error("{0}")]
    Http(String),
}

/// The token to send.
async fn credentials(args: &CallArgs, url: &Url) -> Result<SecretString, CallError> {
    if let Some(path) = &args.token_file {
        return crate::settings::read_secret_file(path).map_err(CallError::TokenFile);
    }
    if let Ok(token) = std::env::var("DATA_BACKUP_AUTH__BEARER_TOKEN")
        && !token.trim().is_empty()
    {
        return Ok(SecretString::from(token.trim().to_owned()));
    }
    let audience = args.audience.clone().unwrap_or_else(|| url.origin().ascii_serialization());
    mint_id_token(&audience).await
}

/// A Google ID token for `audience` from the Application Default Credentials: a service account
/// key, impersonation, or the metadata server (Cloud Run, GCE; `GCE_METADATA_HOST` overrides its
/// address, which is how the test suite serves it from a fake).
async fn mint_id_token(audience: &str) -> Result<SecretString, CallError> {
    let mint = |reason: String| CallError::Mint { audience: audience.to_owned(), reason };
    let credentials = google_cloud_auth::credentials::idtoken::Builder::new(audience)
        .with_include_email()
        .build()
        .map_err(|e| mint(e.to_string()))?;
    credentials.id_token().await.map(SecretString::from).map_err(|e| mint(e.to_string()))
}

/// Runs one call; prints the answer on stdout.
pub async fn run(args: &CallArgs) -> Result<ExitCode, CallError> {
    let url = args.url.clone().ok_or(CallError::NoUrl)?;
    let base = url.as_str().trim_end_matches('/').to_owned();
    let (endpoint, body) = match &args.what {
        CallCommand::Schedule { dry_run } => {
            (format!("{base}/schedule{}", if *dry_run { "?dry_run=true" } else { "" }), None)
        }
        CallCommand::Export { database, date, source, label, ignore_scope } => {
            let mut body = json!({
                "project": database.project.as_str(),
                "instance": database.instance.as_str(),
                "database": database.database.as_str(),
            });
            if let Some(date) = date {
                body["run_date"] = json!(date);
            }
            if let Some(source) = source {
                body["source"] = json!(source);
            }
            if let Some(label) = label {
                body["label"] = json!(label);
            }
            if *ignore_scope {
                body["ignore_scope"] = json!(true);
            }
            (format!("{base}/export"), Some(body))
        }
    };
    let token = credentials(args, &url).await?;
    let loopback = url.host_str().is_some_and(|h| {
        h == "localhost" || h.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback()) || h == "[::1]"
    });
    if url.scheme() == "http" && !loopback {
        eprintln!("warning: sending credentials over plain http to {}", url.host_str().unwrap_or(""));
    }
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| CallError::Http(e.to_string()))?;
    let mut request = client.post(&endpoint).bearer_auth(token.expose_secret());
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.map_err(|e| CallError::Http(format!("POST {endpoint}: {e}")))?;
    let status = response.status();
    let retry_after = response.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let text = response.text().await.map_err(|e| CallError::Http(format!("POST {endpoint}: {e}")))?;
    match serde_json::from_str::<Value>(&text) {
        Ok(value) => println!("{}", serde_json::to_string_pretty(&value).unwrap_or(text)),
        Err(_) if !text.is_empty() => println!("{text}"),
        Err(_) => {}
    }
    if status.is_success() {
        return Ok(ExitCode::SUCCESS);
    }
    let retry = retry_after.map(|s| format!(" (retry after {s} s)")).unwrap_or_default();
    eprintln!("error: POST {endpoint} answered {status}{retry}");
    Ok(ExitCode::FAILURE)
}
