//! The `pgrepl` binary against a real sandbox cluster.

// A test that cannot set up its servers must fail loudly: panicking is the point here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

fn pgrepl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pgrepl"))
        .args(args)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn prepare_twice_status_json_and_bad_input() {
    let mut sb = sandbox::Sandbox::new().unwrap();
    let vps = sb.add_cluster("vps").unwrap();
    let conn = vps.conninfo("postgres");
    let secrets = sb.dir("secrets").unwrap();
    let pgpass = secrets.join("pgpass");
    let owner = sb.run_user().name.clone();
    let prepare = [
        "prepare-primary",
        "--conn",
        &conn,
        "--backup-address",
        "127.0.0.1",
        "--pgpass",
        pgpass.to_str().unwrap(),
        "--pgpass-owner",
        &owner,
    ];
    let first = pgrepl(&prepare);
    assert!(first.status.success(), "{}", text(&first));
    let t = text(&first);
    assert!(t.contains("changed: created role replica_user"), "{t}");
    assert!(t.contains("restart needed for: wal_log_hints"), "{t}");
    let written = std::fs::read_to_string(&pgpass).unwrap();
    assert!(written.contains(":replication:replica_user:"));
    // The generated passwords went to the file, not to the terminal.
    let pw = written.lines().next().unwrap().rsplit(':').next().unwrap();
    assert!(!t.contains(pw));

    vps.stop().unwrap();
    vps.start().unwrap();
    let second = pgrepl(&prepare);
    assert!(second.status.success(), "{}", text(&second));
    assert!(
        text(&second).contains("already prepared, nothing changed"),
        "{}",
        text(&second)
    );
    assert_eq!(
        std::fs::read_to_string(&pgpass).unwrap(),
        written,
        "passwords were kept"
    );

    // Status of a primary with no standby: JSON, healthy.
    let st = pgrepl(&["status", "--conn", &conn, "--json"]);
    assert_eq!(st.status.code(), Some(0), "{}", text(&st));
    let v: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    assert_eq!(v["role"], "primary");
    assert!(v["replicas"].as_array().unwrap().is_empty());

    // An inactive slot is a problem: exit 1.
    let made = pgrepl(&["slots", "--conn", &conn, "--create", "forgotten"]);
    assert!(made.status.success(), "{}", text(&made));
    let slots = pgrepl(&["slots", "--conn", &conn]);
    assert_eq!(slots.status.code(), Some(1), "{}", text(&slots));
    assert!(text(&slots).contains("PROBLEM forgotten: inactive"));
    let dropped = pgrepl(&["slots", "--conn", &conn, "--drop", "forgotten"]);
    assert!(text(&dropped).contains("dropped"));

    // Bad input: exit 2, a message that says what, nothing changed.
    let bad = pgrepl(&["slots", "--conn", &conn, "--create", "vps'1"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(text(&bad).contains("invalid slot name"), "{}", text(&bad));
    let help = pgrepl(&["--help"]);
    assert!(text(&help).contains("Exit codes: 0 done"));
}
