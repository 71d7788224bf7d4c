//! The one mapping from an organization name to its tenant database name.
//!
//! `clinic_` + a slug of lowercase ASCII letters, digits and single underscores. Every other
//! character separates words; names that leave nothing are rejected. PostgreSQL identifiers are
//! at most 63 bytes, so a long slug is cut and suffixed with a hash of the whole slug: two
//! different long names still get different databases, and the same name always the same one.
//! Names differing only in case or punctuation (`ACME`, `acme`, `Acme!`) share a database name,
//! which the central register's unique constraint turns into `ALREADY_EXISTS`.

use sha2::{Digest, Sha256};

/// Prefix of every tenant database.
pub const DATABASE_PREFIX: &str = "clinic_";
/// PostgreSQL's identifier limit (NAMEDATALEN - 1).
pub const MAX_IDENTIFIER_BYTES: usize = 63;
/// Longest accepted organization name, in characters.
pub const MAX_NAME_CHARS: usize = 100;
/// Slugs that would collide with databases the platform itself uses (`clinic_db`, the
/// central database's default name, and the tenant template).
const RESERVED_SLUGS: &[&str] = &["db", "template"];

/// Why a name cannot become a database name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlugError {
    /// Blank after trimming.
    #[error("must not be empty")]
    Empty,
    /// Longer than [`MAX_NAME_CHARS`].
    #[error("must be at most {MAX_NAME_CHARS} characters")]
    TooLong,
    /// Contains control characters.
    #[error("must not contain control characters")]
    ControlCharacters,
    /// Has no ASCII letter or digit to build a slug from.
    #[error("must contain at least one ASCII letter or digit")]
    NoSlug,
    /// Maps to a name the platform reserves.
    #[error("maps to a reserved database name")]
    Reserved,
}

/// Validates an organization's display name and returns it trimmed.
pub fn validate_name(name: &str) -> Result<&str, SlugError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(SlugError::Empty);
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(SlugError::TooLong);
    }
    if name.chars().any(char::is_control) {
        return Err(SlugError::ControlCharacters);
    }
    Ok(name)
}

/// The tenant database name for an organization name.
pub fn database_name(name: &str) -> Result<String, SlugError> {
    let name = validate_name(name)?;
    let mut slug = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.is_empty() && !slug.ends_with('_') {
            slug.push('_');
        }
    }
    while slug.ends_with('_') {
        slug.pop();
    }
    if slug.is_empty() {
        return Err(SlugError::NoSlug);
    }
    if RESERVED_SLUGS.contains(&slug.as_str()) {
        return Err(SlugError::Reserved);
    }
    let room = MAX_IDENTIFIER_BYTES - DATABASE_PREFIX.len();
    if slug.len() > room {
        let hash = hex::encode(&Sha256::digest(slug.as_bytes())[..4]);
        // slug is ASCII, so any byte index is a char boundary.
        slug.truncate(room - hash.len() - 1);
        while slug.ends_with('_') {
            slug.pop();
        }
        slug.push('_');
        slug.push_str(&hash);
    }
    Ok(format!("{DATABASE_PREFIX}{slug}"))
}

/// Quotes a PostgreSQL identifier: wraps it in double quotes and doubles inner quotes. Every
/// identifier that is not a literal in the code goes through this before it reaches SQL text.
pub fn quote_ident(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_names_to_safe_database_names() {
        let cases: &[(&str, Result<&str, SlugError>)] = &[
            ("Acme", Ok("clinic_acme")),
            ("ACME", Ok("clinic_acme")),
            ("  St. Mary's Clinic  ", Ok("clinic_st_mary_s_clinic")),
            ("Acme; DROP DATABASE clinic_db", Ok("clinic_acme_drop_database_clinic_db")),
            ("../x", Ok("clinic_x")),
            ("Café Zürich", Ok("clinic_caf_z_rich")),
            ("🦷🦷", Err(SlugError::NoSlug)),
            ("", Err(SlugError::Empty)),
            ("   ", Err(SlugError::Empty)),
            ("a\u{0}b", Err(SlugError::ControlCharacters)),
            ("DB", Err(SlugError::Reserved)),
            ("template", Err(SlugError::Reserved)),
        ];
        for (name, want) in cases {
            assert_eq!(database_name(name), want.clone().map(String::from), "{name:?}");
        }
        assert_eq!(database_name(&"x".repeat(300)), Err(SlugError::TooLong));
    }

    #[test]
    fn long_names_are_cut_to_63_bytes_and_stay_distinct() {
        let a = database_name(&format!("{}a", "n".repeat(99))).unwrap();
        let b = database_name(&format!("{}b", "n".repeat(99))).unwrap();
        assert_eq!(a.len(), MAX_IDENTIFIER_BYTES);
        assert!(b.len() <= MAX_IDENTIFIER_BYTES);
        assert_ne!(a, b);
        assert_eq!(a, database_name(&format!("{}A", "n".repeat(99))).unwrap());
        assert!(a.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_'));
    }

    #[test]
    fn quotes_identifiers() {
        assert_eq!(quote_ident("clinic_acme"), "\"clinic_acme\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
