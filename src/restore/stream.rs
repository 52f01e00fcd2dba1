//! The checked stream: the stored object read once, in bounded memory, its size and SHA-256 checked
//! against the manifest as it streams, then decrypted (age) and decompressed; and the progress line.

use std::io::{self, IsTerminal, Write as _};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use age::x25519::Identity;
use async_compression::tokio::bufread::{GzipDecoder, ZstdDecoder};
use bytes::Bytes;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, BufReader};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::error::RestoreError;
use crate::store::bucket::ByteStream;
use crate::store::manifest::{DumpFormat, Manifest};
use crate::store::{BackupStore, StoreError};

/// Copy buffer between the stages.
pub(super) const PUMP_BUF: usize = 256 * 1024;

/// The decoded dump, and the task that reads and checks the stored object.
pub(super) struct Fetch {
    pub(super) reader: Pin<Box<dyn AsyncRead + Send>>,
    pub(super) checked: JoinHandle<Result<(), RestoreError>>,
    pub(super) cancel: CancellationToken,
    pub(super) read: Arc<AtomicU64>,
}

/// Reads the object, hashing and counting, and forwards it to `tx` while anyone listens. It keeps
/// reading to the end (unless cancelled) so the verdict covers every byte even when the decoder
/// stopped early; a mismatch is also sent down the stream so the consumer fails with it.
pub(super) async fn read_checked(
    mut stream: ByteStream,
    manifest: Manifest,
    tx: mpsc::Sender<io::Result<Bytes>>,
    cancel: CancellationToken,
    read: Arc<AtomicU64>,
) -> Result<(), RestoreError> {
    let mut hasher = Sha256::new();
    let mut n = 0u64;
    let mut open = true;
    let integrity = |reason: String| RestoreError::Integrity { key: manifest.key.clone(), reason };
    loop {
        let next = tokio::select! {
            () = cancel.cancelled() => return Ok(()),
            next = stream.next() => next,
        };
        let chunk = match next {
            None => break,
            Some(Ok(chunk)) => chunk,
            Some(Err(e)) => {
                if open {
                    let _ = tx.send(Err(io::Error::other(e.to_string()))).await;
                }
                return Err(RestoreError::Store(e.into()));
            }
        };
        hasher.update(&chunk);
        n += chunk.len() as u64;
        read.store(n, Ordering::Relaxed);
        if n > manifest.bytes {
            let reason = format!("the object is longer than the {} bytes its manifest records", manifest.bytes);
            if open {
                let _ = tx.send(Err(io::Error::new(io::ErrorKind::InvalidData, reason.clone()))).await;
            }
            return Err(integrity(reason));
        }
        if open {
            tokio::select! {
                () = cancel.cancelled() => return Ok(()),
                sent = tx.send(Ok(chunk)) => open = sent.is_ok(),
            }
        }
    }
    let sha = hex::encode(hasher.finalize());
    let problem = if n < manifest.bytes {
        Some(format!("truncated: the object has {n} bytes, its manifest records {}", manifest.bytes))
    } else if let Some(expected) = manifest.sha256.as_deref()
        && !expected.eq_ignore_ascii_case(&sha)
    {
        Some(format!("SHA-256 mismatch: the object's is {sha}, its manifest records {expected}"))
    } else {
        None
    };
    if manifest.sha256.is_none() {
        tracing::warn!(key = %manifest.key, "the manifest records no SHA-256: only the size was checked");
    }
    match problem {
        Some(reason) => {
            if open {
                let _ = tx.send(Err(io::Error::new(io::ErrorKind::InvalidData, reason.clone()))).await;
            }
            Err(integrity(reason))
        }
        None => Ok(()),
    }
}

/// Opens the dump for reading: checked, decrypted when `identities` are given, decompressed.
pub(super) async fn open_dump(
    store: &BackupStore,
    manifest: &Manifest,
    identities: Option<&[Identity]>,
) -> Result<Fetch, RestoreError> {
    let Some(stream) = store.bucket().get_stream(&manifest.key).await.map_err(StoreError::from)? else {
        return Err(RestoreError::Integrity { key: manifest.key.clone(), reason: "the dump object is missing".into() });
    };
    let (tx, mut rx) = mpsc::channel::<io::Result<Bytes>>(8);
    let cancel = CancellationToken::new();
    let read = Arc::new(AtomicU64::new(0));
    let checked = tokio::spawn(read_checked(stream, manifest.clone(), tx, cancel.clone(), read.clone()));
    let raw = tokio_util::io::StreamReader::new(futures::stream::poll_fn(move |cx| rx.poll_recv(cx)));
    let plain: Pin<Box<dyn AsyncRead + Send>> = match identities {
        Some(ids) => match crate::crypto::decrypting_reader(raw, ids).await {
            Ok(r) => Box::pin(r),
            Err(e) => {
                cancel.cancel();
                // A damaged header is the object's fault, not the identity's: say so when the check agrees.
                if let Ok(Err(integrity)) = checked.await {
                    return Err(integrity);
                }
                return Err(RestoreError::Decrypt(format!("{}: {e}", manifest.key)));
            }
        },
        None => Box::pin(raw),
    };
    let buffered = BufReader::with_capacity(PUMP_BUF, plain);
    let reader: Pin<Box<dyn AsyncRead + Send>> = if manifest.format == DumpFormat::CloudSqlGz {
        let mut gz = GzipDecoder::new(buffered);
        gz.multiple_members(true);
        Box::pin(gz)
    } else {
        Box::pin(ZstdDecoder::new(buffered))
    };
    Ok(Fetch { reader, checked, cancel, read })
}

/// Prints bytes read, rate and ETA on stderr (only when it is a terminal).
pub(super) struct Progress {
    stop: Arc<AtomicBool>,
    task: Option<JoinHandle<()>>,
}

impl Progress {
    pub(super) fn start(enabled: bool, read: Arc<AtomicU64>, total: u64, what: String) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let task = (enabled && io::stderr().is_terminal()).then(|| {
            let stop = stop.clone();
            tokio::spawn(async move {
                let t0 = Instant::now();
                let mut tick = tokio::time::interval(Duration::from_millis(500));
                loop {
                    tick.tick().await;
                    let done = stop.load(Ordering::Relaxed);
                    let n = read.load(Ordering::Relaxed);
                    let secs = t0.elapsed().as_secs_f64().max(0.001);
                    let rate = n as f64 / secs;
                    let eta = if rate > 0.0 && total > n { (total - n) as f64 / rate } else { 0.0 };
                    let pct = if total > 0 { n as f64 * 100.0 / total as f64 } else { 100.0 };
                    let eta = eta as u64;
                    let line = if total > 0 && n >= total {
                        format!(
                            "{what}: {} read and checked; the database is finishing (indexes, constraints)",
                            human_bytes(n)
                        )
                    } else {
                        format!(
                            "{what}: {} / {} ({pct:.0}%)  {}/s  ETA {}:{:02}",
                            human_bytes(n),
                            human_bytes(total),
                            human_bytes(rate as u64),
                            eta / 60,
                            eta % 60
                        )
                    };
                    let mut err = io::stderr().lock();
                    // \r and "erase to the end of the line": each report replaces the previous one.
                    let _ = write!(err, "\r{line}\x1b[K");
                    if done {
                        let _ = writeln!(err);
                        return;
                    }
                }
            })
        });
        Self { stop, task }
    }

    pub(super) async fn finish(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

/// `1.5 GiB`.
#[must_use]
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} B") } else { format!("{v:.1} {}", UNITS[unit]) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_bytes_reads_well() {
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }
}
