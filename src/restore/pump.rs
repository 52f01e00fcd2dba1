//! The tool pump: the checked stream piped through an optional converter (`pg_restore`) into the
//! loader (`psql`, `mysql`), with the epilogue (transforms, `COMMIT`) written only after every check
//! passed; on any failure the loader is killed before its input can end normally.

use std::io;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::Ordering;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::process::{Child, Command};

use super::error::RestoreError;
use super::stream::{Fetch, PUMP_BUF};
use crate::util::process::tail_stderr;

/// Which side of a copy failed.
#[derive(Debug)]
pub(super) enum PumpError {
    /// Reading the source.
    Read(io::Error),
    /// Writing into the tool.
    Write(io::Error),
}

/// Copies `from` into `to`; counts newlines into `lines` when given (to place errors in transforms).
pub(super) async fn pump<R, W>(from: &mut R, to: &mut W, mut lines: Option<&mut u64>) -> Result<u64, PumpError>
where
    R: AsyncRead + Unpin + ?Sized,
    W: AsyncWrite + Unpin + ?Sized,
{
    let mut buf = vec![0u8; PUMP_BUF];
    let mut total = 0u64;
    loop {
        let n = from.read(&mut buf).await.map_err(PumpError::Read)?;
        if n == 0 {
            break;
        }
        if let Some(lines) = lines.as_deref_mut() {
            *lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        }
        to.write_all(&buf[..n]).await.map_err(PumpError::Write)?;
        total += n as u64;
    }
    to.flush().await.map_err(PumpError::Write)?;
    Ok(total)
}

/// A piece of the loader's input written after the checks passed; `label` names a transform.
pub(super) struct Segment {
    pub(super) label: Option<String>,
    pub(super) bytes: Vec<u8>,
}

/// What runs where: an optional converter (`pg_restore`) feeding the loader (`psql`, `mysql`).
pub(super) struct Load {
    pub(super) converter: Option<(String, Command)>,
    pub(super) loader: (String, Command),
    pub(super) prelude: &'static [u8],
    pub(super) epilogue: Vec<Segment>,
}

pub(super) fn spawn(name: &str, cmd: &mut Command, stdout: bool) -> Result<Child, RestoreError> {
    cmd.stdin(Stdio::piped())
        .stdout(if stdout { Stdio::piped() } else { Stdio::null() })
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| RestoreError::Tool {
            tool: name.to_owned(),
            status: "could not start".into(),
            stderr: e.to_string(),
        })
}

pub(super) fn status_text(s: io::Result<ExitStatus>) -> (bool, String) {
    match s {
        Ok(s) => (s.success(), s.to_string()),
        Err(e) => (false, e.to_string()),
    }
}

/// Adds "(line N of transform FILE)" to a tool's error when its line number falls in a transform.
pub(super) fn annotate(stderr: &str, segments: &[(u64, u64, String)]) -> String {
    let line = stderr.lines().find_map(|l| {
        let after = l.split_once("<stdin>:").map(|(_, a)| a).or_else(|| l.split_once(" at line ").map(|(_, a)| a))?;
        after.split(|c: char| !c.is_ascii_digit()).next()?.parse::<u64>().ok()
    });
    match line.and_then(|n| segments.iter().find(|(a, b, _)| (*a..=*b).contains(&n)).map(|s| (n, s))) {
        Some((n, (start, _, label))) => format!("{stderr} (line {} of transform {label})", n - start + 1),
        None => stderr.to_owned(),
    }
}

