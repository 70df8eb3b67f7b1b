//! The journal: one folder per instance (`<state_dir>/<name>/`) with
//! - `lock`: held (flock) by the one odoo-standby working on the instance; the kernel drops it
//!   when that process ends, however it ends, so a killed run never leaves a stale lock;
//! - `current.json`: the operation in progress and its options, until it completes;
//! - `journal.jsonl`: one line per step event (`started`, `done`, `already`), fsynced, so a
//!   run killed at any point can be resumed: steps recorded `done` are skipped, the step that
//!   was interrupted runs again (each step checks before it acts).

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{FailoverError, Result};
use crate::state::StateDir;

/// The operation in progress on an instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Current {
    /// `protect`, `failover` or `failback`.
    pub operation: String,
    /// Identifies this run in the journal.
    pub run: String,
    /// `--force` was given (failover).
    #[serde(default)]
    pub force: bool,
    /// `--restart-vps` was given (protect).
    #[serde(default)]
    pub restart_vps: bool,
    /// `--vps-unreachable` was given (failover): a resume keeps the acknowledgement, but the
    /// fence is checked again, so a VPS that came back is never ignored.
    #[serde(default)]
    pub vps_unreachable: bool,
    /// `--discard-vps-writes` was given (failback): a resume keeps it.
    #[serde(default)]
    pub discard_vps_writes: bool,
    /// When it started (seconds since the epoch).
    pub started: u64,
}

/// One journal line.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Entry {
    /// Seconds since the epoch.
    pub at: u64,
    /// The run.
    pub run: String,
    /// The operation.
    pub operation: String,
    /// The step id.
    pub step: String,
    /// `started`, `done` (it acted), `already` (its check said it was done).
    pub event: String,
}

/// An instance's journal, locked for this process.
pub struct Journal {
    state: StateDir,
    _lock: File,
}

fn jerr(path: &Path) -> impl FnOnce(std::io::Error) -> FailoverError + '_ {
    move |e| FailoverError::Journal {
        path: path.display().to_string(),
        cause: e.to_string(),
    }
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Journal {
    /// Opens the instance's state folder (made if needed) and takes its lock; refuses when
    /// another process holds it.
    pub fn open(state: &StateDir) -> Result<Self> {
        let dir = state.dir();
        std::fs::create_dir_all(dir).map_err(jerr(dir))?;
        let lock_path = state.lock();
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(jerr(&lock_path))?;
        // SAFETY: flock on a file descriptor we own; no memory is involved.
        let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let holder = std::fs::read_to_string(&lock_path).unwrap_or_default();
            let name = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            return Err(FailoverError::Refused(format!(
                "another odoo-standby is working on {name} (pid {}); wait for it to finish, or look at {}",
                holder.trim(),
                state.journal().display()
            )));
        }
        let mut l = &lock;
        let _ = lock.set_len(0);
        let _ = writeln!(l, "{}", std::process::id());
        Ok(Self {
            state: state.clone(),
            _lock: lock,
        })
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        self.state.dir()
    }

    /// The operation in progress, if a run did not complete.
    pub fn current(&self) -> Result<Option<Current>> {
        let path = self.state.current();
        match std::fs::read_to_string(&path) {
            Ok(t) => serde_json::from_str(&t)
                .map(Some)
                .map_err(|e| FailoverError::Journal {
                    path: path.display().to_string(),
                    cause: format!("{e}; move it aside to start over"),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(jerr(&path)(e)),
        }
    }

    /// Records that `c` is in progress.
    pub fn begin(&self, c: &Current) -> Result<()> {
        let path = self.state.current();
        let tmp = self.state.dir().join("current.json.tmp");
        let text = serde_json::to_string_pretty(c).map_err(|e| FailoverError::Journal {
            path: path.display().to_string(),
            cause: e.to_string(),
        })?;
        let mut f = File::create(&tmp).map_err(jerr(&tmp))?;
        f.write_all(text.as_bytes()).map_err(jerr(&tmp))?;
        f.sync_all().map_err(jerr(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(jerr(&path))?;
        Ok(())
    }

    /// Appends one event and syncs it to disk.
    pub fn record(&self, c: &Current, step: &str, event: &str) -> Result<()> {
        let path = self.state.journal();
        let entry = Entry {
            at: now(),
            run: c.run.clone(),
            operation: c.operation.clone(),
            step: step.to_owned(),
            event: event.to_owned(),
        };
        let line = serde_json::to_string(&entry).map_err(|e| FailoverError::Journal {
            path: path.display().to_string(),
            cause: e.to_string(),
        })?;
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .map_err(jerr(&path))?;
        writeln!(f, "{line}").map_err(jerr(&path))?;
        f.sync_data().map_err(jerr(&path))?;
        Ok(())
    }

    /// Every entry (lines that do not parse, e.g. half-written by a crash, are skipped).
    pub fn entries(&self) -> Result<Vec<Entry>> {
        let path = self.state.journal();
        match std::fs::read_to_string(&path) {
            Ok(t) => Ok(t
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(jerr(&path)(e)),
        }
    }

    /// Steps of run `run` that completed.
    pub fn done(&self, run: &str) -> Result<HashSet<String>> {
        Ok(self
            .entries()?
            .into_iter()
            .filter(|e| e.run == run && (e.event == "done" || e.event == "already"))
            .map(|e| e.step)
            .collect())
    }

    /// The run stopped before changing anything: `current.json` becomes `aborted.json`.
    pub fn abort(&self) -> Result<()> {
        let from = self.state.current();
        let to = self.state.aborted();
        std::fs::rename(&from, &to).map_err(jerr(&from))
    }

    /// The run completed: `current.json` becomes `last.json`.
    pub fn finish(&self) -> Result<()> {
        let from = self.state.current();
        let to = self.state.last();
        std::fs::rename(&from, &to).map_err(jerr(&from))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_process_is_refused_and_progress_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(&StateDir::new(dir.path(), "vps1")).unwrap();
        // flock is per open file description: a second open in the same process conflicts too.
        let e = Journal::open(&StateDir::new(dir.path(), "vps1"))
            .err()
            .unwrap();
        assert!(
            e.to_string()
                .contains("another odoo-standby is working on vps1"),
            "{e}"
        );
        let c = Current {
            operation: "failover".into(),
            run: "r1".into(),
            force: false,
            restart_vps: false,
            vps_unreachable: false,
            discard_vps_writes: false,
            started: 1,
        };
        j.begin(&c).unwrap();
        j.record(&c, "promote", "started").unwrap();
        j.record(&c, "stop-syncs", "done").unwrap();
        drop(j);
        let j = Journal::open(&StateDir::new(dir.path(), "vps1")).unwrap();
        assert_eq!(j.current().unwrap(), Some(c.clone()));
        let done = j.done("r1").unwrap();
        assert!(done.contains("stop-syncs") && !done.contains("promote"));
        j.finish().unwrap();
        assert_eq!(j.current().unwrap(), None);
    }
}
