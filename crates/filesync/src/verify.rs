//! What the index claims, checked against the disk while the sync runs: every referenced file
//! is there with the size the database recorded (on a schedule: stat only), and its content
//! matches its name (SHA-1, in the background, within a budget of bytes per second). A file
//! that vanished is dropped from the index; a damaged one is moved aside (to
//! `<data_dir>/filestore.damaged/<db>/`, never deleted) and dropped. Either way the same pass
//! fetches it again from the VPS.
//!
//! ```no_run
//! # async fn demo(standby: &dyn pgrepl::Sql, index: &mut filesync::Index) -> filesync::Result<()> {
//! use std::time::Duration;
//! use filesync::verify::{Verifier, VerifyOptions};
//! let mut v = Verifier::new(VerifyOptions { sizes_every: Duration::from_secs(3600), hash_bytes_per_sec: 4 << 20 });
//! let fs = std::path::Path::new("/opt/odoouser/respaldo_filestore/vps1/data_dir/filestore");
//! let found = v.check(standby, "clientes", fs, index, &[]).await?;
//! println!("{} vanished, {} damaged", found.vanished.len(), found.damaged.len());
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::{Result, SyncError};
use crate::index::Index;
use crate::name::StoreName;

/// How much checking the sync does.
#[derive(Clone, Debug)]
pub struct VerifyOptions {
    /// How often every referenced file is stat-ed: present, and of the size
    /// `ir_attachment.file_size` says.
    pub sizes_every: Duration,
    /// Bytes of SHA-1 per second of wall time, over all the files the index claims (0: none).
    /// The first round starts at once; a round that ends starts again.
    pub hash_bytes_per_sec: u64,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        Self {
            sizes_every: Duration::from_secs(3600),
            hash_bytes_per_sec: 4 << 20,
        }
    }
}

/// What one check found for a database.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Found {
    /// Names the index claimed that are not on disk (dropped from the index).
    pub vanished: Vec<String>,
    /// Names whose file had another size or content (moved aside, dropped from the index).
    pub damaged: Vec<String>,
    /// Whether the sizes were checked in this call.
    pub sizes_checked: bool,
    /// Bytes hashed in this call.
    pub hashed_bytes: u64,
    /// Whether a whole SHA-1 round ended in this call.
    pub round_done: bool,
}

impl Found {
    /// Whether anything must be fetched again.
    pub fn any(&self) -> bool {
        !self.vanished.is_empty() || !self.damaged.is_empty()
    }
}

/// One database's checking, kept between passes.
#[derive(Debug)]
pub struct Verifier {
    /// Its options.
    pub opts: VerifyOptions,
    last_sizes: Option<Instant>,
    round: Vec<StoreName>,
    pos: usize,
    last_tick: Option<Instant>,
    credit: f64,
}

/// Where damaged copies of database `db` go.
pub fn aside_dir(local_filestore: &Path, db: &str) -> PathBuf {
    let parent = local_filestore.parent().unwrap_or(local_filestore);
    parent.join("filestore.damaged").join(db)
}

impl Verifier {
    /// Nothing checked yet: the first call checks the sizes.
    pub fn new(opts: VerifyOptions) -> Self {
        Self {
            opts,
            last_sizes: None,
            round: Vec::new(),
            pos: 0,
            last_tick: None,
            credit: 0.0,
        }
    }

    /// Checks database `db` (`standby` a connection to it) under `local_filestore/<db>`: the
    /// names in `first` are hashed now whatever the budget (a copy-back found them damaged),
    /// the sizes when due, then as much SHA-1 as the budget allows.
    pub async fn check(
        &mut self,
        standby: &dyn pgrepl::Sql,
        db: &str,
        local_filestore: &Path,
        index: &mut Index,
        first: &[StoreName],
    ) -> Result<Found> {
        crate::filestore::validate_db_name(db)?;
        let mut found = Found::default();
        let root = local_filestore.join(db);
        let aside = aside_dir(local_filestore, db);
        if self
            .last_sizes
            .is_none_or(|t| t.elapsed() >= self.opts.sizes_every)
        {
            let audit = crate::audit::audit(standby, db, local_filestore, false).await?;
            for n in audit.missing.iter().filter_map(|n| StoreName::parse(n)) {
                if index.contains(&n) {
                    index.remove(&n);
                    found.vanished.push(n.to_string());
                }
            }
            let truncated: Vec<StoreName> = audit
                .truncated
                .iter()
                .filter_map(|n| StoreName::parse(n))
                .collect();
            let (r, a) = (root.clone(), aside.clone());
            let moved = blocking(move || move_aside(&r, &a, &truncated)).await??;
            for n in moved {
                index.remove(&n);
                found.damaged.push(n.to_string());
            }
            self.last_sizes = Some(Instant::now());
            found.sizes_checked = true;
        }
        let now = Instant::now();
        let rate = self.opts.hash_bytes_per_sec as f64;
        if let Some(t) = self.last_tick {
            // At most a minute of credit: a long pause does not turn into a burst.
            self.credit = (self.credit + rate * (now - t).as_secs_f64()).min(rate * 60.0);
        } else {
            self.credit = rate;
        }
        self.last_tick = Some(now);
        let mut batch: Vec<StoreName> = first.to_vec();
        let forced = batch.len();
        if rate > 0.0 {
            if self.pos >= self.round.len() {
                let mut names: Vec<StoreName> = index.names().copied().collect();
                names.sort_unstable();
                self.round = names;
                self.pos = 0;
            }
            let end = (self.pos + 4096).min(self.round.len());
            batch.extend_from_slice(&self.round[self.pos..end]);
        }
        if batch.is_empty() {
            return Ok(found);
        }
        let credit = self.credit;
        let (r, a) = (root, aside);
        let hashed = blocking(move || hash_within(&r, &a, &batch, forced, credit)).await??;
        self.credit -= hashed.bytes as f64;
        self.pos += hashed.taken.saturating_sub(forced);
        if rate > 0.0 && self.pos >= self.round.len() && hashed.taken > forced {
            found.round_done = true;
        }
        found.hashed_bytes = hashed.bytes;
        for n in hashed.damaged {
            index.remove(&n);
            found.damaged.push(n.to_string());
        }
        Ok(found)
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| SyncError::Invalid {
            what: "verification".into(),
            reason: format!("it stopped: {e}"),
        })
}

