//! Our block in `pg_hba.conf`: the lines that let the backup server's replication and rewind
//! roles in, and nothing else. Everything outside the block stays byte for byte; the block
//! goes first in the file, because pg_hba is first-match and an earlier `reject` or `md5` line
//! would otherwise decide for our roles.

use std::net::IpAddr;

use host::{Host, Ownership};

use crate::error::{PgreplError, Result};
use crate::ident::{quote_literal, Name};
use crate::sql::{execute, Sql};

/// First line of our block.
pub const BEGIN: &str =
    "# BEGIN odoo-standby (managed by pgrepl: lines in this block are replaced)";
/// Last line of our block.
pub const END: &str = "# END odoo-standby";

/// An address or network in CIDR form; a bare address becomes a /32 or /128.
pub fn cidr(addr: &str) -> Result<String> {
    let (ip, bits) = match addr.split_once('/') {
        Some((ip, bits)) => (ip, Some(bits)),
        None => (addr, None),
    };
    let parsed: IpAddr = ip.parse().map_err(|_| {
        PgreplError::invalid(
            "backup address",
            format!("{addr:?} is not an IP address (a host name would make pg_hba depend on DNS): write e.g. 198.51.100.7"),
        )
    })?;
    let max = if parsed.is_ipv4() { 32 } else { 128 };
    let bits = match bits {
        None => max,
        Some(b) => b.parse::<u8>().ok().filter(|b| *b <= max).ok_or_else(|| {
            PgreplError::invalid("backup address", format!("{addr:?}: bad prefix length"))
        })?,
    };
    if bits == 0 {
        return Err(PgreplError::invalid(
            "backup address",
            format!(
                "{addr:?} opens the server to every address; give the backup server's own address"
            ),
        ));
    }
    Ok(format!("{parsed}/{bits}"))
}

/// The lines of our block for these addresses and roles: `host`, plus `hostssl` when the
/// server has SSL on. (PostgreSQL reports a `hostssl` line on a server without SSL as an
/// error, and then refuses to reload the whole file.)
pub fn block_lines(
    addresses: &[String],
    replication: &Name,
    rewind: &Name,
    ssl: bool,
) -> Vec<String> {
    let kinds: &[&str] = if ssl { &["host", "hostssl"] } else { &["host"] };
    let mut lines = vec![BEGIN.to_owned()];
    for addr in addresses {
        for kind in kinds {
            lines.push(format!(
                "{kind:<8}replication  {replication:<16}{addr:<20}scram-sha-256"
            ));
        }
        for kind in kinds {
            lines.push(format!(
                "{kind:<8}all          {rewind:<16}{addr:<20}scram-sha-256"
            ));
        }
    }
    lines.push(END.to_owned());
    lines
}

/// First line of the block that lets a local OS user log in as a role ([`local_login_lines`]).
pub const LOGIN_BEGIN: &str =
    "# BEGIN odoo-standby local login (managed by pgrepl: lines in this block are replaced)";
/// Last line of that block.
pub const LOGIN_END: &str = "# END odoo-standby local login";
/// The pg_ident.conf map our local-login line uses.
pub const LOGIN_MAP: &str = "odoo_standby";

/// `text` with our block replaced by `block` (or put first when absent). Line endings of the
/// file (LF or CRLF) are kept.
pub fn with_block(text: &str, block: &[String]) -> String {
    with_marked(text, BEGIN, END, block)
}

/// `text` with the block between `begin` and `end` lines replaced by `block` (which holds
/// those lines itself), or `block` put first when there is none.
pub fn with_marked(text: &str, begin: &str, end: &str, block: &[String]) -> String {
    let eol = if text.contains("\r\n") { "\r\n" } else { "\n" };
    let rendered: String = block.iter().map(|l| format!("{l}{eol}")).collect();
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let start = lines.iter().position(|l| l.trim_end() == begin);
    let stop = start.and_then(|s| {
        lines[s..]
            .iter()
            .position(|l| l.trim_end() == end)
            .map(|e| s + e)
    });
    match (start, stop) {
        (Some(s), Some(e)) => {
            let mut out: String = lines[..s].concat();
            out.push_str(&rendered);
            out.push_str(&lines[e + 1..].concat());
            out
        }
        _ => format!("{rendered}{text}"),
    }
}

/// The configuration files a block can go in.
#[derive(Clone, Copy, Debug)]
enum File {
    Hba,
    Ident,
}

impl File {
    fn setting(self) -> &'static str {
        match self {
            Self::Hba => "hba_file",
            Self::Ident => "ident_file",
        }
    }
    fn view(self) -> &'static str {
        match self {
            Self::Hba => "pg_hba_file_rules",
            Self::Ident => "pg_ident_file_mappings",
        }
    }
}

/// Puts our block in the server's pg_hba.conf (found with `SHOW hba_file`), has the server
/// check the new file (`pg_hba_file_rules`) before reloading, and puts the old file back if
/// it finds an error. Returns whether the file changed.
pub async fn ensure_block(db: &dyn Sql, host: &dyn Host, block: &[String]) -> Result<bool> {
    let changed = ensure_in(db, host, File::Hba, BEGIN, END, block).await?;
    if changed {
        execute(db, "SELECT pg_reload_conf()").await?;
    }
    Ok(changed)
}

/// The lines that let OS user `os_user` connect over the local socket as `role`: a
/// pg_hba.conf block (`local all ROLE peer map=odoo_standby`) and a pg_ident.conf block
/// (`odoo_standby OS_USER ROLE`).
pub fn local_login_lines(os_user: &str, role: &Name) -> (Vec<String>, Vec<String>) {
    let hba = vec![
        LOGIN_BEGIN.to_owned(),
        format!("local   all          {role:<16}peer map={LOGIN_MAP}"),
        LOGIN_END.to_owned(),
    ];
    let ident = vec![
        LOGIN_BEGIN.to_owned(),
        format!("{LOGIN_MAP:<16}{os_user:<16}{role}"),
        LOGIN_END.to_owned(),
    ];
    (hba, ident)
}

