//! `pgrepl`: PostgreSQL streaming replication for one primary and its standby, from the
//! command line. Thin: parses, builds hosts and clusters, calls the `pgrepl` library, prints
//! (the library's own words for what it did).

mod args;

use std::process::ExitCode;
use std::time::Duration;

use args::{Cli, ClusterArgs, Command, PrepareArgs, Remote, SlotsArgs, StatusArgs};
use clap::Parser;
use host::LocalHost;
use pgrepl::pgpass::PgpassEntry;
use pgrepl::{Name, PgClient, PgreplError, Secret, Sql};

type Outcome = Result<ExitCode, PgreplError>;

async fn sql_for(
    conn: &Option<String>,
    cluster: &ClusterArgs,
    remote: &Remote,
) -> Result<Box<dyn Sql>, PgreplError> {
    match conn {
        Some(c) => Ok(Box::new(PgClient::connect(c).await?)),
        None if cluster.given() => Ok(Box::new(cluster.build(remote.host()?)?.psql("postgres"))),
        None => Err(PgreplError::Invalid {
            what: "server".into(),
            reason: "give --conn CONNINFO, or --cluster / --data-dir".into(),
        }),
    }
}

fn progress_printer() -> impl FnMut(pgrepl::Progress) + Send {
    let mut last = 0u64;
    move |p: pgrepl::Progress| {
        let pct = (p.done_kb * 100).checked_div(p.total_kb).unwrap_or(0);
        if pct >= last + 10 || pct == 100 {
            eprintln!(
                "  copied {} of {} MB ({pct}%)",
                p.done_kb / 1024,
                p.total_kb / 1024
            );
            last = pct;
        }
    }
}

fn json_or<T: serde::Serialize>(json: bool, v: &T, text: impl FnOnce()) {
    if json {
        cli::say!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    } else {
        text();
    }
}

async fn prepare(a: PrepareArgs, remote: &Remote) -> Outcome {
    let info = pgrepl::ConnInfo::parse(&a.conn)?;
    let primary_host = a
        .primary_host
        .clone()
        .unwrap_or_else(|| info.host().to_owned());
    let port = info.port()?;
    let local = LocalHost::new();
    // Passwords already in the .pgpass are kept; missing ones are generated.
    let file = pgrepl::pgpass::load(&local, &a.pgpass).await?;
    let pw = |db: &str, user: &str| {
        file.lookup(&primary_host, port, db, user)
            .map(Secret::new)
            .unwrap_or_else(Secret::generate)
    };
    let mut opts = pgrepl::PrepareOptions::new(
        a.backup_addresses.clone(),
        pw("replication", "replica_user"),
        pw("postgres", "replica_rewind"),
    )?;
    opts.listen_addresses = a.listen_addresses.clone();
    opts.wal_keep_size = a.wal_keep_size.clone();
    opts.max_slot_wal_keep_size = a.max_slot_wal_keep_size.clone();
    let db = PgClient::connect(&a.conn).await?;
    let report = pgrepl::prepare_primary(&db, remote.host()?.as_ref(), &opts).await?;
    let entry = |db: &str, user: &str, s: &Secret| PgpassEntry {
        host: primary_host.clone(),
        port: port.to_string(),
        database: db.into(),
        user: user.into(),
        password: s.expose().into(),
    };
    let lines = [
        entry("replication", "replica_user", &opts.replication_password),
        entry("postgres", "replica_rewind", &opts.rewind_password),
    ];
    let wrote = pgrepl::pgpass::upsert(&local, &a.pgpass, &a.pgpass_owner, &lines).await?;
    json_or(a.json, &report, || {
        if report.changes.is_empty() {
            cli::say!("{}: already prepared, nothing changed", db.server());
        }
        for c in &report.changes {
            cli::say!("changed: {c}");
        }
        if wrote {
            cli::say!(
                "changed: {} (0600, owner {})",
                a.pgpass.display(),
                a.pgpass_owner
            );
        }
        if !report.restart_needed.is_empty() {
            cli::say!(
                "restart needed for: {} (e.g. systemctl restart postgresql@<version>-<name>)",
                report.restart_needed.join(", ")
            );
        }
    });
    Ok(ExitCode::SUCCESS)
}

