//! `data-backup doctor`: what would make tonight's Cloud SQL exports fail, one line per problem with
//! its fix (or the JSON of `GET /doctor`); exit status 2 when there is a problem.

use std::process::ExitCode;

use crate::settings::Settings;

/// `data-backup doctor`.
#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    /// Print the JSON of `GET /doctor` instead of the lines.
    #[arg(long)]
    pub json: bool,
}

/// Runs `doctor`.
pub async fn run(settings: &Settings, args: DoctorArgs) -> anyhow::Result<ExitCode> {
    let report = crate::doctor::run(settings).await;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for f in &report.findings {
            println!("{}", crate::doctor::line(f));
        }
        let problems = report.findings.iter().filter(|f| f.level == "problem").count();
        println!("{} instance(s) checked, {problems} problem(s)", report.instances_checked);
    }
    Ok(if report.healthy() { ExitCode::SUCCESS } else { ExitCode::from(2) })
}
