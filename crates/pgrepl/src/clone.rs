//! Cloning a standby (runbook section 2): `pg_basebackup -X stream -c fast -S slot -C -R`
//! into a cluster whose old data directory is moved aside first, then start and wait until
//! it streams.

use std::path::PathBuf;
use std::time::Duration;

use host::{CommandSpec, HostErrorKind};
use serde::Serialize;
use tokio::io::AsyncReadExt;

use crate::cluster::{
    aside_path, get_auto_conf, read_data_file, set_auto_conf, write_data_file, Cluster, StopMode,
};
use crate::conninfo::ConnInfo;
use crate::error::{PgreplError, Result};
use crate::ident::Name;
use crate::sql::query_value;

/// Where a standby streams from, as what.
#[derive(Clone, Debug)]
pub struct Upstream {
    /// The primary's host, as the standby's machine reaches it.
    pub host: String,
    /// The primary's port.
    pub port: u16,
    /// The replication role (`replica_user`).
    pub user: Name,
    /// The `.pgpass` on the standby's machine with that role's password (0600, owned by the
    /// cluster's OS user: the WAL receiver reads it).
    pub passfile: PathBuf,
    /// The physical replication slot on the primary.
    pub slot: Name,
    /// MB per second the base backup may take from the primary (pg_basebackup's
    /// `--max-rate`, which the primary's walsender obeys); 0: no limit. Streaming after the
    /// clone is not limited: it only carries new WAL.
    pub max_mb_per_s: u32,
}

impl Upstream {
    /// The `primary_conninfo` the standby gets: no password, the passfile instead.
    pub fn conninfo(&self) -> ConnInfo {
        let mut c = ConnInfo::default();
        c.set("host", self.host.clone())
            .set("port", self.port.to_string())
            .set("user", self.user.to_string())
            .set("passfile", self.passfile.display().to_string())
            .set("application_name", self.slot.to_string())
            .set("connect_timeout", "10");
        c
    }
}

/// What `clone_standby` did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum CloneOutcome {
    /// The cluster already streams from that primary through that slot: nothing changed.
    AlreadyStreaming,
    /// Cloned and streaming; an earlier data directory, if any, was moved here.
    Cloned {
        /// Where the old data directory went.
        moved_aside: Option<PathBuf>,
    },
}

impl std::fmt::Display for CloneOutcome {
    /// In an operator's words.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::AlreadyStreaming => {
                f.write_str("it already streams from the primary through its slot: nothing changed")
            }
            Self::Cloned {
                moved_aside: Some(p),
            } => write!(
                f,
                "cloned and streaming; the old data directory was moved aside to {}",
                p.display()
            ),
            Self::Cloned { moved_aside: None } => f.write_str("cloned and streaming"),
        }
    }
}

/// pg_basebackup's progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// kB copied.
    pub done_kb: u64,
    /// kB to copy (an estimate).
    pub total_kb: u64,
}

/// Parses one `12345/67890 kB (18%), 0/1 tablespace` progress report.
pub fn parse_progress(line: &str) -> Option<Progress> {
    let (nums, _) = line.trim().split_once(" kB")?;
    let (done, total) = nums.split_once('/')?;
    Some(Progress {
        done_kb: done.trim().parse().ok()?,
        total_kb: total.trim().parse().ok()?,
    })
}

/// Whether the cluster already is a running standby of `up` that streams.
pub async fn is_streaming_from(cluster: &dyn Cluster, up: &Upstream) -> Result<bool> {
    if !cluster.is_running().await? {
        return Ok(false);
    }
    let Some(auto) = read_data_file(cluster, "postgresql.auto.conf").await? else {
        return Ok(false);
    };
    let signal = read_data_file(cluster, "standby.signal").await?.is_some();
    let slot = get_auto_conf(&auto, "primary_slot_name");
    let conn = get_auto_conf(&auto, "primary_conninfo").and_then(|c| ConnInfo::parse(&c).ok());
    let same_upstream = conn
        .is_some_and(|c| c.get("host") == Some(up.host.as_str()) && c.port().ok() == Some(up.port));
    if !(signal && same_upstream && slot.as_deref() == Some(up.slot.as_str())) {
        return Ok(false);
    }
    let status = query_value(
        &cluster.psql("postgres"),
        "SELECT status FROM pg_stat_wal_receiver",
    )
    .await?;
    Ok(status.as_deref() == Some("streaming"))
}

