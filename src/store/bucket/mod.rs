//! The `Bucket` seam: the few object operations the service needs, and nothing else.
//!
//! Contract every implementation keeps (pinned by the conformance suite in `tests/it/bucket.rs`):
//! - `put_stream` uploads a stream of unknown length with bounded memory. The object becomes
//!   visible only when the whole stream has been read without error; a read error aborts the upload
//!   and leaves no object under `key` (an earlier object under the same key is left as it was).
//! - `put_if_absent` is a conditional create: exactly one of several concurrent callers gets
//!   `Created`, the others `AlreadyExists`. It is the only primitive used for leases, manifests and
//!   "reported once" markers.
//! - `put` overwrites; it is used only for derived copies (`latest/`) that may be rewritten.
//! - `get`/`head` answer `Ok(None)` for a missing object; `delete` of a missing object is `Ok(())`.
//! - `list` answers every object under `prefix` (all pages), sorted by key.
//!
//! Keys are relative to the store's prefix and always come from `Layout`. The backends live in
//! the children (`gcs`, `object_store`); `BackupStore::open` picks one from `store.url`.

pub mod gcs;
mod gcs_json;
pub mod object_store;
pub mod s3_lock;

use std::fmt::Debug;
use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use tokio::io::AsyncRead;

/// A byte source for `put_stream`; it may fail midway (then the upload is aborted).
pub type ByteReader = Pin<Box<dyn AsyncRead + Send>>;

/// A stream of the bytes of a stored object.
pub type ByteStream = BoxStream<'static, Result<Bytes, BucketError>>;

/// What the bucket knows about one stored object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Key relative to the store's prefix.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// Version token (GCS generation, S3/Azure ETag, local modification stamp), when the backend has one.
    pub version: Option<String>,
}

/// Answer of a conditional create.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PutOutcome {
    /// This call created the object.
    Created,
    /// The object was already there; nothing was written.
    AlreadyExists,
}

/// Errors of a bucket operation, classified at the source.
#[derive(Debug, thiserror::Error)]
pub enum BucketError {
    /// The stream being uploaded failed; the upload was aborted and nothing was written.
    #[error("upload source failed: {0}")]
    Source(#[source] std::io::Error),
    /// The backend answered in a way worth retrying (5xx, 429, timeouts, connection errors).
    #[error("storage temporarily unavailable: {0}")]
    Transient(String),
    /// The backend refused (permission, missing bucket, invalid request): retrying will not help.
    #[error("storage refused the request: {0}")]
    Permanent(String),
}

impl BucketError {
    /// True when the same call may succeed later.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Transient(_))
    }
}

/// An object's retention as its store holds it: until when, and whether locked (GCS `Locked`,
/// S3 `COMPLIANCE`) rather than only retained (GCS `Unlocked`, S3 `GOVERNANCE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// The retain-until time.
    pub until: DateTime<Utc>,
    /// Whether nobody can shorten or lift it.
    pub locked: bool,
}

impl Retention {
    /// The retention to ask for when `wanted` is wanted of an object that holds `held`: `None` when
    /// `held` already lasts as long and is as strict (no store lets a retention be shortened or
    /// weakened without a bypass, so asking would be refused); else the later date and the
    /// stricter mode of the two. A retention asked again after `keep_days` was shortened keeps
    /// the date it already has (written with its fraction of a second, so a held date is never
    /// rounded down).
    #[must_use]
    pub fn to_ask(held: Option<Self>, wanted: Self) -> Option<Self> {
        let Some(held) = held else { return Some(wanted) };
        if held.until >= wanted.until && (held.locked || !wanted.locked) {
            return None;
        }
        Some(Self { until: held.until.max(wanted.until), locked: held.locked || wanted.locked })
    }
}

/// The object operations the service needs. Implemented by [`object_store::ObjectStoreBucket`]
/// (`file://`, `s3://`, `az://`) and [`gcs::GcsBucket`] (`gs://`).
#[async_trait]
pub trait Bucket: Send + Sync + Debug {
    /// Streams `body` into `key`; see the module contract for atomicity.
    async fn put_stream(&self, key: &str, body: ByteReader) -> Result<ObjectInfo, BucketError>;
    /// Writes a small object only if no object exists under `key`.
    async fn put_if_absent(&self, key: &str, body: Bytes) -> Result<PutOutcome, BucketError>;
    /// Writes a small object, replacing any existing one.
    async fn put(&self, key: &str, body: Bytes) -> Result<(), BucketError>;
    /// Reads a small object whole.
    async fn get(&self, key: &str) -> Result<Option<Bytes>, BucketError>;
    /// Streams an object of any size.
    async fn get_stream(&self, key: &str) -> Result<Option<ByteStream>, BucketError>;
    /// Size and version of an object.
    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, BucketError>;
    /// Every object under `prefix`, sorted by key.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, BucketError>;
    /// Deletes an object; a missing object is not an error.
    async fn delete(&self, key: &str) -> Result<(), BucketError>;
    /// For a Cloud Storage bucket, the `gs://` URI of `key` (Cloud SQL writes its exports there
    /// itself); `None` for every other backend.
    fn gs_uri(&self, key: &str) -> Option<String> {
        let _ = key;
        None
    }
    /// Retains an object until `until` (GCS object retention; `locked`: mode `Locked`, which nobody
    /// can shorten). Answers `false` when the backend has no object retention.
    async fn retain_until(&self, key: &str, until: DateTime<Utc>, locked: bool) -> Result<bool, BucketError> {
        let _ = (key, until, locked);
        Ok(false)
    }
    /// Whether [`Self::retain_until`] can work on this bucket (S3: Object Lock is enabled on it);
    /// `true` where the backend cannot tell beforehand.
    async fn retention_available(&self) -> Result<bool, BucketError> {
        Ok(true)
    }
    /// Sets (`on`) or clears an object hold (GCS `temporaryHold`: nobody, lifecycle rules
    /// included, deletes the object while it is set). Answers `false` when the backend has none.
    async fn set_hold(&self, key: &str, on: bool) -> Result<bool, BucketError> {
        let _ = (key, on);
        Ok(false)
    }
    /// The CRC32C of an object as the backend reports it (base64, big-endian, as GCS does), when
    /// the backend keeps one.
    async fn crc32c(&self, key: &str) -> Result<Option<String>, BucketError> {
        let _ = key;
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retention_asked_again_is_never_shortened_or_weakened() {
        let day = |d: u32| chrono::NaiveDate::from_ymd_opt(2030, 1, d).unwrap().and_hms_opt(0, 0, 0).unwrap().and_utc();
        let r = |d, locked| Retention { until: day(d), locked };
        let cases = [
            (None, r(5, false), Some(r(5, false)), "nothing held: asked as wanted"),
            (Some(r(5, false)), r(5, false), None, "the same: nothing to ask"),
            (Some(r(9, true)), r(5, false), None, "longer and locked: kept"),
            (Some(r(9, false)), r(5, true), Some(r(9, true)), "locked for the longer date"),
            (Some(r(5, true)), r(9, false), Some(r(9, true)), "extended, still locked"),
            (Some(r(5, false)), r(9, false), Some(r(9, false)), "extended"),
        ];
        for (held, wanted, asked, why) in cases {
            assert_eq!(Retention::to_ask(held, wanted), asked, "{why}");
        }
    }
}
