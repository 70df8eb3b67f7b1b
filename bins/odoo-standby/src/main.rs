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
    match Cli::parse().command {
        Command::Init => {
            print!("{}", failover::EXAMPLE);
            ExitCode::SUCCESS
        }
        Command::Check { config } => report(check(&config)),
        Command::Sandbox(cmd) => report(cmd.run()),
        Command::Demo(args) => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build();
            match runtime {
                Ok(rt) => report(rt.block_on(args.run())),
                Err(e) => {
                    eprintln!("error: cannot start the async runtime: {e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}

/// Validates a config file and summarizes it.
fn check(config: &std::path::Path) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let cfg = failover::Config::load(config)?;
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
    Ok(ExitCode::SUCCESS)
}

/// Prints an error and its causes; exit code 2 for errors.
fn report(result: Result<ExitCode, Box<dyn std::error::Error>>) -> ExitCode {
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
