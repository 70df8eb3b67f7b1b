//! The smoke test (runbook 4.3): the unit's command plus `-d DB --stop-after-init
//! --logfile=`, run as the instance's OS user, and a check that the HTTP port is free; its
//! failures are diagnosed into the runbook's known classes, each with a fix the caller may
//! run. Nothing is fixed silently.
//!
//! Real Odoo 17 decides what it may refuse (`../shared/odoo/README.md`, section 6): it
//! returns 0 on a read-only standby, with attachment files missing, with tables owned by
//! another role it does not have to alter, and with config-file addons paths that do not
//! exist; it returns 1 when it cannot connect or `db_user` is `postgres`, 2 for a bad
//! command-line option, 255 when the registry fails (an import, its own objects owned by
//! another role). So the exit code is read with the log lines: a CRITICAL line or "Some
//! modules are not loaded" fails the test at exit 0, and the read-only case is checked in
//! SQL first, since Odoo says nothing about it.

use std::time::Duration;

use host::{CommandSpec, Host};
use serde::Serialize;

use crate::error::{InstanceError, Result};

/// What to run and where.
#[derive(Clone, Debug)]
pub struct SmokeTest {
    /// The unit's ExecStart (interpreter, odoo-bin, `-c conf`).
    pub exec_start: Vec<String>,
    /// The database to load.
    pub database: String,
    /// The OS user Odoo runs as.
    pub os_user: String,
    /// The interface and port Odoo will listen on, checked to be free.
    pub http: Option<(String, u16)>,
    /// For the fixes: the role Odoo connects as on the backup.
    pub db_user: String,
    /// For the fixes: the role that owned the objects on the VPS (odoo.conf's db_user there).
    pub vps_db_user: Option<String>,
    /// For the fixes: how to reach the cluster as its superuser (`psql -h` and `-p`).
    pub cluster_socket: String,
    /// For the fixes: the cluster's port.
    pub cluster_port: u16,
    /// For the fixes: the requirements file copied from the VPS.
    pub requirements: std::path::PathBuf,
}

/// A failure class the runbook knows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "class", rename_all = "snake_case")]
pub enum Failure {
    /// A Python package Odoo or an addon imports is not installed.
    MissingPythonModule {
        /// The module.
        module: String,
    },
    /// The role Odoo connects as does not exist in the cluster.
    RoleMissing {
        /// The role.
        role: String,
    },
    /// The role cannot log in: a wrong password, no peer mapping for this OS user, or (under
    /// scram-sha-256, which says the same for both) a role that does not exist.
    LoginFailed {
        /// The role.
        role: String,
    },
    /// odoo.conf's `db_user` is `postgres`, which Odoo refuses to use.
    DbUserPostgres,
    /// Objects belong to another role (the VPS's), so Odoo cannot alter them.
    WrongOwner {
        /// A table it tripped on.
        table: String,
    },
    /// Installed modules are not in the addons path.
    ModuleNotFound {
        /// The modules.
        modules: Vec<String>,
    },
    /// An addons_path entry is not a directory.
    AddonsPathInvalid {
        /// The entry.
        path: String,
    },
    /// Something already listens on Odoo's HTTP port.
    PortInUse {
        /// The port.
        port: u16,
    },
    /// The database is still a read-only standby.
    ReadOnly,
    /// None of the above: read the log.
    Other {
        /// The end of the output.
        tail: String,
    },
}

/// A step that repairs a failure; shown, and run only if the caller decides to.
#[derive(Clone, Debug, Serialize)]
pub struct Fix {
    /// What it does, in words.
    pub description: String,
    /// The command (None when only a person can fix it).
    #[serde(skip)]
    pub command: Option<CommandSpec>,
    /// The command as shown.
    pub shown: Option<String>,
}

impl Fix {
    fn run(description: String, command: CommandSpec) -> Self {
        Self {
            description,
            shown: Some(command.to_string()),
            command: Some(command),
        }
    }
    fn manual(description: String) -> Self {
        Self {
            description,
            command: None,
            shown: None,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::MissingPythonModule { module } => write!(f, "Python module {module} is missing"),
            Self::RoleMissing { role } => write!(f, "role {role} does not exist"),
            Self::LoginFailed { role } => write!(f, "role {role} cannot log in"),
            Self::DbUserPostgres => f.write_str("db_user is postgres"),
            Self::WrongOwner { table } => write!(f, "{table} belongs to another role"),
            Self::ModuleNotFound { modules } => {
                write!(
                    f,
                    "installed modules not on the addons path: {}",
                    modules.join(", ")
                )
            }
            Self::AddonsPathInvalid { path } => write!(f, "addons path {path} is not valid"),
            Self::PortInUse { port } => write!(f, "port {port} is taken"),
            Self::ReadOnly => f.write_str("the database is a read-only standby"),
            Self::Other { .. } => f.write_str("Odoo failed for another reason (its log follows)"),
        }
    }
}

