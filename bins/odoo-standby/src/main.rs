//! `odoo-standby`: the operator's command line.
//!
//! `init` (a commented example config), `check` (validate it), `vps-sudoers`, `protect`,
//! `status`, `failover`, `failback`, `resume`, `abort`, `sync`. Each is a thin layer over the
//! `failover` crate. (The one-machine sandbox and its demo are `odoo-standby-sandbox`.)

mod ops;
mod show;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use failover::report;

/// Keep a warm copy of Odoo instances on a backup server.
///
/// Exit codes: 0 success, 1 a problem was found, 2 error.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    logs: cli::LogArgs,
    /// The configuration file.
    #[arg(
        short,
        long,
        global = true,
        default_value = "/etc/odoo-standby/config.toml"
    )]
    config: std::path::PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print a commented example configuration (`odoo-standby init > /etc/odoo-standby/config.toml`).
    Init,
    /// Validate a configuration file and summarize it; with --online, try every aspect each
    /// instance depends on (SSH and the host key, sudo rights on the VPS, its PostgreSQL,
    /// pg_hba.conf, a replication connection, the slot, disk and ports here), one line each.
    /// Exit 0 all OK, 1 a warning or a failure, 2 the config is wrong; with --nagios 0 OK,
    /// 1 WARNING, 2 CRITICAL, 3 UNKNOWN. Changes nothing.
    Check {
        /// Only this instance (with --online).
        name: Option<String>,
        /// Connect and try, instead of reading the file only.
        #[arg(long)]
        online: bool,
        /// The Nagios plugin format.
        #[arg(long)]
        nagios: bool,
    },
    /// Print the sudoers drop-in the VPS of an instance needs (what odoo-standby runs there
    /// as root, and as the PostgreSQL user), to install as /etc/sudoers.d/odoo-standby.
    VpsSudoers {
        /// The instance.
        name: String,
    },
    /// Give the backup's OS user SSH access to an instance's VPS: its key (made when
    /// missing), the VPS's host key after you confirm its fingerprint, the public key in the
    /// VPS user's authorized_keys once (through your ssh-agent; without one, the line to add
    /// is printed), then a login with the key. Running it again changes nothing.
    SshSetup {
        /// The instance.
        name: String,
        /// The fingerprint you read on the VPS (`ssh-keygen -lf
        /// /etc/ssh/ssh_host_ed25519_key.pub`); asked for on a terminal when missing.
        #[arg(long)]
        fingerprint: Option<String>,
    },
    /// Set up replication of an instance (PostgreSQL, files, config, unit, syncs). Running it
    /// again checks everything and changes nothing.
    Protect {
        #[command(flatten)]
        op: ops::OpArgs,
        /// Restart the VPS's PostgreSQL when a setting needs it (wal_log_hints, wal_level).
        #[arg(long)]
        restart_vps: bool,
        /// When the standby's slot on the VPS is lost (the VPS removed WAL it still needed),
        /// clone it again: its data directory is moved aside, not deleted.
        #[arg(long)]
        reclone: bool,
    },
    /// Move production to this server: stop syncs, fence, confirm, promote, smoke-test,
    /// start Odoo, write the nginx site.
    Failover {
        #[command(flatten)]
        op: ops::OpArgs,
        #[command(flatten)]
        fence: ops::FenceArgs,
    },
    /// Give production back to the VPS (runbook section 5) and protect it again.
    Failback {
        #[command(flatten)]
        op: ops::OpArgs,
        #[command(flatten)]
        discard: ops::DiscardArgs,
    },
    /// Move production to this server for planned work on the VPS, losing nothing: Odoo
    /// stops on the VPS, the last files come, the VPS's PostgreSQL stops cleanly, and the
    /// standby is promoted only if it replayed the VPS's shutdown checkpoint (else the VPS is
    /// put back as it was); then Odoo starts here and the VPS's cluster follows this one.
    /// `failback` gives production back.
    Switchover {
        #[command(flatten)]
        op: ops::OpArgs,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// Rehearse a failover without touching replication or production: a throwaway copy of
    /// the standby, promoted on a free port, a hard-linked view of the files, Odoo on them
    /// (neutralized: no mail, no crons), the smoke test and an HTTP check with attachments;
    /// the RTO measured; all torn down; the report kept in the state folder (drill.txt,
    /// drill.json) and shown by status. Exit 0 passed, 1 failed.
    Drill {
        /// The instance.
        name: String,
        /// The report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Continue an interrupted protect, failover, failback or switchover.
    Resume {
        /// The instance.
        name: String,
        #[command(flatten)]
        fence: ops::FenceArgs,
        #[command(flatten)]
        discard: ops::DiscardArgs,
    },
    /// Put an interrupted protect, failover or failback aside, and say what it leaves: the
    /// steps it did, the roles of both clusters and the services now. Touches nothing on
    /// either machine; the next operation starts from its first step.
    Abort {
        /// The instance.
        name: String,
    },
    /// Health of every instance (or one), checked a few at a time: one table, then every
    /// problem with its fix. Exit 0 healthy, 1 a problem, 2 error; with --nagios 0 OK,
    /// 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
    Status {
        /// Only this instance.
        name: Option<String>,
        /// JSON: one object per instance (fields documented in the failover crate's status
        /// module; problems carry a stable `code`).
        #[arg(long, conflicts_with = "nagios")]
        json: bool,
        /// The Nagios plugin format, with perfdata.
        #[arg(long)]
        nagios: bool,
        /// Seconds each instance's checks may take, from their own start; one that does not
        /// answer is reported UNKNOWN and does not hold up the others.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
        /// How many instances are checked at once (each runs psql and ssh processes).
        #[arg(long, default_value_t = failover::STATUS_PARALLEL)]
        parallel: usize,
        /// Ask every VPS now. Without it, and without NAME, the VPSs' side is what each sync
        /// service saw at its last look (every 30 s) when that is under a minute old: fifty
        /// instances answer in a second instead of minutes. This server's side is always
        /// read now; `status NAME` always asks its VPS.
        #[arg(long)]
        live: bool,
    },
    /// What happened, oldest first: each step of each operation (the journal) and the events
    /// (operations started, failed, ended; problems status found and saw cleared; the
    /// sync's failures and recovery).
    History {
        /// Only this instance.
        name: Option<String>,
        /// JSON: one object per line of history.
        #[arg(long)]
        json: bool,
    },
    /// Print the shell completion script (`odoo-standby completions bash >
    /// /etc/bash_completion.d/odoo-standby`).
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Write the man pages into DIR: odoo-standby.1 and one per subcommand
    /// (odoo-standby-failover.1 ...), for `man -l` or /usr/share/man/man1.
    Man {
        /// Where (made when missing).
        dir: std::path::PathBuf,
    },
    /// Mirror an instance's addon sources from the VPS and copy the VPS's `pip freeze` into
    /// its requirement.txt: what odoo-standby-refresh@NAME.timer runs every 12 hours.
    /// Nothing while a failover holds the instance.
    Refresh {
        /// The instance.
        name: String,
    },
    /// One file-sync pass for an instance (`--watch`: one every few seconds, what the sync
    /// service odoo-standby-sync@NAME runs).
    Sync {
        /// The instance.
        name: String,
        /// Keep going.
        #[arg(long)]
        watch: bool,
        /// Seconds between passes with --watch.
        #[arg(long, default_value_t = 2)]
        interval: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::init_logs(&cli.logs);
    let config = cli.config;
    match cli.command {
        Command::Init => {
            cli::say(failover::EXAMPLE);
            ExitCode::SUCCESS
        }
        Command::Check {
            name,
            online,
            nagios,
        } => {
            if !online {
                return report(check(&config));
            }
            block_on(async move {
                let r = ops::check_online(&config, name.as_deref(), nagios).await;
                nagios_unknown(nagios, "ODOO-STANDBY-CHECK", r)
            })
        }
        Command::VpsSudoers { name } => report(ops::vps_sudoers(&config, &name)),
        Command::Protect {
            op,
            restart_vps,
            reclone,
        } => block_on(async move {
            let opts = failover::RunOptions {
                restart_vps,
                reclone,
                ..Default::default()
            };
            ops::operation(&config, failover::Operation::Protect, &op, opts).await
        }),
        Command::Failover { op, fence } => block_on(async move {
            ops::operation(&config, failover::Operation::Failover, &op, fence.options()).await
        }),
        Command::Failback { op, discard } => block_on(async move {
            let opts = failover::RunOptions {
                discard_vps_writes: discard.discard_vps_writes,
                ..Default::default()
            };
            ops::operation(&config, failover::Operation::Failback, &op, opts).await
        }),
        Command::Switchover { op, yes } => block_on(async move {
            let opts = failover::RunOptions {
                yes,
                ..Default::default()
            };
            ops::operation(&config, failover::Operation::Switchover, &op, opts).await
        }),
        Command::Resume {
            name,
            fence,
            discard,
        } => block_on(async move {
            let opts = failover::RunOptions {
                discard_vps_writes: discard.discard_vps_writes,
                ..fence.options()
            };
            ops::resume(&config, &name, opts).await
        }),
        Command::Drill { name, json } => {
            block_on(async move { ops::drill(&config, &name, json).await })
        }
        Command::Abort { name } => block_on(async move { ops::abort(&config, &name).await }),
        Command::Status {
            name,
            json,
            nagios,
            timeout,
            parallel,
            live,
        } => {
            let format = if nagios {
                ops::StatusFormat::Nagios
            } else if json {
                ops::StatusFormat::Json
            } else {
                ops::StatusFormat::Text
            };
            block_on(async move {
                let limit = std::time::Duration::from_secs(timeout.max(1));
                let r = ops::status(&config, name.as_deref(), format, limit, parallel, live).await;
                nagios_unknown(nagios, "ODOO-STANDBY", r)
            })
        }
        Command::Completions { shell } => {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "odoo-standby", &mut out);
            cli::say(&String::from_utf8_lossy(&out));
            ExitCode::SUCCESS
        }
        Command::Man { dir } => report(man(&dir)),
        Command::History { name, json } => report(ops::history(&config, name.as_deref(), json)),
        Command::Sync {
            name,
            watch,
            interval,
        } => block_on(async move { ops::sync(&config, &name, watch, interval).await }),
        Command::Refresh { name } => block_on(async move { ops::refresh(&config, &name).await }),
        Command::SshSetup { name, fingerprint } => {
            block_on(async move { ops::ssh_setup(&config, &name, fingerprint).await })
        }
    }
}

/// With --nagios, what cannot be checked (a config it cannot read) is UNKNOWN (exit 3), on
/// stdout where Nagios reads the plugin's line; otherwise the error goes to `report`.
fn nagios_unknown(
    nagios: bool,
    plugin: &str,
    r: Result<ExitCode, Box<dyn std::error::Error>>,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    match r {
        Err(e) if nagios => {
            cli::say!("{plugin} UNKNOWN - {}", failover::chain(e.as_ref()));
            Ok(ExitCode::from(3))
        }
        r => r,
    }
}

/// Runs a future on a two-thread runtime and reports its result.
fn block_on(
    f: impl std::future::Future<Output = Result<ExitCode, Box<dyn std::error::Error>>>,
) -> ExitCode {
    match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => {
            let code = report(rt.block_on(f));
            // A check left behind by a time limit (a blocking SSH read) must not hold the
            // exit: the process ends and the kernel closes its sockets.
            rt.shutdown_timeout(std::time::Duration::from_millis(200));
            code
        }
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::from(2)
        }
    }
}

