//! A dump rewritten as it streams, by a synchronous line-oriented core.
//!
//! [`Filtered`] reads the inner reader in chunks of [`CHUNK`] bytes, hands each to its
//! [`LineCore`], and serves what the core wrote out. The core decides how much it holds (a line at
//! most, bounded by the core); memory stays bounded whatever the dump's size. An error from the
//! core ends the stream with that error, so the loader never sees the rest and the restore fails.
//!
//! [`DumpLines`] is the core of the MySQL dump filters: a line starting with `INSERT INTO ` (how
//! `mariadb-dump`/`mysqldump` write rows, one statement per line) passes through untouched, however
//! long; any other line is held to its end, up to [`LINE_MAX`] bytes, and handed whole to a
//! [`LineRewrite`]; a longer one passes through as it is, once the rewrite has seen its start.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, ReadBuf};

/// Bytes read from the inner reader at a time.
const CHUNK: usize = 64 * 1024;
/// How a row line starts in a `mariadb-dump`/`mysqldump` dump.
const DATA_PREFIX: &[u8] = b"INSERT INTO ";
/// Longest non-data line held for rewriting.
pub(super) const LINE_MAX: usize = 1 << 20;

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

/// What a MySQL dump filter does to its non-data lines.
pub(super) trait LineRewrite {
    /// Writes `line` (a whole non-data line of at most [`LINE_MAX`] bytes, with its newline if it
    /// has one) as it is to be loaded.
    fn rewrite(&mut self, line: &[u8], out: &mut Vec<u8>) -> io::Result<()>;
    /// The first [`LINE_MAX`] bytes and more of a non-data line that will pass through as it is; an
    /// error refuses it.
    fn overlong(&mut self, start: &[u8]) -> io::Result<()> {
        let _ = start;
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Mode {
    /// At the start of a line, not yet known to be data.
    #[default]
    Start,
    /// Inside a row line (or an over-long line): passed through to its end.
    Data,
    /// Inside a non-data line, held in `line`.
    Held,
}

/// The lines of a MySQL dump, rows passed through and the other lines handed to `W` (see the
/// module docs).
#[derive(Debug, Default)]
pub(super) struct DumpLines<W> {
    rewrite: W,
    mode: Mode,
    line: Vec<u8>,
}

impl<W> DumpLines<W> {
    pub(super) fn new(rewrite: W) -> Self {
        Self { rewrite, mode: Mode::Start, line: Vec::new() }
    }
}

impl<W: LineRewrite> LineCore for DumpLines<W> {
    fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        while !input.is_empty() {
            let newline = input.iter().position(|&b| b == b'\n');
            let (take, rest) = input.split_at(newline.map_or(input.len(), |p| p + 1));
            input = rest;
            if self.mode == Mode::Data {
                out.extend_from_slice(take);
                if newline.is_some() {
                    self.mode = Mode::Start;
                }
                continue;
            }
            self.line.extend_from_slice(take);
            if self.mode == Mode::Start {
                if self.line.starts_with(DATA_PREFIX) {
                    out.append(&mut self.line);
                    self.mode = if newline.is_some() { Mode::Start } else { Mode::Data };
                    continue;
                }
                if self.line.len() >= DATA_PREFIX.len() || newline.is_some() {
                    self.mode = Mode::Held;
                }
            }
            if self.mode == Mode::Held {
                if self.line.len() > LINE_MAX {
                    self.rewrite.overlong(&self.line)?;
                    out.append(&mut self.line);
                    self.mode = if newline.is_some() { Mode::Start } else { Mode::Data };
                } else if newline.is_some() {
                    let line = std::mem::take(&mut self.line);
                    self.rewrite.rewrite(&line, out)?;
                    self.mode = Mode::Start;
                }
            }
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        let line = std::mem::take(&mut self.line);
        if self.mode == Mode::Data {
            out.extend_from_slice(&line)
        } else {
            self.rewrite.rewrite(&line, out)?
        }
        Ok(())
    }
}
