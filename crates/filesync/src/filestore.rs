//! One filestore pass for one database: the names the standby references, minus the names
//! already here, fetched from the VPS as one tar stream over SSH (names NUL-separated on its
//! stdin), each written to a temporary name, checked, and renamed into place.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use host::{CommandSpec, Host};
use serde::Serialize;
use sha1::{Digest, Sha1};
use tokio_util::io::SyncIoBridge;

use crate::error::{Result, SyncError};
use crate::index::{Index, TMP_SUFFIX};
use crate::name::StoreName;
use crate::session::{Outcome, Session};

/// Where the VPS keeps its filestore.
#[derive(Clone)]
pub struct Vps {
    /// The VPS (an `SshHost` in production).
    pub host: Arc<dyn Host>,
    /// `<data_dir>/filestore` on the VPS.
    pub filestore: PathBuf,
    /// A helper kept on the VPS between passes (for `watch`); `None`: one `tar` command per
    /// batch, which costs the SSH server about 100 ms to start.
    pub session: Option<Arc<Session>>,
    /// The database folders already seen on the VPS (checked once per watch, not per pass).
    checked: Arc<std::sync::Mutex<Vec<PathBuf>>>,
}

impl Vps {
    /// The VPS `host`, its filestore at `filestore`, with a helper kept there when `session`.
    pub fn new(host: Arc<dyn Host>, filestore: PathBuf, session: Option<Arc<Session>>) -> Self {
        Self {
            host,
            filestore,
            session,
            checked: Arc::default(),
        }
    }

    /// Checks once per `Vps` (a watch keeps one) and database that the VPS has that filestore
    /// directory (a round trip a steady-state pass does not need to repeat).
    async fn ensure_dir(&self, db: &str, remote: &Path) -> Result<()> {
        let key = remote.to_owned();
        if self
            .checked
            .lock()
            .map(|c| c.contains(&key))
            .unwrap_or(false)
        {
            return Ok(());
        }
        let st = self
            .host
            .stat(remote)
            .await
            .map_err(SyncError::remote(format!(
                "checking {} on {}",
                remote.display(),
                self.host.name()
            )))?;
        if st.is_none() {
            return Err(SyncError::no_vps_folder(
                remote.display(),
                &self.host.name(),
            ));
        }
        tracing::debug!("{db}: {} exists on {}", remote.display(), self.host.name());
        if let Ok(mut c) = self.checked.lock() {
            c.push(key);
        }
        Ok(())
    }
}

/// Options of a pass.
#[derive(Clone, Debug)]
pub struct SyncOptions {
    /// Also check each fetched file's SHA-1 against its name (the size is always checked;
    /// `audit --verify` checks everything at rest).
    pub verify_sha1: bool,
    /// Names per tar stream.
    pub batch: usize,
}

impl Default for SyncOptions {
    fn default() -> Self {
        Self {
            verify_sha1: false,
            batch: 20_000,
        }
    }
}

/// What one pass did.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct PassReport {
    /// The database.
    pub db: String,
    /// Distinct files the standby references.
    pub referenced: usize,
    /// References that are not filestore names (URL attachments have none; other storage
    /// schemes, odd values): skipped, never used as paths.
    pub skipped: usize,
    /// Files fetched now.
    pub fetched: usize,
    /// Bytes fetched now.
    pub bytes: u64,
    /// Referenced files the VPS does not have (reported, not fatal).
    pub missing_on_vps: Vec<String>,
    /// Files whose content did not match their name (not kept).
    pub corrupt_on_vps: Vec<String>,
    /// Milliseconds spent reading names from the standby.
    pub query_ms: u64,
    /// Milliseconds spent comparing with the index (and stat-ing unindexed names).
    pub diff_ms: u64,
    /// Milliseconds spent fetching (connection, tar stream, writes).
    pub fetch_ms: u64,
    /// Milliseconds spent saving the index.
    pub persist_ms: u64,
    /// What the verification of this pass found here (and fetched again in the same pass).
    pub verified: crate::verify::Found,
}

/// The names the standby's database `db` references, and how many rows were skipped.
pub async fn referenced(standby: &dyn pgrepl::Sql, db: &str) -> Result<(Vec<StoreName>, usize)> {
    let q = query_names(standby, db, None, None).await?;
    Ok((q.names, q.skipped))
}

/// What one query of the standby returned.
struct Queried {
    names: Vec<StoreName>,
    skipped: usize,
    /// The newest `write_date` seen.
    newest: Option<String>,
    /// The highest id seen.
    max_id: Option<i64>,
}

