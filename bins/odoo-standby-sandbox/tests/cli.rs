//! `odoo-standby-sandbox up` leaves real servers running with a valid config; `down` stops
//! them by pid; a second `up` into the same directory is refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn run(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_odoo-standby-sandbox"))
        .args(args)
        .output()
        .expect("the binary runs")
}

/// Runs `sandbox down` when dropped, so a failing test leaves nothing running.
struct Down(std::path::PathBuf);

impl Drop for Down {
    fn drop(&mut self) {
        let _ = run(&["down", self.0.to_str().unwrap_or_default()]);
    }
}

#[test]
fn sandbox_up_leaves_servers_running_and_down_stops_them() {
    let base = std::env::temp_dir().join(format!("odoo-standby-up-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let dir = base.join("sb");
    let guard = Down(dir.clone());
    let up = run(&["up", dir.to_str().unwrap(), "--attachments", "20"]);
    assert!(
        up.status.success(),
        "{}{}",
        String::from_utf8_lossy(&up.stdout),
        String::from_utf8_lossy(&up.stderr)
    );

    let desc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("sandbox.json")).unwrap()).unwrap();
    let pids: Vec<i64> = desc["pids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_i64().unwrap())
        .collect();
    assert!(pids.len() >= 2, "{desc}");
    for pid in &pids {
        assert!(
            std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "{pid} is not running after up"
        );
    }
    for server in desc["servers"].as_array().unwrap() {
        let port = server["port"].as_u64().unwrap() as u16;
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
            "{server}"
        );
    }
    // The config it wrote is valid for the operator's command.
    let cfg = dir.join("config.toml");
    assert!(failover::Config::load(&cfg).is_ok());
    // A second `up` into the same directory is refused.
    let again = run(&["up", dir.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("is not empty"));

    let down = run(&["down", dir.to_str().unwrap()]);
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    for pid in &pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat
            .rsplit_once(')')
            .map(|(_, r)| r.trim_start().chars().next())
            .unwrap_or(None);
        assert!(
            matches!(state, None | Some('Z') | Some('X')),
            "{pid} still runs after down"
        );
    }
    drop(guard);
    let _ = std::fs::remove_dir_all(&base);
}
