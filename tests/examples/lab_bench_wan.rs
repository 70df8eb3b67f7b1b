//! The lab over a slower link, as a VPS in another data centre (`bash scripts/bench-wan`; not
//! part of CI): the VPS's link limited to `MBIT` Mbit/s each way (default 50; `tc tbf` inside
//! the lab's namespaces). Prints, on that link: the first copy of data_dir (protect's
//! seed-files) beside plain `rsync -a` of the same tree; the file delay (an upload through
//! Odoo until its file is on the backup) at p50/p95; and failback's pg_rewind (rejoin-vps)
//! beside a fresh clone of the same database (protect's clone-standby), for a database of
//! `DB_GB` GB (default 1.5). No delay is added: this host's kernel has no `sch_netem`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use odoo_standby_tests::{LabWorld, LAB_CONFIG};

/// `[k/n] TITLE: done (X s)` in an operation's output: X.
fn step_seconds(out: &str, title: &str) -> f64 {
    out.lines()
        .find_map(|l| {
            let rest = l.split_once(&format!("{title}: done ("))?.1;
            rest.split_whitespace().next()?.parse().ok()
        })
        .unwrap_or(f64::NAN)
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v.get(i).copied().unwrap_or(f64::NAN)
}

fn main() {
    let mbit: u32 = std::env::var("MBIT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let gb: f64 = std::env::var("DB_GB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1.5);
    let t0 = Instant::now();
    let mut w = LabWorld::with_config(LAB_CONFIG, odoo_standby_tests::production_package());
    w.echo = false;
    let rows = (gb * 1e9 / 1050.0) as u64;
    w.vps_sql(
        "clientes",
        &format!("CREATE TABLE ballast AS SELECT g, repeat(md5(g::text), 30) AS t FROM generate_series(1, {rows}) g"),
    );
    let size = w.vps_sql(
        "clientes",
        "SELECT pg_size_pretty(pg_database_size('clientes'))",
    );
    let users = w.vps_users();
    users.upload("/root/seed.log", 300, "vps").unwrap();
    let files = w
        .vps()
        .sh("du -sh /var/opt/odoo/data_dir | cut -f1", &[])
        .unwrap();
    println!(
        "lab up, database clientes {} , data_dir {} ({:.0} s)",
        size.join(""),
        files.trim(),
        t0.elapsed().as_secs_f64()
    );

    w.lab.shape("vps", Some(mbit)).unwrap();
    // The peer: plain rsync -a of the same data_dir, as the backup's Odoo user, same link.
    let t = Instant::now();
    w.backup()
        .run(&[
            "runuser",
            "-u",
            "odoouser",
            "--",
            "rsync",
            "-a",
            "-e",
            "ssh -i /opt/odoouser/.ssh/id_ed25519 -o UserKnownHostsFile=/opt/odoouser/.ssh/known_hosts -o BatchMode=yes",
            "odoo@127.0.0.2:/var/opt/odoo/data_dir",
            "/tmp/",
        ])
        .unwrap();
    let rsync = t.elapsed().as_secs_f64();
    let protect = w.ok(&["protect", "vps1", "--restart-vps"]);
    let seed = step_seconds(
        &protect,
        "copy data_dir, sources and the VPS's pip freeze from the VPS",
    );
    let clone = step_seconds(&protect, "clone the standby cluster here and stream");
    w.wait_healthy(120);

    // The file delay on that link: an upload a second, each waited for on the backup.
    let mut delays = Vec::new();
    for k in 0..20 {
        let log = format!("/root/delay-{k}.log");
        users.upload(&log, 1, "vps").unwrap();
        let t = Instant::now();
        let line = w.backup().read(&log).unwrap();
        let sha = line.split_whitespace().nth(1).unwrap().to_owned();
        let path = format!(
            "/opt/odoouser/respaldo_filestore/vps1/data_dir/filestore/clientes/{}/{sha}",
            &sha[..2]
        );
        while !w
            .backup()
            .exec(&["test", "-s", &path])
            .unwrap()
            .status
            .success()
        {
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "{path} never arrived"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        delays.push(t.elapsed().as_secs_f64());
        std::thread::sleep(Duration::from_secs(1));
    }

    // Failover (the VPS is reachable: it is stopped and fenced), a few writes here, failback:
    // pg_rewind copies what changed since the fork, not the database.
    w.ok(&["failover", "vps1", "--yes", "--force"]);
    w.backup_users()
        .ok(
            "write",
            &["--partners", "20", "--orders", "5", "--origin", "backup"],
        )
        .unwrap();
    let back = w.ok(&["failback", "vps1"]);
    let rewind = step_seconds(&back, "make the VPS cluster a standby of this one");
    w.lab.shape("vps", None).unwrap();

    let mut d = delays.clone();
    println!("on a {mbit} Mbit/s link (each way, no added delay):");
    println!("  first copy of data_dir: odoo-standby protect {seed:.1} s, rsync -a {rsync:.1} s");
    println!(
        "  file delay (upload to file on the backup, 20 uploads): p50 {:.2} s, p95 {:.2} s (target p95 < 2 s)",
        percentile(&mut d, 0.5),
        percentile(&mut delays, 0.95)
    );
    println!(
        "  database {}: fresh clone (protect's clone-standby) {clone:.1} s, failback's pg_rewind (rejoin-vps) {rewind:.1} s: {:.0}x (target >= 10x)",
        size.join(""),
        clone / rewind
    );
    println!("whole run {:.0} s", t0.elapsed().as_secs_f64());
}
