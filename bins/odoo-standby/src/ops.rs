//! The operations: `protect`, `failover`, `failback`, `switchover`, `resume`, `status`, `sync`. Each loads
//! the config, builds the instance's world and calls one function of the `failover` crate.

use std::error::Error;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use failover::{Config, Env, Operation, Plan, RunOptions, Term};

/// Options shared by the mutating operations.
#[derive(clap::Args, Debug)]
pub struct OpArgs {
    /// The instance (its `name` in the config).
    pub name: String,
    /// Print the plan (commands, SQL, files) and touch nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// With --dry-run: the plan as JSON.
    #[arg(long, requires = "dry_run")]
    pub json: bool,
}

/// What the operator says about the VPS and the question (failover, resume).
#[derive(clap::Args, Debug)]
pub struct FenceArgs {
    /// Do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,
    /// Go on although the VPS's PostgreSQL accepts writes, stopping it over SSH first.
    #[arg(long)]
    pub force: bool,
    /// Go on although the VPS cannot be reached (down, or cut off): nothing can fence it,
    /// so say that you know. --yes does not imply it.
    #[arg(long)]
    pub vps_unreachable: bool,
}

/// What the operator lets a failback discard (failback, resume).
#[derive(clap::Args, Debug)]
pub struct DiscardArgs {
    /// Go on although the VPS wrote after the split: its writes are kept where the report
    /// says, and pg_rewind discards them from its live database. --yes does not imply it.
    #[arg(long)]
    pub discard_vps_writes: bool,
}

impl FenceArgs {
    /// As run options.
    pub fn options(&self) -> RunOptions {
        RunOptions {
            yes: self.yes,
            force: self.force,
            vps_unreachable: self.vps_unreachable,
            ..Default::default()
        }
    }
}

fn env(config: &Path, name: &str) -> Result<Env, Box<dyn Error>> {
    let cfg = Config::load(config)?;
    Ok(Env::new(&cfg, config, name)?)
}

