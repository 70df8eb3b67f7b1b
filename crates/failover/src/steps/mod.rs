//! The steps of the plans, one type each, its description, what it runs, its done-check and
//! its action together. What a step shows under `--dry-run` is built by the same functions
//! that build what it runs ([`Run::cmd`] takes the very `CommandSpec`), so a plan cannot show
//! other flags than it executes.
//!
//! Every `apply` may run twice (after a crash between acting and journaling) and must end in
//! the same state; the library calls below are idempotent by contract, and each `apply`
//! checks before it changes anything of its own.

mod failback;
mod failover;
mod files;
mod odoo_setup;
mod preflight;
mod protect;
mod roles;
mod split;
mod switchover;

use std::path::Path;

use async_trait::async_trait;
use host::{CommandSpec, Ownership};
use serde::Serialize;

use crate::env::Env;
use crate::error::{FailoverError, Result};
use crate::plan::{Out, RunOptions};

pub use failback::failback;
pub use failover::failover;
pub use files::lost_path;
pub(crate) use files::public_attachments;
pub use protect::protect;
pub use switchover::{switchover, MAX_LAG_BYTES, SWITCH_WAIT};

/// One thing a step runs, as `--dry-run` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Run {
    /// A command that acts: its argv exactly as it runs (secrets as `***`), the OS user it
    /// runs as, and when it runs if not always.
    Command {
        /// Program and arguments.
        argv: Vec<String>,
        /// The OS user, when not the one we are (or log in as).
        user: Option<String>,
        /// The condition, when it runs only sometimes.
        when: Option<String>,
    },
    /// SQL sent to a server.
    Sql {
        /// The statement, or what it does.
        sql: String,
    },
    /// A file written.
    File {
        /// The path.
        path: String,
        /// What goes in it.
        what: String,
    },
    /// What the step asks or checks, in words.
    Note {
        /// The text.
        text: String,
    },
}

impl Run {
    /// The command `spec`, as it runs.
    pub fn cmd(spec: &CommandSpec) -> Self {
        Self::Command {
            argv: spec.display_argv(),
            user: spec.user().map(str::to_owned),
            when: None,
        }
    }

    /// The command `spec`, run only when `when`.
    pub fn cmd_when(spec: &CommandSpec, when: &str) -> Self {
        Self::Command {
            argv: spec.display_argv(),
            user: spec.user().map(str::to_owned),
            when: Some(when.to_owned()),
        }
    }

    /// Every command of `specs`; a note when there is none.
    pub fn cmds(specs: &[CommandSpec], none: &str) -> Vec<Self> {
        if specs.is_empty() {
            return vec![Self::note(none)];
        }
        specs.iter().map(Self::cmd).collect()
    }

    /// SQL, or what it does.
    pub fn sql(sql: impl Into<String>) -> Self {
        Self::Sql { sql: sql.into() }
    }

    /// A file and what goes in it.
    pub fn file(path: &Path, what: impl Into<String>) -> Self {
        Self::File {
            path: path.display().to_string(),
            what: what.into(),
        }
    }

    /// Words.
    pub fn note(text: impl Into<String>) -> Self {
        Self::Note { text: text.into() }
    }

    /// One line for the text plan.
    pub fn shown(&self) -> String {
        match self {
            Self::Command { argv, user, when } => {
                let mut s = String::new();
                if let Some(u) = user {
                    s.push_str(&format!("[as {u}] "));
                }
                s.push_str(&host::quote::join(argv));
                if let Some(w) = when {
                    s.push_str(&format!("   (when {w})"));
                }
                s
            }
            Self::Sql { sql } => format!("SQL: {sql}"),
            Self::File { path, what } => format!("write {path}: {what}"),
            Self::Note { text } => text.clone(),
        }
    }
}

/// One step of a plan.
#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait Step: Send + Sync {
    /// Stable id (journal, kill points, `--json`).
    fn id(&self) -> &'static str;
    /// What it does, in words.
    fn title(&self) -> &'static str;
    /// Whether it acts on the VPS (else on this server).
    fn on_vps(&self) -> bool {
        false
    }
    /// What it runs: the commands that act, built by the functions `apply` runs them with;
    /// SQL, files and questions in words.
    fn runs(&self, env: &Env) -> Vec<Run>;
    /// How it knows it is already done.
    fn check(&self) -> &'static str;
    /// What to do when it fails.
    fn hint(&self) -> &'static str;
    /// Whether a resume runs it again although the journal says it was done (a fence holds
    /// only if it is checked right before what it protects).
    fn every_run(&self) -> bool {
        false
    }
    /// Whether its effect is already there (then it is skipped).
    async fn is_done(&self, env: &Env) -> Result<bool>;
    /// Does it.
    async fn apply(&self, env: &Env, opts: &RunOptions, out: &Out) -> Result<()>;
}

