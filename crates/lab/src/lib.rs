//! The users' world, for tests: Debian 12 machines on this one host, each booted with
//! `systemd-nspawn` (systemd as PID 1, journald, `ssh.service`, postgresql-common), with its
//! own root filesystem and its own 127.x address in its own network namespace.
//!
//! - [`Lab::up`] builds (once, cached in [`base::cache_dir`]) a base root filesystem with
//!   `mmdebstrap` from this host's apt sources, gives each machine an overlay on it, boots
//!   them all, and waits until systemd runs in each.
//! - [`Machine`]: run commands inside ([`Machine::exec`], as `machinectl shell` would),
//!   kill it (SIGKILL of its whole process tree: a power cut) and [`Machine::boot`] it
//!   again with its disk as it was; [`Lab::cut`] and [`Lab::heal`] its network.
//! - [`odoo`]: a VPS as the runbook has it (PostgreSQL `15/main`, real Odoo 17 from
//!   `$ODOO_SRC` as `odoo.service`, a custom addon, a login user with sudo rules) and a
//!   backup server with `odoo-standby` installed.
//!
//! Every process is stopped by pid (from the machine's own cgroups) and every mount and
//! namespace removed when the lab is dropped, also during a panic; a lab left by a killed
//! test run is removed by the next [`Lab::up`]. Needs root, `systemd-nspawn` and
//! `mmdebstrap` (`bash scripts/install-deps` installs them). Traffic stays on 127.0.0.0/8.
//!
//! ```no_run
//! # fn demo() -> Result<(), lab::LabError> {
//! let lab = lab::Lab::up(&lab::Lab::two_machines())?;
//! let vps = lab.machine("vps")?;
//! assert_eq!(vps.run(&["hostname"])?.trim(), "vps");
//! vps.kill()?; // the VPS dies
//! vps.boot()?; // and comes back
//! # Ok(()) }
//! ```

pub mod base;
mod cgroup;
mod error;
mod machine;
mod net;
pub mod odoo;
mod sys;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

pub use error::{LabError, Result};
pub use machine::Machine;
pub use net::LAB_ADDR;

/// Where labs keep their machines' disks and logs while they run.
fn state_base() -> PathBuf {
    PathBuf::from("/var/tmp/odoo-standby-lab")
}

/// A running set of machines; see the crate docs.
#[derive(Debug)]
pub struct Lab {
    id: String,
    dir: PathBuf,
    net: net::Net,
    machines: Vec<Machine>,
}

/// `pid starttime` of this process (a pid alone may be reused).
fn owner_token(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    // Field 22 of stat is the start time; `rest` starts at field 3.
    let start = rest.split_whitespace().nth(19)?;
    Some(format!("{pid} {start}"))
}

fn owner_alive(token: &str) -> bool {
    let pid = token
        .split_whitespace()
        .next()
        .and_then(|p| p.parse::<u32>().ok());
    pid.and_then(owner_token).as_deref() == Some(token.trim())
}

/// Removes a lab's machines, namespaces and folder (its processes first, by pid).
fn teardown(id: &str, dir: &Path, machines: &[Machine]) {
    for m in machines {
        m.destroy();
    }
    let n = net::Net { id: id.to_owned() };
    n.down();
    let _ = std::fs::remove_dir_all(dir);
}

impl Lab {
    /// The default pair: `vps` at 127.0.0.2 and `backup` at 127.0.0.3.
    pub fn two_machines() -> Vec<(String, Ipv4Addr)> {
        vec![
            ("vps".into(), Ipv4Addr::new(127, 0, 0, 2)),
            ("backup".into(), Ipv4Addr::new(127, 0, 0, 3)),
        ]
    }

