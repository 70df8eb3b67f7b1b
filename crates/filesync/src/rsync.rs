//! Plain trees with rsync over SSH (runbook 3.3 and 3.5): addon sources, `data_dir/addons`,
//! sessions, requirement.txt; and the first full copy of a data_dir, with progress.
//!
//! The runbook's flags, minus `-z` by default (attachments and most sources are already
//! compressed; on a LAN compression costs CPU for nothing): `-a --partial --timeout=15`,
//! `--delete` where it used it, no trailing slash on the source (the folder itself is copied
//! into the destination). The SSH command checks the host key strictly and never prompts.

use std::path::{Path, PathBuf};

use host::{CommandSpec, Host};

use crate::error::{Result, SyncError};

/// How rsync reaches the VPS.
#[derive(Clone, Debug)]
pub struct SshTarget {
    /// Login user on the VPS.
    pub user: String,
    /// VPS address.
    pub host: String,
    /// SSH port.
    pub port: u16,
    /// Private key.
    pub identity: PathBuf,
    /// known_hosts with the VPS's key.
    pub known_hosts: PathBuf,
}

impl SshTarget {
    /// `user@host:` as rsync reads it: an IPv6 address in brackets (`odoo@[2001:db8::5]:`),
    /// or rsync would take its first colon for the end of the host.
    pub fn rsync_prefix(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("{}@[{}]:", self.user, self.host)
        } else {
            format!("{}@{}:", self.user, self.host)
        }
    }

    /// The `ssh` command rsync runs (`-e`): strict host key, no prompts, our key only.
    pub fn ssh_command(&self) -> Result<String> {
        for p in [&self.identity, &self.known_hosts] {
            let s = p.display().to_string();
            if s.chars()
                .any(|c| c.is_whitespace() || c == '\'' || c == '"')
            {
                return Err(SyncError::invalid(
                    "path",
                    format!("{s:?}: rsync's -e cannot take spaces or quotes"),
                ));
            }
        }
        Ok(format!(
            "ssh -p {} -i {} -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes -o BatchMode=yes -o IdentitiesOnly=yes -o ConnectTimeout=15",
            self.port,
            self.identity.display(),
            self.known_hosts.display()
        ))
    }
}

/// One tree to mirror.
#[derive(Clone, Debug)]
pub struct Tree {
    /// Path on the VPS (a trailing slash is removed: the folder itself is copied).
    pub remote: PathBuf,
    /// Folder on the backup that receives it (`<dest>/<basename of remote>`).
    pub dest_parent: PathBuf,
    /// Delete files here that the VPS no longer has (the runbook does for sources and
    /// data_dir trees, not for requirement.txt).
    pub delete: bool,
    /// Compress on the wire (`-z`).
    pub compress: bool,
    /// Paths (relative to the tree) to leave alone, e.g. `filestore` when our own sync has it.
    pub exclude: Vec<String>,
}

/// The rsync command for a tree (for running, or for a cron line).
pub fn command(target: &SshTarget, tree: &Tree, progress: bool) -> Result<CommandSpec> {
    let remote = tree.remote.display().to_string();
    let remote = remote.trim_end_matches('/');
    if !remote.starts_with('/') || remote.len() < 2 {
        return Err(SyncError::invalid(
            "remote path",
            format!("{remote:?} must be an absolute path"),
        ));
    }
    let mut spec = CommandSpec::new("rsync")
        .args(["-a", "--partial", "--timeout=15", "--protect-args"])
        .args(["-e", &target.ssh_command()?]);
    if tree.delete {
        spec = spec.arg("--delete");
    }
    if tree.compress {
        spec = spec.arg("-z");
    }
    if progress {
        spec = spec.args(["--info=progress2", "--no-inc-recursive"]);
    }
    for e in &tree.exclude {
        spec = spec.arg(format!("--exclude=/{}", e.trim_start_matches('/')));
    }
    Ok(spec
        .arg(format!("{}{remote}", target.rsync_prefix()))
        .arg(format!("{}/", tree.dest_parent.display())))
}

/// Mirrors a tree, as the user that owns the destination.
pub async fn mirror(
    local: &dyn Host,
    target: &SshTarget,
    tree: &Tree,
    as_user: Option<&str>,
) -> Result<()> {
    let mut spec = command(target, tree, false)?;
    if let Some(u) = as_user {
        spec = spec.run_as(u);
    }
    local.run(&spec).await.map_err(SyncError::remote(format!(
        "copying {} from {}",
        tree.remote.display(),
        target.host
    )))?;
    Ok(())
}

/// Parses an `--info=progress2` line (`  1,234,567  45%  1.23MB/s  0:00:12`): bytes, percent.
pub fn parse_progress(line: &str) -> Option<(u64, u8)> {
    let mut f = line.split_whitespace();
    let bytes: u64 = f.next()?.replace(',', "").parse().ok()?;
    let pct: u8 = f.next()?.strip_suffix('%')?.parse().ok()?;
    Some((bytes, pct))
}

