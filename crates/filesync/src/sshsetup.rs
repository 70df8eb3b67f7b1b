//! SSH access from the backup's OS user to the VPS (runbook 3.1): an ed25519 key if there is
//! none, its public key in the VPS user's authorized_keys (once), a `Host` block in
//! `~/.ssh/config` (0644 or stricter), and the VPS's host key in known_hosts, but only after
//! the operator confirmed its fingerprint.

use std::path::{Path, PathBuf};

use host::{CommandSpec, Host, HostErrorKind, Ownership, ScannedKey};

use crate::error::{Result, SyncError};

/// Makes sure `os_user` has `~/.ssh/id_ed25519`; returns the public key line.
pub async fn ensure_key(local: &dyn Host, os_user: &str, home: &Path) -> Result<String> {
    ensure_key_at(local, os_user, &home.join(".ssh").join("id_ed25519")).await
}

/// Makes sure `os_user` has the ed25519 key `key` (made by `ssh-keygen` as that user, so it
/// is theirs and 0600 from the start; its folder 0700); returns the public key line of
/// `key.pub`. An existing key is kept as it is.
pub async fn ensure_key_at(local: &dyn Host, os_user: &str, key: &Path) -> Result<String> {
    let ssh_dir = key.parent().map(Path::to_owned).unwrap_or_default();
    let key = key.to_owned();
    let pub_path = PathBuf::from(format!("{}.pub", key.display()));
    if local
        .stat(&key)
        .await
        .map_err(SyncError::remote("checking the SSH key"))?
        .is_none()
    {
        local
            .mkdir_p(&ssh_dir, &Ownership::owned(0o700, os_user))
            .await
            .map_err(SyncError::remote(format!("creating {}", ssh_dir.display())))?;
        local
            .run(
                &CommandSpec::new("ssh-keygen")
                    .args([
                        "-q",
                        "-t",
                        "ed25519",
                        "-N",
                        "",
                        "-C",
                        &format!("{os_user}@odoo-standby"),
                        "-f",
                    ])
                    .arg(key.display().to_string())
                    .run_as(os_user),
            )
            .await
            .map_err(SyncError::remote("generating an ed25519 key"))?;
    }
    let text = local
        .read_file(&pub_path)
        .await
        .map_err(SyncError::remote(format!("reading {}", pub_path.display())))?;
    Ok(String::from_utf8_lossy(&text).trim().to_owned())
}

/// Adds `public_key` to the login user's authorized_keys on `vps` (or to `file`, when sshd
/// is configured to read another one) unless it is there. Returns whether it was added.
pub async fn install_public_key(
    vps: &dyn Host,
    public_key: &str,
    file: Option<&Path>,
) -> Result<bool> {
    let fields: Vec<&str> = public_key.split_whitespace().collect();
    if fields.len() < 2 || !fields[0].starts_with("ssh-") && !fields[0].starts_with("ecdsa-") {
        return Err(SyncError::invalid(
            "public key",
            "not an OpenSSH public key line",
        ));
    }
    let auth = match file {
        Some(f) => f.to_owned(),
        None => {
            let home = vps
                .run(&CommandSpec::new("sh").args(["-c", "printf %s \"$HOME\""]))
                .await
                .map_err(SyncError::remote("finding the home of the VPS user"))?
                .stdout_text();
            PathBuf::from(home.trim())
                .join(".ssh")
                .join("authorized_keys")
        }
    };
    let ssh_dir = auth.parent().map(Path::to_owned).unwrap_or_default();
    let existing = match vps.read_file(&auth).await {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) if e.kind() == HostErrorKind::NotFound => String::new(),
        Err(e) => return Err(SyncError::remote(format!("reading {}", auth.display()))(e)),
    };
    if existing
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some(fields[1]))
    {
        return Ok(false);
    }
    vps.mkdir_p(&ssh_dir, &Ownership::mode(0o700))
        .await
        .map_err(SyncError::remote(format!("creating {}", ssh_dir.display())))?;
    let mut text = existing;
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(public_key.trim());
    text.push('\n');
    vps.write_file(&auth, text.as_bytes(), &Ownership::mode(0o600))
        .await
        .map_err(SyncError::remote(format!("writing {}", auth.display())))?;
    Ok(true)
}

/// The known_hosts line for a scanned key (`[host]:port` unless the port is 22).
pub fn known_hosts_line(host: &str, port: u16, key: &ScannedKey) -> String {
    let who = if port == 22 {
        host.to_owned()
    } else {
        format!("[{host}]:{port}")
    };
    format!("{who} {} {}", key.key_type, key.key_base64)
}

/// Adds the line to known_hosts when `confirmed_fingerprint` equals the key's (the operator
/// compared it with the server's, out of band). Never adds a key on its own.
pub async fn trust_host_key(
    local: &dyn Host,
    known_hosts: &Path,
    owner: &str,
    host: &str,
    port: u16,
    key: &ScannedKey,
    confirmed_fingerprint: &str,
) -> Result<bool> {
    if confirmed_fingerprint.trim() != key.fingerprint {
        return Err(SyncError::invalid(
            "fingerprint",
            format!(
                "the server offered {}, you confirmed {:?}: not added. If the server was reinstalled, check its key out of band",
                key.fingerprint, confirmed_fingerprint
            ),
        ));
    }
    let line = known_hosts_line(host, port, key);
    let existing = match local.read_file(known_hosts).await {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) if e.kind() == HostErrorKind::NotFound => String::new(),
        Err(e) => {
            return Err(SyncError::remote(format!(
                "reading {}",
                known_hosts.display()
            ))(e))
        }
    };
    if existing.lines().any(|l| l.trim() == line) {
        return Ok(false);
    }
    let mut text = existing;
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&line);
    text.push('\n');
    local
        .write_file(
            known_hosts,
            text.as_bytes(),
            &Ownership::owned(0o644, owner),
        )
        .await
        .map_err(SyncError::remote(format!(
            "writing {}",
            known_hosts.display()
        )))?;
    Ok(true)
}

