//! Real Odoo in the lab, laid out as the runbook has it.
//!
//! - [`install_vps`]: PostgreSQL `15/main` (postgresql-common, started by systemd); Odoo 17
//!   from `$ODOO_SRC` in `/opt/odoo/odoo-17.0`; the OS user `odoo`, also the login the
//!   backup uses (no sudo rights until the product's drop-in is installed); `/etc/odoo.conf`;
//!   the custom addon `lab_custom` in `/opt/odoo/sources/custom`; data_dir
//!   `/var/opt/odoo/data_dir`; database [`DB`] made by Odoo itself (`-i base,mail,lab_custom`);
//!   `odoo.service` enabled and serving on port 8069.
//! - [`install_backup`]: PostgreSQL `15/main` as Debian makes it; the OS user `odoouser`
//!   with the Odoo tree in `/opt/odoouser/odoo`, an SSH key whose public half is in the VPS
//!   user's `authorized_keys`, and a known_hosts holding the VPS's host key (read from the
//!   VPS itself: what an operator does when confirming the fingerprint).
//! - [`Client`]: the users, a Python program in the backup machine that talks to Odoo over
//!   HTTP and XML-RPC (`odoo/lab_client.py`).

use std::path::{Path, PathBuf};

use crate::error::{LabError, Result};
use crate::machine::Machine;
use crate::sys;

/// The Odoo database on the VPS.
pub const DB: &str = "clientes";
/// The VPS's Odoo tree.
pub const VPS_TREE: &str = "/opt/odoo/odoo-17.0";
/// The VPS's addon sources (the custom addon is in `custom/` below it).
pub const VPS_SOURCES: &str = "/opt/odoo/sources";
/// The VPS's data_dir.
pub const VPS_DATA_DIR: &str = "/var/opt/odoo/data_dir";
/// The backup's Odoo tree.
pub const BACKUP_TREE: &str = "/opt/odoouser/odoo";
/// The client program in the backup machine.
pub const CLIENT: &str = "/usr/local/bin/lab-odoo-client";

const ADDON: &[(&str, &str)] = &[
    (
        "__init__.py",
        include_str!("../odoo/lab_custom/__init__.py"),
    ),
    (
        "__manifest__.py",
        include_str!("../odoo/lab_custom/__manifest__.py"),
    ),
    (
        "models/__init__.py",
        include_str!("../odoo/lab_custom/models/__init__.py"),
    ),
    (
        "models/lab_order.py",
        include_str!("../odoo/lab_custom/models/lab_order.py"),
    ),
    (
        "security/ir.model.access.csv",
        include_str!("../odoo/lab_custom/security/ir.model.access.csv"),
    ),
];

const CLIENT_PY: &str = include_str!("../odoo/lab_client.py");

/// The real Odoo tree the lab runs: `$ODOO_SRC`, else `../shared/odoo/17.0` beside the
/// project (a test fixture, read only, never copied into the repository).
pub fn source() -> Result<PathBuf> {
    sandbox::real_odoo_source().map_err(|e| LabError::Unsupported(e.to_string()))
}

/// Copies the Odoo tree into the machine at `dest` (root-owned, as a package would be).
fn copy_tree(m: &Machine, src: &Path, dest: &str) -> Result<()> {
    let target = m.path(dest);
    std::fs::create_dir_all(&target).map_err(|e| LabError::io("cannot create", &target, e))?;
    let from = format!("{}/.", src.display());
    sys::run("cp", &["-a", &from, &target.display().to_string()])?;
    m.run(&["chown", "-R", "root:root", dest]).map(drop)
}

fn password() -> String {
    (0..24)
        .map(|_| format!("{:x}", rand::random::<u8>() & 15))
        .collect()
}

