//! `status` of all instances takes the VPS's side from the sync service's last look (kept in
//! `<state>/NAME/sync/vps.json` every 30 s) when it is under a minute old; `status NAME` and
//! `status --live` ask the VPS now; a look too old is not used; a VPS that stops answering is
//! reported from the sync's next look. On the one-machine sandbox, about a minute.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use odoo_standby_tests::{binary, wait};

fn status(config: &Path, args: &[&str]) -> serde_json::Value {
    statuses(config, args)[0].clone()
}

/// `status ARGS --json`: every instance's.
fn statuses(config: &Path, args: &[&str]) -> serde_json::Value {
    let out = Command::new(binary())
        .arg("-c")
        .arg(config)
        .arg("status")
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    v
}

/// `protect vps1 --restart-vps`, which must succeed.
fn protect(config: &Path) {
    protect_one(config, "vps1");
}

/// `protect NAME --restart-vps`, which must succeed.
fn protect_one(config: &Path, name: &str) {
    let out = Command::new(binary())
        .arg("-c")
        .arg(config)
        .args(["protect", name, "--restart-vps"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn codes(s: &serde_json::Value) -> Vec<String> {
    s["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["code"].as_str().unwrap().to_owned())
        .collect()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn status_of_all_uses_the_syncs_look_at_the_vps_and_status_name_asks_now() {
    let mut sb = sandbox::Sandbox::new().unwrap();
    let w = sandbox::vps_world(&mut sb, 20).unwrap();
    let cfg = failover::Config::load(&w.config).unwrap();
    let look: PathBuf = cfg.backup.state_dir.join("vps1/sync/vps.json");
    protect(&w.config);
    wait("the sync's first look at the VPS", 60, || look.exists());

    // All instances: the VPS's side from the look, its age said.
    let all = status(&w.config, &[]);
    let age = all["vps_seen_age_seconds"].as_u64();
    assert!(age.is_some_and(|a| a <= 60), "{all}");
    assert_eq!(all["vps_role"], "primary", "{all}");
    assert_eq!(all["db"]["slot_active"], true, "{all}");
    // One instance named, or --live: asked now.
    for args in [&["vps1"][..], &["--live"][..]] {
        let s = status(&w.config, args);
        assert!(s["vps_seen_age_seconds"].is_null(), "{args:?}: {s}");
        assert_eq!(s["vps_role"], "primary", "{s}");
    }

    // A look older than a minute is not used. (The sync may rewrite the file between the
    // edit and status: then the edit is made again.)
    let mut asked_now = false;
    for _ in 0..5 {
        let text = std::fs::read_to_string(&look).unwrap();
        let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let old = now() - 120;
        v["at"] = old.into();
        std::fs::write(&look, v.to_string()).unwrap();
        let s = status(&w.config, &[]);
        let still: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&look).unwrap()).unwrap();
        if still["at"] == old {
            assert!(s["vps_seen_age_seconds"].is_null(), "{s}");
            assert_eq!(s["vps_role"], "primary", "{s}");
            asked_now = true;
            break;
        }
    }
    assert!(asked_now, "the sync rewrote its look during every try");

    // The VPS's PostgreSQL stops: `status vps1` says so at once; status of all says so from
    // the sync's next look (within its 30 s, and the pass that makes it).
    w.vps.stop().unwrap();
    let s = status(&w.config, &["vps1"]);
    assert!(codes(&s).contains(&"vps-unreachable".to_owned()), "{s}");
    wait("the sync's look reporting the VPS unreachable", 90, || {
        let s = status(&w.config, &[]);
        s["vps_seen_age_seconds"].is_u64() && codes(&s).contains(&"vps-unreachable".to_owned())
    });
    w.vps.start().unwrap();
}

/// Every file under `dir`, sorted.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// This server's side, read in one go per question round (`pgrepl::Psql::batch`): the
/// Odoo databases found among others, a file missing and one damaged here counted in their
/// database, and a standby that stops reported as down, not as an unreadable filestore.
#[test]
fn status_reads_the_cluster_and_the_files_here() {
    let mut sb = sandbox::Sandbox::new().unwrap();
    let w = sandbox::vps_world(&mut sb, 20).unwrap();
    let cfg = failover::Config::load(&w.config).unwrap();
    // A database that is not Odoo's: not audited, no problem.
    w.vps.psql("postgres", "CREATE DATABASE notes").unwrap();
    protect(&w.config);
    let store = cfg.backup.root.join("vps1/data_dir/filestore/clientes");
    wait("the first sync pass", 60, || {
        let s = status(&w.config, &["vps1"]);
        s["files"]["last_sync"].is_u64() && s["files"]["missing"] == 0
    });
    let s = status(&w.config, &["vps1"]);
    assert_eq!(s["role"], "standby", "{s}");
    assert_eq!(s["db"]["receiver"], "streaming", "{s}");
    assert_eq!(
        s["files"]["missing_by_db"],
        serde_json::json!([["clientes", 0]]),
        "{s}"
    );
    assert!(!codes(&s).contains(&"files-unaudited".to_owned()), "{s}");

    // The syncs paused (they would fetch the file again at once): one file gone, one cut.
    std::fs::write(cfg.backup.state_dir.join("vps1/syncs.paused"), "test\n").unwrap();
    std::thread::sleep(std::time::Duration::from_secs(3));
    let files = files_under(&store);
    assert!(files.len() >= 2, "{files:?}");
    std::fs::remove_file(&files[0]).unwrap();
    let cut = std::fs::OpenOptions::new()
        .write(true)
        .open(&files[1])
        .unwrap();
    let len = cut.metadata().unwrap().len();
    cut.set_len(len / 2).unwrap();
    let s = status(&w.config, &[]);
    assert_eq!(s["files"]["missing"], 1, "{s}");
    assert_eq!(
        s["files"]["missing_by_db"],
        serde_json::json!([["clientes", 1]]),
        "{s}"
    );
    assert_eq!(s["files"]["wrong_size"], 1, "{s}");
    for code in ["files-missing", "files-damaged"] {
        assert!(codes(&s).contains(&code.to_owned()), "{code}: {s}");
    }

    // The standby stops: down, said once, and its files not called unreadable.
    stop_standby(&cfg, "vps1");
    let s = status(&w.config, &["vps1"]);
    assert_eq!(s["role"], "down", "{s}");
    let c = codes(&s);
    assert!(c.contains(&"standby-down".to_owned()), "{s}");
    assert!(!c.contains(&"files-unaudited".to_owned()), "{s}");
    assert!(!c.contains(&"standby-unreadable".to_owned()), "{s}");
}

/// Stops the standby cluster of `name` here (pg_ctl, fast).
fn stop_standby(cfg: &failover::Config, name: &str) {
    let data = cfg
        .backup
        .clusters_dir
        .clone()
        .unwrap()
        .join(name)
        .join("data");
    let stop = Command::new("runuser")
        .args(["-u", &cfg.backup.pg_os_user, "--"])
        .arg(cfg.backup.pg_bindir.join("pg_ctl"))
        .arg("-D")
        .arg(&data)
        .args(["-m", "fast", "-w", "stop"])
        .output()
        .unwrap();
    assert!(stop.status.success(), "{stop:?}");
}

/// `status` of several instances reads every standby here at once (two psql processes for
/// the fleet, `pgrepl::batch_many`): the first instance's standby stopped does not hide the
/// second's status or files (the batch goes on after it), and each instance's answer is the
/// one `status NAME` gives alone.
#[test]
fn status_of_a_fleet_reads_every_standby_here_at_once() {
    let mut sb = sandbox::Sandbox::new().unwrap();
    let w = sandbox::vps_world(&mut sb, 20).unwrap();
    w.add_instance("vps2").unwrap();
    let cfg = failover::Config::load(&w.config).unwrap();
    protect_one(&w.config, "vps1");
    protect_one(&w.config, "vps2");
    wait("both instances' first sync pass", 90, || {
        let all = statuses(&w.config, &[]);
        all.as_array().unwrap().len() == 2
            && all
                .as_array()
                .unwrap()
                .iter()
                .all(|s| s["files"]["last_sync"].is_u64() && s["files"]["missing"] == 0)
    });
    // vps2's syncs paused and one of its files gone; vps1's standby stopped.
    std::fs::write(cfg.backup.state_dir.join("vps2/syncs.paused"), "test\n").unwrap();
    std::thread::sleep(std::time::Duration::from_secs(3));
    let store = cfg.backup.root.join("vps2/data_dir/filestore/clientes");
    let files = files_under(&store);
    assert!(!files.is_empty(), "{}", store.display());
    std::fs::remove_file(&files[0]).unwrap();
    stop_standby(&cfg, "vps1");

    let all = statuses(&w.config, &[]);
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), 2, "{all:?}");
    let (one, two) = (&all[0], &all[1]);
    assert_eq!(one["name"], "vps1", "{one}");
    assert_eq!(one["role"], "down", "{one}");
    assert!(codes(one).contains(&"standby-down".to_owned()), "{one}");
    assert!(!codes(one).contains(&"files-unaudited".to_owned()), "{one}");
    assert_eq!(two["name"], "vps2", "{two}");
    assert_eq!(two["role"], "standby", "{two}");
    assert_eq!(two["db"]["receiver"], "streaming", "{two}");
    assert_eq!(
        two["files"]["missing_by_db"],
        serde_json::json!([["clientes", 1]]),
        "{two}"
    );
    assert_eq!(two["syncs"], "active", "{two}");
    // This server's side is the same as each asked alone (the VPS's side, asked now there,
    // and the sync's last pass move between the two runs: not compared).
    for (fleet, name) in [(one, "vps1"), (two, "vps2")] {
        let alone = status(&w.config, &[name]);
        for key in [
            "/role",
            "/db/receiver",
            "/files/missing",
            "/files/missing_by_db",
            "/files/wrong_size",
            "/odoo_unit",
            "/syncs",
        ] {
            assert_eq!(
                fleet.pointer(key),
                alone.pointer(key),
                "{name} {key}: fleet {fleet} alone {alone}"
            );
        }
    }
}
