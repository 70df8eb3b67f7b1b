//! Replication status as typed, serializable values (runbook 2.5 and 5.4: what
//! `pg_stat_replication`, `pg_replication_slots` and `pg_stat_wal_receiver` say).

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::lsn::Lsn;
use crate::sql::{Psql, Row, Sql, Stmt};

/// One standby connected to a primary.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Replica {
    /// `application_name` (our standbys use their slot name).
    pub application_name: String,
    /// Where it connects from.
    pub client_addr: Option<String>,
    /// `streaming`, `catchup`, `startup`...
    pub state: String,
    /// `async`, `sync`, `potential`, `quorum`.
    pub sync_state: String,
    /// Last WAL position sent.
    pub sent_lsn: Option<Lsn>,
    /// Written on the standby.
    pub write_lsn: Option<Lsn>,
    /// Flushed on the standby.
    pub flush_lsn: Option<Lsn>,
    /// Replayed on the standby.
    pub replay_lsn: Option<Lsn>,
    /// Bytes between the primary's current position and the standby's replay position.
    pub lag_bytes: Option<i64>,
    /// Seconds of replay lag as the primary measures it (`replay_lag`), when known.
    pub lag_seconds: Option<f64>,
}

/// One replication slot.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Slot {
    /// Slot name.
    pub name: String,
    /// `physical` or `logical`.
    pub slot_type: String,
    /// Whether a standby uses it right now.
    pub active: bool,
    /// Oldest WAL it keeps.
    pub restart_lsn: Option<Lsn>,
    /// WAL bytes it keeps on disk.
    pub retained_bytes: Option<i64>,
    /// `reserved`, `extended`, `unreserved` or `lost`.
    pub wal_status: Option<String>,
    /// Bytes that can still be written before the slot is lost (with `max_slot_wal_keep_size`).
    pub safe_wal_size: Option<i64>,
}

/// A standby's view: its WAL receiver and how far it is.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StandbyStatus {
    /// `streaming`, `starting`, ... or `None` when no receiver runs.
    pub receiver_status: Option<String>,
    /// `host=... port=...` it streams from (no password: the server never shows one).
    pub sender: Option<String>,
    /// Slot it streams through.
    pub slot_name: Option<String>,
    /// Last WAL position received.
    pub receive_lsn: Option<Lsn>,
    /// Last WAL position replayed.
    pub replay_lsn: Option<Lsn>,
    /// Seconds since the last replayed transaction was committed on the primary.
    pub replay_delay_seconds: Option<f64>,
    /// Timeline it is on.
    pub timeline: Option<u32>,
}

/// A primary's view: its standbys and slots.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PrimaryStatus {
    /// Current WAL write position.
    pub current_lsn: Option<Lsn>,
    /// Timeline it is on.
    pub timeline: Option<u32>,
    /// Connected standbys.
    pub replicas: Vec<Replica>,
    /// Replication slots.
    pub slots: Vec<Slot>,
}

/// What a server is and how its replication looks.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "role", rename_all = "lowercase")]
pub enum Status {
    /// Accepts writes.
    Primary(PrimaryStatus),
    /// In recovery.
    Standby(StandbyStatus),
}

impl Status {
    /// A primary whose standbys all stream and whose slots are all in use, or a standby whose
    /// WAL receiver streams.
    pub fn is_healthy(&self) -> bool {
        match self {
            Self::Primary(p) => {
                p.replicas.iter().all(|r| r.state == "streaming")
                    && p.slots.iter().all(|s| s.active)
            }
            Self::Standby(s) => s.receiver_status.as_deref() == Some("streaming"),
        }
    }
}

