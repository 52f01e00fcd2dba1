//! `gs://bucket/prefix` stores: [`GcsBucket`] implements [`Bucket`] on Google Cloud Storage.
//!
//! Owns the mapping from store keys to object names (`prefix/key`), the choice of upload kind for
//! each operation, and the classification of every GCS answer into [`BucketError`].
//!
//! Writes and reads go through the official `google-cloud-storage` [`Storage`] client, which speaks
//! the JSON API:
//! - `put_stream` is a resumable upload fed from the non-seekable [`ByteReader`]
//!   (`send_buffered`). GCS creates the object only when the final chunk is sent, which happens
//!   after the reader reports end of stream; a read error stops the upload before that, so no
//!   object appears and an earlier one is untouched. The unfinished session expires on its own.
//! - `put_if_absent` is one single-shot request with `ifGenerationMatch=0`: GCS answers 412 to every
//!   writer but the first. `put` is the same write without the precondition (resumable above the
//!   SDK's 16 MiB threshold).
//!   Both use `send_buffered` although the body is in memory: it computes the CRC32C up front and
//!   sends it in the metadata part. `send_unbuffered` would append it as a third, trailing
//!   multipart part, which fake-gcs-server stores as part of the object's bytes.
//! - `get`/`get_stream` use `read_object`.
//!
//! `head`, `list` and `delete` bypass the SDK on purpose (their plumbing is in the sibling `gcs_json`): in google-cloud-storage 1.21 object
//! metadata, listing and deletion exist only on `StorageControl`, which speaks gRPC
//! (`google.storage.v2`), and no emulator we can test against (fake-gcs-server included) supports
//! that. They are three small JSON API calls made with `reqwest`, authenticated with the same
//! `google-cloud-auth` credentials as the SDK client.
//!
//! The SDK client uses an attempt-limited retry policy. Its default policy retries for up to five
//! minutes, which turns a misconfigured endpoint into a long hang (the SDK drops the port from the
//! `Host` header, so an emulator off port 80 sends resumable uploads to the wrong place); a bounded
//! number of attempts surfaces a `Transient` error instead and leaves retrying to the task queue.

use std::error::Error as _;
use std::io;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use google_cloud_auth::credentials::{Builder as AdcBuilder, CacheableResource, Credentials, anonymous};
use google_cloud_auth::errors::CredentialsError;
use google_cloud_gax::error::rpc::Code;
use google_cloud_gax::retry_policy::RetryPolicyExt as _;
use google_cloud_storage::client::Storage;
use google_cloud_storage::error::{ReadError, WriteError};
use google_cloud_storage::retry_policy::RetryableErrors;
use google_cloud_storage::streaming_source::StreamingSource;
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode, Url};
use tokio::io::AsyncReadExt as _;

use super::gcs_json::{JsonObject, JsonObjectList, encode, from_http_status, parse_json, reqwest_error};
use super::{Bucket, BucketError, ByteReader, ByteStream, ObjectInfo, PutOutcome, Retention};

/// Google's endpoint, used for both the SDK client and the JSON calls when none is configured.
const DEFAULT_ENDPOINT: &str = "https://storage.googleapis.com";
/// Attempts per SDK call (the first one included).
const SDK_ATTEMPTS: u32 = 3;
/// How much `put_stream` reads from its source before handing a chunk to the SDK. The SDK gathers
/// chunks into its resumable-upload buffer (8 MiB by default), so memory stays bounded.
const READ_CHUNK: usize = 1024 * 1024;
/// Timeouts of the small JSON calls (`head`, `list` pages, `delete`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// A [`Bucket`] on Google Cloud Storage (`gs://bucket/prefix`).
///
/// Cloning is cheap and shares the connection pools and the credentials' token cache.
#[derive(Clone, Debug)]
pub struct GcsBucket {
    storage: Storage,
    http: reqwest::Client,
    credentials: Credentials,
    /// Endpoint of the JSON calls, without a trailing slash.
    endpoint: String,
    /// Bare bucket name, for the JSON calls.
    bucket: String,
    /// `projects/_/buckets/{bucket}`, the form the SDK expects.
    resource: String,
    /// `""` or a prefix without leading or trailing slash.
    prefix: String,
    /// `maxResults` of each list page; `None` lets the service choose (1000 on GCS).
    list_page_size: Option<u32>,
    /// Endpoint of the IAM policy call, when not `endpoint`.
    iam_endpoint: Option<String>,
}

