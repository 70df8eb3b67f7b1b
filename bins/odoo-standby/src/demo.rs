//! `odoo-standby demo`: for now, a smoke run of the sandbox.

use std::error::Error;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use host::{CommandSpec, Host, SshAuth, SshConfig, SshHost};
use sandbox::{Sandbox, SizeMix};

/// Options of `demo`.
#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// How many attachments the demo database gets.
    #[arg(long, default_value_t = 200)]
    attachments: usize,
}

fn step(t0: Instant, what: &str) {
    println!("[{:>6.2}s] {what}", t0.elapsed().as_secs_f64());
}

impl DemoArgs {
    /// Runs the demo; `Ok(1)` when a check fails.
    pub async fn run(self) -> Result<ExitCode, Box<dyn Error>> {
        let t0 = Instant::now();
        step(
            t0,
            "starting the sandbox (temporary directory, servers on 127.0.0.1 only)",
        );
        let mut sb = Sandbox::new()?;
        println!("         root: {}", sb.root().display());

        let vps = sb.add_cluster("vps")?;
        step(
            t0,
            &format!("VPS PostgreSQL cluster up on 127.0.0.1:{}", vps.port()),
        );
        vps.create_odoo_db("clientes", "odoo")?;
        let vps_data = sb.dir("vps_data_dir")?;
        let files =
            vps.add_attachments("clientes", &vps_data, self.attachments, &SizeMix::odoo(), 7)?;
        let bytes: u64 = files.iter().map(|a| a.file_size).sum();
        step(
            t0,
            &format!(
                "Odoo database `clientes`: {} attachments, {} KiB in the filestore",
                files.len(),
                bytes / 1024
            ),
        );

        let backup = sb.add_standby("backup", &vps)?;
        step(
            t0,
            &format!(
                "backup cluster cloned with pg_basebackup, streaming on 127.0.0.1:{}",
                backup.port()
            ),
        );
        vps.psql(
            "clientes",
            "INSERT INTO res_partner (name) SELECT 'partner ' || g FROM generate_series(1, 100) g",
        )?;
        backup.wait_for(
            "clientes",
            "SELECT count(*) FROM res_partner",
            "100",
            Duration::from_secs(30),
        )?;
        let state = vps.psql("postgres", "SELECT state FROM pg_stat_replication")?;
        step(
            t0,
            &format!("100 rows written on the VPS are on the backup; replication state: {state}"),
        );

        let sshd = sb.start_sshd()?;
        let ssh = SshHost::new(SshConfig::new(
            sshd.user.clone(),
            sshd.host.clone(),
            sshd.port,
            SshAuth::KeyFile(sshd.client_key.clone()),
            sshd.known_hosts.clone(),
        ));
        let out = ssh.run(&CommandSpec::new("uname").arg("-n")).await?;
        step(
            t0,
            &format!(
                "sshd on 127.0.0.1:{}: ran `uname -n` over SSH -> {}",
                sshd.port,
                out.stdout_text().trim()
            ),
        );

        let src = sb.dir("odoo_src")?;
        let odoo_bin = sandbox::write_odoo_source(&src)?;
        let conf = sb.root().join("odoo.conf");
        std::fs::write(
            &conf,
            format!(
                "[options]\naddons_path = {}\ndata_dir = {}\ndb_host = {}\ndb_port = {}\ndb_user = odoo\n",
                src.join("addons").display(),
                vps_data.display(),
                vps.socket_dir().display(),
                vps.port()
            ),
        )?;
        let smoke = CommandSpec::new(odoo_bin.display().to_string()).args([
            "-c",
            &conf.display().to_string(),
            "-d",
            "clientes",
            "--stop-after-init",
            "--logfile=",
        ]);
        let ok = host::LocalHost::new()
            .run_unchecked(&smoke.run_as(sb.run_user().name.clone()))
            .await?;
        step(
            t0,
            &format!(
                "stand-in odoo-bin smoke test on the VPS database: {}",
                ok.status
            ),
        );

        let healthy = ok.status.success() && state == "streaming";
        println!();
        println!("{:<10} {:>8} {:>12}", "server", "rows", "attachments");
        for c in [&vps, &backup] {
            let rows = c.psql("clientes", "SELECT count(*) FROM res_partner")?;
            let att = c.psql(
                "clientes",
                "SELECT count(*) FROM ir_attachment WHERE store_fname IS NOT NULL",
            )?;
            println!("{:<10} {rows:>8} {att:>12}", c.name());
        }
        drop(sb);
        step(t0, "sandbox torn down: every process it started is stopped");
        Ok(if healthy {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        })
    }
}