/// Runs (or with --dry-run prints) `op` for an instance.
pub async fn operation(
    config: &Path,
    op: Operation,
    args: &OpArgs,
    opts: RunOptions,
) -> Result<ExitCode, Box<dyn Error>> {
    let env = env(config, &args.name)?;
    if args.dry_run {
        let plan = Plan::new(op, &env);
        if args.json {
            cli::say!("{}", serde_json::to_string_pretty(&plan)?);
        } else {
            cli::say(&plan.render());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let clock = std::time::Instant::now();
    failover::start(&env, op, &opts, &Term::new()).await?;
    cli::say!(
        "{} of {} complete in {:.1} s",
        op.as_str(),
        env.name(),
        clock.elapsed().as_secs_f64()
    );
    if matches!(op, Operation::Failover | Operation::Switchover) {
        print_left_to_do(&env);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_left_to_do(env: &Env) {
    let site = env.layout.dir().join(format!("nginx_{}.conf", env.name()));
    cli::say!("Left to you:");
    cli::say!(
        "  - point the VPS's DNS name to this server ({})",
        env.cfg.backup.address
    );
    cli::say!(
        "  - enable the nginx site: ln -s {} /etc/nginx/sites-enabled/ && nginx -t && systemctl reload nginx (check its server_name first)",
        site.display()
    );
}

/// `vps-sudoers NAME`: the drop-in, on stdout.
pub fn vps_sudoers(config: &Path, name: &str) -> Result<ExitCode, Box<dyn Error>> {
    let env = env(config, name)?;
    cli::say(&failover::vps_sudoers(&env)?);
    Ok(ExitCode::SUCCESS)
}

/// `resume NAME`.
pub async fn resume(
    config: &Path,
    name: &str,
    opts: RunOptions,
) -> Result<ExitCode, Box<dyn Error>> {
    let env = env(config, name)?;
    match failover::resume(&env, &opts, &Term::new()).await? {
        Some(op) => {
            cli::say!("resumed {} of {name} complete", op.as_str());
            if matches!(op, Operation::Failover | Operation::Switchover) {
                print_left_to_do(&env);
            }
        }
        None => cli::say!("nothing to resume for {name}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// `drill NAME`: the report; exit 1 when the drill failed.
pub async fn drill(config: &Path, name: &str, json: bool) -> Result<ExitCode, Box<dyn Error>> {
    let env = env(config, name)?;
    let report = failover::drill(&env, &Term::new()).await?;
    if json {
        cli::say!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        cli::say(&report.render());
    }
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `abort NAME`: the interrupted run set aside, and what it leaves.
pub async fn abort(config: &Path, name: &str) -> Result<ExitCode, Box<dyn Error>> {
    let env = env(config, name)?;
    let Some(a) = failover::abort(&env)? else {
        cli::say!("{name}: no operation is interrupted; nothing to abort");
        return Ok(ExitCode::SUCCESS);
    };
    let op = &a.current.operation;
    cli::say!(
        "{name}: the interrupted {op} (run {}) is set aside ({}); nothing was changed on either machine",
        a.current.run,
        env.state.aborted().display()
    );
    let list = |v: &[&str]| {
        if v.is_empty() {
            "none".to_owned()
        } else {
            v.join(", ")
        }
    };
    cli::say!("  done by that run (its journal): {}", list(&a.done));
    cli::say!(
        "  not recorded done: {} (the first may have acted before the run ended; every step checks before it acts)",
        list(&a.not_done)
    );
    cli::say!("  left as it is now:");
    match failover::Sides::read(&env).await {
        Ok(s) => {
            cli::say!("    the cluster here ({}) {}", env.standby.label(), s.here);
            cli::say!(
                "    the VPS's cluster ({}) {}",
                env.vps_cluster.label(),
                s.vps
            );
        }
        Err(e) => cli::say!("    the clusters: cannot tell ({})", failover::chain(&e)),
    }
    let active = |b: Result<bool, failover::FailoverError>| match b {
        Ok(true) => "runs".to_owned(),
        Ok(false) => "does not run".to_owned(),
        Err(e) => format!("cannot tell ({})", failover::chain(&e)),
    };
    cli::say!(
        "    Odoo here: {}",
        active(env.here.is_active(&env.odoo_service()).await)
    );
    cli::say!(
        "    Odoo on the VPS: {}",
        active(env.there.is_active(&env.vps_odoo_service()).await)
    );
    cli::say!(
        "    the file syncs here: {}",
        if env.state.paused().exists() {
            "paused (a failover holds them)"
        } else {
            "not paused"
        }
    );
    cli::say!(
        "  next: `odoo-standby status {name}`, then the operation that fits the roles above (each step checks what is already in place); a {op} starts again from its first step"
    );
    Ok(ExitCode::SUCCESS)
}

/// The instance named (checked against the config), or all of them.
fn selected(cfg: &Config, name: Option<&str>) -> Result<Vec<String>, Box<dyn Error>> {
    Ok(match name {
        Some(n) => vec![cfg.instance(n)?.name.clone()],
        None => cfg.instances.iter().map(|i| i.name.clone()).collect(),
    })
}

/// How `status` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusFormat {
    /// One table for all instances, then each problem with its fix.
    Text,
    /// [`failover::InstanceStatus`] per instance, as an array.
    Json,
    /// The Nagios plugin format: one line, perfdata, then a line per problem.
    Nagios,
}

/// `status [NAME]`: text and JSON exit 0 healthy, 1 a problem; `--nagios` exits 0 OK,
/// 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
pub async fn status(
    config: &Path,
    name: Option<&str>,
    format: StatusFormat,
    limit: Duration,
    parallel: usize,
    live: bool,
) -> Result<ExitCode, Box<dyn Error>> {
    let cfg = Config::load(config)?;
    let names = selected(&cfg, name)?;
    let mut envs = Vec::new();
    for n in &names {
        envs.push(Env::new(&cfg, config, n)?);
    }
    // One instance named: the operator is looking at it, ask its VPS now.
    let use_seen = !live && name.is_none();
    let all = failover::status_all(envs, limit, parallel, use_seen).await;
    let out = match format {
        StatusFormat::Json => format!("{}\n", serde_json::to_string_pretty(&all)?),
        StatusFormat::Text => crate::show::table(&all, crate::show::colour()),
        StatusFormat::Nagios => crate::show::nagios(&all),
    };
    cli::say(&out);
    let worst = all.iter().filter_map(|s| s.severity).max();
    Ok(match (format, worst) {
        (_, None) => ExitCode::SUCCESS,
        (StatusFormat::Nagios, Some(w)) => ExitCode::from(w.nagios_code()),
        _ => ExitCode::from(1),
    })
}

/// `check --online [NAME] [--nagios]`: every aspect of every instance (in parallel), one
/// line each.
pub async fn check_online(
    config: &Path,
    name: Option<&str>,
    nagios: bool,
) -> Result<ExitCode, Box<dyn Error>> {
    use failover::check::Level;
    let cfg = Config::load(config)?;
    let names = selected(&cfg, name)?;
    let mut tasks = Vec::new();
    for n in &names {
        let env = Env::new(&cfg, config, n)?;
        tasks.push(tokio::spawn(
            async move { failover::check::online(&env).await },
        ));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await?);
    }
    let worst = all.iter().map(|a| a.level).max().unwrap_or(Level::Ok);
    let lines: Vec<String> = all
        .iter()
        .map(|a| {
            let fix = if a.fix.is_empty() {
                String::new()
            } else {
                format!(" (fix: {})", a.fix)
            };
            format!(
                "{:<7} {} {}: {}{fix}",
                a.level.word(),
                a.instance,
                a.name,
                a.detail
            )
        })
        .collect();
    if nagios {
        let bad: Vec<String> = all
            .iter()
            .filter(|a| a.level != Level::Ok)
            .map(|a| format!("{} {} {}", a.instance, a.name, a.level.word()))
            .collect();
        let count = |l: Level| all.iter().filter(|a| a.level == l).count();
        let state = match worst {
            Level::Ok => "OK",
            Level::Warning => "WARNING",
            Level::Failed => "CRITICAL",
        };
        let summary = if bad.is_empty() {
            format!("{} aspect(s) of {} instance(s) OK", all.len(), names.len())
        } else {
            bad.join(", ")
        };
        cli::say!(
            "ODOO-STANDBY-CHECK {state} - {summary} | 'failed'={};;1;0; 'warnings'={};1;;0; 'ok'={};;;0;",
            count(Level::Failed),
            count(Level::Warning),
            count(Level::Ok)
        );
    } else {
        cli::say!(
            "{:<7} config: {} is valid ({} instance(s))",
            "OK",
            config.display(),
            cfg.instances.len()
        );
    }
    for l in lines {
        cli::say!("{l}");
    }
    Ok(ExitCode::from(match (worst, nagios) {
        (Level::Ok, _) => 0,
        (Level::Warning, _) => 1,
        (Level::Failed, true) => 2,
        (Level::Failed, false) => 1,
    }))
}

/// `history [NAME] [--json]`: the operations' steps (the journal) and the events (problems
/// seen and cleared, the sync's failures, operations started, failed, ended), oldest first.
pub fn history(config: &Path, name: Option<&str>, json: bool) -> Result<ExitCode, Box<dyn Error>> {
    let cfg = Config::load(config)?;
    let names = selected(&cfg, name)?;
    let mut rows: Vec<(u64, serde_json::Value, String)> = Vec::new();
    for n in &names {
        let env = Env::new(&cfg, config, n)?;
        let journal = std::fs::read_to_string(env.state.journal()).unwrap_or_default();
        for e in journal
            .lines()
            .filter_map(|l| serde_json::from_str::<failover::Entry>(l).ok())
            .filter(|e| e.event != "started")
        {
            let text = format!(
                "{n} step {} of {} ({}): {}",
                e.step, e.operation, e.run, e.event
            );
            rows.push((
                e.at,
                serde_json::json!({"at": e.at, "instance": n, "kind": "step", "operation": e.operation, "run": e.run, "step": e.step, "event": e.event}),
                text,
            ));
        }
        for e in failover::events::read(&env) {
            let text = format!(
                "{n} {} {}: {}",
                e.severity.to_uppercase(),
                e.event,
                e.message
            );
            let mut v = serde_json::to_value(&e)?;
            v["kind"] = "event".into();
            rows.push((e.at, v, text));
        }
    }
    rows.sort_by_key(|r| r.0);
    if json {
        let v: Vec<&serde_json::Value> = rows.iter().map(|r| &r.1).collect();
        cli::say!("{}", serde_json::to_string_pretty(&v)?);
    } else if rows.is_empty() {
        cli::say!("nothing recorded yet");
    } else {
        for (at, _, text) in &rows {
            cli::say!("{} UTC  {text}", failover::events::utc(*at));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `sync NAME [--watch]`.
pub async fn sync(
    config: &Path,
    name: &str,
    watch: bool,
    interval: u64,
) -> Result<ExitCode, Box<dyn Error>> {
    let env = env(config, name)?;
    if watch {
        failover::watch(&env, Duration::from_secs(interval.max(1))).await?;
        return Ok(ExitCode::SUCCESS);
    }
    match failover::sync_pass(&env, &mut failover::Passes::default()).await? {
        None => cli::say!(
            "{name}: syncs are paused ({} exists: a failover holds this instance)",
            failover::paused_file(&env).display()
        ),
        Some(n) => cli::say!("{name}: {n} file(s) fetched"),
    }
    Ok(ExitCode::SUCCESS)
}

/// `refresh NAME`: the sources and requirement.txt, now.
pub async fn refresh(config: &Path, name: &str) -> Result<ExitCode, Box<dyn Error>> {
    let env = env(config, name)?;
    match failover::refresh(&env).await? {
        None => cli::say!(
            "{name}: not refreshed ({} exists: a failover holds this instance)",
            failover::paused_file(&env).display()
        ),
        Some(r) => cli::say!(
            "{name}: sources mirrored; {} package(s) in the VPS's pip freeze, {} {}",
            r.packages,
            env.layout.requirements().display(),
            if r.requirements_changed {
                "written"
            } else {
                "unchanged"
            }
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// `ssh-setup NAME`: the backup user's SSH access to the VPS, the host key confirmed by the
/// operator (`--fingerprint`, or typed at the terminal).
pub async fn ssh_setup(
    config: &Path,
    name: &str,
    fingerprint: Option<String>,
) -> Result<ExitCode, Box<dyn Error>> {
    use std::io::{BufRead, IsTerminal, Write};
    let env = env(config, name)?;
    let (host, port) = (env.ssh.host.clone(), env.ssh.port);
    let r = failover::ssh_setup(&env, |k| {
        cli::say!("{host}:{port} offers {} key {}", k.key_type, k.fingerprint);
        if let Some(f) = fingerprint {
            return Ok(f);
        }
        if !std::io::stdin().is_terminal() {
            return Err(failover::FailoverError::Refused(
                "not on a terminal: pass --fingerprint with the fingerprint you read on the VPS (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub)".into(),
            ));
        }
        print!("Type the fingerprint you read on the VPS to trust it: ");
        let _ = std::io::stdout().flush();
        let mut line = String::new();
        let _ = std::io::stdin().lock().read_line(&mut line);
        Ok(line.trim().to_owned())
    })
    .await?;
    cli::say!(
        "{name}: host key {} in {}; key {} {}@{host}; logged in with it",
        if r.host_key_added { "added" } else { "already" },
        env.ssh.known_hosts.display(),
        if r.key_installed {
            "installed for"
        } else {
            "already works for"
        },
        env.ssh.user
    );
    Ok(ExitCode::SUCCESS)
}
