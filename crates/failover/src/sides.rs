//! What role each side has right now, and whether an operation fits it. Every operation
//! asks this before its first step: a failback of an instance that never failed over, or a
//! failover of one that did, is refused with what the sides are and what to run instead,
//! before anything is touched.
//!
//! Decisions: the check runs when an operation starts, not on a resume (half-way through a
//! failback the roles are in between by design; each step checks its own state). A failback
//! fits when this cluster is a primary, or when the VPS's cluster already follows (a failback
//! that was aborted half-way and is started again); it never fits while the VPS is the only
//! primary.

use serde::Serialize;

use crate::env::Env;
use crate::error::{FailoverError, Result};
use crate::plan::Operation;
use crate::steps::is_primary;
use crate::vps::{vps_state, VpsState};

/// The cluster here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HereRole {
    /// It does not exist yet (never protected).
    Missing,
    /// It exists and does not run.
    Down,
    /// A standby (of the VPS, or of nothing).
    Standby,
    /// A primary: production runs here (failed over).
    Primary,
}

impl std::fmt::Display for HereRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Missing => "does not exist",
            Self::Down => "does not run",
            Self::Standby => "is a standby",
            Self::Primary => "is a primary (production runs here)",
        })
    }
}

/// The role of the cluster here.
pub async fn here_role(env: &Env) -> Result<HereRole> {
    let c = env.standby.as_ref();
    let what = |e| FailoverError::failed(format!("asking about {}", c.label()), e);
    if !c.exists().await.map_err(what)? {
        return Ok(HereRole::Missing);
    }
    if !c.is_running().await.map_err(what)? {
        return Ok(HereRole::Down);
    }
    Ok(if is_primary(&env.standby_sql("postgres")).await? {
        HereRole::Primary
    } else {
        HereRole::Standby
    })
}

/// Both sides, as seen from here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sides {
    /// The cluster here.
    pub here: HereRole,
    /// The VPS and its cluster.
    pub vps: VpsState,
}

impl Sides {
    /// Looks at both.
    pub async fn read(env: &Env) -> Result<Self> {
        Ok(Self {
            here: here_role(env).await?,
            vps: vps_state(env).await,
        })
    }

    /// Why `op` does not fit these roles (`None`: it fits).
    pub fn misfit(&self, op: Operation, env: &Env) -> Option<String> {
        let name = env.name();
        let here = format!("the cluster here ({}) {}", env.standby.label(), self.here);
        let vps = format!(
            "the VPS's cluster ({}) {}",
            env.vps_cluster.label(),
            self.vps
        );
        match op {
            Operation::Protect => match (&self.here, &self.vps) {
                (HereRole::Primary, _) => Some(format!(
                    "{name} is failed over: {here}. Protecting now would replace production's database with a copy of the VPS's. Move production back first: odoo-standby failback {name}"
                )),
                (_, VpsState::Standby) => Some(format!(
                    "{vps}: there is no primary on the VPS to protect. If a failback was interrupted, finish it (odoo-standby resume {name}, or odoo-standby failback {name} after abort)"
                )),
                _ => None,
            },
            Operation::Failover => match self.here {
                HereRole::Primary => Some(format!(
                    "{name} is failed over already: {here}. `odoo-standby status {name}` shows it; odoo-standby failback {name} moves production back"
                )),
                HereRole::Missing => Some(format!(
                    "{here}: {name} was never protected, there is nothing to promote. Run odoo-standby protect {name} first"
                )),
                HereRole::Down => Some(format!(
                    "{here}: start it (pg_ctlcluster {} start, or its unit) and check with odoo-standby status {name} that it is a standby, then fail over",
                    env.standby.label().replace('/', " ")
                )),
                HereRole::Standby => None,
            },
            Operation::Failback => match (&self.here, &self.vps) {
                (HereRole::Primary, VpsState::Unreachable(_)) => Some(format!(
                    "{vps}: failback needs the VPS. Bring it back (production stays here meanwhile), then run odoo-standby failback {name}"
                )),
                (HereRole::Primary, _) | (_, VpsState::Standby) => None,
                (HereRole::Standby, _) => Some(format!(
                    "{name} was never failed over: {here} and {vps}. Nothing to fail back; production is on the VPS"
                )),
                _ => Some(format!(
                    "{here} and {vps}: there is no production here to give back. `odoo-standby status {name}` shows both sides"
                )),
            },
            Operation::Switchover => match (&self.here, &self.vps) {
                (HereRole::Standby, VpsState::Primary) => None,
                (HereRole::Primary, _) => Some(format!(
                    "{name} runs here already: {here}. odoo-standby failback {name} gives it back"
                )),
                (HereRole::Standby, _) => Some(format!(
                    "{vps}: a switchover needs the VPS serving, as a primary. If it is lost, fail over instead: odoo-standby failover {name}"
                )),
                _ => Some(format!(
                    "{here}: a switchover needs a protected standby here. `odoo-standby status {name}` shows both sides; odoo-standby protect {name} sets it up"
                )),
            },
        }
    }
}

/// Refuses `op` when the roles do not fit it, before anything is touched. A failover looks
/// only here (its fence looks at the VPS, with its own answers).
pub async fn check_fits(env: &Env, op: Operation) -> Result<()> {
    let here = here_role(env).await?;
    let vps = match (op, here) {
        (Operation::Failover, _) | (Operation::Protect, HereRole::Primary) => {
            VpsState::Unreachable("not asked".into())
        }
        _ => vps_state(env).await,
    };
    let sides = Sides { here, vps };
    match sides.misfit(op, env) {
        Some(why) => Err(FailoverError::Refused(why)),
        None => Ok(()),
    }
}
