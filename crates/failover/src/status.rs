//! `odoo-standby status`: per instance, every problem found, named ([`Problem`]): the role
//! of the cluster here and of the VPS's, replication (receiver, lag, the WAL its slot holds,
//! a lost slot), the files (missing, damaged, the sync's last error and age), the units on
//! both sides, free disk here, and an interrupted operation. Instances are checked in
//! parallel, each within its own time limit ([`status_all`]).
//!
//! The JSON form is [`InstanceStatus`] serialized, field by field as documented here; new
//! fields may be added, none is renamed or removed.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::env::Env;
use crate::error::{chain, FailoverError, Result};
use crate::problem::{bytes, seconds, Problem, Severity};
use crate::seen::VpsAnswer;
use crate::sync::SyncState;

/// The filestore here against the database, per database: referenced files missing, and
/// files with another size than their row says (stat only, no hashing).
pub async fn audit_files(env: &Env) -> Result<Vec<filesync::audit::AuditReport>> {
    audit(env, env.databases().await?).await
}

async fn audit(env: &Env, dbs: Vec<String>) -> Result<Vec<filesync::audit::AuditReport>> {
    let mut v = Vec::new();
    let fs = env.layout.data_dir().join("filestore");
    for db in dbs {
        v.push(
            filesync::audit::audit(&env.standby_sql(&db), &db, &fs, false)
                .await
                .map_err(|e| FailoverError::failed(format!("auditing {db}"), e))?,
        );
    }
    Ok(v)
}

/// Referenced files missing here, per database (for the risk summary and status).
pub async fn missing_files(env: &Env) -> Result<Vec<(String, usize)>> {
    Ok(audit_files(env)
        .await?
        .into_iter()
        .map(|r| (r.db, r.missing.len()))
        .collect())
}

/// Replication health.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DbHealth {
    /// The WAL receiver's state here (`streaming`...).
    pub receiver: Option<String>,
    /// Bytes the standby is behind the VPS (measured on the VPS; `None` when unreachable).
    pub lag_bytes: Option<i64>,
    /// Seconds of replay lag as the VPS measures it.
    pub lag_seconds: Option<f64>,
    /// WAL the instance's slot holds on the VPS.
    pub slot_retained_bytes: Option<i64>,
    /// Whether that slot is in use.
    pub slot_active: Option<bool>,
    /// Its `wal_status` (`reserved`, `extended`, `unreserved`, `lost`).
    pub slot_wal_status: Option<String>,
}

/// File health.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FilesHealth {
    /// Referenced files missing here, all databases.
    pub missing: usize,
    /// The same, per database.
    pub missing_by_db: Vec<(String, usize)>,
    /// When the last sync pass succeeded (seconds since the epoch).
    pub last_sync: Option<u64>,
    /// How long ago that was.
    pub last_sync_age_seconds: Option<u64>,
    /// The last pass's error, if it failed.
    pub last_error: Option<String>,
    /// Files here whose size is not the one their row records (damaged).
    pub wrong_size: usize,
    /// Files the sync found vanished or damaged here and fetched again.
    pub repaired: usize,
    /// Files found vanished or damaged here that the VPS does not have either.
    pub unrepaired: Vec<String>,
    /// Files a copy-back found damaged here, waiting for the next sync pass.
    pub damaged_waiting: Vec<String>,
    /// While switched over: when the files written here last went back to the VPS.
    pub back_at: Option<u64>,
    /// Files sent back to the VPS while switched over.
    pub back_sent: usize,
    /// Why the last files-back pass failed (the VPS away for its planned work).
    pub back_error: Option<String>,
    /// When the sync last checked every file's presence and size (seconds since the epoch).
    pub sizes_checked_at: Option<u64>,
    /// When the sync last ended a SHA-1 round over every file here.
    pub hash_round_at: Option<u64>,
}

/// Free space here, on the filesystem of the standby's data directory or of the filestore,
/// whichever has less.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DiskHealth {
    /// The folder measured.
    pub path: String,
    /// Bytes free for an unprivileged writer.
    pub free_bytes: u64,
    /// The filesystem's size in bytes.
    pub size_bytes: u64,
}

