//! Off-site copies (`[[copies]]`, ADR 0023): after a backup's manifest commits in the primary
//! store, its dump and then its manifest are copied to each further store under the same key.
//! This folder re-exports its children: `target` (one copy: streamed, encrypted on the way,
//! checked on arrival, manifest last, idempotent), `report` (a failed copy reported once) and
//! `service` (the configured copies, run one after the other for a backup).

pub mod report;
pub mod service;
pub mod target;

pub use service::{CopyService, OpenError, open_copy_store};
pub use target::{CopyError, CopyOutcome, CopyTarget};
