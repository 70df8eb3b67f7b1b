//! The files written on the backup go back to the VPS at failback, and nothing the VPS has
//! is ever replaced.
//!
//! Filestore names are content hashes (`xx/<sha1 of the content>`): a name the VPS has is the
//! same file, whatever the backup's copy looks like now. So only names missing on the VPS
//! travel (rsync `--ignore-existing`, listed first with `--dry-run`), and each is checked
//! against its SHA-1 here before it is sent: a copy damaged on the backup (truncated, bytes
//! changed) is reported and never sent. The rest of data_dir (sessions, `addons/<version>`)
//! goes with `--ignore-existing` too: a file the VPS has is kept as it is.
//!
//! ```no_run
//! # async fn demo(local: &dyn host::Host, target: filesync::rsync::SshTarget) -> filesync::Result<()> {
//! use filesync::copyback::CopyBack;
//! let cb = CopyBack {
//!     target,
//!     local_data_dir: "/opt/odoouser/respaldo_filestore/vps1/data_dir".into(),
//!     remote_data_dir: "/var/opt/odoo/data_dir".into(),
//! };
//! let r = cb.filestore(local, "clientes").await?;
//! println!("{} sent, {} damaged here and kept back", r.sent.len(), r.damaged.len());
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};

use host::{CommandSpec, Host};
use serde::Serialize;

use crate::error::{Result, SyncError};
use crate::name::StoreName;
use crate::rsync::SshTarget;

/// One data_dir going back.
#[derive(Clone, Debug)]
pub struct CopyBack {
    /// How rsync reaches the VPS.
    pub target: SshTarget,
    /// The backup's copy (`<root>/<name>/data_dir`).
    pub local_data_dir: PathBuf,
    /// The VPS's data_dir.
    pub remote_data_dir: PathBuf,
}

/// What went back for one database.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct CopyBackReport {
    /// The database.
    pub db: String,
    /// Names sent (the VPS did not have them; their content matches their name).
    pub sent: Vec<String>,
    /// Names the VPS does not have whose copy here does not match its name: not sent.
    pub damaged: Vec<String>,
    /// Paths that are not content-addressed names (Odoo's `checklist/` markers): sent
    /// without a check, never replacing the VPS's.
    pub other: Vec<String>,
    /// Bytes sent.
    pub bytes: u64,
}

const RSYNC: [&str; 3] = ["-a", "--timeout=15", "--protect-args"];

impl CopyBack {
    fn remote(&self, sub: &str) -> Result<String> {
        let r = self.remote_data_dir.display().to_string();
        let r = r.trim_end_matches('/');
        if !r.starts_with('/') || r.is_empty() {
            return Err(SyncError::invalid(
                "remote path",
                format!("{r:?} must be an absolute path"),
            ));
        }
        Ok(format!("{}{r}/{sub}", self.target.rsync_prefix()))
    }

    fn local(&self, sub: &str) -> String {
        format!("{}/{sub}", self.local_data_dir.display())
    }

    fn rsync(&self) -> Result<CommandSpec> {
        Ok(CommandSpec::new("rsync")
            .args(RSYNC)
            .args(["-e", &self.target.ssh_command()?])
            .arg("--ignore-existing"))
    }

    /// Everything of data_dir but the filestore, adding only what the VPS lacks.
    pub fn rest_command(&self) -> Result<CommandSpec> {
        Ok(self
            .rsync()?
            .arg("--exclude=/filestore/")
            .arg(self.local(""))
            .arg(self.remote("")?))
    }

    /// Lists the files of database `db`'s filestore that the VPS lacks (changes nothing).
    pub fn list_command(&self, db: &str) -> Result<CommandSpec> {
        check_db(db)?;
        Ok(self
            .rsync()?
            .args(["--dry-run", "--out-format=%n"])
            .arg(self.local(&format!("filestore/{db}/")))
            .arg(self.remote(&format!("filestore/{db}/"))?)
            .asks())
    }

    /// Sends the files named on its standard input (NUL-separated, relative to the
    /// database's folder), never replacing one the VPS has.
    pub fn send_command(&self, db: &str) -> Result<CommandSpec> {
        check_db(db)?;
        Ok(self
            .rsync()?
            .args(["--from0", "--files-from=-"])
            .arg(self.local(&format!("filestore/{db}/")))
            .arg(self.remote(&format!("filestore/{db}/"))?))
    }

