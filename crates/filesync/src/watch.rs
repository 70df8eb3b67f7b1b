//! The one watch loop of the filestore sync: a pass over every database every few seconds,
//! with what it keeps between passes (per database an index, a tracker and a connection; the
//! database list for ten minutes; the fetch helper on the VPS). `filesync watch` and
//! odoo-standby's sync service both run it; each says how it reaches the standby
//! ([`Standby`]) and what else it does around a pass.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::error::{Result, SyncError};
use crate::verify::{Verifier, VerifyOptions};
use crate::{sync_db_tracked, Index, PassReport, StoreName, SyncOptions, Tracker, Vps};

/// How a watch reaches the standby cluster's databases.
#[async_trait]
pub trait Standby: Send + Sync {
    /// SQL on database `db` (a connection is kept by the watch until it fails).
    async fn database(&self, db: &str) -> Result<Arc<dyn pgrepl::Sql>>;
}

/// The standby cluster through a libpq connection string without `dbname` (a database's
/// connection is made when first needed): what the `filesync` command uses.
pub struct PgStandby(pub String);

#[async_trait]
impl Standby for PgStandby {
    async fn database(&self, db: &str) -> Result<Arc<dyn pgrepl::Sql>> {
        let mut c = pgrepl::ConnInfo::parse(&self.0).map_err(|e| SyncError::Invalid {
            what: "standby connection".into(),
            reason: e.to_string(),
        })?;
        c.set("dbname", db);
        let conn = pgrepl::PgClient::connect(&c.to_libpq())
            .await
            .map_err(|e| SyncError::Db {
                db: db.to_owned(),
                source: Box::new(e),
            })?;
        Ok(Arc::new(conn))
    }
}

/// `only`, or (when empty) every Odoo database of the standby.
pub async fn databases_or(standby: &dyn Standby, only: &[String]) -> Result<Vec<String>> {
    if only.is_empty() {
        odoo_databases(standby).await
    } else {
        Ok(only.to_vec())
    }
}

/// The databases [`odoo_databases`] considers (asked on `postgres`): those one may connect
/// to, not templates, not `postgres`.
pub const DATABASES_SQL: &str = "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate AND datname <> 'postgres' ORDER BY 1";

/// Whether a database is Odoo's (asked on it): it has `ir_attachment`. `t` or `f`.
pub const IS_ODOO_SQL: &str = "SELECT to_regclass('public.ir_attachment') IS NOT NULL";

/// Every database of the standby (except templates and `postgres`) that has an
/// `ir_attachment` table: the Odoo databases. The one discovery both the command and the sync
/// service use.
pub async fn odoo_databases(standby: &dyn Standby) -> Result<Vec<String>> {
    let db = |e: pgrepl::PgreplError, name: &str| SyncError::Db {
        db: name.to_owned(),
        source: Box::new(e),
    };
    let list = standby.database("postgres").await?;
    let rows = list
        .query(DATABASES_SQL)
        .await
        .map_err(|e| db(e, "postgres"))?;
    let mut out = Vec::new();
    for name in rows
        .into_iter()
        .filter_map(|r| r.into_iter().next().flatten())
    {
        // A database we may not connect to is not one of ours to sync.
        let Ok(conn) = standby.database(&name).await else {
            continue;
        };
        let has = pgrepl::query_value(conn.as_ref(), IS_ODOO_SQL)
            .await
            .ok()
            .flatten();
        if has.as_deref() == Some("t") {
            out.push(name);
        }
    }
    Ok(out)
}

struct DbState {
    sql: Arc<dyn pgrepl::Sql>,
    index: Index,
    tracker: Tracker,
    verifier: Option<Verifier>,
}

/// What a watch keeps between passes.
pub struct Watch {
    vps: Vps,
    local_filestore: PathBuf,
    index_dir: PathBuf,
    /// The databases to sync; empty: every Odoo database ([`odoo_databases`]).
    pub only: Vec<String>,
    /// Options of each pass.
    pub opts: SyncOptions,
    /// Rebuild each index from the disk when it is first loaded.
    pub rescan: bool,
    /// How often the database list is read again (new databases are picked up then).
    pub list_every: Duration,
    /// Check what the index claims before each pass ([`crate::verify`]); `None`: never.
    pub verify: Option<VerifyOptions>,
    /// Names (`<db>/<name>`) to hash on the next pass whatever the budget (a copy-back found
    /// them damaged); taken by the pass that checks them.
    pub check_first: Vec<String>,
    dbs: BTreeMap<String, DbState>,
    listed: Option<(Instant, Vec<String>)>,
}

impl Watch {
    /// A watch fetching from `vps` into `local_filestore` (`<data_dir>/filestore`), its
    /// indexes in `index_dir/<db>.index`.
    pub fn new(vps: Vps, local_filestore: PathBuf, index_dir: PathBuf) -> Self {
        Self {
            vps,
            local_filestore,
            index_dir,
            only: Vec::new(),
            opts: SyncOptions::default(),
            rescan: false,
            list_every: Duration::from_secs(600),
            verify: None,
            check_first: Vec::new(),
            dbs: BTreeMap::new(),
            listed: None,
        }
    }

