//! Google Cloud plumbing shared by discovery, the Cloud SQL exporter, Cloud Tasks, Pub/Sub and the
//! doctor: credentials, the rate-limited retrying API caller, the client builder with endpoint
//! overrides, and the facts of a Cloud SQL instance.

pub mod api;
pub mod clients;
pub mod credentials;
pub mod instances;
pub mod run_jobs;