/// Names referenced by the rows written since `since` or with an id above `after_id` (both
/// `None`: every row), with the skipped count and the next marks.
async fn query_names(
    standby: &dyn pgrepl::Sql,
    db: &str,
    since: Option<&str>,
    after_id: Option<i64>,
) -> Result<Queried> {
    // A margin of one hour: a transaction that started before the last pass and committed
    // after it carries an older write_date.
    let recent = since.map(|t| {
        format!(
            "write_date > {}::timestamp - interval '1 hour'",
            pgrepl::quote_literal(t)
        )
    });
    // By the primary key's index: cheap however large the table.
    let new = after_id.map(|id| format!("id > {id}"));
    let filter = match (recent, new) {
        (Some(r), Some(n)) => format!(" AND ({r} OR {n})"),
        (Some(c), None) | (None, Some(c)) => format!(" AND {c}"),
        (None, None) => String::new(),
    };
    // The names, then one row with the marks: one statement (one snapshot), and no
    // timestamp per name held in memory (200k names cost 30 MB less that way).
    let rows = standby
        .query(&format!(
            "SELECT store_fname, NULL::text, NULL::text FROM ir_attachment \
             WHERE store_fname IS NOT NULL{filter} GROUP BY store_fname \
             UNION ALL SELECT NULL, max(write_date)::text, max(id)::text FROM ir_attachment \
             WHERE store_fname IS NOT NULL{filter}"
        ))
        .await
        .map_err(|e| SyncError::Db {
            db: db.to_owned(),
            source: Box::new(e),
        })?;
    let mut names = Vec::with_capacity(rows.len());
    let mut skipped = 0;
    let mut newest: Option<String> = None;
    let mut max_id: Option<i64> = None;
    for r in rows {
        let mut cols = r.into_iter();
        if let Some(fname) = cols.next().flatten() {
            match StoreName::parse(&fname) {
                Some(n) => names.push(n),
                None => skipped += 1,
            }
            continue;
        }
        // The one marks row.
        newest = cols.next().flatten();
        max_id = cols.next().flatten().and_then(|i| i.parse::<i64>().ok());
    }
    Ok(Queried {
        names,
        skipped,
        newest,
        max_id,
    })
}

/// Remembers, between passes of `watch`, how far the standby's rows were read, so that a
/// steady-state pass does not read every name:
/// - every pass reads the rows with an id above the highest seen (less a margin), through
///   the primary key's index: new attachments, at a cost that does not grow with the table;
/// - every `recent_every` (30 s), also the rows written since the last such read (less an
///   hour): attachments whose content was replaced (Odoo updates `store_fname`). This one
///   reads the whole table (`write_date` has no index), hence not on every pass;
/// - every `full_every` (10 min), every name, as a safety net.
#[derive(Clone, Debug)]
pub struct Tracker {
    high_water: Option<String>,
    max_id: Option<i64>,
    last_full: Option<std::time::Instant>,
    last_recent: Option<std::time::Instant>,
    /// How often a pass reads every name.
    pub full_every: std::time::Duration,
    /// How often a pass also reads the rows written recently.
    pub recent_every: std::time::Duration,
    /// Rows whose id is at most this far below the highest id seen are read again (1000):
    /// ids are handed out when a row is inserted, not when it commits, so a slow transaction
    /// can commit a lower id after a higher one was seen.
    pub id_margin: i64,
}

impl Default for Tracker {
    fn default() -> Self {
        Self {
            high_water: None,
            max_id: None,
            last_full: None,
            last_recent: None,
            full_every: std::time::Duration::from_secs(600),
            recent_every: std::time::Duration::from_secs(30),
            id_margin: 1000,
        }
    }
}

/// Runs one pass for database `db`: `standby` is a connection to that database on the
/// standby cluster, `local_filestore` is `<backup data_dir>/filestore`, `index` tracks
/// what is there. Never deletes a file.
pub async fn sync_db(
    standby: &dyn pgrepl::Sql,
    db: &str,
    vps: &Vps,
    local_filestore: &Path,
    index: &mut Index,
    opts: &SyncOptions,
) -> Result<PassReport> {
    sync_db_tracked(
        standby,
        db,
        vps,
        local_filestore,
        index,
        opts,
        &mut Tracker::default(),
    )
    .await
}

