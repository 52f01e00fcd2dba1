//! `BackupStore`: a [`Bucket`] plus the [`Layout`]. Knows keys, manifests, ledgers and report
//! markers; nothing about databases. Opens the store the settings name ([`open_bucket`]: the one
//! place a bucket is built from a URL, `store.url` or a `copies[].url`). Its children: `bucket`
//! (the `Bucket` seam and its backends), `layout` (every key), `manifest`, `lease` (export leases,
//! as `BackupStore` methods), `holds` (the data-loss tripwire's holds), `history` (each database's
//! last nights, for the status pages), `verification` (the drills' records) and `catalog` (the
//! read side: a database's backups, labelled ones, `latest/` copies and verification records).

pub mod bucket;
pub mod catalog;
pub mod history;
pub mod holds;
pub mod layout;
pub mod lease;
pub mod manifest;
pub mod verification;

use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use self::bucket::gcs::GcsBucket;
use self::bucket::object_store::ObjectStoreBucket;
use self::bucket::{Bucket, BucketError, ByteReader, ObjectInfo, PutOutcome};
use self::layout::{Key, Layout, path_of};
use self::manifest::Manifest;
use crate::model::{DatabasePath, DatabaseRef, RunDate};
use crate::settings::{GcpCredentials, Settings};

/// Errors of the store: a bucket error, or an object the store cannot read back.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The bucket failed.
    #[error(transparent)]
    Bucket(#[from] BucketError),
    /// An object is not what the service wrote.
    #[error("{key} is corrupt: {reason}")]
    Corrupt {
        /// Its key.
        key: String,
        /// What is wrong.
        reason: String,
    },
}

impl StoreError {
    /// True when retrying may help.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Bucket(e) if e.is_transient())
    }
}

/// Checks at start-up that the store `bucket` of the setting `key` (`retention.lock`,
/// `copies[i].lock`) can retain what it is asked to: a bucket that cannot (S3 without Object
/// Lock) refuses to start rather than leave every backup deletable behind a green status. A
/// bucket that cannot be asked now is logged and let be (each lock is still checked as it is set).
pub async fn ensure_retention(bucket: &dyn Bucket, key: &str) -> Result<(), crate::settings::SettingsError> {
    match bucket.retention_available().await {
        Ok(true) => Ok(()),
        Ok(false) => Err(crate::settings::SettingsError::new(
            key,
            "is on, but the store's bucket cannot retain objects (S3: create the bucket with Object Lock \
             enabled; it cannot be turned on later)",
        )),
        Err(e) => {
            tracing::warn!(setting = key, error = %e, "could not check that the store can retain objects");
            Ok(())
        }
    }
}

/// Opens the bucket `url` names (`gs://` through the Cloud Storage client of `gcp`, the others
/// through `object_store` with `options`); `setting` names the key in errors. The one place a
/// bucket is built from a URL: the `[store]` and each `[[copies]]` entry.
pub async fn open_bucket(
    url: &str,
    options: &std::collections::BTreeMap<String, String>,
    gcp: &crate::settings::GcpSettings,
    setting: &str,
) -> Result<Arc<dyn Bucket>, StoreError> {
    let url = url::Url::parse(url).map_err(|e| BucketError::Permanent(format!("{setting}: {e}")))?;
    if url.scheme() == "gs" {
        let name = url.host_str().ok_or_else(|| BucketError::Permanent(format!("{setting}: gs:// needs a bucket")))?;
        let endpoint = gcp.storage_endpoint.as_ref().map(|u| u.as_str().trim_end_matches('/').to_owned());
        let bucket = GcsBucket::new(
            name,
            url.path().trim_matches('/'),
            endpoint.as_deref(),
            gcp.credentials == GcpCredentials::Anonymous,
        )
        .await?;
        Ok(Arc::new(bucket))
    } else {
        Ok(Arc::new(ObjectStoreBucket::open(&url, options)?))
    }
}

/// A bucket plus the layout.
#[derive(Clone, Debug)]
pub struct BackupStore {
    bucket: Arc<dyn Bucket>,
    layout: Layout,
    /// The data-loss tripwire's thresholds, when it is on (see `crate::export::tripwire`).
    tripwire: Option<Arc<crate::settings::TripwireSettings>>,
}

impl BackupStore {
    /// A store over `bucket`.
    #[must_use]
    pub fn new(bucket: Arc<dyn Bucket>, layout: Layout) -> Self {
        Self { bucket, layout, tripwire: None }
    }

    /// The same store with the data-loss tripwire on (`None`: off).
    #[must_use]
    pub fn with_tripwire(mut self, tripwire: Option<crate::settings::TripwireSettings>) -> Self {
        self.tripwire = tripwire.map(Arc::new);
        self
    }

    /// The data-loss tripwire's thresholds, when it is on.
    #[must_use]
    pub fn tripwire(&self) -> Option<&crate::settings::TripwireSettings> {
        self.tripwire.as_deref()
    }

