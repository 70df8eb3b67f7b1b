//! The demo's lifecycle, run through the `odoo-standby` binary against the sandbox, with the
//! operator's bad night in it: a failover refused while the VPS is alive, the VPS killed, the
//! failover and the failback each killed (SIGKILL) at a step and resumed. At the end no
//! committed row and no referenced file is lost, and the instance is protected again.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use odoo_standby_tests::binary;
use pgrepl::{PgClient, Sql};
use sandbox::{Sandbox, SizeMix, World};

/// Starts (or stops) the VPS's Odoo through the product's own supervisor (on a runtime of
/// its own: the tests that call this are inside one already).
fn vps_odoo(config: &Path, up: bool) {
    let config = config.to_owned();
    std::thread::spawn(move || {
        let cfg = failover::Config::load(&config).unwrap();
        let env = failover::Env::new(&cfg, &config, "vps1").unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let svc = env.vps_odoo_service();
            if up {
                env.there.start(&svc).await
            } else {
                env.there.stop(&svc).await
            }
        })
        .unwrap();
    })
    .join()
    .unwrap();
}

struct T {
    sb: Sandbox,
    w: World,
    bin: PathBuf,
}

impl T {
    fn new() -> Self {
        let mut sb = Sandbox::new().unwrap();
        let w = sandbox::vps_world(&mut sb, 60).unwrap();
        // Production runs on the VPS, as in the users' world.
        vps_odoo(&w.config, true);
        Self {
            sb,
            w,
            bin: binary(),
        }
    }

    /// The VPS dies: its Odoo (which on one machine would hold the port the backup's Odoo
    /// needs), its PostgreSQL and its sshd.
    fn vps_dies(&mut self) {
        vps_odoo(&self.w.config, false);
        assert!(self.w.vps.kill());
        assert!(self.sb.stop_sshd());
    }

