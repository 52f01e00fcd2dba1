//! `data-backup list`: the backups of one database, newest first, as a table or JSON; `--from COPY`
//! lists an off-site copy's.

use std::process::ExitCode;

use super::output::print_json;
use crate::model::DatabasePath;
use crate::settings::Settings;

/// `data-backup list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// PROJECT/INSTANCE/DATABASE.
    #[arg(long)]
    pub database: DatabasePath,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Which store.
    #[command(flatten)]
    pub from: super::from::FromArgs,
}

/// Runs `list`.
pub async fn run(settings: &Settings, args: ListArgs) -> anyhow::Result<ExitCode> {
    let store = super::from::open_store(settings, &args.from).await?;
    let mut backups = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page =
            crate::restore::list_backups(&store, &args.database, token.as_deref(), crate::restore::MAX_PAGE_SIZE)
                .await?;
        backups.extend(page.backups);
        match page.next_page_token {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    if args.json {
        print_json(&backups)?;
        return Ok(ExitCode::SUCCESS);
    }
    let width = backups.iter().filter_map(|b| b.label.as_ref()).map(|l| l.chars().count()).max().unwrap_or(0).max(5);
    println!("{:<10}  {:<9}  {:>10}  {:<9}  {:<width$}  VERIFIED", "DATE", "CLASS", "SIZE", "ENCRYPTED", "LABEL");
    for b in &backups {
        let verified = match &b.verification {
            Some(v) => {
                let rto = crate::status::render::restore_time_words(v.restore_secs, v.bytes_per_sec)
                    .map(|w| format!(", {w}"))
                    .unwrap_or_default();
                format!("{} {}{rto}", format!("{:?}", v.result).to_lowercase(), v.verified_at.format("%Y-%m-%d %H:%M"))
            }
            None => "never".to_owned(),
        };
        println!(
            "{:<10}  {:<9}  {:>10}  {:<9}  {:<width$}  {verified}",
            b.run_date,
            b.class,
            crate::restore::human_bytes(b.bytes),
            if b.encrypted { "age" } else { "no" },
            b.label.as_deref().unwrap_or("-")
        );
    }
    if backups.is_empty() {
        eprintln!("no backups of {}", crate::restore::path_text(&args.database));
    }
    Ok(ExitCode::SUCCESS)
}
