//! `.pgpass` files: the only place our replication passwords live on the backup server.
//!
//! Lines are `host:port:database:user:password`; `:` and `\` inside a field are escaped with
//! `\`; `*` matches anything; the first matching line wins (libpq's rules). Lines we do not
//! touch are kept byte for byte, comments included.

use std::fmt;
use std::path::Path;

use host::{FileKind, Host, HostErrorKind, Ownership};

use crate::error::{PgreplError, Result};

/// One credential. `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct PgpassEntry {
    /// Host name or address (or `*`).
    pub host: String,
    /// Port (or `*`).
    pub port: String,
    /// Database (or `*`; `replication` for replication connections).
    pub database: String,
    /// Role (or `*`).
    pub user: String,
    /// The password.
    pub password: String,
}

impl fmt::Debug for PgpassEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PgpassEntry({}:{}:{}:{}:***)",
            self.host, self.port, self.database, self.user
        )
    }
}

fn escape(field: &str) -> String {
    field.replace('\\', "\\\\").replace(':', "\\:")
}

/// Splits a line on unescaped `:` and unescapes the fields.
fn split(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let (Some(n), Some(last)) = (chars.next(), fields.last_mut()) {
                    last.push(n);
                }
            }
            ':' => fields.push(String::new()),
            c => {
                if let Some(last) = fields.last_mut() {
                    last.push(c);
                }
            }
        }
    }
    fields
}

impl PgpassEntry {
    fn parse(line: &str) -> Option<Self> {
        if line.trim_start().starts_with('#') {
            return None;
        }
        let mut f = split(line);
        if f.len() < 5 {
            return None;
        }
        // A password may contain unescaped ':' in hand-written files: keep the rest whole.
        let password = f.split_off(4).join(":");
        let [host, port, database, user]: [String; 4] = f.try_into().ok()?;
        Some(Self {
            host,
            port,
            database,
            user,
            password,
        })
    }

    fn render(&self) -> String {
        format!(
            "{}:{}:{}:{}:{}",
            escape(&self.host),
            escape(&self.port),
            escape(&self.database),
            escape(&self.user),
            escape(&self.password)
        )
    }

    fn same_key(&self, other: &Self) -> bool {
        self.host == other.host
            && self.port == other.port
            && self.database == other.database
            && self.user == other.user
    }

    fn matches(&self, host: &str, port: u16, database: &str, user: &str) -> bool {
        let m = |pat: &str, v: &str| pat == "*" || pat == v;
        m(&self.host, host)
            && m(&self.port, &port.to_string())
            && m(&self.database, database)
            && m(&self.user, user)
    }
}

/// A parsed `.pgpass` file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pgpass {
    lines: Vec<(String, Option<PgpassEntry>)>,
}

impl Pgpass {
    /// Parses a file's text.
    pub fn parse(text: &str) -> Self {
        Self {
            lines: text
                .lines()
                .map(|l| (l.to_owned(), PgpassEntry::parse(l)))
                .collect(),
        }
    }

    /// The file's text.
    pub fn render(&self) -> String {
        let mut out: String = self
            .lines
            .iter()
            .map(|(raw, _)| raw.as_str())
            .collect::<Vec<_>>()
            .join("\n");
        if !out.is_empty() {
            out.push('\n');
        }
        out
    }

    /// Adds `entry`, or replaces the password of the line with the same host, port, database
    /// and user. Returns whether anything changed.
    pub fn upsert(&mut self, entry: PgpassEntry) -> bool {
        for (raw, parsed) in &mut self.lines {
            if let Some(p) = parsed {
                if p.same_key(&entry) {
                    if p.password == entry.password {
                        return false;
                    }
                    *raw = entry.render();
                    *parsed = Some(entry);
                    return true;
                }
            }
        }
        self.lines.push((entry.render(), Some(entry)));
        true
    }

    /// The password libpq would use for this connection (first matching line).
    pub fn lookup(&self, host: &str, port: u16, database: &str, user: &str) -> Option<&str> {
        self.lines
            .iter()
            .filter_map(|(_, p)| p.as_ref())
            .find(|p| p.matches(host, port, database, user))
            .map(|p| p.password.as_str())
    }
}

