//! `Bucket` over `object_store`: the local filesystem (`file://`), S3 (`s3://`) and Azure Blob (`az://`).
//!
//! Streamed puts use multipart uploads (8 MiB parts, at most two in flight), so memory stays bounded
//! and the object appears only when the upload completes; the local filesystem stages to a hidden
//! file and renames it into place. Conditional creates use `PutMode::Create`. On S3, object
//! retention and holds are Object Lock calls ([`super::s3_lock`]).

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3Builder, S3ConditionalPut};
use object_store::azure::MicrosoftAzureBuilder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, WriteMultipart};
use tokio::io::AsyncReadExt;

use super::s3_lock::S3Lock;
use super::{Bucket, BucketError, ByteReader, ByteStream, ObjectInfo, PutOutcome};

/// Size of one multipart part; S3 needs at least 5 MiB.
const PART_SIZE: usize = 8 * 1024 * 1024;
/// Read buffer between the source and the multipart writer.
const READ_BUF: usize = 256 * 1024;

/// A bucket backed by an `object_store` implementation.
#[derive(Debug)]
pub struct ObjectStoreBucket {
    store: Arc<dyn ObjectStore>,
    /// Object Lock calls, for `s3://` stores.
    lock: Option<S3Lock>,
}

impl ObjectStoreBucket {
    /// Opens `file://DIR` (created if missing; relative paths are resolved against the working
    /// directory), `s3://BUCKET[/PREFIX]` or `az://CONTAINER[/PREFIX]`, applying `options`.
    pub fn open(url: &url::Url, options: &std::collections::BTreeMap<String, String>) -> Result<Self, BucketError> {
        let permanent = |e: object_store::Error| BucketError::Permanent(e.to_string());
        let prefix = url.path().trim_matches('/').to_owned();
        let mut lock = None;
        let store: Arc<dyn ObjectStore> = match url.scheme() {
            "file" => {
                // `file://./backups` parses with host `.`: take the text after the scheme as the path.
                let raw = url.as_str().trim_start_matches("file://");
                let dir = std::path::absolute(raw).map_err(|e| BucketError::Permanent(format!("{raw}: {e}")))?;
                std::fs::create_dir_all(&dir)
                    .map_err(|e| BucketError::Permanent(format!("cannot create {}: {e}", dir.display())))?;
                let store = Arc::new(LocalFileSystem::new_with_prefix(&dir).map_err(permanent)?);
                return Ok(Self { store, lock: None });
            }
            "s3" => {
                let mut b = AmazonS3Builder::from_env()
                    .with_url(url.as_str())
                    .with_conditional_put(S3ConditionalPut::ETagMatch);
                for (k, v) in options {
                    b = b.with_config(k.parse().map_err(permanent)?, v);
                }
                let s3 = Arc::new(b.clone().build().map_err(permanent)?);
                lock = Some(S3Lock::new(&b, s3.clone(), url.host_str().unwrap_or_default(), &prefix));
                s3
            }
            "az" => {
                let mut b = MicrosoftAzureBuilder::from_env().with_url(url.as_str());
                for (k, v) in options {
                    b = b.with_config(k.parse().map_err(permanent)?, v);
                }
                Arc::new(b.build().map_err(permanent)?)
            }
            other => return Err(BucketError::Permanent(format!("unsupported scheme {other}"))),
        };
        let store = if prefix.is_empty() { store } else { Arc::new(PrefixStore::new(store, prefix.as_str())) };
        Ok(Self { store, lock })
    }
}

/// The `object_store` path of a store key, taken verbatim. `Path::from` would percent-encode the
/// key's `%` once more (a key is already encoded by `Layout`), so listings would give back keys that
/// differ from the ones written; `Path::parse` keeps the key as it is and refuses only what no
/// `Layout` key holds (empty, `.` or `..` segments, ASCII control characters).
fn path(key: &str) -> Result<Path, BucketError> {
    Path::parse(key).map_err(|e| BucketError::Permanent(format!("invalid object key {key:?}: {e}")))
}

/// Bytes read from a local file per blocking call of [`file_stream`].
const FILE_CHUNK: u64 = 1024 * 1024;

/// The bytes `range` of a local object's `file`, [`FILE_CHUNK`] bytes per blocking read.
fn file_stream(file: std::fs::File, range: std::ops::Range<u64>) -> ByteStream {
    let start = Some(range.start);
    futures::stream::try_unfold((file, start, range.end - range.start), |(mut file, start, left)| async move {
        if left == 0 {
            return Ok(None);
        }
        let read = tokio::task::spawn_blocking(move || {
            use std::io::{Read as _, Seek as _};
            if let Some(at) = start {
                file.seek(std::io::SeekFrom::Start(at))?;
            }
            let want = left.min(FILE_CHUNK);
            let mut buf = Vec::with_capacity(usize::try_from(want).unwrap_or(0));
            let n = (&mut file).take(want).read_to_end(&mut buf)?;
            if n == 0 {
                return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the file ended early"));
            }
            Ok((Bytes::from(buf), file, left - n as u64))
        })
        .await;
        match read {
            Ok(Ok((chunk, file, left))) => Ok(Some((chunk, (file, None, left)))),
            Ok(Err(e)) => Err(BucketError::Transient(format!("reading a local object: {e}"))),
            Err(e) => Err(BucketError::Transient(format!("reading a local object: {e}"))),
        }
    })
    .boxed()
}