    fn cli(&self, args: &[&str], kill_after: Option<&str>) -> Output {
        let mut c = Command::new(&self.bin);
        c.arg("-c").arg(&self.w.config).args(args);
        if let Some(step) = kill_after {
            c.env("ODOO_STANDBY_KILL_AFTER", step);
        }
        let out = c.output().unwrap();
        eprintln!(
            "$ odoo-standby {} -> {:?}\n{}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args, None);
        assert!(out.status.success(), "odoo-standby {args:?} failed");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `args` with a kill point: the process must die by SIGKILL after `step`.
    fn killed_after(&self, args: &[&str], step: &str) {
        let out = self.cli(args, Some(step));
        assert_eq!(out.status.signal(), Some(9), "not killed after {step}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!stdout.contains("complete in"), "{stdout}");
    }

    fn status(&self) -> (i32, serde_json::Value) {
        let out = self.cli(&["status", "vps1", "--json"], None);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (out.status.code().unwrap(), v[0].clone())
    }

    fn wait_healthy(&self) -> serde_json::Value {
        let start = Instant::now();
        loop {
            let (code, s) = self.status();
            if code == 0 || start.elapsed() > Duration::from_secs(40) {
                assert_eq!(code, 0, "never healthy: {s}");
                assert_eq!(s["healthy"], true);
                return s;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    async fn vps(&self) -> PgClient {
        PgClient::connect(&self.w.vps.conninfo("clientes"))
            .await
            .unwrap()
    }

    /// The backup's cluster (a clone of the VPS: same superuser password).
    async fn backup(&self) -> PgClient {
        let c = self.w.vps.conninfo("clientes").replace(
            &format!("port={}", self.w.vps.port()),
            &format!("port={}", self.w.standby_port),
        );
        PgClient::connect(&c).await.unwrap()
    }

    fn instance_data_dir(&self) -> PathBuf {
        self.w.instance_dir.join("data_dir")
    }
}

async fn value(db: &dyn Sql, sql: &str) -> String {
    pgrepl::query_value(db, sql)
        .await
        .unwrap()
        .unwrap_or_default()
}

async fn referenced(db: &dyn Sql) -> BTreeSet<String> {
    db.query("SELECT DISTINCT store_fname FROM ir_attachment WHERE store_fname IS NOT NULL")
        .await
        .unwrap()
        .into_iter()
        .filter_map(|r| r.into_iter().next().flatten())
        .collect()
}

fn missing(filestore: &Path, names: &BTreeSet<String>) -> Vec<String> {
    names
        .iter()
        .filter(|n| !filestore.join(n).is_file())
        .cloned()
        .collect()
}

async fn lifecycle(failover_kill: &str, failback_kill: &str) {
    let mut t = T::new();

    // protect, then protect again: the second run changes nothing.
    t.ok(&["protect", "vps1", "--restart-vps"]);
    let again = t.ok(&["protect", "vps1"]);
    assert!(
        again.contains("clone the standby cluster here and stream: already done"),
        "{again}"
    );
    let s = t.wait_healthy();
    assert_eq!(s["name"], "vps1");
    assert_eq!(s["role"], "standby");
    assert!(s["db"]["lag_bytes"].as_i64().is_some(), "{s}");
    assert_eq!(s["files"]["missing"], 0);

    // Writes on the VPS: rows and attachments, replicated and synced.
    let vps = t.vps().await;
    pgrepl::execute(
        &vps,
        "CREATE TABLE orders (id int PRIMARY KEY, origin text); ALTER TABLE orders OWNER TO odoo",
    )
    .await
    .unwrap();
    pgrepl::execute(
        &vps,
        "INSERT INTO orders SELECT g, 'vps' FROM generate_series(1, 100) g",
    )
    .await
    .unwrap();
    t.w.vps
        .add_attachments("clientes", &t.w.data_dir, 20, &SizeMix::odoo(), 8)
        .unwrap();
    t.wait_healthy();

    // Failover refused while the VPS's PostgreSQL takes writes; nothing changed.
    let out = t.cli(&["failover", "vps1", "--yes"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("still accepts writes"));
    let backup = t.backup().await;
    assert_eq!(value(&backup, "SELECT pg_is_in_recovery()").await, "t");
    let (_, s) = t.status();
    assert!(s["interrupted"].is_null(), "{s}");
    assert_eq!(s["syncs"], "active");
    drop(backup);

    // The VPS dies. Failover, killed after one step, then resumed.
    drop(vps);
    t.vps_dies();
    t.killed_after(
        &["failover", "vps1", "--yes", "--vps-unreachable"],
        failover_kill,
    );
    let (code, s) = t.status();
    assert_eq!(code, 1);
    assert_eq!(s["interrupted"], "failover", "{s}");
    let out = t.ok(&["resume", "vps1", "--yes"]);
    assert!(out.contains("done earlier"), "{out}");
    let (_, s) = t.status();
    assert_eq!(s["role"], "primary");
    assert_eq!(s["odoo_unit"], "active");
    assert!(s["interrupted"].is_null());

    // Production on the backup: rows and attachments written there.
    let backup = t.backup().await;
    pgrepl::execute(
        &backup,
        "INSERT INTO orders SELECT g, 'backup' FROM generate_series(101, 150) g",
    )
    .await
    .unwrap();
    for i in 0..10u32 {
        let content = format!("written on the backup #{i}").repeat(50);
        let (_, sql) =
            sandbox::attachment(&t.instance_data_dir(), "clientes", content.as_bytes()).unwrap();
        pgrepl::execute(&backup, &sql).await.unwrap();
    }
    drop(backup);

    // The VPS comes back. Failback, killed after one step, then resumed.
    t.w.vps.start().unwrap();
    t.sb.restart_sshd().unwrap();
    t.killed_after(&["failback", "vps1"], failback_kill);
    t.ok(&["resume", "vps1"]);
    let s = t.wait_healthy();
    assert_eq!(s["role"], "standby");
    assert_eq!(s["odoo_unit"], "inactive");
    assert_eq!(s["syncs"], "active");

    // Nothing lost: every committed row on both sides, every referenced file on both sides.
    let vps = t.vps().await;
    assert_eq!(value(&vps, "SELECT pg_is_in_recovery()").await, "f");
    let backup = t.backup().await;
    let start = Instant::now();
    while value(&backup, "SELECT count(*) FROM orders").await != "150" {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "backup never caught up"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(value(&vps, "SELECT count(*) FROM orders").await, "150");
    assert_eq!(
        value(&vps, "SELECT count(DISTINCT origin) FROM orders").await,
        "2"
    );
    let names = referenced(&vps).await;
    assert_eq!(names, referenced(&backup).await);
    // 60 + 20 written on the VPS (a few share content, as in Odoo) and 10 on the backup.
    assert!(names.len() >= 85, "{}", names.len());
    assert_eq!(
        missing(&t.w.data_dir.join("filestore/clientes"), &names),
        Vec::<String>::new()
    );
    assert_eq!(
        missing(&t.instance_data_dir().join("filestore/clientes"), &names),
        Vec::<String>::new()
    );
    // The failback slot is gone on both sides; the VPS's slot for the backup is in use.
    for db in [&vps as &dyn Sql, &backup] {
        assert_eq!(
            value(
                db,
                "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'vps1_failback'"
            )
            .await,
            "0"
        );
    }
    assert_eq!(
        value(
            &vps,
            "SELECT active FROM pg_replication_slots WHERE slot_name = 'vps1'"
        )
        .await,
        "t"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_killed_after_promotion_and_failback_killed_after_the_rewind_end_as_a_clean_run() {
    lifecycle("promote", "rejoin-vps").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_killed_after_starting_odoo_and_failback_killed_after_promoting_the_vps() {
    lifecycle("start-odoo", "promote-vps").await;
}

/// The two cases that stopped a failover at the smoke test although real Odoo would serve:
/// a referenced file that never reached the backup (the VPS died mid-upload) and a table an
/// admin made as `postgres` in the Odoo database. The failover goes on and names the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_goes_on_with_a_file_the_backup_never_got_and_a_table_owned_by_postgres() {
    let mut t = T::new();
    t.ok(&["protect", "vps1", "--restart-vps"]);
    t.wait_healthy();
    let vps = t.vps().await;
    pgrepl::execute(
        &vps,
        "CREATE TABLE admin_notes (id int PRIMARY KEY, note text)",
    )
    .await
    .unwrap();
    // A row whose file is gone from the VPS before any sync pass could copy it.
    let (fname, sql) = sandbox::attachment(&t.w.data_dir, "clientes", b"never copied").unwrap();
    std::fs::remove_file(t.w.data_dir.join("filestore/clientes").join(&fname)).unwrap();
    pgrepl::execute(&vps, &sql).await.unwrap();
    let backup = t.backup().await;
    let q = format!("SELECT count(*) FROM ir_attachment WHERE store_fname = '{fname}'");
    let start = Instant::now();
    while value(&backup, &q).await != "1" {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the row never replicated"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop((vps, backup));
    t.vps_dies();
    let out = t.ok(&["failover", "vps1", "--yes", "--vps-unreachable"]);
    assert!(out.contains("LOST: 1 attachment file(s)"), "{out}");
    assert!(out.contains(&format!("lost clientes/{fname}")), "{out}");
    let (_, s) = t.status();
    assert_eq!(s["role"], "primary");
    assert_eq!(s["odoo_unit"], "active");
}

/// A changed SSH host key is the host crate's error, with the fingerprint offered; it must
/// reach the operator through the layers above, from `sync` and from `failover` alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_host_key_reaches_the_operator_with_its_fingerprint() {
    let t = T::new();
    // The operator's event hook: one line per event, from root's runs and the sync service.
    let events = t.sb.root().join("events.log");
    let hook = t.sb.root().join("on-event");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\nprintf '%s|%s|%s|%s\\n' \"$1\" \"$2\" \"$3\" \"$ODOO_STANDBY_MESSAGE\" >> {}\n",
            events.display()
        ),
    )
    .unwrap();
    std::fs::write(&events, "").unwrap();
    for (p, mode) in [(&hook, 0o755), (&events, 0o666)] {
        std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
    }
    let cfg = std::fs::read_to_string(&t.w.config).unwrap().replacen(
        "[backup]\n",
        &format!("[backup]\non_event = \"{}\"\n", hook.display()),
        1,
    );
    std::fs::write(&t.w.config, cfg).unwrap();
    t.ok(&["protect", "vps1", "--restart-vps"]);
    t.wait_healthy();
    // The sync service's metrics: promtool accepts them; a standby, up, no error yet.
    let metrics = t.sb.root().join("metrics/odoo_standby_vps1.prom");
    let text =
        std::fs::read_to_string(&metrics).unwrap_or_else(|e| panic!("{}: {e}", metrics.display()));
    odoo_standby_tests::assert_promtool_accepts(&text);
    for line in [
        "odoo_standby_up{instance_name=\"vps1\"} 1\n",
        "odoo_standby_role{instance_name=\"vps1\",role=\"standby\"} 1\n",
        "odoo_standby_sync_errors_total{instance_name=\"vps1\"} 0\n",
        "odoo_standby_slot_retained_bytes{instance_name=\"vps1\"} ",
    ] {
        assert!(text.contains(line), "{line:?} not in:\n{text}");
    }
    // A new attachment, so that the next pass must talk to the VPS.
    t.w.vps
        .add_attachments("clientes", &t.w.data_dir, 1, &SizeMix::fixed(500), 99)
        .unwrap();
    // The VPS's key in known_hosts is replaced by another one (as after a reinstall, or
    // a machine in the middle).
    let other = t.sb.root().join("other_key");
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other)
        .status()
        .unwrap();
    assert!(ok.success());
    let new_key = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    let new_key: Vec<&str> = new_key.split_whitespace().take(2).collect();
    let known = std::fs::read_to_string(&t.w.known_hosts).unwrap();
    let swapped: String = known
        .lines()
        .map(|l| {
            let who = l.split_whitespace().next().unwrap_or_default();
            format!("{who} {} {}\n", new_key[0], new_key[1])
        })
        .collect();
    std::fs::write(&t.w.known_hosts, swapped).unwrap();
    for args in [&["sync", "vps1"][..], &["failover", "vps1", "--yes"][..]] {
        let out = t.cli(args, None);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("CHANGED") && err.contains("SHA256:"),
            "{args:?}: {err}"
        );
    }
    // Status names both: the key, and the sync pass that failed on it.
    let (code, s) = t.status();
    assert_eq!(code, 1, "{s}");
    let codes: Vec<&str> = s["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["code"].as_str())
        .collect();
    assert!(codes.contains(&"vps-host-key-changed"), "{s}");
    assert!(codes.contains(&"sync-failing"), "{s}");
    assert_eq!(s["severity"], "critical", "{s}");
    // The failed passes count in the metrics (the service's, and the one run by hand).
    let text = std::fs::read_to_string(&metrics).unwrap();
    odoo_standby_tests::assert_promtool_accepts(&text);
    assert!(
        text.contains("odoo_standby_up{instance_name=\"vps1\"} 0\n"),
        "{text}"
    );
    assert!(
        !text.contains("odoo_standby_sync_errors_total{instance_name=\"vps1\"} 0\n"),
        "{text}"
    );
    // The events reached the hook, with their severity, and history tells them in order.
    let seen = std::fs::read_to_string(&events).unwrap();
    for line in [
        "vps1|operation-started|info|protect of vps1",
        "vps1|operation-ended|info|protect of vps1",
        "vps1|sync-failing|warning|a sync pass failed: ",
        "vps1|problem|critical|vps-host-key-changed: ",
    ] {
        assert!(seen.contains(line), "{line:?} not in:\n{seen}");
    }
    let history = t.ok(&["history", "vps1"]);
    let started = history.find("operation-started: protect of vps1").unwrap();
    let cloned = history.find("step clone-standby of protect").unwrap();
    let key = history
        .find("CRITICAL problem: vps-host-key-changed")
        .unwrap();
    assert!(started < cloned && cloned < key, "{history}");
}

/// Every operation looks at both sides first: a failback that never failed over, a second
/// failover, a protect of a failed-over instance are refused, touching nothing. A failback
/// killed half-way and put aside with `abort` says what it leaves; a new failback completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_operation_checks_the_roles_first_and_abort_says_what_it_leaves() {
    let t = T::new();
    t.ok(&["protect", "vps1", "--restart-vps"]);
    t.wait_healthy();
    let refused = |args: &[&str], words: &str| {
        let out = t.cli(args, None);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(words), "{args:?}: {err}");
    };
    refused(&["failback", "vps1"], "was never failed over");
    let (_, s) = t.status();
    assert!(s["interrupted"].is_null(), "{s}");
    assert_eq!(s["role"], "standby");

    t.ok(&["failover", "vps1", "--yes", "--force"]);
    refused(
        &["failover", "vps1", "--yes", "--force"],
        "is failed over already",
    );
    refused(&["protect", "vps1"], "is failed over");

    t.killed_after(&["failback", "vps1"], "rejoin-vps");
    let out = t.ok(&["abort", "vps1"]);
    for words in [
        "the interrupted failback",
        "done by that run (its journal): stop-vps-odoo, vps-writes, prepare-backup\n",
        "not recorded done: rejoin-vps, stop-odoo,",
        "is a primary (production runs here)",
        "the VPS's cluster",
        "is a standby",
    ] {
        assert!(out.contains(words), "{words:?} not in: {out}");
    }
    let (_, s) = t.status();
    assert!(s["interrupted"].is_null(), "{s}");
    assert!(t.ok(&["abort", "vps1"]).contains("nothing to abort"));
    t.ok(&["failback", "vps1"]);
    let s = t.wait_healthy();
    assert_eq!(s["role"], "standby");
}