impl std::fmt::Display for Diagnosis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} -> {}", self.failure, self.fix.description)?;
        if let Some(s) = &self.fix.shown {
            write!(f, ": {s}")?;
        }
        Ok(())
    }
}

/// One failure and its fix.
#[derive(Clone, Debug, Serialize)]
pub struct Diagnosis {
    /// The class.
    pub failure: Failure,
    /// The fix.
    pub fix: Fix,
}

/// What the smoke test found.
#[derive(Clone, Debug, Serialize)]
pub struct SmokeReport {
    /// Whether Odoo loaded the database and the port is free.
    pub ok: bool,
    /// What went wrong, with fixes.
    pub diagnoses: Vec<Diagnosis>,
    /// The end of Odoo's output.
    pub log_tail: String,
}

fn quoted_after<'a>(text: &'a str, marker: &str) -> Option<&'a str> {
    let rest = &text[text.find(marker)? + marker.len()..];
    let rest = rest.trim_start();
    let q = rest.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    let body = &rest[1..];
    Some(&body[..body.find(q)?])
}

/// The quoted name after `marker` (`user "x"`, `role 'x'`).
fn name_after(text: &str, marker: &str) -> Option<String> {
    quoted_after(text, marker).map(str::to_owned)
}

/// Reads Odoo's output into failure classes, from the lines real Odoo 17 prints.
pub fn diagnose(output: &str) -> Vec<Failure> {
    let mut found = Vec::new();
    if output.contains("Using the database user 'postgres' is a security risk") {
        found.push(Failure::DbUserPostgres);
    }
    // `No module named 'odoo.addons.web'` is an addon missing from the path (and comes with
    // "Some modules are not loaded"), not a Python package to install.
    if let Some(m) = output
        .match_indices("No module named")
        .filter_map(|(i, _)| quoted_after(&output[i..], "No module named"))
        .find(|m| !m.starts_with("odoo.") && *m != "odoo")
    {
        found.push(Failure::MissingPythonModule {
            module: m.to_owned(),
        });
    }
    if output.contains("OperationalError") {
        if output.contains("does not exist") {
            if let Some(role) = name_after(output, "FATAL:  role") {
                found.push(Failure::RoleMissing { role });
            }
        } else if let Some(role) = name_after(output, "password authentication failed for user")
            .or_else(|| name_after(output, "Peer authentication failed for user"))
        {
            found.push(Failure::LoginFailed { role });
        }
    }
    if let Some(i) = output.find("must be owner of table") {
        let table = output[i + "must be owner of table".len()..]
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned();
        found.push(Failure::WrongOwner { table });
    } else if output.contains("relation \"base_registry_signaling\" already exists") {
        // Odoo finds its sequence through information_schema, which hides what another
        // role owns: the database's objects belong to someone else.
        found.push(Failure::WrongOwner {
            table: "base_registry_signaling".into(),
        });
    }
    if let Some(list) = output
        .lines()
        .find(|l| l.contains("Some modules are not loaded"))
        .and_then(|l| Some(&l[l.find('[')? + 1..l.rfind(']')?]))
    {
        let modules = list
            .split(',')
            .map(|m| m.trim().trim_matches(['\'', '"']).to_owned())
            .filter(|m| !m.is_empty())
            .collect();
        found.push(Failure::ModuleNotFound { modules });
    }
    for marker in [
        "option --addons-path: the path",
        "option --addons-path: no such directory:",
    ] {
        if let Some(p) = quoted_after(output, marker) {
            found.push(Failure::AddonsPathInvalid { path: p.to_owned() });
        }
    }
    if output.contains("ReadOnlySqlTransaction") || output.contains("read-only transaction") {
        found.push(Failure::ReadOnly);
    }
    found
}