impl std::fmt::Display for Status {
    /// In an operator's words: one line for a standby; for a primary one line, then one per
    /// standby and per slot.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Primary(p) => {
                write!(
                    f,
                    "primary on timeline {}, at {}",
                    p.timeline
                        .map(|t| t.to_string())
                        .unwrap_or_else(|| "?".into()),
                    p.current_lsn
                        .map(|l| l.to_string())
                        .unwrap_or_else(|| "?".into())
                )?;
                for r in &p.replicas {
                    write!(
                        f,
                        "\n  standby {} from {}: {} ({}), lag {} bytes, {:.1} s",
                        r.application_name,
                        r.client_addr.clone().unwrap_or_default(),
                        r.state,
                        r.sync_state,
                        r.lag_bytes.unwrap_or(0),
                        r.lag_seconds.unwrap_or(0.0)
                    )?;
                }
                for s in &p.slots {
                    write!(
                        f,
                        "\n  slot {}: {}, retains {} MB, wal_status {}",
                        s.name,
                        if s.active { "active" } else { "INACTIVE" },
                        s.retained_bytes.unwrap_or(0) / (1024 * 1024),
                        s.wal_status.clone().unwrap_or_default()
                    )?;
                }
                Ok(())
            }
            Self::Standby(s) => write!(
                f,
                "standby, receiver {}, from {}, slot {}, replayed {}, {:.1} s behind",
                s.receiver_status
                    .clone()
                    .unwrap_or_else(|| "NOT RUNNING".into()),
                s.sender.clone().unwrap_or_default(),
                s.slot_name.clone().unwrap_or_default(),
                s.replay_lsn.map(|l| l.to_string()).unwrap_or_default(),
                s.replay_delay_seconds.unwrap_or(0.0)
            ),
        }
    }
}

fn text(r: &Row, i: usize) -> Option<String> {
    r.get(i).cloned().flatten()
}
fn lsn(r: &Row, i: usize) -> Option<Lsn> {
    text(r, i).and_then(|s| s.parse().ok())
}
fn int(r: &Row, i: usize) -> Option<i64> {
    text(r, i)
        .and_then(|s| s.parse::<f64>().ok())
        .map(|f| f as i64)
}
fn float(r: &Row, i: usize) -> Option<f64> {
    text(r, i).and_then(|s| s.parse().ok())
}

/// Reads the status of the server behind `db` (any role that may read the views; a
/// superuser or `pg_monitor` member sees every column).
pub async fn status(db: &dyn Sql) -> Result<Status> {
    let head = db.query(HEAD_SQL).await?;
    if in_recovery(&head) {
        return Ok(standby_from(&db.query(RECEIVER_SQL).await?));
    }
    let replicas = db.query(REPLICAS_SQL).await?;
    let slots = db.query(SLOTS_SQL).await?;
    Ok(primary_from(&head, &replicas, &slots))
}

/// [`status`] of a cluster reached by psql, its questions asked in one psql process with
/// `more` after them (one process for all of a cluster's questions: see [`Psql::batch`]).
/// Returns the status and the answers to `more`, in order; `Err` when the server cannot be
/// reached or a status question fails.
pub async fn status_batch(db: &Psql, more: &[Stmt]) -> Result<(Status, Vec<Result<Vec<Row>>>)> {
    status_from(db.batch(&with_status(more)).await?)
}

/// [`status_batch`] of several clusters, each with its own questions after its status, in
/// as few psql processes as [`crate::batch_many`] can (one for clusters reached alike): a
/// fleet's standbys on one server. One answer per cluster, in order.
pub async fn status_many(
    clusters: &[(Psql, Vec<Stmt>)],
) -> Vec<Result<(Status, Vec<Result<Vec<Row>>>)>> {
    let parts: Vec<(Psql, Vec<Stmt>)> = clusters
        .iter()
        .map(|(db, more)| (db.clone(), with_status(more)))
        .collect();
    crate::sql::batch_many(&parts)
        .await
        .into_iter()
        .map(|answers| status_from(answers?))
        .collect()
}

/// The status questions, then `more`.
fn with_status(more: &[Stmt]) -> Vec<Stmt> {
    let mut stmts: Vec<Stmt> = [HEAD_SQL, RECEIVER_SQL, REPLICAS_SQL, SLOTS_SQL]
        .into_iter()
        .map(Stmt::here)
        .collect();
    stmts.extend_from_slice(more);
    stmts
}

