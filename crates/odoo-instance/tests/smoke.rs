//! The smoke test's case table, run the same way against the sandbox's stand-in odoo-bin and
//! against real Odoo 17 (`$ODOO_SRC`, `../shared/odoo/17.0` here) on sandbox clusters: every
//! case must end the same on both, and as the table says. Then the runbook's fixes are run
//! (createuser -s, REASSIGN OWNED) and the next smoke test passes.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;

use host::{Host, LocalHost};
use odoo_instance::smoke::{self, Failure, SmokeTest};
use sandbox::{Cluster, Sandbox, SizeMix};

/// The addon whose Python import needs a package the backup does not have (it is on
/// `PYTHONPATH` only through the shim while installed and in the cases that should pass).
const PYDEP_MANIFEST: &str = "{'name': 'smoke_pydep', 'version': '17.0.1.0', 'depends': ['base'], \
    'external_dependencies': {'python': ['smoke_fake_dep']}, 'license': 'LGPL-3', 'installable': True}\n";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Odoo {
    StandIn,
    Real,
}

struct World {
    sb: Sandbox,
    cluster: Cluster,
    odoo_bin: PathBuf,
    addons: PathBuf,
    extra: PathBuf,
    shim: PathBuf,
    data_dir: PathBuf,
}

fn run_as_server_user(
    sb: &Sandbox,
    argv: &[String],
    env: &[(&str, String)],
) -> std::process::Output {
    let mut cmd = if sb.run_user().switched {
        let mut c = Command::new("runuser");
        c.args(["-u", &sb.run_user().name, "--", "env"]);
        for (k, v) in env {
            c.arg(format!("{k}={v}"));
        }
        c
    } else {
        let mut c = Command::new("env");
        for (k, v) in env {
            c.arg(format!("{k}={v}"));
        }
        c
    };
    cmd.args(argv).output().unwrap()
}

