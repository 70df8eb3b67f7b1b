//! What the sync service last saw of the VPS: `<state>/NAME/sync/vps.json`, rewritten (a
//! temporary file, then a rename) each time the sync looks, every [`LOOK_EVERY`] while this
//! server is a standby.
//!
//! Why: `status` of a whole fleet spent half a second per instance on the SSH login and the
//! VPS's answers alone (0.30 s for an `ssh true` to the sandbox's sshd), which made fifty
//! instances take minutes on two cores; the sync services look at their VPS anyway (for the
//! metrics) over connections they keep. So `status` of all instances takes the VPS's side
//! from here when it is younger than [`FRESH`] and says how old it is; `status NAME` and
//! `status --live` ask every VPS now. Everything about this server (its cluster, its units,
//! its files, its disk) is always read live.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::env::Env;

/// How often the sync service looks at the VPS.
pub const LOOK_EVERY: Duration = Duration::from_secs(30);

/// How old a look may be for `status` to use it instead of asking the VPS.
pub const FRESH: Duration = Duration::from_secs(2 * LOOK_EVERY.as_secs());

/// What the VPS answered, asked now or seen by the sync.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "answer", rename_all = "kebab-case")]
pub enum VpsAnswer {
    /// Its replication status.
    Status {
        /// What `pgrepl::status` read there.
        status: pgrepl::Status,
    },
    /// The SSH host key changed (with the error's text).
    HostKeyChanged {
        /// The error, with its causes.
        error: String,
    },
    /// It could not be read (with the error's text).
    Failed {
        /// The error, with its causes.
        error: String,
    },
    /// It did not answer within `seconds`.
    TimedOut {
        /// The limit.
        seconds: u64,
    },
}

/// One look at the VPS.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct VpsSeen {
    /// When (seconds since the epoch).
    pub at: u64,
    /// Its replication.
    pub answer: VpsAnswer,
    /// Whether its Odoo unit runs, when that was answered.
    pub odoo_active: Option<bool>,
}

/// How long `ask` may take for the VPS's replication, and for its Odoo unit.
const ASK_WITHIN: Duration = Duration::from_secs(20);

/// Asks the VPS now: its replication status and whether its Odoo runs, both at once, each
/// within 20 s (psql's own limit is 15 s: the SSH connection is freed when it runs out).
pub async fn ask(env: &Env) -> VpsSeen {
    let vps = env
        .vps_psql("postgres")
        .with_timeout(Duration::from_secs(15));
    let repl = tokio::time::timeout(ASK_WITHIN, pgrepl::status(&vps));
    let vps_odoo = env.vps_odoo_service();
    let unit = tokio::time::timeout(ASK_WITHIN, env.there.is_active(&vps_odoo));
    let (repl, unit) = tokio::join!(repl, unit);
    let answer = match repl {
        Ok(Ok(status)) => VpsAnswer::Status { status },
        Ok(Err(e)) if crate::status::host_key_changed(&e) => VpsAnswer::HostKeyChanged {
            error: crate::error::chain(&e),
        },
        Ok(Err(e)) => VpsAnswer::Failed {
            error: crate::error::chain(&e),
        },
        Err(_) => VpsAnswer::TimedOut {
            seconds: ASK_WITHIN.as_secs(),
        },
    };
    VpsSeen {
        at: crate::journal::now(),
        answer,
        odoo_active: unit.ok().and_then(|r| r.ok()),
    }
}

/// Keeps `seen` for `status` (errors are the caller's to log: the sync goes on).
pub fn save(env: &Env, seen: &VpsSeen) -> std::io::Result<()> {
    let path = env.state.vps_seen();
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_string(seen).map_err(std::io::Error::other)?;
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p)?;
    }
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, &path)
}

/// The sync's last look, when it is younger than [`FRESH`] (and not from the future: a
/// clock set back makes it stale).
pub fn fresh(env: &Env) -> Option<VpsSeen> {
    let text = std::fs::read_to_string(env.state.vps_seen()).ok()?;
    let seen: VpsSeen = serde_json::from_str(&text).ok()?;
    let now = crate::journal::now();
    (seen.at <= now && now - seen.at <= FRESH.as_secs()).then_some(seen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_look_reads_back_as_it_was_written() {
        let lsn = Some("0/3000060".parse().unwrap());
        let status = pgrepl::Status::Primary(pgrepl::PrimaryStatus {
            current_lsn: lsn,
            timeline: Some(1),
            replicas: vec![pgrepl::Replica {
                application_name: "vps1".into(),
                client_addr: Some("127.0.0.1".into()),
                state: "streaming".into(),
                sync_state: "async".into(),
                sent_lsn: lsn,
                write_lsn: lsn,
                flush_lsn: lsn,
                replay_lsn: None,
                lag_bytes: Some(0),
                lag_seconds: Some(0.25),
            }],
            slots: vec![pgrepl::Slot {
                name: "vps1".into(),
                slot_type: "physical".into(),
                active: true,
                restart_lsn: lsn,
                retained_bytes: Some(1024),
                wal_status: Some("reserved".into()),
                safe_wal_size: None,
            }],
        });
        for answer in [
            VpsAnswer::Status { status },
            VpsAnswer::Failed {
                error: "ssh: connection refused".into(),
            },
            VpsAnswer::TimedOut { seconds: 20 },
        ] {
            let seen = VpsSeen {
                at: 1_800_000_000,
                answer,
                odoo_active: Some(true),
            };
            let text = serde_json::to_string(&seen).unwrap();
            assert_eq!(
                serde_json::from_str::<VpsSeen>(&text).unwrap(),
                seen,
                "{text}"
            );
        }
    }
}
