//! Which filestore files are on the backup's disk, kept in memory and in a state file, so that
//! a steady-state pass compares names instead of stat-ing the whole tree.
//!
//! Durability without an fsync per file: the state file records the boot it was written in.
//! Within one boot, the page cache holds whatever we wrote, so the index is right even if our
//! process dies. After a reboot (the only case where written data can be lost), the index is
//! rebuilt from the disk, and every file modified in the ten minutes before the index was last
//! saved has its SHA-1 checked; a file that does not match its name is removed (we wrote it)
//! and fetched again. Older files were flushed long before by the kernel's periodic writeback
//! (about 30 s). `audit --verify` checks everything when in doubt.
//!
//! A file that disappears behind our back stays claimed until `audit` finds it or a
//! `--rescan` rebuilds the index from the disk.
//!
//! The state file is a header (magic, boot id, time of the last save) and 21-byte records. A
//! pass that only added names appends their records and rewrites the time in place, so a
//! steady-state save costs a few hundred bytes, not the whole index (4 MB at 200k files). A
//! record cut short by a crash is ignored on load and the file is rewritten whole.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::error::{Result, SyncError};
use crate::name::StoreName;

/// Suffix of our temporary files (ours to remove).
pub const TMP_SUFFIX: &str = ".odoo-standby-tmp";

const MAGIC: &[u8] = b"odoo-standby-index 1\n";
/// Files modified this long before the last save are re-checked after a reboot.
const SUSPECT_WINDOW_SECS: u64 = 600;

/// This boot's id (`/proc/sys/kernel/random/boot_id`).
fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The set of names present under one database's filestore directory.
#[derive(Debug)]
pub struct Index {
    file: PathBuf,
    names: HashSet<StoreName>,
    /// Names added since the last save, to append.
    added: Vec<StoreName>,
    /// The file must be written whole (new, built, loaded torn, or a name was removed).
    rewrite: bool,
    /// The state file's (device, inode) when we last loaded or wrote it whole: another
    /// process that rewrites it (`prune`) changes it, and we then load it again.
    file_id: Option<(u64, u64)>,
}

fn file_id(file: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(file).ok().map(|m| (m.dev(), m.ino()))
}

impl Index {
    /// Loads the state file `file`; builds the index by listing `db_root` when there is none
    /// (listing reads directory entries only), or when it was written before a reboot (then
    /// recently written files are checked, see the module docs).
    pub fn load_or_build(file: &Path, db_root: &Path) -> Result<Self> {
        let bytes = match std::fs::File::open(file) {
            Ok(mut f) => {
                let mut bytes = Vec::new();
                f.read_to_end(&mut bytes)
                    .map_err(|e| SyncError::local("cannot read the index", file, e))?;
                bytes
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Self::build(file, db_root)
            }
            Err(e) => return Err(SyncError::local("cannot open the index", file, e)),
        };
        let Some(rest) = bytes.strip_prefix(MAGIC) else {
            return Self::build(file, db_root);
        };
        let Some(nl) = rest.iter().position(|b| *b == b'\n') else {
            return Self::build(file, db_root);
        };
        let (boot, rest) = (
            String::from_utf8_lossy(&rest[..nl]).into_owned(),
            &rest[nl + 1..],
        );
        if rest.len() < 8 {
            return Self::build(file, db_root);
        }
        let mut saved = [0u8; 8];
        saved.copy_from_slice(&rest[..8]);
        let saved_at = u64::from_le_bytes(saved);
        if boot != boot_id() {
            return Self::build_checked(
                file,
                db_root,
                Some(saved_at.saturating_sub(SUSPECT_WINDOW_SECS)),
            );
        }
        let records = &rest[8..];
        let names = records
            .chunks(21)
            .filter_map(StoreName::from_bytes)
            .collect();
        Ok(Self {
            file: file.to_owned(),
            names,
            added: Vec::new(),
            // A record cut short: appending after it would misalign every later one.
            rewrite: records.len() % 21 != 0,
            file_id: file_id(file),
        })
    }

    /// Lists `db_root` (and removes temporary files an interrupted pass of ours left).
    pub fn build(file: &Path, db_root: &Path) -> Result<Self> {
        Self::build_checked(file, db_root, None)
    }

