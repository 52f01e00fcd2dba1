//! `Manifest`: the JSON written last, next to a dump. A backup exists only when its manifest does.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::model::Engine;

/// The stored format of a dump, which decides its key's extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DumpFormat {
    /// `pg_dump --format=custom` (its own compression off), zstd-compressed: restore with `pg_restore`.
    PgCustomZstd,
    /// `mysqldump`/`mariadb-dump` SQL text, zstd-compressed: restore with `mysql`.
    MysqlSqlZstd,
    /// A Cloud SQL export: SQL text, gzip-compressed.
    CloudSqlGz,
    /// A Cloud SQL for SQL Server export: a native `BAK` backup, uncompressed.
    SqlServerBak,
}

impl DumpFormat {
    /// The key extension.
    #[must_use]
    pub fn ext(self) -> &'static str {
        match self {
            Self::PgCustomZstd => "dump.zst",
            Self::MysqlSqlZstd => "sql.zst",
            Self::CloudSqlGz => "sql.gz",
            Self::SqlServerBak => "bak",
        }
    }

    /// The format of an extension.
    #[must_use]
    pub fn from_ext(ext: &str) -> Option<Self> {
        [Self::PgCustomZstd, Self::MysqlSqlZstd, Self::CloudSqlGz, Self::SqlServerBak]
            .into_iter()
            .find(|f| f.ext() == ext)
    }

    /// The compression applied to the stored object.
    #[must_use]
    pub fn compression(self) -> &'static str {
        match self {
            Self::PgCustomZstd | Self::MysqlSqlZstd => "zstd",
            Self::CloudSqlGz => "gzip",
            Self::SqlServerBak => "none",
        }
    }
}

/// Versions of the tools that made a dump.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ToolVersions {
    /// The dump client, as it reports itself (`pg_dump (PostgreSQL) 15.20`).
    pub dump: String,
    /// The server, as it reports itself.
    pub server: String,
    /// This service.
    pub data_backup: String,
}

/// The record that makes a dump a backup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Manifest {
    /// Manifest format version.
    pub version: u32,
    /// Configured source that found the database.
    pub source: String,
    /// Project (or self-hosted source name).
    pub project: String,
    /// Instance (or server name).
    pub instance: String,
    /// Database.
    pub database: String,
    /// Engine.
    pub engine: Engine,
    /// The day the backup belongs to (`YYYY-MM-DD`).
    pub run_date: String,
    /// The run that asked for it.
    pub run_id: String,
    /// Retention class.
    pub class: String,
    /// Object key of the dump, relative to the store's prefix.
    pub key: String,
    /// Stored format.
    pub format: DumpFormat,
    /// Compression of the stored object (`zstd`, `gzip`).
    pub compression: String,
    /// Compression level used.
    pub compression_level: Option<i32>,
    /// Size of the stored object in bytes.
    pub bytes: u64,
    /// Size of the dump before compression, when the service saw it.
    pub raw_bytes: Option<u64>,
    /// SHA-256 of the stored object, hex.
    pub sha256: Option<String>,
    /// Version token of the stored object (generation, ETag) when the store has one.
    pub object_version: Option<String>,
    /// When the export started.
    pub started_at: DateTime<Utc>,
    /// When the dump was stored.
    pub finished_at: DateTime<Utc>,
    /// Tool and server versions.
    pub tools: ToolVersions,
    /// Client-side encryption, when the dump is encrypted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<Encryption>,
    /// Rows per table (`schema.table`), counted in the dump's own snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_counts: Option<BTreeMap<String, u64>>,
    /// Whether `row_counts` were taken in the very snapshot the dump read (PostgreSQL) or in a
    /// snapshot taken just before it (MySQL/MariaDB cannot share the dump's snapshot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_counts_exact: Option<bool>,
    /// For a Cloud SQL export: the operation that wrote it and what Cloud Storage reports of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_sql: Option<CloudSqlExport>,
}

/// How a Cloud SQL export was made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CloudSqlExport {
    /// The Cloud SQL Admin operation (`projects/P/operations/ID` form: its name), or `adopted`
    /// when the object was found complete without its operation.
    pub operation: String,
    /// The object's CRC32C as Cloud Storage reports it (base64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crc32c: Option<String>,
    /// The instance's `databaseVersion` (`POSTGRES_16`, …).
    pub database_version: String,
    /// Whether the export ran serverless (`offload`).
    pub offload: bool,
}

/// How a dump is encrypted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Encryption {
    /// `age` (X25519).
    pub scheme: String,
    /// The recipients (public keys) that can decrypt it.
    pub recipients: Vec<String>,
}

/// Current manifest format version.
pub const MANIFEST_VERSION: u32 = 1;
