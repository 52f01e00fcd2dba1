//! Identifier quoting: a database, schema, table or role name is data, so it reaches SQL only
//! quoted, its own quote characters doubled.

/// A PostgreSQL identifier: `"name"` with embedded quotes doubled.
#[must_use]
pub fn pg(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A MySQL/MariaDB identifier: `` `name` `` with embedded backticks doubled.
#[must_use]
pub fn my(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_are_doubled() {
        assert_eq!(pg("a\"b"), "\"a\"\"b\"");
        assert_eq!(my("a`b"), "`a``b`");
    }
}