/// Waits until `/web/login` on `port` of machine `m` answers 200 (from inside it).
pub fn wait_serving(m: &Machine, port: u16, seconds: u32) -> Result<()> {
    let url = format!("http://127.0.0.1:{port}/web/login");
    for _ in 0..seconds * 5 {
        let out = m.exec(&[
            "curl",
            "-s",
            "-m",
            "5",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &url,
        ])?;
        if String::from_utf8_lossy(&out.stdout) == "200" {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let journal = m
        .exec(&["journalctl", "-q", "--no-pager", "-n", "30", "-u", "odoo"])
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    Err(LabError::Timeout {
        what: format!("{}: Odoo answering 200 on {url}", m.name()),
        seconds: u64::from(seconds),
        detail: journal,
    })
}

/// Makes `m` the runbook's VPS with real Odoo from `src` serving database [`DB`].
pub fn install_vps(m: &Machine, src: &Path) -> Result<()> {
    m.run(&["pg_createcluster", "15", "main", "--start"])?;
    copy_tree(m, src, VPS_TREE)?;
    m.run(&[
        "useradd",
        "--system",
        "--create-home",
        "--home-dir",
        "/var/opt/odoo",
        "--shell",
        "/bin/bash",
        "odoo",
    ])?;
    m.run(&[
        "install",
        "-d",
        "-o",
        "odoo",
        "-g",
        "odoo",
        "-m",
        "750",
        VPS_DATA_DIR,
    ])?;
    for (rel, text) in ADDON {
        let path = format!("{VPS_SOURCES}/custom/lab_custom/{rel}");
        m.write(&path, text.as_bytes(), 0o644, "odoo:odoo")?;
    }
    m.run(&["chown", "-R", "odoo:odoo", VPS_SOURCES])?;
    let pw = password();
    // The password reaches psql on stdin, never its argv.
    m.run_stdin(
        &[
            "runuser",
            "-u",
            "postgres",
            "--",
            "psql",
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
        ],
        Some(format!("CREATE ROLE odoo LOGIN CREATEDB PASSWORD '{pw}';\n").as_bytes()),
    )?;
    let conf = format!(
        "[options]\naddons_path = {VPS_TREE}/addons,{VPS_SOURCES}/custom\ndata_dir = {VPS_DATA_DIR}\n\
         db_host = 127.0.0.1\ndb_port = 5432\ndb_user = odoo\ndb_password = {pw}\n\
         http_interface =\nhttp_port = 8069\nlist_db = False\nwithout_demo = all\nmax_cron_threads = 1\n"
    );
    m.write("/etc/odoo.conf", conf.as_bytes(), 0o640, "root:odoo")?;
    let init = m.exec(&[
        "runuser",
        "-u",
        "odoo",
        "--",
        "/usr/bin/python3",
        &format!("{VPS_TREE}/odoo-bin"),
        "-c",
        "/etc/odoo.conf",
        "-d",
        DB,
        "-i",
        "base,mail,lab_custom",
        "--stop-after-init",
    ])?;
    let log = String::from_utf8_lossy(&init.stderr).into_owned();
    if !init.status.success() || log.contains(" CRITICAL ") {
        return Err(LabError::Command {
            command: format!("odoo-bin -d {DB} -i base,mail,lab_custom --stop-after-init"),
            status: init.status.to_string(),
            stderr: sys::tail(&log, 20),
        });
    }
    let unit = format!(
        "[Unit]\nDescription=Odoo 17.0\nWants=postgresql@15-main.service\n\
         After=network.target postgresql@15-main.service\n\n[Service]\nType=simple\nUser=odoo\nGroup=odoo\n\
         ExecStart=/usr/bin/python3 {VPS_TREE}/odoo-bin -c /etc/odoo.conf\nKillMode=mixed\nRestart=on-failure\n\n\
         [Install]\nWantedBy=multi-user.target\n"
    );
    m.write(
        "/etc/systemd/system/odoo.service",
        unit.as_bytes(),
        0o644,
        "root:root",
    )?;
    m.run(&["systemctl", "daemon-reload"])?;
    m.run(&["systemctl", "enable", "--now", "-q", "odoo.service"])?;
    wait_serving(m, 8069, 60)
}

/// Makes `m` the runbook's backup server for `vps` (see the module docs); the product is
/// installed separately ([`install_product`]).
pub fn install_backup(m: &Machine, src: &Path, vps: &Machine) -> Result<()> {
    m.run(&["pg_createcluster", "15", "main", "--start"])?;
    m.run(&[
        "useradd",
        "--create-home",
        "--home-dir",
        "/opt/odoouser",
        "--shell",
        "/bin/bash",
        "odoouser",
    ])?;
    copy_tree(m, src, BACKUP_TREE)?;
    m.run(&[
        "runuser",
        "-u",
        "odoouser",
        "--",
        "ssh-keygen",
        "-q",
        "-t",
        "ed25519",
        "-N",
        "",
        "-C",
        "odoouser@backup",
        "-f",
        "/opt/odoouser/.ssh/id_ed25519",
    ])?;
    trust(m, vps, "odoo", "/var/opt/odoo", "/opt/odoouser")?;
    m.write(CLIENT, CLIENT_PY.as_bytes(), 0o755, "root:root")
}

/// Lets `user_on_vps` (home `vps_home`) be logged in to with the key of the backup user whose
/// home is `backup_home`, and records the VPS's host key in that user's known_hosts.
pub fn trust(
    m: &Machine,
    vps: &Machine,
    user_on_vps: &str,
    vps_home: &str,
    backup_home: &str,
) -> Result<()> {
    let key = m.read(&format!("{backup_home}/.ssh/id_ed25519.pub"))?;
    let auth = format!("{vps_home}/.ssh/authorized_keys");
    let owner = format!("{user_on_vps}:{user_on_vps}");
    vps.run(&[
        "install",
        "-d",
        "-m",
        "700",
        "-o",
        user_on_vps,
        "-g",
        user_on_vps,
        &format!("{vps_home}/.ssh"),
    ])?;
    vps.write(&auth, key.as_bytes(), 0o600, &owner)?;
    let host_key = vps.read("/etc/ssh/ssh_host_ed25519_key.pub")?;
    let mut fields = host_key.split_whitespace();
    let line = format!(
        "{} {} {}\n",
        vps.addr(),
        fields.next().unwrap_or_default(),
        fields.next().unwrap_or_default()
    );
    let known = format!("{backup_home}/.ssh/known_hosts");
    let mut text = m
        .exec(&["cat", &known])
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())?;
    if !text.contains(&line) {
        text.push_str(&line);
    }
    let backup_owner = m.sh("stat -c %U:%G \"$1\"", &[backup_home])?;
    m.write(&known, text.as_bytes(), 0o644, backup_owner.trim())
}

/// Installs the odoo-standby package `deb` (built by `scripts/package`) as an operator does,
/// `dpkg -i odoo-standby_*.deb` (its dependencies are in the base), and
/// writes the operator's configuration over the package's example
/// `/etc/odoo-standby/config.toml`.
pub fn install_package(m: &Machine, deb: &Path, config: &str) -> Result<()> {
    let inside = "/root/odoo-standby.deb";
    std::fs::copy(deb, m.path(inside))
        .map_err(|e| LabError::io("cannot copy the package to", m.path(inside), e))?;
    m.sh(
        "dpkg -i /root/odoo-standby.deb >/root/odoo-standby-install.log 2>&1 || { cat /root/odoo-standby-install.log >&2; exit 1; }",
        &[],
    )?;
    m.write(
        "/etc/odoo-standby/config.toml",
        config.as_bytes(),
        0o644,
        "root:root",
    )
}

/// The lab's users, talking to an Odoo from inside machine `from`.
pub struct Client<'a> {
    from: &'a Machine,
    url: String,
}