/// Polls until the standby's WAL receiver streams, up to `limit`.
pub async fn wait_streaming(cluster: &dyn Cluster, limit: Duration) -> Result<()> {
    let start = std::time::Instant::now();
    let db = cluster.psql("postgres");
    let mut last = String::new();
    while start.elapsed() < limit {
        match query_value(&db, "SELECT status FROM pg_stat_wal_receiver").await {
            Ok(Some(s)) if s == "streaming" => return Ok(()),
            Ok(s) => last = s.unwrap_or_else(|| "no WAL receiver".into()),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(PgreplError::Timeout {
        what: format!("streaming replication on {}", cluster.label()),
        seconds: limit.as_secs(),
        detail: last,
    })
}

/// Fails when something other than this cluster answers on its port (TCP or socket).
async fn ensure_port_free(cluster: &dyn Cluster) -> Result<()> {
    let isready = cluster.bindir().join("pg_isready").display().to_string();
    for h in ["127.0.0.1".to_owned(), cluster.socket_dir()] {
        let out = cluster
            .host()
            .run_unchecked(
                &CommandSpec::new(&isready)
                    .args(["-q", "-t", "2", "-h", &h, "-p", &cluster.port().to_string()])
                    .asks(),
            )
            .await
            .map_err(|e| PgreplError::host("checking the standby port", e))?;
        // 0 accepting, 1 rejecting: something listens. 2: nothing answered.
        if matches!(out.status.code, Some(0) | Some(1)) {
            return Err(PgreplError::State(format!(
                "port {} is already taken on {} (by a server that is not cluster {}): \
                 choose another standby_port or stop what listens there",
                cluster.port(),
                cluster.host().name(),
                cluster.label()
            )));
        }
    }
    Ok(())
}

/// Makes `cluster` a streaming standby of `up`: checks before acting (already streaming:
/// nothing to do; port taken, no password, or a running cluster that is something else:
/// refuse, touching nothing), moves an existing data directory aside, runs pg_basebackup as
/// the cluster's OS user (creating the slot, or reusing it when a previous attempt created
/// it), writes `primary_conninfo` (passfile, no password) and `primary_slot_name`, starts the
/// cluster and waits until it streams.
pub async fn clone_standby(
    cluster: &dyn Cluster,
    up: &Upstream,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> Result<CloneOutcome> {
    let host = cluster.host();
    // The password must be there before anything changes (and the file must be private).
    let pass = crate::pgpass::load(host.as_ref(), &up.passfile).await?;
    if pass
        .lookup(&up.host, up.port, "replication", up.user.as_str())
        .is_none()
    {
        return Err(PgreplError::invalid(
            "password file",
            format!(
                "{} has no line for {}:{}:replication:{}; prepare-primary writes it",
                up.passfile.display(),
                up.host,
                up.port,
                up.user
            ),
        ));
    }
    if is_streaming_from(cluster, up).await? {
        return Ok(CloneOutcome::AlreadyStreaming);
    }
    if cluster.is_running().await? {
        return Err(PgreplError::State(format!(
            "cluster {} is running and is not a standby streaming from {}:{} through slot {}; \
             stop it first if it may be replaced (its data directory will be moved aside, not deleted)",
            cluster.label(),
            up.host,
            up.port,
            up.slot
        )));
    }
    ensure_port_free(cluster).await?;

    let data = cluster.data_dir();
    let existed = host
        .stat(&data)
        .await
        .map_err(|e| PgreplError::host(format!("checking {}", data.display()), e))?
        .is_some();
    cluster.create().await?;
    let mut moved_aside = None;
    let listing = host
        .run_unchecked(
            &CommandSpec::new("ls")
                .arg("-A")
                .arg(data.display().to_string())
                .run_as(cluster.os_user())
                .asks(),
        )
        .await;
    let non_empty = match &listing {
        Ok(out) => out.status.success() && !out.stdout.is_empty(),
        Err(_) => false,
    };
    if non_empty {
        let aside = aside_path(&data);
        host.rename(&data, &aside)
            .await
            .map_err(|e| PgreplError::host(format!("moving {} aside", data.display()), e))?;
        moved_aside = Some(aside);
    }
    host.mkdir_p(&data, &host::Ownership::owned(0o700, cluster.os_user()))
        .await
        .map_err(|e| PgreplError::host(format!("creating {}", data.display()), e))?;

    let copied = match basebackup(cluster, up, true, progress).await {
        Err(e) if is_slot_exists(&e) => basebackup(cluster, up, false, progress).await,
        other => other,
    };
    if let Err(e) = copied {
        // Put things back as they were: pg_basebackup emptied the directory it failed in;
        // it goes if we made it, and the old one comes back.
        if moved_aside.is_some() || !existed {
            let _ = host.remove(&data).await;
        }
        if let Some(aside) = &moved_aside {
            let _ = host.rename(aside, &data).await;
        }
        return Err(e);
    }

    follow(cluster, up).await?;
    Ok(CloneOutcome::Cloned { moved_aside })
}

/// Makes a stopped cluster a standby of `up` (primary_conninfo with the passfile,
/// primary_slot_name, standby.signal), starts it and waits until it streams; stops it again
/// when it does not.
pub(crate) async fn follow(cluster: &dyn Cluster, up: &Upstream) -> Result<()> {
    let auto = read_data_file(cluster, "postgresql.auto.conf")
        .await?
        .unwrap_or_default();
    let auto = set_auto_conf(
        &auto,
        &[
            ("primary_conninfo", up.conninfo().to_libpq()),
            ("primary_slot_name", up.slot.to_string()),
        ],
    );
    write_data_file(cluster, "postgresql.auto.conf", &auto).await?;
    write_data_file(cluster, "standby.signal", "").await?;
    cluster.start().await?;
    if let Err(e) = wait_streaming(cluster, Duration::from_secs(120)).await {
        let _ = cluster.stop(StopMode::Fast).await;
        return Err(e);
    }
    Ok(())
}

fn is_slot_exists(e: &PgreplError) -> bool {
    matches!(e, PgreplError::State(m) if m.contains("already exists"))
}

/// The pg_basebackup that [`clone_standby`] runs (as the cluster's OS user, its output
/// merged so that progress and errors come in order); `create_slot` adds `-C`.
pub fn basebackup_spec(cluster: &dyn Cluster, up: &Upstream, create_slot: bool) -> CommandSpec {
    let bin = cluster.bindir().join("pg_basebackup").display().to_string();
    let mut args: Vec<String> = vec![
        "-c".into(),
        "exec \"$0\" \"$@\" 2>&1".into(),
        bin,
        "-D".into(),
        cluster.data_dir().display().to_string(),
        "-X".into(),
        "stream".into(),
        "-c".into(),
        "fast".into(),
        "-S".into(),
        up.slot.to_string(),
        "-R".into(),
        "-P".into(),
        "-w".into(),
        "-h".into(),
        up.host.clone(),
        "-p".into(),
        up.port.to_string(),
        "-U".into(),
        up.user.to_string(),
    ];
    if create_slot {
        args.push("-C".into());
    }
    if up.max_mb_per_s > 0 {
        args.push(format!("--max-rate={}M", up.max_mb_per_s));
    }
    CommandSpec::new("sh")
        .args(args)
        .env("PGPASSFILE", up.passfile.display().to_string())
        .env("PGCONNECT_TIMEOUT", "10")
        .run_as(cluster.os_user())
}

async fn basebackup(
    cluster: &dyn Cluster,
    up: &Upstream,
    create_slot: bool,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> Result<()> {
    let spec = basebackup_spec(cluster, up, create_slot);
    let (writer, mut reader) = tokio::io::duplex(64 * 1024);
    let host = cluster.host();
    let run = host.stream(&spec, None, Box::new(writer));
    let read = async {
        let mut tail = String::new();
        let mut buf = [0u8; 4096];
        let mut pending = String::new();
        loop {
            let n = reader.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            pending.push_str(&String::from_utf8_lossy(&buf[..n]));
            while let Some(i) = pending.find(['\r', '\n']) {
                let line: String = pending.drain(..=i).collect();
                if let Some(p) = parse_progress(&line) {
                    progress(p);
                } else if !line.trim().is_empty() {
                    tail.push_str(line.trim_end());
                    tail.push('\n');
                }
            }
        }
        tail
    };
    let (result, tail) = tokio::join!(run, read);
    match result {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == HostErrorKind::CommandFailed => {
            let tail = tail.trim().to_owned();
            let hint = if tail.contains("password authentication failed") {
                format!(
                    "; the password for {} in {} is wrong: fix that line, or run prepare-primary again",
                    up.user,
                    up.passfile.display()
                )
            } else if tail.contains("no pg_hba.conf entry") {
                "; the primary's pg_hba.conf does not let this machine in: run prepare-primary with this machine's address".to_owned()
            } else {
                String::new()
            };
            Err(PgreplError::State(format!(
                "pg_basebackup from {}:{} into {} failed: {tail}{hint}",
                up.host,
                up.port,
                cluster.label()
            )))
        }
        Err(e) => Err(PgreplError::host("running pg_basebackup", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_parse() {
        let p = parse_progress("  12345/67890 kB (18%), 0/1 tablespace").unwrap();
        assert_eq!((p.done_kb, p.total_kb), (12345, 67890));
        assert!(parse_progress("pg_basebackup: error: x").is_none());
    }

    #[test]
    fn primary_conninfo_has_no_password() {
        let up = Upstream {
            host: "10.0.0.1".into(),
            port: 5432,
            user: Name::new("r", "replica_user").unwrap(),
            passfile: "/var/lib/postgresql/.pgpass".into(),
            slot: Name::new("s", "vps_1").unwrap(),
            max_mb_per_s: 0,
        };
        let c = up.conninfo().to_libpq();
        assert!(c.contains("passfile=/var/lib/postgresql/.pgpass") && !c.contains("password="));
    }
}
