//! `drill NAME`: proves that a failover of the instance would work, without touching
//! replication or production, and measures how long it would take.
//!
//! 1. A throwaway copy of the standby: `pg_basebackup` from the standby (as `postgres`, over
//!    its socket) into `<name>-drill/pg` beside the standby's data directory
//!    (`/var/lib/postgresql/15/<name>-drill`), with its own config (the standby's
//!    `pg_hba.conf` and `pg_ident.conf`, listening only on its own socket in
//!    `<name>-drill/sock`, replication settings cleared), started on a free port and promoted.
//! 2. A writable view of the replicated data_dir, `<root>/<name>/drill/data_dir`: `cp -al`
//!    (hard links; Odoo never rewrites a
//!    filestore file, it writes new ones, and a removed link leaves the original), so the
//!    replicated copy stays as it is.
//! 3. Odoo on them (`drill/odoo.conf`: the instance's, with the copy's socket and port, a
//!    free HTTP port on 127.0.0.1, `max_cron_threads = 0`), neutralized first (`odoo-bin
//!    neutralize` on 16 and newer; on older versions the same by SQL: crons and mail servers
//!    off), the smoke test with its diagnosis, then served: `/web/login` 200 and a sample of
//!    attachments downloaded and matched against their checksums.
//! 4. All of it torn down (Odoo by its pid, the copy's cluster, the drill folder, which we
//!    made); the report, text and JSON, kept in the state folder (`drill.json`,
//!    `drill.txt`), which `status` reads.
//!
//! The RTO reported is what a failover does on this server: promotion, smoke test, Odoo's
//! start until its first HTTP 200 (the copy and the neutralization are the drill's own
//! costs and are shown apart). Decision: no user login is attempted (the drill knows no
//! password); the HTTP check is the failover's own (`check-http`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use host::{CommandSpec, Host, Ownership};
use pgrepl::{Cluster, PlainCluster, StopMode};
use serde::{Deserialize, Serialize};

use crate::env::Env;
use crate::error::{chain, FailoverError, Result};
use crate::plan::Out;
use crate::services::{Service, Supervisor as _};
use crate::steps::{f, hf};

/// One part of the drill and how long it took.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Phase {
    /// `copy`, `promote`, `files`, `neutralize`, `smoke`, `serve`.
    pub name: String,
    /// Its duration.
    pub seconds: f64,
    /// What it found.
    pub detail: String,
}

/// What a drill found, as `drill.json` keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DrillReport {
    /// The instance.
    pub instance: String,
    /// When it started (seconds since the epoch).
    pub started: u64,
    /// Whether Odoo came up on the copy and served every check.
    pub ok: bool,
    /// Promotion + smoke test + Odoo's start to its first HTTP 200: the RTO of a failover.
    pub rto_seconds: Option<f64>,
    /// Each part, in order.
    pub phases: Vec<Phase>,
    /// The databases tried.
    pub databases: Vec<String>,
    /// Attachments downloaded and matched against their checksums.
    pub attachments_checked: usize,
    /// Whether the standby still streamed from the VPS at the end (it must).
    pub standby_kept_streaming: Option<bool>,
    /// What failed, when it did.
    pub failure: Option<String>,
    /// The smoke test's diagnosis (each failure with its fix), when it failed.
    pub diagnosis: Vec<String>,
}

impl DrillReport {
    /// The report in words, as printed and kept in `drill.txt`.
    pub fn render(&self) -> String {
        let mut s = format!(
            "drill of {}: {}\n",
            self.instance,
            if self.ok { "PASSED" } else { "FAILED" }
        );
        for p in &self.phases {
            s.push_str(&format!(
                "  {:<10} {:>6.1} s  {}\n",
                p.name, p.seconds, p.detail
            ));
        }
        if let Some(r) = self.rto_seconds {
            s.push_str(&format!(
                "  RTO (promote + smoke test + Odoo to its first HTTP 200): {r:.1} s\n"
            ));
        }
        if let Some(k) = self.standby_kept_streaming {
            s.push_str(&format!(
                "  the standby {} from the VPS throughout\n",
                if k {
                    "kept streaming"
                } else {
                    "did NOT keep streaming"
                }
            ));
        }
        if let Some(f) = &self.failure {
            s.push_str(&format!("  failure: {f}\n"));
        }
        for d in &self.diagnosis {
            s.push_str(&format!("  diagnosis: {d}\n"));
        }
        s
    }
}

