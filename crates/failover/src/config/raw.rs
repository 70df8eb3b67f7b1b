//! The file as written: TOML with spans (so that every error names its line), and its
//! validation into [`Config`].

use std::collections::HashSet;
use std::net::IpAddr;
use std::ops::Range;
use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use super::{Backup, Config, ConfigError, Instance, ServiceKind};

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
    #[serde(default)]
    verify_sizes_minutes: Option<Spanned<i64>>,
    #[serde(default)]
    verify_hash_mb_per_s: Option<Spanned<i64>>,
    #[serde(default)]
    metrics_dir: Option<Spanned<String>>,
    #[serde(default)]
    on_event: Option<Spanned<String>>,
    #[serde(default)]
    vps_watch_seconds: Option<Spanned<i64>>,
    #[serde(default)]
    clone_mb_per_s: Option<Spanned<i64>>,
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
    vps_python: Option<Spanned<String>>,
    #[serde(default)]
    http_port: Option<Spanned<i64>>,
    #[serde(default)]
    gevent_port: Option<Spanned<i64>>,
    #[serde(default)]
    server_name: Option<Spanned<String>>,
    #[serde(default)]
    tls_certificate: Option<Spanned<String>>,
    #[serde(default)]
    tls_certificate_key: Option<Spanned<String>>,
    #[serde(default)]
    databases: Option<Vec<String>>,
    #[serde(default)]
    clone_mb_per_s: Option<Spanned<i64>>,
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
            also: Vec::new(),
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
    host::Name::new("instance name", s).is_ok()
}

fn valid_user(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(ch) if ch.is_ascii_lowercase() || ch == '_')
        && s.len() <= 32
        && c.all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || matches!(ch, '_' | '-'))
}

/// The key written on `line` (1-based) of `text`, with its table: `backup.pg_version`,
/// `instance[1].standby_port`; `-` when the line holds no `key = value`.
fn key_at(text: &str, line: usize) -> String {
    let mut table = String::new();
    let mut instances = 0usize;
    for (n, l) in text.lines().enumerate() {
        let t = l.trim();
        if t.starts_with("[[instance]]") {
            table = format!("instance[{instances}]");
            instances += 1;
        } else if t.starts_with("[backup]") {
            table = "backup".into();
        }
        if n + 1 == line {
            return match t.split_once('=') {
                Some((k, _)) if !t.starts_with('#') && !t.starts_with('[') => {
                    let k = k.trim().trim_matches('"');
                    if table.is_empty() {
                        k.to_owned()
                    } else {
                        format!("{table}.{k}")
                    }
                }
                _ => "-".into(),
            };
        }
    }
    "-".into()
}

/// toml's words, made an operator's: what is wrong and what to write instead.
fn explain(msg: &str, key: &str) -> String {
    let leaf = key.rsplit('.').next().unwrap_or(key);
    if let Some(rest) = msg.strip_prefix("invalid type: string ") {
        if rest.contains("expected i64")
            || rest.contains("expected u32")
            || rest.contains("integer")
        {
            let v = rest
                .split(", expected")
                .next()
                .unwrap_or("")
                .trim_matches('"');
            return format!("{rest}: a number is written without quotes, e.g. {leaf} = {v}");
        }
    }
    if msg.starts_with("invalid type: integer") && msg.contains("expected a string") {
        return format!("{msg}: text is written in double quotes, e.g. {leaf} = \"...\"");
    }
    if msg.contains("missing field") {
        return format!("{msg} (see `odoo-standby init` for every key)");
    }
    if msg.contains("unknown field") {
        return format!("{msg} (check the spelling; `odoo-standby init` lists every key)");
    }
    if msg.contains("invalid key") || msg.contains("expected `=`") || msg.contains("invalid string")
    {
        return format!(
            "{msg}: TOML needs key = value, text in double quotes, e.g. root = \"/srv/x\""
        );
    }
    msg.to_owned()
}

/// A line that stands in for a wrong one while the rest of the file is checked: the example's
/// value for that key (kept unique where uniqueness is checked), or a comment.
fn stand_in(key: &str, line: usize) -> String {
    let leaf = key.rsplit('.').next().unwrap_or(key);
    match leaf {
        "name" => format!("name = \"line_{line}\""),
        "standby_port" => format!("standby_port = {}", 20000 + line),
        "http_port" => format!("http_port = {}", 30000 + line),
        "gevent_port" => format!("gevent_port = {}", 40000 + line),
        _ => super::EXAMPLE
            .lines()
            .map(|l| l.trim_start_matches('#').trim())
            .find(|l| l.split_once('=').is_some_and(|(k, _)| k.trim() == leaf))
            .map(|l| l.split(" # ").next().unwrap_or(l).trim().to_owned())
            .unwrap_or_else(|| "# (a wrong line, left out while checking the rest)".into()),
    }
}

