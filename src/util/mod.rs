//! Small helpers every layer may use: they know nothing of backups, databases or Google.

pub mod backoff;
pub mod error;
pub mod glob;
pub mod process;
