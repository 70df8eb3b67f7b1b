//! A fleet on one backup server, in the users' world: two VPS machines, each with its own real
//! Odoo 17 serving on port 8069, both protected by one backup. One VPS dies and fails over
//! while the other keeps replicating and syncing; the other fails over too and both Odoo
//! units on the backup serve, each on its own port (chosen free and recorded at protect);
//! both fail back; `status` shows both all along.
//!
//! Needs root (the lab); about three minutes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use lab::odoo::{Client, DB};
use odoo_standby_tests::{sql_on, uploaded, wait, LabWorld};
use serde_json::Value;

const ROOT: &str = "/opt/odoouser/respaldo_filestore";

/// `status --json` of every instance: the exit code and the objects by name.
fn status_all(w: &LabWorld) -> (i32, Vec<Value>) {
    let out = w.cli(&["status", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let all = v.as_array().cloned().unwrap_or_default();
    (out.status.code().unwrap_or(-1), all)
}

fn of<'a>(all: &'a [Value], name: &str) -> &'a Value {
    all.iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("status has no {name}: {all:?}"))
}

fn stored(w: &LabWorld, instance: &str, sha: &str) -> bool {
    let path = format!(
        "{ROOT}/{instance}/data_dir/filestore/{DB}/{}/{sha}",
        &sha[..2]
    );
    w.backup()
        .exec(&["test", "-s", &path])
        .unwrap()
        .status
        .success()
}

#[test]
fn two_vpss_on_the_same_odoo_port_fail_over_to_one_backup_and_both_serve() {
    let w = LabWorld::fleet();
    let vps2 = w.lab.machine("vps2").unwrap();
    let users1 = w.vps_users();
    let users2 = Client::new(w.backup(), "http://127.0.0.4:8069");

    // Both protected; the second gets the next free pair of ports here, recorded.
    let out1 = w.ok(&["protect", "vps1", "--restart-vps"]);
    assert!(
        out1.contains("ports 8069 (HTTP) and 8072 (gevent)"),
        "{out1}"
    );
    let out2 = w.ok(&["protect", "vps2", "--restart-vps"]);
    assert!(
        out2.contains("ports 8079 (HTTP) and 8082 (gevent)"),
        "{out2}"
    );
    let conf2 = w.backup().read(&format!("{ROOT}/vps2/odoo.conf")).unwrap();
    assert!(
        conf2.contains("http_port = 8079") && conf2.contains("gevent_port = 8082"),
        "{conf2}"
    );
    let recorded: Value = serde_json::from_str(
        &w.backup()
            .read("/var/lib/odoo-standby/vps2/settings.json")
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        (&recorded["http_port"], &recorded["odoo_major"]),
        (&Value::from(8079), &Value::from(17)),
        "{recorded}"
    );
    // A second protect changes nothing: the same ports.
    let again = w.ok(&["protect", "vps2"]);
    assert!(!again.contains("ports 8089"), "{again}");
    wait("both healthy", 90, || {
        let (code, all) = status_all(&w);
        code == 0 && all.len() == 2
    });
    // Status of all takes each VPS's side from its sync service's look (the sync, as
    // odoouser under its hardened unit, keeps it in the state folder); status NAME asks now.
    wait("both VPSs from their syncs' looks", 90, || {
        let (code, all) = status_all(&w);
        code == 0
            && all
                .iter()
                .all(|s| s["vps_seen_age_seconds"].as_u64().is_some_and(|a| a <= 60))
    });
    let owner = w
        .backup()
        .run(&[
            "stat",
            "-c",
            "%U",
            "/var/lib/odoo-standby/vps2/sync/vps.json",
        ])
        .unwrap();
    assert_eq!(owner.trim(), "odoouser");
    let (_, one) = w.status();
    assert!(one["vps_seen_age_seconds"].is_null(), "{one}");

    // vps1's machine dies; it fails over while vps2 keeps replicating and syncing.
    users1.upload("/root/vps1-before.log", 4, "vps").unwrap();
    wait("vps1's uploads on the backup", 60, || {
        uploaded(&w, "/root/vps1-before.log")
            .iter()
            .all(|s| stored(&w, "vps1", s))
    });
    w.vps().kill().unwrap();
    w.ok(&["failover", "vps1", "--yes", "--vps-unreachable"]);
    let backup1 = Client::new(w.backup(), "http://127.0.0.3:8069");
    backup1.ok("wait-http", &["--timeout", "60"]).unwrap();
    users2.upload("/root/vps2-during.log", 5, "vps2").unwrap();
    users2
        .ok(
            "write",
            &["--partners", "3", "--orders", "0", "--origin", "vps2"],
        )
        .unwrap();
    let during = uploaded(&w, "/root/vps2-during.log");
    assert_eq!(during.len(), 5);
    wait("vps2's new uploads on the backup", 60, || {
        during.iter().all(|s| stored(&w, "vps2", s))
    });
    let partners = |m, port| {
        sql_on(
            m,
            port,
            DB,
            "SELECT count(*) FROM res_partner WHERE name LIKE 'vps2 %'",
        )
    };
    let on_vps2 = partners(vps2, 5432);
    wait("vps2's rows in its standby", 30, || {
        partners(w.backup(), 5436) == on_vps2
    });
    let (_, all) = status_all(&w);
    assert_eq!(of(&all, "vps1")["role"], "primary", "{all:?}");
    assert_eq!(of(&all, "vps2")["healthy"], true, "{all:?}");
    assert_eq!(of(&all, "vps2")["db"]["receiver"], "streaming", "{all:?}");

    // vps2 fails over too (its VPS is up: --force has odoo-standby stop and fence it): both
    // serve here, each on its own port, each its own database.
    w.ok(&["failover", "vps2", "--yes", "--force"]);
    let backup2 = Client::new(w.backup(), "http://127.0.0.3:8079");
    backup2.ok("wait-http", &["--timeout", "60"]).unwrap();
    for (c, instance) in [(&backup1, "vps1"), (&backup2, "vps2")] {
        let login = c.ok("web-login", &["admin", "admin"]).unwrap();
        assert_eq!(login["status"], 303, "{instance}: {login}");
    }
    assert_eq!(partners(w.backup(), 5436), on_vps2);
    let units = w
        .backup()
        .run(&["systemctl", "is-active", "odoo_vps1", "odoo_vps2"])
        .unwrap();
    assert_eq!(
        units.split_whitespace().collect::<Vec<_>>(),
        ["active", "active"]
    );

    // Both fail back; status shows both protected again.
    w.ok(&["failback", "vps2"]);
    users2.ok("wait-http", &["--timeout", "60"]).unwrap();
    w.vps().boot().unwrap();
    wait("vps1's machine back", 60, || {
        w.vps().exec(&["true"]).is_ok_and(|o| o.status.success())
    });
    let back = w.cli(&["failback", "vps1"]);
    if !back.status.success() {
        // It came back as a primary by itself and took no writes: nothing to keep.
        w.ok(&["failback", "vps1", "--discard-vps-writes"]);
    }
    users1.ok("wait-http", &["--timeout", "60"]).unwrap();
    wait("both healthy again", 120, || {
        let (code, all) = status_all(&w);
        code == 0 && all.len() == 2
    });
    let table = w.ok(&["status"]);
    assert!(table.contains("vps1") && table.contains("vps2"), "{table}");
}
