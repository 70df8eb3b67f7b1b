//! No sandbox process outlives its sandbox, even when the test holding it panics.

use std::time::Duration;

use sandbox::Sandbox;

/// The pids whose parent is `parent` (the postmaster's children).
fn children_of(parent: i32) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit_once(')')?
                        .1
                        .split_whitespace()
                        .nth(1)?
                        .parse()
                        .ok()
                })
                == Some(parent)
        })
        .collect()
}

#[test]
fn no_process_outlives_a_sandbox_dropped_during_a_panic() {
    let (tx, rx) = std::sync::mpsc::channel();
    let worker = std::thread::spawn(move || {
        let mut sb = Sandbox::new().unwrap();
        let primary = sb.add_cluster("p").unwrap();
        let standby = sb.add_standby("s", &primary).unwrap();
        sb.start_sshd().unwrap();
        let mut pids = sb.pids();
        // Every postgres process, not only the postmasters.
        for c in [&primary, &standby] {
            pids.extend(children_of(c.pid().unwrap()));
        }
        tx.send((pids, sb.root().to_owned())).unwrap();
        panic!("a test failing while it holds a sandbox");
    });
    assert!(worker.join().is_err(), "the worker was meant to panic");
    let (pids, root) = rx.recv_timeout(Duration::from_secs(1)).unwrap();
    assert!(
        pids.len() >= 6,
        "expected 2 postmasters, their children and sshd: {pids:?}"
    );
    let alive: Vec<i32> = pids.into_iter().filter(|p| sandbox::is_alive(*p)).collect();
    assert!(alive.is_empty(), "still running after the panic: {alive:?}");
    assert!(!root.exists(), "the sandbox root was left behind");
}
