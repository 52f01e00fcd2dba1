//! The names a restore gives the databases it creates beside the target: the side database it
//! restores into and the dated name the previous contents move to, cut to the engine's limit.

use chrono::Utc;

/// Longest PostgreSQL identifier (bytes).
pub(super) const PG_MAX_IDENT: usize = 63;
/// Longest MySQL identifier (characters; names here are ASCII-safe in practice).
pub(super) const MYSQL_MAX_IDENT: usize = 64;

/// `base` cut (at a character boundary) so that `base + suffix` fits in `max` bytes.
pub(super) fn fit(base: &str, suffix: &str, max: usize) -> String {
    let room = max.saturating_sub(suffix.len());
    let mut cut = base.len().min(room);
    while !base.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{suffix}", &base[..cut])
}

pub(super) fn side_name(base: &str, max: usize) -> String {
    fit(base, &format!("_restore_{:08x}", rand::random::<u32>()), max)
}

/// `<base>_old_<YYYYMMDDHHMMSS>_<random>`: dated for people, unique per restore (two restores in
/// one second must not meet in one schema, or one's cleanup could drop the other's).
pub(super) fn old_name(base: &str, max: usize) -> String {
    fit(base, &format!("_old_{}_{:08x}", Utc::now().format("%Y%m%d%H%M%S"), rand::random::<u32>()), max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_the_identifier_limits() {
        let long = "x".repeat(80);
        assert_eq!(side_name(&long, PG_MAX_IDENT).len(), PG_MAX_IDENT);
        assert!(side_name("app", PG_MAX_IDENT).starts_with("app_restore_"));
        assert_eq!(old_name("app", PG_MAX_IDENT).len(), "app_old_".len() + 14 + 9);
        assert_ne!(old_name("app", PG_MAX_IDENT), old_name("app", PG_MAX_IDENT), "unique within a second");
        assert_eq!(fit("ééé", "_s", 5), "é_s");
    }
}