/// The rsync [`seed`] runs: `remote_data_dir` into `dest_parent`, nothing deleted, with
/// progress lines.
pub fn seed_command(
    target: &SshTarget,
    remote_data_dir: &Path,
    dest_parent: &Path,
) -> Result<CommandSpec> {
    let tree = Tree {
        remote: remote_data_dir.to_owned(),
        dest_parent: dest_parent.to_owned(),
        delete: false,
        compress: false,
        exclude: Vec::new(),
    };
    command(target, &tree, true)
}

/// The rsync that sends the contents of `local_dir` into `remote_dir` on the VPS, adding and
/// updating, deleting nothing there.
pub fn push_command(
    target: &SshTarget,
    local_dir: &Path,
    remote_dir: &Path,
) -> Result<CommandSpec> {
    let remote = remote_dir.display().to_string();
    if !remote.starts_with('/') || remote.len() < 2 {
        return Err(SyncError::invalid(
            "remote path",
            format!("{remote:?} must be an absolute path"),
        ));
    }
    Ok(CommandSpec::new("rsync")
        .args(["-a", "--partial", "--timeout=15", "--protect-args"])
        .args(["-e", &target.ssh_command()?])
        .arg(format!("{}/", local_dir.display()))
        .arg(format!(
            "{}{}/",
            target.rsync_prefix(),
            remote.trim_end_matches('/')
        )))
}

/// The first full copy of a data_dir, with progress (bytes, percent) to the caller.
pub async fn seed(
    local: &dyn Host,
    target: &SshTarget,
    remote_data_dir: &Path,
    dest_parent: &Path,
    as_user: Option<&str>,
    progress: &mut (dyn FnMut(u64, u8) + Send),
) -> Result<()> {
    let mut spec = seed_command(target, remote_data_dir, dest_parent)?;
    if let Some(u) = as_user {
        spec = spec.run_as(u);
    }
    let (writer, mut reader) = tokio::io::duplex(64 * 1024);
    let run = local.stream(&spec, None, Box::new(writer));
    let read = async {
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 4096];
        let mut pending = String::new();
        while let Ok(n) = reader.read(&mut buf).await {
            if n == 0 {
                break;
            }
            pending.push_str(&String::from_utf8_lossy(&buf[..n]));
            while let Some(i) = pending.find(['\r', '\n']) {
                let line: String = pending.drain(..=i).collect();
                if let Some((b, p)) = parse_progress(&line) {
                    progress(b, p);
                }
            }
        }
    };
    let (result, ()) = tokio::join!(run, read);
    result.map_err(SyncError::remote(format!(
        "copying {} from {}",
        remote_data_dir.display(),
        target.host
    )))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> SshTarget {
        SshTarget {
            user: "odoo".into(),
            host: "200.58.98.56".into(),
            port: 5253,
            identity: "/home/odoouser/.ssh/id_ed25519".into(),
            known_hosts: "/home/odoouser/.ssh/known_hosts".into(),
        }
    }

    #[test]
    fn runbook_semantics_without_compression() {
        let tree = Tree {
            remote: "/opt/odoo/sources/".into(),
            dest_parent: "/srv/r/vps1".into(),
            delete: true,
            compress: false,
            exclude: vec![],
        };
        let c = command(&target(), &tree, false).unwrap().to_string();
        assert!(c.contains("rsync -a --partial --timeout=15"), "{c}");
        assert!(c.contains("--delete") && !c.contains(" -z"), "{c}");
        assert!(
            c.contains("StrictHostKeyChecking=yes") && c.contains("BatchMode=yes"),
            "{c}"
        );
        assert!(
            c.ends_with("odoo@200.58.98.56:/opt/odoo/sources /srv/r/vps1/"),
            "no trailing slash on the source: {c}"
        );
        assert_eq!(
            parse_progress("  1,234,567  45%  1.23MB/s    0:00:12 (xfr#3, to-chk=0/5)"),
            Some((1_234_567, 45))
        );
        let mut t = target();
        t.identity = "/a b/key".into();
        assert!(command(&t, &tree, false).is_err());
    }
}

#[cfg(test)]
mod target_tests {
    use super::*;

    #[test]
    fn an_ipv6_host_is_bracketed_for_rsync() {
        let t = |host: &str| SshTarget {
            user: "odoo".into(),
            host: host.into(),
            port: 22,
            identity: "/k".into(),
            known_hosts: "/h".into(),
        };
        assert_eq!(t("2001:db8::5").rsync_prefix(), "odoo@[2001:db8::5]:");
        assert_eq!(t("198.51.100.7").rsync_prefix(), "odoo@198.51.100.7:");
        assert_eq!(t("vps.example.com").rsync_prefix(), "odoo@vps.example.com:");
    }
}
