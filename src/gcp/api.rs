//! The rate-limited, retrying caller of one Google API ([`Api`]), how its calls finally fail
//! ([`CallError`]) and what it counts ([`ApiCounters`]).
//!
//! Politeness: every API has its own client-side rate limit (calls spaced evenly, so per-second
//! quota enforcement never sees a burst) and its own bound on calls in flight. 429 and 5xx answers
//! and transport errors are retried (bounded attempts), waiting `Retry-After` when the answer has
//! one, else an exponential backoff with jitter. The SDK's own retry loop is off (the clients are
//! built with `NeverRetry`) so that every attempt passes the limiter.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use google_cloud_gax::error::Error as GaxError;
use google_cloud_gax::error::rpc::StatusDetails;
use tokio::sync::{Mutex, Semaphore};

use crate::util::backoff::Backoff;
use crate::util::error::error_chain;

/// Doublings of an API's retry delay: the 11th and later retries wait no longer than the 10th.
const MAX_DOUBLINGS: u32 = 10;

/// Calls and 429 answers of one API, counted (benchmarks and logs read them).
#[derive(Debug, Default)]
pub struct ApiCounters {
    /// Calls sent (every attempt).
    pub calls: AtomicU64,
    /// 429 answers received.
    pub throttled: AtomicU64,
}

/// Spaces calls evenly: at most `per_minute` a minute, never two closer than 60 s / `per_minute`.
#[derive(Debug)]
struct Limiter {
    interval: Duration,
    next: Mutex<Instant>,
}

impl Limiter {
    fn new(per_minute: u32) -> Self {
        Self { interval: Duration::from_secs(60) / per_minute.max(1), next: Mutex::new(Instant::now()) }
    }

    async fn acquire(&self) {
        let slot = {
            let mut next = self.next.lock().await;
            let now = Instant::now();
            let slot = (*next).max(now);
            *next = slot + self.interval;
            slot
        };
        tokio::time::sleep_until(slot.into()).await;
    }

    /// Pushes every later call back by `wait` (the server asked to slow down).
    async fn back_off(&self, wait: Duration) {
        let mut next = self.next.lock().await;
        *next = (*next).max(Instant::now() + wait);
    }
}

/// How one API call finally failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallError {
    /// The API is not enabled in the project (`SERVICE_DISABLED`).
    Disabled(String),
    /// The caller may not do this (`PERMISSION_DENIED`, 401, 403).
    Denied(String),
    /// The resource does not exist.
    NotFound(String),
    /// The resource already exists (HTTP 409 `ALREADY_EXISTS`).
    AlreadyExists(String),
    /// Anything else, after the retries.
    Failed(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Disabled(m) => write!(f, "the API is disabled: {m}"),
            Self::Denied(m) => write!(f, "permission denied: {m}"),
            Self::NotFound(m) => write!(f, "not found: {m}"),
            Self::AlreadyExists(m) => write!(f, "already exists: {m}"),
            Self::Failed(m) => f.write_str(m),
        }
    }
}

/// One API's limiter, bound on calls in flight, retry policy and counters.
#[derive(Debug)]
pub struct Api {
    name: &'static str,
    limiter: Limiter,
    in_flight: Semaphore,
    attempts: u32,
    backoff: Backoff,
    /// Calls and throttled answers.
    pub counters: ApiCounters,
}

fn retry_after(e: &GaxError) -> Option<Duration> {
    let value = e.http_headers()?.get("retry-after")?.to_str().ok()?;
    value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| Duration::from_secs_f64(s.min(600.0)))
}

fn classify(e: &GaxError) -> CallError {
    let message = e.status().map_or_else(|| e.to_string(), |s| s.message.clone());
    let reason = e.status().and_then(|s| {
        s.details.iter().find_map(|d| match d {
            StatusDetails::ErrorInfo(info) => Some(info.reason.clone()),
            _ => None,
        })
    });
    if reason.as_deref() == Some("SERVICE_DISABLED") || reason.as_deref() == Some("ACCESS_NOT_CONFIGURED") {
        return CallError::Disabled(message);
    }
    match e.http_status_code() {
        Some(401 | 403) => CallError::Denied(message),
        Some(404) => CallError::NotFound(message),
        Some(409) => CallError::AlreadyExists(message),
        Some(code) => CallError::Failed(format!("HTTP {code}: {message}")),
        None => CallError::Failed(error_chain(e)),
    }
}

fn is_retryable(e: &GaxError) -> bool {
    match e.http_status_code() {
        Some(code) => code == 429 || code == 408 || code >= 500,
        None => e.is_io() || e.is_connect() || e.is_timeout() || e.is_transport(),
    }
}

impl Api {
    /// An API allowed `per_minute` calls a minute, `concurrency` at once, `attempts` per call.
    #[must_use]
    pub fn new(
        name: &'static str,
        per_minute: u32,
        concurrency: usize,
        attempts: u32,
        retry_initial: Duration,
    ) -> Self {
        Self {
            name,
            limiter: Limiter::new(per_minute),
            in_flight: Semaphore::new(concurrency.max(1)),
            attempts: attempts.max(1),
            backoff: Backoff::new(retry_initial, MAX_DOUBLINGS),
            counters: ApiCounters::default(),
        }
    }

    /// The API's short name (`resourcemanager`, `sqladmin`, `cloudasset`, `cloudtasks`).
    #[must_use]
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Calls `f` under the limits, retrying 429/5xx and transport errors.
    pub async fn call<T, F, Fut>(&self, what: &str, f: F) -> Result<T, CallError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, GaxError>>,
    {
        self.call_observed(what, &|_, _| {}, f).await
    }

    /// [`Api::call`], telling `observe` of every request sent: its method (`what`) and, when it
    /// failed, its error type (the HTTP status code, or `transport` when there was no answer).
    pub async fn call_observed<T, F, Fut>(
        &self,
        what: &str,
        observe: &(dyn Fn(&str, Option<&str>) + Send + Sync),
        f: F,
    ) -> Result<T, CallError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, GaxError>>,
    {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let result = {
                let _permit = self.in_flight.acquire().await.expect("never closed");
                self.limiter.acquire().await;
                self.counters.calls.fetch_add(1, Ordering::Relaxed);
                f().await
            };
            let e = match result {
                Ok(v) => {
                    observe(what, None);
                    return Ok(v);
                }
                Err(e) => e,
            };
            let error_type = e.http_status_code().map_or_else(|| "transport".to_owned(), |c| c.to_string());
            observe(what, Some(&error_type));
            if e.http_status_code() == Some(429) {
                self.counters.throttled.fetch_add(1, Ordering::Relaxed);
            }
            if !is_retryable(&e) || attempt >= self.attempts {
                let err = classify(&e);
                if matches!(err, CallError::AlreadyExists(_)) {
                    return Err(err);
                }
                tracing::warn!(api = self.name, call = what, attempts = attempt, error = %err, "Google API call failed");
                return Err(err);
            }
            let wait = retry_after(&e).unwrap_or_else(|| self.backoff.delay(attempt));
            tracing::info!(api = self.name, call = what, attempt, wait_ms = wait.as_millis() as u64, error = %e, "retrying a Google API call");
            if e.http_status_code() == Some(429) {
                self.limiter.back_off(wait).await;
            }
            tokio::time::sleep(wait).await;
        }
    }
}