impl GcsBucket {
    /// Connects to `gs://{bucket}/{prefix}`.
    ///
    /// `prefix` is `""` or a path such as `backups/prod`; it is prepended to every key
    /// (`prefix/key`), and [`Bucket::list`] answers keys relative to it.
    /// `endpoint`: `None` is Google's (`https://storage.googleapis.com`); `Some("http://127.0.0.2:80")`
    /// points at fake-gcs-server.
    /// `anonymous`: `true` sends no credentials (emulators); `false` uses Application Default
    /// Credentials.
    ///
    /// # Errors
    /// [`BucketError::Permanent`] when the bucket name is empty, the credentials cannot be loaded or
    /// a client cannot be built. Nothing is sent to the service here.
    pub async fn new(bucket: &str, prefix: &str, endpoint: Option<&str>, anonymous: bool) -> Result<Self, BucketError> {
        if bucket.is_empty() || bucket.contains('/') {
            return Err(BucketError::Permanent(format!("invalid GCS bucket name {bucket:?}")));
        }
        let credentials = if anonymous {
            anonymous::Builder::new().build()
        } else {
            AdcBuilder::default()
                .build()
                .map_err(|e| BucketError::Permanent(format!("loading Application Default Credentials: {e}")))?
        };

        let mut builder = Storage::builder()
            .with_credentials(credentials.clone())
            .with_retry_policy(RetryableErrors.with_attempt_limit(SDK_ATTEMPTS));
        if let Some(endpoint) = endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        let storage =
            builder.build().await.map_err(|e| BucketError::Permanent(format!("building the GCS client: {e}")))?;
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| BucketError::Permanent(format!("building the HTTP client: {e}")))?;

