//! What the VPS is right now, as far as this server can tell over SSH: the fence's question.

use std::time::Duration;

use host::CommandSpec;
use serde::{Deserialize, Serialize};

use crate::env::Env;
use crate::error::{FailoverError, Result};
use crate::steps::is_primary;

/// What the VPS is, as far as this server can tell right now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VpsState {
    /// SSH does not answer: the VPS is down or cut off; nothing here can fence it.
    Unreachable(String),
    /// Its cluster runs as a primary: it may take writes.
    Primary,
    /// Its cluster runs as a standby (it takes no writes).
    Standby,
    /// Its cluster does not run.
    Stopped,
    /// Its cluster runs but does not answer (frozen, overloaded): not fenced.
    NotAnswering(String),
}

impl std::fmt::Display for VpsState {
    /// In an operator's words: "the VPS's cluster ..." + this.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unreachable(why) => write!(f, "cannot be reached ({why})"),
            Self::Primary => f.write_str("is a primary"),
            Self::Standby => f.write_str("is a standby"),
            Self::Stopped => f.write_str("does not run"),
            Self::NotAnswering(why) => write!(f, "runs but does not answer ({why})"),
        }
    }
}

/// How long a running cluster has to answer `SELECT pg_is_in_recovery()`: one that runs and
/// does not (frozen with SIGSTOP, swapping) is not fenced, it may answer again any moment.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// Looks at the VPS over SSH: is it reachable, does its cluster run, and as what.
pub async fn vps_state(env: &Env) -> VpsState {
    vps_state_within(env, Duration::from_secs(15)).await
}

/// [`vps_state`], with `limit` for SSH to answer and for the cluster's state.
pub async fn vps_state_within(env: &Env, limit: Duration) -> VpsState {
    // Every limit is the command's own (the host ends it and frees the SSH connection), with
    // an outer one a little longer as a last resort: a dropped call would keep the
    // connection busy for whoever comes next.
    let outer = limit + Duration::from_secs(5);
    let probe = CommandSpec::new("true").asks().timeout(limit);
    match tokio::time::timeout(outer, env.vps.run(&probe)).await {
        Err(_) => {
            return VpsState::Unreachable(format!(
                "SSH did not answer within {} s",
                limit.as_secs()
            ))
        }
        Ok(Err(e)) => return VpsState::Unreachable(crate::error::chain(&e)),
        Ok(Ok(_)) => {}
    }
    match tokio::time::timeout(outer, env.vps_cluster.is_running()).await {
        Ok(Ok(false)) => return VpsState::Stopped,
        Ok(Ok(true)) => {}
        Ok(Err(e)) => return VpsState::NotAnswering(crate::error::chain(&e)),
        Err(_) => {
            return VpsState::NotAnswering(format!(
                "its cluster's state did not come in {} s",
                limit.as_secs()
            ))
        }
    }
    let psql = env.vps_psql("postgres").with_timeout(ANSWER_WITHIN);
    match tokio::time::timeout(outer, is_primary(&psql)).await {
        Ok(Ok(true)) => VpsState::Primary,
        Ok(Ok(false)) => VpsState::Standby,
        Ok(Err(e)) => VpsState::NotAnswering(crate::error::chain(&e)),
        Err(_) => VpsState::NotAnswering(format!(
            "it runs but did not answer a query within {} s",
            ANSWER_WITHIN.as_secs()
        )),
    }
}

/// Whether the VPS's PostgreSQL can be reached and is a primary (accepts writes).
pub async fn vps_takes_writes(env: &Env) -> bool {
    vps_state(env).await == VpsState::Primary
}

/// What the fence did to the VPS's cluster, kept in the state folder's `fence.json` from the
/// first time it held it down until failback releases it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FenceRecord {
    /// When it first held it down (seconds since the epoch).
    pub at: u64,
    /// `start.conf`'s mode before (`auto`), put back by failback.
    pub start_was: Option<String>,
}

impl FenceRecord {
    /// The record, when the VPS is held down by us.
    pub fn load(env: &Env) -> Option<Self> {
        std::fs::read_to_string(env.state.fence())
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
    }
}

/// Holds the VPS down: its Odoo stopped and disabled (its unit may pull the cluster in at
/// boot, as `Wants=postgresql@15-main` does), its cluster held (`pgrepl::fence`: stopped,
/// `standby.signal`, `start.conf` manual), so that neither a reboot nor a restart makes it a
/// primary, and if anyone starts it, it is read-only. The first call records what
/// `start.conf` said; later calls keep that record. Failback undoes both.
pub async fn hold_vps(env: &Env) -> Result<pgrepl::fence::HeldDown> {
    env.there.stop(&env.vps_odoo_service()).await?;
    let held = pgrepl::fence::hold_down_within(
        env.vps_cluster.as_ref(),
        &format!(
            "held down after the failover of {} to {}; odoo-standby failback sets it back",
            env.name(),
            env.cfg.backup.address
        ),
        Duration::from_secs(120),
    )
    .await
    .map_err(|e| FailoverError::failed("holding the VPS's cluster down", e))?;
    if FenceRecord::load(env).is_none() {
        let rec = FenceRecord {
            at: crate::journal::now(),
            start_was: held.start_was.clone(),
        };
        let path = env.state.fence();
        let text = serde_json::to_string_pretty(&rec)
            .map_err(|e| FailoverError::failed("the fence record", e))?;
        let written =
            std::fs::create_dir_all(env.state.dir()).and_then(|()| std::fs::write(&path, text));
        match written {
            Ok(()) => {}
            // The sync service (os_user) may not write root's state folder: the VPS is held
            // down all the same; failback sets start.conf back to auto without the record.
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => tracing::warn!(
                "{}: the VPS is held down; its fence record {} cannot be written here ({e})",
                env.name(),
                path.display()
            ),
            Err(e) => {
                return Err(FailoverError::failed(
                    format!("writing {}", path.display()),
                    e,
                ))
            }
        }
    }
    Ok(held)
}