/// One instance, as `status --json` prints it.
#[derive(Clone, Debug, Serialize)]
pub struct InstanceStatus {
    /// The instance.
    pub name: String,
    /// The cluster here: `standby`, `primary` (failed over), `down`, or `unknown` (the checks
    /// did not end in time).
    pub role: String,
    /// The VPS's cluster as seen from here: `primary`, `standby`, `stopped`, or `null` when it
    /// was not asked or did not answer.
    pub vps_role: Option<String>,
    /// No problem at all.
    pub healthy: bool,
    /// The worst problem's severity (`warning`, `unknown`, `critical`), `null` when healthy.
    pub severity: Option<Severity>,
    /// Every problem found, worst first.
    pub problems: Vec<Problem>,
    /// Replication.
    pub db: DbHealth,
    /// Files.
    pub files: FilesHealth,
    /// Free disk here.
    pub disk: Option<DiskHealth>,
    /// The Odoo unit here: `active` or `inactive`.
    pub odoo_unit: String,
    /// The VPS's Odoo unit: `active`, `inactive`, or `null` when not asked (failed over, or the
    /// VPS unreachable).
    pub vps_odoo_unit: Option<String>,
    /// The sync service here: `active` or `inactive`.
    pub syncs: String,
    /// An operation that was interrupted (resume it).
    pub interrupted: Option<String>,
    /// The last `odoo-standby drill`, when there was one.
    pub last_drill: Option<LastDrill>,
    /// `null` when the VPS was asked now; else the age in seconds of the sync service's last
    /// look at it, which `status` of all instances uses when it is under a minute old
    /// (`status NAME` and `--live` always ask).
    pub vps_seen_age_seconds: Option<u64>,
    /// How long the checks took, in seconds.
    pub checked_in_seconds: f64,
}

/// The last drill, as status shows it.
#[derive(Clone, Debug, Serialize)]
pub struct LastDrill {
    /// Seconds since it started.
    pub age_seconds: u64,
    /// Whether it passed.
    pub ok: bool,
    /// The RTO it measured.
    pub rto_seconds: Option<f64>,
}

impl LastDrill {
    fn of(env: &Env) -> Option<Self> {
        let r = crate::drill::last_drill(env)?;
        Some(Self {
            age_seconds: crate::journal::now().saturating_sub(r.started),
            ok: r.ok,
            rto_seconds: r.rto_seconds,
        })
    }
}

/// Thresholds of the graded problems.
pub mod limits {
    /// Replication lag in bytes: warning, critical.
    pub const LAG_BYTES: (f64, f64) = ((16u64 << 20) as f64, (1u64 << 30) as f64);
    /// Replication lag in seconds: warning, critical.
    pub const LAG_SECONDS: (f64, f64) = (60.0, 600.0);
    /// WAL a slot holds on the VPS, bytes: warning, critical.
    pub const SLOT_BYTES: (f64, f64) = ((1u64 << 30) as f64, (8u64 << 30) as f64);
    /// Seconds since the last good sync pass: warning, critical.
    pub const SYNC_AGE: (f64, f64) = (120.0, 900.0);
    /// Percent of the disk used here: warning, critical.
    pub const DISK_USED_PERCENT: (f64, f64) = (90.0, 95.0);
}

/// While switched over: how the files written here go back to the VPS, for the message.
fn files_back(st: &SyncState) -> String {
    match (&st.back_error, st.back_at) {
        (Some(e), _) => format!("; the files written here cannot go back to it now ({e}): they are tried again every {} s, and failback sends them in any case", crate::sync::FILES_BACK_EVERY.as_secs()),
        (None, Some(at)) => format!(
            "; the files written here go back to it every {} s (last {} ago, {} sent so far)",
            crate::sync::FILES_BACK_EVERY.as_secs(),
            seconds(crate::journal::now().saturating_sub(at)),
            st.back_sent
        ),
        (None, None) => String::new(),
    }
}

fn active(b: bool) -> String {
    if b { "active" } else { "inactive" }.into()
}

/// Whether an error (or one of its causes) is a changed SSH host key.
pub(crate) fn host_key_changed(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if matches!(
            c.downcast_ref::<host::HostError>(),
            Some(host::HostError::HostKeyChanged { .. })
        ) {
            return true;
        }
        cur = c.source();
    }
    let text = chain(e);
    text.contains("host key of") && text.contains("CHANGED")
}

/// How many instances [`status_all`] checks at once by default. Each instance's checks run
/// psql and ssh processes; fifty at once on two cores (the fleet benchmark) took the load to
/// 122 and let none answer within 30 s.
pub const STATUS_PARALLEL: usize = 8;

