//! Fifty instances on one backup server, on the one-machine sandbox (`bash scripts/bench-fleet`;
//! not part of CI). One sandbox VPS (its PostgreSQL, sshd and filestore) stands for fifty:
//! each instance is protected as its own (its own standby cluster streaming through its own
//! slot, its own copy of data_dir, its own sync service with its own SSH connections).
//! Prints: protect time per instance; `odoo-standby status` of all fifty (target < 1 s);
//! each sync service's memory (RSS) and CPU at idle (targets < 10 MB, < 0.5 % of a core);
//! SSH connections per sync service; the file delay (an attachment written on the VPS until
//! it is in every instance's copy) at p50/p95 with all fifty syncing (target p95 < 2 s).
//!
//! `INSTANCES=N` changes fifty; `BENCH_HOLD=1` holds the fleet up after protect, for profiling by
//! hand, until a line comes on stdin. As root (the sandbox runs PostgreSQL as another user).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn main() {
    let n: usize = std::env::var("INSTANCES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let bin = odoo_standby_tests::production_binary();
    let mut sb = sandbox::Sandbox::new().unwrap();
    let w = sandbox::vps_world(&mut sb, 200).unwrap();
    let root = sb.root().to_owned();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(n, &bin, &w, &root)));
    // Everything the run started (the syncs by their pid files, the standbys' postmasters),
    // then the sandbox's own servers.
    sandbox::stop_detached(&root, &sb.pids());
    drop(sb);
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
}

fn cli(bin: &Path, cfg: &Path, args: &[&str]) -> std::process::Output {
    Command::new(bin)
        .arg("-q")
        .arg("-c")
        .arg(cfg)
        .args(args)
        .output()
        .unwrap()
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v.get(i).copied().unwrap_or(f64::NAN)
}

/// (RSS in KiB, CPU ticks user+system) of a pid.
fn usage(pid: i32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = f.get(11).and_then(|u| u.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
    (rss, ticks)
}

/// (PSS, private) memory in KiB of a pid (`/proc/PID/smaps_rollup`): what the process costs
/// beside the other syncs, which share the program's pages.
fn shared_usage(pid: i32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let kb = |key: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (kb("Pss:"), kb("Private_Clean:") + kb("Private_Dirty:"))
}

/// TCP connections of `pid` to `port` (its sockets' inodes against /proc/net/tcp).
fn connections_to(pid: i32, port: u16) -> usize {
    let mut inodes = std::collections::BTreeSet::new();
    if let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        for e in rd.flatten() {
            if let Ok(t) = std::fs::read_link(e.path()) {
                let t = t.display().to_string();
                if let Some(i) = t.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']')) {
                    inodes.insert(i.to_owned());
                }
            }
        }
    }
    let tcp = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let want = format!(":{port:04X}");
    tcp.lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 9 && f[2].ends_with(&want) && f[3] == "01" && inodes.contains(f[9])
        })
        .count()
}

/// Three runs of one form of `status --json` of all instances.
struct Statuses {
    median: f64,
    unanswered: usize,
    from_looks: usize,
    oldest_look: u64,
    each_p50: f64,
}

fn statuses(bin: &Path, cfg: &Path, n: usize, extra: &[&str]) -> Statuses {
    let mut took = Vec::new();
    let mut last = serde_json::Value::Null;
    for _ in 0..3 {
        let mut args = vec!["status", "--json"];
        args.extend_from_slice(extra);
        let t = Instant::now();
        let out = cli(bin, cfg, &args);
        took.push(t.elapsed().as_secs_f64());
        last = serde_json::from_slice(&out.stdout).unwrap_or_default();
    }
    let all = last.as_array().cloned().unwrap_or_default();
    let ages: Vec<u64> = all
        .iter()
        .filter_map(|s| s["vps_seen_age_seconds"].as_u64())
        .collect();
    let mut each: Vec<f64> = all
        .iter()
        .filter_map(|s| s["checked_in_seconds"].as_f64())
        .collect();
    Statuses {
        median: percentile(&mut took, 0.5),
        unanswered: if all.is_empty() {
            n
        } else {
            all.iter().filter(|s| s["severity"] == "unknown").count()
        },
        from_looks: ages.len(),
        oldest_look: ages.iter().copied().max().unwrap_or(0),
        each_p50: percentile(&mut each, 0.5),
    }
}

