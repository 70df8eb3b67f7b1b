//! One machine: a Debian 12 root (an overlay on the cached base, its upper layer is the
//! machine's disk) booted with `systemd-nspawn` in its own network namespace and cgroups.
//! It can be killed (SIGKILL of its whole process tree: the machine dies) and booted again
//! with its disk as it was.

use std::ffi::CString;
use std::net::Ipv4Addr;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::{LabError, Result};
use crate::net::Net;
use crate::{cgroup, sys};

/// PATH inside a machine.
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Default)]
struct Running {
    nspawn: Option<Child>,
    leader: Option<i32>,
}

/// One machine of a [`crate::Lab`].
pub struct Machine {
    name: String,
    addr: Ipv4Addr,
    dir: PathBuf,
    lab_id: String,
    base: PathBuf,
    net: Net,
    running: Mutex<Running>,
}

impl std::fmt::Debug for Machine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Machine")
            .field("name", &self.name)
            .field("addr", &self.addr)
            .field("dir", &self.dir)
            .finish()
    }
}

/// Whether something is mounted exactly at `path`.
fn mounted(path: &Path) -> bool {
    mounts_under(path).iter().any(|m| m == path)
}

/// Mount points at or below `path`, deepest first.
fn mounts_under(path: &Path) -> Vec<PathBuf> {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(m.replace("\\040", " ")))
        .filter(|m| m.starts_with(path))
        .collect();
    v.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    v.dedup();
    v
}

impl Machine {
    pub(crate) fn new(
        name: &str,
        addr: Ipv4Addr,
        lab_dir: &Path,
        lab_id: &str,
        base: &Path,
        net: &Net,
    ) -> Self {
        Self {
            name: name.to_owned(),
            addr,
            dir: lab_dir.join("machines").join(name),
            lab_id: lab_id.to_owned(),
            base: base.to_owned(),
            net: net.clone(),
            running: Mutex::new(Running::default()),
        }
    }

    /// Its name (also its host name and how the others resolve it).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its address on the lab network.
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// Its root filesystem as seen from the host (only while it is mounted).
    pub fn root(&self) -> PathBuf {
        self.dir.join("root")
    }

    /// A host path for `path` inside the machine.
    pub fn path(&self, path: &str) -> PathBuf {
        self.root().join(path.trim_start_matches('/'))
    }

    fn group(&self) -> String {
        format!("{}-{}", self.lab_id, self.name)
    }

    fn nspawn_name(&self) -> String {
        format!("{}-{}", self.lab_id, self.name)
    }

