//! Names that reach SQL, validated once, and the quoting every SQL text we build goes through.

use crate::error::PgreplError;

pub use host::Name;

impl From<host::InvalidName> for PgreplError {
    fn from(e: host::InvalidName) -> Self {
        PgreplError::invalid(e.what.clone(), e.reason())
    }
}

/// Whether `name` is a POSIX user name as Debian's `useradd` accepts it (it goes into
/// pg_ident.conf, where a space would split it).
pub(crate) fn valid_os_user(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && name.len() <= 32
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'))
}

/// Quotes an identifier as PostgreSQL's `quote_ident` does.
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Quotes a literal as PostgreSQL's `quote_literal` does (standard strings; a backslash
/// switches to the `E''` form so the result is right whatever `standard_conforming_strings`).
pub fn quote_literal(s: &str) -> String {
    let body = s.replace('\'', "''");
    if s.contains('\\') {
        format!("E'{}'", body.replace('\\', "\\\\"))
    } else {
        format!("'{body}'")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        assert!(Name::new("slot", "vps_clientes_1").is_ok());
        for bad in [
            "",
            "1abc",
            "Vps",
            "a-b",
            "a'b",
            "a\"b",
            "a b",
            &"a".repeat(64),
        ] {
            let err = Name::new("slot name", bad).unwrap_err().to_string();
            assert!(err.starts_with("invalid slot name"), "{err}");
        }
    }

    #[test]
    fn quoting_matches_postgres() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_literal("a\\b'"), "E'a\\\\b'''");
    }
}
