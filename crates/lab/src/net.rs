//! The lab's network: one network namespace per machine and one for the lab's bridge, all on
//! 127.0.0.0/8. In each machine's namespace `lo` keeps only 127.0.0.1/32 (its own
//! localhost) and a veth `eth0` holds the machine's 127.x address; the veths meet on a bridge
//! in the lab namespace. Peers see each other's real addresses, services may listen on `*`,
//! and a network cut is one `ip link set down`. The host's namespace is never touched.

use std::net::Ipv4Addr;

use crate::error::Result;
use crate::sys;

/// The bridge namespace's own address.
pub const LAB_ADDR: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 10);

/// Only 127.0.0.1 local on `lo`; the rest of 127/8 routed out of `dev`, from `addr`.
/// (`route_localnet` is set inside this namespace only.)
fn loopback_net(ns: &str, dev: &str, addr: Ipv4Addr) -> Result<()> {
    let a = format!("{addr}/8");
    let all = "net.ipv4.conf.all.route_localnet=1".to_string();
    let one = format!("net.ipv4.conf.{dev}.route_localnet=1");
    sys::run("ip", &["netns", "exec", ns, "sysctl", "-qw", &all, &one])?;
    sys::run("ip", &["-n", ns, "addr", "del", "127.0.0.1/8", "dev", "lo"])?;
    sys::run(
        "ip",
        &["-n", ns, "addr", "add", "127.0.0.1/32", "dev", "lo"],
    )?;
    sys::run(
        "ip",
        &["-n", ns, "addr", "add", &a, "dev", dev, "noprefixroute"],
    )?;
    sys::run("ip", &["-n", ns, "link", "set", dev, "up"])?;
    sys::run(
        "ip",
        &[
            "-n",
            ns,
            "route",
            "add",
            "127.0.0.0/8",
            "dev",
            dev,
            "src",
            &addr.to_string(),
        ],
    )?;
    Ok(())
}

/// Names of one lab's namespaces and links.
#[derive(Clone, Debug)]
pub(crate) struct Net {
    /// The lab's id (prefix of every namespace name).
    pub id: String,
}

impl Net {
    /// The bridge namespace.
    pub fn lab_ns(&self) -> String {
        format!("{}-lab", self.id)
    }

    /// A machine's namespace.
    pub fn ns(&self, machine: &str) -> String {
        format!("{}-{machine}", self.id)
    }

    /// A machine's link on the bridge (the one a cut takes down).
    pub fn link(machine: &str) -> String {
        format!("v-{machine}")
    }

    /// Creates the bridge namespace.
    pub fn up(&self) -> Result<()> {
        let lab = self.lab_ns();
        sys::run("ip", &["netns", "add", &lab])?;
        sys::run("ip", &["-n", &lab, "link", "set", "lo", "up"])?;
        sys::run("ip", &["-n", &lab, "link", "add", "br0", "type", "bridge"])?;
        loopback_net(&lab, "br0", LAB_ADDR)
    }

    /// Creates a machine's namespace and plugs it into the bridge (nothing when it exists: a
    /// machine that crashed keeps its namespace).
    pub fn add(&self, machine: &str, addr: Ipv4Addr) -> Result<()> {
        let ns = self.ns(machine);
        if std::path::Path::new("/run/netns").join(&ns).exists() {
            return Ok(());
        }
        let lab = self.lab_ns();
        let link = Self::link(machine);
        sys::run("ip", &["netns", "add", &ns])?;
        sys::run("ip", &["-n", &ns, "link", "set", "lo", "up"])?;
        sys::run(
            "ip",
            &[
                "-n", &lab, "link", "add", &link, "type", "veth", "peer", "name", "eth0", "netns",
                &ns,
            ],
        )?;
        sys::run(
            "ip",
            &["-n", &lab, "link", "set", &link, "master", "br0", "up"],
        )?;
        loopback_net(&ns, "eth0", addr)
    }

    /// Cuts (`false`) or restores (`true`) a machine's link to the others.
    pub fn set_link(&self, machine: &str, up: bool) -> Result<()> {
        let state = if up { "up" } else { "down" };
        sys::run(
            "ip",
            &[
                "-n",
                &self.lab_ns(),
                "link",
                "set",
                &Self::link(machine),
                state,
            ],
        )
        .map(drop)
    }

    /// Limits a machine's link to `mbit` Mbit/s each way (a token bucket, `tc qdisc tbf`, on
    /// both ends of its veth); `None` lifts the limit. Only the lab's own namespaces change.
    pub fn shape(&self, machine: &str, mbit: Option<u32>) -> Result<()> {
        for (ns, dev) in [
            (self.lab_ns(), Self::link(machine)),
            (self.ns(machine), "eth0".to_owned()),
        ] {
            match mbit {
                Some(r) => {
                    let rate = format!("{r}mbit");
                    // A burst of 1 ms at that rate, at least 32 KiB; 50 ms of queue.
                    let burst = format!("{}kb", (r / 8).max(32));
                    sys::run(
                        "ip",
                        &[
                            "netns", "exec", &ns, "tc", "qdisc", "replace", "dev", &dev, "root",
                            "tbf", "rate", &rate, "burst", &burst, "latency", "50ms",
                        ],
                    )?;
                }
                None => {
                    sys::quiet(
                        "ip",
                        &[
                            "netns", "exec", &ns, "tc", "qdisc", "del", "dev", &dev, "root",
                        ],
                    );
                }
            }
        }
        Ok(())
    }

    /// Removes every namespace of this lab (and `/run/netns` when that leaves it empty).
    pub fn down(&self) {
        if let Ok(dir) = std::fs::read_dir("/run/netns") {
            let prefix = format!("{}-", self.id);
            for e in dir.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with(&prefix) {
                    sys::quiet("ip", &["netns", "del", &name]);
                }
            }
        }
        // `ip netns add` made /run/netns a bind mount of itself; undo it when nobody uses it.
        let empty = std::fs::read_dir("/run/netns").is_ok_and(|mut d| d.next().is_none());
        if empty {
            let _ = sys::output("umount", &["/run/netns"], None);
            let _ = std::fs::remove_dir("/run/netns");
        }
    }
}
