//! The domain's nouns: validated names, [`DatabaseRef`], [`RunDate`], [`ExportTask`] and the
//! retention calendar ([`RetentionClass`]).
//!
//! Every value here is parsed once at the edge (HTTP body, CLI argument, discovery result) and is
//! valid from then on. Each kind of noun has its file; this module re-exports them all, so
//! `crate::model::X` names any of them (files inside `model/` name each other by their own path).

pub mod calendar;
pub mod database;
pub mod names;
pub mod run;
pub mod task;

pub use calendar::{RetentionClass, class_of};
pub use database::{DatabasePath, DatabaseRef, Engine, glob_form};
pub use names::{
    DatabaseName, InstanceName, InvalidField, Label, MAX_LABEL_BYTES, MAX_SEGMENT_BYTES, ProjectId, SourceName,
    from_key_segment, key_segment,
};
pub use run::{RunDate, RunId};
pub use task::ExportTask;
