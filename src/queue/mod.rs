//! `TaskQueue`: how export tasks reach `POST /export`'s function.
//!
//! Contract: `enqueue` is idempotent per task id (`ExportTask::task_id`): enqueueing a task that is
//! already queued or running answers `AlreadyQueued`, not an error. Delivery is at least once; the
//! export itself is idempotent, so a duplicate delivery costs one manifest read.

pub mod local;

pub use self::local::LocalQueue;

use async_trait::async_trait;

use crate::model::ExportTask;

/// Answer of `enqueue`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Enqueued {
    /// The task was added.
    Enqueued,
    /// The same task was already queued or running.
    AlreadyQueued,
}

/// Errors of `enqueue`.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The queue no longer takes work (the service is shutting down).
    #[error("the queue is shutting down and takes no new tasks")]
    Closed,
}

impl QueueError {
    /// True when retrying may help.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        true
    }
}

/// Delivers export tasks.
#[async_trait]
pub trait TaskQueue: Send + Sync {
    /// Adds a task (idempotent per task id).
    async fn enqueue(&self, task: ExportTask) -> Result<Enqueued, QueueError>;
    /// Waits until nothing is queued or running (the CLI uses it; remote queues answer at once).
    async fn wait_idle(&self);
}
