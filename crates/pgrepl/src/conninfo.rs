//! libpq connection strings (`host=10.0.0.1 port=5432 user=replica_user`): parsed, edited and
//! written back with libpq's quoting, so that values with spaces or quotes survive.

use std::fmt;

use crate::error::{PgreplError, Result};

/// An ordered list of `key=value` pairs. `Debug` and `Display` hide a `password`.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct ConnInfo {
    pairs: Vec<(String, String)>,
}

impl ConnInfo {
    /// Parses the `key=value` form (URIs are not accepted: write the keywords out).
    pub fn parse(s: &str) -> Result<Self> {
        let bad = |reason: String| PgreplError::invalid("connection string", reason);
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            return Err(bad(
                "use the key=value form, e.g. \"host=10.0.0.1 port=5432\"".into(),
            ));
        }
        let mut pairs = Vec::new();
        let mut chars = s.chars().peekable();
        loop {
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
            if chars.peek().is_none() {
                break;
            }
            let mut key = String::new();
            while let Some(&c) = chars.peek() {
                if c == '=' || c.is_whitespace() {
                    break;
                }
                key.push(c);
                chars.next();
            }
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
            if chars.next() != Some('=') {
                return Err(bad(format!("{key:?} has no '=value'")));
            }
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
            let mut value = String::new();
            if chars.peek() == Some(&'\'') {
                chars.next();
                let mut closed = false;
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => value.extend(chars.next()),
                        '\'' => {
                            closed = true;
                            break;
                        }
                        c => value.push(c),
                    }
                }
                if !closed {
                    return Err(bad(format!("unterminated quote in the value of {key:?}")));
                }
            } else {
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() {
                        break;
                    }
                    chars.next();
                    if c == '\\' {
                        value.extend(chars.next());
                    } else {
                        value.push(c);
                    }
                }
            }
            if key.is_empty() {
                return Err(bad("an empty keyword".into()));
            }
            pairs.push((key, value));
        }
        Ok(Self { pairs })
    }

    /// The value of `key` (the last one, as libpq takes it).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Sets `key` (replacing every earlier value).
    pub fn set(&mut self, key: &str, value: impl Into<String>) -> &mut Self {
        self.pairs.retain(|(k, _)| k != key);
        self.pairs.push((key.to_owned(), value.into()));
        self
    }

    /// Removes `key`.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        let v = self.get(key).map(str::to_owned);
        self.pairs.retain(|(k, _)| k != key);
        v
    }

    /// The pairs, in order.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }

    /// The host (`localhost` when unset, as libpq defaults... to a socket; we say so).
    pub fn host(&self) -> &str {
        self.get("host").unwrap_or("localhost")
    }

    /// The port (5432 when unset).
    pub fn port(&self) -> Result<u16> {
        match self.get("port") {
            None => Ok(5432),
            Some(p) => p.parse().map_err(|_| {
                PgreplError::invalid("connection string", format!("port {p:?} is not a number"))
            }),
        }
    }

    /// The string with every value quoted as libpq wants, password included: only for
    /// handing to libpq (a config file of mode 0600), never for showing.
    pub fn to_libpq(&self) -> String {
        self.pairs
            .iter()
            .map(|(k, v)| format!("{k}={}", quote_value(v)))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn quote_value(v: &str) -> String {
    let plain = !v.is_empty()
        && !v
            .chars()
            .any(|c| c.is_whitespace() || c == '\'' || c == '\\');
    if plain {
        v.to_owned()
    } else {
        format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
    }
}

impl fmt::Display for ConnInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown: Vec<String> = self
            .pairs
            .iter()
            .map(|(k, v)| {
                if k == "password" {
                    format!("{k}=***")
                } else {
                    format!("{k}={}", quote_value(v))
                }
            })
            .collect();
        f.write_str(&shown.join(" "))
    }
}

impl fmt::Debug for ConnInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConnInfo({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_quotes_and_round_trips() {
        let c = ConnInfo::parse(
            "host=10.0.0.1 port = 5433 user=replica_user application_name='my app' passfile='/a b/it\\'s'",
        )
        .unwrap();
        assert_eq!(c.get("port"), Some("5433"));
        assert_eq!(c.get("application_name"), Some("my app"));
        assert_eq!(c.get("passfile"), Some("/a b/it's"));
        assert_eq!(ConnInfo::parse(&c.to_libpq()).unwrap(), c);
        assert_eq!(c.port().unwrap(), 5433);
    }

    #[test]
    fn hides_passwords_and_rejects_garbage() {
        let c = ConnInfo::parse("host=h password=hunter2").unwrap();
        assert!(!c.to_string().contains("hunter2"));
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(ConnInfo::parse("host").is_err());
        assert!(ConnInfo::parse("host='x").is_err());
        assert!(ConnInfo::parse("postgres://x").is_err());
    }
}
