//! Test support: the real application on a free port, throwaway databases, restore helpers.

pub mod db;
pub mod fakes;

use std::path::{Path, PathBuf};
use std::time::Duration;

use data_backup::app::Application;
use data_backup::http::state::AppState;
use data_backup::settings::Settings;
use serde_json::Value;
use tempfile::TempDir;

pub use self::db::{MyDb, PgDb, unique_name};

/// `postgres://…` of the PostgreSQL server the tests use.
pub fn pg_url() -> String {
    std::env::var("DATA_BACKUP_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/".into())
}

/// `mysql://…` of the MariaDB server the tests use.
pub fn mysql_url() -> String {
    std::env::var("DATA_BACKUP_TEST_MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/".into())
}

/// An environment variable `scripts/test.sh` sets, or a panic saying how to get it.
pub fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests through scripts/test.sh, which starts the emulators")
    })
}

/// The real application, serving on a free port, with a temporary local store.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`.
    pub address: String,
    /// The services (store, queue).
    pub state: AppState,
    /// HTTP client.
    pub client: reqwest::Client,
    /// The store's directory (for `file://` stores).
    pub store_dir: TempDir,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

/// Settings for a test: a `file://` store in `store_dir`, port 0, fast retries, plus `extra` TOML.
pub fn settings(store_dir: &Path, extra: &str) -> Settings {
    let toml = format!("bind = \"127.0.0.1:0\"\n{extra}\n",);
    let mut s = Settings::from_toml(&toml).expect("test settings are valid");
    // No test may be surprised by the nightly timer.
    s.schedule.daily_at = String::new();
    // Nor by drills after a run (tests of them turn them on).
    s.verify.after_run = false;
    if !extra.contains("[store]") {
        s.store.url = format!("file://{}", store_dir.display());
    }
    s
}

/// A `[[sources]]` block for the PostgreSQL test server limited to databases matching `glob`.
pub fn pg_source(name: &str, glob: &str) -> String {
    format!(
        "[[sources]]\nname = \"{name}\"\nkind = \"postgres\"\nurl = \"{}\"\ninstance = \"pg\"\ndatabases = [\"{glob}\"]\n",
        pg_url()
    )
}

/// A `[[sources]]` block for the MariaDB test server limited to databases matching `glob`.
pub fn mysql_source(name: &str, glob: &str) -> String {
    format!(
        "[[sources]]\nname = \"{name}\"\nkind = \"mysql\"\nurl = \"{}\"\ninstance = \"maria\"\ndatabases = [\"{glob}\"]\n",
        mysql_url()
    )
}

/// Fast retries for tests (the defaults wait minutes).
pub const FAST_QUEUE: &str =
    "[queue]\nretry_initial_secs = 0.05\nretry_max_delay_secs = 0.2\nretry_max_duration_secs = 2\n";

impl TestApp {
    /// Builds and serves the real application with `extra` TOML settings.
    pub async fn spawn(extra: &str) -> Self {
        let store_dir = tempfile::tempdir().expect("temp dir");
        let settings = settings(store_dir.path(), extra);
        let app = Application::build(&settings).await.expect("application builds");
        let address = format!("http://127.0.0.1:{}", app.port());
        let state = app.state().clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            app.run_until(async {
                let _ = rx.await;
            })
            .await
            .expect("server runs");
        });
        Self { address, state, client: reqwest::Client::new(), store_dir, shutdown: Some(tx), server: Some(server) }
    }

    /// POSTs JSON to `path`; answers (status, headers, body as JSON or `Value::Null`).
    pub async fn post(&self, path: &str, body: &Value) -> (u16, reqwest::header::HeaderMap, Value) {
        let r = self.client.post(format!("{}{path}", self.address)).json(body).send().await.expect("request");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.expect("body");
        (status, headers, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// POSTs raw bytes with a JSON content type.
    pub async fn post_raw(
        &self,
        path: &str,
        body: impl Into<reqwest::Body>,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let r = self
            .client
            .post(format!("{}{path}", self.address))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.expect("body");
        (status, headers, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Every file in the store, relative to its root, sorted.
    pub fn store_files(&self) -> Vec<String> {
        files_under(self.store_dir.path())
    }

    /// Waits until the local queue is idle (with a generous bound so a hang fails the test).
    pub async fn wait_idle(&self) {
        tokio::time::timeout(Duration::from_secs(120), self.state.queue.wait_idle()).await.expect("queue drains");
    }

    /// Stops the server (and the queue) and waits for it.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(s) = self.server.take() {
            let _ = s.await;
        }
    }
}

/// Every file under `root`, relative, sorted.
pub fn files_under(root: &Path) -> Vec<String> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p: PathBuf = entry.path();
            if p.is_dir() {
                walk(&p, root, out);
            } else {
                out.push(p.strip_prefix(root).expect("under root").to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

/// Decompresses a stored `.zst` dump file into memory (test dumps are small).
pub fn unzstd(path: &Path) -> Vec<u8> {
    use std::io::Read;
    let file = std::fs::File::open(path).expect("dump file");
    let mut out = Vec::new();
    zstd::stream::read::Decoder::new(file).expect("zstd").read_to_end(&mut out).expect("decompresses");
    out
}

/// Runs `program args…` with `stdin` fed in; panics with its stderr when it fails.
pub fn run_with_stdin(program: &str, args: &[&str], stdin: &[u8]) -> String {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let mut input = child.stdin.take().expect("stdin");
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().expect("waits");
    let _ = writer.join();
    assert!(out.status.success(), "{program} {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs the binary with `--config config` and `args` (no `DATA_BACKUP_CONFIG`, warnings only).
pub fn cli_output(config: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_data-backup"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("DATA_BACKUP_CONFIG")
        .env("RUST_LOG", "warn")
        .output()
        .expect("the binary runs")
}

/// [`cli_output`] as (success, stdout, stderr).
pub fn cli(config: &Path, args: &[&str]) -> (bool, String, String) {
    let out = cli_output(config, args);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
