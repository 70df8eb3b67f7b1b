//! `filesync`: filestore and plain-tree replication (sync, watch, seed, audit, ssh-setup,
//! schedule). Not built yet: see issue #4.

use std::process::ExitCode;

use clap::Parser;

/// Filestore replication driven by the standby database (not built yet: issue #4).
///
/// Exit codes: 0 success, 1 a problem was found, 2 error.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {}

fn main() -> ExitCode {
    let _cli = Cli::parse();
    eprintln!("filesync: no commands yet (issue #4)");
    ExitCode::from(2)
}