/// What holding the VPS's cluster down runs.
pub fn hold_runs(env: &Env) -> Vec<crate::steps::Run> {
    use crate::steps::Run;
    let c = env.vps_cluster.as_ref();
    let mut v = Run::cmds(
        &env.there.stop_specs(&env.vps_odoo_service()),
        "stop and disable the VPS's Odoo",
    );
    v.extend([
        Run::cmd_when(&c.stop_spec(pgrepl::StopMode::Fast), "it runs"),
        Run::file(
            &c.data_dir().join("standby.signal"),
            "empty: started by anyone, it comes up read-only",
        ),
    ]);
    if let Some(p) = c.start_conf() {
        v.push(Run::file(&p, "manual (not started at boot)"));
    }
    v
}

/// Sets the VPS's `start.conf` back to what it was before the fence, and forgets the record.
pub async fn release_vps(env: &Env) -> Result<()> {
    let mode = FenceRecord::load(env)
        .and_then(|r| r.start_was)
        .filter(|m| m != "manual")
        .unwrap_or_else(|| "auto".into());
    pgrepl::fence::release(env.vps_cluster.as_ref(), &mode)
        .await
        .map_err(|e| FailoverError::failed("setting the VPS's start.conf back", e))?;
    let path = env.state.fence();
    if path.exists() {
        std::fs::rename(&path, env.state.dir().join("fence.released.json"))
            .map_err(|e| FailoverError::failed(format!("moving {} aside", path.display()), e))?;
    }
    Ok(())
}

/// Whether production is here after a planned switchover: the last operation that completed
/// on the instance was a `switchover`, and none runs now (a failback in progress has its
/// `current.json`; a switchover that put the VPS back was set aside as `aborted.json`, never
/// completed). The VPS's cluster follows this one then: stopped for the planned work it comes
/// back as a standby by itself, and the files written here go back to it
/// ([`crate::sync`]'s files-back pass).
pub fn switched_over(env: &Env) -> bool {
    if env.state.current().exists() {
        return false;
    }
    std::fs::read_to_string(env.state.last())
        .ok()
        .and_then(|t| serde_json::from_str::<crate::journal::Current>(&t).ok())
        .is_some_and(|c| c.operation == "switchover")
}

/// After a failover: when the VPS can be reached and its cluster is a primary again, or is
/// stopped without being held down (it would start as a primary at boot), hold it down now.
/// `Some(problem)` says what was found (status lists it first). Nothing is done while an
/// operation is in progress or interrupted (a failback makes the VPS a standby on purpose).
pub async fn guard_after_failover(env: &Env) -> Option<crate::problem::Problem> {
    use crate::problem::Problem;
    if env.state.current().exists() {
        return None;
    }
    let state = vps_state_within(env, Duration::from_secs(5)).await;
    let label = env.vps_cluster.label();
    let (code, was) = match &state {
        VpsState::Unreachable(_) | VpsState::Standby => return None,
        VpsState::NotAnswering(why) => {
            return Some(Problem::critical(
                "vps-not-answering",
                format!("the VPS's cluster {label} runs again after the failover but does not answer ({why}): it may take writes"),
                "stop it on the VPS: systemctl stop postgresql (or kill its postmaster), then `odoo-standby status` holds it down",
            ))
        }
        VpsState::Stopped => {
            if pgrepl::fence::is_held_down(env.vps_cluster.as_ref())
                .await
                .unwrap_or(false)
            {
                return None;
            }
            // After a switchover the VPS is stopped for its planned work (a reboot, a disk
            // move): with its standby.signal it starts again as a standby that follows this
            // server, which is what the switchover made it. Nothing to hold down.
            if switched_over(env)
                && pgrepl::read_data_file(env.vps_cluster.as_ref(), "standby.signal")
                    .await
                    .is_ok_and(|f| f.is_some())
            {
                return None;
            }
            ("vps-not-held", format!("the VPS's cluster {label} is not held down: it would start as a primary at its next boot"))
        }
        VpsState::Primary => ("vps-primary-after-failover", format!(
            "the VPS's cluster {label} runs again as a PRIMARY after the failover: what was written there since is not here"
        )),
    };
    Some(match hold_vps(env).await {
        Ok(_) => Problem::critical(
            code,
            format!("{was}; held it down now (stopped, standby.signal, start.conf manual)"),
            format!(
                "`odoo-standby failback {}` reports and keeps what it wrote after the split",
                env.name()
            ),
        ),
        Err(e) => Problem::critical(
            "vps-hold-failed",
            format!("{was}; holding it down FAILED: {}", crate::error::chain(&e)),
            "stop it on the VPS now: systemctl disable --now postgresql",
        ),
    })
}
