//! `odoo-standby-sandbox demo`: the whole lifecycle on a throwaway sandbox. Sandbox up, protect,
//! status, writes on the VPS (rows and attachments), the VPS killed (postgres SIGKILL, its
//! sshd stopped), failover, writes on the backup, the VPS back, failback, status, sandbox
//! down; then a table of rows and files on each side, and what was lost.

use std::collections::BTreeSet;
use std::error::Error;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use failover::{Config, Env, Operation, RunOptions};
use sandbox::{Sandbox, SizeMix};

use failover::Term;

/// Options of `demo`.
#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// How many attachments the demo database starts with.
    #[arg(long, default_value_t = 200)]
    attachments: usize,
}

fn step(t0: Instant, what: &str) {
    cli::say!("\n[{:>6.2}s] == {what}", t0.elapsed().as_secs_f64());
}

/// Every `store_fname` the database references.
async fn referenced(db: &dyn pgrepl::Sql) -> Result<BTreeSet<String>, Box<dyn Error>> {
    Ok(db
        .query("SELECT DISTINCT store_fname FROM ir_attachment WHERE store_fname IS NOT NULL")
        .await?
        .into_iter()
        .filter_map(|r| r.into_iter().next().flatten())
        .collect())
}

fn present(filestore: &Path, names: &BTreeSet<String>) -> usize {
    names.iter().filter(|n| filestore.join(n).is_file()).count()
}

async fn count(db: &dyn pgrepl::Sql, sql: &str) -> i64 {
    pgrepl::query_value(db, sql)
        .await
        .ok()
        .flatten()
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1)
}