fn world(odoo: Odoo) -> World {
    let mut sb = Sandbox::new().unwrap();
    let cluster = sb.add_cluster("vps").unwrap();
    let data_dir = sb.dir("data_dir").unwrap();
    sb.run_user().chown(&data_dir).unwrap();
    let extra = sb.dir("extra").unwrap();
    let pydep = extra.join("smoke_pydep");
    std::fs::create_dir_all(&pydep).unwrap();
    std::fs::write(pydep.join("__manifest__.py"), PYDEP_MANIFEST).unwrap();
    std::fs::write(
        pydep.join("__init__.py"),
        "import smoke_fake_dep  # noqa: F401\n",
    )
    .unwrap();
    let shim = sb.dir("shim").unwrap();
    std::fs::write(shim.join("smoke_fake_dep.py"), "").unwrap();
    let (odoo_bin, addons) = match odoo {
        Odoo::StandIn => {
            cluster.create_odoo_db("clientes", "odoo").unwrap();
            cluster
                .add_attachments("clientes", &data_dir, 5, &SizeMix::fixed(300), 3)
                .unwrap();
            sb.run_user().chown(&data_dir.join("filestore")).unwrap();
            cluster
                .psql(
                    "clientes",
                    "INSERT INTO ir_module_module (name, state) VALUES ('smoke_pydep', 'installed')",
                )
                .unwrap();
            let src = sb.dir("src").unwrap();
            (
                sandbox::write_odoo_source(&src).unwrap(),
                src.join("addons"),
            )
        }
        Odoo::Real => {
            let tree = sandbox::real_odoo_source().unwrap();
            cluster
                .psql("postgres", "CREATE ROLE odoo LOGIN CREATEDB")
                .unwrap();
            (tree.join("odoo-bin"), tree.join("addons"))
        }
    };
    let w = World {
        sb,
        cluster,
        odoo_bin,
        addons,
        extra,
        shim,
        data_dir,
    };
    if odoo == Odoo::Real {
        // The database made by Odoo itself, the addon installed while its import works.
        let conf = w.conf(&w.cluster, &[]);
        let argv: Vec<String> = [
            "/usr/bin/python3".to_owned(),
            w.odoo_bin.display().to_string(),
            "-c".into(),
            conf.display().to_string(),
            "-d".into(),
            "clientes".into(),
            "-i".into(),
            "base,smoke_pydep".into(),
            "--stop-after-init".into(),
        ]
        .to_vec();
        let out = run_as_server_user(
            &w.sb,
            &argv,
            &[("PYTHONPATH", w.shim.display().to_string())],
        );
        assert!(
            out.status.success(),
            "odoo-bin -i base failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    w
}

impl World {
    /// An odoo.conf for `cluster`; `overrides` replace keys of the same name.
    fn conf(&self, cluster: &Cluster, overrides: &[(&str, &str)]) -> PathBuf {
        let mut opts = vec![
            (
                "addons_path",
                format!("{},{}", self.addons.display(), self.extra.display()),
            ),
            ("data_dir", self.data_dir.display().to_string()),
            ("db_host", cluster.socket_dir().display().to_string()),
            ("db_port", cluster.port().to_string()),
            ("db_user", "odoo".to_owned()),
            ("http_interface", "127.0.0.1".to_owned()),
            ("list_db", "False".to_owned()),
            ("without_demo", "all".to_owned()),
        ];
        for (k, v) in overrides {
            opts.retain(|(key, _)| key != k);
            opts.push((k, v.to_string()));
        }
        let body: String = opts.iter().map(|(k, v)| format!("{k} = {v}\n")).collect();
        let n = std::fs::read_dir(self.sb.root()).unwrap().count();
        let path = self.sb.root().join(format!("odoo-{n}.conf"));
        std::fs::write(&path, format!("[options]\n{body}")).unwrap();
        path
    }

    fn test(&self, cluster: &Cluster, overrides: &[(&str, &str)], with_shim: bool) -> SmokeTest {
        let conf = self.conf(cluster, overrides);
        let mut exec_start = Vec::new();
        if with_shim {
            exec_start.push("/usr/bin/env".to_owned());
            exec_start.push(format!("PYTHONPATH={}", self.shim.display()));
        }
        exec_start.extend([
            "/usr/bin/python3".to_owned(),
            self.odoo_bin.display().to_string(),
            "-c".into(),
            conf.display().to_string(),
        ]);
        SmokeTest {
            exec_start,
            database: "clientes".into(),
            os_user: self.sb.run_user().name.clone(),
            http: None,
            db_user: overrides
                .iter()
                .find(|(k, _)| *k == "db_user")
                .map(|(_, v)| v.to_string())
                .unwrap_or_else(|| "odoo".into()),
            vps_db_user: Some("odoo".into()),
            cluster_socket: cluster.socket_dir().display().to_string(),
            cluster_port: cluster.port(),
            requirements: self.sb.root().join("requirement.txt"),
        }
    }

    fn one_file(&self) -> PathBuf {
        let name = self
            .cluster
            .psql(
                "clientes",
                "SELECT store_fname FROM ir_attachment WHERE store_fname IS NOT NULL ORDER BY id LIMIT 1",
            )
            .unwrap();
        sandbox::filestore(&self.data_dir, "clientes").join(name)
    }
}

/// The class of each diagnosis (`role_missing`...), as `--json` names them.
fn classes(r: &smoke::SmokeReport) -> Vec<String> {
    r.diagnoses
        .iter()
        .map(|d| {
            serde_json::to_value(&d.failure).unwrap()["class"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

async fn run(t: &SmokeTest) -> (bool, Vec<String>, String) {
    let r = smoke::run(&LocalHost::new(), t).await.unwrap();
    (r.ok, classes(&r), r.log_tail.clone())
}

/// The cases: name, outcome (ok, classes). What real Odoo accepts, the smoke test accepts.
async fn case_table(odoo: Odoo) -> Vec<(&'static str, bool, Vec<String>)> {
    let mut w = world(odoo);
    let mut rows = Vec::new();
    let mut row = |name: &'static str, (ok, classes, tail): (bool, Vec<String>, String)| {
        eprintln!("{odoo:?} {name}: ok={ok} {classes:?}\n{tail}\n");
        rows.push((name, ok, classes));
    };
    let c = &w.cluster;

    row("healthy", run(&w.test(c, &[], true)).await);

    let file = w.one_file();
    let aside = file.with_extension("aside");
    std::fs::rename(&file, &aside).unwrap();
    row(
        "an attachment file missing",
        run(&w.test(c, &[], true)).await,
    );
    std::fs::rename(&aside, &file).unwrap();

    c.psql(
        "clientes",
        "CREATE TABLE admin_notes (id serial PRIMARY KEY, note text)",
    )
    .unwrap();
    row(
        "a table owned by postgres",
        run(&w.test(c, &[], true)).await,
    );

    let gone = format!(
        "{},{},/nonexistent/addons",
        w.addons.display(),
        w.extra.display()
    );
    row(
        "a config addons path that does not exist",
        run(&w.test(c, &[("addons_path", &gone)], true)).await,
    );

    let empty = w.sb.dir("empty_addons").unwrap();
    let only_empty = format!("{},{}", empty.display(), w.extra.display());
    row(
        "installed modules not on the addons path",
        run(&w.test(c, &[("addons_path", &only_empty)], true)).await,
    );

    row("a Python module missing", run(&w.test(c, &[], false)).await);

    row(
        "the role does not exist",
        run(&w.test(c, &[("db_user", "ghost")], true)).await,
    );
    row(
        "db_user is postgres",
        run(&w.test(c, &[("db_user", "postgres")], true)).await,
    );

    c.psql("postgres", "CREATE ROLE other_role LOGIN CREATEDB")
        .unwrap();
    row(
        "the database belongs to another role",
        run(&w.test(c, &[("db_user", "other_role")], true)).await,
    );

    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut t = w.test(c, &[], true);
    t.http = Some(("127.0.0.1".into(), taken.local_addr().unwrap().port()));
    row("the HTTP port is taken", run(&t).await);
    drop(taken);

    let standby = w.sb.add_standby("standby", &w.cluster).unwrap();
    row(
        "a read-only standby",
        run(&w.test(&standby, &[], true)).await,
    );
    rows
}

fn expected() -> Vec<(&'static str, bool, Vec<String>)> {
    let v = |s: &[&str]| s.iter().map(|c| (*c).to_owned()).collect::<Vec<_>>();
    vec![
        ("healthy", true, v(&[])),
        ("an attachment file missing", true, v(&[])),
        ("a table owned by postgres", true, v(&[])),
        ("a config addons path that does not exist", true, v(&[])),
        (
            "installed modules not on the addons path",
            false,
            v(&["module_not_found"]),
        ),
        (
            "a Python module missing",
            false,
            v(&["missing_python_module"]),
        ),
        ("the role does not exist", false, v(&["role_missing"])),
        ("db_user is postgres", false, v(&["db_user_postgres"])),
        (
            "the database belongs to another role",
            false,
            v(&["wrong_owner"]),
        ),
        ("the HTTP port is taken", false, v(&["port_in_use"])),
        ("a read-only standby", false, v(&["read_only"])),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stand_in_and_real_odoo_end_every_case_the_same_way() {
    let stand_in = case_table(Odoo::StandIn).await;
    let real = case_table(Odoo::Real).await;
    assert_eq!(real, expected(), "real Odoo");
    assert_eq!(stand_in, real, "the stand-in differs from real Odoo");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_missing_then_fixed_as_the_runbook_does() {
    let w = world(Odoo::StandIn);
    let host = LocalHost::new();
    let t = w.test(&w.cluster, &[("db_user", "odoouser")], true);
    let r = smoke::run(&host, &t).await.unwrap();
    assert_eq!(
        r.diagnoses
            .iter()
            .map(|d| d.failure.clone())
            .collect::<Vec<_>>(),
        vec![Failure::RoleMissing {
            role: "odoouser".into()
        }],
        "{r:?}"
    );
    // The proposed fix (createuser -s), then the smoke test passes: a superuser sees
    // Odoo's own objects whoever owns them.
    host.run(r.diagnoses[0].fix.command.as_ref().unwrap())
        .await
        .unwrap();
    let r = smoke::run(&host, &t).await.unwrap();
    assert!(r.ok, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_of_another_role_are_given_to_odoos_role_as_the_runbook_does() {
    let w = world(Odoo::StandIn);
    let host = LocalHost::new();
    w.cluster
        .psql("postgres", "CREATE ROLE odoouser LOGIN CREATEDB")
        .unwrap();
    let t = w.test(&w.cluster, &[("db_user", "odoouser")], true);
    let r = smoke::run(&host, &t).await.unwrap();
    assert!(
        matches!(&r.diagnoses[..], [d] if matches!(&d.failure, Failure::WrongOwner { .. })),
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
async fn a_missing_python_module_names_the_requirements_to_install() {
    let w = world(Odoo::StandIn);
    let r = smoke::run(&LocalHost::new(), &w.test(&w.cluster, &[], false))
        .await
        .unwrap();
    assert_eq!(
        r.diagnoses
            .iter()
            .map(|d| d.failure.clone())
            .collect::<Vec<_>>(),
        vec![Failure::MissingPythonModule {
            module: "smoke_fake_dep".into()
        }]
    );
    let fix = r.diagnoses[0].fix.shown.clone().unwrap();
    assert!(
        fix.contains("-m pip install -r") && fix.contains("requirement.txt"),
        "{fix}"
    );
}
