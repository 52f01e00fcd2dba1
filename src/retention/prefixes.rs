//! The key prefixes retention lists and lifecycle rules match (`<class>/`, `<class>/<project>/`,
//! `leases/`, `holds/`, `verifications/`), built from `Key` so that `Layout` stays the one place
//! that encodes segments.

use chrono::NaiveDate;

use crate::model::calendar::RetentionClass;
use crate::model::database::DatabasePath;
use crate::model::names::{DatabaseName, InstanceName, ProjectId};
use crate::model::run::RunDate;
use crate::store::layout::Key;

/// The first `n` segments of `key`'s path, with a trailing `/`.
pub(super) fn key_prefix(key: &Key, n: usize) -> String {
    let path = key.path();
    let mut prefix: String = path.split('/').take(n).collect::<Vec<_>>().join("/");
    prefix.push('/');
    prefix
}

pub(super) fn placeholder_db(project: ProjectId) -> DatabasePath {
    DatabasePath {
        project,
        instance: InstanceName::parse("_").expect("valid name"),
        database: DatabaseName::parse("_").expect("valid name"),
    }
}

/// `<class>/`, or `<class>/<project>/` with the project segment encoded as `Layout` encodes it.
pub(super) fn class_prefix(class: RetentionClass, project: Option<&ProjectId>) -> String {
    let (project, n) = match project {
        Some(p) => (p.clone(), 2),
        None => (ProjectId::parse("_").expect("valid name"), 1),
    };
    let key = Key::Manifest { class, db: placeholder_db(project), date: RunDate::from_date(NaiveDate::MIN) };
    key_prefix(&key, n)
}

/// `leases/`.
pub(super) fn leases_prefix() -> String {
    let project = ProjectId::parse("_").expect("valid name");
    key_prefix(&Key::Lease { db: placeholder_db(project), date: RunDate::from_date(NaiveDate::MIN), seq: 0 }, 1)
}

/// `holds/`.
pub(super) fn holds_prefix() -> String {
    let project = ProjectId::parse("_").expect("valid name");
    key_prefix(&Key::Hold { db: placeholder_db(project), date: RunDate::from_date(NaiveDate::MIN) }, 1)
}
