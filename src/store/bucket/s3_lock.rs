//! S3 Object Lock for `s3://` stores: [`S3Lock::retain_until`] sets an object's retention
//! (`PutObjectRetention`: mode `GOVERNANCE` or `COMPLIANCE`, a retain-until date; never shorter or
//! weaker than the one the object has, which `HeadObject` tells) and
//! [`S3Lock::set_legal_hold`] its legal hold (`PutObjectLegalHold`). `object_store` has neither
//! call, so each is one request signed with `object_store`'s own SigV4 signer ([`AwsAuthorizer`])
//! and the store's own credential provider, at the URL `object_store` itself uses for the object
//! (its bucket endpoint, the key percent-encoded the same way). Both need a bucket created with
//! Object Lock enabled; on another bucket S3 refuses them (`InvalidRequest`), which is reported.

use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey, AwsAuthorizer};
use object_store::client::{HttpRequest, HttpRequestBody};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sha2::{Digest as _, Sha256};

use super::{BucketError, Retention};

/// The characters `object_store` percent-encodes in an S3 object path (all but alphanumerics and
/// `-._~/`), so the lock names the object the store wrote.
const PATH_ENCODE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~').remove(b'/');

/// How long one Object Lock call may take before it counts as a transient failure.
const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The Object Lock calls of one `s3://` store.
#[derive(Debug)]
pub struct S3Lock {
    s3: Arc<AmazonS3>,
    /// `https://s3.<region>.amazonaws.com/<bucket>`, `<endpoint>/<bucket>`, ... as `object_store`
    /// builds it; no trailing `/`.
    bucket_endpoint: String,
    /// The store URL's prefix (`s3://bucket/<prefix>`), without slashes around it.
    prefix: String,
    region: String,
    http: reqwest::Client,
}

impl S3Lock {
    /// The lock of the store `builder` built as `s3`: `bucket` (the `s3://` URL's host, which the
    /// builder parses only as it builds) under `prefix`.
    pub fn new(builder: &AmazonS3Builder, s3: Arc<AmazonS3>, bucket: &str, prefix: &str) -> Self {
        let config = |key| builder.get_config_value(&key).filter(|v| !v.is_empty());
        let region = config(AmazonS3ConfigKey::Region).unwrap_or_else(|| "us-east-1".to_owned());
        let virtual_hosted = config(AmazonS3ConfigKey::VirtualHostedStyleRequest).is_some_and(|v| v == "true");
        // As object_store: the S3-specific endpoint (`aws_endpoint_url_s3`) before the general one.
        let endpoint = config(AmazonS3ConfigKey::S3Endpoint).or_else(|| config(AmazonS3ConfigKey::Endpoint));
        let bucket_endpoint = match (endpoint, virtual_hosted) {
            (Some(endpoint), true) => endpoint.trim_end_matches('/').to_owned(),
            (Some(endpoint), false) => format!("{}/{bucket}", endpoint.trim_end_matches('/')),
            (None, true) => format!("https://{bucket}.s3.{region}.amazonaws.com"),
            (None, false) => format!("https://s3.{region}.amazonaws.com/{bucket}"),
        };
        // `PrefixStore` stores its prefix as `Path::from` makes it (each part escaped once more):
        // the objects' keys begin with that, not with the URL's path as it is.
        let prefix = object_store::path::Path::from(prefix).as_ref().to_owned();
        let http = reqwest::Client::builder().timeout(CALL_TIMEOUT).build().unwrap_or_default();
        Self { s3, bucket_endpoint, prefix, region, http }
    }

    /// Retains the current version of `key` until `until`: mode `COMPLIANCE` when `locked`
    /// (nobody, the root account included, can shorten it), else `GOVERNANCE`.
    pub async fn retain_until(&self, key: &str, until: DateTime<Utc>, locked: bool) -> Result<(), BucketError> {
        let Some(ask) = Retention::to_ask(self.retention(key).await?, Retention { until, locked }) else {
            return Ok(());
        };
        let mode = if ask.locked { "COMPLIANCE" } else { "GOVERNANCE" };
        let until = ask.until.to_rfc3339_opts(SecondsFormat::AutoSi, true);
        let body = format!(
            "<Retention xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Mode>{mode}</Mode>\
             <RetainUntilDate>{until}</RetainUntilDate></Retention>"
        );
        let what = "setting the Object Lock retention of";
        if self.put(key, "retention", body, what).await? {
            return Ok(());
        }
        Err(BucketError::Permanent(format!(
            "{what} {key}: the bucket has no Object Lock (S3 enables it only when a bucket is created)"
        )))
    }

