//! The one validated name type: every name odoo-standby creates and that reaches SQL, paths
//! or unit names (an instance, a role, a slot, a cluster) is checked once, here.

use std::fmt;

/// A name we create in PostgreSQL, on disk or in systemd: `^[a-z][a-z0-9_]{0,62}$`.
/// Replication slot names allow only lower-case letters, digits and `_`, so one rule fits all.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct Name(String);

/// A name that is not one ([`Name`]): which input, and what it was.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what}: {}", self.reason())]
pub struct InvalidName {
    /// Which input ("slot name", "instance name"...).
    pub what: String,
    /// What it was.
    pub value: String,
}

impl InvalidName {
    /// Why, and what to write instead (the message without "invalid WHAT: ").
    pub fn reason(&self) -> String {
        format!(
            "{:?} must start with a lower-case letter and hold only lower-case letters, digits and '_' (at most 63), e.g. \"vps_clientes_1\"",
            self.value
        )
    }
}

impl Name {
    /// Validates `s`; `what` names the input in the error ("slot name", "role"...).
    pub fn new(what: &str, s: &str) -> Result<Self, InvalidName> {
        let mut chars = s.chars();
        let ok = matches!(chars.next(), Some('a'..='z'))
            && s.len() <= 63
            && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidName {
                what: what.to_owned(),
                value: s.to_owned(),
            })
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad` honours width and alignment (pg_hba columns line up).
        f.pad(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_once() {
        assert!(Name::new("slot", "vps_clientes_1").is_ok());
        for bad in ["", "Vps", "1vps", "vps-1", "vps 1", "a\"b", &"a".repeat(64)] {
            let e = Name::new("slot name", bad).unwrap_err();
            assert!(e.to_string().starts_with("invalid slot name"), "{e}");
        }
    }
}
