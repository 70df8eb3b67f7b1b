//! Raw streaming throughput of `SshHost` against OpenSSH's `ssh` over the sandbox sshd.
//! `cargo run --release -p odoo-standby-host --example throughput -- [MB]`

// A benchmark that cannot set up its servers must stop: panicking is the point here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use host::{CommandSpec, Host, SshAuth, SshConfig, SshHost};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mb: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(500);
    let mut sb = sandbox::Sandbox::new().unwrap();
    let sshd = sb.start_sshd().unwrap();
    let file = sb.root().join("big");
    let data: Vec<u8> = (0..mb * 1024 * 1024)
        .map(|i| ((i * 2654435761usize) >> 13) as u8)
        .collect();
    std::fs::write(&file, &data).unwrap();
    let path = file.display().to_string();

    let t = Instant::now();
    let out = std::process::Command::new("ssh")
        .args(["-p", &sshd.port.to_string(), "-i"])
        .arg(&sshd.client_key)
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", sshd.known_hosts.display()))
        .args(["-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes"])
        .arg(format!("{}@127.0.0.1", sshd.user))
        .args(["cat", &path])
        .output()
        .unwrap();
    let ssh_s = t.elapsed().as_secs_f64();
    assert_eq!(out.stdout.len(), data.len());

    let host = SshHost::new(SshConfig::new(
        sshd.user.clone(),
        "127.0.0.1",
        sshd.port,
        SshAuth::KeyFile(sshd.client_key.clone()),
        sshd.known_hosts.clone(),
    ));
    host.connect().await.unwrap();
    let t = Instant::now();
    let sink: host::BoxWrite = Box::new(tokio::io::sink());
    host.stream(&CommandSpec::new("cat").arg(&path), None, sink)
        .await
        .unwrap();
    let ours_s = t.elapsed().as_secs_f64();
    let mut execs = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        host.run(&CommandSpec::new("true")).await.unwrap();
        execs.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    execs.sort_by(|a, b| a.total_cmp(b));
    println!(
        "exec of `true` on a kept connection: median {:.1} ms, max {:.1} ms",
        execs[10], execs[19]
    );
    println!("{mb} MB: OpenSSH ssh {:.0} MB/s ({ssh_s:.2} s), SshHost::stream {:.0} MB/s ({ours_s:.2} s)", mb as f64 / ssh_s, mb as f64 / ours_s);
}
