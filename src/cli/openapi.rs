//! `data-backup openapi`: prints the OpenAPI document (no configuration needed).

use std::process::ExitCode;

use super::output::print_json;

/// Runs `openapi`.
pub fn run() -> anyhow::Result<ExitCode> {
    print_json(&crate::http::openapi())?;
    Ok(ExitCode::SUCCESS)
}