/// Waits until the instance is healthy (replicated, files synced), up to `limit`.
async fn wait_healthy(env: &Env, limit: Duration) -> failover::InstanceStatus {
    let start = Instant::now();
    loop {
        let s = failover::status(env).await;
        if s.healthy || start.elapsed() > limit {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn show(s: &failover::InstanceStatus) {
    cli::say!(
        "  {}: {} ({}), lag {} bytes, {} file(s) missing, odoo unit {}, syncs {}",
        s.name,
        if s.healthy { "healthy" } else { "UNHEALTHY" },
        s.role,
        s.db.lag_bytes
            .map(|v| v.to_string())
            .unwrap_or_else(|| "-".into()),
        s.files.missing,
        s.odoo_unit,
        s.syncs
    );
    for p in &s.problems {
        cli::say!("    - {p}");
    }
}

impl DemoArgs {
    /// Runs the demo; `Ok(1)` when anything was lost.
    pub async fn run(self) -> Result<ExitCode, Box<dyn Error>> {
        let t0 = Instant::now();
        step(
            t0,
            "sandbox up: a VPS (PostgreSQL, Odoo files, sshd) and a backup server on 127.0.0.1",
        );
        let mut sb = Sandbox::new()?;
        let w = sandbox::vps_world(&mut sb, self.attachments)?;
        cli::say!(
            "  root {}, config {}",
            sb.root().display(),
            w.config.display()
        );
        let cfg = Config::load(&w.config)?;
        let mut env = Env::new(&cfg, &w.config, "vps1")?;
        // The sync service runs the operator's command, built beside this one.
        env.program = std::env::current_exe()?.with_file_name("odoo-standby");
        if !env.program.exists() {
            return Err(format!(
                "{} is missing: build it first (cargo build --release -p odoo-standby)",
                env.program.display()
            )
            .into());
        }
        // Production runs on the VPS, as in the users' world.
        env.there.start(&env.vps_odoo_service()).await?;
        let result = self.lifecycle(t0, &mut sb, &w, &env).await;
        // Whatever happened: stop the services the run started, then the servers.
        for (sup, svc) in [
            (&env.here, env.sync_service()),
            (&env.here, env.odoo_service()),
            (&env.there, env.vps_odoo_service()),
        ] {
            let _ = sup.stop(&svc).await;
        }
        drop(sb);
        step(t0, "sandbox down: every process it started is stopped");
        result
    }

    async fn lifecycle(
        &self,
        t0: Instant,
        sb: &mut Sandbox,
        w: &sandbox::World,
        env: &Env,
    ) -> Result<ExitCode, Box<dyn Error>> {
        let opts = RunOptions {
            restart_vps: true,
            yes: true,
            force: false,
            // The demo's VPS is killed before the failover: it cannot be reached.
            vps_unreachable: true,
            // The demo's VPS comes back only for the failback; what it wrote is kept.
            discard_vps_writes: true,
            reclone: false,
        };
        step(t0, "odoo-standby protect vps1 --restart-vps");
        failover::start(env, Operation::Protect, &opts, &Term::new()).await?;

        step(t0, "odoo-standby status");
        show(&wait_healthy(env, Duration::from_secs(30)).await);

        step(t0, "writes on the VPS: 100 orders, 20 attachments");
        let vps_db = env.vps_psql("clientes");
        pgrepl::execute(&vps_db, "CREATE TABLE demo_orders (id int PRIMARY KEY, origin text); ALTER TABLE demo_orders OWNER TO odoo").await?;
        pgrepl::execute(
            &vps_db,
            "INSERT INTO demo_orders SELECT g, 'vps' FROM generate_series(1, 100) g",
        )
        .await?;
        w.vps
            .add_attachments("clientes", &w.data_dir, 20, &SizeMix::odoo(), 8)?;
        let s = wait_healthy(env, Duration::from_secs(30)).await;
        show(&s);

        step(
            t0,
            "the VPS dies: its postgres gets SIGKILL, its sshd is stopped",
        );
        drop(vps_db);
        // All of it: its Odoo too (on one machine it would keep the port the backup's
        // Odoo needs).
        env.there.stop(&env.vps_odoo_service()).await?;
        w.vps.kill();
        sb.stop_sshd();

        step(t0, "odoo-standby failover vps1 --yes");
        let clock = Instant::now();
        failover::start(env, Operation::Failover, &opts, &Term::new()).await?;
        let failover_s = clock.elapsed().as_secs_f64();
        cli::say!("  failover took {failover_s:.1} s (command start to Odoo unit started)");

        step(
            t0,
            "writes on the backup (now production): 50 orders, 10 attachments",
        );
        let backup = env.standby_sql("clientes");
        pgrepl::execute(
            &backup,
            "INSERT INTO demo_orders SELECT g, 'backup' FROM generate_series(101, 150) g",
        )
        .await?;
        for i in 0..10u32 {
            let content = format!("written on the backup while the VPS was away, #{i}").repeat(100);
            let (_, sql) =
                sandbox::attachment(&env.layout.data_dir(), "clientes", content.as_bytes())?;
            pgrepl::execute(&backup, &sql).await?;
        }

        step(t0, "the VPS comes back (postgres and sshd restarted)");
        w.vps.start()?;
        sb.restart_sshd()?;

        step(t0, "odoo-standby failback vps1");
        let clock = Instant::now();
        failover::start(env, Operation::Failback, &opts, &Term::new()).await?;
        cli::say!("  failback took {:.1} s", clock.elapsed().as_secs_f64());

        step(t0, "odoo-standby status");
        let s = wait_healthy(env, Duration::from_secs(30)).await;
        show(&s);

        // The table: what each side has of what was committed.
        let vps_db = env.vps_psql("clientes");
        let names = referenced(&vps_db).await?;
        let rows_vps = count(&vps_db, "SELECT count(*) FROM demo_orders").await;
        let backup = env.standby_sql("clientes");
        let rows_backup = count(&backup, "SELECT count(*) FROM demo_orders").await;
        let files_vps = present(&w.data_dir.join("filestore/clientes"), &names);
        let files_backup = present(&env.layout.data_dir().join("filestore/clientes"), &names);
        let want_rows = 150i64;
        let want_files = names.len();
        let lost_rows = (want_rows - rows_vps.min(rows_backup)).max(0);
        let lost_files = want_files - files_vps.min(files_backup);
        cli::say!();
        cli::say!("{:<28} {:>10} {:>10}", "", "VPS", "backup");
        cli::say!(
            "{:<28} {:>10} {:>10}",
            "orders committed: 150",
            rows_vps,
            rows_backup
        );
        cli::say!(
            "{:<28} {:>10} {:>10}",
            format!("files referenced: {want_files}"),
            files_vps,
            files_backup
        );
        cli::say!("lost: {} rows, {} files", lost_rows, lost_files);
        cli::say!("failover time: {failover_s:.1} s");
        Ok(if lost_rows == 0 && lost_files == 0 && s.healthy {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        })
    }
}
