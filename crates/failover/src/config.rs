//! The configuration file (`/etc/odoo-standby/config.toml` by default): one `[backup]` table
//! for the backup server, one `[[instance]]` per protected VPS. No secrets in it: passwords
//! live in `.pgpass` files.

use std::collections::HashSet;
use std::net::IpAddr;
use std::ops::Range;
use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

/// A commented example, printed by `odoo-standby init`. It parses and validates.
pub const EXAMPLE: &str = r#"# odoo-standby configuration: one [backup] table, one [[instance]] per protected VPS.
# No secrets here: replication passwords live in .pgpass files (0600), written by `protect`.

[backup]
# One folder per instance: <root>/<name>/{data_dir, sources, odoo, odoo.conf, ...}
root = "/opt/odoouser/respaldo_filestore"
# The Odoo source tree a promoted instance runs (linked as <root>/<name>/odoo).
odoo_source = "/opt/odoouser/odoo"
# The OS user that owns the replicated files and runs a promoted Odoo.
os_user = "odoouser"
# How the VPSs reach this server (goes into their pg_hba.conf).
address = "198.51.100.7"
# PostgreSQL major version of the standby clusters (postgresql-common).
pg_version = 15
# Optional, with their defaults:
# state_dir = "/var/lib/odoo-standby"        # journals, locks, sync state
# services = "systemd"                        # or "supervised" (plain processes; the sandbox)
# clusters_dir = "/srv/clusters"              # unset: postgresql-common clusters <pg_version>/<name>
# pg_bindir = "/usr/lib/postgresql/15/bin"
# pg_os_user = "postgres"
# pgpass = "/var/lib/postgresql/.pgpass"      # replication passwords, written by protect (0600)
# ssh_key = "$HOME/.ssh/id_ed25519"
# known_hosts = "$HOME/.ssh/known_hosts"
# python = "/usr/bin/python3"                 # the Python that runs Odoo (a virtualenv's?)

[[instance]]
# Lower-case letters, digits and '_': names the cluster, folder, slot, unit and log tag.
name = "vps_clientes_1"
# user@host[:port] of the VPS's Odoo user, or a Host alias from ~/.ssh/config.
ssh = "odoo@200.58.98.56:5253"
# How this server reaches the VPS's PostgreSQL (libpq keywords; no password=).
pg = "host=200.58.98.56 port=5432"
# Port of this instance's standby cluster here (one per instance).
standby_port = 5435
# On the VPS: Odoo's data_dir, addon sources and config file.
data_dir = "/var/opt/odoo/data_dir"
sources = "/opt/odoo/sources"
odoo_conf = "/etc/odoo.conf"
# Optional, with their defaults:
# vps_cluster = "15/main"                     # or the data directory of a pg_ctl cluster
# vps_pgpass = "/var/lib/postgresql/.pgpass"  # on the VPS, written by failback
# vps_odoo_unit = "odoo"                      # stopped during failback, started after
# databases = []                              # empty: every database with ir_attachment
"#;