/// First and last lines of our block in `~/.ssh/config`.
const BEGIN: &str = "# BEGIN odoo-standby";
const END: &str = "# END odoo-standby";

/// `text` with our `Host <alias>` block set (other blocks untouched, byte for byte).
pub fn with_host_block(text: &str, alias: &str, target: &crate::rsync::SshTarget) -> String {
    let begin = format!("{BEGIN} {alias}");
    let end = format!("{END} {alias}");
    let block = format!(
        "{begin}\nHost {alias}\n    HostName {}\n    Port {}\n    User {}\n    IdentityFile {}\n    IdentitiesOnly yes\n    UserKnownHostsFile {}\n    StrictHostKeyChecking yes\n    ServerAliveInterval 15\n{end}\n",
        target.host,
        target.port,
        target.user,
        target.identity.display(),
        target.known_hosts.display()
    );
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let s = lines.iter().position(|l| l.trim_end() == begin);
    let e = s.and_then(|s| {
        lines[s..]
            .iter()
            .position(|l| l.trim_end() == end)
            .map(|e| s + e)
    });
    match (s, e) {
        (Some(s), Some(e)) => format!("{}{block}{}", lines[..s].concat(), lines[e + 1..].concat()),
        _ => {
            let mut out = text.to_owned();
            if !out.is_empty() && !out.ends_with('\n') {
                out.push('\n');
            }
            out.push_str(&block);
            out
        }
    }
}

/// Writes the `Host` block into `config` (mode kept when stricter than 0644, else 0644).
pub async fn ensure_host_block(
    local: &dyn Host,
    config: &Path,
    owner: &str,
    alias: &str,
    target: &crate::rsync::SshTarget,
) -> Result<bool> {
    let (existing, mode) = match local.read_file(config).await {
        Ok(b) => {
            let st = local
                .stat(config)
                .await
                .map_err(SyncError::remote("checking ~/.ssh/config"))?;
            let m = st.map(|s| s.mode).unwrap_or(0o644);
            (
                String::from_utf8_lossy(&b).into_owned(),
                if m & 0o133 == 0 { m } else { 0o644 },
            )
        }
        Err(e) if e.kind() == HostErrorKind::NotFound => (String::new(), 0o644),
        Err(e) => {
            return Err(SyncError::remote(format!("reading {}", config.display()))(
                e,
            ))
        }
    };
    let new = with_host_block(&existing, alias, target);
    if new == existing {
        return Ok(false);
    }
    local
        .write_file(config, new.as_bytes(), &Ownership::owned(mode, owner))
        .await
        .map_err(SyncError::remote(format!("writing {}", config.display())))?;
    Ok(true)
}

/// What [`setup`] did.
#[derive(Clone, Debug)]
pub struct SetupReport {
    /// The public key was added to the VPS user's authorized_keys (else it was there).
    pub key_installed: bool,
    /// The `~/.ssh/config` that got the `Host` block.
    pub config: std::path::PathBuf,
}

/// The whole SSH setup of backup user `os_user` (home `home`) for one VPS, in order: its key
/// (made when missing); the VPS's host key, scanned and added to its known_hosts only when
/// `confirm` returns the fingerprint the operator checked on the VPS; the public key in the
/// authorized_keys of `admin`'s login (a host already logged in to the VPS); a `Host alias`
/// block in its `~/.ssh/config`.
pub async fn setup(
    local: &dyn Host,
    admin: &dyn Host,
    target: &crate::rsync::SshTarget,
    os_user: &str,
    home: &Path,
    alias: &str,
    confirm: impl FnOnce(&ScannedKey) -> Result<String>,
) -> Result<SetupReport> {
    let public = ensure_key(local, os_user, home).await?;
    let scanned = host::scan_host_key(
        &target.host,
        target.port,
        std::time::Duration::from_secs(10),
    )
    .await
    .map_err(SyncError::remote("reading the VPS's host key"))?;
    let confirmed = confirm(&scanned)?;
    trust_host_key(
        local,
        &target.known_hosts,
        os_user,
        &target.host,
        target.port,
        &scanned,
        &confirmed,
    )
    .await?;
    let key_installed = install_public_key(admin, &public, None).await?;
    let config = home.join(".ssh/config");
    ensure_host_block(local, &config, os_user, alias, target).await?;
    Ok(SetupReport {
        key_installed,
        config,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_block_is_added_once_and_replaced_in_place() {
        let t = crate::rsync::SshTarget {
            user: "odoo".into(),
            host: "200.58.98.56".into(),
            port: 5253,
            identity: "/home/u/.ssh/id_ed25519".into(),
            known_hosts: "/home/u/.ssh/known_hosts".into(),
        };
        let mine = "Host other\n    HostName 10.0.0.1\n";
        let once = with_host_block(mine, "vps_clientes_1", &t);
        assert!(once.starts_with(mine));
        assert!(once.contains("Host vps_clientes_1\n    HostName 200.58.98.56\n    Port 5253\n"));
        assert_eq!(with_host_block(&once, "vps_clientes_1", &t), once);
        let mut t2 = t.clone();
        t2.port = 22;
        let twice = with_host_block(&once, "vps_clientes_1", &t2);
        assert!(twice.contains("Port 22\n") && !twice.contains("Port 5253"));
        assert_eq!(twice.matches("Host vps_clientes_1").count(), 1);
    }
}
