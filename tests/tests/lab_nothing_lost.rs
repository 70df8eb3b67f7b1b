//! The bad night, on the two-machine lab with real Odoo: each case that lost data or left
//! production down on an earlier main (issue "nothing lost"), as the users' world has it.
//! - split brain: a frozen VPS PostgreSQL is not fenced; a resume fences again; a VPS that
//!   comes back as a primary after the failover is held down by status; what it wrote there
//!   is kept and named before failback rewinds it; kill-and-resume at three points of each;
//! - files: damage on the backup is found and fetched again, never copied back over good
//!   VPS files; everything the sync makes is the Odoo user's, and the sync runs as that user;
//! - roles, children, a lost slot: a failback of an instance that never failed over is
//!   refused; the children of a killed run die with it; a lost slot is named and re-cloned.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use odoo_standby_tests::{test_package, LabWorld, LAB_CONFIG};
use serde_json::Value;

const FILESTORE: &str = "/opt/odoouser/respaldo_filestore/vps1/data_dir/filestore/clientes";
const VPS_FILESTORE: &str = "/var/opt/odoo/data_dir/filestore/clientes";
const VPS_DATA: &str = "/var/lib/postgresql/15/main";

fn text(o: &std::process::Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Runs odoo-standby killed at `step` (the test build's kill point): it must die there.
fn killed_after(w: &LabWorld, step: &str, args: &[&str]) {
    let var = format!("ODOO_STANDBY_KILL_AFTER={step}");
    let out = w.cli_env(&[&var], args);
    assert!(
        !out.status.success(),
        "{args:?} was not killed after {step}"
    );
    let (_, s) = w.status();
    assert!(
        s["interrupted"].is_string(),
        "no interrupted run after {step}: {s}"
    );
}

fn wait_until(what: &str, seconds: u64, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(
            start.elapsed() < Duration::from_secs(seconds),
            "{what}: not within {seconds} s"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn vps_cluster_runs(w: &LabWorld) -> bool {
    w.vps()
        .exec(&["pg_isready", "-q"])
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn in_recovery(w: &LabWorld) -> String {
    w.backup_sql("postgres", "SELECT pg_is_in_recovery()")[0].clone()
}

/// `(id, sha1)` of each line of an upload log on the backup machine.
fn logged(w: &LabWorld, log: &str) -> Vec<(u64, String)> {
    w.backup()
        .read(log)
        .unwrap()
        .lines()
        .filter_map(|l| {
            let mut p = l.split_whitespace();
            Some((p.next()?.parse().ok()?, p.next()?.to_owned()))
        })
        .collect()
}

fn store_path(dir: &str, sha: &str) -> String {
    format!("{dir}/{}/{sha}", &sha[..2])
}

/// SHA-1 of a file in machine `m` (`None` when it is not there).
fn sha1_in(m: &lab::Machine, path: &str) -> Option<String> {
    let o = m.exec(&["sha1sum", path]).ok()?;
    o.status.success().then(|| {
        String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_owned()
    })
}

/// Four bytes changed in place (the size stays).
fn flip(m: &lab::Machine, path: &str) {
    m.sh(
        "printf ZZZZ | dd of=\"$1\" bs=1 seek=16 conv=notrunc status=none",
        &[path],
    )
    .unwrap();
}

fn start_conf(w: &LabWorld) -> String {
    w.vps()
        .read("/etc/postgresql/15/main/start.conf")
        .unwrap()
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty() && !l.starts_with('#'))
        .unwrap_or("")
        .to_owned()
}

/// The VPS as the fence leaves it: its cluster stopped, read-only if started, not started at
/// boot (neither by itself nor by Odoo's unit, which is disabled).
fn assert_held(w: &LabWorld) {
    if vps_cluster_runs(w) {
        let journal = w
            .vps()
            .run(&["journalctl", "-q", "--no-pager", "-n", "80"])
            .unwrap_or_default();
        panic!("the VPS's cluster runs:\n{journal}");
    }
    let odoo = w.vps().exec(&["systemctl", "is-enabled", "odoo"]).unwrap();
    assert_eq!(String::from_utf8_lossy(&odoo.stdout).trim(), "disabled");
    assert_eq!(start_conf(w), "manual");
    assert!(w
        .vps()
        .exec(&["test", "-e", &format!("{VPS_DATA}/standby.signal")])
        .unwrap()
        .status
        .success());
}

#[test]
fn split_brain_is_refused_fenced_and_what_the_vps_wrote_is_kept() {
    // The sync service does not look at the VPS here (its own hold is the main lab test's):
    // the VPS must come back and take writes before status finds it.
    let w = LabWorld::with_config(
        &odoo_standby_tests::LAB_CONFIG.replace(
            "pg_version = 15\n",
            "pg_version = 15\nvps_watch_seconds = 0\n",
        ),
        odoo_standby_tests::test_package(),
    );
    w.ok(&["protect", "vps1", "--restart-vps"]);
    w.wait_healthy(90);
    w.vps_users()
        .ok("write", &["--partners", "3", "--origin", "vps"])
        .unwrap();

    // The VPS's PostgreSQL frozen (SIGSTOP of its postmaster) while SSH answers: it is not
    // fenced, it may take writes again any moment.
    let pid = w
        .vps()
        .run(&["head", "-1", &format!("{VPS_DATA}/postmaster.pid")])
        .unwrap();
    let pid = pid.trim();
    w.vps().run(&["kill", "-STOP", pid]).unwrap();
    let out = w.cli(&["failover", "vps1", "--yes"]);
    w.vps().run(&["kill", "-CONT", pid]).unwrap();
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("does not answer") && err.contains("not fenced"),
        "{err}"
    );
    assert_eq!(in_recovery(&w), "t");

    // The VPS dies; the failover is acknowledged and killed right after the fence. The VPS
    // comes back meanwhile, a primary again: the resume fences again and refuses.
    w.vps().kill().unwrap();
    killed_after(
        &w,
        "fence",
        &["failover", "vps1", "--yes", "--vps-unreachable"],
    );
    w.vps().boot().unwrap();
    wait_until("the VPS's cluster back", 90, || vps_cluster_runs(&w));
    let out = w.cli(&["resume", "vps1", "--yes"]);
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("still accepts writes"), "{err}");
    assert_eq!(
        in_recovery(&w),
        "t",
        "promoted although the VPS is a primary"
    );
    // The run had changed nothing: it is not left interrupted.
    let (_, s) = w.status();
    assert!(s["interrupted"].is_null(), "{s}");

    // Gone again for good: the failover goes on, killed at three points, resumed each time.
    w.vps().kill().unwrap();
    killed_after(
        &w,
        "promote",
        &["failover", "vps1", "--yes", "--vps-unreachable"],
    );
    for step in ["odoo-files", "start-odoo"] {
        killed_after(&w, step, &["resume", "vps1", "--yes"]);
    }
    let out = w.ok(&["resume", "vps1", "--yes"]);
    assert!(out.contains("Left to you:"), "{out}");
    w.backup_users()
        .ok("wait-http", &["--timeout", "60"])
        .unwrap();
    w.backup_users()
        .ok("write", &["--partners", "3", "--origin", "backup"])
        .unwrap();
    w.backup_users()
        .upload("/root/backup.log", 3, "backup")
        .unwrap();

    // The VPS boots: its enabled cluster comes back as a primary and its Odoo with it, and
    // users (or a cron job) write there: 20 partners and 2 attachments.
    w.vps().boot().unwrap();
    wait_until("the VPS's cluster back", 90, || vps_cluster_runs(&w));
    lab::odoo::wait_serving(w.vps(), 8069, 120).unwrap();
    w.vps_users()
        .ok("write", &["--partners", "20", "--origin", "split"])
        .unwrap();
    w.vps_users().upload("/root/split.log", 2, "split").unwrap();
    let split = logged(&w, "/root/split.log");

    // Status finds it first and holds it down: no more writes there, not even after a boot.
    let (code, s) = w.status();
    assert_eq!(code, 1, "{s}");
    assert_eq!(
        s["problems"][0]["code"], "vps-primary-after-failover",
        "{s}"
    );
    assert_eq!(s["vps_role"], "primary", "{s}");
    let first = s["problems"][0]["message"].as_str().unwrap_or_default();
    assert!(
        first.contains("PRIMARY after the failover") && first.contains("held it down now"),
        "{s}"
    );
    assert!(
        s["problems"][0]["fix"]
            .as_str()
            .unwrap_or_default()
            .contains("odoo-standby failback vps1"),
        "{s}"
    );
    assert_held(&w);
    let took = w
        .vps_users()
        .call("write", &["--partners", "1", "--origin", "late"]);
    assert!(!matches!(took, Ok((true, _))), "the VPS still took a write");
    w.vps().kill().unwrap();
    w.vps().boot().unwrap();
    w.vps()
        .exec(&["systemctl", "is-system-running", "--wait"])
        .unwrap();
    assert_held(&w);
    // Someone starts it by hand as a primary again, twice: the text table and the Nagios
    // line name it too (and hold it down again each time).
    for form in [&["status", "vps1"][..], &["status", "vps1", "--nagios"][..]] {
        w.vps()
            .run(&["rm", &format!("{VPS_DATA}/standby.signal")])
            .unwrap();
        w.vps()
            .run(&["pg_ctlcluster", "15", "main", "start"])
            .unwrap();
        let out = w.cli(form);
        let (said, _) = text(&out);
        let nagios = form.len() == 3;
        assert_eq!(
            out.status.code(),
            Some(if nagios { 2 } else { 1 }),
            "{said}"
        );
        assert!(said.contains("vps-primary-after-failover"), "{said}");
        if nagios {
            assert!(said.starts_with("ODOO-STANDBY CRITICAL - "), "{said}");
        }
        assert_held(&w);
    }

    // Failback finds what the VPS wrote after the split, keeps it here, names it, and asks.
    let out = w.cli(&["failback", "vps1"]);
    let (stdout, err) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}{err}");
    assert!(err.contains("--discard-vps-writes"), "{err}");
    let partners = stdout
        .lines()
        .find_map(|l| {
            let (_, rest) = l.split_once("public.res_partner ")?;
            rest.split_whitespace().next()?.parse::<u64>().ok()
        })
        .unwrap_or(0);
    assert!(
        partners >= 20,
        "res_partner inserts reported: {partners}\n{stdout}"
    );
    for (id, _) in &split {
        assert!(
            stdout.contains(&format!("{id} ")),
            "attachment {id} not named:\n{stdout}"
        );
    }
    let kept = w
        .backup()
        .sh(
            "ls -d /opt/odoouser/respaldo_filestore/vps1/kept/vps-writes-*",
            &[],
        )
        .unwrap();
    let kept = kept.trim();
    assert!(err.contains(kept), "{kept} not named: {err}");
    let rows = w
        .backup()
        .sh(
            "pg_restore --data-only -t res_partner -f - \"$1/clientes.dump\" | grep -c 'split partner'",
            &[kept],
        )
        .unwrap();
    assert_eq!(rows.trim(), "20", "the dump does not hold the 20 partners");
    assert!(w
        .backup()
        .exec(&["test", "-s", &format!("{kept}/report.txt")])
        .unwrap()
        .status
        .success());

    // Let them go: the failback goes on, killed at three points, resumed each time.
    killed_after(
        &w,
        "rejoin-vps",
        &["failback", "vps1", "--discard-vps-writes"],
    );
    killed_after(&w, "copy-files-back", &["resume", "vps1"]);
    killed_after(&w, "promote-vps", &["resume", "vps1"]);
    w.ok(&["resume", "vps1"]);
    lab::odoo::wait_serving(w.vps(), 8069, 120).unwrap();
    let back = w
        .vps_users()
        .ok("check", &["--log", "/root/backup.log"])
        .unwrap();
    assert_eq!(back["ok"], back["logged"], "{back}");
    let n = w.vps_sql(
        "clientes",
        "SELECT count(*) FROM res_partner WHERE name LIKE 'backup partner%'",
    );
    assert_eq!(n, ["3"]);
    // The split's attachment files stay where they were on the VPS (nothing deletes them).
    for (_, sha) in &split {
        assert_eq!(
            sha1_in(w.vps(), &store_path(VPS_FILESTORE, sha)).as_deref(),
            Some(sha.as_str())
        );
    }
    assert_eq!(start_conf(&w), "auto");
    w.wait_healthy(120);
}

#[test]
fn damage_on_the_backup_is_fetched_again_and_never_copied_back() {
    let config = LAB_CONFIG.replace(
        "known_hosts = \"/opt/odoouser/.ssh/known_hosts\"\n",
        "known_hosts = \"/opt/odoouser/.ssh/known_hosts\"\nverify_sizes_minutes = 0\nverify_hash_mb_per_s = 200\n",
    );
    let w = LabWorld::with_config(&config, test_package());
    w.ok(&["protect", "vps1", "--restart-vps"]);
    w.wait_healthy(90);
    w.vps_users().upload("/root/before.log", 12, "vps").unwrap();
    let before = logged(&w, "/root/before.log");
    wait_until("every upload on the backup", 90, || {
        before.iter().all(|(_, sha)| {
            sha1_in(w.backup(), &store_path(FILESTORE, sha)).as_deref() == Some(sha)
        })
    });

    // The sync runs as the Odoo user (the package's template, and protect's drop-in with
    // what only the config knows), and everything it made is that user's.
    let unit = w
        .backup()
        .run(&["systemctl", "cat", "odoo-standby-sync@vps1.service"])
        .unwrap();
    assert!(
        unit.contains("# /lib/systemd/system/odoo-standby-sync@.service")
            && unit.contains(
                "# /etc/systemd/system/odoo-standby-sync@vps1.service.d/odoo-standby.conf"
            )
            && unit.contains("\nUser=odoouser\n")
            && unit.contains("ExecStart=/usr/bin/odoo-standby --config /etc/odoo-standby/config.toml sync %i --watch")
            && !unit.contains("ExecStart=\n"),
        "{unit}"
    );
    let user = w
        .backup()
        .sh(
            "ps -o user= -p \"$(pgrep -f 'sync vps1 --watch' | head -1)\"",
            &[],
        )
        .unwrap();
    assert_eq!(user.trim(), "odoouser");
    let foreign = w
        .backup()
        .run(&["find", FILESTORE, "!", "-user", "odoouser"])
        .unwrap();
    assert!(foreign.trim().is_empty(), "not odoouser's: {foreign}");

    // Damage here: one file deleted, one truncated, one with four bytes changed. The sync
    // finds each (sizes every pass here, SHA-1 in the background) and fetches it again.
    let (a, b, c) = (&before[0].1, &before[1].1, &before[2].1);
    w.backup().run(&["rm", &store_path(FILESTORE, a)]).unwrap();
    w.backup()
        .run(&["truncate", "-s", "10", &store_path(FILESTORE, b)])
        .unwrap();
    flip(w.backup(), &store_path(FILESTORE, c));
    let clock = Instant::now();
    wait_until("the damaged files fetched again", 120, || {
        [a, b, c].iter().all(|sha| {
            sha1_in(w.backup(), &store_path(FILESTORE, sha)).as_deref() == Some(sha.as_str())
        })
    });
    eprintln!(
        "deleted, truncated and changed files fetched again within {:.1} s",
        clock.elapsed().as_secs_f64()
    );
    let (_, s) = w.status();
    assert!(s["files"]["repaired"].as_u64().unwrap_or(0) >= 3, "{s}");

    // Failover with the VPS alive: the fence holds it down.
    w.ok(&["failover", "vps1", "--yes", "--force"]);
    assert_held(&w);
    w.backup_users()
        .ok("wait-http", &["--timeout", "60"])
        .unwrap();
    // Real Odoo writes into the folders the sync made: every file lands.
    w.backup_users()
        .upload("/root/backup.log", 6, "backup")
        .unwrap();
    let on_backup = w
        .backup_users()
        .ok("check", &["--log", "/root/backup.log"])
        .unwrap();
    assert_eq!(on_backup["ok"], on_backup["logged"], "{on_backup}");
    let written = logged(&w, "/root/backup.log");

    // Damage here again: two copies of files the VPS has (truncated, four bytes changed) and
    // one file only this server has. Status says so.
    let (d, e, f) = (&before[3].1, &before[4].1, &written[0].1);
    w.backup()
        .run(&["truncate", "-s", "10", &store_path(FILESTORE, d)])
        .unwrap();
    flip(w.backup(), &store_path(FILESTORE, e));
    flip(w.backup(), &store_path(FILESTORE, f));
    let damaged = w.assert_problem("files-damaged");
    assert!(
        damaged["message"]
            .as_str()
            .unwrap_or("")
            .contains("another size"),
        "{damaged}"
    );

    // Failback: the VPS's good files stay as they are; the damaged one it lacks is named
    // and not sent; the rest arrive.
    let out = w.ok(&["failback", "vps1"]);
    assert!(
        out.contains(&format!("damaged clientes/{}/{f}", &f[..2])),
        "{out}"
    );
    for sha in [d, e] {
        assert_eq!(
            sha1_in(w.vps(), &store_path(VPS_FILESTORE, sha)).as_deref(),
            Some(sha.as_str()),
            "a good VPS file was replaced"
        );
    }
    assert!(sha1_in(w.vps(), &store_path(VPS_FILESTORE, f)).is_none());
    lab::odoo::wait_serving(w.vps(), 8069, 120).unwrap();
    let back = w
        .vps_users()
        .ok("check", &["--log", "/root/backup.log"])
        .unwrap();
    assert!(back["bad"].as_array().unwrap().is_empty(), "{back}");
    let empty: BTreeSet<&str> = back["empty_names"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        empty,
        BTreeSet::from([format!("{}/{f}", &f[..2]).as_str()]),
        "{back}"
    );

    // Protected again: the backup's damaged copies are fetched again from the VPS; the one
    // nobody has is reported.
    wait_until("the backup's copies repaired", 120, || {
        [d, e].iter().all(|sha| {
            sha1_in(w.backup(), &store_path(FILESTORE, sha)).as_deref() == Some(sha.as_str())
        })
    });
    wait_until("the unrepairable file reported", 60, || {
        let (_, s) = w.status();
        s["problems"].as_array().is_some_and(|p| {
            p.iter().any(|p| {
                p["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains("VPS does not have them")
            })
        })
    });
    w.assert_problem("files-unrepaired");
}

#[test]
fn a_wrong_failback_is_refused_children_die_and_a_lost_slot_is_recloned() {
    let w = LabWorld::new();
    // The operator's own, larger WAL limit for slots, and a database big enough that the
    // base backup takes a while.
    w.vps_sql(
        "postgres",
        "ALTER SYSTEM SET max_slot_wal_keep_size = '20GB'",
    );
    w.vps_sql("postgres", "SELECT pg_reload_conf()");
    w.vps_sql(
        "clientes",
        "CREATE TABLE ballast AS SELECT g, repeat(md5(g::text), 30) AS t FROM generate_series(1, 600000) g",
    );

    // Killed in the middle of pg_basebackup: its children die with it, and the resume is
    // not stopped by a slot "active for PID".
    let protect = w
        .backup()
        .command(&["/usr/bin/odoo-standby", "protect", "vps1", "--restart-vps"])
        .unwrap()
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let running = |name: &str| {
        w.backup()
            .exec(&["pgrep", "-x", name])
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    wait_until("pg_basebackup running", 180, || running("pg_basebackup"));
    w.backup()
        .run(&["pkill", "-KILL", "-f", "odoo-standby protect"])
        .unwrap();
    let out = protect.wait_with_output().unwrap();
    wait_until("no child of the killed run left", 5, || {
        !["pg_basebackup", "rsync", "ssh"].iter().any(|p| running(p))
    });
    let killed_run = String::from_utf8_lossy(&out.stdout);
    assert!(
        killed_run.contains("kept max_slot_wal_keep_size = 20GB"),
        "{killed_run}"
    );
    w.ok(&["resume", "vps1"]);
    w.wait_healthy(120);

    // A failback of an instance that never failed over: refused, nothing touched.
    let out = w.cli(&["failback", "vps1"]);
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("was never failed over"), "{err}");
    assert_eq!(
        w.vps()
            .run(&["systemctl", "is-active", "odoo"])
            .unwrap()
            .trim(),
        "active"
    );
    assert_eq!(w.vps_sql("postgres", "SELECT pg_is_in_recovery()"), ["f"]);
    let s = w.wait_healthy(30);
    assert!(s["interrupted"].is_null(), "{s}");

    // The standby stopped for longer than the VPS keeps WAL for it: the slot is lost.
    w.vps_sql(
        "postgres",
        "ALTER SYSTEM SET max_slot_wal_keep_size = '64MB'",
    );
    w.vps_sql("postgres", "SELECT pg_reload_conf()");
    w.backup()
        .run(&["pg_ctlcluster", "15", "vps1", "stop"])
        .unwrap();
    for _ in 0..20 {
        w.vps_sql("clientes", "UPDATE ballast SET t = t WHERE g % 10 = 0");
        w.vps_sql("postgres", "SELECT pg_switch_wal()");
        w.vps_sql("postgres", "CHECKPOINT");
        let st = w.vps_sql(
            "postgres",
            "SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'vps1'",
        );
        if st == ["lost"] {
            break;
        }
    }
    assert_eq!(
        w.vps_sql(
            "postgres",
            "SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'vps1'"
        ),
        ["lost"]
    );
    w.backup()
        .run(&["pg_ctlcluster", "15", "vps1", "start"])
        .unwrap();
    let lost = w.assert_problem("slot-lost");
    assert_eq!(lost["severity"], "critical");
    assert!(
        lost["message"]
            .as_str()
            .unwrap_or_default()
            .contains("LOST")
            && lost["fix"]
                .as_str()
                .unwrap_or_default()
                .contains("--reclone"),
        "{lost}"
    );
    let out = w.cli(&["protect", "vps1"]);
    let (stdout, err) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}{err}");
    assert!(
        err.contains("is lost") && err.contains("--reclone"),
        "{err}"
    );
    assert!(
        stdout.contains("set max_slot_wal_keep_size = 10GB (was 64MB)"),
        "{stdout}"
    );
    let out = w.ok(&["protect", "vps1", "--reclone"]);
    assert!(out.contains("moved aside"), "{out}");
    w.wait_healthy(120);
}
