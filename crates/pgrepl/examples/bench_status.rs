//! Benchmark: `pgrepl status --json` on a primary with one streaming standby, side by side
//! with `psql` reading pg_stat_replication, and the library call in-process.
//! Run with `bash scripts/bench-pgrepl-status` (builds release binaries first).

// A benchmark that cannot set up its servers must stop: panicking is the point here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::{Duration, Instant};

fn summary(name: &str, mut v: Vec<Duration>) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let p = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "{name:<44} n={:<3} min {:>6.1} ms  median {:>6.1} ms  p95 {:>6.1} ms  max {:>6.1} ms",
        v.len(),
        ms(v[0]),
        ms(p(0.5)),
        ms(p(0.95)),
        ms(v[v.len() - 1])
    );
}

fn time_cmd(n: usize, mut make: impl FnMut() -> Command) -> Vec<Duration> {
    (0..n)
        .map(|_| {
            let t = Instant::now();
            let out = make().output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            t.elapsed()
        })
        .collect()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(50);
    let exe = std::env::current_exe().unwrap();
    let pgrepl_bin = exe.parent().unwrap().parent().unwrap().join("pgrepl");
    assert!(
        pgrepl_bin.exists(),
        "build it first: cargo build --release -p pgrepl"
    );

    let mut sb = sandbox::Sandbox::new().unwrap();
    let primary = sb.add_cluster("primary").unwrap();
    let _standby = sb.add_standby("standby", &primary).unwrap();
    primary
        .wait_for(
            "postgres",
            "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'",
            "1",
            Duration::from_secs(30),
        )
        .unwrap();
    let conn = primary.conninfo("postgres");
    println!(
        "primary 127.0.0.1:{} with one streaming standby; {n} runs each",
        primary.port()
    );

    let json = Command::new(&pgrepl_bin)
        .args(["status", "--conn", &conn, "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["replicas"][0]["state"], "streaming", "{v}");

    summary(
        "pgrepl status --json (process, TCP, scram)",
        time_cmd(n, || {
            let mut c = Command::new(&pgrepl_bin);
            c.args(["status", "--conn", &conn, "--json"]);
            c
        }),
    );
    summary(
        "psql -c 'SELECT * FROM pg_stat_replication'",
        time_cmd(n, || {
            let mut c = Command::new(primary.bindir().join("psql"));
            c.args([
                "-X",
                "-A",
                "-t",
                "-c",
                "SELECT * FROM pg_stat_replication",
                &conn,
            ]);
            c
        }),
    );
    let client = pgrepl::PgClient::connect(&conn).await.unwrap();
    let mut lib = Vec::new();
    for _ in 0..n {
        let t = Instant::now();
        pgrepl::status(&client).await.unwrap();
        lib.push(t.elapsed());
    }
    summary("pgrepl::status() in-process, connected", lib);
}
