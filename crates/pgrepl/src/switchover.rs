//! A planned switchover without loss: the old primary is stopped cleanly, its shutdown
//! checkpoint (from `pg_controldata`) is compared with what the standby replayed, and only
//! when the standby has replayed past it may the standby be promoted; the old primary then
//! follows the new one as it is, without pg_rewind, because it stopped exactly at the switch
//! point.
//!
//! PostgreSQL makes this possible: a clean (smart or fast) shutdown of a primary waits until
//! its WAL senders have sent everything up to and including the shutdown checkpoint record.
//! `pg_last_wal_replay_lsn()` is the end of the last record the standby replayed, so it is
//! greater than the checkpoint's location exactly when that record was replayed.
//!
//! ```no_run
//! # async fn demo(old: &dyn pgrepl::Cluster, old_db: &dyn pgrepl::Sql, standby: &dyn pgrepl::Sql)
//! # -> pgrepl::Result<()> {
//! pgrepl::switchover::stop_clean(old, old_db).await?;
//! let p = pgrepl::switchover::switch_point(old, standby, std::time::Duration::from_secs(10)).await?;
//! println!("{p}");
//! if !p.reached() {
//!     old.start().await?; // back as it was: nothing promoted
//! }
//! # Ok(()) }
//! ```

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::clone::{follow, is_streaming_from, Upstream};
use crate::cluster::{Cluster, StopMode};
use crate::divergence::controldata;
use crate::error::{PgreplError, Result};
use crate::lsn::Lsn;
use crate::slot::create_slot;
use crate::sql::{execute, query_lsn, Sql};

/// The old primary's shutdown checkpoint and how far the standby got.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SwitchPoint {
    /// Where the old primary's shutdown checkpoint record starts (`pg_controldata`'s latest
    /// checkpoint location).
    pub shutdown_checkpoint: Lsn,
    /// Its timeline.
    pub timeline: u32,
    /// `pg_last_wal_receive_lsn()` on the standby.
    pub received: Option<Lsn>,
    /// `pg_last_wal_replay_lsn()` on the standby: the end of the last record it replayed.
    pub replayed: Option<Lsn>,
}

impl SwitchPoint {
    /// Whether the standby replayed the shutdown checkpoint record itself: everything the
    /// old primary ever wrote is in the standby.
    pub fn reached(&self) -> bool {
        self.replayed.is_some_and(|r| r > self.shutdown_checkpoint)
    }
}

impl std::fmt::Display for SwitchPoint {
    /// In an operator's words, with the three positions.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |l: &Option<Lsn>| l.map(|l| l.to_string()).unwrap_or_else(|| "nothing".into());
        write!(
            f,
            "shutdown checkpoint {} (timeline {}); the standby received up to {}, replayed up to {}: {}",
            self.shutdown_checkpoint,
            self.timeline,
            show(&self.received),
            show(&self.replayed),
            if self.reached() {
                "it has everything, nothing is lost"
            } else {
                "it is BEHIND"
            }
        )
    }
}

/// Stops the old primary cleanly: a CHECKPOINT first (so the shutdown checkpoint is quick),
/// then a fast shutdown. Nothing when it does not run. Refuses when it was not shut down
/// cleanly as a primary (a crash, or a standby): there would be no switch point to check.
pub async fn stop_clean(old: &dyn Cluster, old_db: &dyn Sql) -> Result<()> {
    if old.is_running().await? {
        execute(old_db, "CHECKPOINT").await?;
        old.stop(StopMode::Fast).await?;
    }
    shut_down(old).await.map(drop)
}

/// The old primary's control data, when it was shut down cleanly as a primary; else why
/// there is no switch point.
async fn shut_down(old: &dyn Cluster) -> Result<crate::divergence::ControlData> {
    let cd = controldata(old).await?;
    if cd.state != "shut down" {
        return Err(PgreplError::State(format!(
            "{} is {:?}, not \"shut down\" as a primary: there is no switch point to check. Start it again and look at its log",
            old.label(),
            cd.state
        )));
    }
    Ok(cd)
}

/// Reads the old primary's shutdown checkpoint and waits up to `limit` until the standby
/// has replayed past it. Returns what it saw either way ([`SwitchPoint::reached`] tells).
pub async fn switch_point(
    old: &dyn Cluster,
    standby: &dyn Sql,
    limit: Duration,
) -> Result<SwitchPoint> {
    let cd = shut_down(old).await?;
    let start = Instant::now();
    loop {
        let p = SwitchPoint {
            shutdown_checkpoint: cd.checkpoint,
            timeline: cd.timeline,
            received: query_lsn(standby, "SELECT pg_last_wal_receive_lsn()").await?,
            replayed: query_lsn(standby, "SELECT pg_last_wal_replay_lsn()").await?,
        };
        if p.reached() || start.elapsed() >= limit {
            return Ok(p);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Makes the old primary, stopped at the switch point, a standby of the new one as it is:
/// a slot on the new primary, the standby settings, started, streaming. No pg_rewind: it has
/// nothing the new primary lacks. `Ok(false)` when it already streamed from `up`.
pub async fn follow_new_primary(
    old: &dyn Cluster,
    new_primary: &dyn Sql,
    up: &Upstream,
) -> Result<bool> {
    if is_streaming_from(old, up).await? {
        return Ok(false);
    }
    if old.is_running().await? {
        return Err(PgreplError::State(format!(
            "{} runs and does not stream from {}:{}: it must be stopped at the switch point to follow as it is",
            old.label(),
            up.host,
            up.port
        )));
    }
    let cd = controldata(old).await?;
    if !cd.clean() {
        return Err(PgreplError::State(format!(
            "{} was not shut down cleanly ({:?}): it cannot follow without pg_rewind",
            old.label(),
            cd.state
        )));
    }
    create_slot(new_primary, &up.slot).await?;
    follow(old, up).await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(replayed: Option<&str>) -> SwitchPoint {
        SwitchPoint {
            shutdown_checkpoint: "0/5000028".parse().unwrap(),
            timeline: 1,
            received: "0/50000A0".parse().ok(),
            replayed: replayed.map(|r| r.parse().unwrap()),
        }
    }

    #[test]
    fn reached_only_past_the_shutdown_checkpoint_record() {
        // The end of the checkpoint record replayed: everything is there.
        assert!(point(Some("0/50000A0")).reached());
        // Replay stopped at the start of the record (or before): it was not replayed.
        assert!(!point(Some("0/5000028")).reached());
        assert!(!point(Some("0/4FFFFF0")).reached());
        assert!(!point(None).reached());
        let shown = point(Some("0/4FFFFF0")).to_string();
        assert!(
            shown.contains("0/5000028") && shown.contains("0/4FFFFF0") && shown.contains("BEHIND"),
            "{shown}"
        );
    }
}
