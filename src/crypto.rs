//! Client-side encryption with `age` (X25519 recipients), streamed both ways.
//!
//! The exporting service needs only the recipients (public keys); the private identity is needed
//! only by whoever restores. Encryption runs as a writer (age's API), so it is bridged to the
//! reader pipeline by an in-memory pipe whose reading end fails at end of stream if the encrypting
//! side failed: a source error can never produce a short, valid-looking ciphertext.

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::str::FromStr;
use std::task::{Context, Poll, ready};

use age::x25519::{Identity, Recipient};
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use tokio::io::{AsyncRead, ReadBuf};
use tokio_util::compat::{FuturesAsyncReadCompatExt, TokioAsyncReadCompatExt, TokioAsyncWriteCompatExt};

/// Size of the pipe between the encryptor and the uploader.
const PIPE: usize = 256 * 1024;

/// Parses `age1…` recipients; the error names the bad one.
pub fn parse_recipients(list: &[String]) -> Result<Vec<Recipient>, String> {
    list.iter()
        .map(|r| Recipient::from_str(r.trim()).map_err(|e| format!("`{r}` is not an age X25519 recipient: {e}")))
        .collect()
}

/// Reads `AGE-SECRET-KEY-…` identities from a file (blank lines and `#` comments skipped).
pub fn read_identity_file(path: &Path) -> Result<Vec<Identity>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let ids: Vec<Identity> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| Identity::from_str(l).map_err(|e| format!("{}: not an age identity: {e}", path.display())))
        .collect::<Result<_, _>>()?;
    if ids.is_empty() {
        return Err(format!("{} holds no age identity", path.display()));
    }
    Ok(ids)
}

type Outcome = Shared<BoxFuture<'static, Result<(), String>>>;

/// A reader that, at end of stream, fails unless `outcome` succeeded.
pub struct GatedReader<R> {
    inner: R,
    outcome: Outcome,
    done: bool,
}

impl<R: AsyncRead + Unpin> AsyncRead for GatedReader<R> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.done {
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        if buf.filled().len() > before {
            return Poll::Ready(Ok(()));
        }
        let outcome = ready!(self.outcome.poll_unpin(cx));
        self.done = true;
        Poll::Ready(outcome.map_err(io::Error::other))
    }
}

/// Encrypts `plain` to `recipients`, as a reader of the age file.
pub fn encrypting_reader<R>(plain: R, recipients: &[Recipient]) -> Result<GatedReader<tokio::io::DuplexStream>, String>
where
    R: AsyncRead + Send + Unpin + 'static,
{
    let encryptor = age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
        .map_err(|e| format!("cannot encrypt: {e}"))?;
    let (read_half, write_half) = tokio::io::duplex(PIPE);
    let task = tokio::spawn(async move {
        use futures::AsyncWriteExt;
        let mut writer = encryptor.wrap_async_output(write_half.compat_write()).await.map_err(|e| e.to_string())?;
        futures::io::copy(plain.compat(), &mut writer).await.map_err(|e| e.to_string())?;
        // Closing writes age's final chunk; without it the file is truncated.
        writer.close().await.map_err(|e| e.to_string())
    });
    let outcome = async move { task.await.map_err(|e| e.to_string()).and_then(|r| r) }.boxed().shared();
    Ok(GatedReader { inner: read_half, outcome, done: false })
}

/// Decrypts an age file read from `cipher` with `identities`.
pub async fn decrypting_reader<R>(
    cipher: R,
    identities: &[Identity],
) -> Result<impl AsyncRead + Send + Unpin + use<R>, String>
where
    R: AsyncRead + Send + Unpin + 'static,
{
    let decryptor = age::Decryptor::new_async_buffered(futures::io::BufReader::new(cipher.compat()))
        .await
        .map_err(|e| format!("not an age file: {e}"))?;
    let reader = decryptor
        .decrypt_async(identities.iter().map(|i| i as &dyn age::Identity))
        .map_err(|e| format!("cannot decrypt (wrong or missing identity?): {e}"))?;
    Ok(reader.compat())
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    #[tokio::test]
    async fn encrypts_and_decrypts_a_stream() {
        let id = Identity::generate();
        let plain: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let mut enc = encrypting_reader(std::io::Cursor::new(plain.clone()), &[id.to_public()]).unwrap();
        let mut cipher = Vec::new();
        enc.read_to_end(&mut cipher).await.unwrap();
        assert!(cipher.starts_with(b"age-encryption.org/v1"));
        let mut dec = decrypting_reader(std::io::Cursor::new(cipher.clone()), &[id]).await.unwrap();
        let mut back = Vec::new();
        dec.read_to_end(&mut back).await.unwrap();
        assert!(back == plain);
        let other = Identity::generate();
        assert!(decrypting_reader(std::io::Cursor::new(cipher), &[other]).await.is_err());
    }

    #[tokio::test]
    async fn a_failing_source_fails_the_ciphertext_stream() {
        let id = Identity::generate();
        let failing = tokio_util::io::StreamReader::new(futures::stream::iter(vec![
            Ok(bytes::Bytes::from_static(b"some data")),
            Err(io::Error::other("dump died")),
        ]));
        let mut enc = encrypting_reader(failing, &[id.to_public()]).unwrap();
        let mut cipher = Vec::new();
        assert!(enc.read_to_end(&mut cipher).await.is_err());
    }
}