/// The last drill's report, when there was one.
pub fn last_drill(env: &Env) -> Option<DrillReport> {
    let text = std::fs::read_to_string(env.state.dir().join("drill.json")).ok()?;
    serde_json::from_str(&text).ok()
}

/// The drill's folders: `dir` for Odoo (the files' view, its config, its log) in the instance
/// folder, on the same filesystem as the replicated data_dir (hard links); `pgdir` for the
/// copy's cluster and socket beside the standby's data directory, where `postgres` can go.
struct Work {
    dir: PathBuf,
    pgdir: PathBuf,
}

const MARKER: &str = ".odoo-standby-drill";

impl Work {
    fn pg(&self) -> PathBuf {
        self.pgdir.join("pg")
    }
    fn sock(&self) -> PathBuf {
        self.pgdir.join("sock")
    }
    fn data_dir(&self) -> PathBuf {
        self.dir.join("data_dir")
    }
    fn conf(&self) -> PathBuf {
        self.dir.join("odoo.conf")
    }
    fn run(&self) -> PathBuf {
        self.dir.join("run")
    }
}

/// The first port from `from` on that nothing listens on here (127.0.0.1), skipping `not`.
fn free_port(from: u16, not: &[u16]) -> Result<u16> {
    (from..from.saturating_add(500))
        .find(|p| !not.contains(p) && std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .ok_or_else(|| FailoverError::Refused(format!("no free port from {from} on 127.0.0.1")))
}

/// `python odoo-bin [COMMAND] -c drill/odoo.conf`.
fn odoo_argv(env: &Env, work: &Work, command: Option<&str>) -> Vec<String> {
    let mut v = vec![
        env.cfg.backup.python.display().to_string(),
        env.layout.odoo().join("odoo-bin").display().to_string(),
    ];
    v.extend(command.map(str::to_owned));
    v.extend(["-c".into(), work.conf().display().to_string()]);
    v
}

/// The Odoo the drill runs, as a plain supervised process (pid file in the drill folder).
fn drill_odoo(env: &Env, work: &Work) -> (crate::Supervised, Service) {
    let sup = crate::Supervised::new(env.local.clone(), work.run());
    let svc = Service {
        unit: format!("odoo_drill_{}", env.name()),
        argv: odoo_argv(env, work, None),
        user: env.cfg.backup.os_user.clone(),
        unit_file: None,
    };
    (sup, svc)
}

fn copy_cluster(env: &Env, work: &Work, port: u16) -> Result<PlainCluster> {
    PlainCluster::new(
        env.local.clone(),
        env.standby.bindir(),
        work.pg(),
        port,
        env.cfg.backup.pg_os_user.clone(),
        work.sock(),
        work.pgdir.join("pg.log"),
    )
    .map_err(f("the drill's cluster"))
}

/// The drill's own lock, `<state_dir>/NAME/drill.lock`: one drill at a time per instance
/// (the weekly timer's and an operator's would share the same folders).
fn drill_lock(env: &Env) -> Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let path = env.state.dir().join("drill.lock");
    let io = |e: std::io::Error| FailoverError::failed(format!("opening {}", path.display()), e);
    std::fs::create_dir_all(env.state.dir()).map_err(io)?;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(io)?;
    // SAFETY: flock on a file descriptor we own; no memory is involved.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        return Err(FailoverError::Refused(format!(
            "another drill of {} runs: wait for it (its report goes to {})",
            env.name(),
            env.state.dir().join("drill.txt").display()
        )));
    }
    Ok(f)
}

