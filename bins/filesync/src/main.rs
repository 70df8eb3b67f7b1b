//! `filesync`: an Odoo instance's files from its VPS to the backup server, from the command
//! line. Thin: parses, builds hosts, calls the `filesync` library (the same watch loop and
//! database discovery odoo-standby's sync service uses), prints.

mod args;

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use args::{Cli, Command, LocalArgs, SyncArgs};
use clap::Parser;
use filesync::watch::{PgStandby, Standby, Watch};
use filesync::{Index, SyncError, Vps};
use host::{LocalHost, SshHost};

type Outcome = Result<ExitCode, SyncError>;

fn watch_for(a: &SyncArgs, keep_helper: bool) -> Result<Watch, SyncError> {
    let cfg = a.vps.ssh()?;
    let session =
        keep_helper.then(|| Arc::new(filesync::Session::new(Arc::new(SshHost::new(cfg.clone())))));
    let vps = Vps::new(
        Arc::new(SshHost::new(cfg)),
        a.vps.remote_data_dir.join("filestore"),
        session,
    );
    let mut w = Watch::new(
        vps,
        a.local.local_data_dir.join("filestore"),
        a.local.state_dir.clone(),
    );
    w.only = a.local.dbs.clone();
    w.rescan = a.rescan;
    w.opts.verify_sha1 = a.verify;
    Ok(w)
}

fn peak_memory_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// One pass, printed; exit 1 when the VPS lacks or has corrupt referenced files.
async fn pass(a: &SyncArgs, w: &mut Watch, quiet: bool) -> Outcome {
    let start = Instant::now();
    let mut problems = false;
    for r in w.pass(&PgStandby(a.local.standby.clone())).await? {
        let db = &r.db;
        if r.fetched > 0 || !quiet {
            cli::say!(
                "{db}: {} referenced, {} fetched ({} KiB), {} skipped, {} missing on the VPS",
                r.referenced,
                r.fetched,
                r.bytes / 1024,
                r.skipped,
                r.missing_on_vps.len()
            );
        }
        if a.stats {
            cli::say!(
                "{db}: query {} ms, diff {} ms, fetch {} ms, save index {} ms",
                r.query_ms,
                r.diff_ms,
                r.fetch_ms,
                r.persist_ms
            );
        }
        for m in &r.missing_on_vps {
            cli::say!("{db}: MISSING on the VPS: {m}");
        }
        for c in &r.corrupt_on_vps {
            cli::say!("{db}: CORRUPT on the VPS (content does not match its name): {c}");
        }
        problems |= !r.missing_on_vps.is_empty() || !r.corrupt_on_vps.is_empty();
    }
    if a.stats {
        cli::say!(
            "pass took {:.3} s, peak memory {} KiB",
            start.elapsed().as_secs_f64(),
            peak_memory_kb()
        );
    }
    Ok(ExitCode::from(u8::from(problems)))
}

async fn databases(local: &LocalArgs) -> Result<Vec<String>, SyncError> {
    filesync::watch::databases_or(&PgStandby(local.standby.clone()), &local.dbs).await
}

async fn audit(a: &args::AuditArgs) -> Outcome {
    let mut healthy = true;
    let mut reports = Vec::new();
    let standby = PgStandby(a.local.standby.clone());
    for db in databases(&a.local).await? {
        let conn = standby.database(&db).await?;
        let fs = a.local.local_data_dir.join("filestore");
        let r = filesync::audit::audit(conn.as_ref(), &db, &fs, a.verify).await?;
        healthy &= r.healthy();
        reports.push(r);
    }
    if a.json {
        cli::say!(
            "{}",
            serde_json::to_string_pretty(&reports).unwrap_or_default()
        );
    }
    for r in reports.iter().filter(|_| !a.json) {
        cli::say!(
            "{}: {} checked, {} missing, {} truncated, {} corrupt",
            r.db,
            r.checked,
            r.missing.len(),
            r.truncated.len(),
            r.corrupt.len()
        );
        for (what, list) in [
            ("MISSING", &r.missing),
            ("TRUNCATED", &r.truncated),
            ("CORRUPT", &r.corrupt),
        ] {
            for n in list {
                cli::say!("{}: {what} {n}", r.db);
            }
        }
    }
    Ok(ExitCode::from(u8::from(!healthy)))
}

