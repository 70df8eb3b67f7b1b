//! The Odoo-shaped database, its filestore, and the stand-in odoo-bin.

use std::path::Path;
use std::process::Command;

use sandbox::{Cluster, Sandbox, SizeMix};
use sha1::Digest;

fn sha1_hex(bytes: &[u8]) -> String {
    hex::encode(sha1::Sha1::digest(bytes))
}

#[test]
fn attachments_are_rows_and_files_laid_out_as_odoo_does() {
    let mut sb = Sandbox::new().unwrap();
    let c = sb.add_cluster("vps").unwrap();
    c.create_odoo_db("clientes", "odoo").unwrap();
    let data_dir = sb.dir("data_dir").unwrap();
    let att = c
        .add_attachments("clientes", &data_dir, 300, &SizeMix::odoo(), 42)
        .unwrap();
    assert_eq!(att.len(), 300);
    let store = sandbox::filestore(&data_dir, "clientes");
    for a in &att {
        let (prefix, name) = a.store_fname.split_once('/').unwrap();
        assert_eq!(prefix, &a.checksum[..2]);
        assert_eq!(name, a.checksum);
        let bytes = std::fs::read(store.join(&a.store_fname)).unwrap();
        assert_eq!(bytes.len() as u64, a.file_size);
        assert_eq!(sha1_hex(&bytes), a.checksum);
    }
    // Some rows share a file (identical content), as in Odoo.
    let distinct: std::collections::HashSet<_> = att.iter().map(|a| &a.store_fname).collect();
    assert!(distinct.len() < att.len());
    // The tables belong to the Odoo role; rows without files exist too.
    assert_eq!(
        c.psql(
            "clientes",
            "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'"
        )
        .unwrap(),
        "odoo"
    );
    assert_eq!(
        c.psql(
            "clientes",
            "SELECT count(*) FROM ir_attachment WHERE store_fname IS NULL"
        )
        .unwrap(),
        "2"
    );
    // Same seed, same files: a second database gets identical content.
    c.create_odoo_db("other", "odoo").unwrap();
    let again = c
        .add_attachments("other", &data_dir, 300, &SizeMix::odoo(), 42)
        .unwrap();
    let names =
        |v: &[sandbox::Attachment]| v.iter().map(|a| a.store_fname.clone()).collect::<Vec<_>>();
    assert_eq!(names(&att), names(&again));
}

struct OdooSetup {
    sb: Sandbox,
    primary: Cluster,
    odoo_bin: std::path::PathBuf,
    src: std::path::PathBuf,
    data_dir: std::path::PathBuf,
}

fn setup() -> OdooSetup {
    let mut sb = Sandbox::new().unwrap();
    let primary = sb.add_cluster("vps").unwrap();
    primary.create_odoo_db("clientes", "odoo").unwrap();
    let data_dir = sb.dir("data_dir").unwrap();
    primary
        .add_attachments("clientes", &data_dir, 20, &SizeMix::fixed(1000), 1)
        .unwrap();
    let src = sb.dir("src").unwrap();
    let odoo_bin = sandbox::write_odoo_source(&src).unwrap();
    OdooSetup {
        sb,
        primary,
        odoo_bin,
        src,
        data_dir,
    }
}

/// Writes an odoo.conf for `cluster` (`overrides` replace keys of the same name) and runs
/// the smoke command as the server user.
fn smoke(s: &OdooSetup, cluster: &Cluster, overrides: &[(&str, &str)]) -> (i32, String) {
    let mut opts = vec![
        ("addons_path", s.src.join("addons").display().to_string()),
        ("data_dir", s.data_dir.display().to_string()),
        ("db_host", cluster.socket_dir().display().to_string()),
        ("db_port", cluster.port().to_string()),
        ("db_user", "odoo".to_owned()),
    ];
    for (k, v) in overrides {
        opts.retain(|(key, _)| key != k);
        opts.push((k, v.to_string()));
    }
    let body: String = opts.iter().map(|(k, v)| format!("{k} = {v}\n")).collect();
    let conf = s.sb.root().join("odoo.conf");
    std::fs::write(&conf, format!("[options]\n{body}")).unwrap();
    run_bin(s, &conf)
}

