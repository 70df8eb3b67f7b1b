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

    let template = String::from_utf8_lossy(&init.stdout).into_owned();
    let line = template
        .lines()
        .position(|l| l.trim() == "standby_port = 5435")
        .expect("the template sets standby_port")
        + 1;
    let bad = template.replace("standby_port = 5435", "standby_port = 99999");
    std::fs::write(&path, bad).expect("write");
    let err = run(&["check", "-c", path.to_str().expect("utf-8")]);
    assert_eq!(err.status.code(), Some(2));
    let said = String::from_utf8_lossy(&err.stderr).into_owned();
    assert!(
        said.contains(&format!(
            "{}:{line}: instance[0].standby_port: 99999 is not a port",
            path.display()
        )),
        "{said}"
    );
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn dry_runs_print_the_plans_and_touch_nothing() {
    let mut sb = sandbox::Sandbox::new().unwrap();
    let w = sandbox::vps_world(&mut sb, 20).unwrap();
    let dir = sb.root().to_owned();
    let cfg = w.config.to_str().unwrap();
    for op in ["protect", "failover", "failback"] {
        let out = run(&["-c", cfg, op, "vps1", "--dry-run", "--json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(plan["operation"], op);
        let steps = plan["steps"].as_array().unwrap();
        assert!(steps.len() >= 7, "{plan}");
        for s in steps {
            for key in ["id", "description", "host", "check", "hint"] {
                assert!(!s[key].as_str().unwrap().is_empty(), "{key} in {s}");
            }
            assert!(!s["runs"].as_array().unwrap().is_empty(), "{s}");
            assert!(s["commands"].is_array(), "{s}");
        }
        let text = run(&["-c", cfg, op, "vps1", "--dry-run"]);
        assert!(String::from_utf8_lossy(&text.stdout).contains("dry run: nothing is touched"));
    }
    let protect = run(&["-c", cfg, "protect", "vps1", "--dry-run"]);
    let shown = String::from_utf8_lossy(&protect.stdout);
    assert!(shown.contains("replica_user:***"), "{shown}");
    for untouched in [
        "backup/instances",
        "backup/clusters/vps1",
        "state/vps1/current.json",
    ] {
        assert!(
            !dir.join(untouched).exists(),
            "{untouched} exists after dry runs"
        );
    }
    assert!(std::fs::read_dir(dir.join("backup/secrets"))
        .unwrap()
        .next()
        .is_none());
}

#[test]
fn man_pages_one_per_subcommand_and_completions() {
    let dir = std::env::temp_dir().join(format!("odoo-standby-man-{}", std::process::id()));
    let out = run(&["man", dir.to_str().expect("utf-8")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for page in [
        "odoo-standby",
        "odoo-standby-failover",
        "odoo-standby-status",
        "odoo-standby-check",
    ] {
        let text = std::fs::read_to_string(dir.join(format!("{page}.1"))).expect(page);
        assert!(text.contains(&format!(".TH {page} 1")), "{page}: {text}");
    }
    let failover = std::fs::read_to_string(dir.join("odoo-standby-failover.1")).expect("page");
    assert!(failover.contains("vps\\-unreachable"), "{failover}");
    std::fs::remove_dir_all(&dir).expect("cleanup");
    for shell in ["bash", "zsh", "fish"] {
        let out = run(&["completions", shell]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("failover") && text.contains("--nagios"),
            "{shell}: {text}"
        );
    }
    let bad = run(&["completions", "tcsh"]);
    assert_eq!(bad.status.code(), Some(2));
}
