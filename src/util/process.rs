//! Child processes: the end of a child's stderr, kept for error messages while the child runs.

use tokio::io::AsyncReadExt;

/// How much of a child's stderr an error message keeps (its end).
const STDERR_KEEP: usize = 8192;

/// Collects the end of a child's stderr (the last `STDERR_KEEP` bytes), for error messages.
pub fn tail_stderr(stderr: Option<tokio::process::ChildStderr>) -> tokio::task::JoinHandle<String> {
    tokio::spawn(async move {
        let Some(mut stderr) = stderr else { return String::new() };
        let mut all = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut buf).await {
            if n == 0 {
                break;
            }
            all.extend_from_slice(&buf[..n]);
            if all.len() > 4 * STDERR_KEEP {
                all.drain(..all.len() - STDERR_KEEP);
            }
        }
        String::from_utf8_lossy(&all[all.len().saturating_sub(STDERR_KEEP)..]).trim().to_owned()
    })
}