impl Config {
    /// Parses and validates `text`; `file` names it in errors. Every problem is reported,
    /// not only the first: after each one, its line is replaced by a stand-in (the example's
    /// value for that key) and the file is checked again, so that the line numbers stay
    /// those of the file. A syntax error ends the search (what follows cannot be read).
    pub fn parse(text: &str, file: &str) -> Result<Self, ConfigError> {
        let first = match Self::parse_one(text, file) {
            Ok(c) => return Ok(c),
            Err(e) => e,
        };
        let mut work: Vec<String> = text.lines().map(str::to_owned).collect();
        let mut seen = vec![(first.line, first.key.clone())];
        let mut also: Vec<ConfigError> = Vec::new();
        let mut at = first.line;
        for _ in 0..30 {
            let current = also.last().unwrap_or(&first);
            // A syntax error, or a key missing from a table: no line to stand in for.
            if at == 0
                || at > work.len()
                || current.problem.contains("TOML needs")
                || current.problem.contains("missing field")
            {
                break;
            }
            let key = current.key.clone();
            // An unknown key is left out; a wrong value is replaced.
            work[at - 1] = if current.problem.contains("unknown field") || key == "-" {
                "# (left out while checking the rest)".into()
            } else {
                stand_in(&key, at)
            };
            match Self::parse_one(&work.join("\n"), file) {
                Ok(_) => break,
                Err(e) => {
                    // Our stand-in made it worse (a value over several lines): stop here.
                    if e.problem.contains("TOML needs") || seen.contains(&(e.line, e.key.clone())) {
                        break;
                    }
                    at = e.line;
                    seen.push((e.line, e.key.clone()));
                    also.push(e);
                }
            }
        }
        also.push(first);
        also.sort_by_key(|e| e.line);
        let mut first = also.remove(0);
        first.also = also;
        Err(first)
    }