/// The statuses of `envs`, checked `parallel` at a time (at least one), each within `limit`
/// counted from its own start: an instance whose checks do not end in time gets one
/// `status-timeout` problem (severity unknown) and the others are not held up by it beyond
/// its place in the queue. What appeared or cleared since the last status is recorded as
/// events (`events::note_problems`).
///
/// With several instances, this server's side of all of them (each standby's status and
/// files, each instance's units) is read first, at once ([`here_all`]: two psql processes
/// for the fleet instead of two per instance), within `limit`; when that does not end in
/// time, each instance reads its own as for one. `checked_in_seconds` then counts the
/// instance's own checks after it.
pub async fn status_all(
    envs: Vec<Env>,
    limit: Duration,
    parallel: usize,
    use_seen: bool,
) -> Vec<InstanceStatus> {
    let mut pre: Vec<Option<Read>> = if envs.len() > 1 {
        match tokio::time::timeout(limit, here_all(&envs)).await {
            Ok(all) => all.into_iter().map(Some).collect(),
            Err(_) => Vec::new(),
        }
    } else {
        Vec::new()
    };
    pre.resize_with(envs.len(), || None);
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(parallel.max(1)));
    let tasks: Vec<_> = envs
        .into_iter()
        .zip(pre)
        .map(|(env, pre)| {
            let name = env.name().to_owned();
            let gate = gate.clone();
            let task = tokio::spawn(async move {
                let _turn = gate.acquire_owned().await;
                let s = tokio::time::timeout(limit, status_from(&env, use_seen, pre))
                    .await
                    .ok();
                (env, s)
            });
            (name, task)
        })
        .collect();
    let mut all = Vec::new();
    for (name, task) in tasks {
        let (env, s) = match task.await {
            Ok((env, Some(s))) => (Some(env), s),
            Ok((env, None)) => (
                Some(env),
                unknown(
                    &name,
                    limit,
                    Problem {
                        code: "status-timeout",
                        severity: Severity::Unknown,
                        message: format!(
                            "the checks of {name} did not end within {} s (a machine that accepts connections and does not answer?)",
                            limit.as_secs()
                        ),
                        fix: format!("`odoo-standby status {name} --timeout 120` waits longer"),
                    },
                ),
            ),
            Err(e) => (
                None,
                unknown(
                    &name,
                    limit,
                    Problem {
                        code: "status-timeout",
                        severity: Severity::Unknown,
                        message: format!("the checks of {name} ended abnormally: {e}"),
                        fix: format!("run `odoo-standby status {name}` again"),
                    },
                ),
            ),
        };
        if let Some(env) = &env {
            crate::events::note_problems(env, &s).await;
        }
        all.push(s);
    }
    all
}

fn unknown(name: &str, limit: Duration, p: Problem) -> InstanceStatus {
    InstanceStatus {
        name: name.to_owned(),
        role: "unknown".into(),
        vps_role: None,
        healthy: false,
        severity: Some(p.severity),
        problems: vec![p],
        db: DbHealth::default(),
        files: FilesHealth::default(),
        disk: None,
        odoo_unit: "unknown".into(),
        vps_odoo_unit: None,
        syncs: "unknown".into(),
        interrupted: None,
        last_drill: None,
        vps_seen_age_seconds: None,
        checked_in_seconds: limit.as_secs_f64(),
    }
}

/// `(version, name)` of the standby when it is a postgresql-common cluster.
fn debian_id(env: &Env) -> Option<(String, String)> {
    let label = env.standby.label();
    let (v, n) = label.split_once('/').filter(|_| !label.starts_with('/'))?;
    Some((v.to_owned(), n.to_owned()))
}

/// How the operator starts the standby cluster here, for a fix.
fn start_hint(env: &Env) -> String {
    match debian_id(env) {
        Some((v, n)) => format!("systemctl start postgresql@{v}-{n}"),
        _ => format!(
            "as {}: {}/pg_ctl -D {} start",
            env.cfg.backup.pg_os_user,
            env.cfg.backup.pg_bindir.display(),
            env.standby.data_dir().display()
        ),
    }
}

/// Where the standby cluster's log is, for a fix.
fn log_hint(env: &Env) -> String {
    match debian_id(env) {
        Some((v, n)) => format!("/var/log/postgresql/postgresql-{v}-{n}.log"),
        _ => format!("the log beside {}", env.standby.data_dir().display()),
    }
}

/// Free space on the filesystems of `paths` (the least), measured as `df` does.
pub(crate) async fn disk(paths: &[std::path::PathBuf]) -> Option<DiskHealth> {
    let paths = paths.to_vec();
    // statvfs(3), as df does, without starting df: a hung network filesystem blocks its
    // thread, not status (10 s).
    let measure = tokio::task::spawn_blocking(move || {
        paths
            .iter()
            .filter_map(|p| {
                let (size_bytes, free_bytes) = statvfs(p)?;
                Some(DiskHealth {
                    path: p.display().to_string(),
                    size_bytes,
                    free_bytes,
                })
            })
            .min_by_key(|d| d.free_bytes)
    });
    tokio::time::timeout(Duration::from_secs(10), measure)
        .await
        .ok()?
        .ok()?
}

/// The size of the filesystem of `path` and the bytes free on it for an unprivileged writer
/// (df's "Available"); `None` when it cannot be measured.
fn statvfs(path: &std::path::Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `c` is a NUL-terminated path and `st` a buffer of the struct statvfs fills.
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it filled the struct.
    let st = unsafe { st.assume_init() };
    // u64 on 64-bit Linux; the conversion keeps 32-bit builds right.
    #[allow(clippy::useless_conversion)]
    let (unit, blocks, avail) = (
        u64::from(st.f_frsize),
        u64::from(st.f_blocks),
        u64::from(st.f_bavail),
    );
    Some((blocks.saturating_mul(unit), avail.saturating_mul(unit)))
}