/// Writes `odoo-standby.1` and `odoo-standby-<subcommand>.1` into `dir`.
fn man(dir: &std::path::Path) -> Result<ExitCode, Box<dyn std::error::Error>> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot make {}: {e}", dir.display()))?;
    let top = Cli::command();
    let mut pages = vec![("odoo-standby".to_owned(), top.clone())];
    for sub in top.get_subcommands() {
        let name = format!("odoo-standby-{}", sub.get_name());
        pages.push((name.clone(), sub.clone().name(name)));
    }
    for (name, cmd) in pages {
        let mut text = Vec::new();
        clap_mangen::Man::new(cmd).render(&mut text)?;
        let path = dir.join(format!("{name}.1"));
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        cli::say!("{}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Validates a config file and summarizes it.
fn check(config: &std::path::Path) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let cfg = failover::Config::load(config)?;
    cli::say!(
        "{}: valid; backup {} (PostgreSQL {}), {} instance(s):",
        config.display(),
        cfg.backup.address,
        cfg.backup.pg_version,
        cfg.instances.len()
    );
    for i in &cfg.instances {
        cli::say!(
            "  {}: ssh {}, standby port {}",
            i.name,
            i.ssh,
            i.standby_port
        );
    }
    Ok(ExitCode::SUCCESS)
}
