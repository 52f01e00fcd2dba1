//! Checked names: [`InvalidField`], the length limits, the name types ([`SourceName`],
//! [`ProjectId`], [`InstanceName`], [`DatabaseName`], [`Label`]) and their encoding as one object-key
//! segment ([`key_segment`], [`from_key_segment`]).
//!
//! Names are data: a database may be called anything its engine allows (any Unicode but NUL, `%`,
//! `/`, quotes, spaces, a leading `-`), and each name is accepted as it is. What keeps such a name
//! inside its prefix is its encoding as a key segment, which is reversible, so every name survives
//! the round trip through every bucket backend.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a value was refused; names the offending field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidField {
    /// The field (JSON key or CLI argument) that was refused.
    pub field: &'static str,
    /// What is wrong with it, in words an operator can act on.
    pub reason: String,
}

impl InvalidField {
    /// A refusal of `field` for `reason`.
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self { field, reason: reason.into() }
    }
}

/// Longest name accepted, in bytes of its object-key segment (see [`key_segment`]): a dump's file
/// name is the segment plus at most 16 bytes (`.manifest.json`, `.sql.zst.age`) plus the local
/// store's staging suffix, and a file name may not exceed 255 bytes (`NAME_MAX`). Every PostgreSQL
/// name (63 bytes) and every MySQL/MariaDB name (64 characters of the BMP) fits.
pub const MAX_SEGMENT_BYTES: usize = 200;

/// Longest label accepted, in bytes.
pub const MAX_LABEL_BYTES: usize = 128;

/// Bytes kept as they are in a key segment: ASCII letters, digits, `.`, `_`, `-`.
fn plain_ascii(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')
}

/// A character kept as it is in a key segment besides [`plain_ascii`]: any non-ASCII character
/// that every backend stores and lists as it is (not a control character, and not U+FFFE/U+FFFF,
/// which XML listings of S3 and Azure cannot carry).
fn plain_unicode(c: char) -> bool {
    !c.is_ascii() && !c.is_control() && !matches!(c, '\u{FFFE}' | '\u{FFFF}')
}

/// A name as one segment of an object key: every ASCII character but letters, digits, `.`, `_`
/// and `-`, every control character and U+FFFE/U+FFFF are percent-encoded (`%` itself as `%25`, `/`
/// as `%2F`), other Unicode is kept as UTF-8, and a trailing `.` becomes `%2E` (Azure Blob Storage
/// drops a segment's trailing dots). So a segment never holds `/`, is never `.` or `..`, and
/// [`from_key_segment`] gives the name back.
#[must_use]
pub fn key_segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let last = name.len().saturating_sub(1);
    for (i, c) in name.char_indices() {
        let trailing_dot = c == '.' && i == last;
        if !trailing_dot && ((c.is_ascii() && plain_ascii(c as u8)) || plain_unicode(c)) {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    out
}

/// The name a key segment was built from by [`key_segment`]; `None` for a segment [`key_segment`]
/// would not have written (so each name has exactly one key, and each key one name).
#[must_use]
pub fn from_key_segment(segment: &str) -> Option<String> {
    let name = percent_encoding::percent_decode_str(segment).decode_utf8().ok()?.into_owned();
    (key_segment(&name) == segment).then_some(name)
}

fn check_name(field: &'static str, value: &str) -> Result<(), InvalidField> {
    if value.is_empty() {
        return Err(InvalidField::new(field, "must not be empty"));
    }
    if value.contains('\0') {
        return Err(InvalidField::new(field, "contains a NUL character"));
    }
    let segment = key_segment(value).len();
    if segment > MAX_SEGMENT_BYTES {
        return Err(InvalidField::new(
            field,
            format!("too long to be stored: {segment} bytes in an object key (at most {MAX_SEGMENT_BYTES})"),
        ));
    }
    if field == "label" && value.len() > MAX_LABEL_BYTES {
        return Err(InvalidField::new(field, format!("longer than {MAX_LABEL_BYTES} bytes")));
    }
    Ok(())
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $field:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Parses and validates a name.
            pub fn parse(value: impl Into<String>) -> Result<Self, InvalidField> {
                let value = value.into();
                check_name($field, &value)?;
                Ok(Self(value))
            }

            /// The name as text.
            #[must_use]
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(s).map_err(serde::de::Error::custom)
            }
        }
    };
}

name_type!(
    /// Name of a configured source of databases.
    SourceName,
    "source"
);
name_type!(
    /// Google Cloud project id, or a self-hosted source's name.
    ProjectId,
    "project"
);
name_type!(
    /// Cloud SQL instance name, or a self-hosted server's name.
    InstanceName,
    "instance"
);
name_type!(
    /// Database (PostgreSQL) or schema (MySQL) name.
    DatabaseName,
    "database"
);

name_type!(
    /// Name of an on-demand backup (`before-incident-42`), stored under `labels/<label>/…` and
    /// never removed by retention.
    Label,
    "label"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_data_and_only_what_cannot_be_stored_is_refused() {
        for bad in ["", "a\0b", &"x".repeat(MAX_SEGMENT_BYTES + 1), &" ".repeat(67)] {
            assert!(DatabaseName::parse(bad).is_err(), "{bad:?} was accepted");
        }
        let longest_mysql = "é".repeat(64);
        let longest_postgres = "%".repeat(63);
        for good in [
            "app",
            "my-db_1.v2",
            "données",
            "café app",
            ".",
            "..",
            "a/b",
            "a\\b",
            "50%",
            "a%2Fb",
            "a\nb",
            " a ",
            "--result-file=x.txt",
            "'; DROP DATABASE x; --",
            "🦀",
            "e\u{301}",
            &longest_mysql,
            &longest_postgres,
        ] {
            assert!(DatabaseName::parse(good).is_ok(), "{good:?} was refused");
        }
        assert!(Label::parse("x".repeat(MAX_LABEL_BYTES)).is_ok());
        assert!(Label::parse("x".repeat(MAX_LABEL_BYTES + 1)).unwrap_err().reason.contains("128"));
    }

    #[test]
    fn a_key_segment_never_holds_a_separator_and_gives_its_name_back() {
        for (name, segment) in [
            ("app", "app"),
            ("café app", "café%20app"),
            ("50%", "50%25"),
            ("a/b", "a%2Fb"),
            (".", "%2E"),
            ("..", ".%2E"),
            ("..a", "..a"),
            ("a.", "a%2E"),
            ("a\nb", "a%0Ab"),
            ("\u{85}", "%C2%85"),
            ("\u{FFFF}", "%EF%BF%BF"),
            ("-x", "-x"),
        ] {
            assert_eq!(key_segment(name), segment, "{name:?}");
            assert_eq!(from_key_segment(segment).as_deref(), Some(name), "{segment:?}");
        }
        // One key per name: another spelling of the same name is not a key this service wrote.
        for foreign in ["caf%C3%A9", "%61pp", "a%2fb", "a b", "%zz", "%FF"] {
            assert_eq!(from_key_segment(foreign), None, "{foreign:?}");
        }
    }
}
