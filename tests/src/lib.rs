//! End-to-end tests of whole operations (protect, failover, failback), driven through the
//! `odoo-standby` binary: on the two-machine lab with real Odoo (the users' world, [`LabWorld`])
//! and on the one-machine sandbox (fast feedback).
//!
//! ```no_run
//! let w = odoo_standby_tests::LabWorld::new();
//! w.ok(&["protect", "vps1", "--restart-vps"]);
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use lab::odoo::Client;
use lab::{Lab, Machine};

/// promtool (Prometheus' checker): `$PROMTOOL`, else the one `scripts/install-deps` unpacks,
/// else `promtool` on PATH.
pub fn promtool() -> PathBuf {
    if let Some(p) = std::env::var_os("PROMTOOL") {
        return PathBuf::from(p);
    }
    let unpacked = Path::new("/var/cache/odoo-standby-tools/prometheus/usr/bin/promtool");
    if unpacked.exists() {
        return unpacked.to_owned();
    }
    PathBuf::from("promtool")
}

/// Runs `promtool check metrics` on `text`; panics with promtool's words when it objects.
pub fn assert_promtool_accepts(text: &str) {
    use std::io::Write;
    let mut child = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("promtool: {e} (bash scripts/install-deps unpacks it)"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The `odoo-standby` binary of this workspace with its test hooks (kill points, command
/// recording), built for this test run's profile: cargo does nothing when it is up to date,
/// and a binary left by another build (without the hooks) is rebuilt, never used.
/// `ODOO_STANDBY_TEST_BIN=PATH` runs the tests against another build instead (an older main
/// built with `--features test-hooks`: to show that a test fails there).
pub fn binary() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            if let Some(other) = std::env::var_os("ODOO_STANDBY_TEST_BIN") {
                return PathBuf::from(other);
            }
            let exe = std::env::current_exe().unwrap();
            let dir = exe.parent().and_then(Path::parent).unwrap();
            let release = dir.file_name().is_some_and(|n| n == "release");
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut c = Command::new(cargo);
            c.args([
                "build",
                "-q",
                "-p",
                "odoo-standby",
                "--features",
                "test-hooks",
            ]);
            if release {
                c.arg("--release");
            }
            let ok = c.status().unwrap();
            assert!(ok.success(), "cannot build odoo-standby");
            dir.join("odoo-standby")
        })
        .clone()
}

/// The `odoo-standby` an operator installs: the same profile as the caller, without test
/// hooks (the demo and the benchmarks run it).
pub fn production_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut c = Command::new(cargo);
    c.args(["build", "-q", "-p", "odoo-standby"]);
    if dir.file_name().is_some_and(|n| n == "release") {
        c.arg("--release");
    }
    assert!(c.status().unwrap().success(), "cannot build odoo-standby");
    dir.join("odoo-standby")
}

