//! Failover time in the users' world, from the command's start to the first HTTP 200 from
//! Odoo on the backup (target: under 10 s), measured RUNS times (default 3) on one lab:
//! each run protects, lets users upload, kills the VPS machine in the middle of the uploads,
//! fails over while polling the backup's Odoo every 100 ms, then boots the VPS and fails
//! back. `bash scripts/bench-failover` runs it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use odoo_standby_tests::LabWorld;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let runs = odoo_standby_tests::runs(3);
    let w = LabWorld::for_bench();
    let (mut first, mut failback) = (Vec::new(), Vec::new());
    for run in 1..=runs {
        w.ok(&["protect", "vps1", "--restart-vps"]);
        w.wait_healthy(90);
        let log = format!("/root/bench-{run}.log");
        let up = w.uploader(&log, &format!("bench-{run}"), 5.0);
        w.wait_lines(&log, 10);
        w.vps().kill().unwrap();
        let _ = up.wait_with_output();
        let (out, t) = w.timed_to_first_200(&["failover", "vps1", "--yes", "--vps-unreachable"]);
        assert!(out.status.success(), "failover failed");
        let t = t.expect("no HTTP 200 from the backup's Odoo");
        let lost = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.trim_start().starts_with("lost "))
            .count();
        w.vps().boot().unwrap();
        while w
            .vps()
            .exec(&["pg_isready", "-q"])
            .map(|o| !o.status.success())
            .unwrap_or(true)
        {
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        let clock = Instant::now();
        w.ok(&["failback", "vps1"]);
        let fb = clock.elapsed().as_secs_f64();
        println!("run {run}: failover, command start to first HTTP 200 on the backup: {t:.1} s ({lost} file(s) reported lost); failback {fb:.1} s");
        first.push(t);
        failback.push(fb);
    }
    println!(
        "median over {runs} runs: failover to first HTTP 200 {:.1} s (target < 10 s), failback {:.1} s",
        median(&mut first),
        median(&mut failback)
    );
}
