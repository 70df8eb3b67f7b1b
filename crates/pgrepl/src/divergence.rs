//! Can an old primary follow the new one? Read from its control file (`pg_controldata`) and
//! the new primary's timeline history; answered in words.

use serde::Serialize;

use crate::cluster::Cluster;
use crate::error::{PgreplError, Result};
use crate::lsn::{parse_history, Lsn, TimelineFork};
use crate::sql::{query_value, Sql};

/// What `pg_controldata` says about a stopped (or crashed) cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ControlData {
    /// `shut down`, `shut down in recovery`, `in production` (crashed if not running)...
    pub state: String,
    /// Latest checkpoint location.
    pub checkpoint: Lsn,
    /// Latest checkpoint's timeline.
    pub timeline: u32,
    /// Whether `wal_log_hints` was on.
    pub wal_log_hints: bool,
    /// Whether data checksums are on.
    pub checksums: bool,
}

impl ControlData {
    /// Whether the cluster was shut down cleanly (as a primary or as a standby).
    pub fn clean(&self) -> bool {
        self.state == "shut down" || self.state == "shut down in recovery"
    }
}

/// Parses `pg_controldata` output (run with `LC_ALL=C`).
pub fn parse_controldata(text: &str) -> Result<ControlData> {
    let get = |key: &str| -> Result<String> {
        text.lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim() == key).then(|| v.trim().to_owned())
            })
            .ok_or_else(|| PgreplError::Parse {
                tool: "pg_controldata".into(),
                detail: format!("no {key:?} line"),
            })
    };
    let bad = |what: &str| PgreplError::Parse {
        tool: "pg_controldata".into(),
        detail: format!("bad {what}"),
    };
    Ok(ControlData {
        state: get("Database cluster state")?,
        checkpoint: get("Latest checkpoint location")?
            .parse()
            .map_err(|_| bad("checkpoint location"))?,
        timeline: get("Latest checkpoint's TimeLineID")?
            .parse()
            .map_err(|_| bad("timeline"))?,
        wal_log_hints: get("wal_log_hints setting")? == "on",
        checksums: get("Data page checksum version")? != "0",
    })
}

/// Runs `pg_controldata` on a cluster's data directory, as its OS user.
pub async fn controldata(cluster: &dyn Cluster) -> Result<ControlData> {
    let spec = host::CommandSpec::new(
        cluster
            .bindir()
            .join("pg_controldata")
            .display()
            .to_string(),
    )
    .arg("-D")
    .arg(cluster.data_dir().display().to_string())
    .env("LC_ALL", "C")
    .run_as(cluster.os_user())
    .asks();
    let out = cluster.host().run(&spec).await.map_err(|e| {
        PgreplError::host(
            format!("reading the control file of {}", cluster.label()),
            e,
        )
    })?;
    parse_controldata(&out.stdout_text())
}

/// The answer of the divergence check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", content = "reason", rename_all = "snake_case")]
pub enum Divergence {
    /// It can start as a standby of the new primary as it is.
    CanFollow(String),
    /// It wrote WAL the new primary does not have: pg_rewind first.
    NeedsRewind(String),
    /// Neither works: it needs a new base backup.
    NeedsClone(String),
}

/// Decides from the old primary's control data and the new primary's timeline, current
/// position and history.
pub fn diverge(
    old: &ControlData,
    new_timeline: u32,
    new_lsn: Lsn,
    history: &[TimelineFork],
) -> Divergence {
    let rewindable = old.wal_log_hints || old.checksums;
    let crashed = if old.clean() {
        String::new()
    } else {
        format!(
            " (it was not shut down cleanly, state {:?}: it is recovered first)",
            old.state
        )
    };
    if old.timeline == new_timeline {
        return if old.checkpoint <= new_lsn {
            Divergence::CanFollow(format!(
                "both are on timeline {new_timeline} and the old one stopped at {}, at or before the new one's {new_lsn}{crashed}",
                old.checkpoint
            ))
        } else {
            Divergence::NeedsClone(format!(
                "both are on timeline {new_timeline} but the old one is ahead ({} > {new_lsn}): it has WAL the other never got{crashed}",
                old.checkpoint
            ))
        };
    }
    let Some(fork) = history.iter().find(|f| f.parent == old.timeline) else {
        return Divergence::NeedsClone(format!(
            "the old one's timeline {} is not in the new primary's history (timeline {new_timeline}): they share no past pg_rewind can use",
            old.timeline
        ));
    };
    if old.checkpoint < fork.switchpoint {
        return Divergence::CanFollow(format!(
            "the old one stopped at {} on timeline {}, before the new primary forked off at {}{crashed}",
            old.checkpoint, old.timeline, fork.switchpoint
        ));
    }
    if !rewindable {
        return Divergence::NeedsClone(format!(
            "it wrote WAL up to {} after the fork at {} on timeline {}, and pg_rewind needs wal_log_hints=on or data checksums, which it has neither of",
            old.checkpoint, fork.switchpoint, old.timeline
        ));
    }
    Divergence::NeedsRewind(format!(
        "it wrote WAL up to {} after the new primary forked off at {} on timeline {}{crashed}",
        old.checkpoint, fork.switchpoint, old.timeline
    ))
}

