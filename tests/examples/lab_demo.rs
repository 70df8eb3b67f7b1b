//! The demo, in the users' world: two Debian 12 machines booted with systemd, real Odoo 17
//! on the VPS, odoo-standby installed on the backup. Protect, users writing through Odoo,
//! the VPS killed in the middle of uploads, failover, writes on the backup, the VPS booted
//! again, failback; then a table of what users wrote and what each side has, what was lost,
//! and the failover time from the command's start to the first HTTP 200 from the backup's
//! Odoo. `bash scripts/demo` runs it (as root; it installs what the lab needs first).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use odoo_standby_tests::LabWorld;
use serde_json::Value;

fn step(t0: Instant, what: &str) {
    println!("\n[{:>6.1}s] == {what}", t0.elapsed().as_secs_f64());
}

fn n(v: &Value) -> u64 {
    v.as_u64()
        .or_else(|| v.as_array().map(|a| a.len() as u64))
        .unwrap_or(0)
}

fn main() {
    let t0 = Instant::now();
    step(
        t0,
        "lab up: vps (PostgreSQL 15/main, real Odoo 17 as odoo.service) and backup (odoo-standby)",
    );
    let mut w = LabWorld::with_config(
        odoo_standby_tests::LAB_CONFIG,
        odoo_standby_tests::production_package(),
    );
    // Only failures are echoed on stderr; the demo prints what matters.
    w.echo = false;
    println!("  sudoers drop-in on the VPS installed from `odoo-standby vps-sudoers vps1`");

    step(t0, "backup# odoo-standby protect vps1 --restart-vps");
    let out = w.ok(&["protect", "vps1", "--restart-vps"]);
    print!("{out}");
    step(t0, "backup# odoo-standby status vps1");
    let s = w.wait_healthy(60);
    println!(
        "  {}: {} ({}), files missing {}",
        s["name"],
        if s["healthy"] == true {
            "healthy"
        } else {
            "UNHEALTHY"
        },
        s["role"],
        s["files"]["missing"]
    );

    step(
        t0,
        "users write through Odoo on the VPS: 5 partners, 5 orders, 12 attachments",
    );
    let vps = w.vps_users();
    vps.ok("web-login", &["admin", "admin"]).unwrap();
    vps.ok(
        "write",
        &["--partners", "5", "--orders", "5", "--origin", "vps"],
    )
    .unwrap();
    vps.ok(
        "upload",
        &[
            "--log",
            "/root/before.log",
            "--count",
            "12",
            "--rate",
            "0",
            "--origin",
            "vps",
        ],
    )
    .unwrap();
    w.wait_healthy(60);

    step(t0, "uploads go on (5 a second) and the VPS dies in the middle of them (SIGKILL of the machine)");
    let uploader = w.uploader("/root/during.log", "vps-late", 5.0);
    w.wait_lines("/root/during.log", 10);
    w.vps().kill().unwrap();
    let up = uploader.wait_with_output().unwrap();
    println!("  uploader: {}", String::from_utf8_lossy(&up.stdout).trim());
    let acknowledged = w.lines("/root/before.log") + w.lines("/root/during.log");

    step(
        t0,
        "backup# odoo-standby failover vps1 --yes   (refused: nothing could fence the VPS)",
    );
    let out = w.cli(&["failover", "vps1", "--yes"]);
    println!(
        "  exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .next()
            .unwrap_or_default()
    );

    step(
        t0,
        "backup# odoo-standby failover vps1 --yes --vps-unreachable",
    );
    let (out, first_200) =
        w.timed_to_first_200(&["failover", "vps1", "--yes", "--vps-unreachable"]);
    print!("{}", String::from_utf8_lossy(&out.stdout));
    assert!(out.status.success(), "the failover failed");

    step(
        t0,
        "users on the backup's Odoo: log in, read every attachment, write more",
    );
    let backup = w.backup_users();
    let login = backup.ok("web-login", &["admin", "admin"]).unwrap();
    println!("  web login: HTTP {}", login["status"]);
    let after_failover = backup
        .ok(
            "check",
            &["--log", "/root/before.log", "--log", "/root/during.log"],
        )
        .unwrap();
    let counts_backup = backup.ok("counts", &[]).unwrap();
    backup
        .ok(
            "write",
            &["--partners", "3", "--orders", "4", "--origin", "backup"],
        )
        .unwrap();
    backup
        .ok(
            "upload",
            &[
                "--log",
                "/root/backup.log",
                "--count",
                "6",
                "--rate",
                "0",
                "--origin",
                "backup",
            ],
        )
        .unwrap();

    step(
        t0,
        "the VPS boots again: its cluster comes back by itself, as a primary; the backup's sync service holds it down within 30 s",
    );
    w.vps().boot().unwrap();
    let clock = Instant::now();
    let ask = |cmd: &str| {
        w.vps()
            .exec(&["sh", "-c", cmd])
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    let held =
        || ask("test -e /var/lib/postgresql/15/main/standby.signal") && !ask("pg_isready -q");
    while !held() {
        if clock.elapsed() > std::time::Duration::from_secs(120) {
            println!("  vps: not held down within 120 s (odoo-standby status holds it down too)");
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    println!(
        "  vps: held down after {:.0} s (cluster stopped, standby.signal, start.conf manual, Odoo disabled)",
        clock.elapsed().as_secs_f64()
    );

    step(t0, "backup# odoo-standby failback vps1");
    let clock = Instant::now();
    let out = w.cli(&["failback", "vps1"]);
    print!("{}", String::from_utf8_lossy(&out.stdout));
    if !out.status.success() {
        // What the VPS wrote after the split (the uploads it never sent) is kept and named;
        // the operator reads it and lets it go.
        print!("{}", String::from_utf8_lossy(&out.stderr));
        step(
            t0,
            "backup# odoo-standby failback vps1 --discard-vps-writes",
        );
        print!("{}", w.ok(&["failback", "vps1", "--discard-vps-writes"]));
    }
    let failback_s = clock.elapsed().as_secs_f64();
    lab::odoo::wait_serving(w.vps(), 8069, 90).unwrap();

    step(t0, "backup# odoo-standby status vps1");
    let s = w.wait_healthy(90);
    println!(
        "  {}: {} ({})",
        s["name"],
        if s["healthy"] == true {
            "healthy"
        } else {
            "UNHEALTHY"
        },
        s["role"]
    );
    let vps = w.vps_users();
    let after_failback = vps
        .ok(
            "check",
            &[
                "--log",
                "/root/before.log",
                "--log",
                "/root/during.log",
                "--log",
                "/root/backup.log",
            ],
        )
        .unwrap();
    let counts_vps = vps.ok("counts", &[]).unwrap();
    let from_backup = w.lines("/root/backup.log");

    let vps_rows = n(&after_failback["present"]) - from_backup as u64;
    let vps_ok = n(&after_failback["ok"]) - from_backup as u64;
    println!("\n== what each side has of what users wrote");
    println!("{:<52} {:>14} {:>14}", "", "backup after", "VPS after");
    println!("{:<52} {:>14} {:>14}", "", "the failover", "the failback");
    println!(
        "{:<52} {:>14} {:>14}",
        "partners (rows)",
        n(&counts_backup["partners"]),
        n(&counts_vps["partners"])
    );
    println!(
        "{:<52} {:>14} {:>14}",
        "orders of the custom addon (rows)",
        n(&counts_backup["orders"]),
        n(&counts_vps["orders"])
    );
    println!(
        "{:<52} {:>14} {:>14}",
        format!("attachments Odoo acknowledged on the VPS ({acknowledged}): rows"),
        n(&after_failover["present"]),
        vps_rows
    );
    println!(
        "{:<52} {:>14} {:>14}",
        "  ... that download with their bytes",
        n(&after_failover["ok"]),
        vps_ok
    );
    println!(
        "{:<52} {:>14} {:>14}",
        format!("attachments written on the backup ({from_backup}): rows"),
        "-",
        n(&after_failback["present"]) - vps_rows
    );
    println!(
        "{:<52} {:>14} {:>14}",
        "  ... that download with their bytes",
        "-",
        n(&after_failback["ok"]) - vps_ok
    );
    let rows_lost = acknowledged as u64 - n(&after_failover["present"]);
    let files_lost = n(&after_failover["empty"]);
    println!(
        "\nlost: {rows_lost} attachment row(s) acknowledged on the VPS never reached the backup (written in its last moment; async replication)"
    );
    println!(
        "lost while the backup served: {files_lost} file(s) whose row arrived but not the file, each named by the failover; after failback the VPS serves {vps_ok} of {acknowledged} from its own disk"
    );
    println!(
        "bad content anywhere: {} on the backup, {} on the VPS",
        n(&after_failover["bad"]),
        n(&after_failback["bad"])
    );
    match first_200 {
        Some(t) => println!("failover: first HTTP 200 from Odoo on the backup {t:.1} s after the command started (target < 10 s)"),
        None => println!("failover: no HTTP 200 from Odoo on the backup"),
    }
    println!("failback: {failback_s:.1} s");
    println!("demo done in {:.0} s", t0.elapsed().as_secs_f64());
}
