//! A MySQL/MariaDB dump with its `DEFINER=` clauses removed, as it streams.
//!
//! `mariadb-dump` writes the account each view, routine, trigger and event was defined by
//! (`CREATE DEFINER=`app`@`%` PROCEDURE…`, `/*!50017 DEFINER=`root`@`localhost`*/`), and such an
//! object runs with that account's privileges. A restore drill loads the dump as a throwaway
//! account that may not name another definer (that needs SUPER or SET USER); without the clause,
//! each object is defined by, and runs as, the account that creates it.
//!
//! The filter works line by line and leaves data alone: a line starting with `INSERT INTO ` (how
//! the dump writes rows, one statement per line) passes through untouched, however long. Other
//! lines (DDL, routine bodies) are held until their end, up to a MiB (a longer one passes through
//! as it is; see `line_filter`). A routine body whose text holds `DEFINER=` followed by an account
//! loses it too; only drills use this filter, and the verdict does not depend on such text.
//! Security does not rest on the filter: an unfiltered clause naming another account makes the
//! throwaway account's `CREATE` fail, and with it the drill.

use std::io;

use super::line_filter::{DumpLines, Filtered, LineRewrite};

/// Removes the `DEFINER=` clauses of each non-data line.
#[derive(Debug, Default)]
pub(super) struct Stripper;

impl LineRewrite for Stripper {
    fn rewrite(&mut self, line: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        out.extend_from_slice(&strip(line));
        Ok(())
    }
}

/// The length of a quoted (`` ` ``, `'`, `"`, doubled to escape; `\` escapes in `'`/`"`) or bare
/// (`[A-Za-z0-9_$.%-]`, with an optional `()`) account part at the start of `s`, if there is one.
fn account_part(s: &[u8]) -> Option<usize> {
    let &first = s.first()?;
    if matches!(first, b'`' | b'\'' | b'"') {
        let mut i = 1;
        while i < s.len() {
            if s[i] == b'\\' && first != b'`' {
                i += 2;
                continue;
            }
            if s[i] == first {
                if s.get(i + 1) == Some(&first) {
                    i += 2;
                    continue;
                }
                return Some(i + 1);
            }
            i += 1;
        }
        return None;
    }
    let n =
        s.iter().take_while(|&&b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'$' | b'.' | b'%' | b'-')).count();
    if n == 0 {
        return None;
    }
    Some(if s[n..].starts_with(b"()") { n + 2 } else { n })
}

/// `line` without its `DEFINER=account[@host]` clauses.
fn strip(line: &[u8]) -> Vec<u8> {
    const KEY: &[u8] = b"DEFINER=";
    let mut out = Vec::with_capacity(line.len());
    let mut i = 0;
    while i < line.len() {
        if line.len() - i >= KEY.len() && line[i..i + KEY.len()].eq_ignore_ascii_case(KEY) {
            let after = i + KEY.len();
            if let Some(user) = account_part(&line[after..]) {
                let mut end = after + user;
                if line.get(end) == Some(&b'@')
                    && let Some(host) = account_part(&line[end + 1..])
                {
                    end += 1 + host;
                }
                i = end;
                continue;
            }
        }
        out.push(line[i]);
        i += 1;
    }
    out
}

/// `inner` with the `DEFINER=` clauses of its non-data lines removed (see the module docs).
pub(super) fn strip_definers<R>(inner: R) -> Filtered<R, DumpLines<Stripper>> {
    Filtered::new(inner, DumpLines::new(Stripper))
}

#[cfg(test)]
mod tests {
    use super::super::line_filter::{LINE_MAX, LineCore};
    use super::*;

    fn run(input: &[u8], chunk: usize) -> String {
        let mut s = DumpLines::new(Stripper);
        let mut out = Vec::new();
        for c in input.chunks(chunk) {
            s.feed(c, &mut out).unwrap();
        }
        s.finish(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn definer_clauses_of_every_object_kind_are_removed() {
        let dump = "/*!50003 CREATE*/ /*!50017 DEFINER=`root`@`localhost`*/ /*!50003 TRIGGER t BEFORE INSERT ON x FOR EACH ROW SET NEW.a = 1 */;;\n\
                    /*!50013 DEFINER=`app`@`%` SQL SECURITY DEFINER */\n\
                    CREATE DEFINER=`we``ird`@`10.0.0.%` PROCEDURE `p`()\n\
                    /*!50106 CREATE*/ /*!50117 DEFINER=`r`*/ /*!50106 EVENT `e` ON SCHEDULE EVERY 1 DAY DO SELECT 1 */ ;;\n\
                    CREATE definer='u'@'h' FUNCTION f() RETURNS INT RETURN 1;\n\
                    CREATE DEFINER=CURRENT_USER() VIEW v AS SELECT 1;\n";
        let want = "/*!50003 CREATE*/ /*!50017 */ /*!50003 TRIGGER t BEFORE INSERT ON x FOR EACH ROW SET NEW.a = 1 */;;\n\
                    /*!50013  SQL SECURITY DEFINER */\n\
                    CREATE  PROCEDURE `p`()\n\
                    /*!50106 CREATE*/ /*!50117 */ /*!50106 EVENT `e` ON SCHEDULE EVERY 1 DAY DO SELECT 1 */ ;;\n\
                    CREATE  FUNCTION f() RETURNS INT RETURN 1;\n\
                    CREATE  VIEW v AS SELECT 1;\n";
        for chunk in [1, 3, 7, 4096] {
            assert_eq!(run(dump.as_bytes(), chunk), want, "chunks of {chunk}");
        }
    }

    #[test]
    fn rows_and_plain_lines_pass_through_untouched() {
        let dump = "INSERT INTO `t` VALUES (1,'DEFINER=`root`@`localhost`'),(2,'x');\n\
                    -- a comment\n\
                    SET @OLD = @@SQL_MODE;\n\
                    INSERT INTO `t` VALUES (3,'no newline at the end: DEFINER=`a`@`b`')";
        for chunk in [1, 5, 4096] {
            assert_eq!(run(dump.as_bytes(), chunk), dump, "chunks of {chunk}");
        }
        let long = format!("CREATE VIEW v AS SELECT '{}' AS DEFINER=`a`@`b`;\n", "x".repeat(LINE_MAX + 10));
        assert_eq!(run(long.as_bytes(), 4096), long, "an over-long line passes as it is");
    }
}