/// Runs a drill on the instance of `env`, tears it down, keeps and returns the report. `Err`
/// only when it could not start (an operation holds the instance, no healthy standby);
/// a drill that ran and failed is a report with `ok: false`.
pub async fn drill(env: &Env, out: &Out) -> Result<DrillReport> {
    // The instance's lock only for this look: a failover is never held up by a drill (one
    // during a drill promotes the standby as usual; the drill then reports that the standby
    // stopped streaming, and its teardown touches only its own folders).
    let current = crate::journal::Journal::open(&env.state)?.current()?;
    let _one_drill = drill_lock(env)?;
    if let Some(c) = current {
        return Err(FailoverError::Refused(format!(
            "a {} of {} is interrupted (run {}): finish it first (odoo-standby resume {})",
            c.operation,
            env.name(),
            c.run,
            env.name()
        )));
    }
    if !crate::steps::streams_from(env.standby.as_ref(), env.upstream_vps()).await? {
        return Err(FailoverError::Refused(format!(
            "{} does not stream from the VPS: a drill copies a healthy standby. `odoo-standby status {}` says why",
            env.standby.label(),
            env.name()
        )));
    }
    let standby_dir = env.standby.data_dir();
    let work = Work {
        dir: env.layout.dir().join("drill"),
        pgdir: standby_dir
            .parent()
            .unwrap_or(&standby_dir)
            .join(format!("{}-drill", env.name())),
    };
    teardown(env, &work).await?;
    let mut report = DrillReport {
        instance: env.name().to_owned(),
        started: crate::journal::now(),
        ok: false,
        rto_seconds: None,
        phases: Vec::new(),
        databases: env.databases().await?,
        attachments_checked: 0,
        standby_kept_streaming: None,
        failure: None,
        diagnosis: Vec::new(),
    };
    out.line(&format!(
        "drill of {}: a throwaway copy of the standby in {}",
        env.name(),
        work.dir.display()
    ));
    let r = run(env, &work, &mut report, out).await;
    report.standby_kept_streaming = Some(
        crate::steps::streams_from(env.standby.as_ref(), env.upstream_vps())
            .await
            .unwrap_or(false),
    );
    let down = teardown(env, &work).await;
    match (r, down) {
        (Ok(()), Ok(())) => report.ok = report.standby_kept_streaming == Some(true),
        (Err(e), _) => report.failure = Some(chain(&e)),
        (Ok(()), Err(e)) => report.failure = Some(format!("tearing down: {}", chain(&e))),
    }
    if report.ok {
        out.line("    torn down: the copy's Odoo and cluster stopped, the drill folder removed");
    }
    save(env, &report).await?;
    Ok(report)
}

async fn save(env: &Env, report: &DrillReport) -> Result<()> {
    let dir = env.state.dir().to_path_buf();
    let json = serde_json::to_string_pretty(report)
        .map_err(|e| FailoverError::failed("writing the drill report", e))?;
    let text = report.render();
    tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        std::fs::create_dir_all(&dir)?;
        for (name, body) in [("drill.json", json), ("drill.txt", text)] {
            let tmp = dir.join(format!(".{name}.tmp"));
            std::fs::write(&tmp, body)?;
            std::fs::rename(&tmp, dir.join(name))?;
        }
        Ok(())
    })
    .await
    .map_err(|e| FailoverError::failed("writing the drill report", e))?
    .map_err(|e| FailoverError::failed("writing the drill report", e))
}

/// Times `act` as phase `name`; its `Ok` text is the phase's detail.
async fn phase<F: std::future::Future<Output = Result<String>>>(
    report: &mut DrillReport,
    out: &Out,
    name: &str,
    act: F,
) -> Result<f64> {
    let clock = Instant::now();
    let r = act.await;
    let seconds = clock.elapsed().as_secs_f64();
    let detail = match &r {
        Ok(d) => d.clone(),
        Err(e) => format!("FAILED: {}", chain(e)),
    };
    out.line(&format!("    {name}: {detail} ({seconds:.1} s)"));
    report.phases.push(Phase {
        name: name.into(),
        seconds,
        detail,
    });
    r.map(|_| seconds)
}