async fn status(a: StatusArgs, remote: &Remote) -> Outcome {
    let db = sql_for(&a.conn, &a.cluster, remote).await?;
    let st = pgrepl::status(db.as_ref()).await?;
    json_or(a.json, &st, || cli::say!("{}: {st}", db.server()));
    Ok(ExitCode::from(u8::from(!st.is_healthy())))
}

async fn slots(a: SlotsArgs, remote: &Remote) -> Outcome {
    let db = sql_for(&a.conn, &a.cluster, remote).await?;
    if let Some(name) = &a.create {
        let n = Name::new("slot name", name)?;
        let made = pgrepl::slot::create_slot(db.as_ref(), &n).await?;
        let what = if made {
            "created"
        } else {
            "exists already, nothing changed"
        };
        cli::say!("slot {n}: {what}");
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(name) = &a.drop {
        let n = Name::new("slot name", name)?;
        let dropped = pgrepl::slot::drop_slot(db.as_ref(), &n).await?;
        let what = if dropped {
            "dropped"
        } else {
            "not there, nothing changed"
        };
        cli::say!("slot {n}: {what}");
        return Ok(ExitCode::SUCCESS);
    }
    let problems =
        pgrepl::slot::problem_slots(db.as_ref(), a.max_retained_mb * 1024 * 1024).await?;
    let slots = pgrepl::list_slots(db.as_ref()).await?;
    json_or(
        a.json,
        &serde_json::json!({"slots": slots, "problems": problems}),
        || {
            for s in &slots {
                cli::say!(
                    "{} {} active={} retains {} MB",
                    s.name,
                    s.slot_type,
                    s.active,
                    s.retained_bytes.unwrap_or(0) / (1024 * 1024)
                );
            }
            for p in &problems {
                cli::say!("PROBLEM {}: {}", p.slot.name, p.reason);
            }
        },
    );
    Ok(ExitCode::from(u8::from(!problems.is_empty())))
}

async fn run(cli: Cli) -> Outcome {
    let remote = &cli.remote;
    match cli.command {
        Command::PreparePrimary(a) => prepare(a, remote).await,
        Command::Clone(a) => {
            let cluster = a.cluster.build(remote.host()?)?;
            let up = a.upstream.build()?;
            let out = pgrepl::clone_standby(cluster.as_ref(), &up, &mut progress_printer()).await?;
            cli::say!(
                "{} from {}:{} through slot {}: {out}",
                cluster.label(),
                up.host,
                up.port,
                up.slot
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Status(a) => status(a, remote).await,
        Command::Promote(a) => {
            let db = sql_for(&a.conn, &a.cluster, remote).await?;
            let out = pgrepl::promote(db.as_ref(), Duration::from_secs(a.timeout)).await?;
            cli::say!("{}: {out}", db.server());
            Ok(ExitCode::SUCCESS)
        }
        Command::Rejoin(a) => {
            let cluster = a.cluster.build(remote.host()?)?;
            let admin = PgClient::connect(&a.admin_conn).await?;
            let opts = pgrepl::RejoinOptions {
                upstream: a.upstream.build()?,
                rewind_user: Name::new("rewind role", &a.rewind_user)?,
                clone_if_needed: a.clone_if_needed,
            };
            let out =
                pgrepl::rejoin(cluster.as_ref(), &admin, &opts, &mut progress_printer()).await?;
            cli::say!("{}: {out}", cluster.label());
            Ok(ExitCode::SUCCESS)
        }
        Command::Slots(a) => slots(a, remote).await,
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::init_logs(&cli.logs);
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pgrepl: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("pgrepl: {e}");
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                eprintln!("  caused by: {s}");
                src = s.source();
            }
            ExitCode::from(2)
        }
    }
}
