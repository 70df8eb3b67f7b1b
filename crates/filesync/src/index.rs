//! Which filestore files are on the backup's disk, kept in memory and in a state file, so that
//! a steady-state pass compares names instead of stat-ing the whole tree.
//!
//! The index only ever claims files that were fsynced before it was saved (`syncfs` first).
//! A file that disappears behind our back stays claimed until `audit` finds it or a
//! `--rescan` rebuilds the index from the disk.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::error::{Result, SyncError};
use crate::name::StoreName;

/// Suffix of our temporary files (ours to remove).
pub const TMP_SUFFIX: &str = ".odoo-standby-tmp";

/// The set of names present under one database's filestore directory.
#[derive(Debug)]
pub struct Index {
    file: PathBuf,
    names: HashSet<StoreName>,
    dirty: bool,
}

impl Index {
    /// Loads the state file `file`, or builds the index by listing `db_root` when there is
    /// none (listing reads directory entries only; it does not stat every file).
    pub fn load_or_build(file: &Path, db_root: &Path) -> Result<Self> {
        match std::fs::File::open(file) {
            Ok(mut f) => {
                let mut bytes = Vec::new();
                f.read_to_end(&mut bytes)
                    .map_err(|e| SyncError::local("cannot read the index", file, e))?;
                let names = bytes.chunks(21).filter_map(StoreName::from_bytes).collect();
                Ok(Self {
                    file: file.to_owned(),
                    names,
                    dirty: false,
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::build(file, db_root),
            Err(e) => Err(SyncError::local("cannot open the index", file, e)),
        }
    }

    /// Lists `db_root` (and removes temporary files an interrupted pass of ours left).
    pub fn build(file: &Path, db_root: &Path) -> Result<Self> {
        let mut names = HashSet::new();
        let dirs = match std::fs::read_dir(db_root) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self {
                    file: file.to_owned(),
                    names,
                    dirty: true,
                })
            }
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
                    let _ = std::fs::remove_file(f.path());
                    continue;
                }
                if let Some(n) = StoreName::parse(&format!("{dname}/{fname}")) {
                    names.insert(n);
                }
            }
        }
        Ok(Self {
            file: file.to_owned(),
            names,
            dirty: true,
        })
    }

    /// Whether `n` is known present.
    pub fn contains(&self, n: &StoreName) -> bool {
        self.names.contains(n)
    }

    /// Records `n` as present.
    pub fn insert(&mut self, n: StoreName) {
        self.dirty |= self.names.insert(n);
    }

    /// Forgets `n`.
    pub fn remove(&mut self, n: &StoreName) {
        self.dirty |= self.names.remove(n);
    }

    /// How many names it holds.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Flushes the filesystem of `data_root` (so every file the index claims is on disk),
    /// then writes the state file atomically. Nothing happens when nothing changed.
    pub fn persist(&mut self, data_root: &Path) -> Result<()> {
        if !self.dirty {
            return Ok(());
        }
        syncfs(data_root)?;
        let tmp = self.file.with_extension("tmp");
        if let Some(parent) = self.file.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| SyncError::local("cannot create", parent, e))?;
        }
        let mut out = Vec::with_capacity(self.names.len() * 21);
        for n in &self.names {
            out.extend_from_slice(&n.to_bytes());
        }
        let mut f = std::fs::File::create(&tmp)
            .map_err(|e| SyncError::local("cannot write the index", &tmp, e))?;
        f.write_all(&out)
            .and_then(|()| f.sync_all())
            .map_err(|e| SyncError::local("cannot write the index", &tmp, e))?;
        std::fs::rename(&tmp, &self.file)
            .map_err(|e| SyncError::local("cannot replace the index", &self.file, e))?;
        self.dirty = false;
        Ok(())
    }
}

/// `syncfs(2)` on the filesystem holding `path`: one call flushes every file we wrote.
pub fn syncfs(path: &Path) -> Result<()> {
    let f = std::fs::File::open(path).map_err(|e| SyncError::local("cannot open", path, e))?;
    use std::os::fd::AsRawFd;
    // SAFETY: syncfs on a file descriptor we own for the duration of the call.
    let rc = unsafe { libc::syncfs(f.as_raw_fd()) };
    if rc != 0 {
        return Err(SyncError::local(
            "cannot flush the filesystem of",
            path,
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}
