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
//! lines (DDL, routine bodies) are held until their end, up to [`LINE_MAX`] bytes (a longer one
//! passes through as it is). A routine body whose text holds `DEFINER=` followed by an account
//! loses it too; only drills use this filter, and the verdict does not depend on such text.
//! Security does not rest on the filter: an unfiltered clause naming another account makes the
//! throwaway account's `CREATE` fail, and with it the drill.

use std::io;

use super::line_filter::{Filtered, LineCore};

/// How a row line starts in a `mariadb-dump`/`mysqldump` dump.
const DATA_PREFIX: &[u8] = b"INSERT INTO ";
/// Longest non-data line held for rewriting.
const LINE_MAX: usize = 1 << 20;

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

/// The synchronous core: bytes in, bytes out.
#[derive(Debug, Default)]
pub(super) struct Stripper {
    mode: Mode,
    line: Vec<u8>,
}

impl Stripper {
    /// Feeds `input`, appending what may be written so far to `out`.
    fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
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
                    out.append(&mut self.line);
                    self.mode = if newline.is_some() { Mode::Start } else { Mode::Data };
                } else if newline.is_some() {
                    out.extend_from_slice(&strip(&self.line));
                    self.line.clear();
                    self.mode = Mode::Start;
                }
            }
        }
    }

    /// The end of the input: writes out what is held.
    fn finish(&mut self, out: &mut Vec<u8>) {
        if self.mode == Mode::Data {
            out.append(&mut self.line);
        } else {
            out.extend_from_slice(&strip(&self.line));
            self.line.clear();
        }
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
pub(super) fn strip_definers<R>(inner: R) -> Filtered<R, Stripper> {
    Filtered::new(inner, Stripper::default())
}

impl LineCore for Stripper {
    fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        Stripper::feed(self, input, out);
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        Stripper::finish(self, out);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &[u8], chunk: usize) -> String {
        let mut s = Stripper::default();
        let mut out = Vec::new();
        for c in input.chunks(chunk) {
            s.feed(c, &mut out);
        }
        s.finish(&mut out);
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