    /// The databases with a filestore folder here.
    pub fn databases(&self) -> Result<Vec<String>> {
        let dir = self.local_data_dir.join("filestore");
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(SyncError::local("cannot list", &dir, e)),
        };
        let mut dbs: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|d| check_db(d).is_ok())
            .collect();
        dbs.sort();
        Ok(dbs)
    }

    /// Sends the rest of data_dir (see [`CopyBack::rest_command`]).
    pub async fn rest(&self, local: &dyn Host) -> Result<()> {
        local
            .run(&self.rest_command()?)
            .await
            .map_err(SyncError::remote("copying data_dir back to the VPS"))
            .map(drop)
    }

    /// Database `db`'s filestore: lists what the VPS lacks, checks each against its name,
    /// sends the sound ones. Running it again sends nothing already there.
    pub async fn filestore(&self, local: &dyn Host, db: &str) -> Result<CopyBackReport> {
        let out = local
            .run(&self.list_command(db)?)
            .await
            .map_err(SyncError::remote(format!(
                "listing what the VPS lacks of {db}'s filestore"
            )))?;
        let listed: Vec<String> = out
            .stdout_text()
            .lines()
            .filter(|l| !l.is_empty() && !l.ends_with('/'))
            .map(str::to_owned)
            .collect();
        let root = self.local_data_dir.join("filestore").join(db);
        let db_name = db.to_owned();
        let mut report = tokio::task::spawn_blocking(move || check_listed(&db_name, &root, listed))
            .await
            .map_err(|e| SyncError::Invalid {
                what: "copy-back".into(),
                reason: format!("the check stopped: {e}"),
            })??;
        let send: Vec<&String> = report.sent.iter().chain(&report.other).collect();
        if send.is_empty() {
            return Ok(report);
        }
        let mut list = Vec::new();
        for n in send {
            list.extend_from_slice(n.as_bytes());
            list.push(0);
        }
        local
            .run(&self.send_command(db)?.stdin(list))
            .await
            .map_err(SyncError::remote(format!(
                "sending {db}'s files back to the VPS"
            )))?;
        report.db = db.to_owned();
        Ok(report)
    }
}

fn check_db(db: &str) -> Result<()> {
    crate::filestore::validate_db_name(db)
}

/// Splits what rsync listed into sound names, damaged ones and other paths.
fn check_listed(db: &str, root: &Path, listed: Vec<String>) -> Result<CopyBackReport> {
    let mut r = CopyBackReport {
        db: db.to_owned(),
        ..Default::default()
    };
    for path in listed {
        let Some(name) = StoreName::parse(&path) else {
            r.other.push(path);
            continue;
        };
        let file = root.join(&path);
        match crate::audit::sha1_file(&file) {
            Ok(h) if &h == name.sha() => {
                r.bytes += std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
                r.sent.push(path);
            }
            Ok(_) => r.damaged.push(path),
            Err(e) => return Err(SyncError::local("cannot read", &file, e)),
        }
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cb() -> CopyBack {
        CopyBack {
            target: SshTarget {
                user: "odoo".into(),
                host: "10.0.0.2".into(),
                port: 22,
                identity: "/k".into(),
                known_hosts: "/kh".into(),
            },
            local_data_dir: "/b/data_dir".into(),
            remote_data_dir: "/var/opt/odoo/data_dir/".into(),
        }
    }

    #[test]
    fn nothing_on_the_vps_is_ever_replaced() {
        for spec in [
            cb().rest_command().unwrap(),
            cb().list_command("clientes").unwrap(),
            cb().send_command("clientes").unwrap(),
        ] {
            let argv = spec.display_argv();
            assert!(argv.contains(&"--ignore-existing".to_owned()), "{argv:?}");
            assert!(!argv.iter().any(|a| a.starts_with("--delete")), "{argv:?}");
        }
        let list = cb().list_command("clientes").unwrap().display_argv();
        assert!(list.contains(&"--dry-run".to_owned()));
        assert_eq!(
            list.last().unwrap(),
            "odoo@10.0.0.2:/var/opt/odoo/data_dir/filestore/clientes/"
        );
        assert!(cb().list_command("../etc").is_err());
    }

    #[test]
    fn a_damaged_copy_is_kept_back() {
        let dir = tempfile::tempdir().unwrap();
        let good = b"good content";
        let sha = {
            use sha1::Digest;
            hex::encode(sha1::Sha1::digest(good))
        };
        let good_name = format!("{}/{sha}", &sha[..2]);
        std::fs::create_dir_all(dir.path().join(&sha[..2])).unwrap();
        std::fs::write(dir.path().join(&good_name), good).unwrap();
        let bad_sha = "ab".to_owned() + &sha[2..];
        let bad_name = format!("ab/{bad_sha}");
        std::fs::create_dir_all(dir.path().join("ab")).unwrap();
        std::fs::write(dir.path().join(&bad_name), b"truncat").unwrap();
        let r = check_listed(
            "db",
            dir.path(),
            vec![good_name.clone(), bad_name.clone(), "checklist/x".into()],
        )
        .unwrap();
        assert_eq!(r.sent, [good_name]);
        assert_eq!(r.damaged, [bad_name]);
        assert_eq!(r.other, ["checklist/x"]);
        assert_eq!(r.bytes, good.len() as u64);
    }
}