fn run_bin(s: &OdooSetup, conf: &Path) -> (i32, String) {
    let user = &s.sb.run_user().name;
    let mut cmd = if s.sb.run_user().switched {
        let mut c = Command::new("runuser");
        c.args(["-u", user, "--"]).arg(&s.odoo_bin);
        c
    } else {
        Command::new(&s.odoo_bin)
    };
    let out = cmd
        .arg("-c")
        .arg(conf)
        .args(["-d", "clientes", "--stop-after-init", "--logfile="])
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn stand_in_odoo_bin_exits_as_real_odoo_does() {
    let s = setup();
    let (code, log) = smoke(&s, &s.primary, &[]);
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("Modules loaded."), "{log}");

    // A config-file addons path that does not exist is kept silently (Odoo 17, case c1).
    let gone = format!("{},/nonexistent/addons", s.src.join("addons").display());
    let (code, log) = smoke(&s, &s.primary, &[("addons_path", &gone)]);
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("/nonexistent/addons"), "{log}");

    // A role that does not exist: rc 1 and psycopg2's words.
    let (code, log) = smoke(&s, &s.primary, &[("db_user", "odoouser")]);
    assert_eq!(code, 1, "{log}");
    assert!(
        log.contains("OperationalError") && log.contains("role \"odoouser\" does not exist"),
        "{log}"
    );

    // db_user = postgres: refused before anything is logged.
    let (code, log) = smoke(&s, &s.primary, &[("db_user", "postgres")]);
    assert_eq!(code, 1, "{log}");
    assert_eq!(
        log,
        "Using the database user 'postgres' is a security risk, aborting."
    );

    // An installed module not on the addons path: logged, and still rc 0.
    s.primary
        .psql(
            "clientes",
            "INSERT INTO ir_module_module (name, state) VALUES ('account', 'installed')",
        )
        .unwrap();
    let (code, log) = smoke(&s, &s.primary, &[]);
    assert_eq!(code, 0, "{log}");
    assert!(
        log.contains("Some modules are not loaded") && log.contains("'account'"),
        "{log}"
    );

    // Its Python import failing: rc 255, as `server.start` returns -1.
    sandbox::write_addon(
        &s.src.join("addons"),
        "account",
        &["surely_not_installed_xyz"],
    )
    .unwrap();
    let (code, log) = smoke(&s, &s.primary, &[]);
    assert_eq!(code, 255, "{log}");
    assert!(
        log.contains("ModuleNotFoundError: No module named 'surely_not_installed_xyz'"),
        "{log}"
    );
    assert!(
        log.contains("Failed to initialize database `clientes`"),
        "{log}"
    );
    sandbox::write_addon(&s.src.join("addons"), "account", &[]).unwrap();

    // Tables owned by another role, a missing attachment file: nothing, rc 0.
    s.primary
        .psql("clientes", "ALTER TABLE res_partner OWNER TO postgres")
        .unwrap();
    let victim = s
        .primary
        .psql(
            "clientes",
            "SELECT store_fname FROM ir_attachment WHERE store_fname IS NOT NULL LIMIT 1",
        )
        .unwrap();
    let path = sandbox::filestore(&s.data_dir, "clientes").join(&victim);
    std::fs::rename(&path, path.with_extension("aside")).unwrap();
    let (code, log) = smoke(&s, &s.primary, &[]);
    assert_eq!(code, 0, "{log}");
    std::fs::rename(path.with_extension("aside"), &path).unwrap();

    // Odoo's own objects owned by another role: rc 255 with DuplicateTable.
    s.primary
        .psql("postgres", "CREATE ROLE other_role LOGIN")
        .unwrap();
    let (code, log) = smoke(&s, &s.primary, &[("db_user", "other_role")]);
    assert_eq!(code, 255, "{log}");
    assert!(
        log.contains("relation \"base_registry_signaling\" already exists"),
        "{log}"
    );
}

#[test]
fn stand_in_odoo_bin_on_a_standby_and_with_its_port_taken_behaves_as_real_odoo() {
    let mut s = setup();
    let standby = s.sb.add_standby("backup", &s.primary).unwrap();
    // --stop-after-init on a hot standby: rc 0, nothing said.
    let (code, log) = smoke(&s, &standby, &[]);
    assert_eq!(code, 0, "{log}");
    // Serving there: /web/health says "pass".
    let port = sandbox::free_port().unwrap();
    let mut child = serve(&s, &standby, port);
    let body = wait_get(port, "/web/health");
    assert!(body.contains("\"status\": \"pass\""), "{body}");
    stop(&mut child, 0);
    // The port taken: the process stays alive without HTTP; SIGTERM, rc 0.
    let taken = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let mut child = serve(&s, &s.primary, port);
    std::thread::sleep(std::time::Duration::from_secs(1));
    assert!(child.try_wait().unwrap().is_none(), "it must stay alive");
    drop(taken);
    stop(&mut child, 0);
    // A config file that does not parse.
    let conf = s.sb.root().join("broken.conf");
    std::fs::write(&conf, "[options]\naddons_path\n  = x\n[unclosed\n").unwrap();
    let (code, log) = run_bin(&s, &conf);
    assert_ne!(code, 0, "{log}");
    assert!(log.contains("Error"), "{log}");
    // The command line's --addons-path is validated (optparse): rc 2.
    let out = Command::new(&s.odoo_bin)
        .args(["--addons-path=/nonexistent/addons", "--stop-after-init"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no such directory: '/nonexistent/addons'")
    );
    let out = Command::new(&s.odoo_bin).arg("--version").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "Odoo Server 17.0"
    );
}

/// Starts the stand-in serving `cluster`'s database on `port`, as the server user.
fn serve(s: &OdooSetup, cluster: &Cluster, port: u16) -> std::process::Child {
    let conf =
        s.sb.root()
            .join(format!("serve-{port}-{}.conf", cluster.port()));
    std::fs::write(
        &conf,
        format!(
            "[options]\naddons_path = {}\ndata_dir = {}\ndb_host = {}\ndb_port = {}\ndb_user = odoo\nhttp_port = {port}\n",
            s.src.join("addons").display(),
            s.data_dir.display(),
            cluster.socket_dir().display(),
            cluster.port()
        ),
    )
    .unwrap();
    // setpriv execs (runuser would stand between us and Odoo's pid).
    let mut cmd = if s.sb.run_user().switched {
        let u = &s.sb.run_user().name;
        let mut c = Command::new("setpriv");
        c.args(["--reuid", u, "--regid", u, "--clear-groups", "--"])
            .arg(&s.odoo_bin);
        c
    } else {
        Command::new(&s.odoo_bin)
    };
    cmd.arg("-c").arg(&conf).args(["-d", "clientes"]);
    cmd.stderr(std::process::Stdio::null()).spawn().unwrap()
}

fn wait_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    for _ in 0..100 {
        if let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = write!(c, "GET {path} HTTP/1.0\r\n\r\n");
            let mut s = String::new();
            let _ = c.read_to_string(&mut s);
            if !s.is_empty() {
                return s;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("nothing answered on port {port}");
}

/// SIGTERM and the exit code.
fn stop(child: &mut std::process::Child, want: i32) {
    // SAFETY: kill(2) on our own child.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let st = child.wait().unwrap();
    assert_eq!(st.code(), Some(want), "{st:?}");
}
