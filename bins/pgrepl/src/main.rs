//! `pgrepl`: PostgreSQL replication commands (prepare-primary, clone, status, promote, rejoin,
//! slots). Not built yet: see issue #3.

use std::process::ExitCode;

use clap::Parser;

/// PostgreSQL streaming replication for one cluster pair (not built yet: issue #3).
///
/// Exit codes: 0 success, 1 a problem was found, 2 error.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {}

fn main() -> ExitCode {
    let _cli = Cli::parse();
    eprintln!("pgrepl: no commands yet (issue #3)");
    ExitCode::from(2)
}