    /// Lists `db_root`; files modified at or after `check_since` (unix seconds) must match
    /// their name, or they are removed and left out.
    pub fn build_checked(file: &Path, db_root: &Path, check_since: Option<u64>) -> Result<Self> {
        Ok(Self {
            file: file.to_owned(),
            names: scan(db_root, check_since, true)?,
            added: Vec::new(),
            rewrite: true,
            file_id: None,
        })
    }

    /// Loads the state file again when another process replaced it since we last read or
    /// wrote it (see the module docs of `prune`); `db_root` as for [`Index::load_or_build`].
    /// Returns whether it did. Names added here and not yet saved are kept.
    pub fn reload_if_replaced(&mut self, db_root: &Path) -> Result<bool> {
        let now = file_id(&self.file);
        if now.is_none() || now == self.file_id || self.file_id.is_none() {
            return Ok(false);
        }
        let mut fresh = Self::load_or_build(&self.file, db_root)?;
        for n in std::mem::take(&mut self.added) {
            fresh.insert(n);
        }
        *self = fresh;
        Ok(true)
    }

    /// Every name known present (in no particular order).
    pub fn names(&self) -> impl Iterator<Item = &StoreName> {
        self.names.iter()
    }

    /// Whether `n` is known present.
    pub fn contains(&self, n: &StoreName) -> bool {
        self.names.contains(n)
    }

    /// Records `n` as present.
    pub fn insert(&mut self, n: StoreName) {
        if self.names.insert(n) {
            self.added.push(n);
        }
    }

    /// Forgets `n`.
    pub fn remove(&mut self, n: &StoreName) {
        self.rewrite |= self.names.remove(n);
    }

    /// How many names it holds.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Saves what changed: appends the names added since the last save (and updates the
    /// save time in place), or writes the whole file atomically when it must (see the module
    /// docs). Nothing happens when nothing changed.
    pub fn persist(&mut self) -> Result<()> {
        if self.rewrite {
            self.write_whole()?;
        } else if !self.added.is_empty() {
            if let Err(e) = self.append() {
                tracing::debug!(
                    "appending to {} failed ({e}): rewriting it",
                    self.file.display()
                );
                self.write_whole()?;
            }
        }
        self.added.clear();
        self.rewrite = false;
        Ok(())
    }

    /// Appends the added names and rewrites the header's save time; refuses (so that the
    /// caller rewrites the file) when the header is not this boot's.
    fn append(&self) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.file)?;
        let boot = boot_id();
        let mut head = vec![0u8; MAGIC.len() + boot.len() + 1];
        f.read_exact_at(&mut head, 0)?;
        if !head.starts_with(MAGIC) || &head[MAGIC.len()..] != format!("{boot}\n").as_bytes() {
            return Err(std::io::Error::other("written in another boot"));
        }
        let mut out = Vec::with_capacity(self.added.len() * 21);
        for n in &self.added {
            out.extend_from_slice(&n.to_bytes());
        }
        let end = f.metadata()?.len();
        f.write_all_at(&out, end)?;
        f.write_all_at(&now_secs().to_le_bytes(), head.len() as u64)
    }

    /// Writes the whole state file (with this boot's id) atomically, and remembers which
    /// file it is now.
    fn write_whole(&mut self) -> Result<()> {
        let mut out = Vec::with_capacity(MAGIC.len() + 64 + self.names.len() * 21);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(boot_id().as_bytes());
        out.push(b'\n');
        out.extend_from_slice(&now_secs().to_le_bytes());
        for n in &self.names {
            out.extend_from_slice(&n.to_bytes());
        }
        replace_file(&self.file, &self.file.with_extension("tmp"), &out)?;
        self.file_id = file_id(&self.file);
        Ok(())
    }
}

/// Replaces `file` atomically with `bytes`: written to `tmp` (same folder), fsynced, renamed
/// over it, owned as its folder is (a state file written by root stays the sync service's
/// to append to); the folder is made if missing. For the crate's state files.
pub(crate) fn replace_file(file: &Path, tmp: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(parent) = file.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| SyncError::local("cannot create", parent, e))?;
    }
    let mut f = std::fs::File::create(tmp).map_err(|e| SyncError::local("cannot write", tmp, e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| SyncError::local("cannot write", tmp, e))?;
    std::fs::rename(tmp, file).map_err(|e| SyncError::local("cannot replace", file, e))?;
    crate::filestore::give(
        file,
        file.parent().and_then(crate::filestore::owner_of_nearest),
    );
    Ok(())
}

