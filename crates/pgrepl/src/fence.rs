//! Holding an old primary down so that it cannot take writes again by itself: stopped, a
//! `standby.signal` in its data directory (started by anyone, it comes up read-only), and,
//! for a postgresql-common cluster, `start.conf` set to `manual` (not started at boot).
//! Undone by [`release`] once the cluster is meant to be a primary again.
//!
//! Decision: `manual`, not `disabled`: a disabled cluster refuses `pg_ctlcluster start`,
//! which the rejoin itself needs; with the signal file a manual start is harmless. The boot
//! generator reads `start.conf` at the next boot (no `systemctl daemon-reload` is run).
//!
//! ```no_run
//! # async fn demo(old: &dyn pgrepl::Cluster) -> pgrepl::Result<()> {
//! let held = pgrepl::fence::hold_down(old).await?;
//! println!("start.conf was {:?}", held.start_was);
//! pgrepl::fence::release(old, held.start_was.as_deref().unwrap_or("auto")).await?;
//! # Ok(()) }
//! ```

use std::path::Path;
use std::time::Duration;

use host::{HostErrorKind, Ownership};
use serde::{Deserialize, Serialize};

use crate::cluster::{read_data_file, write_data_file, Cluster, StopMode};
use crate::error::{PgreplError, Result};

/// What [`hold_down`] found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldDown {
    /// It was running and was stopped.
    pub stopped: bool,
    /// `standby.signal` was written (it was not there).
    pub signal_written: bool,
    /// The start mode before (`auto`...), when the cluster has a `start.conf`.
    pub start_was: Option<String>,
}

/// What the start mode is: the first word of `start.conf` that is not a comment.
pub fn start_mode(text: &str) -> Option<String> {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
}

/// `start.conf` with its mode set to `mode`, comments kept, and our note above it.
pub fn with_start_mode(text: &str, mode: &str, note: &str) -> String {
    let mut out: Vec<String> = text
        .lines()
        .filter(|l| !l.starts_with("# odoo-standby:"))
        .map(str::to_owned)
        .collect();
    match out
        .iter()
        .position(|l| !l.trim().is_empty() && !l.trim().starts_with('#'))
    {
        Some(i) => out[i] = mode.to_owned(),
        None => out.push(mode.to_owned()),
    }
    if !note.is_empty() {
        let i = out.len() - 1;
        out.insert(i, format!("# odoo-standby: {note}"));
    }
    out.join("\n") + "\n"
}

async fn read_start_conf(c: &dyn Cluster, path: &Path) -> Result<Option<String>> {
    match c.host().read_file(path).await {
        Ok(b) => Ok(Some(String::from_utf8_lossy(&b).into_owned())),
        Err(e) if e.kind() == HostErrorKind::NotFound => Ok(None),
        Err(e) => Err(PgreplError::host(format!("reading {}", path.display()), e)),
    }
}

async fn set_start(c: &dyn Cluster, mode: &str, note: &str) -> Result<Option<String>> {
    let Some(path) = c.start_conf() else {
        return Ok(None);
    };
    let text = read_start_conf(c, &path).await?.unwrap_or_default();
    let was = start_mode(&text);
    let new = with_start_mode(&text, mode, note);
    if new != text {
        c.host()
            .write_file(&path, new.as_bytes(), &Ownership::owned(0o644, c.os_user()))
            .await
            .map_err(|e| PgreplError::host(format!("writing {}", path.display()), e))?;
    }
    Ok(was)
}

/// Stops `c` (fast, within `limit`), writes `standby.signal`, sets `start.conf` to manual.
/// Idempotent: a cluster already held is left as it is. `why` goes into `start.conf`.
pub async fn hold_down_within(c: &dyn Cluster, why: &str, limit: Duration) -> Result<HeldDown> {
    let mut held = HeldDown::default();
    if c.is_running().await? {
        match tokio::time::timeout(limit, c.stop(StopMode::Fast)).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(PgreplError::State(format!(
                    "{} did not stop within {} s (is it frozen? `kill -CONT` its postmaster, or stop it on its machine)",
                    c.label(),
                    limit.as_secs()
                )))
            }
        }
        held.stopped = true;
    }
    if read_data_file(c, "standby.signal").await?.is_none() {
        write_data_file(c, "standby.signal", "").await?;
        held.signal_written = true;
    }
    held.start_was = set_start(c, "manual", why).await?;
    Ok(held)
}

/// [`hold_down_within`] with two minutes for the stop.
pub async fn hold_down(c: &dyn Cluster) -> Result<HeldDown> {
    hold_down_within(
        c,
        "held down after a failover; failback sets it back",
        Duration::from_secs(120),
    )
    .await
}

/// Whether `c` is held: not running, `standby.signal` there, `start.conf` not `auto`.
pub async fn is_held_down(c: &dyn Cluster) -> Result<bool> {
    if c.is_running().await? || read_data_file(c, "standby.signal").await?.is_none() {
        return Ok(false);
    }
    Ok(match c.start_conf() {
        None => true,
        Some(p) => read_start_conf(c, &p)
            .await?
            .and_then(|t| start_mode(&t))
            .is_some_and(|m| m != "auto"),
    })
}

/// Sets `start.conf` back to `mode` (what [`HeldDown::start_was`] said; `auto` when it was
/// not known). The signal file is the rejoin's and the promotion's business.
pub async fn release(c: &dyn Cluster, mode: &str) -> Result<()> {
    set_start(c, mode, "").await.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_conf_keeps_its_comments() {
        let debian = "# Automatic startup configuration\n#   auto: automatically start the cluster\n\nauto\n";
        assert_eq!(start_mode(debian).as_deref(), Some("auto"));
        let held = with_start_mode(debian, "manual", "held down");
        assert_eq!(start_mode(&held).as_deref(), Some("manual"));
        assert!(held.starts_with("# Automatic startup configuration\n"));
        assert!(
            held.contains("# odoo-standby: held down\nmanual\n"),
            "{held}"
        );
        assert_eq!(with_start_mode(&held, "auto", ""), debian);
        assert_eq!(with_start_mode("", "manual", ""), "manual\n");
    }
}
