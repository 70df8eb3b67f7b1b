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
fn stand_in_odoo_bin_passes_on_a_healthy_instance_and_fails_like_odoo() {
    let s = setup();
    let (code, log) = smoke(&s, &s.primary, &[]);
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("Modules loaded."), "{log}");

    // A missing addons path: optparse-style error, exit 2.
    let (code, log) = smoke(&s, &s.primary, &[("addons_path", "/nonexistent/addons")]);
    assert_eq!(code, 2, "{log}");
    assert!(log.contains("is not a valid addons directory"), "{log}");

    // A role that does not exist.
    let (code, log) = smoke(&s, &s.primary, &[("db_user", "odoouser")]);
    assert_eq!(code, 1, "{log}");
    assert!(
        log.contains("OperationalError") && log.contains("odoouser"),
        "{log}"
    );

    // An installed module that is not in the addons path is logged, as Odoo does.
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

    // A Python dependency that is not installed.
    sandbox::write_addon(
        &s.src.join("addons"),
        "account",
        &["surely_not_installed_xyz"],
    )
    .unwrap();
    let (code, log) = smoke(&s, &s.primary, &[]);
    assert_eq!(code, 1, "{log}");
    assert!(
        log.contains("ModuleNotFoundError: No module named 'surely_not_installed_xyz'"),
        "{log}"
    );
    sandbox::write_addon(&s.src.join("addons"), "account", &[]).unwrap();

    // Tables owned by another role.
    s.primary
        .psql("clientes", "ALTER TABLE res_partner OWNER TO postgres")
        .unwrap();
    let (code, log) = smoke(&s, &s.primary, &[]);
    assert_eq!(code, 1, "{log}");
    assert!(log.contains("must be owner of table res_partner"), "{log}");
    s.primary
        .psql("clientes", "ALTER TABLE res_partner OWNER TO odoo")
        .unwrap();

    // A missing attachment file.
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
    assert_eq!(code, 1, "{log}");
    assert!(
        log.contains(&format!("_read_file reading {}", path.display())),
        "{log}"
    );
    std::fs::rename(path.with_extension("aside"), &path).unwrap();
}

#[test]
fn stand_in_odoo_bin_refuses_a_read_only_standby() {
    let mut s = setup();
    let standby = s.sb.add_standby("backup", &s.primary).unwrap();
    let (code, log) = smoke(&s, &standby, &[]);
    assert_eq!(code, 1, "{log}");
    assert!(log.contains("ReadOnlySqlTransaction"), "{log}");
    // A config file that does not parse.
    let conf = s.sb.root().join("broken.conf");
    std::fs::write(&conf, "[options]\naddons_path\n  = x\n[unclosed\n").unwrap();
    let (code, log) = run_bin(&s, &conf);
    assert_ne!(code, 0, "{log}");
    assert!(log.contains("Error"), "{log}");
}
