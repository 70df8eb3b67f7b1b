//! The processes a sandbox started, and how they are stopped: by pid, and only after checking
//! that the pid still belongs to the process we started.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One process we started.
#[derive(Debug)]
pub(crate) enum Tracked {
    /// A child we hold (sshd): killed and reaped through its handle.
    Child(Child),
    /// A daemon that detached from us (a postmaster started by pg_ctl), known by pid and by the
    /// data directory in its command line, which proves the pid is still ours.
    Postmaster { pid: i32, data_dir: PathBuf },
}

/// Every process a sandbox started and has not stopped yet.
#[derive(Debug, Default)]
pub(crate) struct ProcessTable {
    entries: Mutex<Vec<Tracked>>,
}

impl ProcessTable {
    pub(crate) fn add(&self, t: Tracked) {
        self.lock().push(t);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Tracked>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets the postmaster of `data_dir` (it was stopped another way).
    pub(crate) fn forget_postmaster(&self, dir: &Path) {
        self.lock()
            .retain(|t| !matches!(t, Tracked::Postmaster { data_dir, .. } if data_dir == dir));
    }

    /// Kills and reaps the child `pid` if we hold it; whether we did.
    pub(crate) fn stop_child(&self, pid: u32) -> bool {
        let mut entries = self.lock();
        let Some(i) = entries
            .iter()
            .position(|t| matches!(t, Tracked::Child(c) if c.id() == pid))
        else {
            return false;
        };
        if let Tracked::Child(mut child) = entries.remove(i) {
            let _ = child.kill();
            let _ = child.wait();
        }
        true
    }

    /// The pids of every process still tracked.
    pub(crate) fn pids(&self) -> Vec<i32> {
        self.lock()
            .iter()
            .map(|t| match t {
                Tracked::Child(child) => i32::try_from(child.id()).unwrap_or(-1),
                Tracked::Postmaster { pid, .. } => *pid,
            })
            .collect()
    }

    /// Stops everything, most recent first (standbys before their primaries).
    pub(crate) fn stop_all(&self) {
        let entries: Vec<Tracked> = std::mem::take(&mut *self.lock());
        for t in entries.into_iter().rev() {
            match t {
                Tracked::Child(mut child) => {
                    let _ = child.kill();
                    let _ = child.wait();
                }
                Tracked::Postmaster { pid, data_dir } => stop_postmaster(pid, &data_dir),
            }
        }
    }
}

/// Stops the supervised services that tools under test started with a `<unit>.pid` file
/// under `root` (odoo-standby's sandbox services): SIGTERM, then SIGKILL after 5 s, only when
/// the process's command line names `root`. Returns how many it signalled.
pub fn stop_pid_files_under(root: &Path) -> usize {
    fn walk(dir: &Path, depth: usize, found: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(".pid") && name != "postmaster.pid" && name != "sshd.pid" {
                found.push(p);
            } else if depth > 0 && e.file_type().is_ok_and(|t| t.is_dir()) {
                walk(&p, depth - 1, found);
            }
        }
    }
    let mut files = Vec::new();
    walk(root, 4, &mut files);
    let needle = root.display().to_string();
    let mut n = 0;
    for f in files {
        let Some(pid) = std::fs::read_to_string(&f)
            .ok()
            .and_then(|t| t.trim().parse::<i32>().ok())
        else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if !String::from_utf8_lossy(&cmdline).contains(&needle) {
            continue;
        }
        signal(pid, libc::SIGTERM);
        if !wait_gone(pid, Duration::from_secs(5)) {
            signal(pid, libc::SIGKILL);
            wait_gone(pid, Duration::from_secs(5));
        }
        n += 1;
    }
    n
}

/// Stops every postmaster whose data directory lies under `root` (clusters that tools under
/// test created or restarted there), checking each pid against its command line first.
pub(crate) fn stop_postmasters_under(root: &Path) {
    fn walk(dir: &Path, depth: usize, found: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if e.file_name() == "postmaster.pid" {
                found.push(dir.to_owned());
            } else if depth > 0 && e.file_type().is_ok_and(|t| t.is_dir()) {
                walk(&p, depth - 1, found);
            }
        }
    }
    let mut dirs = Vec::new();
    walk(root, 5, &mut dirs);
    for dir in dirs {
        let pid = std::fs::read_to_string(dir.join("postmaster.pid"))
            .ok()
            .and_then(|t| t.lines().next().and_then(|l| l.trim().parse::<i32>().ok()));
        if let Some(pid) = pid {
            stop_postmaster(pid, &dir);
        }
    }
}

/// Whether `pid` is a live (not zombie) process.
pub fn is_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state letter follows the command name in parentheses.
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X']))
            .unwrap_or(false),
        Err(_) => false,
    }
}

/// Whether `pid` is a postgres process serving `data_dir`.
pub(crate) fn is_our_postmaster(pid: i32, data_dir: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let wanted = data_dir.as_os_str().as_encoded_bytes();
    cmdline.split(|b| *b == 0).any(|arg| arg == wanted)
}

fn signal(pid: i32, sig: i32) {
    // SAFETY: kill(2) on a pid we checked is our postmaster; no memory is touched.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// Immediate shutdown of our postmaster (SIGQUIT), then SIGKILL if it lingers.
pub(crate) fn stop_postmaster(pid: i32, data_dir: &Path) {
    if !is_our_postmaster(pid, data_dir) {
        return;
    }
    let children = children_of(pid);
    signal(pid, libc::SIGQUIT);
    if wait_gone(pid, Duration::from_secs(10)) {
        for c in children {
            wait_gone(c, Duration::from_secs(5));
        }
        return;
    }
    if is_our_postmaster(pid, data_dir) {
        signal(pid, libc::SIGKILL);
        wait_gone(pid, Duration::from_secs(5));
    }
}

/// SIGKILL to our postmaster, as a crash would; waits until it and its children are gone
/// (they exit by themselves once they notice the postmaster died), so that the cluster can
/// be started again.
pub(crate) fn kill_postmaster(pid: i32, data_dir: &Path) -> bool {
    if !is_our_postmaster(pid, data_dir) {
        return false;
    }
    let children = children_of(pid);
    signal(pid, libc::SIGKILL);
    let limit = Duration::from_secs(10);
    // PostgreSQL refuses to start while the pid in postmaster.pid answers kill(pid, 0), which
    // a zombie does: wait until whoever adopted it (init) has reaped it. Some inits reap by
    // polling, every couple of seconds.
    wait_gone(pid, limit)
        && children.iter().all(|c| wait_gone(*c, limit))
        && wait_reaped(pid, limit)
}

/// Polls until `pid` has no /proc entry at all (not even a zombie's), up to `limit`.
pub(crate) fn wait_reaped(pid: i32, limit: Duration) -> bool {
    let start = Instant::now();
    let gone = || !Path::new(&format!("/proc/{pid}")).exists();
    while start.elapsed() < limit {
        if gone() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    gone()
}

/// The pids whose parent is `parent`.
pub(crate) fn children_of(parent: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    let rest = s.rsplit_once(')')?.1.to_owned();
                    rest.split_whitespace().nth(1)?.parse::<i32>().ok()
                })
                == Some(parent)
        })
        .collect()
}

/// Polls until `pid` is gone (or a zombie), up to `limit`.
pub(crate) fn wait_gone(pid: i32, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if !is_alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    !is_alive(pid)
}
