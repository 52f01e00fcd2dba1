//! [`RetentionError`]: what can go wrong in a prune or in rendering lifecycle rules.

use chrono::NaiveDate;

use crate::store::bucket::BucketError;

/// Errors of the prune and of the lifecycle rules.
#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    /// A prune that deletes was asked to evaluate a day that has not come yet.
    #[error("as_of {0} lies in the future: only a dry run may look ahead")]
    AsOfInFuture(NaiveDate),
    /// Listing the store failed, or a deletion failed in a way worth retrying.
    #[error(transparent)]
    Bucket(#[from] BucketError),
    /// The policy cannot be written as lifecycle rules for this format.
    #[error("cannot render lifecycle rules: {0}")]
    Lifecycle(String),
}

impl RetentionError {
    /// True when retrying may help.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Bucket(e) if e.is_transient())
    }
}
