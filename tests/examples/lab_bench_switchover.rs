//! Odoo's downtime in a planned switchover, in the users' world (target: under 10 s): from
//! the last HTTP 200 of the VPS's Odoo (it stops) to the first HTTP 200 of the backup's, both
//! polled every 100 ms from the backup machine; and the same the other way for the failback
//! that follows. RUNS times (default 3) on one lab, users writing before each switch.
//! `bash scripts/bench-switchover` runs it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use odoo_standby_tests::{LabWorld, BACKUP_URL, VPS_URL};

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn answers_200(w: &LabWorld, url: &str) -> bool {
    let url = format!("{url}/web/login");
    w.backup()
        .exec(&[
            "curl",
            "-s",
            "-m",
            "1",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &url,
        ])
        .is_ok_and(|o| o.stdout == b"200")
}

/// Runs `odoo-standby ARGS` while polling `from` and `to`: the seconds from `from`'s last 200
/// to `to`'s first 200 after it, and the command's own seconds.
fn downtime(w: &LabWorld, args: &[&str], from: &str, to: &str) -> (f64, f64) {
    let done = AtomicBool::new(false);
    let last_from = Mutex::new(None::<Instant>);
    let first_to = Mutex::new(None::<Instant>);
    let start = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::SeqCst) && first_to.lock().unwrap().is_none() {
                if answers_200(w, from) {
                    *last_from.lock().unwrap() = Some(Instant::now());
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        s.spawn(|| {
            while start.elapsed() < Duration::from_secs(300) {
                if answers_200(w, to) && last_from.lock().unwrap().is_some() {
                    *first_to.lock().unwrap() = Some(Instant::now());
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let ran = Instant::now();
        w.ok(args);
        let took = ran.elapsed().as_secs_f64();
        while first_to.lock().unwrap().is_none() && start.elapsed() < Duration::from_secs(300) {
            std::thread::sleep(Duration::from_millis(50));
        }
        done.store(true, Ordering::SeqCst);
        let (a, b) = (
            last_from
                .lock()
                .unwrap()
                .expect("the old side never answered"),
            first_to
                .lock()
                .unwrap()
                .expect("the new side never answered"),
        );
        (b.duration_since(a).as_secs_f64(), took)
    })
}

fn main() {
    let runs = odoo_standby_tests::runs(3);
    let w = LabWorld::for_bench();
    w.ok(&["protect", "vps1", "--restart-vps"]);
    let (mut there, mut back) = (Vec::new(), Vec::new());
    for run in 1..=runs {
        w.wait_healthy(120);
        let origin = format!("bench-{run}");
        w.vps_users()
            .ok("write", &["--orders", "5", "--origin", &origin])
            .unwrap();
        w.vps_users()
            .upload(&format!("/root/bench-{run}.log"), 5, &origin)
            .unwrap();
        let (d, took) = downtime(&w, &["switchover", "vps1", "--yes"], VPS_URL, BACKUP_URL);
        w.backup_users()
            .ok("write", &["--orders", "5", "--origin", &origin])
            .unwrap();
        let (fd, ftook) = downtime(&w, &["failback", "vps1"], BACKUP_URL, VPS_URL);
        println!(
            "run {run}: switchover: Odoo down {d:.1} s (last 200 on the VPS to first 200 on the backup), command {took:.1} s; failback: Odoo down {fd:.1} s, command {ftook:.1} s"
        );
        there.push(d);
        back.push(fd);
    }
    println!(
        "median over {runs} runs: switchover downtime {:.1} s (target < 10 s), failback downtime {:.1} s",
        median(&mut there),
        median(&mut back)
    );
}