    fn lock<'a>(&'a self) -> std::sync::MutexGuard<'a, Running> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Mounts its root (the base below, its disk above) unless mounted.
    pub(crate) fn mount(&self) -> Result<()> {
        for d in ["upper", "work", "root"] {
            let p = self.dir.join(d);
            std::fs::create_dir_all(&p).map_err(|e| LabError::io("cannot create", &p, e))?;
        }
        if mounted(&self.root()) {
            return Ok(());
        }
        let opts = format!(
            "lowerdir={},upperdir={},workdir={}",
            self.base.display(),
            self.dir.join("upper").display(),
            self.dir.join("work").display()
        );
        let root = self.root().display().to_string();
        sys::run(
            "mount",
            &["-t", "overlay", &self.nspawn_name(), "-o", &opts, &root],
        )
        .map(drop)
    }

    /// What a fresh machine gets before its first boot: host name, hosts, machine id, its own
    /// SSH host keys, sshd settings of a server. Clusters keep Debian's defaults (they listen
    /// on localhost only until someone changes that, as on a fresh server).
    pub(crate) fn configure(&self, all: &[(String, Ipv4Addr)]) -> Result<()> {
        let w = |p: &str, text: String| -> Result<()> {
            let path = self.path(p);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| LabError::io("cannot create", parent, e))?;
            }
            std::fs::write(&path, text).map_err(|e| LabError::io("cannot write", &path, e))
        };
        w("etc/hostname", format!("{}\n", self.name))?;
        let mut hosts =
            String::from("127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n");
        for (n, a) in all {
            hosts.push_str(&format!("{a} {n}\n"));
        }
        w("etc/hosts", hosts)?;
        let id: String = (0..16)
            .map(|_| format!("{:02x}", rand::random::<u8>()))
            .collect();
        w("etc/machine-id", format!("{id}\n"))?;
        w(
            "etc/ssh/sshd_config.d/10-lab.conf",
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nUseDNS no\n".into(),
        )?;
        let root = self.root().display().to_string();
        sys::run("chroot", &[&root, "ssh-keygen", "-q", "-A"]).map(drop)
    }

    /// The machine id (`/etc/machine-id`), which nspawn needs as `--uuid`.
    fn machine_id(&self) -> Result<String> {
        let p = self.path("etc/machine-id");
        std::fs::read_to_string(&p)
            .map(|s| s.trim().to_owned())
            .map_err(|e| LabError::io("cannot read", &p, e))
    }

    /// Boots it (its root must be mounted) and waits until systemd runs.
    pub(crate) fn start(&self) -> Result<()> {
        let group = self.group();
        let mut procs = Vec::new();
        for d in cgroup::dirs(&group) {
            std::fs::create_dir_all(&d).map_err(|e| LabError::io("cannot create cgroup", &d, e))?;
            let p = CString::new(d.join("cgroup.procs").as_os_str().as_encoded_bytes())
                .map_err(|_| LabError::Usage(format!("bad cgroup path {}", d.display())))?;
            procs.push(p);
        }
        let log_path = self.dir.join("console.log");
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| LabError::io("cannot open", &log_path, e))?;
        let log2 = log
            .try_clone()
            .map_err(|e| LabError::io("cannot open", &log_path, e))?;
        let mut cmd = Command::new("systemd-nspawn");
        cmd.arg(format!("--machine={}", self.nspawn_name()))
            .arg(format!("--hostname={}", self.name))
            .arg("-D")
            .arg(self.root())
            .args([
                "--boot",
                "--register=no",
                "--keep-unit",
                "--link-journal=no",
            ])
            .arg(format!("--uuid={}", self.machine_id()?))
            .arg("--kill-signal=SIGRTMIN+4")
            .arg(format!(
                "--network-namespace-path=/run/netns/{}",
                self.net.ns(&self.name)
            ))
            .arg("--console=read-only")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        // SAFETY: between fork and exec only async-signal-safe calls (getpid, open, write,
        // close, close_range) on memory prepared before the fork.
        unsafe {
            cmd.pre_exec(move || {
                let pid = libc::getpid();
                let mut buf = [0u8; 16];
                let mut n = buf.len();
                let mut v = pid;
                loop {
                    n -= 1;
                    buf[n] = b'0' + (v % 10) as u8;
                    v /= 10;
                    if v == 0 {
                        break;
                    }
                }
                for p in &procs {
                    let fd = libc::open(p.as_ptr(), libc::O_WRONLY);
                    if fd < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    let w = libc::write(fd, buf[n..].as_ptr().cast(), buf.len() - n);
                    libc::close(fd);
                    if w < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                // No descriptor of ours (test harness pipes) lives on in the machine.
                libc::syscall(
                    libc::SYS_close_range,
                    3u32,
                    u32::MAX,
                    4u32, /* CLOEXEC */
                );
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| LabError::io("cannot start systemd-nspawn for", self.root(), e))?;
        let nspawn_pid = child.id() as i32;
        self.lock().nspawn = Some(child);
        let leader = self.wait_leader(nspawn_pid)?;
        self.lock().leader = Some(leader);
        std::fs::write(self.dir.join("leader.pid"), format!("{leader}\n"))
            .map_err(|e| LabError::io("cannot write", self.dir.join("leader.pid"), e))?;
        self.wait_booted()
    }

    fn wait_leader(&self, nspawn: i32) -> Result<i32> {
        let ours = std::fs::read_link("/proc/self/ns/pid").ok();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if let Ok(tasks) = std::fs::read_dir(format!("/proc/{nspawn}/task")) {
                for t in tasks.flatten() {
                    let kids =
                        std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
                    for k in kids
                        .split_whitespace()
                        .filter_map(|k| k.parse::<i32>().ok())
                    {
                        let ns = std::fs::read_link(format!("/proc/{k}/ns/pid")).ok();
                        if ns.is_some() && ns != ours {
                            return Ok(k);
                        }
                    }
                }
            }
            if !sys::alive(nspawn) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(LabError::Timeout {
            what: format!("{}: the machine's PID 1 to appear", self.name),
            seconds: 20,
            detail: self.console_tail(),
        })
    }

    fn console_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("console.log")).unwrap_or_default();
        sys::tail(&text, 20)
    }

    fn wait_booted(&self) -> Result<()> {
        let start = Instant::now();
        let mut state = String::new();
        while start.elapsed() < Duration::from_secs(90) {
            if let Ok(out) = self.exec(&["systemctl", "is-system-running"]) {
                state = String::from_utf8_lossy(&out.stdout).trim().to_owned();
                if state == "running" || state == "degraded" {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(LabError::Timeout {
            what: format!("{}: systemd to finish booting (state {state:?})", self.name),
            seconds: 90,
            detail: self.console_tail(),
        })
    }

    /// Whether it runs.
    pub fn is_running(&self) -> bool {
        self.lock().leader.is_some_and(sys::alive)
    }

    fn leader(&self) -> Result<i32> {
        self.lock()
            .leader
            .filter(|l| sys::alive(*l))
            .ok_or_else(|| LabError::Usage(format!("machine {} is not running", self.name)))
    }

    /// Runs `argv` inside the machine, as root, with a clean environment; its output,
    /// whatever its exit status. (`nsenter` into every namespace of its PID 1: what
    /// `machinectl shell` would do where the host runs systemd-machined.)
    pub fn exec(&self, argv: &[&str]) -> Result<Output> {
        self.exec_stdin(argv, None)
    }

    /// [`Machine::exec`] with `stdin`.
    pub fn exec_stdin(&self, argv: &[&str], stdin: Option<&[u8]>) -> Result<Output> {
        let args = self.nsenter_args(argv)?;
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        sys::output("nsenter", &args, stdin)
    }

    fn nsenter_args(&self, argv: &[&str]) -> Result<Vec<String>> {
        let leader = self.leader()?.to_string();
        let mut args: Vec<String> = ["-t", &leader, "-a", "env", "-i"]
            .map(String::from)
            .to_vec();
        args.push(format!("PATH={PATH}"));
        args.extend(["HOME=/root", "LANG=C.UTF-8", "TERM=dumb"].map(String::from));
        args.extend(argv.iter().map(|a| (*a).to_owned()));
        Ok(args)
    }

    /// A command that runs `argv` inside the machine, for callers that spawn it and go on
    /// (a load that runs while the test does something else). Its stdin is null.
    pub fn command(&self, argv: &[&str]) -> Result<Command> {
        let mut c = Command::new("nsenter");
        c.args(self.nsenter_args(argv)?).stdin(Stdio::null());
        Ok(c)
    }

    /// Runs `argv` inside the machine; an error unless it exits 0. Returns stdout.
    pub fn run(&self, argv: &[&str]) -> Result<String> {
        self.run_stdin(argv, None)
    }

    /// [`Machine::run`] with `stdin`.
    pub fn run_stdin(&self, argv: &[&str], stdin: Option<&[u8]>) -> Result<String> {
        let out = self.exec_stdin(argv, stdin)?;
        let shown = format!("{}: {}", self.name, argv.join(" "));
        let out = sys::check(shown, out)?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs a shell script inside the machine (`sh -c SCRIPT sh ARGS...`); stdout.
    pub fn sh(&self, script: &str, args: &[&str]) -> Result<String> {
        let mut argv = vec!["sh", "-c", script, "sh"];
        argv.extend_from_slice(args);
        self.run(&argv)
    }

    /// Writes a file inside the machine with this mode and owner (`user:group`).
    pub fn write(&self, path: &str, contents: &[u8], mode: u32, owner: &str) -> Result<()> {
        let m = format!("{mode:o}");
        self.run_stdin(
            &[
                "sh",
                "-c",
                "set -e; mkdir -p \"$(dirname \"$1\")\"; cat > \"$1.tmp\"; chmod \"$2\" \"$1.tmp\"; chown \"$3\" \"$1.tmp\"; mv -f \"$1.tmp\" \"$1\"",
                "sh",
                path,
                &m,
                owner,
            ],
            Some(contents),
        )
        .map(drop)
    }

    /// Reads a file inside the machine.
    pub fn read(&self, path: &str) -> Result<String> {
        self.run(&["cat", "--", path])
    }

    /// Kills the machine: SIGKILL of every one of its processes, by pid from its cgroups (as
    /// a power cut would), then removes what that leaves on the host (mount, lock files),
    /// keeping its disk. Nothing when it is not running.
    pub fn kill(&self) -> Result<()> {
        let group = self.group();
        let start = Instant::now();
        loop {
            let pids = cgroup::pids(&group);
            if pids.is_empty() {
                break;
            }
            for p in pids {
                sys::signal(p, libc::SIGKILL);
            }
            if start.elapsed() > Duration::from_secs(15) {
                return Err(LabError::Timeout {
                    what: format!("{}: every process killed", self.name),
                    seconds: 15,
                    detail: format!("{:?}", cgroup::pids(&group)),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut r = self.lock();
        if let Some(mut c) = r.nspawn.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        r.leader = None;
        drop(r);
        self.clean_host_side();
        Ok(())
    }

    /// Removes what a dead machine leaves on the host: nspawn's lock and propagation
    /// folders, the mounts of its root, its cgroup directories. Keeps its disk.
    fn clean_host_side(&self) {
        let root = self.root();
        if mounted(&root) {
            if let Ok(md) = std::fs::metadata(&root) {
                let lock = format!("/run/systemd/nspawn/locks/inode-{}:{}", md.dev(), md.ino());
                let _ = std::fs::remove_file(lock);
            }
        }
        for m in mounts_under(&root) {
            let m = m.display().to_string();
            if sys::output("umount", &[&m], None)
                .map(|o| !o.status.success())
                .unwrap_or(true)
            {
                sys::quiet("umount", &["-l", &m]);
            }
        }
        let _ = std::fs::remove_dir(format!(
            "/run/systemd/nspawn/propagate/{}",
            self.nspawn_name()
        ));
        let _ = std::fs::remove_file(format!(
            "/run/systemd/nspawn/locks/machine-{}",
            self.nspawn_name()
        ));
        cgroup::remove(&self.group());
    }

    /// Boots it again with its disk as it was (after [`Machine::kill`]); its enabled units
    /// start by themselves, as after a power cut.
    pub fn boot(&self) -> Result<()> {
        if self.is_running() {
            return Err(LabError::Usage(format!(
                "machine {} is running: kill it first",
                self.name
            )));
        }
        self.clean_host_side();
        self.net.add(&self.name, self.addr)?;
        self.mount()?;
        self.start()
    }

    /// Kills it and removes its disk too.
    pub(crate) fn destroy(&self) {
        let _ = self.kill();
        self.clean_host_side();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