/// Lets OS user `os_user` log in over the local socket as `role` (peer authentication with a
/// user-name map), so that a promoted Odoo run by the backup's own user connects as the
/// VPS's role, which owns the database, and nothing has to change owner. Each file is checked
/// by the server before the reload. Returns whether anything changed.
pub async fn allow_local_login(
    db: &dyn Sql,
    host: &dyn Host,
    os_user: &str,
    role: &Name,
) -> Result<bool> {
    if !crate::ident::valid_os_user(os_user) {
        return Err(PgreplError::invalid(
            "OS user",
            format!("{os_user:?} is not a user name"),
        ));
    }
    let (hba, ident) = local_login_lines(os_user, role);
    let a = ensure_in(db, host, File::Ident, LOGIN_BEGIN, LOGIN_END, &ident).await?;
    let b = ensure_in(db, host, File::Hba, LOGIN_BEGIN, LOGIN_END, &hba).await?;
    if a || b {
        execute(db, "SELECT pg_reload_conf()").await?;
    }
    Ok(a || b)
}

async fn ensure_in(
    db: &dyn Sql,
    host: &dyn Host,
    file: File,
    begin: &str,
    end: &str,
    block: &[String],
) -> Result<bool> {
    let path = crate::sql::query_value(db, &format!("SHOW {}", file.setting()))
        .await?
        .ok_or_else(|| {
            PgreplError::State(format!(
                "the server did not say where its {} is",
                file.setting()
            ))
        })?;
    let path = std::path::PathBuf::from(path);
    let old = host
        .read_file(&path)
        .await
        .map_err(|e| PgreplError::host(format!("reading {}", path.display()), e))?;
    let old = String::from_utf8_lossy(&old).into_owned();
    let new = with_marked(&old, begin, end, block);
    if new == old {
        return Ok(false);
    }
    let st = host
        .stat(&path)
        .await
        .map_err(|e| PgreplError::host(format!("checking {}", path.display()), e))?
        .ok_or_else(|| PgreplError::State(format!("{} disappeared", path.display())))?;
    let own = Ownership::owned(st.mode, format!("{}:{}", st.user, st.group));
    let write = |text: String| {
        let path = path.clone();
        let own = own.clone();
        async move {
            host.write_file(&path, text.as_bytes(), &own)
                .await
                .map_err(|e| PgreplError::host(format!("writing {}", path.display()), e))
        }
    };
    write(new).await?;
    let view = file.view();
    let errors = db
        .query(&format!(
            "SELECT line_number, error FROM {view} WHERE error IS NOT NULL \
             AND file_name = {}",
            quote_literal(&path.display().to_string())
        ))
        .await;
    let errors = match errors {
        // PostgreSQL < 16 has no file_name column.
        Err(e) if e.sqlstate() == Some("42703") => {
            db.query(&format!(
                "SELECT line_number, error FROM {view} WHERE error IS NOT NULL"
            ))
            .await
        }
        // PostgreSQL < 15 has no pg_ident_file_mappings: nothing to check it with.
        Err(e) if e.sqlstate() == Some("42P01") => Ok(Vec::new()),
        other => other,
    };
    match errors {
        Ok(rows) if rows.is_empty() => Ok(true),
        Ok(rows) => {
            write(old).await?;
            let what: Vec<String> = rows
                .iter()
                .map(|r| {
                    format!(
                        "line {}: {}",
                        r[0].clone().unwrap_or_default(),
                        r[1].clone().unwrap_or_default()
                    )
                })
                .collect();
            Err(PgreplError::State(format!(
                "the server found errors in {} with our block, so the old file was put back: {}",
                path.display(),
                what.join("; ")
            )))
        }
        Err(e) => {
            write(old).await?;
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> (Name, Name) {
        (
            Name::new("r", "replica_user").unwrap(),
            Name::new("r", "replica_rewind").unwrap(),
        )
    }

    #[test]
    fn cidr_normalizes_and_refuses_the_world() {
        assert_eq!(cidr("198.51.100.7").unwrap(), "198.51.100.7/32");
        assert_eq!(cidr("2001:db8::1").unwrap(), "2001:db8::1/128");
        assert_eq!(cidr("10.0.0.0/24").unwrap(), "10.0.0.0/24");
        assert!(cidr("0.0.0.0/0").is_err());
        assert!(cidr("backup.example.com").is_err());
        assert!(cidr("10.0.0.1/33").is_err());
    }

    #[test]
    fn block_goes_first_then_is_replaced_in_place() {
        let (a, b) = names();
        let original = "# comment\r\nlocal all all peer\r\nhost all all 0.0.0.0/0 md5\r\n";
        let block = block_lines(&["10.0.0.9/32".into()], &a, &b, true);
        let once = with_block(original, &block);
        assert!(once.starts_with(BEGIN));
        assert!(once.ends_with(original), "the rest is byte-identical");
        assert!(once.contains(
            "host    replication  replica_user    10.0.0.9/32         scram-sha-256\r\n"
        ));
        assert_eq!(with_block(&once, &block), once, "idempotent");
        assert!(once.contains("hostssl replication  replica_user    10.0.0.9/32"));
        let block2 = block_lines(&["10.0.0.8/32".into()], &a, &b, false);
        assert!(!block2.iter().any(|l| l.starts_with("hostssl")));
        let twice = with_block(&once, &block2);
        assert!(!twice.contains("10.0.0.9") && twice.contains("10.0.0.8"));
        assert!(twice.ends_with(original));
    }
}