    /// Forgets the connections and the database list (the next pass makes them again and
    /// reloads the indexes from their files).
    pub fn reset_connections(&mut self) {
        self.dbs.clear();
        self.listed = None;
    }

    /// The databases of this pass: `only`, or the Odoo databases, listed again every
    /// [`Watch::list_every`].
    pub async fn databases(&mut self, standby: &dyn Standby) -> Result<Vec<String>> {
        if !self.only.is_empty() {
            return databases_or(standby, &self.only).await;
        }
        match &self.listed {
            Some((at, dbs)) if at.elapsed() < self.list_every => Ok(dbs.clone()),
            _ => {
                let dbs = odoo_databases(standby).await?;
                self.listed = Some((Instant::now(), dbs.clone()));
                Ok(dbs)
            }
        }
    }

    /// One pass over every database; a database whose connection broke is connected again
    /// on the next pass.
    pub async fn pass(&mut self, standby: &dyn Standby) -> Result<Vec<PassReport>> {
        let mut reports = Vec::new();
        for db in self.databases(standby).await? {
            if !self.dbs.contains_key(&db) {
                let sql = standby.database(&db).await?;
                let file = self.index_dir.join(format!("{db}.index"));
                let dir = self.local_filestore.join(&db);
                let rescan = self.rescan;
                let index = tokio::task::spawn_blocking(move || {
                    if rescan {
                        Index::build(&file, &dir)
                    } else {
                        Index::load_or_build(&file, &dir)
                    }
                })
                .await
                .map_err(|e| SyncError::Invalid {
                    what: "index".into(),
                    reason: format!("loading it stopped: {e}"),
                })??;
                self.dbs.insert(
                    db.clone(),
                    DbState {
                        sql,
                        index,
                        tracker: Tracker::default(),
                        verifier: self.verify.clone().map(Verifier::new),
                    },
                );
            }
            let Some(st) = self.dbs.get_mut(&db) else {
                continue;
            };
            let mut verified = Default::default();
            if let Some(v) = st.verifier.as_mut() {
                let prefix = format!("{db}/");
                let first: Vec<StoreName> = self
                    .check_first
                    .iter()
                    .filter_map(|n| n.strip_prefix(&prefix))
                    .filter_map(StoreName::parse)
                    .collect();
                let found = v
                    .check(
                        st.sql.as_ref(),
                        &db,
                        &self.local_filestore,
                        &mut st.index,
                        &first,
                    )
                    .await;
                let found: crate::verify::Found = match found {
                    Ok(f) => f,
                    Err(e) => {
                        if matches!(e, SyncError::Db { .. }) {
                            self.dbs.remove(&db);
                        }
                        return Err(e);
                    }
                };
                self.check_first.retain(|n| !n.starts_with(&prefix));
                if found.any() {
                    // Read every name again: the dropped ones are fetched in this pass.
                    st.tracker = Tracker::default();
                    st.index.persist()?;
                }
                verified = found;
            }
            let r = sync_db_tracked(
                st.sql.as_ref(),
                &db,
                &self.vps,
                &self.local_filestore,
                &mut st.index,
                &self.opts,
                &mut st.tracker,
            )
            .await;
            match r {
                Ok(mut r) => {
                    r.verified = verified;
                    reports.push(r)
                }
                Err(e) => {
                    if matches!(e, SyncError::Db { .. }) {
                        self.dbs.remove(&db);
                    }
                    return Err(e);
                }
            }
        }
        Ok(reports)
    }
}

/// Runs `pass` every `interval` until the process is stopped. A failed pass is logged once
/// (with its causes), then every ten minutes while it keeps failing, and its recovery is
/// logged; the next pass retries (the VPS may be briefly unreachable).
pub async fn every<E>(
    interval: Duration,
    what: &str,
    mut pass: impl AsyncFnMut() -> std::result::Result<(), E>,
) where
    E: std::error::Error,
{
    let mut failing: Option<(Instant, Instant)> = None;
    loop {
        match pass().await {
            Ok(()) => {
                if let Some((since, _)) = failing.take() {
                    tracing::info!(
                        "{what}: passes work again (they failed for {} s)",
                        since.elapsed().as_secs()
                    );
                }
            }
            Err(e) => {
                let now = Instant::now();
                match failing {
                    None => {
                        tracing::error!("{what}: pass failed: {}", chain(&e));
                        failing = Some((now, now));
                    }
                    Some((since, last)) if last.elapsed() >= Duration::from_secs(600) => {
                        tracing::error!(
                            "{what}: passes still fail (for {} s): {}",
                            since.elapsed().as_secs(),
                            chain(&e)
                        );
                        failing = Some((since, now));
                    }
                    Some(_) => {}
                }
            }
        }
        tokio::time::sleep(interval).await;
    }
}

/// An error and its causes on one line (`a: b: c`).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = c.source();
    }
    s
}