async fn run(env: &Env, work: &Work, report: &mut DrillReport, out: &Out) -> Result<()> {
    let b = &env.cfg.backup;
    let local = env.local.as_ref();
    let pg_port = free_port(25432, &[])?;
    let copy = copy_cluster(env, work, pg_port)?;
    phase(report, out, "copy", async {
        for (dir, owner) in [(&work.dir, &b.os_user), (&work.pgdir, &b.pg_os_user)] {
            local
                .mkdir_p(dir, &Ownership::owned(0o755, owner.clone()))
                .await
                .map_err(hf(format!("creating {}", dir.display())))?;
            local
                .write_file(
                    &dir.join(MARKER),
                    b"made by odoo-standby drill; removed when it ends\n",
                    &Ownership::mode(0o644),
                )
                .await
                .map_err(hf(format!("writing the marker in {}", dir.display())))?;
        }
        for (d, mode) in [(work.pg(), 0o700), (work.sock(), 0o755)] {
            local
                .mkdir_p(&d, &Ownership::owned(mode, b.pg_os_user.clone()))
                .await
                .map_err(hf(format!("creating {}", d.display())))?;
        }
        let spec = CommandSpec::new(
            env.standby
                .bindir()
                .join("pg_basebackup")
                .display()
                .to_string(),
        )
        .args(["-D", &work.pg().display().to_string()])
        .args(["-h", &env.standby.socket_dir()])
        .args(["-p", &env.standby.port().to_string()])
        .args([
            "-U",
            &b.pg_os_user,
            "-X",
            "stream",
            "-c",
            "fast",
            "--no-sync",
        ])
        .run_as(b.pg_os_user.clone())
        .timeout(Duration::from_secs(6 * 3600));
        local
            .run(&spec)
            .await
            .map_err(hf("copying the standby (pg_basebackup)"))?;
        configure_copy(env, &copy).await?;
        let size = pgrepl::query_value(
            &env.standby_sql("postgres"),
            "SELECT pg_size_pretty(sum(pg_database_size(datname))) FROM pg_database",
        )
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
        Ok(format!(
            "pg_basebackup of the standby ({size}) into {}, port {pg_port}",
            work.pg().display()
        ))
    })
    .await?;
    let promote = phase(report, out, "promote", async {
        copy.start().await.map_err(f("starting the copy"))?;
        let o = pgrepl::promote(&copy.psql("postgres"), Duration::from_secs(120))
            .await
            .map_err(f("promoting the copy"))?;
        Ok(match o {
            pgrepl::PromoteOutcome::AlreadyPrimary => {
                "the copy ended its recovery by itself and takes writes".to_owned()
            }
            o => format!("the copy runs and takes writes ({o})"),
        })
    })
    .await?;
    phase(report, out, "files", async {
        let spec = CommandSpec::new("cp")
            .arg("-al")
            .arg(env.layout.data_dir().display().to_string())
            .arg(work.data_dir().display().to_string())
            .run_as(b.os_user.clone())
            .timeout(Duration::from_secs(3600));
        local
            .run(&spec)
            .await
            .map_err(hf("linking the replicated data_dir (cp -al)"))?;
        Ok(format!(
            "a writable view of {} (hard links: the replicated files stay as they are)",
            env.layout.data_dir().display()
        ))
    })
    .await?;
    let conf = drill_conf(env, work, pg_port).await?;
    let http = conf.http_port();
    let major = crate::settings::recorded(&b.state_dir, env.name())
        .map(|s| s.odoo_major)
        .unwrap_or(17);
    let dbs = report.databases.clone();
    phase(report, out, "neutralize", async {
        for db in &dbs {
            if major >= 16 {
                let argv = odoo_argv(env, work, Some("neutralize"));
                let spec = CommandSpec::new(argv[0].clone())
                    .args(argv[1..].iter().cloned())
                    .args(["-d", db, "--logfile="])
                    .run_as(b.os_user.clone())
                    .timeout(Duration::from_secs(600));
                local
                    .run(&spec)
                    .await
                    .map_err(hf(format!("odoo-bin neutralize -d {db}")))?;
            } else {
                pgrepl::execute(
                    &copy.psql(db),
                    "UPDATE ir_cron SET active = false; UPDATE ir_mail_server SET active = false",
                )
                .await
                .map_err(f(format!("neutralizing {db} by SQL")))?;
            }
        }
        Ok(if major >= 16 {
            format!("odoo-bin neutralize (Odoo {major}): no mail goes out, crons off")
        } else {
            format!("crons and mail servers off by SQL (Odoo {major})")
        })
    })
    .await?;
    let mut diagnosis = Vec::new();
    let smoke = phase(report, out, "smoke", async {
        for db in &dbs {
            let t = odoo_instance::smoke::SmokeTest {
                exec_start: odoo_argv(env, work, None),
                database: db.clone(),
                os_user: b.os_user.clone(),
                http: Some(("127.0.0.1".into(), http)),
                db_user: conf
                    .db_user()
                    .map(str::to_owned)
                    .unwrap_or_else(|| b.os_user.clone()),
                vps_db_user: None,
                cluster_socket: work.sock().display().to_string(),
                cluster_port: pg_port,
                requirements: env.layout.requirements(),
            };
            let r = odoo_instance::smoke::run(local, &t)
                .await
                .map_err(|e| FailoverError::failed(format!("smoke-testing {db}"), e))?;
            if !r.ok {
                diagnosis = r.diagnoses.iter().map(|d| format!("{db}: {d}")).collect();
                return Err(FailoverError::Refused(format!(
                    "Odoo does not load {db} from the backup's copy: {}",
                    diagnosis.join("; ")
                )));
            }
        }
        Ok(format!("Odoo loads {}", dbs.join(", ")))
    })
    .await;
    report.diagnosis = diagnosis;
    let smoke = smoke?;
    let mut checked = 0;
    let serve = phase(report, out, "serve", async {
        let (odoo, svc) = drill_odoo(env, work);
        odoo.start(&svc).await?;
        let mut said = Vec::new();
        for db in &dbs {
            let sample = crate::steps::public_attachments(
                &copy.psql(db),
                &work.data_dir().join("filestore").join(db),
                5,
            )
            .await?;
            let first = sample.first().cloned();
            let seen = odoo_instance::http::check_serving(
                "127.0.0.1",
                http,
                db,
                first,
                Duration::from_secs(120),
            )
            .await
            .map_err(|e| {
                FailoverError::failed(format!("checking the drill's Odoo on 127.0.0.1:{http}"), e)
            })?;
            checked += usize::from(seen.attachment.is_some());
            for a in sample.into_iter().skip(1) {
                odoo_instance::http::check_serving(
                    "127.0.0.1",
                    http,
                    db,
                    Some(a),
                    Duration::from_secs(30),
                )
                .await
                .map_err(|e| {
                    FailoverError::failed(format!("downloading an attachment of {db}"), e)
                })?;
                checked += 1;
            }
            said.push(format!(
                "{db}: /web/login 200 after {:.1} s",
                seen.login_after_seconds
            ));
        }
        Ok(format!(
            "{}; {checked} attachment(s) downloaded, each matching its checksum",
            said.join("; ")
        ))
    })
    .await?;
    report.attachments_checked = checked;
    report.rto_seconds = Some(promote + smoke + serve);
    Ok(())
}

