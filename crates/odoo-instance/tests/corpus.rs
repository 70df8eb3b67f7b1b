//! Every corpus file, rewritten for the backup, reads back in Python's RawConfigParser with
//! the expected values, and a second rewrite changes no byte.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use odoo_instance::{relocate, BackupTarget, OdooConf};

const DUMP: &str = r#"
import configparser, json, sys
out = {}
for p in sys.argv[1:]:
    c = configparser.RawConfigParser()
    c.read(p)
    out[p] = dict(c.items('options')) if c.has_section('options') else {}
print(json.dumps(out))
"#;

fn python_read(files: &[PathBuf]) -> BTreeMap<String, BTreeMap<String, String>> {
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(DUMP)
        .args(files)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Every key `relocate` may set (with the target below).
const RELOCATED: [&str; 10] = [
    "addons_path",
    "data_dir",
    "db_host",
    "db_port",
    "db_user",
    "pidfile",
    "http_port",
    "gevent_port",
    "xmlrpc_port",
    "longpolling_port",
];

fn target() -> BackupTarget {
    BackupTarget {
        path_map: vec![
            (
                "/opt/odoo/sources".into(),
                "/srv/respaldo/vps1/sources".into(),
            ),
            ("/opt/odoo/odoo".into(), "/srv/respaldo/vps1/odoo".into()),
        ],
        data_dir: "/srv/respaldo/vps1/data_dir".into(),
        db_host: None,
        db_port: 5435,
        db_user: Some("odoouser".into()),
        logfile: None,
        pidfile: Some("/run/odoo/vps1.pid".into()),
        http_port: Some(8169),
        gevent_port: Some(8172),
        odoo_major: None,
    }
}

/// The addons_path each corpus file must end with.
fn expected_addons(name: &str) -> &'static str {
    match name {
        "01_basic.conf" => "/srv/respaldo/vps1/odoo/addons,/srv/respaldo/vps1/sources/custom",
        "02_crlf.conf" => "/srv/respaldo/vps1/odoo/addons,/srv/respaldo/vps1/sources/oca/web",
        "03_comments.conf" => "/srv/respaldo/vps1/sources/l10n_ar,/srv/respaldo/vps1/odoo/addons",
        "04_empty_values.conf" | "09_no_final_newline_uppercase.conf" => "/srv/respaldo/vps1/sources/custom",
        "05_many_addons.conf" => "/srv/respaldo/vps1/odoo/addons,/srv/respaldo/vps1/sources/oca/account-financial-tools,/srv/respaldo/vps1/sources/oca/web,/usr/lib/python3/dist-packages/odoo/addons,/srv/respaldo/vps1/sources/private",
        "06_legacy_xmlrpc.conf" => "/srv/respaldo/vps1/odoo/addons,/srv/respaldo/vps1/sources/extra",
        "07_other_sections.conf" => "/srv/respaldo/vps1/sources/queue",
        "08_continuation.conf" => "/srv/respaldo/vps1/odoo/addons,/srv/respaldo/vps1/sources/a,/srv/respaldo/vps1/sources/b",
        "10_no_data_dir.conf" => "/srv/respaldo/vps1/odoo/addons",
        other => panic!("no expectation for {other}"),
    }
}

#[test]
fn corpus_rewrites_read_back_in_python_and_are_idempotent() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut originals: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    originals.sort();
    assert!(originals.len() >= 8);
    let out_dir = tempfile_dir();
    let before = python_read(&originals);
    let mut rewritten = Vec::new();
    for path in &originals {
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        let text = std::fs::read_to_string(path).unwrap();
        let mut conf = OdooConf::parse(&text, &name).unwrap();
        assert_eq!(
            conf.render(),
            text,
            "{name}: an untouched parse must render byte-identical"
        );
        let report = relocate(&mut conf, &target());
        if name == "05_many_addons.conf" {
            assert_eq!(
                report.unmapped,
                vec!["/usr/lib/python3/dist-packages/odoo/addons".to_owned()]
            );
        } else {
            assert!(report.unmapped.is_empty(), "{name}: {:?}", report.unmapped);
        }
        let once = conf.render();
        // A second rewrite, from the written text, changes no byte.
        let mut again = OdooConf::parse(&once, &name).unwrap();
        let second = relocate(&mut again, &target());
        assert!(second.changes.is_empty(), "{name}: {:?}", second.changes);
        assert_eq!(again.render(), once, "{name}");
        // Lines we did not touch are byte-identical: every original line that held no
        // relocated key is still in the output.
        for line in text.split_inclusive('\n') {
            let key = line
                .split(['=', ':'])
                .next()
                .unwrap_or("")
                .trim()
                .to_lowercase();
            if !RELOCATED.contains(&key.as_str())
                && !line.starts_with("    /opt")
                && line.ends_with('\n')
            {
                assert!(once.contains(line), "{name}: lost line {line:?}");
            }
        }
        if text.contains("\r\n") {
            assert!(
                !once.replace("\r\n", "").contains('\n'),
                "{name}: mixed line endings"
            );
        }
        let out = out_dir.join(&name);
        std::fs::write(&out, &once).unwrap();
        rewritten.push(out);
    }
    let after = python_read(&rewritten);
    for (orig, new) in originals.iter().zip(&rewritten) {
        let name = orig.file_name().unwrap().to_str().unwrap();
        let was = &before[&orig.display().to_string()];
        let now = &after[&new.display().to_string()];
        let want = |k: &str| now.get(k).map(String::as_str);
        assert_eq!(want("addons_path"), Some(expected_addons(name)), "{name}");
        assert_eq!(
            want("data_dir"),
            Some("/srv/respaldo/vps1/data_dir"),
            "{name}"
        );
        assert_eq!(want("db_host"), Some("False"), "{name}");
        assert_eq!(want("db_port"), Some("5435"), "{name}");
        assert_eq!(want("db_user"), Some("odoouser"), "{name}");
        assert_eq!(want("pidfile"), Some("/run/odoo/vps1.pid"), "{name}");
        if was.contains_key("xmlrpc_port") {
            assert_eq!(want("xmlrpc_port"), Some("8169"), "{name}");
            assert_eq!(
                want("http_port"),
                None,
                "{name}: the legacy key is kept, not doubled"
            );
            assert_eq!(want("longpolling_port"), Some("8172"), "{name}");
        } else {
            assert_eq!(want("http_port"), Some("8169"), "{name}");
            assert_eq!(want("gevent_port"), Some("8172"), "{name}");
        }
        // Every other key survives with its value, as Python reads it.
        for (k, v) in was {
            if !RELOCATED.contains(&k.as_str()) {
                assert_eq!(now.get(k), Some(v), "{name}: {k} changed");
            }
        }
        // And our reader agrees with Python's on every key.
        let ours = OdooConf::parse(&std::fs::read_to_string(new).unwrap(), name).unwrap();
        for (k, v) in now {
            assert_eq!(ours.get(k), Some(v.as_str()), "{name}: {k}");
        }
    }
    std::fs::remove_dir_all(out_dir).unwrap();
}

fn tempfile_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("odoo-instance-corpus-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}