        Ok(Self {
            storage,
            http,
            credentials,
            endpoint: endpoint.unwrap_or(DEFAULT_ENDPOINT).trim_end_matches('/').to_owned(),
            bucket: bucket.to_owned(),
            resource: format!("projects/_/buckets/{bucket}"),
            prefix: prefix.trim_matches('/').to_owned(),
            list_page_size: None,
            iam_endpoint: None,
        })
    }

    /// Asks for at most `size` objects per list page instead of the service's default (1000).
    /// [`Bucket::list`] still answers every object; this only changes how many requests it makes.
    #[must_use]
    pub fn with_list_page_size(mut self, size: u32) -> Self {
        self.list_page_size = Some(size);
        self
    }

    /// The object name of a store key.
    fn object_name(&self, key: &str) -> String {
        if self.prefix.is_empty() { key.to_owned() } else { format!("{}/{key}", self.prefix) }
    }

    /// PATCHes `body` onto the metadata of `key`'s object (answering only `field`): `Ok(true)` once
    /// the store took it. `what` says what the change does, for errors.
    async fn patch_object(
        &self,
        key: &str,
        field: &str,
        what: &str,
        body: &serde_json::Value,
    ) -> Result<bool, BucketError> {
        let name = self.object_name(key);
        let what = format!("{what} {}", self.uri(&name));
        let url = self.objects_url(Some(&name), &format!("fields={field}"))?;
        let headers = self.auth_headers().await?;
        let response =
            self.http.patch(url).headers(headers).json(body).send().await.map_err(|e| reqwest_error(&what, &e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(true);
        }
        let detail: String = response.text().await.unwrap_or_default().chars().take(300).collect();
        Err(from_http_status(status.as_u16(), format!("{what}: HTTP {status}: {detail}")))
    }

    /// The retention `key`'s object has (`None`: none, or no such object).
    async fn retention(&self, key: &str) -> Result<Option<Retention>, BucketError> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Held {
            mode: String,
            retain_until_time: DateTime<Utc>,
        }
        #[derive(serde::Deserialize)]
        struct Object {
            retention: Option<Held>,
        }
        let name = self.object_name(key);
        let what = format!("reading the retention of {}", self.uri(&name));
        let url = self.objects_url(Some(&name), "fields=retention")?;
        let Some(body) = self.json_call(Method::GET, url, &what).await? else {
            return Ok(None);
        };
        let object: Object = parse_json(&what, &body)?;
        Ok(object.retention.map(|r| Retention { until: r.retain_until_time, locked: r.mode == "Locked" }))
    }

    /// The store key of an object name, or `None` when the name is outside the store's prefix.
    fn key_of<'a>(&self, name: &'a str) -> Option<&'a str> {
        if self.prefix.is_empty() { Some(name) } else { name.strip_prefix(self.prefix.as_str())?.strip_prefix('/') }
    }

    /// `gs://bucket/name`, for error messages.
    fn uri(&self, name: &str) -> String {
        format!("gs://{}/{name}", self.bucket)
    }

    /// URL of the bucket's objects in the JSON API (`/o`), or of one object (`/o/{name}`), with
    /// an already encoded query.
    fn objects_url(&self, name: Option<&str>, query: &str) -> Result<Url, BucketError> {
        let mut url = format!("{}/storage/v1/b/{}/o", self.endpoint, encode(&self.bucket));
        if let Some(name) = name {
            url = format!("{url}/{}", encode(name));
        }
        if !query.is_empty() {
            url = format!("{url}?{query}");
        }
        Url::parse(&url).map_err(|e| BucketError::Permanent(format!("invalid URL {url}: {e}")))
    }

    /// One JSON API call. Answers the body of a 2xx, `None` for 404, an error otherwise.
    /// Sends the IAM policy call of [`GcsBucket::iam_members`] to `endpoint` instead of the
    /// storage endpoint (fake-gcs-server has no IAM; tests serve it from a fake).
    #[must_use]
    pub fn with_iam_endpoint(mut self, endpoint: Option<String>) -> Self {
        self.iam_endpoint = endpoint;
        self
    }

    /// The members bound to any of `roles` in the bucket's IAM policy (`serviceAccount:…`, `group:…`).
    ///
    /// # Errors
    /// When the policy cannot be read (permission, missing bucket, transport).
    pub async fn iam_members(&self, roles: &[&str]) -> Result<std::collections::BTreeSet<String>, BucketError> {
        let endpoint = self.iam_endpoint.as_deref().unwrap_or(&self.endpoint);
        let what = format!("reading the IAM policy of gs://{}", self.bucket);
        let url = Url::parse(&format!("{endpoint}/storage/v1/b/{}/iam", encode(&self.bucket)))
            .map_err(|e| BucketError::Permanent(format!("{what}: {e}")))?;
        let body = self
            .json_call(Method::GET, url, &what)
            .await?
            .ok_or_else(|| BucketError::Permanent(format!("{what}: the bucket does not exist")))?;
        let policy: serde_json::Value = parse_json(&what, &body)?;
        Ok(policy["bindings"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|b| b["role"].as_str().is_some_and(|r| roles.contains(&r)))
            .flat_map(|b| b["members"].as_array().into_iter().flatten().filter_map(|m| m.as_str().map(str::to_owned)))
            .collect())
    }

    /// How many lifecycle rules the bucket has.
    ///
    /// # Errors
    /// When the bucket cannot be read.
    pub async fn lifecycle_rules(&self) -> Result<usize, BucketError> {
        let what = format!("reading gs://{}", self.bucket);
        let url = Url::parse(&format!("{}/storage/v1/b/{}?fields=lifecycle", self.endpoint, encode(&self.bucket)))
            .map_err(|e| BucketError::Permanent(format!("{what}: {e}")))?;
        let body = self
            .json_call(Method::GET, url, &what)
            .await?
            .ok_or_else(|| BucketError::Permanent(format!("{what}: the bucket does not exist")))?;
        let bucket: serde_json::Value = parse_json(&what, &body)?;
        Ok(bucket["lifecycle"]["rule"].as_array().map_or(0, Vec::len))
    }

    async fn json_call(&self, method: Method, url: Url, what: &str) -> Result<Option<Bytes>, BucketError> {
        let headers = self.auth_headers().await?;
        let response =
            self.http.request(method, url).headers(headers).send().await.map_err(|e| reqwest_error(what, &e))?;
        let status = response.status();
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let body = response.bytes().await.map_err(|e| reqwest_error(what, &e))?;
        if status.is_success() {
            return Ok(Some(body));
        }
        let detail = String::from_utf8_lossy(&body);
        let detail: String = detail.chars().take(500).collect();
        Err(from_http_status(status.as_u16(), format!("{what}: HTTP {status}: {detail}")))
    }

    /// Authorization headers for the JSON calls (none with anonymous credentials).
    async fn auth_headers(&self) -> Result<HeaderMap, BucketError> {
        match self.credentials.headers(http::Extensions::new()).await {
            Ok(CacheableResource::New { data, .. }) => Ok(data),
            // Only answered when the caller passes an entity tag, which we never do.
            Ok(CacheableResource::NotModified) => {
                Err(BucketError::Permanent("credentials answered NotModified without an entity tag".to_owned()))
            }
            Err(e) => Err(credentials_error("getting GCS credentials", &e)),
        }
    }
}

