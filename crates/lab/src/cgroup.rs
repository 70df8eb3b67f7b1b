//! One cgroup directory per machine, in every hierarchy systemd uses on this host.
//!
//! The host's init is not systemd and its cgroups may be hybrid (v1 controllers, a v1
//! `name=systemd` tree and a cgroup2 at `/sys/fs/cgroup/unified`). systemd-nspawn creates
//! `payload/` and `supervisor/` beside itself: two machines started from the same cgroup
//! would manage the same tree, and stopping a service in one could kill the other's. So each
//! nspawn is moved into its own directory first; that directory is also how the lab finds
//! (and kills) every process of a machine.

use std::path::{Path, PathBuf};

const CGROUP2_MAGIC: i64 = 0x6367_7270;

fn is_cgroup2(path: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: statfs(2) writes into a zeroed struct we own; the path is a valid C string.
    unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type as i64 == CGROUP2_MAGIC
    }
}

/// The hierarchies a machine gets a directory in.
pub(crate) fn roots() -> Vec<PathBuf> {
    let top = Path::new("/sys/fs/cgroup");
    if is_cgroup2(top) {
        return vec![top.to_owned()];
    }
    let mut v = Vec::new();
    if top.join("systemd").is_dir() {
        v.push(top.join("systemd"));
    }
    if is_cgroup2(&top.join("unified")) {
        v.push(top.join("unified"));
    }
    v
}

/// The machine's directories (`<root>/<group>`).
pub(crate) fn dirs(group: &str) -> Vec<PathBuf> {
    roots().into_iter().map(|r| r.join(group)).collect()
}

/// Every pid in the machine's directories and below.
pub(crate) fn pids(group: &str) -> Vec<i32> {
    fn walk(dir: &Path, out: &mut Vec<i32>) {
        if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
            out.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
        }
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    walk(&e.path(), out);
                }
            }
        }
    }
    let mut out = Vec::new();
    for d in dirs(group) {
        walk(&d, &mut out);
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Removes the machine's (empty) directories, deepest first.
pub(crate) fn remove(group: &str) {
    fn rm(dir: &Path) {
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    rm(&e.path());
                }
            }
        }
        let _ = std::fs::remove_dir(dir);
    }
    for d in dirs(group) {
        rm(&d);
    }
}
