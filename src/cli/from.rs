//! `--from COPY` of `list`, `restore` and `verify`: the store a command reads its backups from,
//! the primary (`[store]`) or the named off-site copy (`[[copies]]`, ADR 0023).

use crate::settings::Settings;
use crate::store::BackupStore;

/// The `--from` argument, shared by the commands that read backups.
#[derive(Debug, Clone, clap::Args)]
pub struct FromArgs {
    /// Read the backups from this off-site copy (a `[[copies]]` name) instead of the primary store.
    #[arg(long = "from", value_name = "COPY")]
    pub from: Option<String>,
}

/// Opens the primary store, or the copy `from` names (under the primary's layout).
pub async fn open_store(settings: &Settings, from: &FromArgs) -> anyhow::Result<BackupStore> {
    let primary = BackupStore::open(settings).await?;
    match from.from.as_deref() {
        None => Ok(primary),
        Some(name) => Ok(crate::copy::open_copy_store(settings, &primary, name).await?),
    }
}