#[async_trait]
impl Bucket for GcsBucket {
    async fn put_stream(&self, key: &str, body: ByteReader) -> Result<ObjectInfo, BucketError> {
        let name = self.object_name(key);
        let failure = Arc::new(Mutex::new(None));
        let source = ReaderSource {
            reader: tokio::sync::Mutex::new(body),
            failure: Arc::clone(&failure),
            state: SourceState::Reading,
        };
        // The source has no size hint, so the SDK always picks a resumable upload, whatever the
        // size; `send_buffered` keeps each chunk until GCS confirms it, since the source cannot
        // rewind.
        let result = self.storage.write_object(&self.resource, &name, source).send_buffered().await;
        let source_error = failure.lock().unwrap_or_else(PoisonError::into_inner).take();
        match (result, source_error) {
            (_, Some(e)) => Err(BucketError::Source(e)),
            (Ok(object), None) => Ok(ObjectInfo {
                key: key.to_owned(),
                size: u64::try_from(object.size).unwrap_or_default(),
                version: Some(object.generation.to_string()),
            }),
            (Err(e), None) => Err(sdk_error(&format!("uploading {}", self.uri(&name)), &e)),
        }
    }

    async fn put_if_absent(&self, key: &str, body: Bytes) -> Result<PutOutcome, BucketError> {
        let name = self.object_name(key);
        // A single request whatever the size: the precondition is then checked exactly where the
        // object is created (fake-gcs-server also ignores it on resumable uploads).
        // The SDK retries conditional writes; if a first attempt succeeded but its answer was
        // lost, the retry gets 412 and the caller sees `AlreadyExists` for its own object. GCS
        // offers no way to tell these apart without reading the object back.
        let result = self
            .storage
            .write_object(&self.resource, &name, body)
            .set_if_generation_match(0)
            .with_resumable_upload_threshold(usize::MAX)
            .send_buffered()
            .await;
        match result {
            Ok(_) => Ok(PutOutcome::Created),
            Err(e) if e.http_status_code() == Some(412) => Ok(PutOutcome::AlreadyExists),
            Err(e) => Err(sdk_error(&format!("creating {}", self.uri(&name)), &e)),
        }
    }