/// Reads a `.pgpass` on `host`; a missing file is empty. Refuses a file readable by group or
/// others, as libpq does, with a message that says how to fix it.
pub async fn load(host: &dyn Host, path: &Path) -> Result<Pgpass> {
    let st = host
        .stat(path)
        .await
        .map_err(|e| PgreplError::host(format!("checking {}", path.display()), e))?;
    match st {
        None => return Ok(Pgpass::default()),
        Some(st) if st.kind != FileKind::File => {
            return Err(PgreplError::invalid(
                "password file",
                format!("{} is not a regular file", path.display()),
            ))
        }
        Some(st) if st.mode & 0o077 != 0 => {
            return Err(PgreplError::PgpassPermissions {
                path: path.to_owned(),
                mode: st.mode,
            })
        }
        Some(_) => {}
    }
    match host.read_file(path).await {
        Ok(bytes) => Ok(Pgpass::parse(&String::from_utf8_lossy(&bytes))),
        Err(e) if e.kind() == HostErrorKind::NotFound => Ok(Pgpass::default()),
        Err(e) => Err(PgreplError::host(format!("reading {}", path.display()), e)),
    }
}

/// Adds or replaces entries in the `.pgpass` at `path` on `host`, written atomically with
/// mode 0600 (set before the contents go in) and owned by `owner`. Returns whether the file
/// changed; an unchanged file is not rewritten.
pub async fn upsert(
    host: &dyn Host,
    path: &Path,
    owner: &str,
    entries: &[PgpassEntry],
) -> Result<bool> {
    let mut file = load(host, path).await?;
    let mut changed = false;
    for e in entries {
        changed |= file.upsert(e.clone());
    }
    let st = host
        .stat(path)
        .await
        .map_err(|e| PgreplError::host(format!("checking {}", path.display()), e))?;
    let owner_ok = st.as_ref().is_some_and(|s| s.user == owner);
    if changed || !owner_ok {
        host.write_file(
            path,
            file.render().as_bytes(),
            &Ownership::owned(0o600, owner),
        )
        .await
        .map_err(|e| PgreplError::host(format!("writing {}", path.display()), e))?;
    }
    Ok(changed || !owner_ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(host: &str, pw: &str) -> PgpassEntry {
        PgpassEntry {
            host: host.into(),
            port: "5432".into(),
            database: "replication".into(),
            user: "replica_user".into(),
            password: pw.into(),
        }
    }

    #[test]
    fn escapes_and_round_trips() {
        let e = entry("10.0.0.1", r"a:b\c");
        let line = e.render();
        assert_eq!(line, r"10.0.0.1:5432:replication:replica_user:a\:b\\c");
        assert_eq!(PgpassEntry::parse(&line).unwrap(), e);
    }

    #[test]
    fn upsert_replaces_in_place_and_keeps_other_lines() {
        let text = "# mine\n*:*:*:postgres:pg\n10.0.0.1:5432:replication:replica_user:old\n";
        let mut f = Pgpass::parse(text);
        assert_eq!(f.render(), text, "an untouched file is byte-identical");
        assert!(f.upsert(entry("10.0.0.1", "new")));
        assert!(!f.upsert(entry("10.0.0.1", "new")), "same value: no change");
        assert!(f.upsert(entry("10.0.0.2", "x")));
        assert_eq!(
            f.render(),
            "# mine\n*:*:*:postgres:pg\n10.0.0.1:5432:replication:replica_user:new\n\
             10.0.0.2:5432:replication:replica_user:x\n"
        );
        assert_eq!(
            f.lookup("10.0.0.1", 5432, "replication", "replica_user"),
            Some("new")
        );
        assert_eq!(f.lookup("any", 1, "db", "postgres"), Some("pg"));
        assert_eq!(f.lookup("any", 1, "db", "nobody"), None);
    }

    #[test]
    fn debug_hides_the_password() {
        assert!(!format!("{:?}", entry("h", "hunter2")).contains("hunter2"));
    }
}
