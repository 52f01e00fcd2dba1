//! Globs over `project/instance/database` paths ([`compile_glob`]), as exclusions, source filters
//! and drill checks write them.

use globset::{Glob, GlobBuilder, GlobMatcher};

/// Compiles an exclusion glob over `project/instance/database`; `*` does not cross `/`.
pub fn compile_glob(pattern: &str) -> Result<GlobMatcher, globset::Error> {
    GlobBuilder::new(pattern).literal_separator(true).build().map(|g: Glob| g.compile_matcher())
}