    fn parse_one(text: &str, file: &str) -> Result<Self, ConfigError> {
        let ctx = Ctx { file, text };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            let line = ctx.line(span.clone());
            let msg = e.message().to_owned();
            // The key toml did not name: the one written on that line.
            let key = if msg.contains("missing field") {
                "-".to_owned()
            } else {
                key_at(text, line)
            };
            let problem = explain(&msg, &key);
            ctx.err(span, key, problem)
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
        let count = |v: &Option<Spanned<i64>>, key: &str, default: u64, min: i64, eg: &str| match v
        {
            None => Ok(default),
            Some(v) => u64::try_from(*v.get_ref())
                .ok()
                .filter(|n| *n as i64 >= min && *n <= 1_000_000)
                .ok_or_else(|| {
                    ctx.err(
                        v.span(),
                        format!("backup.{key}"),
                        format!("{} is out of range: {eg}", v.get_ref()),
                    )
                }),
        };
        let verify_sizes_minutes = count(
            &b.verify_sizes_minutes,
            "verify_sizes_minutes",
            60,
            0,
            "minutes between two size checks of every file (0: every pass), e.g. 60",
        )?;
        let verify_hash_mb_per_s = count(
            &b.verify_hash_mb_per_s,
            "verify_hash_mb_per_s",
            4,
            0,
            "MB of SHA-1 per second in the background, 0 for none, e.g. 4",
        )?;
        let vps_watch_seconds = count(
            &b.vps_watch_seconds,
            "vps_watch_seconds",
            30,
            0,
            "seconds between two looks at a failed-over VPS (0: never), e.g. 30",
        )?;
        let clone_mb_per_s = clone_rate(&ctx, &b.clone_mb_per_s, "backup.clone_mb_per_s")?;
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
            verify_sizes_minutes,
            verify_hash_mb_per_s,
            metrics_dir: match &b.metrics_dir {
                Some(v) if v.get_ref().is_empty() => None,
                Some(_) => opt_path(&b.metrics_dir, "metrics_dir")?,
                None => Some(PathBuf::from(super::DEFAULT_METRICS_DIR)),
            },
            on_event: opt_path(&b.on_event, "on_event")?,
            vps_watch_seconds,
            clone_mb_per_s,
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
            if port == 5432 {
                return Err(ctx.err(r.standby_port.span(), key("standby_port"), "5432 is the port of Debian's default cluster (postgresql@VERSION-main, which the package makes and starts): give the standby a port of its own, e.g. 5435"));
            }
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
                    if let Ok((major, _)) = pgrepl::DebianCluster::parse_id(text) {
                        if major != pg_version {
                            return Err(ctx.err(v.span(), key("vps_cluster"), format!("{text:?} is PostgreSQL {major}, backup.pg_version is {pg_version}: physical replication needs the same major version on both sides; set backup.pg_version = {major} (with postgresql-{major} installed here), or name the VPS's {pg_version} cluster")));
                        }
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
            // The backup's Odoo ports, when the operator chooses them (else protect does, and
            // records them): unique on this server, standby ports included.
            let mut odoo_port = |v: &Option<Spanned<i64>>,
                                 k: &str|
             -> Result<Option<u16>, ConfigError> {
                let Some(v) = v else { return Ok(None) };
                let p = u16::try_from(*v.get_ref())
                    .ok()
                    .filter(|p| *p >= 1024)
                    .ok_or_else(|| {
                        ctx.err(
                            v.span(),
                            key(k),
                            format!(
                                "{} is not a port from 1024 to 65535, e.g. 8079",
                                v.get_ref()
                            ),
                        )
                    })?;
                if !ports.insert(p) {
                    return Err(ctx.err(v.span(), key(k), format!("port {p} is used by another instance (or a standby cluster) on this server; each Odoo here needs its own: leave it out and protect chooses a free one, or write another, e.g. {}", p + 10)));
                }
                Ok(Some(p))
            };
            let http_port = odoo_port(&r.http_port, "http_port")?;
            let gevent_port = odoo_port(&r.gevent_port, "gevent_port")?;
            let server_name = match &r.server_name {
                None => Vec::new(),
                Some(v) => {
                    let names: Vec<String> =
                        v.get_ref().split_whitespace().map(str::to_owned).collect();
                    if names.is_empty()
                        || names.iter().any(|n| {
                            !n.chars().all(|c| {
                                c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '*' | '_')
                            })
                        })
                    {
                        return Err(ctx.err(v.span(), key("server_name"), format!("{:?}: write the DNS names clients use, separated by spaces, e.g. \"erp.example.com www.erp.example.com\"", v.get_ref())));
                    }
                    names
                }
            };
            let tls = match (&r.tls_certificate, &r.tls_certificate_key) {
                (None, None) => None,
                (Some(c), Some(k)) => Some((
                    ctx.abs_path(c, key("tls_certificate"))?,
                    ctx.abs_path(k, key("tls_certificate_key"))?,
                )),
                (Some(v), None) | (None, Some(v)) => {
                    return Err(ctx.err(v.span(), key(if r.tls_certificate.is_some() { "tls_certificate" } else { "tls_certificate_key" }), "tls_certificate and tls_certificate_key go together: write both (the certificate chain and its key, e.g. from /etc/letsencrypt/live/NAME/), or neither"));
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
            let clone_mb_per_s = match &r.clone_mb_per_s {
                Some(_) => clone_rate(&ctx, &r.clone_mb_per_s, &key("clone_mb_per_s"))?,
                None => backup.clone_mb_per_s,
            };
            instances.push(Instance {
                clone_mb_per_s,
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
                vps_python: match &r.vps_python {
                    Some(v) => ctx.abs_path(v, key("vps_python"))?,
                    None => backup.python.clone(),
                },
                http_port,
                gevent_port,
                server_name,
                tls,
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
}

/// `clone_mb_per_s`: MB/s for a base backup, 0 (or absent) for no limit. pg_basebackup's
/// `--max-rate` takes 32 kB/s to 1024 MB/s, so whole MB/s from 1 to 1024.
fn clone_rate(ctx: &Ctx<'_>, v: &Option<Spanned<i64>>, key: &str) -> Result<u32, ConfigError> {
    let Some(v) = v else { return Ok(0) };
    u32::try_from(*v.get_ref())
        .ok()
        .filter(|n| *n <= 1024)
        .ok_or_else(|| {
            ctx.err(
                v.span(),
                key,
                format!(
                    "{} is out of range: MB per second a base backup may take from the VPS, 1 to 1024 (pg_basebackup's --max-rate), 0 for no limit, e.g. 20 on a 200 Mbit/s uplink Odoo shares",
                    v.get_ref()
                ),
            )
        })
}
