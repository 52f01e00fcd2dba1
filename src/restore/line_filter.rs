//! A dump rewritten as it streams, by a synchronous line-oriented core.
//!
//! [`Filtered`] reads the inner reader in chunks of [`CHUNK`] bytes, hands each to its
//! [`LineCore`], and serves what the core wrote out. The core decides how much it holds (a line at
//! most, bounded by the core); memory stays bounded whatever the dump's size. An error from the
//! core ends the stream with that error, so the loader never sees the rest and the restore fails.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, ReadBuf};

/// Bytes read from the inner reader at a time.
const CHUNK: usize = 64 * 1024;

/// Bytes in, bytes out: the synchronous part of a filter.
pub(super) trait LineCore {
    /// Feeds `input`, appending what may be written so far to `out`.
    fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> io::Result<()>;
    /// The end of the input: writes out what is held.
    fn finish(&mut self, out: &mut Vec<u8>) -> io::Result<()>;
}

/// `inner` rewritten by `core`.
pub(super) struct Filtered<R, C> {
    inner: R,
    core: C,
    chunk: Vec<u8>,
    out: Vec<u8>,
    pos: usize,
    done: bool,
}

impl<R, C> Filtered<R, C> {
    pub(super) fn new(inner: R, core: C) -> Self {
        Self { inner, core, chunk: vec![0; CHUNK], out: Vec::new(), pos: 0, done: false }
    }
}

impl<R: AsyncRead + Unpin, C: LineCore + Unpin> AsyncRead for Filtered<R, C> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        loop {
            if me.pos < me.out.len() {
                let n = buf.remaining().min(me.out.len() - me.pos);
                buf.put_slice(&me.out[me.pos..me.pos + n]);
                me.pos += n;
                if me.pos == me.out.len() {
                    me.out.clear();
                    me.pos = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if me.done {
                return Poll::Ready(Ok(()));
            }
            let mut rb = ReadBuf::new(&mut me.chunk);
            ready!(Pin::new(&mut me.inner).poll_read(cx, &mut rb))?;
            let n = rb.filled().len();
            if n == 0 {
                me.done = true;
                me.core.finish(&mut me.out)?;
            } else {
                me.core.feed(&me.chunk[..n], &mut me.out)?;
            }
        }
    }
}