/// This server's side of an instance read by [`here_all`]: the cluster and files, and the
/// (Odoo, sync) units when one question answered for all.
type Read = (Here, Option<(bool, bool)>);

/// What status reads of the cluster here, in two psql processes (one when it does not
/// answer, and then pg_ctl or pg_lsclusters says whether it runs): its status with its
/// databases, then each Odoo database's referenced files. Before, each question was a psql
/// of its own: six programs and their `runuser`s per instance, which on two cores were most
/// of a fleet's `status`. `None`: it does not run.
struct Here {
    status: Option<pgrepl::Result<pgrepl::Status>>,
    /// Per Odoo database, or why they could not be audited.
    audits: Option<std::result::Result<Vec<filesync::audit::AuditReport>, String>>,
}

async fn here(env: &Env) -> Here {
    let psql = env.standby_sql("postgres");
    let first = pgrepl::status_batch(&psql, &listing(env)).await;
    let audit = match after_status(env, first).await {
        Next::Done(h) => return h,
        Next::Audit(a) => a,
    };
    let answers = if audit.stmts.is_empty() {
        Ok(Vec::new())
    } else {
        psql.batch(&audit.stmts).await
    };
    audit.finish(env, answers).await
}

/// [`here`] of every instance, in as few psql processes as [`pgrepl::batch_many`] can:
/// all the standbys' status and database lists in one, then all their Odoo databases'
/// files in another (one more for each standby that does not answer). And each instance's
/// two units, in one question for all. A fleet's `status` on two cores was mostly these
/// programs, started per instance.
async fn here_all(envs: &[Env]) -> Vec<Read> {
    let parts: Vec<(pgrepl::Psql, Vec<pgrepl::Stmt>)> = envs
        .iter()
        .map(|env| (env.standby_sql("postgres"), listing(env)))
        .collect();
    let firsts = pgrepl::status_many(&parts).await;
    let mut nexts = Vec::new();
    for (env, first) in envs.iter().zip(firsts) {
        nexts.push(after_status(env, first).await);
    }
    let audits: Vec<(pgrepl::Psql, Vec<pgrepl::Stmt>)> = envs
        .iter()
        .zip(&nexts)
        .filter_map(|(env, n)| match n {
            Next::Audit(a) => Some((env.standby_sql("postgres"), a.stmts.clone())),
            Next::Done(_) => None,
        })
        .collect();
    let mut answers = pgrepl::batch_many(&audits).await.into_iter();
    let mut heres = Vec::new();
    for (env, next) in envs.iter().zip(nexts) {
        heres.push(match next {
            Next::Done(h) => h,
            Next::Audit(a) => {
                let got = answers.next().unwrap_or_else(|| Ok(Vec::new()));
                a.finish(env, got).await
            }
        });
    }
    // Both units of every instance in one question, where one supervisor answers for the
    // machine (systemd); `None` when it cannot or the question fails: each instance then
    // asks its own.
    let services: Vec<_> = envs
        .iter()
        .flat_map(|e| [e.odoo_service(), e.sync_service()])
        .collect();
    let units = match envs.first() {
        Some(env) if envs.iter().all(|e| e.here.machine_wide()) => {
            env.here.are_active(&services).await.ok()
        }
        _ => None,
    }
    .filter(|v| v.len() == services.len());
    heres
        .into_iter()
        .enumerate()
        .map(|(i, h)| {
            let u = units
                .as_ref()
                .and_then(|v| Some((*v.get(2 * i)?, *v.get(2 * i + 1)?)));
            (h, u)
        })
        .collect()
}

/// The statement that lists the cluster's databases, when the instance does not name them.
fn listing(env: &Env) -> Vec<pgrepl::Stmt> {
    if env.inst.databases.is_empty() {
        vec![pgrepl::Stmt::here(filesync::watch::DATABASES_SQL)]
    } else {
        Vec::new()
    }
}

/// What [`here`] does after the cluster's status: nothing more (it does not answer), or
/// audit its databases.
enum Next {
    Done(Here),
    Audit(Audit),
}

/// The audit of a cluster's Odoo databases, asked after its status.
struct Audit {
    status: pgrepl::Status,
    /// The databases, and whether they were listed (each then asked whether it is Odoo's)
    /// or configured; `Err` when the list failed.
    dbs: std::result::Result<(Vec<String>, bool), String>,
    stmts: Vec<pgrepl::Stmt>,
}

