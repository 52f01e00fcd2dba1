//! The one integration-test binary: real PostgreSQL and MariaDB servers, real dump and restore
//! tools, real object stores (local directory, fake-gcs-server, moto, azurite). Run through
//! `scripts/test.sh`, which installs and starts all of them.

mod support;

mod auth;
mod bad_input;
mod bucket;
mod cli;
mod cloudsql;
mod copies;
mod copy_drills;
mod copy_status;
mod drills;
mod export;
mod follow_up;
mod gcp;
mod hardening;
mod history;
mod labels;
mod locks;
mod names;
mod openapi;
mod parallel_restore;
mod proof;
mod restore;
mod retention;
mod schedule;
mod shutdown;
mod status;
mod tool_arguments;
mod tripwire;
mod verify;