/// Moves the files of `names` from `root` to `aside` (`<sha>.<unix time>`); returns those
/// that were there.
fn move_aside(root: &Path, aside: &Path, names: &[StoreName]) -> Result<Vec<StoreName>> {
    let mut moved = Vec::new();
    for n in names {
        let from = root.join(n.to_string());
        if !from.is_file() {
            continue;
        }
        if !aside.is_dir() {
            std::fs::create_dir_all(aside)
                .map_err(|e| SyncError::local("cannot create", aside, e))?;
            let owner = crate::filestore::owner_of_nearest(root);
            for d in [aside, aside.parent().unwrap_or(aside)] {
                crate::filestore::give(d, owner);
            }
        }
        let to = aside.join(format!("{}.{}", n.sha_hex(), crate::index::now_secs()));
        std::fs::rename(&from, &to).map_err(|e| SyncError::local("cannot move aside", &from, e))?;
        moved.push(*n);
    }
    Ok(moved)
}

struct Hashed {
    taken: usize,
    bytes: u64,
    damaged: Vec<StoreName>,
}

/// Hashes `batch` in order: its first `forced` names whatever the credit, then while the
/// bytes hashed stay within `credit`. Files gone meanwhile are skipped (the size check
/// finds them).
fn hash_within(
    root: &Path,
    aside: &Path,
    batch: &[StoreName],
    forced: usize,
    credit: f64,
) -> Result<Hashed> {
    let mut h = Hashed {
        taken: 0,
        bytes: 0,
        damaged: Vec::new(),
    };
    for (i, n) in batch.iter().enumerate() {
        let path = root.join(n.to_string());
        let size = std::fs::metadata(&path).map(|m| m.len()).ok();
        if i >= forced && size.is_some_and(|s| h.bytes > 0 && (h.bytes + s) as f64 > credit) {
            break;
        }
        h.taken = i + 1;
        let Some(size) = size else { continue };
        match crate::audit::sha1_file(&path) {
            Ok(sum) if &sum == n.sha() => {}
            Ok(_) => h
                .damaged
                .extend(move_aside(root, aside, std::slice::from_ref(n))?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(SyncError::local("cannot read", &path, e)),
        }
        h.bytes += size;
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(root: &Path, content: &[u8]) -> StoreName {
        use sha1::Digest;
        let sha = hex::encode(sha1::Sha1::digest(content));
        let name = StoreName::parse(&format!("{}/{sha}", &sha[..2])).unwrap();
        std::fs::create_dir_all(root.join(&sha[..2])).unwrap();
        std::fs::write(root.join(name.to_string()), content).unwrap();
        name
    }

    #[test]
    fn damaged_files_are_moved_aside_within_the_budget() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("filestore/db");
        let aside = aside_dir(&dir.path().join("filestore"), "db");
        let good = put(&root, b"good");
        let bad = put(&root, b"four bytes changed");
        std::fs::write(root.join(bad.to_string()), b"FOUR bytes changed").unwrap();
        let names = vec![good, bad];
        // No credit: only the first name of the round is hashed (one file at least).
        let h = hash_within(&root, &aside, &names, 0, 0.0).unwrap();
        assert_eq!(h.taken, 1);
        let h = hash_within(&root, &aside, &names, 0, 1e9).unwrap();
        assert_eq!(h.taken, 2);
        assert_eq!(h.damaged, [bad]);
        assert!(!root.join(bad.to_string()).exists());
        assert_eq!(std::fs::read_dir(&aside).unwrap().count(), 1);
        assert!(root.join(good.to_string()).exists());
    }
}
