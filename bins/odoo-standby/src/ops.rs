//! The operations: `protect`, `failover`, `failback`, `resume`, `status`, `sync`. Each loads
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
            println!("{}", serde_json::to_string_pretty(&plan)?);
        } else {
            print!("{}", plan.render());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let clock = std::time::Instant::now();
    failover::start(&env, op, &opts, &Term).await?;
    println!(
        "{} of {} complete in {:.1} s",
        op.as_str(),
        env.name(),
        clock.elapsed().as_secs_f64()
    );
    if op == Operation::Failover {
        print_left_to_do(&env);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_left_to_do(env: &Env) {
    let site = env.layout.dir().join(format!("nginx_{}.conf", env.name()));
    println!("Left to you:");
    println!(
        "  - point the VPS's DNS name to this server ({})",
        env.cfg.backup.address
    );
    println!(
        "  - enable the nginx site: ln -s {} /etc/nginx/sites-enabled/ && nginx -t && systemctl reload nginx (check its server_name first)",
        site.display()
    );
}

/// `vps-sudoers NAME`: the drop-in, on stdout.
pub fn vps_sudoers(config: &Path, name: &str) -> Result<ExitCode, Box<dyn Error>> {
    let env = env(config, name)?;
    print!("{}", failover::vps_sudoers(&env)?);
    Ok(ExitCode::SUCCESS)
}

/// `resume NAME`.
pub async fn resume(
    config: &Path,
    name: &str,
    opts: RunOptions,
) -> Result<ExitCode, Box<dyn Error>> {
    let env = env(config, name)?;
    match failover::resume(&env, &opts, &Term).await? {
        Some(op) => {
            println!("resumed {} of {name} complete", op.as_str());
            if op == Operation::Failover {
                print_left_to_do(&env);
            }
        }
        None => println!("nothing to resume for {name}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// `abort NAME`: the interrupted run set aside, and what it leaves.
pub async fn abort(config: &Path, name: &str) -> Result<ExitCode, Box<dyn Error>> {
    let env = env(config, name)?;
    let Some(a) = failover::abort(&env)? else {
        println!("{name}: no operation is interrupted; nothing to abort");
        return Ok(ExitCode::SUCCESS);
    };
    let op = &a.current.operation;
    println!(
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
    println!("  done by that run (its journal): {}", list(&a.done));
    println!(
        "  not recorded done: {} (the first may have acted before the run ended; every step checks before it acts)",
        list(&a.not_done)
    );
    println!("  left as it is now:");
    match failover::Sides::read(&env).await {
        Ok(s) => {
            println!("    the cluster here ({}) {}", env.standby.label(), s.here);
            println!(
                "    the VPS's cluster ({}) {}",
                env.vps_cluster.label(),
                s.vps
            );
        }
        Err(e) => println!("    the clusters: cannot tell ({})", failover::chain(&e)),
    }
    let active = |b: Result<bool, failover::FailoverError>| match b {
        Ok(true) => "runs".to_owned(),
        Ok(false) => "does not run".to_owned(),
        Err(e) => format!("cannot tell ({})", failover::chain(&e)),
    };
    println!(
        "    Odoo here: {}",
        active(env.here.is_active(&env.odoo_service()).await)
    );
    println!(
        "    Odoo on the VPS: {}",
        active(env.there.is_active(&env.vps_odoo_service()).await)
    );
    println!(
        "    the file syncs here: {}",
        if env.state.paused().exists() {
            "paused (a failover holds them)"
        } else {
            "not paused"
        }
    );
    println!(
        "  next: `odoo-standby status {name}`, then the operation that fits the roles above (each step checks what is already in place); a {op} starts again from its first step"
    );
    Ok(ExitCode::SUCCESS)
}

/// `status [NAME] [--json]`: exit 0 healthy, 1 something unhealthy.
pub async fn status(
    config: &Path,
    name: Option<&str>,
    json: bool,
) -> Result<ExitCode, Box<dyn Error>> {
    let cfg = Config::load(config)?;
    let names: Vec<String> = match name {
        Some(n) => vec![cfg.instance(n)?.name.clone()],
        None => cfg.instances.iter().map(|i| i.name.clone()).collect(),
    };
    let mut all = Vec::new();
    for n in &names {
        let env = Env::new(&cfg, config, n)?;
        all.push(failover::status(&env).await);
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&all)?);
    } else {
        for s in &all {
            println!(
                "{}: {} ({}); lag {} bytes, {} s; slot holds {} bytes; {} file(s) missing; last sync {}; odoo unit {}, syncs {}",
                s.name,
                if s.healthy { "healthy" } else { "UNHEALTHY" },
                s.role,
                opt(s.db.lag_bytes),
                s.db.lag_seconds.map(|v| format!("{v:.1}")).unwrap_or_else(|| "-".into()),
                opt(s.db.slot_retained_bytes),
                s.files.missing,
                s.files
                    .last_sync_age_seconds
                    .map(|a| format!("{a} s ago"))
                    .unwrap_or_else(|| "never".into()),
                s.odoo_unit,
                s.syncs
            );
            for p in &s.problems {
                println!("  - {p}");
            }
        }
    }
    Ok(if all.iter().all(|s| s.healthy) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn opt(v: Option<i64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
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
        None => println!(
            "{name}: syncs are paused ({} exists: a failover holds this instance)",
            failover::paused_file(&env).display()
        ),
        Some(n) => println!("{name}: {n} file(s) fetched"),
    }
    Ok(ExitCode::SUCCESS)
}