/// The copy's own config: the standby's pg_hba.conf and pg_ident.conf, only its socket,
/// replication settings cleared, no standby.signal.
async fn configure_copy(env: &Env, copy: &PlainCluster) -> Result<()> {
    let here = env.standby_sql("postgres");
    for (setting, file) in [("hba_file", "pg_hba.conf"), ("ident_file", "pg_ident.conf")] {
        let path = pgrepl::query_value(&here, &format!("SHOW {setting}"))
            .await
            .map_err(f(format!("asking the standby for its {setting}")))?
            .unwrap_or_default();
        let text = env
            .local
            .read_file(std::path::Path::new(&path))
            .await
            .map_err(hf(format!("reading {path}")))?;
        pgrepl::write_data_file(copy, file, &String::from_utf8_lossy(&text))
            .await
            .map_err(f(format!("writing the copy's {file}")))?;
    }
    pgrepl::write_data_file(
        copy,
        "postgresql.conf",
        "# a throwaway copy made by odoo-standby drill (port and socket given at start)\nmax_connections = 100\nshared_buffers = 64MB\n",
    )
    .await
    .map_err(f("writing the copy's postgresql.conf"))?;
    let auto = pgrepl::read_data_file(copy, "postgresql.auto.conf")
        .await
        .map_err(f("reading the copy's postgresql.auto.conf"))?
        .unwrap_or_default();
    let auto = pgrepl::set_auto_conf(
        &auto,
        &[
            ("listen_addresses", String::new()),
            ("primary_conninfo", String::new()),
            ("primary_slot_name", String::new()),
            ("archive_mode", "off".into()),
            ("max_connections", "100".into()),
        ],
    );
    pgrepl::write_data_file(copy, "postgresql.auto.conf", &auto)
        .await
        .map_err(f("writing the copy's postgresql.auto.conf"))?;
    for signal in ["standby.signal", "recovery.signal"] {
        let p = copy.data_dir().join(signal);
        if env.local.stat(&p).await.ok().flatten().is_some() {
            env.local
                .remove(&p)
                .await
                .map_err(hf(format!("removing {}", p.display())))?;
        }
    }
    Ok(())
}

