//! The per-instance layout on disk, the unit through systemd-analyze, install order.

use std::sync::Arc;

use host::{FileKind, Host, LocalHost, MockHost, Output};
use mockall::Sequence;
use odoo_instance::unit::{self, UnitSpec};
use odoo_instance::Layout;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layout_is_created_once_with_owner_and_modes() {
    let sb = sandbox::Sandbox::new().unwrap();
    let root = sb.root().join("respaldo_filestore");
    let src = sb.dir("odoo_src").unwrap();
    let user = sb.run_user().name.clone();
    let host: Arc<dyn Host> = Arc::new(LocalHost::new());
    let layout = Layout::new(&root, "vps_clientes_1", user.clone(), &src).unwrap();
    let first = layout.ensure(host.as_ref()).await.unwrap();
    assert!(first.len() >= 4, "{first:?}");
    assert!(
        layout.ensure(host.as_ref()).await.unwrap().is_empty(),
        "a second run changes nothing"
    );
    for (dir, mode) in [
        (layout.dir(), 0o750),
        (layout.data_dir(), 0o750),
        (layout.sources(), 0o755),
    ] {
        let st = host.stat(&dir).await.unwrap().unwrap();
        assert_eq!(
            (st.kind, st.mode, st.user.as_str()),
            (FileKind::Dir, mode, user.as_str()),
            "{}",
            dir.display()
        );
    }
    let link = host.stat(&layout.odoo()).await.unwrap().unwrap();
    assert_eq!(link.link_target.as_deref(), Some(src.as_path()));
    assert_eq!(
        layout.unit_file(),
        layout.dir().join("odoo_vps_clientes_1.service")
    );
    assert!(
        Layout::new(&root, "vps-clientes-1", user, &src).is_err(),
        "one naming rule"
    );
}

fn spec(sb: &sandbox::Sandbox, odoo_bin: &std::path::Path) -> UnitSpec {
    UnitSpec {
        instance: "vps_clientes_1".into(),
        os_user: sb.run_user().name.clone(),
        exec_start: vec![
            "/usr/bin/python3".into(),
            odoo_bin.display().to_string(),
            "-c".into(),
            sb.root().join("odoo.conf").display().to_string(),
        ],
        cluster_unit: unit::cluster_unit(15, "vps_clientes_1"),
        working_dir: sb.root().to_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_unit_passes_systemd_analyze_and_the_runbooks_does_not() {
    let sb = sandbox::Sandbox::new().unwrap();
    let odoo_bin = sandbox::write_odoo_source(&sb.dir("src").unwrap()).unwrap();
    let host = LocalHost::new();
    let text = unit::render(&spec(&sb, &odoo_bin));
    for want in [
        "Requires=postgresql@15-vps_clientes_1.service",
        "StandardOutput=journal",
        "SyslogIdentifier=odoo_vps_clientes_1",
        "Restart=always",
    ] {
        assert!(text.contains(want), "{want}");
    }
    assert_eq!(text.matches("User=").count(), 1);
    let path = sb.root().join("odoo_vps_clientes_1.service");
    std::fs::write(&path, &text).unwrap();
    unit::verify(&host, &path).await.unwrap();

    // The runbook's unit: the StandarOuput typo and a second User= line.
    let broken = text
        .replace("StandardOutput=journal", "StandarOuput=journal")
        .replace("Group=", "User=odoo\nGroup=");
    let bad = sb.root().join("odoo_runbook.service");
    std::fs::write(&bad, broken).unwrap();
    let err = unit::verify(&host, &bad).await.unwrap_err().to_string();
    assert!(err.contains("StandarOuput"), "{err}");
}

fn ok() -> Output {
    Output {
        status: host::ExitStatus {
            code: Some(0),
            signal: None,
        },
        stdout: Vec::new(),
        stderr: Vec::new(),
    }
}

#[tokio::test]
async fn install_links_reloads_then_enables_and_remove_undoes_it() {
    let mut host = MockHost::new();
    let mut seq = Sequence::new();
    host.expect_name().returning(|| "backup".into());
    for want in [
        "[as root] /usr/bin/systemctl link /srv/r/vps1/odoo_vps1.service",
        "[as root] /usr/bin/systemctl daemon-reload",
        "[as root] /usr/bin/systemctl enable --now odoo_vps1.service",
        "systemctl cat odoo_vps1.service",
        "[as root] /usr/bin/systemctl disable --now odoo_vps1.service",
        "[as root] /usr/bin/systemctl daemon-reload",
    ] {
        let checked = !want.contains(" cat ");
        let w = want.to_owned();
        if checked {
            host.expect_run()
                .withf(move |s| s.to_string() == w)
                .times(1)
                .in_sequence(&mut seq)
                .returning(|_| Ok(ok()));
        } else {
            host.expect_run_unchecked()
                .withf(move |s| s.to_string() == w)
                .times(1)
                .in_sequence(&mut seq)
                .returning(|_| Ok(ok()));
        }
    }
    unit::install(
        &host,
        std::path::Path::new("/srv/r/vps1/odoo_vps1.service"),
        true,
    )
    .await
    .unwrap();
    unit::remove(&host, "odoo_vps1.service", true)
        .await
        .unwrap();
}

#[tokio::test]
async fn removing_a_unit_systemd_does_not_know_does_nothing() {
    let mut host = MockHost::new();
    host.expect_name().returning(|| "backup".into());
    host.expect_run_unchecked().times(1).returning(|_| {
        Ok(Output {
            status: host::ExitStatus {
                code: Some(1),
                signal: None,
            },
            stdout: Vec::new(),
            stderr: b"No files found for odoo_vps1.service.".to_vec(),
        })
    });
    host.expect_run().never();
    unit::remove(&host, "odoo_vps1.service", true)
        .await
        .unwrap();
}
