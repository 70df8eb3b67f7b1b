//! The lifecycle in the users' world: two systemd machines, postgresql-common, the VPS's
//! Odoo user with exactly the product's sudo rules (installed from `odoo-standby
//! vps-sudoers`), real Odoo 17 on both sides, every command run inside the backup machine.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::time::{Duration, Instant};

use odoo_standby_tests::{test_package, LabWorld, LAB_CONFIG};
use serde_json::Value;

/// Every step's commands as `--dry-run --json` shows them, over the three plans.
fn planned(w: &LabWorld) -> BTreeMap<String, Vec<Vec<String>>> {
    let mut m: BTreeMap<String, Vec<Vec<String>>> = BTreeMap::new();
    for op in ["protect", "failover", "failback"] {
        let out = w.cli(&[op, "vps1", "--dry-run", "--json"]);
        let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
        for s in plan["steps"].as_array().unwrap() {
            let argvs = s["commands"].as_array().unwrap().iter().map(|c| {
                c.as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a.as_str().unwrap().to_owned())
                    .collect()
            });
            m.entry(s["id"].as_str().unwrap().to_owned())
                .or_default()
                .extend(argvs);
        }
    }
    m
}

/// What odoo-standby recorded that it ran: (step, kind, argv), in order.
fn recorded(w: &LabWorld) -> Vec<(String, String, Vec<String>)> {
    w.backup()
        .read("/root/record.jsonl")
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let argv = v["argv"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap().to_owned())
                .collect();
            (
                v["step"].as_str().unwrap().to_owned(),
                v["kind"].as_str().unwrap().to_owned(),
                argv,
            )
        })
        .collect()
}

fn ids(v: &Value) -> Vec<u64> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default()
}

/// The store names the failover printed as lost.
fn lost_names(failover_out: &str) -> BTreeSet<String> {
    failover_out
        .lines()
        .filter_map(|l| l.trim().strip_prefix("lost "))
        .filter_map(|n| n.split_once('/').map(|(_, name)| name.to_owned()))
        .collect()
}

fn lines(w: &LabWorld, path: &str) -> usize {
    w.backup()
        .exec(&["cat", path])
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().count())
        .unwrap_or(0)
}

