//! Removal, only when asked, of filestore files the standby has not referenced for a day.
//!
//! A pass never deletes anything: a file whose row was deleted on the VPS stays on the
//! backup. [`prune`] is the explicit clean-up. A file goes only when two runs of it, at least
//! `older_than` apart (24 h by default), both found it unreferenced by the standby. So the
//! first run only
//! records what it saw (in `<state_dir>/<db>.unreferenced`), and a daily run removes files
//! 24 to 48 hours after their last row went. A file referenced again in between is
//! forgotten from the record and kept.
//!
//! Why this is safe: the files are ours (fetched or seeded from the VPS), named by their
//! content, and a row that references one again later makes the next pass fetch it again
//! from the VPS. Odoo's own garbage collection removes such files on the VPS too.
//!
//! A watch running meanwhile notices that its index file was replaced and reloads it, so a
//! removed file that is referenced again is fetched again at its next pass.
//!
//! Refused: a database with no referenced file at all while files are on disk (the wrong
//! database, or attachments not replicated yet): nothing is removed then.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::error::{Result, SyncError};
use crate::index::{now_secs, replace_file, scan, Index};
use crate::name::StoreName;

/// Options of [`prune`].
#[derive(Clone, Debug)]
pub struct PruneOptions {
    /// How long a file must have been seen unreferenced.
    pub older_than: Duration,
    /// Report only: remove nothing and record nothing.
    pub dry_run: bool,
    /// Move the files into this folder (`<folder>/<db>/xx/<sha1>`, same filesystem)
    /// instead of deleting them.
    pub move_to: Option<PathBuf>,
}

impl Default for PruneOptions {
    fn default() -> Self {
        Self {
            older_than: Duration::from_secs(24 * 3600),
            dry_run: false,
            move_to: None,
        }
    }
}

/// What [`prune`] found and did.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct PruneReport {
    /// The database.
    pub db: String,
    /// Files on the backup's disk.
    pub present: usize,
    /// Of those, the ones the standby does not reference.
    pub unreferenced: usize,
    /// Of those, seen unreferenced for the first time now (recorded).
    pub new_unreferenced: usize,
    /// Removed (or moved, or, in a dry run, that would be).
    pub removed: Vec<String>,
    /// Their total size.
    pub bytes: u64,
}

/// The record: when each unreferenced name was first seen so. A line per name:
/// `<unix seconds> <xx/sha1>`; unreadable lines are ignored (seen again, they restart).
fn load(file: &Path) -> Result<BTreeMap<StoreName, u64>> {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(SyncError::local("cannot read", file, e)),
    };
    Ok(text
        .lines()
        .filter_map(|l| {
            let (t, n) = l.split_once(' ')?;
            Some((StoreName::parse(n)?, t.parse().ok()?))
        })
        .collect())
}

fn save(file: &Path, seen: &BTreeMap<StoreName, u64>) -> Result<()> {
    let mut out = String::with_capacity(seen.len() * 56);
    for (n, t) in seen {
        out.push_str(&format!("{t} {n}\n"));
    }
    replace_file(
        file,
        &file.with_extension("unreferenced-tmp"),
        out.as_bytes(),
    )
}

/// Prunes database `db`'s folder under `local_filestore` (see the module docs). `standby`
/// is a connection to that database on the standby; `index` is updated; the record of
/// unreferenced names lives in `state_dir`.
pub async fn prune(
    standby: &dyn pgrepl::Sql,
    db: &str,
    local_filestore: &Path,
    index: &mut Index,
    state_dir: &Path,
    opts: &PruneOptions,
) -> Result<PruneReport> {
    crate::filestore::validate_db_name(db)?;
    let root = local_filestore.join(db);
    // A watch may be writing a temporary file right now: leave those alone.
    let present = scan(&root, None, false)?;
    let (referenced, _) = crate::filestore::referenced(standby, db).await?;
    let referenced: HashSet<StoreName> = referenced.into_iter().collect();
    if referenced.is_empty() && !present.is_empty() {
        return Err(SyncError::invalid(
            "database",
            format!(
                "{db} references no filestore file on the standby, yet {} holds {} files: \
                 wrong database, or its attachments are not replicated yet; nothing removed",
                root.display(),
                present.len()
            ),
        ));
    }
    let record = state_dir.join(format!("{db}.unreferenced"));
    let before = load(&record)?;
    let now = now_secs();
    let due_before = now.saturating_sub(opts.older_than.as_secs());
    let mut report = PruneReport {
        db: db.to_owned(),
        present: present.len(),
        ..Default::default()
    };
    let mut seen = BTreeMap::new();
    let mut due = Vec::new();
    for n in present.iter().filter(|n| !referenced.contains(*n)) {
        report.unreferenced += 1;
        match before.get(n) {
            Some(t) if *t <= due_before => due.push(*n),
            Some(t) => {
                seen.insert(*n, *t);
            }
            None => {
                report.new_unreferenced += 1;
                seen.insert(*n, now);
            }
        }
    }
    due.sort();
    for n in due {
        let path = root.join(n.to_string());
        let size = std::fs::symlink_metadata(&path)
            .map(|m| m.len())
            .unwrap_or(0);
        if !opts.dry_run {
            match &opts.move_to {
                Some(dir) => {
                    let dest = dir.join(db).join(n.to_string());
                    if let Some(parent) = dest.parent() {
                        std::fs::create_dir_all(parent)
                            .map_err(|e| SyncError::local("cannot create", parent, e))?;
                    }
                    if dest.exists() {
                        // Same name, same content: the copy already there will do.
                        std::fs::remove_file(&path)
                    } else {
                        std::fs::rename(&path, &dest)
                    }
                    .map_err(|e| SyncError::local("cannot move aside", &path, e))?;
                }
                None => std::fs::remove_file(&path)
                    .map_err(|e| SyncError::local("cannot remove", &path, e))?,
            }
            index.remove(&n);
        }
        report.bytes += size;
        report.removed.push(n.to_string());
    }
    if !opts.dry_run {
        index.persist()?;
        save(&record, &seen)?;
    }
    Ok(report)
}