impl<'a> Client<'a> {
    /// Users on `from` of the Odoo at `url` (`http://127.0.0.2:8069`).
    pub fn new(from: &'a Machine, url: impl Into<String>) -> Self {
        Self {
            from,
            url: url.into(),
        }
    }

    /// The Odoo it talks to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Runs one command of `lab_client.py` against [`DB`]; its JSON, and whether it exited 0.
    pub fn call(&self, cmd: &str, args: &[&str]) -> Result<(bool, serde_json::Value)> {
        let mut argv = vec!["/usr/bin/python3", CLIENT, cmd, &self.url];
        if cmd != "wait-http" {
            argv.push(DB);
        }
        argv.extend_from_slice(args);
        let out = self.from.exec(&argv)?;
        let text = String::from_utf8_lossy(&out.stdout);
        let v = serde_json::from_str(text.trim()).map_err(|_| LabError::Command {
            command: format!(
                "{}: lab-odoo-client {cmd} {}",
                self.from.name(),
                args.join(" ")
            ),
            status: out.status.to_string(),
            stderr: sys::tail(
                &format!("{text}{}", String::from_utf8_lossy(&out.stderr)),
                20,
            ),
        })?;
        Ok((out.status.success(), v))
    }

    /// `upload`: `count` attachments at once (rate 0) tagged `origin`, each one Odoo
    /// acknowledged logged in `log` (`id sha1 size`); an error unless all went in.
    pub fn upload(&self, log: &str, count: u32, origin: &str) -> Result<serde_json::Value> {
        let n = count.to_string();
        let v = self.ok(
            "upload",
            &[
                "--log", log, "--count", &n, "--rate", "0", "--origin", origin,
            ],
        )?;
        if v["uploaded"] != count {
            return Err(LabError::Command {
                command: format!("lab-odoo-client upload {} --count {n}", self.url),
                status: "exit 0".into(),
                stderr: format!("only some went in: {v}"),
            });
        }
        Ok(v)
    }

    /// Like [`Client::call`], an error unless it succeeded.
    pub fn ok(&self, cmd: &str, args: &[&str]) -> Result<serde_json::Value> {
        match self.call(cmd, args)? {
            (true, v) => Ok(v),
            (false, v) => Err(LabError::Command {
                command: format!("lab-odoo-client {cmd} {} {}", self.url, args.join(" ")),
                status: "exit 1".into(),
                stderr: v.to_string(),
            }),
        }
    }
}
