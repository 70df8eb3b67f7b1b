//! `odoo-standby-sandbox`: the one-machine sandbox from the command line, kept out of the
//! operator's `odoo-standby` (which never links the sandbox).
//!
//! - `up DIR` / `down DIR`: a VPS on this machine (PostgreSQL with an Odoo-shaped database and
//!   filestore, sshd), left running with a ready config, for scripting faults;
//! - `demo`: the whole lifecycle on a throwaway sandbox, ending with the table of what each
//!   side has (the users' world demo is `bash scripts/demo`).

mod demo;
mod sandbox_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use failover::report;

/// The one-machine sandbox of odoo-standby.
///
/// Exit codes: 0 success, 1 something was lost (demo), 2 error.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    logs: cli::LogArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Start a VPS in DIR and leave it running.
    Up {
        /// Where everything goes (new or empty).
        dir: std::path::PathBuf,
        /// Attachments in the demo database.
        #[arg(long, default_value_t = 200)]
        attachments: usize,
    },
    /// Stop every server `up` started in DIR (by pid, checked); files stay.
    Down {
        /// The directory given to `up`.
        dir: std::path::PathBuf,
    },
    /// The whole lifecycle on a throwaway sandbox, then tear everything down.
    Demo(demo::DemoArgs),
}

fn main() -> ExitCode {
    let parsed = Cli::parse();
    cli::init_logs(&parsed.logs);
    match parsed.command {
        Command::Up { dir, attachments } => report(sandbox_cmd::up(&dir, attachments)),
        Command::Down { dir } => report(sandbox_cmd::down(&dir)),
        Command::Demo(args) => {
            match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
            {
                Ok(rt) => report(rt.block_on(args.run())),
                Err(e) => {
                    eprintln!("error: cannot start the async runtime: {e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}