/// From the status and the database list to the audit's questions.
async fn after_status(
    env: &Env,
    first: pgrepl::Result<(pgrepl::Status, Vec<pgrepl::Result<Vec<pgrepl::Row>>>)>,
) -> Next {
    use filesync::audit::AUDIT_SQL;
    use filesync::watch::IS_ODOO_SQL;
    use pgrepl::Stmt;
    let (status, answers) = match first {
        Ok(v) => v,
        Err(e) => {
            // No answer: a cluster that does not run, or one that refuses us.
            if !env.standby.is_running().await.unwrap_or(false) {
                return Next::Done(Here {
                    status: None,
                    audits: None,
                });
            }
            return Next::Done(Here {
                audits: Some(Err(chain(&e))),
                status: Some(Err(e)),
            });
        }
    };
    // The configured databases, or the listed ones that are Odoo's (asked on each, as the
    // sync's discovery does, before their files).
    let dbs = match answers.into_iter().next() {
        None => Ok((env.inst.databases.clone(), false)),
        Some(rows) => rows
            .map(|rows| {
                let dbs = rows
                    .into_iter()
                    .filter_map(|r| r.into_iter().next().flatten())
                    .collect::<Vec<_>>();
                (dbs, true)
            })
            .map_err(|e| format!("listing the databases: {}", chain(&e))),
    };
    let mut stmts = Vec::new();
    if let Ok((dbs, listed)) = &dbs {
        for db in dbs {
            if *listed {
                stmts.push(Stmt::on(db, IS_ODOO_SQL));
                stmts.push(Stmt::here(AUDIT_SQL));
            } else {
                stmts.push(Stmt::on(db, AUDIT_SQL));
            }
        }
    }
    Next::Audit(Audit { status, dbs, stmts })
}

impl Audit {
    /// The reports from the answers to `stmts`.
    async fn finish(
        self,
        env: &Env,
        answers: pgrepl::Result<Vec<pgrepl::Result<Vec<pgrepl::Row>>>>,
    ) -> Here {
        let audits = async {
            let (dbs, listed) = self.dbs?;
            if dbs.is_empty() {
                return Ok(Vec::new());
            }
            let mut answers = answers
                .map_err(|e| format!("auditing the filestore: {}", chain(&e)))?
                .into_iter();
            let fs = env.layout.data_dir().join("filestore");
            let mut reports = Vec::new();
            for db in dbs {
                let failed = |e: &pgrepl::PgreplError| format!("auditing {db}: {}", chain(e));
                if listed {
                    match answers.next() {
                        Some(Ok(r)) if r == [vec![Some("t".to_owned())]] => {}
                        Some(Err(e)) => return Err(failed(&e)),
                        // Not an Odoo database: its audit failed as it should, skipped.
                        _ => {
                            answers.next();
                            continue;
                        }
                    }
                }
                let rows = match answers.next() {
                    Some(Ok(rows)) => rows,
                    Some(Err(e)) => return Err(failed(&e)),
                    None => return Err(format!("auditing {db}: psql gave no answer")),
                };
                let report = filesync::audit::audit_rows(&db, &fs, rows, false)
                    .await
                    .map_err(|e| format!("auditing {db}: {}", chain(&e)))?;
                reports.push(report);
            }
            Ok(reports)
        }
        .await;
        Here {
            status: Some(Ok(self.status)),
            audits: Some(audits),
        }
    }
}

/// The status of the instance of `env`, everything asked now. Never fails: what cannot be
/// read is a problem.
pub async fn status(env: &Env) -> InstanceStatus {
    status_with(env, false).await
}

/// [`status`]; with `use_seen`, the VPS's side is the sync service's last look when it is
/// fresh ([`crate::seen`]; `vps_seen_age_seconds` says how old), else asked now.
pub async fn status_with(env: &Env, use_seen: bool) -> InstanceStatus {
    status_from(env, use_seen, None).await
}

