//! Progress on a terminal: `protect` run in a tmux pane draws a bar for the base backup,
//! and the pane, captured while it runs, shows it moving; the clone keeps to the configured
//! rate (`clone_mb_per_s`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use odoo_standby_tests::binary;

/// tmux on a socket of this test's own: killing its server stops nothing of anyone else.
struct Tmux(String);

impl Tmux {
    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.0])
            .args(args)
            .output()
            .expect("tmux runs (bash scripts/install-deps installs it)");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.0, "kill-server"])
            .output();
    }
}

#[test]
fn protect_draws_a_moving_bar_on_a_terminal() {
    let mut sb = sandbox::Sandbox::new().unwrap();
    let w = sandbox::vps_world(&mut sb, 20).unwrap();
    // pg_basebackup reports its progress at most once a second, and a local copy runs at disk
    // speed: 1.3 GB took 2 s on CI, too few reports for the pane to catch one under 100%.
    // The instance's clone_mb_per_s (pg_basebackup's --max-rate) makes about 230 MB take
    // six seconds whatever the disk, as it keeps a clone from filling a VPS's uplink.
    w.vps
        .psql(
            "clientes",
            "CREATE TABLE ballast AS SELECT g, repeat(md5(g::text), 24) AS pad FROM generate_series(1, 250000) g",
        )
        .unwrap();
    let config = std::fs::read_to_string(&w.config).unwrap();
    std::fs::write(
        &w.config,
        config.replacen("[backup]\n", "[backup]\nclone_mb_per_s = 40\n", 1),
    )
    .unwrap();
    let tmux = Tmux(format!("odoo-standby-progress-{}", std::process::id()));
    let cmd = format!(
        "{} -c {} protect vps1 --restart-vps; echo EXIT=$?; sleep 600",
        binary().display(),
        w.config.display()
    );
    tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "p",
        "-x",
        "150",
        "-y",
        "50",
        &cmd,
    ]);
    let start = Instant::now();
    let mut seen = BTreeSet::new();
    let mut last = String::new();
    while !last.contains("EXIT=") {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "protect did not end:\n{last}"
        );
        last = tmux.run(&["capture-pane", "-p", "-t", "p"]);
        for line in last.lines() {
            // `    base backup 12.3 MB [=====>    ]  25% 00:00:02`
            if line.contains("base backup") && line.contains('[') {
                if let Some(pct) = line
                    .split(']')
                    .nth(1)
                    .and_then(|r| r.split('%').next())
                    .and_then(|p| p.trim().parse::<u8>().ok())
                {
                    seen.insert(pct);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("base backup percentages seen in the pane: {seen:?}");
    assert!(last.contains("EXIT=0"), "{last}");
    assert!(
        seen.iter().any(|p| *p < 100) && seen.len() >= 2,
        "the bar did not move (percentages seen: {seen:?}):\n{last}"
    );
}
