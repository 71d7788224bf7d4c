//! The one normalisation of email addresses, shared by both services so that identity-service's
//! accounts and invitations and clinic-service's invited members are keyed alike.

use unicode_normalization::UnicodeNormalization;

/// Unicode NFC (composed and decomposed spellings are one address), then lowercase by Unicode's
/// default mapping. Computed in Rust and stored, never left to PostgreSQL's `lower()`, whose
/// answer depends on the database's locale and which does not compose characters.
pub fn normalize(email: &str) -> String {
    email.nfc().collect::<String>().to_lowercase()
}

#[cfg(test)]
mod tests {
    #[test]
    fn composed_and_decomposed_spellings_are_one_address() {
        for spelling in ["\u{dc}n\u{ef}code@Example.com", "U\u{308}ni\u{308}code@EXAMPLE.com"] {
            assert_eq!(super::normalize(spelling), "\u{fc}n\u{ef}code@example.com", "{spelling:?}");
        }
    }
}
