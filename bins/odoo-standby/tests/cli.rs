//! The `odoo-standby` binary: init writes a config that check accepts; check points at
//! mistakes by file, line and key.

// A test that cannot run the binary must fail loudly: panicking is the point here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn run(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_odoo-standby"))
        .args(args)
        .output()
        .expect("the binary runs")
}

#[test]
fn init_then_check_and_a_mistake() {
    let dir = std::env::temp_dir().join(format!("odoo-standby-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let init = run(&["init"]);
    assert!(init.status.success());
    let path = dir.join("config.toml");
    std::fs::write(&path, &init.stdout).expect("write");
    let ok = run(&["check", "-c", path.to_str().expect("utf-8")]);
    let text = String::from_utf8_lossy(&ok.stdout).into_owned();
    assert!(ok.status.success(), "{text}");
    assert!(
        text.contains("vps_clientes_1: ssh odoo@200.58.98.56:5253, standby port 5435"),
        "{text}"
    );

    let bad = String::from_utf8_lossy(&init.stdout)
        .replace("standby_port = 5435", "standby_port = 99999");
    std::fs::write(&path, bad).expect("write");
    let err = run(&["check", "-c", path.to_str().expect("utf-8")]);
    assert_eq!(err.status.code(), Some(2));
    let said = String::from_utf8_lossy(&err.stderr).into_owned();
    assert!(
        said.contains(&format!(
            "{}:24: instance[0].standby_port: 99999 is not a port",
            path.display()
        )),
        "{said}"
    );
    std::fs::remove_dir_all(&dir).expect("cleanup");
}
