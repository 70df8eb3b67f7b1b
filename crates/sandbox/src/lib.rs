//! Real throwaway servers on this machine, for tests and the demo.
//!
//! A [`Sandbox`] owns one temporary root directory and every process it starts there:
//! - PostgreSQL clusters ([`Cluster`]) made with `initdb` or cloned with `pg_basebackup`,
//!   listening on free ports of 127.0.0.1 only, run by `pg_ctl` as the `postgres` OS user when
//!   we are root (PostgreSQL refuses root) or as ourselves otherwise. Superuser `postgres` with
//!   a generated password (scram-sha-256 over TCP), kept in a 0600 passfile.
//! - One OpenSSH server ([`Sshd`]) on a free loopback port, with its own host key, a
//!   generated client key and a known_hosts file holding exactly its host key.
//! - An Odoo-shaped database ([`Cluster::create_odoo_db`], [`Cluster::add_attachments`]) with a
//!   filestore laid out as Odoo does, and a source tree with a stand-in `odoo-bin`
//!   ([`write_odoo_source`]) that checks what the real one checks at start.
//!
//! Dropping the sandbox stops every process it started, by pid (checked to still be ours),
//! also while a test panics, then removes the root directory.
//!
//! ```no_run
//! # fn demo() -> Result<(), sandbox::SandboxError> {
//! let mut sb = sandbox::Sandbox::new()?;
//! let vps = sb.add_cluster("vps")?;
//! vps.create_odoo_db("clientes", "odoo")?;
//! let files = vps.add_attachments("clientes", &sb.dir("vps_data")?, 10, &sandbox::SizeMix::odoo(), 1)?;
//! let standby = sb.add_standby("backup", &vps)?;
//! standby.wait_for("clientes", "SELECT count(*) FROM ir_attachment WHERE store_fname IS NOT NULL", "10", std::time::Duration::from_secs(10))?;
//! # Ok(()) }
//! ```

mod cluster;
mod error;
mod odoo;
mod os;
mod procs;
mod sshd;
mod world;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rand::distributions::Alphanumeric;
use rand::Rng;

pub use cluster::Cluster;
pub use error::{Result, SandboxError};
pub use odoo::{
    attachment, filestore, real_odoo_source, write_addon, write_odoo_source, Attachment, SizeMix,
    ODOO_BIN,
};
pub use os::{free_port, pg_bindir, write_new, RunUser};
pub use procs::{is_alive, stop_pid_files_under};
pub use sshd::Sshd;
pub use world::{pg_version, vps_world, World};

use cluster::ClusterEnv;
use procs::ProcessTable;

/// A set of real servers under one temporary root; see the crate docs.
#[derive(Debug)]
pub struct Sandbox {
    root: PathBuf,
    env: ClusterEnv,
    sshd: Option<Sshd>,
    procs: Arc<ProcessTable>,
    // Declared last: removed after the processes are stopped (Drop runs first anyway).
    tempdir: Option<tempfile::TempDir>,
    detached: bool,
}

/// Stops what a detached sandbox in `dir` left running: every postmaster on a data directory
/// under `dir`, and the processes whose pids are listed in `pids` if their command line still
/// mentions `dir` (so a reused pid is never signalled). Returns how many listed pids were
/// signalled.
pub fn stop_detached(dir: &Path, pids: &[i32]) -> usize {
    let mut stopped = procs::stop_pid_files_under(dir);
    let wanted = dir.as_os_str().as_encoded_bytes();
    for &pid in pids {
        let ours = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|c| c.windows(wanted.len().max(1)).any(|w| w == wanted))
            .unwrap_or(false);
        if ours && procs::is_alive(pid) {
            // SAFETY: kill(2) on a pid whose command line names our directory.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
            stopped += 1;
        }
    }
    procs::stop_postmasters_under(dir);
    for &pid in pids {
        procs::wait_gone(pid, std::time::Duration::from_secs(10));
    }
    stopped
}

impl Sandbox {
    /// A new sandbox under `$ODOO_STANDBY_SANDBOX_TMP`, or the system temp directory.
    pub fn new() -> Result<Self> {
        let base = std::env::var_os("ODOO_STANDBY_SANDBOX_TMP")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let tempdir = tempfile::Builder::new()
            .prefix("odoo-standby-sandbox-")
            .tempdir_in(&base)
            .map_err(|e| SandboxError::io("cannot create a temporary directory in", &base, e))?;
        let root = tempdir.path().to_owned();
        Self::with_root(root, Some(tempdir))
    }