fn fix_for(f: &Failure, t: &SmokeTest) -> Fix {
    let python = t
        .exec_start
        .first()
        .cloned()
        .unwrap_or_else(|| "python3".into());
    let psql = |sql: String| {
        CommandSpec::new("psql")
            .args([
                "-X",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                &t.cluster_socket,
                "-p",
                &t.cluster_port.to_string(),
            ])
            .args(["-d", &t.database, "-c", &sql])
            .run_as("postgres")
    };
    match f {
        Failure::MissingPythonModule { module } => Fix::run(
            format!("install the VPS's Python packages (module {module} is missing) from {}", t.requirements.display()),
            CommandSpec::new(python)
                .args(["-m", "pip", "install", "-r", &t.requirements.display().to_string()]),
        ),
        Failure::RoleMissing { role } => Fix::run(
            format!("create role {role} (a superuser, as the runbook does) in the promoted cluster"),
            CommandSpec::new("createuser")
                .args(["-s", "-h", &t.cluster_socket, "-p", &t.cluster_port.to_string(), role])
                .run_as("postgres"),
        ),
        Failure::WrongOwner { table } => match &t.vps_db_user {
            Some(old) if *old != t.db_user => Fix::run(
                format!("give {}'s objects (e.g. table {table}) to {}", old, t.db_user),
                psql(format!("REASSIGN OWNED BY \"{old}\" TO \"{}\"", t.db_user)),
            ),
            _ => Fix::manual(format!(
                "table {table} belongs to another role than {}: REASSIGN OWNED BY <that role> TO {}",
                t.db_user, t.db_user
            )),
        },
        Failure::ModuleNotFound { modules } => Fix::manual(format!(
            "installed modules {} are in no addons_path entry: check that the sources were replicated and that odoo.conf maps every VPS path",
            modules.join(", ")
        )),
        Failure::AddonsPathInvalid { path } => Fix::manual(format!(
            "addons_path entry {path} is not a directory here: replicate the sources, or fix the path mapping"
        )),
        Failure::PortInUse { port } => Fix::manual(format!(
            "port {port} is taken on this server: stop what uses it (ss -ltnp), or give this instance another http_port in odoo-standby's config and run `odoo-standby protect NAME` again (it rewrites odoo.conf here)"
        )),
        Failure::ReadOnly => Fix::manual("the database is still a standby: promote the cluster first".into()),
        Failure::LoginFailed { role } => Fix::manual(format!(
            "role {role} cannot log in here: check db_user and db_password in odoo.conf; `odoo-standby protect` lets the Odoo user log in as odoo.conf's db_user (a peer map on the standby cluster)"
        )),
        Failure::DbUserPostgres => Fix::manual(
            "Odoo refuses db_user = postgres: set db_user to the role that owns the database".into(),
        ),
        Failure::Other { .. } => Fix::manual("read the log above; no known cause matched".into()),
    }
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The command of the smoke test: the unit's command plus `-d DB --stop-after-init
/// --logfile=`, as the OS user.
pub fn command(t: &SmokeTest) -> CommandSpec {
    let (program, args) = t
        .exec_start
        .split_first()
        .map_or(("", &[][..]), |(p, a)| (p.as_str(), a));
    CommandSpec::new(program)
        .args(args.iter().cloned())
        .args(["-d", &t.database, "--stop-after-init", "--logfile="])
        .run_as(t.os_user.clone())
        .timeout(Duration::from_secs(600))
}

/// Runs the smoke test on `host` and diagnoses what fails.
pub async fn run(host: &dyn Host, t: &SmokeTest) -> Result<SmokeReport> {
    if t.exec_start.is_empty() {
        return Err(InstanceError::invalid("smoke test", "empty command"));
    }
    let mut diagnoses = Vec::new();
    // Odoo loads a read-only standby at exit 0 and says nothing: ask the cluster.
    let recovery = CommandSpec::new("psql")
        .args([
            "-X",
            "-A",
            "-t",
            "-h",
            &t.cluster_socket,
            "-p",
            &t.cluster_port.to_string(),
        ])
        .args(["-d", &t.database, "-c", "SELECT pg_is_in_recovery()"])
        .run_as("postgres")
        .asks();
    let out = host
        .run_unchecked(&recovery)
        .await
        .map_err(InstanceError::host(
            "asking the cluster whether it is a standby",
        ))?;
    if out.stdout_text().trim() == "t" {
        let failure = Failure::ReadOnly;
        return Ok(SmokeReport {
            ok: false,
            diagnoses: vec![Diagnosis {
                fix: fix_for(&failure, t),
                failure,
            }],
            log_tail: String::new(),
        });
    }
    // The port first: a taken port only shows when the service starts for real.
    if let Some((iface, port)) = &t.http {
        let probe = CommandSpec::new("python3")
            .args([
                "-c",
                "import socket,sys\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\ns.bind((sys.argv[1], int(sys.argv[2])))",
                iface,
                &port.to_string(),
            ])
            .run_as(t.os_user.clone())
            .asks();
        let out = host
            .run_unchecked(&probe)
            .await
            .map_err(InstanceError::host("checking the HTTP port"))?;
        if !out.status.success() {
            let failure = if out.stderr_text().contains("Address already in use") {
                Failure::PortInUse { port: *port }
            } else {
                Failure::Other {
                    tail: tail(&out.stderr_text(), 5),
                }
            };
            diagnoses.push(Diagnosis {
                fix: fix_for(&failure, t),
                failure,
            });
        }
    }
    let spec = command(t);
    let out = host
        .run_unchecked(&spec)
        .await
        .map_err(InstanceError::host("running the Odoo smoke test"))?;
    let output = format!("{}{}", out.stdout_text(), out.stderr_text());
    let mut failures = diagnose(&output);
    // Exit 0 proves nothing: an unexplained CRITICAL line fails the test too.
    let critical = output.lines().any(|l| l.contains(" CRITICAL "));
    if failures.is_empty() && (!out.status.success() || critical) {
        failures.push(Failure::Other {
            tail: tail(&output, 10),
        });
    }
    for f in failures {
        diagnoses.push(Diagnosis {
            fix: fix_for(&f, t),
            failure: f,
        });
    }
    Ok(SmokeReport {
        ok: diagnoses.is_empty() && out.status.success(),
        diagnoses,
        log_tail: tail(&output, 20),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_from_real_odoo_lines() {
        let cases = [
            ("ModuleNotFoundError: No module named 'phonenumbers'", Failure::MissingPythonModule { module: "phonenumbers".into() }),
            (
                "psycopg2.OperationalError: connection to server on socket \"/var/run/postgresql/.s.PGSQL.5435\" failed: FATAL:  role \"odoouser\" does not exist",
                Failure::RoleMissing { role: "odoouser".into() },
            ),
            ("psycopg2.errors.InsufficientPrivilege: must be owner of table ir_module_module", Failure::WrongOwner { table: "ir_module_module".into() }),
            (
                "2024-01-01 ERROR db odoo.modules.loading: Some modules are not loaded, some dependencies or manifest may be missing: ['l10n_ar', 'account_x']",
                Failure::ModuleNotFound { modules: vec!["l10n_ar".into(), "account_x".into()] },
            ),
            ("psycopg2.errors.ReadOnlySqlTransaction: cannot execute UPDATE in a read-only transaction", Failure::ReadOnly),
            ("odoo-bin: error: option --addons-path: the path '/opt/x' is not a valid addons directory", Failure::AddonsPathInvalid { path: "/opt/x".into() }),
            ("odoo-bin server: error: option --addons-path: no such directory: '/nonexistent/addons'", Failure::AddonsPathInvalid { path: "/nonexistent/addons".into() }),
            ("Using the database user 'postgres' is a security risk, aborting.", Failure::DbUserPostgres),
            (
                "psycopg2.OperationalError: connection to server at \"127.0.0.1\", port 55432 failed: FATAL:  password authentication failed for user \"ghost\"",
                Failure::LoginFailed { role: "ghost".into() },
            ),
            (
                "psycopg2.OperationalError: connection to server on socket \"/var/run/postgresql/.s.PGSQL.5435\" failed: FATAL:  Peer authentication failed for user \"odoo\"",
                Failure::LoginFailed { role: "odoo".into() },
            ),
            ("psycopg2.errors.DuplicateTable: relation \"base_registry_signaling\" already exists", Failure::WrongOwner { table: "base_registry_signaling".into() }),
            (
                "ModuleNotFoundError: No module named 'odoo.addons.web'\nERROR testdb odoo.modules.loading: Some modules are not loaded, some dependencies or manifest may be missing: ['web']",
                Failure::ModuleNotFound { modules: vec!["web".into()] },
            ),
        ];
        for (line, want) in cases {
            assert_eq!(diagnose(line), vec![want], "{line}");
        }
        assert!(diagnose("INFO all good").is_empty());
    }
}