/// Like [`sync_db`], reading only rows written since the tracker's last pass when it can
/// (see [`Tracker`]). A `report.referenced` then counts the names read in this pass.
pub async fn sync_db_tracked(
    standby: &dyn pgrepl::Sql,
    db: &str,
    vps: &Vps,
    local_filestore: &Path,
    index: &mut Index,
    opts: &SyncOptions,
    tracker: &mut Tracker,
) -> Result<PassReport> {
    validate_db_name(db)?;
    let clock = std::time::Instant::now();
    let due = |last: Option<std::time::Instant>, every| last.is_none_or(|t| t.elapsed() >= every);
    let full = tracker.high_water.is_none()
        || tracker.max_id.is_none()
        || due(tracker.last_full, tracker.full_every);
    let recent = !full && due(tracker.last_recent, tracker.recent_every);
    let (since, after_id) = if full {
        (None, None)
    } else {
        (
            tracker.high_water.clone().filter(|_| recent),
            tracker.max_id.map(|m| m.saturating_sub(tracker.id_margin)),
        )
    };
    let Queried {
        names,
        skipped,
        newest,
        max_id,
    } = query_names(standby, db, since.as_deref(), after_id).await?;
    let query_ms = clock.elapsed().as_millis() as u64;
    let mut report = PassReport {
        db: db.to_owned(),
        referenced: names.len(),
        skipped,
        query_ms,
        ..Default::default()
    };
    let clock = std::time::Instant::now();
    let local = local_filestore.join(db);
    // `prune` (another process) may have removed files: then its index is the true one.
    if index.reload_if_replaced(&local)? {
        tracing::info!("{db}: the index was rewritten by another process (prune): reloaded");
    }
    let mut wanted = Vec::new();
    for n in names {
        if index.contains(&n) {
            continue;
        }
        // Not indexed: maybe copied by a seed; stat only these.
        if std::fs::symlink_metadata(local.join(n.to_string())).is_ok_and(|m| m.is_file()) {
            index.insert(n);
        } else {
            wanted.push(n);
        }
    }
    report.diff_ms = clock.elapsed().as_millis() as u64;
    let clock = std::time::Instant::now();
    if !wanted.is_empty() {
        let remote = vps.filestore.join(db);
        vps.ensure_dir(db, &remote).await?;
        let owner = owner_of_nearest(&local);
        std::fs::create_dir_all(&local)
            .map_err(|e| SyncError::local("cannot create", &local, e))?;
        give(&local, owner);
        for batch in wanted.chunks(opts.batch.max(1)) {
            let got = fetch(vps, db, &local, batch, opts.verify_sha1).await;
            // Whatever was renamed into place is complete: index it even if the stream broke.
            let fetched = match got {
                Ok(f) => f,
                Err((done, e)) => {
                    for n in &done.names {
                        index.insert(*n);
                    }
                    index.persist()?;
                    return Err(e);
                }
            };
            for n in &fetched.names {
                index.insert(*n);
            }
            report.fetched += fetched.names.len();
            report.bytes += fetched.bytes;
            report.missing_on_vps.extend(fetched.missing);
            report.corrupt_on_vps.extend(fetched.corrupt);
        }
    }
    report.fetch_ms = clock.elapsed().as_millis() as u64;
    let clock = std::time::Instant::now();
    index.persist()?;
    report.persist_ms = clock.elapsed().as_millis() as u64;
    // Only a pass that completed moves the marks.
    if let Some(n) = newest {
        if tracker.high_water.as_ref().is_none_or(|h| n > *h) {
            tracker.high_water = Some(n);
        }
    }
    if let Some(id) = max_id {
        tracker.max_id = Some(tracker.max_id.map_or(id, |m| m.max(id)));
    }
    let now = std::time::Instant::now();
    if full {
        tracker.last_full = Some(now);
    }
    if full || recent {
        tracker.last_recent = Some(now);
    }
    Ok(report)
}

/// Database names reach paths: the same rule PostgreSQL identifiers get from Odoo's manager.
pub(crate) fn validate_db_name(db: &str) -> Result<()> {
    let ok = !db.is_empty()
        && db.len() <= 63
        && db
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !db.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(SyncError::invalid(
            "database name",
            format!("{db:?}: letters, digits, '_', '-' and '.' only"),
        ))
    }
}

/// What a batch brought.
#[derive(Default)]
pub(crate) struct Fetched {
    pub(crate) names: Vec<StoreName>,
    pub(crate) bytes: u64,
    pub(crate) missing: Vec<String>,
    pub(crate) corrupt: Vec<String>,
}

