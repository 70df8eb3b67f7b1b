//! Planned operations in the users' world (two systemd machines, real Odoo 17), each test on
//! its own lab:
//! - a switchover moves production to the backup and back with writes before, between and
//!   after, and not a row or a file is lost; one that finds the standby behind at the switch
//!   point puts the VPS back as it was, nothing promoted;
//! - a drill proves a failover on a throwaway copy while the VPS serves and the standby keeps
//!   replaying, changes nothing on the VPS, and names an addon missing from the backup.
//!
//! Needs root (the lab); about four minutes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use lab::odoo::{DB, VPS_DATA_DIR};
use odoo_standby_tests::{uploaded, wait, LabWorld};
use serde_json::Value;

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Every upload logged in `logs` is in the Odoo behind `users`, with its bytes.
fn all_files_there(users: &lab::odoo::Client<'_>, logs: &[&str]) {
    let mut args = Vec::new();
    for l in logs {
        args.extend(["--log", l]);
    }
    let c = users.ok("check", &args).unwrap();
    assert_eq!(c["ok"], c["logged"], "{c}");
    assert!(c["logged"].as_u64().unwrap() > 0, "{c}");
}

fn counts(users: &lab::odoo::Client<'_>) -> Value {
    users.ok("counts", &[]).unwrap()
}

