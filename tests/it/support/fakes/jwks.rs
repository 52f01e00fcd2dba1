//! A JWKS endpoint (wiremock) serving the public halves of the test-only RSA keys in
//! `tests/it/fixtures`, and Google-shaped ID tokens signed with them (or forged in the usual ways).

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// The audience test services are configured with.
pub const AUDIENCE: &str = "https://data-backup.test";

/// A test signing key: its `kid`, the private half and the public JWK.
pub struct TestKey {
    /// Key id (`kid`) in token headers and in the JWKS.
    pub kid: String,
    /// Private half.
    pub encoding: EncodingKey,
    /// Public half, as served.
    pub jwk: Value,
}

/// Test key `n` (1 or 2) from `tests/it/fixtures/test-only-oidc-key-N.der`.
pub fn key(n: u8) -> TestKey {
    let path = format!("{}/tests/it/fixtures/test-only-oidc-key-{n}.der", env!("CARGO_MANIFEST_DIR"));
    let der = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let encoding = EncodingKey::from_rsa_der(&der);
    let kid = format!("test-key-{n}");
    let mut jwk = serde_json::to_value(Jwk::from_encoding_key(&encoding, Algorithm::RS256).expect("public half"))
        .expect("JWK as JSON");
    jwk["kid"] = json!(kid);
    jwk["use"] = json!("sig");
    TestKey { kid, encoding, jwk }
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_secs()).expect("fits")
}

/// The claims of a valid Google ID token for `email` (issued now, valid an hour).
pub fn claims(email: &str) -> Value {
    let now = now();
    json!({
        "iss": "https://accounts.google.com",
        "aud": AUDIENCE,
        "azp": "112233445566778899",
        "sub": "112233445566778899",
        "email": email,
        "email_verified": true,
        "iat": now,
        "exp": now + 3600,
    })
}

/// `claims` with `changes` merged in (a `null` removes the claim).
pub fn with(mut claims: Value, changes: &Value) -> Value {
    for (k, v) in changes.as_object().expect("an object") {
        if v.is_null() {
            claims.as_object_mut().expect("an object").remove(k);
        } else {
            claims[k] = v.clone();
        }
    }
    claims
}

/// An RS256 token signed by `key`, with its `kid`.
pub fn sign(key: &TestKey, claims: &Value) -> String {
    sign_as(key, &key.kid, claims)
}

/// An RS256 token signed by `key` but naming `kid` in its header.
pub fn sign_as(key: &TestKey, kid: &str, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &key.encoding).expect("signs")
}

/// An RS256 token with no `kid` in its header.
pub fn sign_without_kid(key: &TestKey, claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), claims, &key.encoding).expect("signs")
}

/// The classic confusion attack: HS256 keyed with the public key's modulus, naming `key`'s `kid`.
pub fn hs256_with_public_key(key: &TestKey, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(key.kid.clone());
    let secret = key.jwk["n"].as_str().expect("modulus");
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret.as_bytes())).expect("signs")
}

/// An unsigned token: `{"alg":"none"}`, empty signature.
pub fn unsigned(kid: &str, claims: &Value) -> String {
    let header = json!({"alg": "none", "typ": "JWT", "kid": kid});
    format!("{}.{}.", b64url(header.to_string().as_bytes()), b64url(claims.to_string().as_bytes()))
}

/// Unpadded base64url (RFC 4648 §5).
fn b64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

/// A wiremock JWKS endpoint at `/oauth2/v3/certs`.
pub struct Jwks {
    /// The server.
    pub server: MockServer,
}

impl Jwks {
    /// Serves the public halves of `keys`.
    pub async fn serving(keys: &[&TestKey]) -> Self {
        let jwks = Self { server: MockServer::start().await };
        jwks.serve(keys).await;
        jwks
    }

    /// From now on serves the public halves of `keys` (a key rotation).
    pub async fn serve(&self, keys: &[&TestKey]) {
        self.server.reset().await;
        let body = json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()});
        Mock::given(method("GET"))
            .and(path("/oauth2/v3/certs"))
            .respond_with(
                ResponseTemplate::new(200)
                    .insert_header("cache-control", "public, max-age=21600, must-revalidate, no-transform")
                    .set_body_json(body),
            )
            .mount(&self.server)
            .await;
    }

    /// From now on answers 503 (an outage).
    pub async fn fail(&self) {
        self.server.reset().await;
        Mock::given(method("GET")).respond_with(ResponseTemplate::new(503)).mount(&self.server).await;
    }

    /// The URL to configure as `auth.jwks_url`.
    pub fn url(&self) -> String {
        format!("{}/oauth2/v3/certs", self.server.uri())
    }

    /// How many times the keys were fetched since the last `serve`/`fail`.
    pub async fn fetches(&self) -> usize {
        self.server.received_requests().await.map_or(0, |r| r.len())
    }
}

/// `[auth]` TOML for an OIDC-protected service using `jwks_url`, with `extra` lines appended.
pub fn auth_toml(jwks_url: &str, extra: &str) -> String {
    format!(
        "[auth]\noidc_audience = \"{AUDIENCE}\"\noidc_allowed_emails = [\"ops@example.com\"]\njwks_url = \"{jwks_url}\"\n{extra}\n"
    )
}
