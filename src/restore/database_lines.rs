//! A Cloud SQL MySQL export pointed at the restore's own schema, as it streams.
//!
//! Cloud SQL writes a MySQL export with `mysqldump --databases`: the dump names its database
//! (`CREATE DATABASE /*!32312 IF NOT EXISTS*/ `shop` …;`, `USE `shop`;`, and around routines
//! `ALTER DATABASE `shop` CHARACTER SET …;`). Loaded as it is, it would write into a schema of that
//! name on the target server, not into the schema the restore chose. So, line by line:
//!
//! - `CREATE DATABASE`/`CREATE SCHEMA` and `DROP DATABASE`/`DROP SCHEMA` of the exported database
//!   become an SQL comment (the restore creates its schema itself and never drops one);
//! - `USE` and `ALTER DATABASE`/`ALTER SCHEMA` of it name the restore's schema instead;
//! - any of these statements naming **another** database ends the stream with an error: the
//!   restore fails rather than write anywhere else.
//!
//! A statement is recognised only at the start of a line (optionally inside a `/*!NNNNN … */`
//! version comment, as `mysqldump` writes them), and a line starting with `INSERT INTO ` (how the
//! dump writes rows, one statement per line) passes through untouched, however long, as does any
//! line longer than a MiB that is not such a statement (see `line_filter`). Rewritten lines keep their newline,
//! so line numbers in the loader's errors still point into the dump.

use std::io;

use super::line_filter::{DumpLines, Filtered, LineRewrite};

/// A statement about a database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Create,
    Drop,
    Use,
    Alter,
}

/// The synchronous core (see the module docs).
#[derive(Debug)]
pub(super) struct DatabaseLines {
    exported: String,
    target: String,
}

/// `inner` with its database statements pointed at `target` (see the module docs).
pub(super) fn point_at<R>(inner: R, exported: &str, target: &str) -> Filtered<R, DumpLines<DatabaseLines>> {
    Filtered::new(inner, DumpLines::new(DatabaseLines::new(exported, target)))
}

/// `s` without its leading ASCII case-insensitive `prefix`, if it starts with it.
fn after<'a>(s: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    (s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix)).then(|| &s[prefix.len()..])
}

fn skip_spaces(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|b| b.is_ascii_whitespace()).count();
    &s[n..]
}

/// The statement kind at the start of `line`, and the rest of the line after its keywords.
fn statement(line: &[u8]) -> Option<(Kind, &[u8])> {
    // Leading blanks do not hide a statement from the loader, so they do not hide it from here.
    let mut s = skip_spaces(line);
    // `/*!40000 DROP DATABASE …*/`: a version comment that runs its content.
    if let Some(rest) = after(s, b"/*!") {
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        s = skip_spaces(&rest[digits..]);
    }
    for (keyword, kind) in [
        (&b"CREATE DATABASE"[..], Kind::Create),
        (b"CREATE SCHEMA", Kind::Create),
        (b"DROP DATABASE", Kind::Drop),
        (b"DROP SCHEMA", Kind::Drop),
        (b"ALTER DATABASE", Kind::Alter),
        (b"ALTER SCHEMA", Kind::Alter),
        (b"USE", Kind::Use),
    ] {
        if let Some(rest) = after(s, keyword)
            && rest.first().is_some_and(|&b| b.is_ascii_whitespace() || b == b'`' || b == b'/')
        {
            return Some((kind, rest));
        }
    }
    None
}

