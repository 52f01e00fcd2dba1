//! The key prefixes retention lists and lifecycle rules match (`<class>/`, `<class>/<project>/`,
//! `leases/`, `holds/`, `verifications/`), built from `Key` so that `Layout` stays the one place
//! that encodes segments.

use crate::model::calendar::RetentionClass;
use crate::model::names::ProjectId;
use crate::store::layout::{Key, Prefix, any_date, any_db};

/// `<class>/`, or `<class>/<project>/` with the project segment encoded as `Layout` encodes it.
pub(super) fn class_prefix(class: RetentionClass, project: Option<&ProjectId>) -> String {
    let mut db = any_db();
    let n = match project {
        Some(p) => {
            db.project = p.clone();
            2
        }
        None => 1,
    };
    Prefix::of(&Key::Manifest { class, db, date: any_date() }, n).into_string()
}

/// `leases/`.
pub(super) fn leases_prefix() -> String {
    Prefix::of(&Key::Lease { db: any_db(), date: any_date(), seq: 0 }, 1).into_string()
}

/// `holds/`.
pub(super) fn holds_prefix() -> String {
    Prefix::of(&Key::Hold { db: any_db(), date: any_date() }, 1).into_string()
}