/// Streams `fetch` through the tools; writes the epilogue (transforms, `COMMIT`) only after every
/// check passed. On failure the loader is killed before its input can end normally.
pub(super) async fn run_load(fetch: Fetch, key: &str, load: Load) -> Result<u64, RestoreError> {
    let Fetch { mut reader, checked, cancel, read } = fetch;
    let (loader_name, mut loader_cmd) = load.loader;
    let mut converter = match load.converter {
        Some((name, mut cmd)) => Some((spawn(&name, &mut cmd, true)?, name)),
        None => None,
    };
    let mut loader = spawn(&loader_name, &mut loader_cmd, false)?;
    let loader_err = tail_stderr(loader.stderr.take());
    let mut lin = loader.stdin.take().expect("piped");
    let mut lines = load.prelude.iter().filter(|&&b| b == b'\n').count() as u64;
    // Line numbers matter only to point into a transform.
    let count = load.epilogue.iter().any(|s| s.label.is_some());

    let (feed, mid, converter_err) = if let Some((conv, _)) = converter.as_mut() {
        let conv_err = tail_stderr(conv.stderr.take());
        let mut cin = conv.stdin.take().expect("piped");
        let cout = conv.stdout.take().expect("piped");
        let feed = async {
            let r = pump(&mut reader, &mut cin, None).await;
            drop(cin);
            r
        };
        // Each pump owns the pipe it reads: when the loader dies, the converter's stdout closes
        // with it, so the converter stops and the feed ends instead of both waiting on full pipes.
        let mid = async {
            let mut cout = cout;
            lin.write_all(load.prelude).await.map_err(PumpError::Write)?;
            pump(&mut cout, &mut lin, count.then_some(&mut lines)).await
        };
        let (feed, mid) = tokio::join!(feed, mid);
        (Some(feed), mid, Some(conv_err))
    } else {
        let mid = async {
            lin.write_all(load.prelude).await.map_err(PumpError::Write)?;
            pump(&mut reader, &mut lin, count.then_some(&mut lines)).await
        };
        (None, mid.await, None)
    };
    drop(reader);

    // A decoder or converter that fails may be failing on a damaged object: let the check read to
    // the end so the error names the damage. Only a loader that stopped reading (the target's
    // side) stops the download at once.
    let source_failed = matches!((&feed, &mid), (Some(Err(PumpError::Read(_))), _) | (None, Err(PumpError::Read(_))));
    if matches!(mid, Err(PumpError::Write(_))) {
        cancel.cancel();
    }
    let converter_status = match converter.as_mut() {
        Some((c, name)) => Some((status_text(c.wait().await), name.clone())),
        None => None,
    };
    let converter_err = match converter_err {
        Some(h) => h.await.unwrap_or_default(),
        None => String::new(),
    };
    let verdict = checked.await.unwrap_or_else(|e| Err(RestoreError::Invalid(format!("the object check died: {e}"))));

    let abort = async |mut loader: Child, lin: tokio::process::ChildStdin| {
        let _ = loader.start_kill();
        drop(lin);
        let _ = loader.wait().await;
    };
    if let Err(e) = verdict {
        abort(loader, lin).await;
        return Err(e);
    }
    if source_failed {
        let e = match (&feed, &mid) {
            (Some(Err(PumpError::Read(e))), _) | (_, Err(PumpError::Read(e))) => e.to_string(),
            _ => String::new(),
        };
        abort(loader, lin).await;
        return Err(RestoreError::Integrity {
            key: key.to_owned(),
            reason: format!("the object matches its manifest but does not decode: {e}"),
        });
    }
    // The loader stopped reading: it failed first (a failing converter only ends the loader's input).
    if matches!(mid, Err(PumpError::Write(_))) {
        drop(lin);
        let status = status_text(loader.wait().await);
        let stderr = loader_err.await.unwrap_or_default();
        return Err(RestoreError::Tool { tool: loader_name, status: status.1, stderr });
    }
    if let Some(((false, status), name)) = converter_status {
        abort(loader, lin).await;
        return Err(RestoreError::Tool { tool: name, status, stderr: converter_err });
    }
    if let Some(Err(PumpError::Write(e))) = &feed {
        let message = e.to_string();
        abort(loader, lin).await;
        return Err(RestoreError::Tool { tool: "pipe".into(), status: message, stderr: converter_err });
    }

    // Everything checked: the transforms, then the end of the transaction.
    let mut segments = Vec::new();
    let mut write_failed = false;
    for seg in load.epilogue {
        let start = lines + 1;
        lines += seg.bytes.iter().filter(|&&b| b == b'\n').count() as u64;
        if let Some(label) = seg.label {
            segments.push((start, lines, label));
        }
        if lin.write_all(&seg.bytes).await.is_err() {
            write_failed = true;
            break;
        }
    }
    let _ = lin.flush().await;
    drop(lin);
    let status = status_text(loader.wait().await);
    let stderr = loader_err.await.unwrap_or_default();
    if !status.0 || write_failed {
        return Err(RestoreError::Tool { tool: loader_name, status: status.1, stderr: annotate(&stderr, &segments) });
    }
    Ok(read.load(Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_errors_point_into_the_transform_that_failed() {
        let segs = vec![(101, 110, "anon.sql".to_owned())];
        let psql = "psql:<stdin>:103: ERROR:  relation \"nope\" does not exist";
        assert!(annotate(psql, &segs).ends_with("(line 3 of transform anon.sql)"));
        let mysql = "ERROR 1146 (42S02) at line 101: Table 'x.nope' doesn't exist";
        assert!(annotate(mysql, &segs).ends_with("(line 1 of transform anon.sql)"));
        assert_eq!(annotate("psql:<stdin>:5: ERROR: x", &segs), "psql:<stdin>:5: ERROR: x");
    }
}