fn unit_state(m: &lab::Machine, unit: &str) -> String {
    let o = m.exec(&["systemctl", "is-active", unit]).unwrap();
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

#[test]
fn switchover_there_and_back_loses_nothing_and_a_standby_behind_puts_the_vps_back() {
    let w = LabWorld::new();
    w.ok(&["protect", "vps1", "--restart-vps"]);
    w.wait_healthy(60);
    let vps = w.vps_users();
    let backup = w.backup_users();

    // Before: users write rows and files on the VPS.
    vps.ok("web-login", &["admin", "admin"]).unwrap();
    vps.ok(
        "write",
        &["--partners", "4", "--orders", "4", "--origin", "before"],
    )
    .unwrap();
    vps.upload("/root/before.log", 6, "before-files").unwrap();

    // The plan shows the switch point check and no pg_rewind.
    let plan = w.ok(&["switchover", "vps1", "--dry-run"]);
    assert!(
        plan.contains("switch-point") && plan.contains("pg_controldata"),
        "{plan}"
    );
    assert!(!plan.contains("bin/pg_rewind"), "{plan}");

    // A standby behind: the run dies after the last files came (Odoo on the VPS stopped),
    // replay is paused here, and the resumed run finds it behind: at the switch point (the
    // VPS's shutdown checkpoint not replayed), or already at the last file pass again when the
    // VPS wrote some WAL in between (autovacuum, a standby snapshot: the kill point comes
    // before the journal records the step, so the resume runs it again). Either way the VPS
    // is put back, nothing promoted.
    let died = w.cli_env(
        &["ODOO_STANDBY_KILL_AFTER=last-files"],
        &["switchover", "vps1", "--yes"],
    );
    assert!(!died.status.success(), "{}", text(&died));
    assert_eq!(unit_state(w.vps(), "odoo"), "inactive");
    w.backup_sql("postgres", "SELECT pg_wal_replay_pause()");
    let back = w.cli(&["resume", "vps1"]);
    let said = text(&back);
    assert!(!back.status.success(), "{said}");
    assert!(said.contains("BEHIND"), "{said}");
    assert!(said.contains("Production is back on the VPS"), "{said}");
    eprintln!(
        "the standby was found behind at {}",
        if said.contains("shutdown checkpoint") {
            "the switch point"
        } else {
            "the last file pass"
        }
    );
    assert_eq!(
        w.backup_sql("postgres", "SELECT pg_is_in_recovery()"),
        ["t"]
    );
    assert_eq!(w.vps_sql("postgres", "SELECT pg_is_in_recovery()"), ["f"]);
    assert_eq!(unit_state(w.vps(), "odoo"), "active");
    vps.ok("wait-http", &["--timeout", "60"]).unwrap();
    let login = vps.ok("web-login", &["admin", "admin"]).unwrap();
    assert_eq!(login["status"], 303, "{login}");
    vps.ok("write", &["--orders", "2", "--origin", "before"])
        .unwrap();
    assert!(w.ok(&["resume", "vps1"]).contains("nothing to resume"));
    w.backup_sql("postgres", "SELECT pg_wal_replay_resume()");
    w.wait_healthy(90);

    // Behind exactly at the switch point: the run holds after the last files came, replay is
    // paused here, and the run goes on to the clean stop: the shutdown checkpoint is not
    // replayed, the VPS is put back, nothing promoted.
    let held = std::thread::scope(|s| {
        let run = s.spawn(|| {
            w.cli_env(
                &["ODOO_STANDBY_HOLD_AFTER=last-files:/root/go"],
                &["switchover", "vps1", "--yes"],
            )
        });
        wait("the switchover holds after last-files", 120, || {
            w.backup()
                .exec(&["test", "-e", "/root/go.held"])
                .unwrap()
                .status
                .success()
        });
        w.backup_sql("postgres", "SELECT pg_wal_replay_pause()");
        w.backup().run(&["touch", "/root/go"]).unwrap();
        run.join().unwrap()
    });
    let said = text(&held);
    assert!(!held.status.success(), "{said}");
    assert!(
        said.contains("shutdown checkpoint") && said.contains("it is BEHIND"),
        "{said}"
    );
    assert!(said.contains("Production is back on the VPS"), "{said}");
    assert_eq!(
        w.backup_sql("postgres", "SELECT pg_is_in_recovery()"),
        ["t"]
    );
    assert_eq!(w.vps_sql("postgres", "SELECT pg_is_in_recovery()"), ["f"]);
    assert_eq!(unit_state(w.vps(), "odoo"), "active");
    assert!(w.ok(&["resume", "vps1"]).contains("nothing to resume"));
    w.backup_sql("postgres", "SELECT pg_wal_replay_resume()");
    w.wait_healthy(90);
    vps.ok("wait-http", &["--timeout", "60"]).unwrap();

    // The switchover: Odoo serves here, with every row and file; the check is shown.
    let before = counts(&vps);
    let (out, first) = w.timed_to_first_200(&["switchover", "vps1", "--yes"]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("shutdown checkpoint") && said.contains("nothing is lost"),
        "{said}"
    );
    assert!(said.contains("nothing rewound"), "{said}");
    eprintln!("switchover: first HTTP 200 here {first:?} s after the command started");
    assert_eq!(counts(&backup), before);
    all_files_there(&backup, &["/root/before.log"]);
    // The VPS follows this server, its Odoo stopped and disabled.
    assert_eq!(w.vps_sql("postgres", "SELECT pg_is_in_recovery()"), ["t"]);
    wait("the VPS streams from the backup", 30, || {
        w.vps_sql("postgres", "SELECT status FROM pg_stat_wal_receiver") == ["streaming"]
    });
    assert_eq!(unit_state(w.vps(), "odoo"), "inactive");
    let enabled = w.vps().exec(&["systemctl", "is-enabled", "odoo"]).unwrap();
    assert_eq!(String::from_utf8_lossy(&enabled.stdout).trim(), "disabled");
    let (_, s) = w.status();
    assert_eq!(s["role"], "primary", "{s}");
    assert_eq!(s["problems"][0]["code"], "switched-over", "{s}");

    // Between: users write here; the rows stream to the VPS as they come.
    backup
        .ok(
            "write",
            &["--partners", "3", "--orders", "3", "--origin", "between"],
        )
        .unwrap();
    backup
        .upload("/root/between.log", 5, "between-files")
        .unwrap();
    wait("the rows written here on the VPS", 30, || {
        w.vps_sql(
            "clientes",
            "SELECT count(*) FROM lab_order WHERE origin = 'between'",
        ) == ["3"]
    });
    // The files written here flow back to the VPS while it follows (before any failback).
    let sent = uploaded(&w, "/root/between.log");
    assert_eq!(sent.len(), 5);
    wait(
        "the files written here on the VPS before failback",
        120,
        || {
            sent.iter().all(|sha| {
                let path = format!("{VPS_DATA_DIR}/filestore/{DB}/{}/{sha}", &sha[..2]);
                w.vps()
                    .exec(&["test", "-s", &path])
                    .unwrap()
                    .status
                    .success()
            })
        },
    );
    let (_, s) = w.status();
    assert!(
        s["files"]["back_sent"].as_u64().unwrap() >= 5,
        "{}",
        s["files"]
    );
    // The planned work: the VPS's cluster stops (a reboot). It is not held down (it comes
    // back as the standby it is), status says it does not follow now, and once started it
    // catches up with what was written meanwhile.
    w.vps()
        .run(&["systemctl", "stop", "postgresql@15-main"])
        .unwrap();
    backup
        .ok("write", &["--orders", "2", "--origin", "maintenance"])
        .unwrap();
    let (_, s) = w.status();
    assert_eq!(s["problems"][0]["code"], "switched-over", "{s}");
    assert!(
        s["problems"][0]["message"]
            .as_str()
            .unwrap()
            .contains("does not follow it now"),
        "{s}"
    );
    assert!(!s["problems"].to_string().contains("vps-not-held"), "{s}");
    let start_conf = w.vps().read("/etc/postgresql/15/main/start.conf").unwrap();
    assert!(
        start_conf.lines().any(|l| l.trim() == "auto"),
        "{start_conf}"
    );
    w.vps()
        .run(&["systemctl", "start", "postgresql@15-main"])
        .unwrap();
    wait("the VPS caught up after its restart", 60, || {
        w.vps_sql(
            "clientes",
            "SELECT count(*) FROM lab_order WHERE origin = 'maintenance'",
        ) == ["2"]
    });
    let between = counts(&backup);

    // Back: failback gives production to the VPS, every row and file with it.
    w.ok(&["failback", "vps1"]);
    vps.ok("wait-http", &["--timeout", "60"]).unwrap();
    assert_eq!(counts(&vps), between);
    all_files_there(&vps, &["/root/before.log", "/root/between.log"]);

    // After: the VPS serves and the backup is its standby again, files and rows coming.
    vps.ok("write", &["--orders", "2", "--origin", "after"])
        .unwrap();
    vps.upload("/root/after.log", 3, "after-files").unwrap();
    let s = w.wait_healthy(90);
    assert_eq!(s["role"], "standby", "{s}");
    wait("the rows written after on the backup", 30, || {
        w.backup_sql(
            "clientes",
            "SELECT count(*) FROM lab_order WHERE origin = 'after'",
        ) == ["2"]
    });
    wait("the files written after on the backup", 60, || {
        let (code, s) = w.status();
        code == 0 && s["files"]["missing"] == 0
    });
}

/// Where a drill's copy of the standby lives (beside the standby's data directory).
const PGDRILL: &str = "/var/lib/postgresql/15/vps1-drill";

/// The last drill's report, as the state folder keeps it.
fn last_drill(w: &LabWorld) -> Value {
    let text = w
        .backup()
        .read("/var/lib/odoo-standby/vps1/drill.json")
        .unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Both drill folders are gone and no process of the copy runs.
fn assert_torn_down(w: &LabWorld) {
    let root = "/opt/odoouser/respaldo_filestore/vps1";
    let left = format!("test -e {root}/drill -o -e {PGDRILL} && echo left || echo gone");
    assert_eq!(sh(w.backup(), &left), "gone");
    assert_eq!(sh(w.backup(), "pgrep -fc '[v]ps1-drill/pg' || true"), "0");
}

fn sh(m: &lab::Machine, script: &str) -> String {
    m.sh(script, &[]).unwrap().trim().to_owned()
}

#[test]
fn a_drill_proves_a_failover_without_touching_production_and_names_a_missing_addon() {
    let w = LabWorld::new();
    w.ok(&["protect", "vps1", "--restart-vps"]);
    w.wait_healthy(60);
    let vps = w.vps_users();
    vps.ok("web-login", &["admin", "admin"]).unwrap();
    vps.upload("/root/drill.log", 4, "drill-files").unwrap();
    wait("the uploads on the backup", 60, || {
        let (code, s) = w.status();
        code == 0 && s["files"]["missing"] == 0
    });
    // What the VPS is before the drill.
    let slots = "SELECT slot_name FROM pg_replication_slots ORDER BY 1";
    let slots_before = w.vps_sql("postgres", slots);
    let files = "find /var/opt/odoo/data_dir/filestore -type f | wc -l";
    let files_before = sh(w.vps(), files);
    let conf_before = w.vps().read("/etc/odoo.conf").unwrap();

    // The drill runs while users write on the VPS: the slot stays active and the standby
    // keeps replaying, checked during the drill.
    let (out, seen) = std::thread::scope(|s| {
        let drill = s.spawn(|| w.cli(&["drill", "vps1"]));
        // (rounds, slot active, the previous round's write replayed here)
        let mut seen = (0, 0, 0);
        while !drill.is_finished() {
            seen.0 += 1;
            let origin = format!("during-{}", seen.0);
            vps.ok("write", &["--orders", "1", "--origin", &origin])
                .unwrap();
            let active = w.vps_sql(
                "postgres",
                "SELECT active FROM pg_replication_slots WHERE slot_name = 'vps1'",
            );
            seen.1 += usize::from(active == ["t"]);
            if seen.0 > 1 {
                let here = w.backup_sql(
                    "clientes",
                    &format!(
                        "SELECT count(*) FROM lab_order WHERE origin = 'during-{}'",
                        seen.0 - 1
                    ),
                );
                seen.2 += usize::from(here == ["1"]);
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        (drill.join().unwrap(), seen)
    });
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("PASSED") && said.contains("RTO"), "{said}");
    let (rounds, active, replayed) = seen;
    eprintln!(
        "during the drill: slot active {active}/{rounds}, the previous round's write replayed here {replayed}/{}",
        rounds - 1
    );
    assert!(rounds >= 3, "the drill took under 3 s?\n{said}");
    assert_eq!(active, rounds, "the slot was not active all along");
    assert_eq!(replayed, rounds - 1, "the standby did not keep replaying");
    let report = last_drill(&w);
    assert_eq!(report["ok"], true, "{report}");
    assert!(report["rto_seconds"].as_f64().unwrap() > 0.0, "{report}");
    assert!(
        report["attachments_checked"].as_u64().unwrap() >= 1,
        "{report}"
    );
    assert_eq!(report["standby_kept_streaming"], true, "{report}");
    // All torn down here; nothing changed on the VPS.
    let root = "/opt/odoouser/respaldo_filestore/vps1";
    assert_torn_down(&w);
    assert_eq!(w.vps_sql("postgres", slots), slots_before);
    assert_eq!(sh(w.vps(), files), files_before);
    assert_eq!(w.vps().read("/etc/odoo.conf").unwrap(), conf_before);
    assert_eq!(unit_state(w.vps(), "odoo"), "active");
    let (code, s) = w.status();
    assert_eq!(code, 0, "{s}");
    assert_eq!(s["last_drill"]["ok"], true, "{s}");
    let table = w.ok(&["status", "vps1"]);
    assert!(table.contains("passed"), "{table}");

    // A broken standby: an addon missing from the backup's sources. The drill fails and
    // names it, and changes nothing either.
    let addon = format!("{root}/sources/custom/lab_custom");
    w.backup()
        .run(&["mv", &addon, "/root/lab_custom.aside"])
        .unwrap();
    let out = w.cli(&["drill", "vps1"]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("FAILED") && said.contains("lab_custom"),
        "{said}"
    );
    assert!(said.contains("diagnosis"), "{said}");
    assert_torn_down(&w);
    w.assert_problem("drill-failed");
    w.backup()
        .run(&["mv", "/root/lab_custom.aside", &addon])
        .unwrap();
    assert_eq!(unit_state(w.vps(), "odoo"), "active");
    assert_eq!(w.vps_sql("postgres", slots), slots_before);

    // The package's drill unit (what the weekly timer starts) passes again once fixed.
    w.backup()
        .run(&["systemctl", "start", "odoo-standby-drill@vps1.service"])
        .unwrap();
    let report = last_drill(&w);
    assert_eq!(report["ok"], true, "{report}");
    let (code, s) = w.status();
    assert_eq!(code, 0, "{s}");
}
