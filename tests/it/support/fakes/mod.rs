//! Stateful fakes of Google control-plane APIs (wiremock), shaped by Google's REST reference.

pub mod asset;
pub mod cloud_run;
pub mod cloud_tasks;
pub mod google;
pub mod jwks;
pub mod pubsub;
pub mod resource_manager;
pub mod sql_admin;
pub mod storage_iam;