/// Streams one batch of database `db`; on failure returns what was completed before it.
async fn fetch(
    vps: &Vps,
    db: &str,
    local: &Path,
    batch: &[StoreName],
    verify: bool,
) -> std::result::Result<Fetched, (Fetched, SyncError)> {
    if let Some(session) = &vps.session {
        match session
            .fetch(&vps.filestore, db, local, batch, verify)
            .await
        {
            Outcome::Done(r) => return r,
            Outcome::Unavailable => {}
        }
    }
    let remote = vps.filestore.join(db);
    let mut list = Vec::with_capacity(batch.len() * 44);
    for n in batch {
        list.extend_from_slice(n.to_string().as_bytes());
        list.push(0);
    }
    let spec = CommandSpec::new("tar")
        .args(["--ignore-failed-read", "--no-recursion", "--null", "-C"])
        .arg(remote.display().to_string())
        .args(["-T", "-", "-cf", "-"]);
    let (writer, reader) = tokio::io::duplex(4 << 20);
    let wanted: HashSet<StoreName> = batch.iter().copied().collect();
    let local = local.to_owned();
    let unpack = tokio::task::spawn_blocking(move || {
        unpack(
            std::io::BufReader::with_capacity(1 << 20, SyncIoBridge::new(reader)),
            &local,
            &wanted,
            verify,
        )
    });
    let stdin: host::BoxRead = Box::new(std::io::Cursor::new(list));
    let streamed = vps.host.stream(&spec, Some(stdin), Box::new(writer)).await;
    let unpacked = unpack.await.unwrap_or_else(|e| {
        (
            Fetched::default(),
            Some(SyncError::Stream {
                host: vps.host.name(),
                detail: e.to_string(),
            }),
        )
    });
    let (mut fetched, unpack_err) = unpacked;
    // A local failure (disk full) says more than the broken pipe it causes on the other side.
    if let Some(e) = unpack_err {
        return Err((fetched, e));
    }
    match streamed {
        Ok(out) => {
            for line in out.stderr_text().lines() {
                if line.contains("Cannot stat") || line.contains("No such file") {
                    if let Some(name) = line.split(": ").nth(1) {
                        fetched.missing.push(name.trim().to_owned());
                    }
                }
            }
            Ok(fetched)
        }
        Err(e) => Err((
            fetched,
            SyncError::Stream {
                host: vps.host.name(),
                detail: e.to_string(),
            },
        )),
    }
}

/// The stream from the VPS broke or was not a tar archive.
fn broken(e: impl std::fmt::Display) -> SyncError {
    SyncError::Stream {
        host: "the VPS".into(),
        detail: e.to_string(),
    }
}

/// The owner (uid, gid) of `path`, or of its nearest existing parent: what a new file or
/// folder of the filestore gets, so that Odoo's user, who owns the filestore, can write
/// beside it after a failover whoever runs the sync (real Odoo writing into a folder it does
/// not own commits the row and loses the file).
pub(crate) fn owner_of_nearest(path: &Path) -> Option<(u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    path.ancestors()
        .find_map(|p| std::fs::metadata(p).ok())
        .map(|m| (m.uid(), m.gid()))
}

/// Gives `path` to `owner` when we are not that owner (nothing to do, or nothing we may do,
/// otherwise: a sync run as Odoo's user makes its files its own).
pub(crate) fn give(path: &Path, owner: Option<(u32, u32)>) {
    if let Some((uid, gid)) = owner {
        // SAFETY: geteuid(2) has no preconditions.
        if unsafe { libc::geteuid() } != uid {
            let _ = std::os::unix::fs::lchown(path, Some(uid), Some(gid));
        }
    }
}

