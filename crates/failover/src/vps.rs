//! What the VPS is right now, as far as this server can tell over SSH: the fence's question.

use std::time::Duration;

use host::CommandSpec;

use crate::env::Env;
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

/// Looks at the VPS over SSH: is it reachable, does its cluster run, and as what.
pub async fn vps_state(env: &Env) -> VpsState {
    let limit = Duration::from_secs(15);
    let probe = CommandSpec::new("true").asks();
    match tokio::time::timeout(limit, env.vps.run(&probe)).await {
        Err(_) => return VpsState::Unreachable("SSH did not answer within 15 s".into()),
        Ok(Err(e)) => return VpsState::Unreachable(crate::error::chain(&e)),
        Ok(Ok(_)) => {}
    }
    match tokio::time::timeout(limit, env.vps_cluster.is_running()).await {
        Ok(Ok(false)) => return VpsState::Stopped,
        Ok(Ok(true)) => {}
        Ok(Err(e)) => return VpsState::NotAnswering(crate::error::chain(&e)),
        Err(_) => return VpsState::NotAnswering("its cluster's state did not come in 15 s".into()),
    }
    let psql = env.vps_psql("postgres");
    match tokio::time::timeout(Duration::from_secs(10), is_primary(&psql)).await {
        Ok(Ok(true)) => VpsState::Primary,
        Ok(Ok(false)) => VpsState::Standby,
        Ok(Err(e)) => VpsState::NotAnswering(crate::error::chain(&e)),
        Err(_) => VpsState::NotAnswering("it runs but did not answer a query within 10 s".into()),
    }
}

/// Whether the VPS's PostgreSQL can be reached and is a primary (accepts writes).
pub async fn vps_takes_writes(env: &Env) -> bool {
    vps_state(env).await == VpsState::Primary
}