/// [`status_with`], this server's side already read when `pre` has it ([`here_all`]).
async fn status_from(env: &Env, use_seen: bool, pre: Option<Read>) -> InstanceStatus {
    let clock = Instant::now();
    let (here, units) = match pre {
        Some((here, units)) => (here, units),
        None => (here(env).await, None),
    };
    let st = SyncState::load(env);
    let name = env.name().to_owned();
    let mut problems = Vec::new();
    let mut db = DbHealth::default();
    let mut vps_role = None;
    let mut vps_odoo_unit = None;
    let label = env.standby.label();
    let role = match here.status {
        None => {
            problems.push(Problem::critical(
                "standby-down",
                format!("the cluster {label} here is not running"),
                format!(
                    "start it ({}), then `odoo-standby status {name}`",
                    start_hint(env)
                ),
            ));
            "down".to_owned()
        }
        Some(Ok(pgrepl::Status::Standby(s))) => {
            db.receiver = s.receiver_status.clone();
            if s.receiver_status.as_deref() != Some("streaming") {
                problems.push(Problem::critical(
                        "not-streaming",
                        format!(
                            "the standby does not stream (receiver: {})",
                            s.receiver_status.as_deref().unwrap_or("none")
                        ),
                        format!("read the cluster's log here ({}); `odoo-standby protect {name}` checks and repairs the setup", log_hint(env)),
                    ));
            }
            "standby".to_owned()
        }
        Some(Ok(pgrepl::Status::Primary(p))) => {
            // After a switchover the VPS's cluster follows this one through the failback
            // slot: production is protected, only not at home.
            let slot = env.failback_slot();
            let follows = p.slots.iter().any(|s| s.name == slot && s.active);
            if follows || crate::vps::switched_over(env) {
                problems.push(Problem::warning(
                        "switched-over",
                        format!(
                            "switched over: production runs here, {}{}",
                            if follows {
                                "the VPS's cluster follows it"
                            } else {
                                "the VPS's cluster does not follow it now (stopped for its work?): it catches up through its slot when it starts"
                            },
                            files_back(&st)
                        ),
                        format!("`odoo-standby failback {name}` when the work on the VPS is done"),
                    ));
            } else {
                problems.push(Problem::warning(
                    "failed-over",
                    "failed over: production runs here and is not protected",
                    format!("`odoo-standby failback {name}` when the VPS is back"),
                ));
            }
            "primary".to_owned()
        }
        Some(Err(e)) => {
            problems.push(Problem::critical(
                "standby-unreadable",
                format!("cannot read the cluster here: {}", chain(&e)),
                format!(
                    "check that {label} accepts local connections as {}",
                    env.cfg.backup.pg_os_user
                ),
            ));
            "down".to_owned()
        }
    };
    // A stopped standby still has its slot on the VPS, holding WAL: read it too.
    let mut vps_seen_age_seconds = None;
    if role == "standby" || role == "down" {
        // The sync's last look serves only a standby: it looks only while this is one.
        let seen = match (use_seen && role == "standby")
            .then(|| crate::seen::fresh(env))
            .flatten()
        {
            Some(seen) => {
                vps_seen_age_seconds = Some(crate::journal::now().saturating_sub(seen.at));
                seen
            }
            None => crate::seen::ask(env).await,
        };
        match seen.answer {
            VpsAnswer::Status {
                status: pgrepl::Status::Primary(p),
            } => {
                vps_role = Some("primary".to_owned());
                replication(env, &p, role == "standby", &mut db, &mut problems);
            }
            VpsAnswer::Status { .. } => {
                vps_role = Some("standby".to_owned());
                problems.push(Problem::critical(
                    "vps-not-primary",
                    "the VPS's PostgreSQL is not a primary: nothing takes writes, nothing replicates",
                    format!("look at the VPS's cluster; after a failback that stopped early, `odoo-standby resume {name}`"),
                ));
            }
            VpsAnswer::HostKeyChanged { error } => problems.push(Problem::critical(
                "vps-host-key-changed",
                format!("the VPS's SSH host key changed: {error}"),
                "verify the new key out of band (ssh-keygen -lf on the VPS) and replace its line in known_hosts",
            )),
            VpsAnswer::Failed { error } => problems.push(Problem::critical(
                "vps-unreachable",
                format!("cannot read the VPS's replication status: {error}"),
                format!("check SSH and PostgreSQL on the VPS ({}:{}); `odoo-standby check --online` names the failing part", env.vps_pg.0, env.vps_pg.1),
            )),
            VpsAnswer::TimedOut { seconds } => problems.push(Problem::critical(
                "vps-unreachable",
                format!(
                    "the VPS's PostgreSQL at {}:{} did not answer within {seconds} s",
                    env.vps_pg.0, env.vps_pg.1
                ),
                "check that the VPS is up and reachable from here",
            )),
        }
        if vps_role.is_some() {
            if let Some(up) = seen.odoo_active {
                vps_odoo_unit = Some(active(up));
                if !up {
                    problems.push(Problem::warning(
                        "vps-odoo-down",
                        format!(
                            "the VPS's Odoo unit {} does not run",
                            env.vps_odoo_service().unit
                        ),
                        format!(
                            "on the VPS: systemctl status {}",
                            env.vps_odoo_service().unit
                        ),
                    ));
                }
            }
        }
    }
    let mut files = FilesHealth::default();
    if let Some(audited) = here.audits {
        match audited {
            Ok(v) => {
                files.missing = v.iter().map(|r| r.missing.len()).sum();
                files.wrong_size = v.iter().map(|r| r.truncated.len()).sum();
                files.missing_by_db = v.into_iter().map(|r| (r.db, r.missing.len())).collect();
            }
            Err(e) => problems.push(Problem::warning(
                "files-unaudited",
                format!("cannot audit the filestore: {e}"),
                "check the databases here answer and the filestore folder is readable",
            )),
        }
    }
    if files.missing > 0 {
        let by_db: Vec<String> = files
            .missing_by_db
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(d, n)| format!("{n} in {d}"))
            .collect();
        problems.push(Problem::warning(
            "files-missing",
            format!(
                "{} referenced file(s) missing here ({})",
                files.missing,
                by_db.join(", ")
            ),
            if role == "standby" {
                format!(
                    "the sync fetches them; if the number does not fall, `journalctl -u {}`",
                    env.sync_service().unit
                )
            } else {
                "restore them from a file backup".to_owned()
            },
        ));
    }
    if files.wrong_size > 0 {
        problems.push(Problem::warning(
            "files-damaged",
            format!(
                "{} file(s) here have another size than their row records: damaged",
                files.wrong_size
            ),
            if role == "standby" {
                "the sync's next size check moves them aside and fetches them again".to_owned()
            } else {
                "restore them from a file backup".to_owned()
            },
        ));
    }
    files.last_sync = st.last_ok;
    files.last_sync_age_seconds = st.last_ok.map(|t| crate::journal::now().saturating_sub(t));
    files.last_error = st.last_error.clone();
    files.repaired = st.repaired;
    files.sizes_checked_at = st.sizes_checked_at;
    files.hash_round_at = st.hash_round_at;
    files.back_at = st.back_at;
    files.back_sent = st.back_sent;
    files.back_error = st.back_error.clone();
    if !st.damaged.is_empty() {
        problems.push(Problem::warning(
            "files-damaged-waiting",
            format!(
                "{} file(s) here found damaged by the copy-back, e.g. {}",
                st.damaged.len(),
                st.damaged[0]
            ),
            "the next sync pass fetches them again",
        ));
    }
    if !st.unrepaired.is_empty() {
        problems.push(Problem::critical(
            "files-unrepaired",
            format!(
                "{} file(s) here were damaged or vanished and the VPS does not have them either, e.g. {}",
                st.unrepaired.len(),
                st.unrepaired[0]
            ),
            format!(
                "restore them from a file backup (the damaged copies are in {})",
                env.layout.data_dir().join("filestore.damaged").display()
            ),
        ));
    }
    files.unrepaired = st.unrepaired;
    files.damaged_waiting = st.damaged;
    let sync_unit = env.sync_service().unit;
    let (odoo, syncs) = match units {
        Some(u) => u,
        None => match env
            .here
            .are_active(&[env.odoo_service(), env.sync_service()])
            .await
            .as_deref()
        {
            Ok([odoo, syncs]) => (*odoo, *syncs),
            _ => (false, false),
        },
    };
    if role == "standby" {
        if let Some(e) = &files.last_error {
            problems.push(Problem::warning(
                "sync-failing",
                format!("the last sync pass failed: {e}"),
                format!(
                    "journalctl -u {sync_unit}; `odoo-standby sync {name}` runs one pass by hand"
                ),
            ));
        }
        match files.last_sync_age_seconds {
            Some(age) => problems.extend(Problem::graded(
                "sync-stale",
                age as f64,
                limits::SYNC_AGE,
                format!("the last good sync pass was {} ago", seconds(age)),
                format!("journalctl -u {sync_unit}"),
            )),
            None => problems.push(Problem::warning(
                "sync-stale",
                "no sync pass has succeeded yet",
                format!(
                    "journalctl -u {sync_unit}; `odoo-standby sync {name}` runs one pass by hand"
                ),
            )),
        }
        if !syncs {
            problems.push(Problem::critical(
                "sync-stopped",
                format!("the sync service {sync_unit} does not run"),
                format!("systemctl start {sync_unit}; `odoo-standby protect {name}` checks and repairs the setup"),
            ));
        }
        if odoo {
            problems.push(Problem::critical(
                "odoo-runs-on-standby",
                format!(
                    "Odoo ({}) runs here while this is a standby",
                    env.odoo_service().unit
                ),
                format!("systemctl stop {}", env.odoo_service().unit),
            ));
        }
    }
    if role == "primary" {
        if !odoo {
            problems.push(Problem::critical(
                "odoo-down-here",
                format!(
                    "failed over, and Odoo ({}) does not run here",
                    env.odoo_service().unit
                ),
                format!(
                    "systemctl start {}; journalctl -u {}",
                    env.odoo_service().unit,
                    env.odoo_service().unit
                ),
            ));
        }
        // A VPS that comes back after a failover must not take writes: held down here, and
        // said first.
        if let Some(p) = crate::vps::guard_after_failover(env).await {
            vps_role = Some(
                if p.code == "vps-primary-after-failover" {
                    "primary"
                } else {
                    "stopped"
                }
                .to_owned(),
            );
            problems.push(p);
        }
    }
    let disk = disk(&[env.standby.data_dir(), env.layout.data_dir()]).await;
    if let Some(d) = &disk {
        if d.size_bytes > 0 {
            let used = 100.0 - d.free_bytes as f64 * 100.0 / d.size_bytes as f64;
            problems.extend(Problem::graded(
                "disk-low",
                used,
                limits::DISK_USED_PERCENT,
                format!(
                    "{} free of {} on the disk of {} ({used:.0}% used): WAL and files stop when it is full",
                    bytes(d.free_bytes as i64),
                    bytes(d.size_bytes as i64),
                    d.path
                ),
                "free space there or grow the filesystem",
            ));
        }
    }
    let interrupted = std::fs::read_to_string(env.state.current())
        .ok()
        .and_then(|t| serde_json::from_str::<crate::journal::Current>(&t).ok())
        .map(|c| c.operation);
    if let Some(op) = &interrupted {
        problems.push(Problem::critical(
            "interrupted",
            format!("an interrupted {op}"),
            format!("`odoo-standby resume {name}`, or `odoo-standby abort {name}` to set it aside"),
        ));
    }
    let last_drill = LastDrill::of(env);
    if last_drill.as_ref().is_some_and(|d| !d.ok) {
        problems.push(Problem::warning(
            "drill-failed",
            "the last drill failed: a failover now would likely fail the same way".to_string(),
            format!(
                "read {} and fix what it names, then `odoo-standby drill {name}`",
                env.state.dir().join("drill.txt").display()
            ),
        ));
    }
    // Worst first; the order found within one severity is kept (the stable sort).
    problems.sort_by_key(|p| std::cmp::Reverse(p.severity));
    InstanceStatus {
        name,
        healthy: problems.is_empty(),
        severity: problems.first().map(|p| p.severity),
        role,
        vps_role,
        problems,
        db,
        files,
        disk,
        odoo_unit: active(odoo),
        vps_odoo_unit,
        syncs: active(syncs),
        interrupted,
        last_drill,
        vps_seen_age_seconds,
        checked_in_seconds: clock.elapsed().as_secs_f64(),
    }
}