/// The Debian package of this workspace (`scripts/package`), built for this test run's
/// profile into `target/<profile>/lab-deb[-hooks]`; `hooks`: the program with its test hooks
/// (kill points, command recording), as [`binary`] is. Built once per test process.
fn package(hooks: bool) -> PathBuf {
    static BUILT: [std::sync::OnceLock<PathBuf>; 2] =
        [std::sync::OnceLock::new(), std::sync::OnceLock::new()];
    BUILT[usize::from(hooks)]
        .get_or_init(|| {
            let exe = std::env::current_exe().unwrap();
            let dir = exe.parent().and_then(Path::parent).unwrap().to_owned();
            let release = dir.file_name().is_some_and(|n| n == "release");
            let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
            let out = dir.join(if hooks { "lab-deb-hooks" } else { "lab-deb" });
            let mut c = Command::new("bash");
            c.arg(root.join("scripts/package"))
                .env("PACKAGE_PROFILE", if release { "release" } else { "dev" })
                .env("PACKAGE_OUT", &out);
            if hooks {
                c.env("PACKAGE_FEATURES", "test-hooks");
            }
            let o = c.output().unwrap();
            assert!(
                o.status.success(),
                "scripts/package failed: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            let text = String::from_utf8_lossy(&o.stdout);
            PathBuf::from(text.lines().last().unwrap_or_default().trim())
        })
        .clone()
}

/// The package the lab's backup installs for the tests: the program with its test hooks.
pub fn test_package() -> PathBuf {
    package(true)
}

/// The package an operator installs (the demo and the benchmarks install it in the lab).
pub fn production_package() -> PathBuf {
    package(false)
}

/// The configuration an operator writes on the backup for the lab's VPS.
pub const LAB_CONFIG: &str = r#"# /etc/odoo-standby/config.toml on the lab's backup server
[backup]
root = "/opt/odoouser/respaldo_filestore"
odoo_source = "/opt/odoouser/odoo"
os_user = "odoouser"
address = "127.0.0.3"
pg_version = 15
ssh_key = "/opt/odoouser/.ssh/id_ed25519"
known_hosts = "/opt/odoouser/.ssh/known_hosts"

[[instance]]
name = "vps1"
ssh = "odoo@127.0.0.2"
pg = "host=127.0.0.2 port=5432"
standby_port = 5435
data_dir = "/var/opt/odoo/data_dir"
sources = "/opt/odoo/sources"
odoo_conf = "/etc/odoo.conf"
"#;

/// The second instance of [`LabWorld::fleet`]: another VPS whose Odoo also serves on 8069.
pub const FLEET_SECOND: &str = r#"
[[instance]]
name = "vps2"
ssh = "odoo@127.0.0.4"
pg = "host=127.0.0.4 port=5432"
standby_port = 5436
data_dir = "/var/opt/odoo/data_dir"
sources = "/opt/odoo/sources"
odoo_conf = "/etc/odoo.conf"
"#;

/// The VPS's Odoo, as its users reach it.
pub const VPS_URL: &str = "http://127.0.0.2:8069";
/// The backup's Odoo after a failover.
pub const BACKUP_URL: &str = "http://127.0.0.3:8069";

/// The lab with the runbook's VPS (real Odoo) and backup (odoo-standby installed, the VPS's
/// sudoers drop-in installed from `odoo-standby vps-sudoers`).
pub struct LabWorld {
    /// The machines.
    pub lab: Lab,
    /// Whether every odoo-standby run is echoed on stderr (tests: yes; the demo: no).
    pub echo: bool,
    /// A file in the backup machine where odoo-standby records every command it runs, with
    /// its plan step (the `test-hooks` build's `ODOO_STANDBY_RECORD`).
    pub record: Option<String>,
}

impl Default for LabWorld {
    fn default() -> Self {
        Self::new()
    }
}

impl LabWorld {
    /// Boots and sets up the world (about 40 s with a cached base).
    pub fn new() -> Self {
        Self::with_config(LAB_CONFIG, test_package())
    }

    /// The world a lab benchmark measures: the lab's configuration, the release package (no
    /// test hooks), commands not echoed.
    pub fn for_bench() -> Self {
        let mut w = Self::with_config(LAB_CONFIG, production_package());
        w.echo = false;
        w
    }

    /// The world with another odoo-standby configuration and package (a .deb, installed in
    /// the backup machine with `dpkg -i`).
    pub fn with_config(config: &str, deb: PathBuf) -> Self {
        Self::build(config, deb, &[("vps", Ipv4Addr::new(127, 0, 0, 2), "vps1")])
    }

    /// A fleet: two VPSs, `vps` (127.0.0.2, instance `vps1`) and `vps2` (127.0.0.4, instance
    /// `vps2`), each with its own real Odoo serving on 8069, one backup protecting both.
    pub fn fleet() -> Self {
        Self::build(
            &format!("{LAB_CONFIG}{FLEET_SECOND}"),
            test_package(),
            &[
                ("vps", Ipv4Addr::new(127, 0, 0, 2), "vps1"),
                ("vps2", Ipv4Addr::new(127, 0, 0, 4), "vps2"),
            ],
        )
    }

    /// Boots the backup and the VPS machines `vpss` (name, address, instance), sets up real
    /// Odoo on each VPS (in parallel), the backup for all of them, installs the package
    /// and `config`, and on each VPS the sudoers drop-in the product prints for its instance.
    fn build(config: &str, deb: PathBuf, vpss: &[(&str, Ipv4Addr, &str)]) -> Self {
        let src = lab::odoo::source().unwrap();
        let mut machines: Vec<(String, Ipv4Addr)> =
            vpss.iter().map(|(n, a, _)| (n.to_string(), *a)).collect();
        machines.push(("backup".into(), Ipv4Addr::new(127, 0, 0, 3)));
        let lab = Lab::up(&machines).unwrap();
        let w = Self {
            lab,
            echo: true,
            record: None,
        };
        std::thread::scope(|s| {
            let vps: Vec<_> = vpss
                .iter()
                .map(|(n, _, _)| {
                    let m = w.lab.machine(n).unwrap();
                    let src = &src;
                    s.spawn(move || lab::odoo::install_vps(m, src).unwrap())
                })
                .collect();
            for h in vps {
                h.join().unwrap();
            }
        });
        lab::odoo::install_backup(w.backup(), &src, w.vps()).unwrap();
        for (n, _, _) in &vpss[1..] {
            let m = w.lab.machine(n).unwrap();
            lab::odoo::trust(w.backup(), m, "odoo", "/var/opt/odoo", "/opt/odoouser").unwrap();
        }
        lab::odoo::install_package(w.backup(), &deb, config).unwrap();
        // The operator installs the drop-in the product prints, exactly as printed.
        for (n, _, instance) in vpss {
            let m = w.lab.machine(n).unwrap();
            let rules = w.ok(&["vps-sudoers", instance]);
            m.write(
                "/root/odoo-standby.sudoers",
                rules.as_bytes(),
                0o440,
                "root:root",
            )
            .unwrap();
            m.run(&["visudo", "-cf", "/root/odoo-standby.sudoers"])
                .unwrap();
            m.run(&[
                "install",
                "-m",
                "0440",
                "/root/odoo-standby.sudoers",
                "/etc/sudoers.d/odoo-standby",
            ])
            .unwrap();
        }
        w
    }

    /// The VPS machine.
    pub fn vps(&self) -> &Machine {
        self.lab.machine("vps").unwrap()
    }

    /// The backup machine.
    pub fn backup(&self) -> &Machine {
        self.lab.machine("backup").unwrap()
    }

    /// Users of the VPS's Odoo (their requests leave from the backup machine).
    pub fn vps_users(&self) -> Client<'_> {
        Client::new(self.backup(), VPS_URL)
    }

    /// Users of the backup's Odoo.
    pub fn backup_users(&self) -> Client<'_> {
        Client::new(self.backup(), BACKUP_URL)
    }

    /// Runs `odoo-standby ARGS` inside the backup machine, as the operator would (root).
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_env(&[], args)
    }

    /// [`LabWorld::cli`] with `VAR=value` settings in its environment (a kill point:
    /// `ODOO_STANDBY_KILL_AFTER=promote`).
    pub fn cli_env(&self, vars: &[&str], args: &[&str]) -> Output {
        let rec = self
            .record
            .as_ref()
            .map(|r| format!("ODOO_STANDBY_RECORD={r}"));
        let mut argv = vec!["env"];
        if let Some(r) = &rec {
            argv.push(r.as_str());
        }
        argv.extend_from_slice(vars);
        argv.push("/usr/bin/odoo-standby");
        argv.extend_from_slice(args);
        let out = self.backup().exec(&argv).unwrap();
        if !self.echo && out.status.success() {
            return out;
        }
        eprintln!(
            "backup# odoo-standby {} -> {}\n{}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// [`LabWorld::cli`] that must succeed; its stdout. On failure the journals of the
    /// units involved are printed first.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        if !out.status.success() {
            self.dump_journals();
        }
        assert!(out.status.success(), "odoo-standby {args:?} failed");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Prints the end of the journals of every unit of the lifecycle, on both machines.
    pub fn dump_journals(&self) {
        for (m, units) in [
            (
                self.backup(),
                &["odoo_vps1", "odoo-standby-sync@vps1", "postgresql@15-vps1"][..],
            ),
            (self.vps(), &["odoo", "postgresql@15-main"][..]),
        ] {
            for u in units {
                if let Ok(o) = m.exec(&["journalctl", "-q", "--no-pager", "-n", "40", "-u", u]) {
                    eprintln!(
                        "--- {} journal of {u}:\n{}",
                        m.name(),
                        String::from_utf8_lossy(&o.stdout)
                    );
                }
            }
        }
    }

    /// `status vps1 --json`: exit code and the instance's object.
    pub fn status(&self) -> (i32, serde_json::Value) {
        let out = self.cli(&["status", "vps1", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        (out.status.code().unwrap_or(-1), v[0].clone())
    }

    /// Asserts that status names the problem `code` in all three of its forms: in the JSON
    /// (exit 1), in the text table (exit 1) and in `--nagios` (exit 2 or 1 as its severity
    /// says, the code in the first line). Returns the problem's JSON object.
    pub fn assert_problem(&self, code: &str) -> serde_json::Value {
        let (exit, s) = self.status();
        assert_eq!(exit, 1, "{s}");
        let found = s["problems"]
            .as_array()
            .and_then(|v| v.iter().find(|p| p["code"] == code).cloned())
            .unwrap_or_else(|| panic!("no problem {code} in {s}"));
        let text = self.cli(&["status", "vps1"]);
        let shown = String::from_utf8_lossy(&text.stdout).into_owned();
        assert_eq!(text.status.code(), Some(1), "{shown}");
        assert!(
            shown.contains(&format!(" {code}: ")),
            "{code} not in:\n{shown}"
        );
        let nagios = self.cli(&["status", "vps1", "--nagios"]);
        let said = String::from_utf8_lossy(&nagios.stdout).into_owned();
        let worst = s["severity"].as_str().unwrap_or_default();
        let expect = match worst {
            "critical" => 2,
            "warning" => 1,
            _ => 3,
        };
        assert_eq!(nagios.status.code(), Some(expect), "{said}");
        let first = said.lines().next().unwrap_or_default();
        assert!(
            first.starts_with(&format!("ODOO-STANDBY {} - ", worst.to_uppercase()))
                && first.contains(code)
                && first.contains(" | "),
            "{said}"
        );
        found
    }

    /// Waits until status says healthy (fails after `seconds`).
    pub fn wait_healthy(&self, seconds: u64) -> serde_json::Value {
        let start = Instant::now();
        loop {
            let (code, s) = self.status();
            if code == 0 {
                assert_eq!(s["healthy"], true, "{s}");
                return s;
            }
            if start.elapsed() >= Duration::from_secs(seconds) {
                self.dump_journals();
                panic!("never healthy: {s}");
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    /// Users uploading attachments to the VPS's Odoo in the background, `rate` a second
    /// (from the backup machine), each one Odoo acknowledged logged in `log` there.
    pub fn uploader(&self, log: &str, origin: &str, rate: f64) -> std::process::Child {
        let rate = rate.to_string();
        self.backup()
            .command(&[
                "/usr/bin/python3",
                lab::odoo::CLIENT,
                "upload",
                VPS_URL,
                lab::odoo::DB,
                "--log",
                log,
                "--rate",
                &rate,
                "--origin",
                origin,
            ])
            .unwrap()
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Lines in a file of the backup machine (0 when it is not there).
    pub fn lines(&self, path: &str) -> usize {
        self.backup()
            .exec(&["cat", path])
            .map(|o| String::from_utf8_lossy(&o.stdout).lines().count())
            .unwrap_or(0)
    }

    /// Waits until `path` on the backup machine has `n` lines.
    pub fn wait_lines(&self, path: &str, n: usize) {
        let start = Instant::now();
        while self.lines(path) < n {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "{path} stays under {n} lines"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs `odoo-standby ARGS` in the backup machine while polling the backup's Odoo
    /// (`/web/login` on 127.0.0.1:8069 there) every 100 ms; the output and the seconds from
    /// the command's start to the first 200 (`None` when none came).
    pub fn timed_to_first_200(&self, args: &[&str]) -> (Output, Option<f64>) {
        use std::sync::atomic::{AtomicBool, Ordering};
        let failed = AtomicBool::new(false);
        let start = Instant::now();
        std::thread::scope(|scope| {
            let poll = scope.spawn(|| {
                let url = "http://127.0.0.1:8069/web/login";
                while !failed.load(Ordering::SeqCst) && start.elapsed() < Duration::from_secs(180) {
                    let o = self
                        .backup()
                        .exec(&[
                            "curl",
                            "-s",
                            "-m",
                            "2",
                            "-o",
                            "/dev/null",
                            "-w",
                            "%{http_code}",
                            url,
                        ])
                        .ok();
                    if o.is_some_and(|o| o.stdout == b"200") {
                        return Some(start.elapsed().as_secs_f64());
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                None
            });
            let out = self.cli(args);
            if !out.status.success() {
                failed.store(true, Ordering::SeqCst);
            }
            let first = poll.join().unwrap_or(None);
            (out, first)
        })
    }

    /// SQL on the VPS's cluster as postgres (database `db`); the first column of each row.
    pub fn vps_sql(&self, db: &str, sql: &str) -> Vec<String> {
        sql_on(self.vps(), 5432, db, sql)
    }

    /// SQL on the backup's instance cluster as postgres.
    pub fn backup_sql(&self, db: &str, sql: &str) -> Vec<String> {
        sql_on(self.backup(), 5435, db, sql)
    }
}

/// How many runs a benchmark makes: `RUNS` from the environment, else `default`.
pub fn runs(default: usize) -> usize {
    std::env::var("RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(default)
}

/// Waits until `ok` (checked every 500 ms); fails the test after `seconds`, naming `what`.
pub fn wait<F: FnMut() -> bool>(what: &str, seconds: u64, mut ok: F) {
    let start = Instant::now();
    while !ok() {
        assert!(
            start.elapsed() < Duration::from_secs(seconds),
            "{what}: not within {seconds} s"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The SHA-1 of every upload logged in `log` on the backup machine (the users' client
/// writes lines `id sha1 size`).
pub fn uploaded(w: &LabWorld, log: &str) -> Vec<String> {
    w.backup()
        .read(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_owned))
        .collect()
}

/// SQL on machine `m`'s cluster at `port`, as postgres; the rows.
pub fn sql_on(m: &Machine, port: u16, db: &str, sql: &str) -> Vec<String> {
    let p = port.to_string();
    m.run_stdin(
        &[
            "runuser",
            "-u",
            "postgres",
            "--",
            "psql",
            "-X",
            "-q",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-p",
            &p,
            "-d",
            db,
        ],
        Some(sql.as_bytes()),
    )
    .unwrap()
    .lines()
    .map(str::to_owned)
    .collect()
}