/// The filestore names under `db_root` (a missing folder has none); with `remove_tmp`,
/// removes the temporary files an interrupted pass of ours left (not while a pass may be
/// writing them: `prune` runs beside a watch); files modified at or after `check_since` (unix
/// seconds) must match their name, or they are removed (we wrote them) and left out.
pub(crate) fn scan(
    db_root: &Path,
    check_since: Option<u64>,
    remove_tmp: bool,
) -> Result<HashSet<StoreName>> {
    let mut names = HashSet::new();
    let dirs = match std::fs::read_dir(db_root) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(names),
        Err(e) => return Err(SyncError::local("cannot list", db_root, e)),
    };
    for dir in dirs.flatten() {
        let dname = dir.file_name();
        let Some(dname) = dname.to_str() else {
            continue;
        };
        if !(dname.len() == 2 || dname.len() == 3) {
            continue;
        }
        let Ok(files) = std::fs::read_dir(dir.path()) else {
            continue;
        };
        for f in files.flatten() {
            let fname = f.file_name();
            let Some(fname) = fname.to_str() else {
                continue;
            };
            if fname.ends_with(TMP_SUFFIX) {
                if remove_tmp {
                    let _ = std::fs::remove_file(f.path());
                }
                continue;
            }
            let Some(n) = StoreName::parse(&format!("{dname}/{fname}")) else {
                continue;
            };
            if let Some(since) = check_since {
                let recent = f
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .is_some_and(|d| d.as_secs() >= since);
                if recent && !content_matches(&f.path(), &n) {
                    tracing::warn!(
                        "{} does not match its name after a reboot: fetching it again",
                        f.path().display()
                    );
                    let _ = std::fs::remove_file(f.path());
                    continue;
                }
            }
            names.insert(n);
        }
    }
    Ok(names)
}

/// Whether the file's SHA-1 is the one its name says.
fn content_matches(path: &Path, name: &StoreName) -> bool {
    use sha1::Digest;
    let Ok(mut f) = std::fs::File::open(path) else {
        return false;
    };
    let mut h = sha1::Sha1::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => h.update(&buf[..n]),
            Err(_) => return false,
        }
    }
    h.finalize().as_slice() == name.sha()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(i: u32) -> StoreName {
        use sha1::Digest;
        let h = hex::encode(sha1::Sha1::digest(i.to_le_bytes()));
        StoreName::parse(&format!("{}/{h}", &h[..2])).unwrap()
    }

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("filesync-index-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn saves_append_and_reload_the_same_set() {
        let d = dir("append");
        let file = d.join("db.index");
        let mut idx = Index::build(&file, &d.join("missing")).unwrap();
        idx.insert(name(1));
        idx.persist().unwrap();
        let whole = std::fs::metadata(&file).unwrap().len();
        idx.insert(name(2));
        idx.insert(name(3));
        idx.insert(name(3));
        idx.persist().unwrap();
        // Two records appended, nothing rewritten.
        assert_eq!(std::fs::metadata(&file).unwrap().len(), whole + 42);
        let back = Index::load_or_build(&file, &d.join("missing")).unwrap();
        assert_eq!(back.len(), 3);
        assert!(back.contains(&name(2)) && back.contains(&name(3)));
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_torn_record_is_ignored_and_the_file_rewritten() {
        let d = dir("torn");
        let file = d.join("db.index");
        let mut idx = Index::build(&file, &d.join("missing")).unwrap();
        idx.insert(name(1));
        idx.insert(name(2));
        idx.persist().unwrap();
        // A crash in the middle of an append.
        let mut bytes = std::fs::read(&file).unwrap();
        bytes.extend_from_slice(&name(3).to_bytes()[..10]);
        std::fs::write(&file, &bytes).unwrap();
        let mut back = Index::load_or_build(&file, &d.join("missing")).unwrap();
        assert_eq!(back.len(), 2);
        back.insert(name(4));
        back.persist().unwrap();
        let again = Index::load_or_build(&file, &d.join("missing")).unwrap();
        assert_eq!(again.len(), 3);
        assert!(again.contains(&name(4)) && !again.contains(&name(3)));
        // A removal rewrites the file too.
        let mut again = again;
        again.remove(&name(1));
        again.persist().unwrap();
        let last = Index::load_or_build(&file, &d.join("missing")).unwrap();
        assert_eq!(last.len(), 2);
        assert!(!last.contains(&name(1)));
        std::fs::remove_dir_all(d).unwrap();
    }
}