/// Lag and the slot, read on the VPS.
fn replication(
    env: &Env,
    p: &pgrepl::PrimaryStatus,
    runs_here: bool,
    db: &mut DbHealth,
    problems: &mut Vec<Problem>,
) {
    let name = env.name();
    if let Some(r) = p.replicas.iter().find(|r| r.application_name == name) {
        db.lag_bytes = r.lag_bytes;
        db.lag_seconds = r.lag_seconds;
    } else if runs_here {
        problems.push(Problem::critical(
            "standby-not-connected",
            "the VPS does not see the standby connected",
            format!(
                "read the cluster's log here; check pg_hba.conf on the VPS lets {} in from {}",
                crate::env::REPLICA_USER,
                env.cfg.backup.address
            ),
        ));
    }
    match p.slots.iter().find(|s| s.name == name) {
        Some(s) => {
            db.slot_retained_bytes = s.retained_bytes;
            db.slot_active = Some(s.active);
            db.slot_wal_status = s.wal_status.clone();
            match s.wal_status.as_deref() {
                Some("lost") => problems.push(Problem::critical(
                    "slot-lost",
                    format!(
                        "the slot {} on the VPS is LOST: the VPS removed WAL this standby still needed (it was stopped or behind for longer than max_slot_wal_keep_size allows); it can never catch up",
                        s.name
                    ),
                    format!("clone it again: odoo-standby protect {name} --reclone (its data directory is moved aside)"),
                )),
                Some("unreserved") => problems.push(Problem::critical(
                    "slot-unreserved",
                    format!("the slot {} on the VPS is about to be lost (wal_status unreserved)", s.name),
                    "the standby must catch up now: check that it runs and streams",
                )),
                _ => {}
            }
            if let Some(held) = s.retained_bytes {
                problems.extend(Problem::graded(
                    "slot-retained",
                    held as f64,
                    limits::SLOT_BYTES,
                    format!("the slot {} holds {} of WAL on the VPS", s.name, bytes(held)),
                    "the standby is behind or stopped: check that it runs and streams; the VPS's disk fills meanwhile",
                ));
            }
        }
        None => problems.push(Problem::critical(
            "slot-missing",
            format!("the VPS has no slot {name}"),
            format!("odoo-standby protect {name}"),
        )),
    }
    if let Some(l) = db.lag_bytes {
        problems.extend(Problem::graded(
            "lag",
            l as f64,
            limits::LAG_BYTES,
            format!("replication lag {}", bytes(l)),
            "check the network to the VPS and the standby's log",
        ));
    }
    if let Some(l) = db.lag_seconds {
        problems.extend(Problem::graded(
            "lag",
            l,
            limits::LAG_SECONDS,
            format!("replication lag {l:.0} s"),
            "check the network to the VPS and the standby's log",
        ));
    }
}