    async fn put(&self, key: &str, body: Bytes) -> Result<(), BucketError> {
        let name = self.object_name(key);
        self.storage
            .write_object(&self.resource, &name, body)
            // Rewriting the same bytes is harmless, so let the SDK retry an unconditional write.
            .with_idempotency(true)
            .send_buffered()
            .await
            .map(drop)
            .map_err(|e| sdk_error(&format!("writing {}", self.uri(&name)), &e))
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, BucketError> {
        let name = self.object_name(key);
        let what = format!("reading {}", self.uri(&name));
        let result = self.storage.read_object(&self.resource, &name).send().await;
        let mut response = match result {
            Ok(response) => response,
            Err(e) if e.http_status_code() == Some(404) => return Ok(None),
            Err(e) => return Err(sdk_error(&what, &e)),
        };
        let mut contents = BytesMut::new();
        while let Some(chunk) = response.next().await {
            contents.extend_from_slice(&chunk.map_err(|e| sdk_error(&what, &e))?);
        }
        Ok(Some(contents.freeze()))
    }

    async fn get_stream(&self, key: &str) -> Result<Option<ByteStream>, BucketError> {
        let name = self.object_name(key);
        let what = format!("reading {}", self.uri(&name));
        let result = self.storage.read_object(&self.resource, &name).send().await;
        let response = match result {
            Ok(response) => response,
            Err(e) if e.http_status_code() == Some(404) => return Ok(None),
            Err(e) => return Err(sdk_error(&what, &e)),
        };
        let stream = futures::stream::unfold(response, move |mut response| {
            let what = what.clone();
            async move {
                let chunk = response.next().await?;
                Some((chunk.map_err(|e| sdk_error(&what, &e)), response))
            }
        });
        Ok(Some(Box::pin(stream)))
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, BucketError> {
        let name = self.object_name(key);
        let what = format!("reading metadata of {}", self.uri(&name));
        let url = self.objects_url(Some(&name), "fields=name,size,generation")?;
        let Some(body) = self.json_call(Method::GET, url, &what).await? else {
            return Ok(None);
        };
        let object: JsonObject = parse_json(&what, &body)?;
        Ok(Some(ObjectInfo {
            key: key.to_owned(),
            size: object.size.0,
            version: Some(object.generation.0.to_string()),
        }))
    }

    fn gs_uri(&self, key: &str) -> Option<String> {
        Some(self.uri(&self.object_name(key)))
    }

    async fn retain_until(&self, key: &str, until: DateTime<Utc>, locked: bool) -> Result<bool, BucketError> {
        let Some(ask) = Retention::to_ask(self.retention(key).await?, Retention { until, locked }) else {
            return Ok(true);
        };
        let body = serde_json::json!({"retention": {
            "mode": if ask.locked { "Locked" } else { "Unlocked" },
            "retainUntilTime": ask.until.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        }});
        self.patch_object(key, "retention", "setting the retention of", &body).await
    }

    async fn set_hold(&self, key: &str, on: bool) -> Result<bool, BucketError> {
        let body = serde_json::json!({ "temporaryHold": on });
        self.patch_object(key, "temporaryHold", "setting the temporary hold of", &body).await
    }

    async fn crc32c(&self, key: &str) -> Result<Option<String>, BucketError> {
        let name = self.object_name(key);
        let what = format!("reading the CRC32C of {}", self.uri(&name));
        let url = self.objects_url(Some(&name), "fields=crc32c")?;
        let Some(body) = self.json_call(Method::GET, url, &what).await? else {
            return Ok(None);
        };
        let value: serde_json::Value = parse_json(&what, &body)?;
        Ok(value.get("crc32c").and_then(|v| v.as_str()).map(str::to_owned))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, BucketError> {
        let full_prefix = if self.prefix.is_empty() { prefix.to_owned() } else { format!("{}/{prefix}", self.prefix) };
        let what = format!("listing gs://{}/{full_prefix}", self.bucket);
        let mut objects = Vec::new();
        let mut page_token: Option<String> = None;
        loop {
            let mut query = vec![
                format!("prefix={}", encode(&full_prefix)),
                "fields=items(name,size,generation),nextPageToken".to_owned(),
            ];
            if let Some(size) = self.list_page_size {
                query.push(format!("maxResults={size}"));
            }
            if let Some(token) = &page_token {
                query.push(format!("pageToken={}", encode(token)));
            }
            let url = self.objects_url(None, &query.join("&"))?;
            let Some(body) = self.json_call(Method::GET, url, &what).await? else {
                return Err(BucketError::Permanent(format!("{what}: bucket not found")));
            };
            let page: JsonObjectList = parse_json(&what, &body)?;
            for object in page.items {
                // Skip names outside the prefix (none are expected) and the empty key of a
                // `prefix/` folder placeholder some tools create.
                match self.key_of(&object.name) {
                    Some(key) if !key.is_empty() => objects.push(ObjectInfo {
                        key: key.to_owned(),
                        size: object.size.0,
                        version: Some(object.generation.0.to_string()),
                    }),
                    _ => {}
                }
            }
            match page.next_page_token {
                Some(token) if !token.is_empty() => page_token = Some(token),
                _ => break,
            }
        }
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(objects)
    }

    async fn delete(&self, key: &str) -> Result<(), BucketError> {
        let name = self.object_name(key);
        let what = format!("deleting {}", self.uri(&name));
        let url = self.objects_url(Some(&name), "")?;
        // 404 (already gone) is success.
        self.json_call(Method::DELETE, url, &what).await.map(drop)
    }
}

/// Feeds a [`ByteReader`] to the SDK's buffered upload in chunks of up to [`READ_CHUNK`] bytes.
///
/// The SDK requires `Send + Sync` sources; the reader is only `Send`, so it sits in a mutex that is
/// never locked (`get_mut` through `&mut self`). A read error is parked in `failure`, where
/// `put_stream` finds it with its original kind and message; the SDK gets a marker error that
/// ends the upload.
struct ReaderSource {
    reader: tokio::sync::Mutex<ByteReader>,
    failure: Arc<Mutex<Option<io::Error>>>,
    state: SourceState,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum SourceState {
    Reading,
    Ended,
    /// Sticky: a failed source never reports end of stream, which would finalize a truncated
    /// object if the SDK ever asked again.
    Failed,
}

/// What the SDK sees when the upload source fails; the real error is in [`ReaderSource::failure`].
#[derive(Debug, thiserror::Error)]
#[error("the upload source failed")]
struct SourceFailed;

impl StreamingSource for ReaderSource {
    type Error = SourceFailed;

    async fn next(&mut self) -> Option<Result<Bytes, Self::Error>> {
        match self.state {
            SourceState::Reading => {}
            SourceState::Ended => return None,
            SourceState::Failed => return Some(Err(SourceFailed)),
        }
        let reader = self.reader.get_mut();
        let mut chunk = BytesMut::with_capacity(READ_CHUNK);
        while chunk.len() < READ_CHUNK {
            match reader.read_buf(&mut chunk).await {
                Ok(0) => {
                    self.state = SourceState::Ended;
                    break;
                }
                Ok(_) => {}
                Err(e) => {
                    self.state = SourceState::Failed;
                    *self.failure.lock().unwrap_or_else(PoisonError::into_inner) = Some(e);
                    return Some(Err(SourceFailed));
                }
            }
        }
        if chunk.is_empty() { None } else { Some(Ok(chunk.freeze())) }
    }
}

fn credentials_error(what: &str, error: &CredentialsError) -> BucketError {
    let message = format!("{what}: {error}");
    if error.is_transient() { BucketError::Transient(message) } else { BucketError::Permanent(message) }
}

/// Classifies an error of the SDK client.
fn sdk_error(what: &str, error: &google_cloud_storage::Error) -> BucketError {
    if let Some(status) = error.http_status_code() {
        return from_http_status(status, format!("{what}: HTTP {status}: {error}"));
    }
    let message = format!("{what}: {error}");
    if let Some(status) = error.status() {
        return match status.code {
            Code::Unavailable | Code::ResourceExhausted | Code::DeadlineExceeded | Code::Internal | Code::Aborted => {
                BucketError::Transient(message)
            }
            _ => BucketError::Permanent(message),
        };
    }
    if error.is_timeout() || error.is_io() || error.is_connect() || error.is_transport() || error.is_exhausted() {
        return BucketError::Transient(message);
    }
    // Look through the causes for the cases the flags above do not tell apart.
    let mut cause = error.source();
    while let Some(current) = cause {
        if let Some(e) = current.downcast_ref::<CredentialsError>() {
            return credentials_error(what, e);
        }
        // Bytes damaged or lost in transit: the same transfer may well succeed again.
        if matches!(
            current.downcast_ref::<ReadError>(),
            Some(ReadError::ChecksumMismatch(_) | ReadError::ShortRead(_) | ReadError::LongRead { .. })
        ) || matches!(current.downcast_ref::<WriteError>(), Some(WriteError::ChecksumMismatch { .. }))
        {
            return BucketError::Transient(message);
        }
        cause = current.source();
    }
    BucketError::Permanent(message)
}
