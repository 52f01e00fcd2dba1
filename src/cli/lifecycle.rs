//! `data-backup lifecycle`: prints bucket lifecycle rules rendered from the `[retention]` settings
//! and the store's prefix (GCS JSON, S3 JSON or Terraform).

use std::process::ExitCode;

use crate::retention::LifecycleFormat;
use crate::settings::Settings;

/// `data-backup lifecycle`.
#[derive(Debug, clap::Args)]
pub struct LifecycleArgs {
    /// `gcs` (bucket lifecycle JSON), `s3` (LifecycleConfiguration JSON) or `terraform`
    /// (google_storage_bucket lifecycle_rule blocks; for an s3:// store an
    /// aws_s3_bucket_lifecycle_configuration resource).
    #[arg(long, value_enum)]
    pub format: LifecycleFormatArg,
}

/// `--format` of `lifecycle`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum LifecycleFormatArg {
    /// GCS bucket lifecycle JSON.
    Gcs,
    /// S3 lifecycle configuration JSON.
    S3,
    /// Terraform.
    Terraform,
}

/// Runs `lifecycle`.
pub fn run(settings: &Settings, args: &LifecycleArgs) -> anyhow::Result<ExitCode> {
    let policy = crate::retention::RetentionPolicy::from_settings(settings)?;
    let format = match args.format {
        LifecycleFormatArg::Gcs => LifecycleFormat::Gcs,
        LifecycleFormatArg::S3 => LifecycleFormat::S3,
        LifecycleFormatArg::Terraform => LifecycleFormat::Terraform,
    };
    print!("{}", crate::retention::lifecycle(&policy, &settings.store.url, format)?);
    Ok(ExitCode::SUCCESS)
}