/// Reads a tar stream; writes each wanted regular file to `<name>.odoo-standby-tmp`, checks
/// its size (and SHA-1), renames it into place, owned as `local` is. Returns what was done
/// and the first error.
pub(crate) fn unpack(
    input: impl Read,
    local: &Path,
    wanted: &HashSet<StoreName>,
    verify: bool,
) -> (Fetched, Option<SyncError>) {
    let mut done = Fetched::default();
    // One buffer and one record of folders made for the whole stream: a first copy writes
    // tens of thousands of files, and zeroing a buffer or stat-ing a folder per file shows.
    let mut buf = vec![0u8; 128 * 1024];
    let mut made: HashSet<PathBuf> = HashSet::new();
    let owner = owner_of_nearest(local);
    let mut archive = tar::Archive::new(input);
    let entries = match archive.entries() {
        Ok(e) => e,
        Err(e) => return (done, Some(broken(e))),
    };
    for entry in entries {
        let mut entry = match entry {
            Ok(e) => e,
            Err(e) => return (done, Some(broken(e))),
        };
        let path = match entry.path() {
            Ok(p) => p.to_string_lossy().into_owned(),
            Err(e) => return (done, Some(broken(e))),
        };
        // Only the regular files we asked for, under their own validated names.
        let Some(name) = StoreName::parse(&path).filter(|n| wanted.contains(n)) else {
            continue;
        };
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let size = entry.header().size().unwrap_or(u64::MAX);
        let final_path = local.join(name.to_string());
        let tmp = PathBuf::from(format!("{}{TMP_SUFFIX}", final_path.display()));
        if let Some(dir) = final_path.parent() {
            if !made.contains(dir) {
                let new = !dir.exists();
                if let Err(e) = std::fs::create_dir_all(dir) {
                    return (done, Some(SyncError::local("cannot create", dir, e)));
                }
                if new {
                    give(dir, owner);
                }
                made.insert(dir.to_owned());
            }
        }
        match write_one(
            &mut entry,
            &final_path,
            &tmp,
            size,
            verify.then_some(&name),
            &mut buf,
        ) {
            Ok(true) => {
                give(&final_path, owner);
                done.bytes += size;
                done.names.push(name);
            }
            Ok(false) => done.corrupt.push(name.to_string()),
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return (done, Some(e));
            }
        }
    }
    // The archive ends before the stream does: tar pads its output to a whole record. Read
    // it to the end, or the writer fails on a closed pipe and a complete pass looks broken.
    if let Err(e) = std::io::copy(&mut archive.into_inner(), &mut std::io::sink()) {
        return (done, Some(broken(e)));
    }
    (done, None)
}

/// Writes one file; `Ok(false)` when its SHA-1 does not match its name (nothing kept).
fn write_one(
    entry: &mut impl Read,
    final_path: &Path,
    tmp: &Path,
    size: u64,
    check: Option<&StoreName>,
    buf: &mut [u8],
) -> Result<bool> {
    let mut f =
        std::fs::File::create(tmp).map_err(|e| SyncError::local("cannot create", tmp, e))?;
    let mut hasher = Sha1::new();
    let mut written = 0u64;
    loop {
        let n = entry.read(buf).map_err(|e| SyncError::Stream {
            host: "the VPS".into(),
            detail: format!("reading {}: {e}", final_path.display()),
        })?;
        if n == 0 {
            break;
        }
        if check.is_some() {
            hasher.update(&buf[..n]);
        }
        f.write_all(&buf[..n])
            .map_err(|e| SyncError::local("cannot write", tmp, e))?;
        written += n as u64;
    }
    f.flush()
        .map_err(|e| SyncError::local("cannot write", tmp, e))?;
    drop(f);
    if written != size {
        return Err(SyncError::Stream {
            host: "the VPS".into(),
            detail: format!(
                "{} arrived with {written} of {size} bytes",
                final_path.display()
            ),
        });
    }
    if let Some(name) = check {
        if hasher.finalize().as_slice() != name.sha() {
            let _ = std::fs::remove_file(tmp);
            return Ok(false);
        }
    }
    std::fs::rename(tmp, final_path)
        .map_err(|e| SyncError::local("cannot rename into", final_path, e))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts what was read, to prove the whole stream was consumed.
    struct Counting<R> {
        inner: R,
        read: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    }

    impl<R: Read> Read for Counting<R> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.inner.read(buf)?;
            self.read.fetch_add(n, std::sync::atomic::Ordering::SeqCst);
            Ok(n)
        }
    }

    #[test]
    fn the_stream_is_read_past_the_end_of_archive_padding() {
        let content = b"hello filestore".to_vec();
        let sha = hex::encode(Sha1::digest(&content));
        let name = StoreName::parse(&format!("{}/{}", &sha[..2], sha)).unwrap();
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder
            .append_data(&mut header, name.to_string(), content.as_slice())
            .unwrap();
        let mut stream = builder.into_inner().unwrap();
        // GNU tar pads its output to a whole 10240-byte record after the end marker.
        stream.resize(stream.len().div_ceil(10240) * 10240 + 10240, 0);
        let total = stream.len();
        let read = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let input = Counting {
            inner: std::io::Cursor::new(stream),
            read: read.clone(),
        };
        let dir = std::env::temp_dir().join(format!("filesync-unpack-{}", std::process::id()));
        let wanted: HashSet<StoreName> = [name].into_iter().collect();
        let (done, err) = unpack(input, &dir, &wanted, true);
        assert!(err.is_none(), "{err:?}");
        assert_eq!(done.names, vec![name]);
        assert_eq!(std::fs::read(dir.join(name.to_string())).unwrap(), content);
        assert_eq!(
            read.load(std::sync::atomic::Ordering::SeqCst),
            total,
            "padding left unread"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
