//! Each smoke-test failure class, produced for real with the stand-in odoo-bin on sandbox
//! clusters, and diagnosed as that class; two fixes run and the next smoke test passes.

use std::net::TcpListener;

use host::{Host, LocalHost};
use odoo_instance::smoke::{self, Failure, SmokeTest};
use sandbox::{Cluster, Sandbox, SizeMix};

struct Setup {
    sb: Sandbox,
    vps: Cluster,
    src: std::path::PathBuf,
    data_dir: std::path::PathBuf,
    odoo_bin: std::path::PathBuf,
}

fn setup() -> Setup {
    let mut sb = Sandbox::new().unwrap();
    let vps = sb.add_cluster("vps").unwrap();
    vps.create_odoo_db("clientes", "odoo").unwrap();
    let data_dir = sb.dir("data_dir").unwrap();
    vps.add_attachments("clientes", &data_dir, 5, &SizeMix::fixed(100), 3)
        .unwrap();
    let src = sb.dir("src").unwrap();
    let odoo_bin = sandbox::write_odoo_source(&src).unwrap();
    Setup {
        sb,
        vps,
        src,
        data_dir,
        odoo_bin,
    }
}

impl Setup {
    fn test(&self, cluster: &Cluster, db_user: &str, http: Option<u16>) -> SmokeTest {
        let conf = self
            .sb
            .root()
            .join(format!("odoo-{db_user}-{}.conf", cluster.port()));
        std::fs::write(
            &conf,
            format!(
                "[options]\naddons_path = {}\ndata_dir = {}\ndb_host = {}\ndb_port = {}\ndb_user = {db_user}\nhttp_interface = 127.0.0.1\n",
                self.src.join("addons").display(),
                self.data_dir.display(),
                cluster.socket_dir().display(),
                cluster.port()
            ),
        )
        .unwrap();
        SmokeTest {
            exec_start: vec![
                "/usr/bin/python3".into(),
                self.odoo_bin.display().to_string(),
                "-c".into(),
                conf.display().to_string(),
            ],
            database: "clientes".into(),
            os_user: self.sb.run_user().name.clone(),
            http: http.map(|p| ("127.0.0.1".to_owned(), p)),
            db_user: db_user.into(),
            vps_db_user: Some("odoo".into()),
            cluster_socket: cluster.socket_dir().display().to_string(),
            cluster_port: cluster.port(),
            requirements: self.sb.root().join("requirement.txt"),
        }
    }
}

fn classes(r: &smoke::SmokeReport) -> Vec<Failure> {
    r.diagnoses.iter().map(|d| d.failure.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_instance_passes() {
    let s = setup();
    let r = smoke::run(
        &LocalHost::new(),
        &s.test(&s.vps, "odoo", Some(sandbox::free_port().unwrap())),
    )
    .await
    .unwrap();
    assert!(r.ok, "{r:?}");
    assert!(r.diagnoses.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_missing_then_wrong_owner_then_fixed_as_the_runbook_does() {
    let s = setup();
    let host = LocalHost::new();
    let t = s.test(&s.vps, "odoouser", None);
    let r = smoke::run(&host, &t).await.unwrap();
    assert_eq!(
        classes(&r),
        vec![Failure::RoleMissing {
            role: "odoouser".into()
        }],
        "{r:?}"
    );
    // Run the proposed fix (createuser -s), then the next class shows up.
    host.run(r.diagnoses[0].fix.command.as_ref().unwrap())
        .await
        .unwrap();
    let r = smoke::run(&host, &t).await.unwrap();
    assert!(
        matches!(classes(&r)[..], [Failure::WrongOwner { .. }]),
        "{r:?}"
    );
    let fix = r.diagnoses[0].fix.command.clone().unwrap();
    assert!(
        fix.to_string()
            .contains("REASSIGN OWNED BY \"odoo\" TO \"odoouser\""),
        "{fix}"
    );
    host.run(&fix).await.unwrap();
    let r = smoke::run(&host, &t).await.unwrap();
    assert!(r.ok, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_python_module_and_module_not_found() {
    let s = setup();
    let host = LocalHost::new();
    s.vps
        .psql(
            "clientes",
            "INSERT INTO ir_module_module (name, state) VALUES ('l10n_ar', 'installed')",
        )
        .unwrap();
    let r = smoke::run(&host, &s.test(&s.vps, "odoo", None))
        .await
        .unwrap();
    assert_eq!(
        classes(&r),
        vec![Failure::ModuleNotFound {
            modules: vec!["l10n_ar".into()]
        }],
        "{r:?}"
    );
    assert!(!r.ok);
    sandbox::write_addon(
        &s.src.join("addons"),
        "l10n_ar",
        &["pyafipws_not_installed"],
    )
    .unwrap();
    let r = smoke::run(&host, &s.test(&s.vps, "odoo", None))
        .await
        .unwrap();
    assert_eq!(
        classes(&r),
        vec![Failure::MissingPythonModule {
            module: "pyafipws_not_installed".into()
        }],
        "{r:?}"
    );
    let fix = r.diagnoses[0].fix.shown.clone().unwrap();
    assert!(
        fix.contains("-m pip install -r") && fix.contains("requirement.txt"),
        "{fix}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_in_use_and_read_only_standby() {
    let mut s = setup();
    let host = LocalHost::new();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let r = smoke::run(&host, &s.test(&s.vps, "odoo", Some(port)))
        .await
        .unwrap();
    assert_eq!(classes(&r), vec![Failure::PortInUse { port }], "{r:?}");
    drop(taken);

    let standby = s.sb.add_standby("backup", &s.vps).unwrap();
    let r = smoke::run(&host, &s.test(&standby, "odoo", None))
        .await
        .unwrap();
    assert_eq!(classes(&r), vec![Failure::ReadOnly], "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_addons_path_and_unreadable_attachments() {
    let s = setup();
    let host = LocalHost::new();
    let mut t = s.test(&s.vps, "odoo", None);
    let conf = t.exec_start[3].clone();
    let text = std::fs::read_to_string(&conf).unwrap();
    let gone = s.sb.root().join("gone");
    std::fs::write(
        &conf,
        text.replace(
            &s.src.join("addons").display().to_string(),
            &gone.display().to_string(),
        ),
    )
    .unwrap();
    let r = smoke::run(&host, &t).await.unwrap();
    assert_eq!(
        classes(&r),
        vec![Failure::AddonsPathInvalid {
            path: gone.display().to_string()
        }],
        "{r:?}"
    );
    std::fs::write(&conf, &text).unwrap();

    let store = sandbox::filestore(&s.data_dir, "clientes");
    let victim = s
        .vps
        .psql(
            "clientes",
            "SELECT store_fname FROM ir_attachment WHERE store_fname IS NOT NULL LIMIT 1",
        )
        .unwrap();
    std::fs::remove_file(store.join(victim)).unwrap();
    t.http = None;
    let r = smoke::run(&host, &t).await.unwrap();
    assert_eq!(
        classes(&r),
        vec![Failure::AttachmentsUnreadable { count: 1 }],
        "{r:?}"
    );
}
