//! The state folder of one instance, `<backup.state_dir>/<name>/`: every file odoo-standby
//! keeps about it, named in one place.

use std::path::{Path, PathBuf};

/// `<state_dir>/<name>/` and the files in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    /// The folder of instance `name` under `state_dir` (nothing is created).
    pub fn new(state_dir: &Path, name: &str) -> Self {
        Self {
            dir: state_dir.join(name),
        }
    }

    /// The folder itself.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The lock held by the one odoo-standby working on the instance.
    pub fn lock(&self) -> PathBuf {
        self.dir.join("lock")
    }

    /// The operation in progress.
    pub fn current(&self) -> PathBuf {
        self.dir.join("current.json")
    }

    /// The last operation that completed.
    pub fn last(&self) -> PathBuf {
        self.dir.join("last.json")
    }

    /// The last operation that failed before it changed anything.
    pub fn aborted(&self) -> PathBuf {
        self.dir.join("aborted.json")
    }

    /// One line per step event.
    pub fn journal(&self) -> PathBuf {
        self.dir.join("journal.jsonl")
    }

    /// The sync service's own folder, owned by the backup's `os_user` (the service runs as
    /// that user): its state and the filestore indexes.
    pub fn sync_dir(&self) -> PathBuf {
        self.dir.join("sync")
    }

    /// What the sync service last saw of the VPS (for `status` of all instances).
    pub fn vps_seen(&self) -> PathBuf {
        self.sync_dir().join("vps.json")
    }

    /// What the last sync passes did (for `status`).
    pub fn sync_state(&self) -> PathBuf {
        self.sync_dir().join("sync.json")
    }

    /// While it exists, the syncs do nothing (a failover holds the instance).
    pub fn paused(&self) -> PathBuf {
        self.dir.join("syncs.paused")
    }

    /// What the fence did to the VPS's cluster (until failback releases it).
    pub fn fence(&self) -> PathBuf {
        self.dir.join("fence.json")
    }

    /// The attachment files the last failover found missing.
    pub fn lost_files(&self) -> PathBuf {
        self.dir.join("lost-files.json")
    }

    /// The folder holding the filestore indexes (`<db>.index`).
    pub fn indexes(&self) -> PathBuf {
        self.sync_dir()
    }

    /// Pid files and logs of supervised services here (the sandbox).
    pub fn run_dir(&self) -> PathBuf {
        self.dir.join("run")
    }

    /// Pid files and logs of supervised services on the VPS (the sandbox).
    pub fn vps_run_dir(&self) -> PathBuf {
        self.dir.join("vps-run")
    }
}
