//! Rejoining an old primary as a standby of the new one (runbook 5.3–5.4): clean shutdown
//! (recovering a crashed one first, in recovery mode so it never accepts a write), a
//! CHECKPOINT on the new primary, pg_rewind as the rewind role, then follow as the replication
//! role through a slot on the new primary.
//!
//! pg_rewind copies the source's configuration files along with the data; the target's own
//! `postgresql.conf`, `pg_hba.conf`, `pg_ident.conf` and `postgresql.auto.conf` (those that
//! live in its data directory) are saved before and put back after, then the standby settings
//! are written on top.

use std::time::Duration;

use host::CommandSpec;
use serde::Serialize;

use crate::clone::{clone_standby, follow, is_streaming_from, CloneOutcome, Progress, Upstream};
use crate::cluster::{read_data_file, set_auto_conf, write_data_file, Cluster, StopMode};
use crate::conninfo::ConnInfo;
use crate::divergence::controldata;
use crate::error::{PgreplError, Result};
use crate::ident::Name;
use crate::slot::create_slot;
use crate::sql::{execute, Sql};

/// Config files pg_rewind would overwrite with the source's copies.
const OWN_CONFIG: [&str; 4] = [
    "postgresql.conf",
    "pg_hba.conf",
    "pg_ident.conf",
    "postgresql.auto.conf",
];

/// How the old primary reaches the new one.
#[derive(Clone, Debug)]
pub struct RejoinOptions {
    /// Replication: host, port, role, passfile, and the slot to follow through.
    pub upstream: Upstream,
    /// The rewind role (`replica_rewind`); its password is in the same passfile.
    pub rewind_user: Name,
    /// When pg_rewind cannot work: make a new clone (the old data directory is moved aside,
    /// never deleted). Off: stop and say why.
    pub clone_if_needed: bool,
}

/// What `rejoin` did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum RejoinOutcome {
    /// It already streamed from the new primary through the slot: nothing changed.
    AlreadyStreaming,
    /// Rewound (or found nothing to rewind) and now streams.
    Rejoined {
        /// Whether pg_rewind changed anything.
        rewound: bool,
        /// Whether it had to be recovered from a crash first.
        recovered: bool,
    },
    /// pg_rewind could not work; a new clone was made.
    Recloned {
        /// Why pg_rewind failed.
        reason: String,
        /// Where the old data directory went.
        moved_aside: Option<std::path::PathBuf>,
    },
}

impl std::fmt::Display for RejoinOutcome {
    /// In an operator's words.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::AlreadyStreaming => {
                f.write_str("it already follows the new primary: nothing changed")
            }
            Self::Rejoined { rewound, recovered } => write!(
                f,
                "rejoined and streaming{}{}",
                if *recovered {
                    "; it was recovered from a crash first"
                } else {
                    ""
                },
                if *rewound {
                    "; pg_rewind undid what it wrote after the fork"
                } else {
                    "; nothing to rewind"
                }
            ),
            Self::Recloned {
                reason,
                moved_aside,
            } => write!(
                f,
                "could not be rewound ({reason}); cloned anew{}",
                moved_aside
                    .as_ref()
                    .map(|p| format!(", the old data directory kept at {}", p.display()))
                    .unwrap_or_default()
            ),
        }
    }
}

