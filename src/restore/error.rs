//! `RestoreError`: why a restore, a listing or a drill's database work failed, each kind saying
//! whether a retry may help.

use crate::settings::ServerUrl;
use crate::store::StoreError;

/// Why a restore (or a listing) failed.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// No backup matches the request.
    #[error("{0}")]
    NotFound(String),
    /// A guard refused the target (production, non-empty, missing).
    #[error("{0}")]
    Refused(String),
    /// The request is not usable (unreadable transform or identity file, bad page token, wrong engine).
    #[error("{0}")]
    Invalid(String),
    /// The backup is encrypted and no identity was given.
    #[error(
        "backup {key} is encrypted with age (recipients: {recipients}): pass --identity FILE with a matching \
         age identity (AGE-SECRET-KEY-…)"
    )]
    Encrypted {
        /// The dump's key.
        key: String,
        /// Its recipients, comma-separated.
        recipients: String,
    },
    /// The backup could not be decrypted with the given identity.
    #[error("{0}")]
    Decrypt(String),
    /// The stored object is not what its manifest describes.
    #[error("{key} is corrupt: {reason}")]
    Integrity {
        /// The dump's key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// A restore tool failed (the target is left as it was; see the module docs for MySQL).
    #[error("{tool} failed ({status}): {stderr}")]
    Tool {
        /// `pg_restore`, `psql`, `mysql`.
        tool: String,
        /// Its exit status, or what went wrong with it.
        status: String,
        /// The end of its stderr.
        stderr: String,
    },
    /// The backup's format cannot be restored by this version.
    #[error("{0}")]
    Unsupported(String),
    /// The target server failed or could not be reached.
    #[error("target {server}: {message}")]
    Target {
        /// The server (without password).
        server: String,
        /// What failed.
        message: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl RestoreError {
    /// True when retrying may help.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Store(e) => e.is_transient(),
            Self::Target { .. } => true,
            _ => false,
        }
    }

    /// A short class name for logs and records.
    #[must_use]
    pub fn class(&self) -> &'static str {
        match self {
            Self::NotFound(_) => "not_found",
            Self::Refused(_) => "refused",
            Self::Invalid(_) => "invalid",
            Self::Encrypted { .. } => "encrypted",
            Self::Decrypt(_) => "decrypt",
            Self::Integrity { .. } => "integrity",
            Self::Tool { .. } => "tool",
            Self::Unsupported(_) => "unsupported",
            Self::Target { .. } => "target",
            Self::Store(_) => "store",
        }
    }
}

/// A child's stderr message for a database error.
pub(super) fn db_error(server: &ServerUrl, e: &dyn std::fmt::Display) -> RestoreError {
    RestoreError::Target { server: server.to_string(), message: e.to_string() }
}