/// The drill's odoo.conf (0600, the Odoo user's: it may hold db_password): the instance's,
/// on the copy's socket and port, the drill's data_dir, free ports on 127.0.0.1, no crons.
async fn drill_conf(env: &Env, work: &Work, pg_port: u16) -> Result<odoo_instance::OdooConf> {
    let mut conf = env.instance_conf().await?;
    let http = free_port(18069, &[])?;
    let gevent = free_port(http + 3, &[http])?;
    let gevent_key = if conf.is_set("longpolling_port") && !conf.is_set("gevent_port") {
        "longpolling_port"
    } else {
        "gevent_port"
    };
    for (k, v) in [
        ("data_dir", work.data_dir().display().to_string()),
        ("db_host", work.sock().display().to_string()),
        ("db_port", pg_port.to_string()),
        ("http_interface", "127.0.0.1".into()),
        ("http_port", http.to_string()),
        (gevent_key, gevent.to_string()),
        ("max_cron_threads", "0".into()),
        ("workers", "0".into()),
        ("logfile", work.dir.join("odoo.log").display().to_string()),
        ("pidfile", "False".into()),
    ] {
        conf.set(k, &v);
    }
    env.local
        .write_file(
            &work.conf(),
            conf.render().as_bytes(),
            &Ownership::owned(0o600, env.cfg.backup.os_user.clone()),
        )
        .await
        .map_err(hf(format!("writing {}", work.conf().display())))?;
    Ok(conf)
}

/// Stops what a drill started and removes its folders, only those with our marker in them
/// (a folder we did not make is left alone, and said).
async fn teardown(env: &Env, work: &Work) -> Result<()> {
    let local: Arc<dyn Host> = env.local.clone();
    let exists = |p: PathBuf| {
        let local = local.clone();
        async move { local.stat(&p).await.ok().flatten().is_some() }
    };
    for dir in [&work.dir, &work.pgdir] {
        if exists(dir.clone()).await && !exists(dir.join(MARKER)).await {
            return Err(FailoverError::Refused(format!(
                "{} exists and was not made by a drill (no {MARKER} in it): move it away, then run the drill again",
                dir.display()
            )));
        }
    }
    let (odoo, svc) = drill_odoo(env, work);
    if exists(work.run()).await {
        odoo.stop(&svc).await?;
    }
    if exists(work.pg().join("PG_VERSION")).await {
        let copy = copy_cluster(env, work, 0)?;
        if copy.is_running().await.unwrap_or(false) {
            copy.stop(StopMode::Immediate)
                .await
                .map_err(f("stopping the drill's cluster"))?;
        }
    }
    for dir in [&work.dir, &work.pgdir] {
        if !exists(dir.clone()).await {
            continue;
        }
        local
            .run(
                &CommandSpec::new("rm")
                    .args(["-rf", "--one-file-system"])
                    .arg(dir.display().to_string())
                    .timeout(Duration::from_secs(3600)),
            )
            .await
            .map_err(hf(format!("removing {}", dir.display())))?;
    }
    Ok(())
}
