//! Audit of one database's filestore on the backup: every referenced file is there, has the
//! size the database recorded, and (with verify) the content its name promises.

use std::io::Read;
use std::path::Path;

use serde::Serialize;
use sha1::{Digest, Sha1};

use crate::error::{Result, SyncError};
use crate::name::StoreName;

/// What the audit found.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct AuditReport {
    /// The database.
    pub db: String,
    /// Distinct referenced files checked.
    pub checked: usize,
    /// Referenced but not on disk.
    pub missing: Vec<String>,
    /// On disk with another size than `ir_attachment.file_size`.
    pub truncated: Vec<String>,
    /// Content whose SHA-1 is not its name (with verify).
    pub corrupt: Vec<String>,
}

impl AuditReport {
    /// Whether everything referenced is there and sound.
    pub fn healthy(&self) -> bool {
        self.missing.is_empty() && self.truncated.is_empty() && self.corrupt.is_empty()
    }
}

pub(crate) fn sha1_file(path: &Path) -> std::io::Result<[u8; 20]> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha1::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().into())
}

/// Audits database `db` (a connection to it on the standby) against `<filestore>/<db>`.
pub async fn audit(
    standby: &dyn pgrepl::Sql,
    db: &str,
    filestore: &Path,
    verify: bool,
) -> Result<AuditReport> {
    let rows = standby.query(AUDIT_SQL).await.map_err(|e| SyncError::Db {
        db: db.to_owned(),
        source: Box::new(e),
    })?;
    audit_rows(db, filestore, rows, verify).await
}

/// What [`audit`] asks the database: every referenced file's name and size. For a caller
/// that asks it with other questions in one go ([`pgrepl::Psql::batch`]), then hands the
/// rows to [`audit_rows`].
pub const AUDIT_SQL: &str = "SELECT store_fname, max(file_size) FROM ir_attachment WHERE store_fname IS NOT NULL GROUP BY store_fname";

/// [`audit`] of rows already read with [`AUDIT_SQL`].
pub async fn audit_rows(
    db: &str,
    filestore: &Path,
    rows: Vec<pgrepl::Row>,
    verify: bool,
) -> Result<AuditReport> {
    let root = filestore.join(db);
    let db = db.to_owned();
    // Every referenced file is stat-ed (and read, with verify): disk work, off the runtime.
    tokio::task::spawn_blocking(move || check_files(&db, &root, rows, verify))
        .await
        .map_err(|e| SyncError::Invalid {
            what: "audit".into(),
            reason: format!("it stopped: {e}"),
        })?
}

fn check_files(db: &str, root: &Path, rows: Vec<pgrepl::Row>, verify: bool) -> Result<AuditReport> {
    let mut report = AuditReport {
        db: db.to_owned(),
        ..Default::default()
    };
    for r in rows {
        let Some(name) = r
            .first()
            .cloned()
            .flatten()
            .as_deref()
            .and_then(StoreName::parse)
        else {
            continue;
        };
        let size: Option<u64> = r.get(1).cloned().flatten().and_then(|s| s.parse().ok());
        report.checked += 1;
        let path = root.join(name.to_string());
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(_) => {
                report.missing.push(name.to_string());
                continue;
            }
        };
        if size.is_some_and(|s| s != meta.len()) {
            report.truncated.push(name.to_string());
            continue;
        }
        if verify {
            match sha1_file(&path) {
                Ok(h) if &h == name.sha() => {}
                Ok(_) => report.corrupt.push(name.to_string()),
                Err(e) => return Err(SyncError::local("cannot read", &path, e)),
            }
        }
    }
    Ok(report)
}