/// The status from the answers to [`with_status`], and the answers after them.
fn status_from(answers: Vec<Result<Vec<Row>>>) -> Result<(Status, Vec<Result<Vec<Row>>>)> {
    let mut answers = answers.into_iter();
    let mut next = || answers.next().unwrap_or_else(|| Ok(Vec::new()));
    let (head, receiver, replicas, slots) = (next()?, next(), next(), next());
    // Only the answers a role needs decide: a standby's are the receiver's.
    let status = if in_recovery(&head) {
        standby_from(&receiver?)
    } else {
        primary_from(&head, &replicas?, &slots?)
    };
    Ok((status, answers.collect()))
}

const HEAD_SQL: &str = "SELECT pg_is_in_recovery(), \
     CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn() END, \
     (SELECT timeline_id FROM pg_control_checkpoint())";

/// The WAL receiver (a row of NULLs on a primary, which has none).
const RECEIVER_SQL: &str = "SELECT r.status, r.sender_host || ':' || r.sender_port, r.slot_name, \
     pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn(), \
     extract(epoch FROM now() - pg_last_xact_replay_timestamp()), \
     coalesce(r.received_tli, (SELECT timeline_id FROM pg_control_checkpoint())) \
     FROM (SELECT 1) one LEFT JOIN pg_stat_wal_receiver r ON true";

/// The standbys streaming from it (also asked of a standby in a batch: no WAL position
/// function that fails during recovery).
const REPLICAS_SQL: &str = "SELECT application_name, client_addr::text, state, sync_state, sent_lsn, write_lsn, \
     flush_lsn, replay_lsn, \
     CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn) END, \
     extract(epoch FROM replay_lag) \
     FROM pg_stat_replication ORDER BY application_name";

const SLOTS_SQL: &str = "SELECT slot_name, slot_type, active, restart_lsn, \
     pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() \
     ELSE pg_current_wal_lsn() END, restart_lsn), wal_status, safe_wal_size \
     FROM pg_replication_slots ORDER BY slot_name";

fn in_recovery(head: &[Row]) -> bool {
    head.first()
        .and_then(|h| text(h, 0))
        .is_some_and(|t| t == "t")
}

fn standby_from(rows: &[Row]) -> Status {
    let none = Vec::new();
    let r = rows.first().unwrap_or(&none);
    Status::Standby(StandbyStatus {
        receiver_status: text(r, 0),
        sender: text(r, 1),
        slot_name: text(r, 2),
        receive_lsn: lsn(r, 3),
        replay_lsn: lsn(r, 4),
        replay_delay_seconds: float(r, 5),
        timeline: int(r, 6).and_then(|t| u32::try_from(t).ok()),
    })
}

fn primary_from(head: &[Row], replicas: &[Row], slots: &[Row]) -> Status {
    let none = Vec::new();
    let head = head.first().unwrap_or(&none);
    Status::Primary(PrimaryStatus {
        current_lsn: lsn(head, 1),
        timeline: int(head, 2).and_then(|t| u32::try_from(t).ok()),
        replicas: replicas
            .iter()
            .map(|r| Replica {
                application_name: text(r, 0).unwrap_or_default(),
                client_addr: text(r, 1),
                state: text(r, 2).unwrap_or_default(),
                sync_state: text(r, 3).unwrap_or_default(),
                sent_lsn: lsn(r, 4),
                write_lsn: lsn(r, 5),
                flush_lsn: lsn(r, 6),
                replay_lsn: lsn(r, 7),
                lag_bytes: int(r, 8),
                lag_seconds: Some(float(r, 9).unwrap_or(0.0)),
            })
            .collect(),
        slots: slots.iter().map(slot_from).collect(),
    })
}

fn slot_from(r: &Row) -> Slot {
    Slot {
        name: text(r, 0).unwrap_or_default(),
        slot_type: text(r, 1).unwrap_or_default(),
        active: text(r, 2).as_deref() == Some("t"),
        restart_lsn: lsn(r, 3),
        retained_bytes: int(r, 4),
        wal_status: text(r, 5),
        safe_wal_size: int(r, 6),
    }
}

/// Every replication slot of the server, with the WAL it retains.
pub async fn list_slots(db: &dyn Sql) -> Result<Vec<Slot>> {
    Ok(db.query(SLOTS_SQL).await?.iter().map(slot_from).collect())
}
