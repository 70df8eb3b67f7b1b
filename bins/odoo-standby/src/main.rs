//! `odoo-standby`: the operator's command line.
//!
//! Today it has `init` (a commented example config), `check` (validate a config) and `demo`
//! (a smoke run of the sandbox); `protect`, `status`, `failover`, `failback` and `resume` come
//! with issue #6.

mod demo;
mod sandbox_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Keep a warm copy of Odoo instances on a backup server.
///
/// Exit codes: 0 success, 1 a problem was found, 2 error.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print a commented example configuration (`odoo-standby init > /etc/odoo-standby/config.toml`).
    Init,
    /// Validate a configuration file and summarize it.
    Check {
        /// The configuration file.
        #[arg(short, long, default_value = "/etc/odoo-standby/config.toml")]
        config: std::path::PathBuf,
    },
    /// A VPS on this machine, left running for scripting (`up DIR`, `down DIR`).
    #[command(subcommand)]
    Sandbox(sandbox_cmd::SandboxCmd),
    /// Start a throwaway VPS and backup server on this machine (real PostgreSQL and sshd on
    /// loopback), show replication and SSH working, then tear everything down.
    Demo(demo::DemoArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Command::Init => {
            print!("{}", failover::EXAMPLE);
            return ExitCode::SUCCESS;
        }
        Command::Check { config } => {
            return match failover::Config::load(config) {
                Ok(cfg) => {
                    println!(
                        "{}: valid; backup {} (PostgreSQL {}), {} instance(s):",
                        config.display(),
                        cfg.backup.address,
                        cfg.backup.pg_version,
                        cfg.instances.len()
                    );
                    for i in &cfg.instances {
                        println!(
                            "  {}: ssh {}, standby port {}",
                            i.name, i.ssh, i.standby_port
                        );
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
            };
        }
        Command::Demo(_) => {}
        Command::Sandbox(_) => {}
    }
    if let Command::Sandbox(cmd) = cli.command {
        return match cmd.run() {
            Ok(code) => code,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Demo(args) => args.run().await,
            Command::Init | Command::Check { .. } | Command::Sandbox(_) => Ok(ExitCode::SUCCESS),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            let mut source = e.source();
            while let Some(s) = source {
                eprintln!("  caused by: {s}");
                source = s.source();
            }
            ExitCode::from(2)
        }
    }
}