/// The database `rest` names, and where its name ends in `rest`: the first backquoted identifier,
/// or else the first bare word after the optional `/*!NNNNN IF [NOT] EXISTS*/`.
fn database_name(rest: &[u8]) -> Option<(String, usize, usize)> {
    if let Some(start) = rest.iter().position(|&b| b == b'`') {
        let mut name = Vec::new();
        let mut i = start + 1;
        while i < rest.len() {
            if rest[i] == b'`' {
                if rest.get(i + 1) == Some(&b'`') {
                    name.push(b'`');
                    i += 2;
                    continue;
                }
                return Some((String::from_utf8_lossy(&name).into_owned(), start, i + 1));
            }
            name.push(rest[i]);
            i += 1;
        }
        return None;
    }
    let mut s = skip_spaces(rest);
    if let Some(r) = after(s, b"IF NOT EXISTS").or_else(|| after(s, b"IF EXISTS")) {
        s = skip_spaces(r);
    }
    let start = rest.len() - s.len();
    let n = s.iter().take_while(|&&b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$').count();
    (n > 0).then(|| (String::from_utf8_lossy(&s[..n]).into_owned(), start, start + n))
}

impl DatabaseLines {
    fn new(exported: &str, target: &str) -> Self {
        Self { exported: exported.to_owned(), target: target.to_owned() }
    }

    /// `line` (with its newline, if any) as it is to be loaded.
    fn rewrite(&self, line: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        let Some((kind, rest)) = statement(line) else {
            out.extend_from_slice(line);
            return Ok(());
        };
        let Some((name, start, end)) = database_name(rest) else {
            return Err(refuse(&format!(
                "a database statement whose database cannot be read: {}",
                String::from_utf8_lossy(line).trim_end()
            )));
        };
        if name != self.exported {
            return Err(refuse(&format!(
                "the export names the database `{name}`, not `{}` (only single-database exports restore)",
                self.exported
            )));
        }
        let newline = if line.ends_with(b"\n") { "\n" } else { "" };
        match kind {
            Kind::Create | Kind::Drop => {
                let what = if kind == Kind::Create { "CREATE" } else { "DROP" };
                out.extend_from_slice(
                    format!(
                        "-- data-backup: {what} of the exported database removed: the restore owns its schema{newline}"
                    )
                    .as_bytes(),
                );
            }
            Kind::Use | Kind::Alter => {
                let at = line.len() - rest.len();
                out.extend_from_slice(&line[..at + start]);
                out.extend_from_slice(crate::db::ident::my(&self.target).as_bytes());
                out.extend_from_slice(&line[at + end..]);
            }
        }
        Ok(())
    }
}

fn refuse(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.to_owned())
}

impl LineRewrite for DatabaseLines {
    fn rewrite(&mut self, line: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        DatabaseLines::rewrite(self, line, out)
    }

    fn overlong(&mut self, start: &[u8]) -> io::Result<()> {
        match statement(start) {
            Some(_) => Err(refuse("a database statement longer than a MiB")),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::line_filter::LineCore;
    use super::*;

    fn run(input: &[u8], chunk: usize) -> io::Result<String> {
        let mut core = DumpLines::new(DatabaseLines::new("shop", "data_backup_verify_x"));
        let mut out = Vec::new();
        for c in input.chunks(chunk) {
            core.feed(c, &mut out)?;
        }
        core.finish(&mut out)?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn the_exported_database_becomes_the_restores_schema() {
        let dump = "-- Current Database: `shop`\n\
                    CREATE DATABASE /*!32312 IF NOT EXISTS*/ `shop` /*!40100 DEFAULT CHARACTER SET utf8mb4 */;\n\
                    /*!40000 DROP DATABASE IF EXISTS `shop`*/;\n\
                    USE `shop`;\n\
                    CREATE TABLE `t` (`a` int);\n\
                    ALTER DATABASE `shop` CHARACTER SET latin1 COLLATE latin1_swedish_ci ;\n\
                    use shop;\n";
        let want = "-- Current Database: `shop`\n\
                    -- data-backup: CREATE of the exported database removed: the restore owns its schema\n\
                    -- data-backup: DROP of the exported database removed: the restore owns its schema\n\
                    USE `data_backup_verify_x`;\n\
                    CREATE TABLE `t` (`a` int);\n\
                    ALTER DATABASE `data_backup_verify_x` CHARACTER SET latin1 COLLATE latin1_swedish_ci ;\n\
                    use `data_backup_verify_x`;\n";
        for chunk in [1, 3, 7, 4096] {
            assert_eq!(run(dump.as_bytes(), chunk).unwrap(), want, "chunks of {chunk}");
        }
    }

    #[test]
    fn rows_and_other_lines_pass_through_untouched() {
        let dump = "INSERT INTO `t` VALUES (1,'USE `other`;'),(2,'x');\n\
                    /*!40101 SET NAMES utf8mb4 */;\n\
                    CREATE TABLE `user_stats` (\n  `use_count` int\n);\n\
                    INSERT INTO `t` VALUES (3,'CREATE DATABASE `other`')";
        for chunk in [1, 5, 4096] {
            assert_eq!(run(dump.as_bytes(), chunk).unwrap(), dump, "chunks of {chunk}");
        }
    }

    #[test]
    fn another_database_fails_the_restore() {
        for dump in ["USE `shop`;\nUSE `mysql`;\n", "CREATE DATABASE `elsewhere`;\n", "USE `shop2`", "  USE `mysql`;\n"]
        {
            let err = run(dump.as_bytes(), 4096).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{dump}");
        }
        let err = run(b"USE `sh``op`;\n", 2).unwrap_err().to_string();
        assert!(err.contains("`sh`op`"), "{err}");
    }
}
