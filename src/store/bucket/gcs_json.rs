//! The JSON API plumbing of the `gs://` backend (`crate::store::bucket::gcs`): the object and
//! listing resources it reads, the percent-encoding of names and query values, and the
//! classification of an HTTP answer or a transport error into a [`BucketError`].

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;

use crate::store::bucket::BucketError;

/// Everything but RFC 3986 unreserved characters is escaped, `/` included (the JSON API takes the
/// whole object name as one path segment) and `+` too (a query value must not read as a space).
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// The fields of a JSON API object resource we read.
#[derive(Deserialize)]
pub(super) struct JsonObject {
    #[serde(default)]
    pub(super) name: String,
    pub(super) size: JsonU64,
    pub(super) generation: JsonU64,
}

/// One page of a JSON API object listing.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct JsonObjectList {
    #[serde(default)]
    pub(super) items: Vec<JsonObject>,
    pub(super) next_page_token: Option<String>,
}

/// A 64-bit integer, which the JSON API sends as a string (`"size": "123"`); plain numbers are
/// accepted too.
pub(super) struct JsonU64(pub(super) u64);

impl<'de> Deserialize<'de> for JsonU64 {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Number(n) => Ok(Self(n)),
            Raw::Text(s) => s.parse().map(Self).map_err(serde::de::Error::custom),
        }
    }
}

/// Percent-encodes a path segment or query value.
pub(super) fn encode(value: &str) -> percent_encoding::PercentEncode<'_> {
    utf8_percent_encode(value, COMPONENT)
}

pub(super) fn parse_json<T: for<'de> Deserialize<'de>>(what: &str, body: &[u8]) -> Result<T, BucketError> {
    serde_json::from_slice(body).map_err(|e| BucketError::Permanent(format!("{what}: unexpected answer: {e}")))
}

/// 408, 429 and 5xx are worth retrying; every other status is a refusal.
pub(super) fn from_http_status(status: u16, message: String) -> BucketError {
    match status {
        408 | 429 | 500..=599 => BucketError::Transient(message),
        _ => BucketError::Permanent(message),
    }
}

pub(super) fn reqwest_error(what: &str, error: &reqwest::Error) -> BucketError {
    let message = format!("{what}: {error}");
    if error.is_builder() || error.is_redirect() {
        BucketError::Permanent(message)
    } else {
        // Timeouts, refused or reset connections, truncated bodies.
        BucketError::Transient(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_values_are_fully_escaped() {
        let escaped = encode("a/b c%2F+~x.y_z-1").to_string();
        assert_eq!(escaped, "a%2Fb%20c%252F%2B~x.y_z-1");
    }

    #[test]
    fn json_integers_are_read_from_strings_and_numbers() {
        let object: JsonObject = serde_json::from_str(r#"{"name":"k","size":"20971520","generation":17}"#).unwrap();
        assert_eq!((object.size.0, object.generation.0), (20_971_520, 17));
    }

    #[test]
    fn statuses_are_classified() {
        for transient in [408, 429, 500, 503] {
            assert!(from_http_status(transient, String::new()).is_transient());
        }
        for permanent in [400, 401, 403, 404, 409, 412] {
            assert!(!from_http_status(permanent, String::new()).is_transient());
        }
    }
}