/// A configuration problem: where, which key, what is wrong, what to write instead.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {key}: {problem}")]
pub struct ConfigError {
    /// The file.
    pub file: String,
    /// 1-based line (0 when the file could not be read).
    pub line: usize,
    /// `backup.root`, `instance[2].standby_port`...
    pub key: String,
    /// What is wrong, and what to write instead.
    pub problem: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    backup: Spanned<RawBackup>,
    #[serde(default)]
    instance: Vec<Spanned<RawInstance>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackup {
    root: Spanned<String>,
    odoo_source: Spanned<String>,
    os_user: Spanned<String>,
    address: Spanned<String>,
    pg_version: Spanned<u32>,
    #[serde(default)]
    state_dir: Option<Spanned<String>>,
    #[serde(default)]
    services: Option<Spanned<String>>,
    #[serde(default)]
    clusters_dir: Option<Spanned<String>>,
    #[serde(default)]
    pg_bindir: Option<Spanned<String>>,
    #[serde(default)]
    pg_os_user: Option<Spanned<String>>,
    #[serde(default)]
    pgpass: Option<Spanned<String>>,
    #[serde(default)]
    ssh_key: Option<Spanned<String>>,
    #[serde(default)]
    known_hosts: Option<Spanned<String>>,
    #[serde(default)]
    python: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInstance {
    name: Spanned<String>,
    ssh: Spanned<String>,
    pg: Spanned<String>,
    standby_port: Spanned<i64>,
    data_dir: Spanned<String>,
    sources: Spanned<String>,
    odoo_conf: Spanned<String>,
    #[serde(default)]
    vps_cluster: Option<Spanned<String>>,
    #[serde(default)]
    vps_pgpass: Option<Spanned<String>>,
    #[serde(default)]
    vps_odoo_unit: Option<Spanned<String>>,
    #[serde(default)]
    vps_odoo_bin: Option<Spanned<String>>,
    #[serde(default)]
    databases: Option<Vec<String>>,
}

/// The backup server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backup {
    /// One folder per instance.
    pub root: PathBuf,
    /// The Odoo source tree.
    pub odoo_source: PathBuf,
    /// The OS user of the replicated files and of a promoted Odoo.
    pub os_user: String,
    /// How the VPSs reach this server.
    pub address: IpAddr,
    /// PostgreSQL major version of the standby clusters.
    pub pg_version: u32,
    /// Where journals, locks and pid files go (`/var/lib/odoo-standby`).
    pub state_dir: PathBuf,
    /// How services are started and stopped.
    pub services: ServiceKind,
    /// `None`: standby clusters are postgresql-common clusters `<pg_version>/<name>`.
    /// `Some(dir)`: plain `pg_ctl` data directories `<dir>/<name>` (the sandbox).
    pub clusters_dir: Option<PathBuf>,
    /// PostgreSQL's programs (`/usr/lib/postgresql/<pg_version>/bin`).
    pub pg_bindir: PathBuf,
    /// The OS user that runs PostgreSQL (`postgres`), on both sides.
    pub pg_os_user: String,
    /// The `.pgpass` of `pg_os_user` here (`/var/lib/postgresql/.pgpass`): the replication
    /// passwords, written by `protect`.
    pub pgpass: PathBuf,
    /// The SSH key that logs in to the VPSs (`$HOME/.ssh/id_ed25519` when unset).
    pub ssh_key: Option<PathBuf>,
    /// known_hosts holding the VPSs' host keys (`$HOME/.ssh/known_hosts` when unset).
    pub known_hosts: Option<PathBuf>,
    /// The Python that runs Odoo (`/usr/bin/python3`; a virtualenv's python if you use one).
    pub python: PathBuf,
}

/// How services (Odoo, the syncs) are started and stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceKind {
    /// systemd units (and postgresql-common clusters): real servers.
    Systemd,
    /// Plain processes with pid files: the sandbox, which has no systemd.
    Supervised,
}

/// One protected VPS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instance {
    /// The instance name.
    pub name: String,
    /// `user@host[:port]`, or a Host alias from `~/.ssh/config`.
    pub ssh: String,
    /// libpq keywords to reach the VPS's PostgreSQL.
    pub pg: String,
    /// The standby cluster's port here.
    pub standby_port: u16,
    /// Odoo's data_dir on the VPS.
    pub data_dir: PathBuf,
    /// Addon sources on the VPS.
    pub sources: PathBuf,
    /// odoo.conf on the VPS.
    pub odoo_conf: PathBuf,
    /// The VPS's cluster: `15/main` (postgresql-common, the default `<pg_version>/main`) or
    /// an absolute data directory run with `pg_ctl`.
    pub vps_cluster: String,
    /// The `.pgpass` of the PostgreSQL OS user on the VPS (`/var/lib/postgresql/.pgpass`),
    /// written by `failback` so the VPS can replicate from the backup.
    pub vps_pgpass: PathBuf,
    /// The VPS's Odoo systemd unit (`odoo`), stopped during failback and started after.
    pub vps_odoo_unit: String,
    /// The VPS's odoo-bin, for supervised services only (systemd knows its own unit).
    pub vps_odoo_bin: PathBuf,
    /// Databases to protect; empty: every database on the VPS that has `ir_attachment`.
    pub databases: Vec<String>,
}

/// The whole file, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The backup server.
    pub backup: Backup,
    /// The protected VPSs.
    pub instances: Vec<Instance>,
}