    /// Checks that this host can run a lab, saying what to install or change otherwise.
    pub fn preflight() -> Result<()> {
        if !sys::is_root() {
            return Err(LabError::Unsupported(
                "it needs root (mounts, network namespaces, cgroups): run the tests as root".into(),
            ));
        }
        for (prog, pkg) in [
            ("systemd-nspawn", "systemd-container"),
            ("mmdebstrap", "mmdebstrap"),
            ("nsenter", "util-linux"),
            ("ip", "iproute2"),
        ] {
            let found = std::env::var_os("PATH")
                .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(prog).is_file()));
            if !found {
                return Err(LabError::Unsupported(format!(
                    "{prog} is missing: apt-get install --no-install-recommends {pkg} (or bash scripts/install-deps)"
                )));
            }
        }
        let fs = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
        if !fs.contains("overlay") {
            sys::quiet("modprobe", &["overlay"]);
        }
        Ok(())
    }

    /// Removes labs whose test process is gone (killed before its labs were dropped).
    fn reap_stale() {
        let Ok(rd) = std::fs::read_dir(state_base()) else {
            return;
        };
        for e in rd.flatten() {
            let dir = e.path();
            // No owner file yet: a lab being made by a test running beside this one (its
            // owner file is renamed into place whole, right after its folder is made).
            let Ok(token) = std::fs::read_to_string(dir.join("owner")) else {
                continue;
            };
            if owner_alive(&token) {
                continue;
            }
            let id = e.file_name().to_string_lossy().into_owned();
            let n = net::Net { id: id.clone() };
            let machines: Vec<Machine> = std::fs::read_dir(dir.join("machines"))
                .map(|rd| {
                    rd.flatten()
                        .map(|m| {
                            let name = m.file_name().to_string_lossy().into_owned();
                            Machine::new(&name, Ipv4Addr::LOCALHOST, &dir, &id, Path::new("/"), &n)
                        })
                        .collect()
                })
                .unwrap_or_default();
            teardown(&id, &dir, &machines);
        }
    }

    /// Builds (or reuses) the base, then boots `machines` (name and 127.x address each) with
    /// fresh disks, and waits until systemd runs in every one.
    pub fn up(machines: &[(String, Ipv4Addr)]) -> Result<Self> {
        Self::preflight()?;
        for (name, addr) in machines {
            let ok_name = !name.is_empty()
                && name.len() <= 12
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
            if !ok_name || addr.octets()[0] != 127 || *addr == Ipv4Addr::LOCALHOST {
                return Err(LabError::Usage(format!(
                    "machine {name:?} at {addr}: names are up to 12 lower-case letters or digits, addresses 127.x other than 127.0.0.1"
                )));
            }
        }
        Self::reap_stale();
        let base = base::ensure()?;
        let id = format!("osl{:06x}", rand::random::<u32>() & 0xff_ffff);
        let dir = state_base().join(&id);
        std::fs::create_dir_all(dir.join("machines"))
            .map_err(|e| LabError::io("cannot create", &dir, e))?;
        let token = owner_token(std::process::id()).unwrap_or_default();
        let owner = dir.join("owner");
        std::fs::write(dir.join(".owner.tmp"), token)
            .and_then(|()| std::fs::rename(dir.join(".owner.tmp"), &owner))
            .map_err(|e| LabError::io("cannot write", &owner, e))?;
        let net = net::Net { id: id.clone() };
        let mut lab = Self {
            id: id.clone(),
            dir: dir.clone(),
            net: net.clone(),
            machines: Vec::new(),
        };
        // From here on, dropping `lab` on an error removes what was made.
        net.up()?;
        for (name, addr) in machines {
            let m = Machine::new(name, *addr, &dir, &id, &base, &net);
            lab.machines.push(m);
            net.add(name, *addr)?;
        }
        for m in &lab.machines {
            m.mount()?;
            m.configure(machines)?;
        }
        for m in &lab.machines {
            m.start()?;
        }
        Ok(lab)
    }

    /// The lab's id: the prefix of its namespaces, cgroups and nspawn machine names.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The folder holding the machines' disks and console logs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A machine by name.
    pub fn machine(&self, name: &str) -> Result<&Machine> {
        self.machines
            .iter()
            .find(|m| m.name() == name)
            .ok_or_else(|| LabError::Usage(format!("the lab has no machine {name:?}")))
    }

    /// Every machine.
    pub fn machines(&self) -> &[Machine] {
        &self.machines
    }

    /// Cuts a machine off the network (it keeps running; nothing reaches it, it reaches
    /// nothing).
    pub fn cut(&self, name: &str) -> Result<()> {
        self.machine(name)?;
        self.net.set_link(name, false)
    }

    /// Limits a machine's link to `mbit` Mbit/s each way, as a VPS in another data centre
    /// (`None`: loopback speed again). A delay cannot be added here: it needs the kernel's
    /// `sch_netem`, which this host's kernel lacks; the token bucket (`tbf`) it has.
    pub fn shape(&self, name: &str, mbit: Option<u32>) -> Result<()> {
        self.machine(name)?;
        self.net.shape(name, mbit)
    }

    /// Gives a machine its network back.
    pub fn heal(&self, name: &str) -> Result<()> {
        self.machine(name)?;
        self.net.set_link(name, true)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::env::var_os("ODOO_STANDBY_LAB_KEEP").is_some() {
            for m in &self.machines {
                let _ = m.kill();
            }
            self.net.down();
            eprintln!(
                "lab {} kept (disks and logs) in {}",
                self.id,
                self.dir.display()
            );
            return;
        }
        teardown(&self.id, &self.dir, &self.machines);
    }
}
