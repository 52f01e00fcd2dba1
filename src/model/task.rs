//! [`ExportTask`]: what the queue carries, and its deterministic id.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::database::DatabaseRef;
use super::run::{RunDate, RunId};

/// What the queue carries: one database, the day it is for, and the run that asked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportTask {
    /// The database.
    #[serde(flatten)]
    pub db: DatabaseRef,
    /// The day the backup belongs to.
    pub run_date: RunDate,
    /// The run that enqueued it.
    pub run_id: RunId,
}

impl ExportTask {
    /// Deterministic id: a hash of (source, project, instance, database, run date), never a
    /// timestamp, so enqueueing the same task twice is recognised. The hash comes first and the
    /// date (for people reading the queue) last: Cloud Tasks slows down on ids that share a
    /// sequential prefix, as a day's ids would if they began with the date.
    #[must_use]
    pub fn task_id(&self) -> String {
        let mut h = Sha256::new();
        for part in
            [self.db.source.as_str(), self.db.project.as_str(), self.db.instance.as_str(), self.db.database.as_str()]
        {
            h.update(part.as_bytes());
            h.update([0]);
        }
        h.update(self.run_date.to_string().as_bytes());
        format!("{}-{}", &hex::encode(h.finalize())[..32], self.run_date.date().format("%Y%m%d"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::database::Engine;
    use crate::model::names::{DatabaseName, InstanceName, ProjectId, SourceName};

    #[test]
    fn task_id_is_deterministic_and_separates_fields() {
        let task = |project: &str, instance: &str| ExportTask {
            db: DatabaseRef {
                source: SourceName::parse("s").unwrap(),
                project: ProjectId::parse(project).unwrap(),
                instance: InstanceName::parse(instance).unwrap(),
                database: DatabaseName::parse("d").unwrap(),
                engine: Engine::Postgres,
            },
            run_date: RunDate::parse("2026-01-02").unwrap(),
            run_id: RunId::generate(),
        };
        assert_eq!(task("ab", "c").task_id(), task("ab", "c").task_id());
        assert_ne!(task("ab", "c").task_id(), task("a", "bc").task_id());
        let id = task("a", "b").task_id();
        assert!(id.ends_with("-20260102"), "{id}");
        // Ids of one day share no prefix beyond chance (Cloud Tasks' guidance on task names).
        assert_ne!(id[..8], task("a", "c").task_id()[..8]);
    }
}
