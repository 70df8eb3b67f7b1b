//! Promoting a standby (runbook 4.2): `pg_promote`, then proof that it accepts writes, then a
//! CHECKPOINT so that its control file shows the new timeline (pg_rewind reads the timeline
//! from there; without it a later rewind believes nothing diverged).

use std::time::Duration;

use serde::Serialize;

use crate::error::{PgreplError, Result};
use crate::sql::{execute, query_value, Sql};

/// What `promote` did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum PromoteOutcome {
    /// It was a primary already (writable): nothing changed.
    AlreadyPrimary,
    /// Promoted, verified writable, checkpointed; now on this timeline.
    Promoted {
        /// The new timeline.
        timeline: u32,
    },
}

impl std::fmt::Display for PromoteOutcome {
    /// In an operator's words.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::AlreadyPrimary => f.write_str("it was a primary already: nothing changed"),
            Self::Promoted { timeline } => {
                write!(
                    f,
                    "promoted: it takes writes, checkpointed, timeline {timeline}"
                )
            }
        }
    }
}

/// Promotes the server behind `db` (a superuser connection) and waits up to `limit`.
pub async fn promote(db: &dyn Sql, limit: Duration) -> Result<PromoteOutcome> {
    let in_recovery = query_value(db, "SELECT pg_is_in_recovery()").await?;
    if in_recovery.as_deref() == Some("f") {
        // Still make sure the control file carries the current timeline.
        execute(db, "CHECKPOINT").await?;
        return Ok(PromoteOutcome::AlreadyPrimary);
    }
    let secs = limit.as_secs().clamp(1, 3600);
    let done = query_value(db, &format!("SELECT pg_promote(true, {secs})")).await?;
    if done.as_deref() != Some("t") {
        return Err(PgreplError::Timeout {
            what: format!("promotion of {}", db.server()),
            seconds: secs,
            detail: "pg_promote returned false: look at the server log".into(),
        });
    }
    // Writable for real: a transaction id can only be assigned on a primary.
    query_value(db, "SELECT txid_current()")
        .await
        .map_err(|e| {
            PgreplError::State(format!(
                "{} was promoted but refuses writes: {e}",
                db.server()
            ))
        })?;
    execute(db, "CHECKPOINT").await?;
    let timeline = query_value(db, "SELECT timeline_id FROM pg_control_checkpoint()")
        .await?
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    Ok(PromoteOutcome::Promoted { timeline })
}