/// Rejoins `target` (the old primary's cluster) to the new primary. `new_primary` is a
/// superuser connection to it (for the slot and the checkpoint). Each step checks first, so
/// a second run, or a run after an interruption, ends in the same state.
pub async fn rejoin(
    target: &dyn Cluster,
    new_primary: &dyn Sql,
    opts: &RejoinOptions,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> Result<RejoinOutcome> {
    let up = &opts.upstream;
    let pass = crate::pgpass::load(target.host().as_ref(), &up.passfile).await?;
    for (db, user) in [
        ("replication", up.user.as_str()),
        ("postgres", opts.rewind_user.as_str()),
    ] {
        if pass.lookup(&up.host, up.port, db, user).is_none() {
            return Err(PgreplError::invalid(
                "password file",
                format!(
                    "{} has no line for {}:{}:{db}:{user}; prepare-primary on the new primary writes it",
                    up.passfile.display(),
                    up.host,
                    up.port
                ),
            ));
        }
    }
    if is_streaming_from(target, up).await? {
        return Ok(RejoinOutcome::AlreadyStreaming);
    }

    // 1. A clean shutdown; a crashed cluster is recovered as a standby (read-only).
    target.stop(StopMode::Fast).await?;
    let mut recovered = false;
    if !controldata(target).await?.clean() {
        write_data_file(target, "standby.signal", "").await?;
        let auto = read_data_file(target, "postgresql.auto.conf")
            .await?
            .unwrap_or_default();
        write_data_file(
            target,
            "postgresql.auto.conf",
            &set_auto_conf(&auto, &[("primary_conninfo", String::new())]),
        )
        .await?;
        target.start().await?;
        target.stop(StopMode::Fast).await?;
        recovered = true;
    }

    // 2. The slot it will follow through, before anything else can need it; and a
    //    checkpoint, so that the new primary's control file shows its new timeline.
    create_slot(new_primary, &up.slot).await?;
    execute(new_primary, "CHECKPOINT").await?;

    // 3. pg_rewind, keeping our own config files.
    let mut saved = Vec::new();
    for f in OWN_CONFIG {
        if let Some(text) = read_data_file(target, f).await? {
            saved.push((f, text));
        }
    }
    let rewound = match rewind(target, opts).await {
        Ok(r) => r,
        Err(reason) => {
            for (f, text) in &saved {
                write_data_file(target, f, text).await?;
            }
            if !opts.clone_if_needed {
                return Err(PgreplError::State(format!(
                    "pg_rewind cannot rejoin {}: {reason}. Nothing was deleted; a new clone \
                     (`pgrepl clone`, or rejoin --clone-if-needed) moves its data directory aside and starts over",
                    target.label()
                )));
            }
            let outcome = clone_standby(target, up, progress).await?;
            let moved_aside = match outcome {
                CloneOutcome::Cloned { moved_aside } => moved_aside,
                CloneOutcome::AlreadyStreaming => None,
            };
            return Ok(RejoinOutcome::Recloned {
                reason,
                moved_aside,
            });
        }
    };
    for (f, text) in &saved {
        write_data_file(target, f, text).await?;
    }

    // 4. Follow.
    follow(target, up).await?;
    Ok(RejoinOutcome::Rejoined { rewound, recovered })
}

/// The pg_rewind that [`rejoin`] runs on the target, as its OS user, from the new primary
/// as the rewind role (password from the upstream's passfile).
pub fn rewind_spec(target: &dyn Cluster, opts: &RejoinOptions) -> CommandSpec {
    let up = &opts.upstream;
    let mut source = ConnInfo::default();
    source
        .set("host", up.host.clone())
        .set("port", up.port.to_string())
        .set("user", opts.rewind_user.to_string())
        .set("dbname", "postgres")
        .set("connect_timeout", "10");
    CommandSpec::new(target.bindir().join("pg_rewind").display().to_string())
        .arg("--target-pgdata")
        .arg(target.data_dir().display().to_string())
        .arg(format!("--source-server={}", source.to_libpq()))
        .arg("--no-ensure-shutdown")
        .env("PGPASSFILE", up.passfile.display().to_string())
        .env("LC_ALL", "C")
        .run_as(target.os_user())
        .timeout(Duration::from_secs(3600))
}

/// Runs pg_rewind; `Ok(false)` when it found nothing to do. `Err` carries the reason.
async fn rewind(target: &dyn Cluster, opts: &RejoinOptions) -> std::result::Result<bool, String> {
    let spec = rewind_spec(target, opts);
    match target.host().run(&spec).await {
        Ok(out) => {
            let text = format!("{}{}", out.stdout_text(), out.stderr_text());
            Ok(!text.contains("no rewind required"))
        }
        Err(host::HostError::CommandFailed { stderr_tail, .. }) => {
            Err(explain_rewind_failure(&stderr_tail))
        }
        Err(e) => Err(e.to_string()),
    }
}

/// pg_rewind's failure, with the cause a sysadmin can act on.
fn explain_rewind_failure(stderr: &str) -> String {
    let last = stderr
        .lines()
        .rev()
        .find(|l| l.contains("error") || l.contains("fatal"))
        .unwrap_or(stderr)
        .trim()
        .to_owned();
    if stderr.contains("could not open file") && stderr.contains("pg_wal")
        || stderr.contains("could not find previous WAL record")
    {
        format!("the WAL it needs from before the fork is gone from pg_wal (raise wal_keep_size on the primaries): {last}")
    } else if stderr.contains("wal_log_hints") || stderr.contains("data checksums") {
        format!("the old primary had neither wal_log_hints=on nor data checksums: {last}")
    } else if stderr.contains("password authentication failed")
        || stderr.contains("no pg_hba.conf entry")
    {
        format!("the rewind role cannot log in to the new primary (password or pg_hba): {last}")
    } else {
        last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewind_failures_are_explained() {
        let e = explain_rewind_failure(
            "pg_rewind: error: could not open file \"/d/pg_wal/000000010000000000000002\": No such file or directory",
        );
        assert!(e.starts_with("the WAL it needs"), "{e}");
        let e = explain_rewind_failure("pg_rewind: fatal: target server needs to use either data checksums or \"wal_log_hints = on\"");
        assert!(e.contains("wal_log_hints"), "{e}");
    }
}