    /// The same store (layout, tripwire) over another bucket.
    #[must_use]
    pub fn with_bucket(&self, bucket: Arc<dyn Bucket>) -> Self {
        Self { bucket, layout: self.layout.clone(), tripwire: self.tripwire.clone() }
    }

    /// Opens the store the settings name.
    pub async fn open(settings: &Settings) -> Result<Self, StoreError> {
        let bucket = open_bucket(&settings.store.url, &settings.store.options, &settings.gcp, "store.url").await?;
        let tripwire = settings.tripwire.enabled.then(|| settings.tripwire.clone());
        Ok(Self::new(bucket, Layout::new(settings.retention.weekly_on.0)).with_tripwire(tripwire))
    }

    /// The same store, writing and finding the named backup `label` (`labels/<label>/…`) instead
    /// of the dated ones: its manifest, dump and leases; a labelled backup leaves `latest/` alone.
    #[must_use]
    pub fn with_label(&self, label: crate::model::Label) -> Self {
        Self { bucket: self.bucket.clone(), layout: self.layout.labelled(label), tripwire: self.tripwire.clone() }
    }

    /// The bucket underneath.
    #[must_use]
    pub fn bucket(&self) -> &Arc<dyn Bucket> {
        &self.bucket
    }

    /// The layout.
    #[must_use]
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    async fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StoreError> {
        let Some(bytes) = self.bucket.get(key).await? else { return Ok(None) };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StoreError::Corrupt { key: key.to_owned(), reason: e.to_string() })
    }

    fn to_json<T: Serialize>(value: &T) -> Bytes {
        Bytes::from(serde_json::to_vec_pretty(value).expect("plain data serialises"))
    }

    /// The manifest of `db` for `date`, if that backup exists.
    pub async fn manifest(&self, db: &DatabaseRef, date: RunDate) -> Result<Option<Manifest>, StoreError> {
        self.get_json(&self.layout.manifest(db, date).path()).await
    }

    /// Streams a dump into `key`; visible only if the stream completes.
    pub async fn put_dump(&self, key: &Key, body: ByteReader) -> Result<ObjectInfo, StoreError> {
        Ok(self.bucket.put_stream(&key.path(), body).await?)
    }

    /// Writes the manifest (conditional create: a manifest is never replaced) and then `latest/`.
    pub async fn commit(&self, db: &DatabaseRef, date: RunDate, manifest: &Manifest) -> Result<PutOutcome, StoreError> {
        let key = self.layout.manifest(db, date).path();
        let outcome = self.bucket.put_if_absent(&key, Self::to_json(manifest)).await?;
        if outcome == PutOutcome::Created && self.layout.label().is_none() {
            self.update_latest(db, manifest).await?;
        }
        Ok(outcome)
    }

    /// The copy of the newest manifest of `db`.
    pub async fn latest(&self, db: &DatabaseRef) -> Result<Option<Manifest>, StoreError> {
        self.get_json(&Key::Latest { db: path_of(db) }.path()).await
    }

    async fn update_latest(&self, db: &DatabaseRef, manifest: &Manifest) -> Result<(), StoreError> {
        self.advance_latest(&path_of(db), manifest).await.map(|_| ())
    }

    /// Points `latest/` of `db` at `manifest` unless it already names a newer run date (a late
    /// backfill of an older day must not hide a newer backup) or this very manifest; `true` when
    /// it wrote. The export's commit and each off-site copy (in the copy's store) advance it.
    pub async fn advance_latest(&self, db: &DatabasePath, manifest: &Manifest) -> Result<bool, StoreError> {
        let key = Key::Latest { db: db.clone() }.path();
        let current = self.get_json::<Manifest>(&key).await.ok().flatten();
        if current.is_some_and(|current| current.run_date > manifest.run_date || current == *manifest) {
            return Ok(false);
        }
        self.bucket.put(&key, Self::to_json(manifest)).await?;
        Ok(true)
    }

    /// Writes a run ledger (once; a ledger is never replaced).
    pub async fn write_ledger<T: Serialize>(&self, key: &Key, ledger: &T) -> Result<(), StoreError> {
        self.bucket.put_if_absent(&key.path(), Self::to_json(ledger)).await?;
        Ok(())
    }

    /// Writes a JSON object once (conditional create): an existing object is left as it is.
    pub async fn create_json<T: Serialize>(&self, key: &Key, value: &T) -> Result<PutOutcome, StoreError> {
        Ok(self.bucket.put_if_absent(&key.path(), Self::to_json(value)).await?)
    }

    /// Reads a JSON object written by the service.
    pub async fn read<T: DeserializeOwned>(&self, key: &Key) -> Result<Option<T>, StoreError> {
        self.get_json(&key.path()).await
    }

    /// Records that a failure of (`db`, `date`) was reported; `true` only for the first caller.
    pub async fn mark_reported<T: Serialize>(
        &self,
        db: &DatabaseRef,
        date: RunDate,
        report: &T,
    ) -> Result<bool, StoreError> {
        let key = Key::Report { db: path_of(db), date }.path();
        Ok(self.bucket.put_if_absent(&key, Self::to_json(report)).await? == PutOutcome::Created)
    }
}