fn classify(e: object_store::Error) -> BucketError {
    use object_store::Error as E;
    match e {
        E::NotFound { .. }
        | E::InvalidPath { .. }
        | E::NotSupported { .. }
        | E::NotImplemented { .. }
        | E::PermissionDenied { .. }
        | E::Unauthenticated { .. }
        | E::UnknownConfigurationKey { .. }
        | E::AlreadyExists { .. }
        | E::Precondition { .. } => BucketError::Permanent(e.to_string()),
        other => BucketError::Transient(other.to_string()),
    }
}

fn info(meta: &object_store::ObjectMeta) -> ObjectInfo {
    ObjectInfo {
        key: meta.location.as_ref().to_owned(),
        size: meta.size,
        version: meta.e_tag.clone().or_else(|| meta.version.clone()),
    }
}

#[async_trait]
impl Bucket for ObjectStoreBucket {
    async fn put_stream(&self, key: &str, mut body: ByteReader) -> Result<ObjectInfo, BucketError> {
        let upload = self.store.put_multipart(&path(key)?).await.map_err(classify)?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        let mut buf = vec![0u8; READ_BUF];
        loop {
            let n = match body.read(&mut buf).await {
                Ok(n) => n,
                Err(e) => {
                    // Nothing may become visible: abort the upload, then report the source's error.
                    let _ = writer.abort().await;
                    return Err(BucketError::Source(e));
                }
            };
            if n == 0 {
                break;
            }
            if let Err(e) = writer.wait_for_capacity(2).await {
                let _ = writer.abort().await;
                return Err(classify(e));
            }
            writer.write(&buf[..n]);
        }
        writer.finish().await.map_err(classify)?;
        self.head(key).await?.ok_or_else(|| BucketError::Transient(format!("{key} vanished after its upload")))
    }

    async fn put_if_absent(&self, key: &str, body: Bytes) -> Result<PutOutcome, BucketError> {
        let opts = PutOptions { mode: PutMode::Create, ..PutOptions::default() };
        match self.store.put_opts(&path(key)?, PutPayload::from(body), opts).await {
            Ok(_) => Ok(PutOutcome::Created),
            Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => {
                Ok(PutOutcome::AlreadyExists)
            }
            Err(e) => Err(classify(e)),
        }
    }

    async fn put(&self, key: &str, body: Bytes) -> Result<(), BucketError> {
        self.store.put(&path(key)?, PutPayload::from(body)).await.map(|_| ()).map_err(classify)
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, BucketError> {
        match self.store.get(&path(key)?).await {
            Ok(r) => r.bytes().await.map(Some).map_err(classify),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(classify(e)),
        }
    }

    async fn get_stream(&self, key: &str) -> Result<Option<ByteStream>, BucketError> {
        match self.store.get(&path(key)?).await {
            Ok(r) => Ok(Some(match r.payload {
                // A local file: read in large chunks (the crate's own stream reads 8 KiB per blocking call).
                object_store::GetResultPayload::File(file, _) => file_stream(file, r.range),
                object_store::GetResultPayload::Stream(s) => s.map_err(classify).boxed(),
            })),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(classify(e)),
        }
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, BucketError> {
        match self.store.head(&path(key)?).await {
            Ok(meta) => Ok(Some(info(&meta))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(classify(e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, BucketError> {
        let prefix = prefix.trim_end_matches('/');
        let prefix = if prefix.is_empty() { None } else { Some(path(prefix)?) };
        let mut out: Vec<ObjectInfo> =
            self.store.list(prefix.as_ref()).map_ok(|m| info(&m)).try_collect().await.map_err(classify)?;
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn delete(&self, key: &str) -> Result<(), BucketError> {
        match self.store.delete(&path(key)?).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(classify(e)),
        }
    }

    async fn retain_until(&self, key: &str, until: DateTime<Utc>, locked: bool) -> Result<bool, BucketError> {
        let Some(lock) = &self.lock else { return Ok(false) };
        lock.retain_until(key, until, locked).await?;
        Ok(true)
    }

    async fn retention_available(&self) -> Result<bool, BucketError> {
        match &self.lock {
            Some(lock) => lock.enabled().await,
            None => Ok(false),
        }
    }

    async fn set_hold(&self, key: &str, on: bool) -> Result<bool, BucketError> {
        let Some(lock) = &self.lock else { return Ok(false) };
        lock.set_legal_hold(key, on).await
    }
}