    /// A sandbox in `dir` (created; must be empty if it exists), which is kept after drop.
    /// Pair with [`Sandbox::detach`] to leave its servers running (`odoo-standby sandbox up`).
    pub fn in_dir(dir: &Path) -> Result<Self> {
        if dir.exists() {
            let mut entries =
                std::fs::read_dir(dir).map_err(|e| SandboxError::io("cannot list", dir, e))?;
            if entries.next().is_some() {
                return Err(SandboxError::Usage(format!(
                    "{} is not empty: give a new or empty directory (`sandbox down` it first if it holds a sandbox)",
                    dir.display()
                )));
            }
        }
        os::mkdir(dir, 0o755)?;
        let root =
            std::fs::canonicalize(dir).map_err(|e| SandboxError::io("cannot resolve", dir, e))?;
        Self::with_root(root, None)
    }

    fn with_root(root: PathBuf, tempdir: Option<tempfile::TempDir>) -> Result<Self> {
        // The server user must be able to traverse the root to reach its own directories.
        os::mkdir(&root, 0o755)?;
        let user = RunUser::for_servers()?;
        let bindir = os::pg_bindir()?;
        let password: String = rand::thread_rng()
            .sample_iter(&Alphanumeric)
            .take(32)
            .map(char::from)
            .collect();
        let secrets = root.join("secrets");
        os::mkdir(&secrets, 0o700)?;
        user.chown(&secrets)?;
        let passfile = secrets.join("pgpass");
        os::write_new(
            &passfile,
            format!("*:*:*:postgres:{password}\n").as_bytes(),
            0o600,
        )?;
        user.chown(&passfile)?;
        let procs = Arc::new(ProcessTable::default());
        Ok(Self {
            root: root.clone(),
            env: ClusterEnv {
                root,
                user,
                bindir,
                password,
                passfile,
                procs: procs.clone(),
            },
            sshd: None,
            procs,
            tempdir,
            detached: false,
        })
    }

    /// Leaves every server running when the sandbox is dropped, and keeps the directory;
    /// returns the pids that keep running. Stop them with [`stop_detached`].
    pub fn detach(mut self) -> Vec<i32> {
        self.detached = true;
        self.pids()
    }

    /// The root directory everything lives under.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The OS user the servers run as.
    pub fn run_user(&self) -> &RunUser {
        &self.env.user
    }

    /// A directory `<root>/<name>` for a test's own files (created, mode 0755).
    pub fn dir(&self, name: &str) -> Result<PathBuf> {
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            return Err(SandboxError::Usage(format!(
                "{name:?} is not a plain directory name"
            )));
        }
        let p = self.root.join(name);
        os::mkdir(&p, 0o755)?;
        Ok(p)
    }

    /// Creates and starts a new cluster named `name` (a directory name in the sandbox).
    pub fn add_cluster(&mut self, name: &str) -> Result<Cluster> {
        Cluster::init(&self.env, name)
    }

    /// Clones `primary` with `pg_basebackup -R` into a new cluster `name` and starts it as
    /// its streaming standby.
    pub fn add_standby(&mut self, name: &str, primary: &Cluster) -> Result<Cluster> {
        Cluster::standby_of(&self.env, name, primary)
    }

    /// Starts the sandbox's sshd (once; later calls return the same one).
    pub fn start_sshd(&mut self) -> Result<Sshd> {
        if let Some(s) = &self.sshd {
            return Ok(s.clone());
        }
        let s = Sshd::start(&self.root.join("ssh"), &self.procs)?;
        self.sshd = Some(s.clone());
        Ok(s)
    }

    /// Stops the sshd (a VPS that went away); whether one ran.
    pub fn stop_sshd(&mut self) -> bool {
        match &self.sshd {
            Some(s) => self.procs.stop_child(s.pid),
            None => false,
        }
    }

    /// Starts the sshd again after [`Sandbox::stop_sshd`]: same port, keys and known_hosts.
    pub fn restart_sshd(&mut self) -> Result<Sshd> {
        let Some(old) = self.sshd.clone() else {
            return self.start_sshd();
        };
        self.procs.stop_child(old.pid);
        let s = old.respawn(&self.procs)?;
        self.sshd = Some(s.clone());
        Ok(s)
    }

    /// The pids of every process the sandbox started and has not stopped yet.
    pub fn pids(&self) -> Vec<i32> {
        self.procs.pids()
    }

    /// Stops every process now (what dropping does), keeping the directory until drop:
    /// the ones the sandbox started, and any postmaster running on a data directory under
    /// its root (clusters that the code under test made there).
    pub fn stop_all(&self) {
        procs::stop_pid_files_under(&self.root);
        self.procs.stop_all();
        procs::stop_postmasters_under(&self.root);
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if self.detached {
            return;
        }
        self.stop_all();
        if std::env::var_os("ODOO_STANDBY_SANDBOX_KEEP").is_some() {
            if let Some(t) = self.tempdir.take() {
                eprintln!("sandbox kept at {}", t.keep().display());
            }
        }
    }
}