fn run(n: usize, bin: &Path, w: &sandbox::World, root: &Path) {
    let cfg = w.config.clone();
    // Fifty standbys stream from the one VPS: it needs that many WAL senders and slots
    // (protect keeps larger values).
    w.vps
        .psql(
            "postgres",
            &format!(
                "ALTER SYSTEM SET max_wal_senders = {0}; ALTER SYSTEM SET max_replication_slots = {0};",
                n + 10
            ),
        )
        .unwrap();
    w.vps.stop().unwrap();
    w.vps.start().unwrap();
    for i in 2..=n {
        w.add_instance(&format!("vps{i}")).unwrap();
    }
    let names: Vec<String> = (1..=n).map(|i| format!("vps{i}")).collect();

    let t = Instant::now();
    let mut again = 0;
    for name in &names {
        let mut out = cli(bin, &cfg, &["protect", name, "--restart-vps"]);
        if !out.status.success() {
            // As an operator would: protect runs twice (under the load of the syncs already
            // running, an rsync can time out); the second failure stops the bench.
            println!(
                "protect {name} failed, run again: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            again += 1;
            out = cli(bin, &cfg, &["protect", name, "--restart-vps"]);
        }
        assert!(
            out.status.success(),
            "protect {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let protect = t.elapsed().as_secs_f64();
    println!(
        "{n} instances protected in {protect:.0} s ({:.1} s each; {again} run twice)",
        protect / n as f64
    );

    // Idle: let the first passes (sources, requirements, first index) settle.
    std::thread::sleep(Duration::from_secs(20));
    if std::env::var_os("BENCH_HOLD").is_some() {
        // For profiling by hand: the fleet stays up until a line comes on stdin.
        println!(
            "holding the fleet up: config {}; a line on stdin goes on",
            cfg.display()
        );
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
    }
    // The default: this server's side read now, the VPSs' side from each sync's last look.
    let seen = statuses(bin, &cfg, n, &[]);
    // Every VPS asked now, as status did before the syncs' looks were used.
    std::thread::sleep(Duration::from_secs(10));
    let live = statuses(bin, &cfg, n, &["--live"]);
    let mut alone = Vec::new();
    let mut alone_seen = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        cli(bin, &cfg, &["status", "vps1", "--json"]);
        alone.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        cli(
            bin,
            &cfg,
            &["status", "--json", "--parallel", "1", "--timeout", "30"],
        );
        alone_seen.push(t.elapsed().as_secs_f64() / n as f64);
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    // The peer: every instance's checks at once, every VPS asked, as status first did.
    std::thread::sleep(Duration::from_secs(20));
    let at_once = statuses(bin, &cfg, n, &["--live", "--parallel", &n.to_string()]);
    std::thread::sleep(Duration::from_secs(20));

    let state = root.join("state");
    let pids: Vec<i32> = names
        .iter()
        .filter_map(|name| {
            let dir = state.join(name).join("run");
            let file = std::fs::read_dir(&dir)
                .ok()?
                .flatten()
                .map(|e| e.path())
                .find(|p| {
                    p.file_name()
                        .and_then(|f| f.to_str())
                        .is_some_and(|f| f.starts_with("odoo-standby-sync@") && f.ends_with(".pid"))
                })?;
            std::fs::read_to_string(file).ok()?.trim().parse().ok()
        })
        .collect();
    assert_eq!(
        pids.len(),
        n,
        "a sync pid file is missing under {}",
        state.display()
    );
    let hz = 100.0;
    let window = 30.0;
    let before: Vec<(u64, u64)> = pids.iter().map(|p| usage(*p)).collect();
    std::thread::sleep(Duration::from_secs_f64(window));
    let after: Vec<(u64, u64)> = pids.iter().map(|p| usage(*p)).collect();
    let rss: Vec<f64> = after.iter().map(|(r, _)| *r as f64 / 1024.0).collect();
    let shared: Vec<(u64, u64)> = pids.iter().map(|p| shared_usage(*p)).collect();
    let pss: Vec<f64> = shared.iter().map(|(p, _)| *p as f64 / 1024.0).collect();
    let private: Vec<f64> = shared.iter().map(|(_, u)| *u as f64 / 1024.0).collect();
    let cpu: Vec<f64> = before
        .iter()
        .zip(&after)
        .map(|((_, a), (_, b))| (b.saturating_sub(*a)) as f64 / hz / window * 100.0)
        .collect();
    let sshd_port = w.sshd.port;
    let mut conns: Vec<f64> = pids
        .iter()
        .map(|p| connections_to(*p, sshd_port) as f64)
        .collect();

    // The file delay: an attachment every 500 ms on the VPS (file, then its row, as Odoo
    // writes them), each looked for in every instance's copy every 20 ms.
    let stores: Vec<PathBuf> = names
        .iter()
        .map(|name| {
            root.join("backup/instances")
                .join(name)
                .join("data_dir/filestore/clientes")
        })
        .collect();
    let mut delays = Vec::new();
    for k in 0..20 {
        let content = format!("fleet bench attachment {k} {:?}", Instant::now()).into_bytes();
        let (fname, sql) = sandbox::attachment(&w.data_dir, "clientes", &content).unwrap();
        let t = Instant::now();
        w.vps.psql("clientes", &sql).unwrap();
        let mut pending: Vec<&PathBuf> = stores.iter().collect();
        while !pending.is_empty() && t.elapsed() < Duration::from_secs(30) {
            pending.retain(|s| {
                if s.join(&fname).exists() {
                    delays.push(t.elapsed().as_secs_f64());
                    false
                } else {
                    true
                }
            });
            std::thread::sleep(Duration::from_millis(20));
        }
        if !pending.is_empty() {
            println!(
                "attachment {k}: still missing in {} copies after 30 s",
                pending.len()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }

    println!(
        "odoo-standby status of {n} instances, {} at a time (the default: VPSs as their syncs saw them): median of 3 runs {:.2} s (target < 1 s); {} of {n} not answered within --timeout 30, {} from the syncs' looks (oldest {} s); one instance's checks p50 {:.3} s",
        failover::STATUS_PARALLEL,
        seen.median,
        seen.unanswered,
        seen.from_looks,
        seen.oldest_look,
        seen.each_p50
    );
    println!(
        "odoo-standby status --live of {n} instances (every VPS asked now): median of 3 runs {:.2} s; {} of {n} not answered; one instance's checks p50 {:.3} s",
        live.median, live.unanswered, live.each_p50
    );
    println!(
        "  `status vps1` alone (asks its VPS): median {:.2} s; one instance of a `status --parallel 1` of all: {:.3} s; load average: {}",
        percentile(&mut alone, 0.5),
        percentile(&mut alone_seen, 0.5),
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
    println!(
        "odoo-standby status --live of {n} instances, all at once (--parallel {n}, as status first did): {:.2} s; {} of {n} not answered within --timeout 30",
        at_once.median, at_once.unanswered
    );
    println!(
        "sync service RSS at idle: p50 {:.1} MB, max {:.1} MB per instance (target < 10 MB); {:.0} MB for all {n}",
        percentile(&mut rss.clone(), 0.5),
        percentile(&mut rss.clone(), 1.0),
        rss.iter().sum::<f64>()
    );
    println!(
        "sync service memory at idle beside the others (they share the program's pages): PSS p50 {:.1} MB, private p50 {:.1} MB, max {:.1} MB; PSS {:.0} MB for all {n}",
        percentile(&mut pss.clone(), 0.5),
        percentile(&mut private.clone(), 0.5),
        percentile(&mut private.clone(), 1.0),
        pss.iter().sum::<f64>()
    );
    println!(
        "sync service CPU at idle over {window:.0} s: p50 {:.2} %, max {:.2} % of a core per instance (target < 0.5 %); {:.1} % for all {n}",
        percentile(&mut cpu.clone(), 0.5),
        percentile(&mut cpu.clone(), 1.0),
        cpu.iter().sum::<f64>()
    );
    let total: f64 = conns.iter().sum();
    println!(
        "SSH connections per sync service: p50 {:.0}, max {:.0}; {total:.0} in all",
        percentile(&mut conns.clone(), 0.5),
        percentile(&mut conns, 1.0),
    );
    println!(
        "file delay, 20 attachments x {n} copies: p50 {:.2} s, p95 {:.2} s, max {:.2} s (target p95 < 2 s)",
        percentile(&mut delays.clone(), 0.5),
        percentile(&mut delays.clone(), 0.95),
        percentile(&mut delays, 1.0)
    );
}