async fn prune(a: &args::PruneArgs) -> Outcome {
    let opts = filesync::prune::PruneOptions {
        older_than: Duration::from_secs(a.older_than_hours.saturating_mul(3600)),
        dry_run: a.dry_run,
        move_to: a.move_to.clone(),
    };
    let local_fs = a.local.local_data_dir.join("filestore");
    let standby = PgStandby(a.local.standby.clone());
    let verb = match (a.dry_run, &a.move_to) {
        (true, _) => "would remove",
        (false, Some(_)) => "moved aside",
        (false, None) => "removed",
    };
    for db in databases(&a.local).await? {
        let conn = standby.database(&db).await?;
        let mut index = Index::load_or_build(
            &a.local.state_dir.join(format!("{db}.index")),
            &local_fs.join(&db),
        )?;
        let r = filesync::prune::prune(
            conn.as_ref(),
            &db,
            &local_fs,
            &mut index,
            &a.local.state_dir,
            &opts,
        )
        .await?;
        cli::say!(
            "{db}: {} files, {} unreferenced ({} seen so for the first time), {verb} {} ({} KiB)",
            r.present,
            r.unreferenced,
            r.new_unreferenced,
            r.removed.len(),
            r.bytes / 1024
        );
        for n in &r.removed {
            cli::say!("{db}: {verb} {n}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn ssh_setup(a: &args::SshSetupArgs) -> Outcome {
    let cfg = a.vps.ssh()?;
    let target = filesync::rsync::SshTarget {
        user: cfg.user.clone(),
        host: cfg.host.clone(),
        port: cfg.port,
        identity: a.home.join(".ssh/id_ed25519"),
        known_hosts: a.home.join(".ssh/known_hosts"),
    };
    let given = a.confirm_fingerprint.clone();
    let confirm = |k: &host::ScannedKey| -> filesync::Result<String> {
        cli::say!(
            "{}:{} offers {} key {}",
            cfg.host,
            cfg.port,
            k.key_type,
            k.fingerprint
        );
        if let Some(f) = given {
            return Ok(f);
        }
        if !std::io::stdin().is_terminal() {
            return Err(SyncError::Invalid {
                what: "fingerprint".into(),
                reason: "not on a terminal: pass --confirm-fingerprint with the fingerprint you checked on the VPS".into(),
            });
        }
        print!("Type the fingerprint you see on the VPS to trust it: ");
        let _ = std::io::stdout().flush();
        let mut line = String::new();
        let _ = std::io::stdin().lock().read_line(&mut line);
        Ok(line.trim().to_owned())
    };
    let admin = SshHost::new(cfg.clone());
    let r = filesync::sshsetup::setup(
        &LocalHost::new(),
        &admin,
        &target,
        &a.os_user,
        &a.home,
        &a.alias,
        confirm,
    )
    .await?;
    let done = if r.key_installed {
        "installed"
    } else {
        "already installed"
    };
    cli::say!(
        "key {done} on the VPS; Host {} in {}",
        a.alias,
        r.config.display()
    );
    Ok(ExitCode::SUCCESS)
}

async fn run(cli: Cli) -> Outcome {
    match cli.command {
        Command::Sync(a) => pass(&a, &mut watch_for(&a, false)?, false).await,
        Command::Watch(w) => {
            let mut watch = watch_for(&w.sync, true)?;
            let every = Duration::from_secs(w.interval.max(1));
            filesync::watch::every(every, "filesync", async || {
                pass(&w.sync, &mut watch, true).await.map(drop)
            })
            .await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Seed(a) => {
            let t = a.vps.target()?;
            let mut last = 0u8;
            let mut show = |b: u64, p: u8| {
                if p >= last.saturating_add(5) || p == 100 {
                    eprintln!("  {p}% ({} MiB)", b / (1024 * 1024));
                    last = p;
                }
            };
            filesync::rsync::seed(
                &LocalHost::new(),
                &t,
                &a.vps.remote_data_dir,
                &a.dest,
                None,
                &mut show,
            )
            .await?;
            cli::say!(
                "copied {} into {}",
                a.vps.remote_data_dir.display(),
                a.dest.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit(a) => audit(&a).await,
        Command::Prune(a) => prune(&a).await,
        Command::SshSetup(a) => ssh_setup(&a).await,
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::init_logs(&cli.logs);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("filesync: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("filesync: {e}");
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                eprintln!("  caused by: {s}");
                src = s.source();
            }
            ExitCode::from(2)
        }
    }
}