/// The new primary's timeline and its history (a superuser connection).
pub async fn history(new_primary: &dyn Sql) -> Result<(u32, Vec<TimelineFork>)> {
    let tl: u32 = query_value(
        new_primary,
        "SELECT timeline_id FROM pg_control_checkpoint()",
    )
    .await?
    .and_then(|t| t.parse().ok())
    .unwrap_or(1);
    if tl <= 1 {
        return Ok((tl, Vec::new()));
    }
    let text = query_value(
        new_primary,
        &format!("SELECT pg_read_file('pg_wal/{tl:08X}.history')"),
    )
    .await?
    .unwrap_or_default();
    let h = parse_history(&text).map_err(|detail| PgreplError::Parse {
        tool: "timeline history".into(),
        detail,
    })?;
    Ok((tl, h))
}

/// Gathers what `diverge` needs: the old cluster's control data, and from the new primary
/// (a superuser connection) its timeline, position and history file.
pub async fn check(old: &dyn Cluster, new_primary: &dyn Sql) -> Result<(ControlData, Divergence)> {
    let cd = controldata(old).await?;
    let (tl, history) = history(new_primary).await?;
    let lsn: Lsn = query_value(
        new_primary,
        "SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END",
    )
    .await?
    .and_then(|l| l.parse().ok())
    .unwrap_or_default();
    let verdict = diverge(&cd, tl, lsn, &history);
    Ok((cd, verdict))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cd(state: &str, ckpt: &str, tl: u32, hints: bool) -> ControlData {
        ControlData {
            state: state.into(),
            checkpoint: ckpt.parse().unwrap(),
            timeline: tl,
            wal_log_hints: hints,
            checksums: false,
        }
    }

    #[test]
    fn controldata_parses() {
        let text = "pg_control version number:            1300\n\
                    Database cluster state:               shut down\n\
                    Latest checkpoint location:           0/3000028\n\
                    Latest checkpoint's TimeLineID:       2\n\
                    wal_log_hints setting:                on\n\
                    Data page checksum version:           0\n";
        let c = parse_controldata(text).unwrap();
        assert_eq!(c, cd("shut down", "0/3000028", 2, true));
        assert!(c.clean());
        assert!(parse_controldata("nothing").is_err());
    }

    #[test]
    fn verdicts() {
        let hist = vec![TimelineFork {
            parent: 1,
            switchpoint: "0/5000000".parse().unwrap(),
        }];
        let new_lsn: Lsn = "0/9000000".parse().unwrap();
        assert!(matches!(
            diverge(&cd("shut down", "0/4000000", 1, true), 2, new_lsn, &hist),
            Divergence::CanFollow(_)
        ));
        match diverge(
            &cd("in production", "0/6000000", 1, true),
            2,
            new_lsn,
            &hist,
        ) {
            Divergence::NeedsRewind(r) => {
                assert!(r.contains("0/5000000") && r.contains("not shut down cleanly"))
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            diverge(&cd("shut down", "0/6000000", 1, false), 2, new_lsn, &hist),
            Divergence::NeedsClone(_)
        ));
        assert!(matches!(
            diverge(&cd("shut down", "0/6000000", 3, true), 2, new_lsn, &hist),
            Divergence::NeedsClone(_)
        ));
        assert!(matches!(
            diverge(&cd("shut down", "0/1000000", 2, true), 2, new_lsn, &hist),
            Divergence::CanFollow(_)
        ));
        assert!(matches!(
            diverge(&cd("shut down", "0/A000000", 2, true), 2, new_lsn, &hist),
            Divergence::NeedsClone(_)
        ));
    }
}