struct Ctx<'a> {
    file: &'a str,
    text: &'a str,
}

impl Ctx<'_> {
    fn line(&self, span: Range<usize>) -> usize {
        self.text[..span.start.min(self.text.len())]
            .matches('\n')
            .count()
            + 1
    }

    fn err(
        &self,
        span: Range<usize>,
        key: impl Into<String>,
        problem: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            file: self.file.to_owned(),
            line: self.line(span),
            key: key.into(),
            problem: problem.into(),
        }
    }

    fn abs_path(&self, v: &Spanned<String>, key: String) -> Result<PathBuf, ConfigError> {
        let p = PathBuf::from(v.get_ref());
        if !p.is_absolute() || v.get_ref().contains("..") {
            return Err(self.err(
                v.span(),
                key,
                format!(
                    "{:?} must be an absolute path without '..', e.g. \"/var/opt/odoo/data_dir\"",
                    v.get_ref()
                ),
            ));
        }
        Ok(p)
    }
}

fn valid_name(s: &str) -> bool {
    odoo_instance::validate_name(s).is_ok()
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &std::path::Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.display().to_string(),
            line: 0,
            key: "-".into(),
            problem: format!(
                "cannot read it ({e}); `odoo-standby init > {}` writes an example",
                path.display()
            ),
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses and validates `text`; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Self, ConfigError> {
        let ctx = Ctx { file, text };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            let msg = e.message().to_owned();
            let hint = if msg.contains("missing field") {
                " (see `odoo-standby init` for every key)"
            } else if msg.contains("unknown field") {
                " (check the spelling; `odoo-standby init` lists every key)"
            } else {
                ""
            };
            ctx.err(span, "-", format!("{msg}{hint}"))
        })?;
        let b = raw.backup.get_ref();
        if !valid_user(b.os_user.get_ref()) {
            return Err(ctx.err(
                b.os_user.span(),
                "backup.os_user",
                format!(
                    "{:?} is not a user name, e.g. \"odoouser\"",
                    b.os_user.get_ref()
                ),
            ));
        }
        let address: IpAddr = b.address.get_ref().parse().map_err(|_| {
            ctx.err(
                b.address.span(),
                "backup.address",
                format!("{:?} is not an IP address; write the address the VPSs reach this server at, e.g. \"198.51.100.7\"", b.address.get_ref()),
            )
        })?;
        if !(10..=99).contains(b.pg_version.get_ref()) {
            return Err(ctx.err(
                b.pg_version.span(),
                "backup.pg_version",
                "a PostgreSQL major version, e.g. 15",
            ));
        }
        let opt_path =
            |v: &Option<Spanned<String>>, key: &str| -> Result<Option<PathBuf>, ConfigError> {
                v.as_ref()
                    .map(|v| ctx.abs_path(v, format!("backup.{key}")))
                    .transpose()
            };
        let services = match b.services.as_ref() {
            None => ServiceKind::Systemd,
            Some(v) => match v.get_ref().as_str() {
                "systemd" => ServiceKind::Systemd,
                "supervised" => ServiceKind::Supervised,
                other => {
                    return Err(ctx.err(
                        v.span(),
                        "backup.services",
                        format!("{other:?}: write \"systemd\" (real servers) or \"supervised\" (the sandbox)"),
                    ))
                }
            },
        };
        let pg_os_user = match &b.pg_os_user {
            Some(v) if !valid_user(v.get_ref()) => {
                return Err(ctx.err(
                    v.span(),
                    "backup.pg_os_user",
                    format!("{:?} is not a user name, e.g. \"postgres\"", v.get_ref()),
                ))
            }
            Some(v) => v.get_ref().clone(),
            None => "postgres".into(),
        };
        let pg_version = *b.pg_version.get_ref();
        let backup = Backup {
            root: ctx.abs_path(&b.root, "backup.root".into())?,
            odoo_source: ctx.abs_path(&b.odoo_source, "backup.odoo_source".into())?,
            os_user: b.os_user.get_ref().clone(),
            address,
            pg_version,
            state_dir: opt_path(&b.state_dir, "state_dir")?
                .unwrap_or_else(|| PathBuf::from("/var/lib/odoo-standby")),
            services,
            clusters_dir: opt_path(&b.clusters_dir, "clusters_dir")?,
            pg_bindir: opt_path(&b.pg_bindir, "pg_bindir")?
                .unwrap_or_else(|| PathBuf::from(format!("/usr/lib/postgresql/{pg_version}/bin"))),
            pg_os_user,
            pgpass: opt_path(&b.pgpass, "pgpass")?
                .unwrap_or_else(|| PathBuf::from("/var/lib/postgresql/.pgpass")),
            ssh_key: opt_path(&b.ssh_key, "ssh_key")?,
            known_hosts: opt_path(&b.known_hosts, "known_hosts")?,
            python: opt_path(&b.python, "python")?
                .unwrap_or_else(|| PathBuf::from("/usr/bin/python3")),
        };
        if raw.instance.is_empty() {
            return Err(ctx.err(
                raw.backup.span(),
                "instance",
                "no [[instance]]: add one per VPS to protect (see `odoo-standby init`)",
            ));
        }
        let mut names = HashSet::new();
        let mut ports = HashSet::new();
        let mut instances = Vec::new();
        for (i, inst) in raw.instance.iter().enumerate() {
            let r = inst.get_ref();
            let key = |k: &str| format!("instance[{i}].{k}");
            let name = r.name.get_ref();
            if !valid_name(name) {
                return Err(ctx.err(
                    r.name.span(),
                    key("name"),
                    format!("{name:?}: lower-case letters, digits and '_', starting with a letter, e.g. \"vps_clientes_1\" (it names a cluster, a folder, a slot and a unit)"),
                ));
            }
            if !names.insert(name.clone()) {
                return Err(ctx.err(
                    r.name.span(),
                    key("name"),
                    format!("{name:?} is used by another instance; names must be unique"),
                ));
            }
            let port = *r.standby_port.get_ref();
            let port = u16::try_from(port)
                .ok()
                .filter(|p| *p >= 1024)
                .ok_or_else(|| {
                    ctx.err(
                        r.standby_port.span(),
                        key("standby_port"),
                        format!("{port} is not a port from 1024 to 65535, e.g. 5435"),
                    )
                })?;
            if !ports.insert(port) {
                return Err(ctx.err(r.standby_port.span(), key("standby_port"), format!("port {port} is used by another instance; each standby cluster needs its own")));
            }
            let ssh = r.ssh.get_ref();
            let ssh_ok = if ssh.contains('@') {
                host::SshConfig::from_target(ssh, host::SshAuth::Agent, "/dev/null").is_ok()
            } else {
                !ssh.is_empty()
                    && ssh
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
            };
            if !ssh_ok {
                return Err(ctx.err(r.ssh.span(), key("ssh"), format!("{ssh:?}: write user@host[:port], e.g. \"odoo@200.58.98.56:5253\", or a Host alias from ~/.ssh/config")));
            }
            let pg = pgrepl::ConnInfo::parse(r.pg.get_ref())
                .map_err(|e| ctx.err(r.pg.span(), key("pg"), e.to_string()))?;
            if pg.get("password").is_some() {
                return Err(ctx.err(
                    r.pg.span(),
                    key("pg"),
                    "no password= here: passwords live in .pgpass files (protect writes them)",
                ));
            }
            if pg.get("host").is_none() {
                return Err(ctx.err(r.pg.span(), key("pg"), "needs host= (how this server reaches the VPS's PostgreSQL), e.g. \"host=200.58.98.56 port=5432\""));
            }
            let vps_cluster = match &r.vps_cluster {
                None => format!("{pg_version}/main"),
                Some(v) => {
                    let text = v.get_ref();
                    let ok = if text.starts_with('/') {
                        ctx.abs_path(v, key("vps_cluster")).is_ok()
                    } else {
                        pgrepl::DebianCluster::parse_id(text).is_ok()
                    };
                    if !ok {
                        return Err(ctx.err(v.span(), key("vps_cluster"), format!("{text:?}: write VERSION/NAME of a postgresql-common cluster, e.g. \"15/main\", or the absolute data directory of a cluster run with pg_ctl")));
                    }
                    text.clone()
                }
            };
            let vps_odoo_unit = match &r.vps_odoo_unit {
                None => "odoo".to_owned(),
                Some(v) => {
                    let u = v.get_ref();
                    if u.is_empty()
                        || !u.chars().all(|c| {
                            c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@')
                        })
                    {
                        return Err(ctx.err(
                            v.span(),
                            key("vps_odoo_unit"),
                            format!("{u:?} is not a systemd unit name, e.g. \"odoo\""),
                        ));
                    }
                    u.clone()
                }
            };
            let databases = r.databases.clone().unwrap_or_default();
            if let Some(bad) = databases.iter().find(|d| {
                d.is_empty()
                    || d.len() > 63
                    || !d
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
            }) {
                return Err(ctx.err(inst.span(), key("databases"), format!("{bad:?} is not a database name this tool accepts (letters, digits, '_', '-', '.')")));
            }
            instances.push(Instance {
                vps_cluster,
                vps_pgpass: match &r.vps_pgpass {
                    Some(v) => ctx.abs_path(v, key("vps_pgpass"))?,
                    None => PathBuf::from("/var/lib/postgresql/.pgpass"),
                },
                vps_odoo_unit,
                vps_odoo_bin: match &r.vps_odoo_bin {
                    Some(v) => ctx.abs_path(v, key("vps_odoo_bin"))?,
                    None => PathBuf::from("/opt/odoo/odoo/odoo-bin"),
                },
                databases,
                name: name.clone(),
                ssh: ssh.clone(),
                pg: r.pg.get_ref().clone(),
                standby_port: port,
                data_dir: ctx.abs_path(&r.data_dir, key("data_dir"))?,
                sources: ctx.abs_path(&r.sources, key("sources"))?,
                odoo_conf: ctx.abs_path(&r.odoo_conf, key("odoo_conf"))?,
            });
        }
        Ok(Self { backup, instances })
    }

    /// The instance called `name`, or an error listing the configured ones.
    pub fn instance(&self, name: &str) -> Result<&Instance, String> {
        self.instances
            .iter()
            .find(|i| i.name == name)
            .ok_or_else(|| {
                let known: Vec<&str> = self.instances.iter().map(|i| i.name.as_str()).collect();
                format!(
                    "no instance {name:?} in the config (configured: {})",
                    known.join(", ")
                )
            })
    }
}

