//! Database-server access shared by everything that talks to a PostgreSQL or MySQL/MariaDB server:
//! discovery of self-hosted servers, the dump exporter, restores and restore drills.
//!
//! - `targets`: connection settings from a source (`[[sources]]`) or a server URL, with the
//!   password from its file, the URL or the tool's own environment variable;
//! - `tools`: finding the client tools (`pg_dump`, `pg_restore`, `psql`, `mysql`…) and their
//!   versions, and the one environment a PostgreSQL or MySQL child process gets;
//! - `ident`: quoting identifiers (names are data);
//! - `rows`: the one row-count query, which the manifest (at export) and the drill (after a
//!   restore) must run alike for their counts to compare.
//!
//! It speaks in drivers' errors; each caller classifies them in its own error type.

pub mod ident;
pub mod rows;
pub mod targets;
pub mod tools;