#[test]
fn the_vps_dies_mid_upload_the_backup_serves_and_gives_everything_back() {
    // The operator names the database: the dry runs can then show every argv exactly.
    let config = LAB_CONFIG.replace(
        "odoo_conf = \"/etc/odoo.conf\"\n",
        "odoo_conf = \"/etc/odoo.conf\"\ndatabases = [\"clientes\"]\n",
    );
    let mut w = LabWorld::with_config(&config, test_package());
    // Every command odoo-standby runs from here on is recorded with its step.
    w.record = Some("/root/record.jsonl".into());
    // An admin's table made as postgres in the Odoo database: real Odoo ignores it, and so
    // must every step of ours.
    w.vps_sql(
        "clientes",
        "CREATE TABLE admin_notes (id serial PRIMARY KEY, note text); INSERT INTO admin_notes (note) VALUES ('made by postgres')",
    );
    w.ok(&["protect", "vps1", "--restart-vps"]);
    w.wait_healthy(60);

    // Users write through Odoo: they open the login page (Odoo builds its asset bundles),
    // write partners, orders of the custom addon, attachments.
    let users = w.vps_users();
    let login = users.ok("web-login", &["admin", "admin"]).unwrap();
    assert_eq!(login["status"], 303, "{login}");
    users
        .ok(
            "write",
            &["--partners", "5", "--orders", "5", "--origin", "vps"],
        )
        .unwrap();
    let up = users
        .ok(
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
    assert_eq!(up["uploaded"], 12, "{up}");
    // Every one of them reaches the backup (status counts missing files).
    let start = Instant::now();
    loop {
        let (code, s) = w.status();
        if code == 0 && s["files"]["missing"] == 0 && s["files"]["last_sync"].is_number() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "files never synced: {s}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }

    // Uploads go on, a few a second, and the VPS dies in the middle of them.
    let uploader = w
        .backup()
        .command(&[
            "/usr/bin/python3",
            lab::odoo::CLIENT,
            "upload",
            odoo_standby_tests::VPS_URL,
            lab::odoo::DB,
            "--log",
            "/root/during.log",
            "--rate",
            "5",
            "--origin",
            "vps-late",
        ])
        .unwrap()
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while lines(&w, "/root/during.log") < 10 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "uploads do not progress"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    w.vps().kill().unwrap();
    let up = uploader.wait_with_output().unwrap();
    eprintln!("uploader: {}", String::from_utf8_lossy(&up.stdout));

    // A generated asset bundle whose file the backup lost (deleted here, as a damaged disk
    // would): the failover drops its row and Odoo builds it again.
    let bundle = w.backup_sql(
        "clientes",
        "SELECT store_fname || ' ' || url FROM ir_attachment WHERE res_model = 'ir.ui.view' AND url LIKE '/web/assets/%.css' ORDER BY id DESC LIMIT 1",
    );
    let (bundle_file, bundle_url) = bundle[0].split_once(' ').unwrap();
    w.backup()
        .run(&[
            "rm",
            &format!(
                "/opt/odoouser/respaldo_filestore/vps1/data_dir/filestore/clientes/{bundle_file}"
            ),
        ])
        .unwrap();

    // From here the VPS cannot be reached: the product says so and wants to be told.
    let out = w.cli(&["failover", "vps1", "--yes"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot be reached") && err.contains("--vps-unreachable"),
        "{err}"
    );
    assert_eq!(
        w.backup_sql("postgres", "SELECT pg_is_in_recovery()"),
        ["t"]
    );

    let clock = Instant::now();
    let out = w.ok(&["failover", "vps1", "--yes", "--vps-unreachable"]);
    let first = w
        .backup_users()
        .ok("wait-http", &["--timeout", "60"])
        .unwrap();
    eprintln!(
        "failover: first HTTP 200 from Odoo on the backup {:.1} s after the command started",
        clock.elapsed().as_secs_f64()
    );
    assert_eq!(first["code"], 200);
    let lost = lost_names(&out);
    assert!(out.contains("1 asset bundle(s) had no file here"), "{out}");
    assert!(
        !lost.contains(bundle_file),
        "a rebuilt bundle is not lost: {out}"
    );
    // The check downloaded a replicated attachment (the bundles are public).
    assert!(out.contains("downloads with its bytes"), "{out}");
    let code = w
        .backup()
        .run(&[
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("{}{bundle_url}", odoo_standby_tests::BACKUP_URL),
        ])
        .unwrap();
    assert_eq!(code, "200", "the bundle was not rebuilt");

    // Odoo on the backup: a user logs in; every attachment whose row reached the backup
    // downloads with its bytes, except those the failover reported lost.
    let login = w
        .backup_users()
        .ok("web-login", &["admin", "admin"])
        .unwrap();
    assert_eq!(login["status"], 303, "{login}");
    let c = w
        .backup_users()
        .ok(
            "check",
            &["--log", "/root/before.log", "--log", "/root/during.log"],
        )
        .unwrap();
    eprintln!("on the backup after the failover: {c}");
    assert!(ids(&c["bad"]).is_empty(), "{c}");
    for n in c["empty_names"].as_array().unwrap() {
        assert!(
            lost.contains(n.as_str().unwrap()),
            "{n} has no content and was not reported lost: {out}"
        );
    }
    let before = w
        .backup_users()
        .ok("check", &["--log", "/root/before.log"])
        .unwrap();
    assert_eq!(
        before["ok"], before["logged"],
        "files synced before the failover: {before}"
    );

    // Production on the backup: users write there through Odoo.
    w.backup_users()
        .ok(
            "write",
            &["--partners", "3", "--orders", "4", "--origin", "backup"],
        )
        .unwrap();
    w.backup_users()
        .upload("/root/backup.log", 6, "backup")
        .unwrap();

    // The VPS boots again: its enabled cluster comes back by itself, as a primary; the sync
    // service (paused since the failover) looks at it within vps_watch_seconds (30) and holds
    // it down: stopped, standby.signal, start.conf manual, Odoo disabled.
    w.vps().boot().unwrap();
    let start = Instant::now();
    let held = || {
        let sh = |cmd: &str| {
            w.vps()
                .exec(&["sh", "-c", cmd])
                .map(|o| o.status.success())
                .unwrap_or(false)
        };
        !sh("pg_isready -q")
            && sh("test -e /var/lib/postgresql/15/main/standby.signal")
            && sh("grep -qx manual /etc/postgresql/15/main/start.conf")
            && !sh("systemctl is-enabled -q odoo")
    };
    while !held() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the sync service did not hold the revived VPS down"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let said = w
        .backup()
        .run(&[
            "journalctl",
            "-q",
            "--no-pager",
            "-u",
            "odoo-standby-sync@vps1",
        ])
        .unwrap();
    assert!(
        said.contains("vps-primary-after-failover") || said.contains("vps-not-held"),
        "{said}"
    );

    // Failback: what the VPS wrote after the split (the end of the uploads it never sent,
    // what its Odoo did after the boot) is kept and named first; then the VPS gets
    // everything written here and serves it.
    let out = w.cli(&["failback", "vps1"]);
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("--discard-vps-writes") && err.contains("/kept/vps-writes-"),
            "{err}"
        );
        w.ok(&["failback", "vps1", "--discard-vps-writes"]);
    }
    lab::odoo::wait_serving(w.vps(), 8069, 90).unwrap();
    let login = w.vps_users().ok("web-login", &["admin", "admin"]).unwrap();
    assert_eq!(login["status"], 303, "{login}");
    let back = w
        .vps_users()
        .ok(
            "check",
            &["--log", "/root/backup.log", "--log", "/root/before.log"],
        )
        .unwrap();
    assert_eq!(back["ok"], back["logged"], "{back}");
    let all = w
        .vps_users()
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
    assert!(ids(&all["bad"]).is_empty(), "{all}");
    assert_eq!(
        all["present"],
        c["present"].as_u64().unwrap() + 6,
        "{all} vs {c}"
    );
    let counts = w.vps_users().ok("counts", &["--origin", "backup"]).unwrap();
    assert_eq!(counts["orders"], 5, "4 written + the uploader's: {counts}");

    // Protected again, and the tool's lines are in journald under its tag.
    let s = w.wait_healthy(90);
    assert_eq!(s["role"], "standby");
    let journal = w
        .backup()
        .run(&[
            "journalctl",
            "-q",
            "--no-pager",
            "-t",
            "odoo-standby-sync-vps1",
        ])
        .unwrap();
    assert!(!journal.trim().is_empty());
    // --dry-run showed the very argv of every command that acted, step by step.
    let plans = planned(&w);
    let rec = recorded(&w);
    let mut unshown = Vec::new();
    for (step, kind, argv) in &rec {
        if kind == "Acts" && !step.is_empty() && !plans.get(step).is_some_and(|p| p.contains(argv))
        {
            unshown.push(format!("{step}: {}", argv.join(" ")));
        }
    }
    assert!(
        unshown.is_empty(),
        "run but not shown by --dry-run:\n{}",
        unshown.join("\n")
    );
    let acted: BTreeSet<&str> = rec
        .iter()
        .filter(|r| r.1 == "Acts")
        .map(|r| r.0.as_str())
        .collect();
    for step in [
        "clone-standby",
        "seed-files",
        "start-syncs",
        "start-odoo",
        "rejoin-vps",
        "copy-files-back",
    ] {
        assert!(acted.contains(step), "{step} ran no command: {acted:?}");
    }
    // Rewind before follow: the VPS's cluster stopped (held down by the failback's first
    // steps, before it looks at what the VPS wrote), rewound, told to follow, then started.
    let in_step = |step: &str, pred: &dyn Fn(&Vec<String>) -> bool| {
        rec.iter().rposition(|r| r.0 == step && pred(&r.2))
    };
    let rewind = in_step("rejoin-vps", &|a| a[0].ends_with("/pg_rewind"));
    let follow = in_step("rejoin-vps", &|a| {
        a.iter().any(|x| x.ends_with("/standby.signal"))
    });
    let start = in_step("rejoin-vps", &|a| a.last().is_some_and(|x| x == "start"));
    let stop = rewind.and_then(|r| {
        rec[..r].iter().rposition(|x| {
            x.1 == "Acts" && x.2.iter().any(|a| a == "stop") && x.2.iter().any(|a| a == "main")
        })
    });
    let shown: Vec<_> = rec.iter().filter(|r| r.1 == "Acts").collect();
    assert!(
        stop.is_some() && rewind.is_some() && follow.is_some() && start.is_some(),
        "{shown:?}"
    );
    assert!(
        stop < rewind && rewind < follow && follow < start,
        "{shown:?}"
    );

    // Nothing the product ran on the VPS needed a sudo rule it does not print.
    let sudo = w
        .vps()
        .run(&["journalctl", "-q", "--no-pager", "_COMM=sudo"])
        .unwrap();
    assert!(sudo.contains("COMMAND="), "sudo was used: {sudo}");
    assert!(
        !sudo.contains("command not allowed") && !sudo.contains("a password is required"),
        "{sudo}"
    );
}

#[test]
fn a_cut_network_looks_like_a_dead_vps_and_the_failover_waits_for_the_acknowledgement() {
    let w = LabWorld::new();
    w.ok(&["protect", "vps1", "--restart-vps"]);
    w.wait_healthy(60);
    check_online_names_what_breaks(&w);
    installed_like_a_debian_tool(&w);
    ssh_setup_trusts_only_the_confirmed_key(&w);
    // The VPS runs on, serving its users, but nothing from the backup reaches it.
    w.lab.cut("vps").unwrap();
    assert_eq!(
        w.vps()
            .run(&["systemctl", "is-active", "odoo"])
            .unwrap()
            .trim(),
        "active"
    );
    let out = w.cli(&["failover", "vps1", "--yes"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for words in [
        "cannot be reached",
        "may be down or cut off",
        "nothing could fence it",
        "--vps-unreachable",
    ] {
        assert!(err.contains(words), "{words:?} not in: {err}");
    }
    // Refused before anything acted: still a standby, syncs untouched, nothing interrupted.
    assert_eq!(
        w.backup_sql("postgres", "SELECT pg_is_in_recovery()"),
        ["t"]
    );
    let (_, s) = w.status();
    assert!(s["interrupted"].is_null(), "{s}");
    assert_eq!(s["syncs"], "active", "{s}");
    // With the acknowledgement it goes on, and the backup serves.
    w.ok(&["failover", "vps1", "--yes", "--vps-unreachable"]);
    assert_eq!(
        w.backup_sql("postgres", "SELECT pg_is_in_recovery()"),
        ["f"]
    );
    w.backup_users()
        .ok("wait-http", &["--timeout", "60"])
        .unwrap();
    w.lab.heal("vps").unwrap();
}

/// `check --online --nagios` passes on the healthy instance, and fails naming the cause on
/// a broken pg_hba.conf line, a changed host key and a missing sudo right (each put back).
fn check_online_names_what_breaks(w: &LabWorld) {
    let check = || {
        let out = w.cli(&["check", "--online", "--nagios"]);
        let said = String::from_utf8_lossy(&out.stdout).into_owned();
        (out.status.code(), said)
    };
    let (code, said) = check();
    assert_eq!(code, Some(0), "{said}");
    assert!(said.starts_with("ODOO-STANDBY-CHECK OK - "), "{said}");
    for aspect in ["ssh", "sudo", "pg_hba", "replication", "slot"] {
        assert!(
            said.contains(&format!("OK      vps1 {aspect}: ")),
            "{aspect}: {said}"
        );
    }
    let failed = |aspect: &str, words: &[&str]| {
        let (code, said) = check();
        assert_eq!(code, Some(2), "{said}");
        let first = said.lines().next().unwrap_or_default();
        assert!(
            first.starts_with("ODOO-STANDBY-CHECK CRITICAL - ")
                && first.contains(&format!("vps1 {aspect} FAILED")),
            "{said}"
        );
        let line = said
            .lines()
            .find(|l| l.starts_with(&format!("FAILED  vps1 {aspect}: ")))
            .unwrap_or_else(|| panic!("no FAILED {aspect} line: {said}"));
        for w in words {
            assert!(line.contains(w), "{w:?} not in {line}");
        }
    };
    let hba = "/etc/postgresql/15/main/pg_hba.conf";
    w.vps().run(&["cp", hba, "/root/pg_hba.conf.good"]).unwrap();
    w.vps()
        .run(&[
            "sh",
            "-c",
            &format!("echo 'host all all 127.0.0.9/32 nosuchmethod' >> {hba}"),
        ])
        .unwrap();
    w.vps_sql("postgres", "SELECT pg_reload_conf()");
    failed("pg_hba", &["line ", "nosuchmethod"]);
    w.vps().run(&["cp", "/root/pg_hba.conf.good", hba]).unwrap();
    w.vps_sql("postgres", "SELECT pg_reload_conf()");

    let known = "/opt/odoouser/.ssh/known_hosts";
    w.backup()
        .run(&["cp", known, "/root/known_hosts.good"])
        .unwrap();
    w.backup()
        .run(&[
            "ssh-keygen",
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-f",
            "/root/other",
        ])
        .unwrap();
    w.backup()
        .run(&[
            "sh",
            "-c",
            &format!("awk -v k=\"$(cut -d' ' -f1,2 /root/other.pub)\" '{{print $1, k}}' /root/known_hosts.good > {known}"),
        ])
        .unwrap();
    failed("ssh", &["CHANGED", "SHA256:"]);
    w.backup()
        .run(&["cp", "/root/known_hosts.good", known])
        .unwrap();

    let rules = "/etc/sudoers.d/odoo-standby";
    w.vps().run(&["cp", rules, "/root/sudoers.good"]).unwrap();
    w.vps()
        .run(&["sed", "-i", "/main stop -m fast, /d", rules])
        .unwrap();
    failed(
        "sudo",
        &["may not run", "pg_ctlcluster 15 main stop -m fast"],
    );
    w.vps().run(&["cp", "/root/sudoers.good", rules]).unwrap();
    let (code, said) = check();
    assert_eq!(code, Some(0), "{said}");
}

/// The package as an operator meets it on the backup: `man`, Tab, the units protect enabled
/// (verified and scored by systemd), and requirement.txt following the VPS's `pip freeze`
/// through the refresh timer's service.
fn installed_like_a_debian_tool(w: &LabWorld) {
    let b = w.backup();
    let page = b
        .sh("MANWIDTH=100 man -P cat odoo-standby-failover 2>&1", &[])
        .unwrap();
    assert!(
        page.contains("odoo-standby-failover") && page.contains("--vps-unreachable"),
        "{page}"
    );
    // bash-completion loads the script from where the package put it, on the first Tab.
    let words = b
        .run(&[
            "bash",
            "-c",
            ". /usr/share/bash-completion/bash_completion; _completion_loader odoo-standby; \
             COMP_WORDS=(odoo-standby fail); COMP_CWORD=1; COMP_LINE='odoo-standby fail'; COMP_POINT=${#COMP_LINE}; \
             \"$(complete -p odoo-standby | sed -n 's/.*-F \\([^ ]*\\) .*/\\1/p')\" odoo-standby fail odoo-standby; \
             printf '%s\\n' \"${COMPREPLY[@]}\"",
        ])
        .unwrap();
    let words: BTreeSet<&str> = words.split_whitespace().collect();
    assert_eq!(
        words,
        BTreeSet::from(["failback", "failover"]),
        "completion of `odoo-standby fail`"
    );
    // The units protect enabled: the package's templates, with protect's drop-ins.
    for unit in [
        "odoo-standby-sync@vps1.service",
        "odoo-standby-refresh@vps1.service",
        "odoo-standby-refresh@vps1.timer",
    ] {
        let out = b.exec(&["systemd-analyze", "verify", unit]).unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && said.trim().is_empty(),
            "{unit}: {said}"
        );
    }
    for unit in [
        "odoo-standby-sync@vps1.service",
        "odoo-standby-refresh@vps1.timer",
    ] {
        let state = b.run(&["systemctl", "is-enabled", unit]).unwrap();
        assert_eq!(state.trim(), "enabled", "{unit}");
    }
    let security = b
        .run(&[
            "systemd-analyze",
            "security",
            "--no-pager",
            "odoo-standby-sync@vps1.service",
        ])
        .unwrap();
    let overall = security
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_default()
        .to_owned();
    eprintln!("systemd-analyze security odoo-standby-sync@vps1.service: {overall}");
    let score: f64 = overall
        .split(':')
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(10.0);
    assert!(score < 3.0, "{security}");

    // requirement.txt: written by protect, then following the VPS through the timer's
    // service, as the Odoo user. A package appears on the VPS (its metadata, as pip leaves it).
    let req = "/opt/odoouser/respaldo_filestore/vps1/requirement.txt";
    let first = b.read(req).unwrap();
    assert!(first.lines().any(|l| l.starts_with("lxml==")), "{first}");
    assert!(!first.contains("labextra"), "{first}");
    w.vps()
        .sh(
            "d=/usr/local/lib/python3.11/dist-packages/labextra-1.2.3.dist-info; mkdir -p $d && \
             printf 'Metadata-Version: 2.1\\nName: labextra\\nVersion: 1.2.3\\n' > $d/METADATA",
            &[],
        )
        .unwrap();
    b.run(&["systemctl", "start", "odoo-standby-refresh@vps1.service"])
        .unwrap();
    let after = b.read(req).unwrap();
    assert!(after.lines().any(|l| l == "labextra==1.2.3"), "{after}");
    assert_eq!(
        b.run(&["stat", "-c", "%U", req]).unwrap().trim(),
        "odoouser"
    );
    let log = b
        .run(&[
            "journalctl",
            "-q",
            "--no-pager",
            "-u",
            "odoo-standby-refresh@vps1",
        ])
        .unwrap();
    assert!(log.contains("requirement.txt rewritten"), "{log}");
}

/// `ssh-setup` on a backup whose user lost its trust of the VPS and its access there: a
/// wrong fingerprint adds nothing; the right one adds the host key, and without an agent the
/// line to add on the VPS is printed; once the operator added it, a run proves the login.
fn ssh_setup_trusts_only_the_confirmed_key(w: &LabWorld) {
    let (b, v) = (w.backup(), w.vps());
    let known = "/opt/odoouser/.ssh/known_hosts";
    let before = b.read(known).unwrap();
    b.sh(": > \"$1\"", &[known]).unwrap();
    let home = v.sh("getent passwd odoo | cut -d: -f6", &[]).unwrap();
    let auth = format!("{}/.ssh/authorized_keys", home.trim());
    v.run(&["mv", &auth, &format!("{auth}.lab")]).unwrap();

    let out = w.cli(&["ssh-setup", "vps1", "--fingerprint", "SHA256:not-the-one"]);
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{said}{err}");
    assert!(err.contains("not added"), "{err}");
    assert_eq!(b.read(known).unwrap(), "");
    // The operator reads the offered key's fingerprint on the VPS.
    let kind = said
        .split(" offers ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_default()
        .trim_start_matches("ssh-")
        .to_owned();
    let fp = v
        .sh(
            "ssh-keygen -lf /etc/ssh/ssh_host_\"$1\"_key.pub | cut -d' ' -f2",
            &[&kind],
        )
        .unwrap();
    let out = w.cli(&["ssh-setup", "vps1", "--fingerprint", fp.trim()]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{err}");
    let public = b.read("/opt/odoouser/.ssh/id_ed25519.pub").unwrap();
    assert!(
        err.contains("add this line") && err.contains(public.trim()),
        "{err}"
    );
    assert!(b
        .read(known)
        .unwrap()
        .contains(&format!("127.0.0.2 ssh-{kind} ")));
    v.write(&auth, public.as_bytes(), 0o600, "odoo:odoo")
        .unwrap();
    let said = w.ok(&["ssh-setup", "vps1", "--fingerprint", fp.trim()]);
    assert!(
        said.contains("host key already") && said.contains("key already works"),
        "{said}"
    );
    assert_eq!(b.read(known).unwrap().lines().count(), 1);
    assert!(before.contains(b.read(known).unwrap().trim()), "{before}");
}