fn valid_user(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(ch) if ch.is_ascii_lowercase() || ch == '_')
        && s.len() <= 32
        && c.all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || matches!(ch, '_' | '-'))
}

#[cfg(test)]
mod tests {
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
        let cases: [(&str, &str, usize, &str, &str); 9] = [
            (
                "name = \"vps_clientes_1\"",
                "name = \"vps-clientes-1\"",
                28,
                "instance[0].name",
                "lower-case letters",
            ),
            (
                "standby_port = 5435",
                "standby_port = 80",
                34,
                "instance[0].standby_port",
                "1024 to 65535",
            ),
            (
                "pg = \"host=200.58.98.56 port=5432\"",
                "pg = \"host=200.58.98.56 password=x\"",
                32,
                "instance[0].pg",
                "no password=",
            ),
            (
                "ssh = \"odoo@200.58.98.56:5253\"",
                "ssh = \"odoo@200.58.98.56:x\"",
                30,
                "instance[0].ssh",
                "user@host[:port]",
            ),
            (
                "address = \"198.51.100.7\"",
                "address = \"backup.example.com\"",
                12,
                "backup.address",
                "not an IP address",
            ),
            (
                "data_dir = \"/var/opt/odoo/data_dir\"",
                "data_dir = \"var/opt/odoo\"",
                36,
                "instance[0].data_dir",
                "absolute path",
            ),
            (
                "pg_version = 15",
                "pg_version = 150",
                14,
                "backup.pg_version",
                "major version",
            ),
            (
                "os_user = \"odoouser\"",
                "os_user = \"Odoo User\"",
                10,
                "backup.os_user",
                "not a user name",
            ),
            (
                "sources = \"/opt/odoo/sources\"",
                "sources = \"/opt/odoo/sources\"\nsourcse = \"/x\"",
                38,
                "-",
                "unknown field `sourcse`",
            ),
        ];
        for (from, to, line, key, says) in cases {
            assert!(EXAMPLE.contains(from), "{from}");
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
}