    /// The retention the current version of `key` has, from its `HeadObject` headers (S3 sends
    /// them to a caller allowed `s3:GetObjectRetention`); `None`: none, or no such object.
    async fn retention(&self, key: &str) -> Result<Option<Retention>, BucketError> {
        let what = format!("reading the Object Lock retention of {key}");
        let (status, headers, text) =
            self.call(http::Method::HEAD, &self.object_url(key, None), Bytes::new(), &what).await?;
        if status == http::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(failure(&what, status, &text));
        }
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let Some(until) = header("x-amz-object-lock-retain-until-date") else { return Ok(None) };
        let until = DateTime::parse_from_rfc3339(until)
            .map_err(|e| BucketError::Permanent(format!("{what}: retain-until date `{until}`: {e}")))?
            .with_timezone(&Utc);
        Ok(Some(Retention { until, locked: header("x-amz-object-lock-mode") == Some("COMPLIANCE") }))
    }

    /// Sets (`on`) or clears the legal hold of the current version of `key`; `false` when the
    /// bucket has no Object Lock (then the store has no holds, as a `file://` store has none).
    pub async fn set_legal_hold(&self, key: &str, on: bool) -> Result<bool, BucketError> {
        let status = if on { "ON" } else { "OFF" };
        let body = format!(
            "<LegalHold xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Status>{status}</Status></LegalHold>"
        );
        self.put(key, "legal-hold", body, "setting the legal hold of").await
    }

    /// Whether the bucket has Object Lock enabled (`GetObjectLockConfiguration`).
    pub async fn enabled(&self) -> Result<bool, BucketError> {
        let url = format!("{}?object-lock", self.bucket_endpoint);
        let (status, _, text) =
            self.call(http::Method::GET, &url, Bytes::new(), "reading the Object Lock of the bucket").await?;
        if status.is_success() {
            return Ok(text.contains("<ObjectLockEnabled>Enabled</ObjectLockEnabled>"));
        }
        if status == http::StatusCode::NOT_FOUND && text.contains("ObjectLockConfigurationNotFound") {
            return Ok(false);
        }
        Err(failure("reading the Object Lock of the bucket", status, &text))
    }

    /// The URL of `key`'s object as `object_store` addresses it, with `?subresource` when given.
    fn object_url(&self, key: &str, subresource: Option<&str>) -> String {
        let path = if self.prefix.is_empty() { key.to_owned() } else { format!("{}/{key}", self.prefix) };
        let query = subresource.map(|s| format!("?{s}")).unwrap_or_default();
        format!("{}/{}{query}", self.bucket_endpoint, utf8_percent_encode(&path, PATH_ENCODE))
    }

    /// `PUT <object>?<subresource>` with the XML `body`, signed; `what` words the error. `false`
    /// when S3 answers that the bucket has no Object Lock configuration.
    async fn put(&self, key: &str, subresource: &str, body: String, what: &str) -> Result<bool, BucketError> {
        let url = self.object_url(key, Some(subresource));
        let what = format!("{what} {key}");
        let (status, _, text) = self.call(http::Method::PUT, &url, Bytes::from(body), &what).await?;
        if status.is_success() {
            return Ok(true);
        }
        if status == http::StatusCode::BAD_REQUEST && text.replace(' ', "").contains("ObjectLockConfiguration") {
            return Ok(false);
        }
        Err(failure(&what, status, &text))
    }

    /// One signed request: its status, headers and body. A non-empty `body` is XML with its SHA-256
    /// checksum (Object Lock calls need an integrity check: Content-MD5 or a checksum).
    async fn call(
        &self,
        method: http::Method,
        url: &str,
        body: Bytes,
        what: &str,
    ) -> Result<(http::StatusCode, reqwest::header::HeaderMap, String), BucketError> {
        let mut builder = http::Request::builder().method(method.clone()).uri(url);
        if !body.is_empty() {
            let checksum = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&body));
            builder = builder
                .header(http::header::CONTENT_TYPE, "application/xml")
                .header("x-amz-sdk-checksum-algorithm", "SHA256")
                .header("x-amz-checksum-sha256", checksum);
        }
        let mut request: HttpRequest = builder
            .body(HttpRequestBody::from(body.clone()))
            .map_err(|e| BucketError::Permanent(format!("{what}: {e}")))?;
        let credential = self
            .s3
            .credentials()
            .get_credential()
            .await
            .map_err(|e| BucketError::Transient(format!("{what}: no S3 credentials: {e}")))?;
        AwsAuthorizer::new(&credential, "s3", &self.region)
            .try_authorize(&mut request, None)
            .map_err(|e| BucketError::Permanent(format!("{what}: cannot sign the request: {e}")))?;
        let mut send = self.http.request(method, url).body(body);
        for (name, value) in request.headers() {
            send = send.header(name, value);
        }
        let response = send.send().await.map_err(|e| BucketError::Transient(format!("{what}: {e}")))?;
        let (status, headers) = (response.status(), response.headers().clone());
        Ok((status, headers, response.text().await.unwrap_or_default()))
    }
}

/// The error of an answer `status` with the XML error `text`: only its `<Code>` and `<Message>`
/// (a signature error's body echoes the signed request, security token included).
fn failure(what: &str, status: http::StatusCode, text: &str) -> BucketError {
    let element = |name: &str| {
        let start = text.find(&format!("<{name}>"))? + name.len() + 2;
        let end = text[start..].find(&format!("</{name}>"))? + start;
        Some(text[start..end].to_owned())
    };
    let code = element("Code").unwrap_or_else(|| "no error code".to_owned());
    let message = element("Message").map(|m| format!(": {m}")).unwrap_or_default();
    let message = format!("{what}: S3 answered {status} {code}{message}");
    if status.is_server_error() || status.as_u16() == 429 {
        BucketError::Transient(message)
    } else {
        BucketError::Permanent(message)
    }
}
