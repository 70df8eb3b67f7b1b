//! The configuration's validation: every mistake named by file, line and key.
use super::*;

#[test]
fn the_example_is_valid() {
    let c = Config::parse(EXAMPLE, "example").unwrap();
    assert_eq!(c.backup.pg_version, 15);
    assert_eq!(c.instances[0].standby_port, 5435);
    assert!(c.instance("vps_clientes_1").is_ok());
    assert!(c.instance("nope").unwrap_err().contains("vps_clientes_1"));
}

/// Each mistake is reported at its line, for its key, with what to write instead.
#[test]
fn errors_name_file_line_key_and_fix() {
    let cases: [(&str, &str, usize, &str, &str); 13] = [
        (
            "name = \"vps_clientes_1\"",
            "name = \"vps-clientes-1\"",
            0,
            "instance[0].name",
            "lower-case letters",
        ),
        (
            "standby_port = 5435",
            "standby_port = 80",
            0,
            "instance[0].standby_port",
            "1024 to 65535",
        ),
        (
            "pg = \"host=200.58.98.56 port=5432\"",
            "pg = \"host=200.58.98.56 password=x\"",
            0,
            "instance[0].pg",
            "no password=",
        ),
        (
            "ssh = \"odoo@200.58.98.56:5253\"",
            "ssh = \"odoo@200.58.98.56:x\"",
            0,
            "instance[0].ssh",
            "user@host[:port]",
        ),
        (
            "address = \"198.51.100.7\"",
            "address = \"backup.example.com\"",
            0,
            "backup.address",
            "not an IP address",
        ),
        (
            "data_dir = \"/var/opt/odoo/data_dir\"",
            "data_dir = \"var/opt/odoo\"",
            0,
            "instance[0].data_dir",
            "absolute path",
        ),
        (
            "pg_version = 15",
            "pg_version = 150",
            0,
            "backup.pg_version",
            "major version",
        ),
        (
            "os_user = \"odoouser\"",
            "os_user = \"Odoo User\"",
            0,
            "backup.os_user",
            "not a user name",
        ),
        (
            "standby_port = 5435",
            "standby_port = 5432",
            0,
            "instance[0].standby_port",
            "Debian's default cluster",
        ),
        (
            "# vps_cluster = \"15/main\"",
            "vps_cluster = \"16/main\"",
            0,
            "instance[0].vps_cluster",
            "is PostgreSQL 16, backup.pg_version is 15: physical replication needs the same major version",
        ),
        (
            "# clone_mb_per_s = 0 ",
            "clone_mb_per_s = 2000 ",
            0,
            "backup.clone_mb_per_s",
            "1 to 1024 (pg_basebackup's --max-rate), 0 for no limit",
        ),
        (
            "# clone_mb_per_s = 20 ",
            "clone_mb_per_s = -5 ",
            0,
            "instance[0].clone_mb_per_s",
            "-5 is out of range",
        ),
        (
            "sources = \"/opt/odoo/sources\"",
            "sources = \"/opt/odoo/sources\"\nsourcse = \"/x\"",
            1,
            "instance[0].sourcse",
            "unknown field `sourcse`",
        ),
    ];
    // The third field: lines below `from`'s own line (where the example has it).
    for (from, to, below, key, says) in cases {
        assert!(EXAMPLE.contains(from), "{from}");
        let line = EXAMPLE[..EXAMPLE.find(from).unwrap_or(0)]
            .matches('\n')
            .count()
            + 1
            + below;
        let text = EXAMPLE.replace(from, to);
        let e = Config::parse(&text, "/etc/odoo-standby/config.toml").unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (line, key), "{e}");
        let shown = e.to_string();
        assert!(
            shown.starts_with(&format!("/etc/odoo-standby/config.toml:{line}: {key}: ")),
            "{shown}"
        );
        assert!(shown.contains(says), "{shown}");
    }
}

/// A base backup's rate: none by default, the backup's default for every instance, an
/// instance's own above it.
#[test]
fn clone_rate_defaults_and_overrides() {
    let c = Config::parse(EXAMPLE, "c").unwrap();
    assert_eq!(
        (c.backup.clone_mb_per_s, c.instances[0].clone_mb_per_s),
        (0, 0)
    );
    let all = EXAMPLE.replace("# clone_mb_per_s = 0 ", "clone_mb_per_s = 30 ");
    let c = Config::parse(&all, "c").unwrap();
    assert_eq!(c.instances[0].clone_mb_per_s, 30);
    let own = all.replace("# clone_mb_per_s = 20 ", "clone_mb_per_s = 20 ");
    let c = Config::parse(&own, "c").unwrap();
    assert_eq!(
        (c.backup.clone_mb_per_s, c.instances[0].clone_mb_per_s),
        (30, 20)
    );
}

#[test]
fn duplicates_and_missing_pieces_are_refused() {
    let second = EXAMPLE.rsplit("[[instance]]").next().unwrap();
    let twice = format!("{EXAMPLE}\n[[instance]]{second}");
    let e = Config::parse(&twice, "c").unwrap_err();
    assert!(e.to_string().contains("used by another instance"), "{e}");
    assert_eq!(e.key, "instance[1].name");
    let other_name = twice.replacen("name = \"vps_clientes_1\"", "name = \"vps_2\"", 1);
    let e = Config::parse(&other_name, "c").unwrap_err();
    assert!(
        e.to_string()
            .contains("port 5435 is used by another instance"),
        "{e}"
    );
    let none = &EXAMPLE[..EXAMPLE.rfind("[[instance]]").unwrap()];
    assert!(Config::parse(none, "c")
        .unwrap_err()
        .to_string()
        .contains("no [[instance]]"));
    let missing = EXAMPLE.replace("standby_port = 5435\n", "");
    let e = Config::parse(&missing, "c").unwrap_err().to_string();
    assert!(
        e.contains("missing field `standby_port`") && e.contains("odoo-standby init"),
        "{e}"
    );
}

#[test]
fn every_problem_is_reported_at_once_with_types_and_syntax_explained() {
    let text = EXAMPLE
        .replace("pg_version = 15", "pg_version = \"15\"")
        .replace("standby_port = 5435", "standby_port = 99999")
        .replace("address = \"198.51.100.7\"", "address = \"nowhere\"")
        .replace(
            "sources = \"/opt/odoo/sources\"",
            "sources = \"/opt/odoo/sources\"\nsourcse = \"/x\"",
        );
    let e = Config::parse(&text, "c.toml").unwrap_err();
    let shown = e.to_string();
    let keys: Vec<&str> = std::iter::once(e.key.as_str())
        .chain(e.also.iter().map(|a| a.key.as_str()))
        .collect();
    assert_eq!(
        keys,
        [
            "backup.address",
            "backup.pg_version",
            "instance[0].standby_port",
            "instance[0].sourcse"
        ],
        "{shown}"
    );
    assert!(
        shown.contains("a number is written without quotes, e.g. pg_version = 15"),
        "{shown}"
    );
    assert_eq!(shown.lines().count(), 4, "{shown}");
    // A syntax error names its key and says how TOML is written; nothing after it is guessed.
    let e = Config::parse("[backup]\nroot = /x\n", "c.toml").unwrap_err();
    assert_eq!((e.line, e.key.as_str()), (2, "backup.root"), "{e}");
    assert!(e.to_string().contains("text in double quotes"), "{e}");
    assert!(e.also.is_empty());
}
