//! Secrets kept in files (a bearer token, a database password): [`read_secret_file`].

use std::path::Path;

use secrecy::SecretString;

/// Reads the first line of a secret file.
pub fn read_secret_file(path: &Path) -> Result<SecretString, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let line = text.lines().next().unwrap_or("").trim();
    if line.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(SecretString::from(line.to_owned()))
}
