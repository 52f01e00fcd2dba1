//! data-backup: backs up every database an organisation runs, every night, and proves the backups
//! are good. This crate is the whole service and its CLI; ARCHITECTURE.md maps its layers and
//! docs/adr/ records the decisions.

pub mod app;
pub mod cli;
pub mod copy;
pub mod crypto;
pub mod db;
pub mod discovery;
pub mod doctor;
pub mod export;
pub mod gcp;
pub mod http;
pub mod metrics;
pub mod model;
pub mod nightly;
pub mod notify;
pub mod queue;
pub mod restore;
pub mod retention;
pub mod runs;
pub mod settings;
pub mod status;
pub mod store;
pub mod telemetry;
pub mod util;
pub mod verify;