/// Maps a lower layer's error (pgrepl, a name) to ours, saying what was being done.
pub(crate) fn f<E: Into<crate::error::Cause>>(
    what: impl Into<String>,
) -> impl FnOnce(E) -> FailoverError {
    let what = what.into();
    move |e| FailoverError::failed(what, e)
}

/// Maps a host error to ours, saying what was being done.
pub(crate) fn hf(what: impl Into<String>) -> impl FnOnce(host::HostError) -> FailoverError {
    let what = what.into();
    move |e| FailoverError::failed(what, e)
}

/// The operator's yes to `question`, or `--yes`; `declined` is the refusal when they say no.
/// Without a terminal to ask on, it refuses and names `--yes`.
pub(crate) fn confirmed(
    opts: &RunOptions,
    out: &Out,
    question: &str,
    declined: &str,
) -> Result<()> {
    if opts.yes {
        return Ok(());
    }
    match out.confirm(question) {
        Some(true) => Ok(()),
        Some(false) => Err(FailoverError::Refused(declined.into())),
        None => Err(FailoverError::Refused(
            "no terminal to ask for confirmation: pass --yes".into(),
        )),
    }
}

/// Whether the server is a primary (not in recovery).
pub(crate) async fn is_primary(db: &dyn pgrepl::Sql) -> Result<bool> {
    Ok(pgrepl::query_value(db, "SELECT pg_is_in_recovery()")
        .await
        .map_err(f("asking whether the server is in recovery"))?
        .as_deref()
        == Some("f"))
}

/// Whether `cluster` runs and streams from `up` (through its slot).
pub(crate) async fn streams_from(
    cluster: &dyn pgrepl::Cluster,
    up: Result<pgrepl::Upstream>,
) -> Result<bool> {
    let up = up?;
    Ok(cluster.is_running().await.unwrap_or(false)
        && pgrepl::is_streaming_from(cluster, &up)
            .await
            .unwrap_or(false))
}

/// The done-check of a step that re-applies settings: it changes only what is not in place.
pub(crate) const REAPPLIES: &str = "re-applies nothing that is in place";
/// The hint of a step that edits pg_hba.conf.
pub(crate) const HBA_HINT: &str =
    "read the error: the pg_hba change is rolled back if the server rejects it";

/// What [`restart`] runs on `cluster`, when `when`.
pub(crate) fn restart_runs(cluster: &dyn pgrepl::Cluster, when: &str) -> Vec<Run> {
    vec![
        Run::cmd_when(&cluster.stop_spec(pgrepl::StopMode::Fast), when),
        Run::cmd_when(&cluster.start_spec(), when),
    ]
}

/// Restarts `cluster` (fast stop, start), saying why on `out`.
pub(crate) async fn restart(cluster: &dyn pgrepl::Cluster, why: &str, out: &Out) -> Result<()> {
    out.line(&format!("    restarting {} {why}", cluster.label()));
    cluster
        .stop(pgrepl::StopMode::Fast)
        .await
        .map_err(f(format!("stopping {}", cluster.label())))?;
    cluster
        .start()
        .await
        .map_err(f(format!("starting {}", cluster.label())))
}

/// Whether a file here has exactly `want`.
pub(crate) async fn same_file(env: &Env, path: &Path, want: &str) -> Result<bool> {
    match env.local.read_file(path).await {
        Ok(b) => Ok(b == want.as_bytes()),
        Err(e) if e.kind() == host::HostErrorKind::NotFound => Ok(false),
        Err(e) => Err(FailoverError::failed(
            format!("reading {}", path.display()),
            e,
        )),
    }
}

/// Writes a file of ours here; an existing different one is kept beside it as
/// `<file>.aside-<t>`.
pub(crate) async fn write_ours(
    env: &Env,
    path: &Path,
    text: &str,
    mode: u32,
    owner: &str,
) -> Result<()> {
    if same_file(env, path, text).await? {
        return Ok(());
    }
    if env.local.stat(path).await.ok().flatten().is_some() {
        let aside = pgrepl::aside_path(path);
        env.local
            .rename(path, &aside)
            .await
            .map_err(hf(format!("moving {} aside", path.display())))?;
    }
    env.local
        .write_file(
            path,
            text.as_bytes(),
            &Ownership::owned(mode, owner.to_owned()),
        )
        .await
        .map_err(hf(format!("writing {}", path.display())))
}

/// Runs one command here or there, to success.
pub(crate) async fn run(host: &dyn host::Host, spec: &CommandSpec, what: &str) -> Result<String> {
    host.run(spec)
        .await
        .map(|o| o.stdout_text())
        .map_err(hf(format!("{what} on {}", host.name())))
}
