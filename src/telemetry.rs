//! Logging: human-readable on a terminal, JSON (Cloud Logging's shape) when
//! `DATA_BACKUP_LOG_FORMAT=json` or on Cloud Run (`K_SERVICE` set). Level from `RUST_LOG`
//! (default `info`).

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber once; later calls do nothing.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json =
        std::env::var("DATA_BACKUP_LOG_FORMAT").is_ok_and(|v| v == "json") || std::env::var_os("K_SERVICE").is_some();
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ =
        if json { builder.json().flatten_event(true).with_current_span(false).try_init() } else { builder.try_init() };
}
