//! The base root filesystem every machine boots from: Debian 12 built once with `mmdebstrap`
//! from the apt sources this host uses, cached outside the repository and shared read-only by
//! all machines (each writes only its own overlay layer).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{LabError, Result};
use crate::sys;

/// Packages of every machine: systemd as init, sshd, postgresql-common, rsync, sudo, and the
/// Python packages real Odoo 17 needs from Debian (`../shared/odoo/README.md`, section 3).
pub const PACKAGES: &[&str] = &[
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "openssh-client",
    "postgresql",
    "rsync",
    "python3",
    "sudo",
    "iproute2",
    "procps",
    "less",
    "curl",
    // The operator's view of an installed package: `man`, and Tab.
    "man-db",
    "bash-completion",
    // Odoo 17's runtime, from Debian only.
    "python3-babel",
    "python3-chardet",
    "python3-dateutil",
    "python3-decorator",
    "python3-docutils",
    "python3-freezegun",
    "python3-geoip2",
    "python3-pil",
    "python3-jinja2",
    "python3-libsass",
    "python3-lxml",
    "python3-markupsafe",
    "python3-num2words",
    "python3-ofxparse",
    "python3-passlib",
    "python3-polib",
    "python3-psutil",
    "python3-psycopg2",
    "python3-pydot",
    "python3-openssl",
    "python3-pypdf2",
    "python3-rjsmin",
    "python3-qrcode",
    "python3-renderpm",
    "python3-reportlab",
    "python3-requests",
    "python3-stdnum",
    "python3-tz",
    "python3-vobject",
    "python3-werkzeug",
    "python3-xlsxwriter",
    "python3-xlrd",
    "python3-xlwt",
    "python3-zeep",
    "python3-gevent",
    "python3-greenlet",
];

/// Run inside the new tree once it is built (`$1` is its root): nothing machine-specific may
/// stay in the shared base (ssh host keys, machine-id, clusters), and nothing periodic runs.
const CUSTOMIZE: &str = r#"set -eu
R=$1
rm -f "$R"/etc/ssh/ssh_host_*
rm -f "$R/etc/hostname"
: > "$R/etc/machine-id"
chroot "$R" systemctl mask -q apt-daily.timer apt-daily-upgrade.timer console-getty.service e2scrub_reap.service
install -d -m 700 "$R/root/.ssh"
# The base leaves out man pages and docs to stay small; packages installed later (ours) keep theirs.
rm -f "$R/etc/dpkg/dpkg.cfg.d/99mmdebstrap"
"#;

/// No cluster is created while the base is built: each machine makes its own (its own
/// system identifier), as `pg_createcluster` would on a fresh server.
const SETUP: &str = r#"mkdir -p "$1/etc/postgresql-common/createcluster.d" && echo "create_main_cluster = false" > "$1/etc/postgresql-common/createcluster.d/00-lab-no-main.conf""#;

/// Bumped when the recipe changes, so that cached bases are rebuilt.
const RECIPE: u32 = 1;

/// Where bases are cached: `$ODOO_STANDBY_LAB_CACHE`, or `/var/cache/odoo-standby-lab`.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("ODOO_STANDBY_LAB_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/odoo-standby-lab"))
}

/// The Debian entries of this host's apt sources (others, with keys the machines lack, are
/// left out); deb.debian.org when there are none.
fn host_sources() -> String {
    let mut text = String::new();
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<PathBuf> = dir
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "sources" || x == "list"))
            .collect();
        more.sort();
        files.extend(more);
    }
    for f in files {
        let Ok(body) = std::fs::read_to_string(&f) else {
            continue;
        };
        if f.extension().is_some_and(|x| x == "sources") {
            // deb822: stanzas separated by blank lines; keep the Debian ones.
            for stanza in body.split("\n\n") {
                if stanza
                    .lines()
                    .any(|l| l.starts_with("URIs:") && l.contains("debian"))
                {
                    text.push_str(stanza.trim());
                    text.push_str("\n\n");
                }
            }
        } else {
            for l in body.lines() {
                let l = l.trim();
                if l.starts_with("deb ") && l.contains("debian") {
                    text.push_str(l);
                    text.push('\n');
                }
            }
        }
    }
    if text.trim().is_empty() {
        text = "deb http://deb.debian.org/debian bookworm main\n\
                deb http://deb.debian.org/debian bookworm-updates main\n\
                deb http://deb.debian.org/debian-security bookworm-security main\n"
            .into();
    }
    text
}

fn key(sources: &str) -> String {
    let mut h = Sha256::new();
    for part in [
        sources,
        &PACKAGES.join(","),
        CUSTOMIZE,
        SETUP,
        &RECIPE.to_string(),
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    hex::encode(&h.finalize()[..6])
}

/// An exclusive lock on the cache, held while it lives (parallel labs build the base once).
struct CacheLock(#[allow(dead_code)] File);

impl CacheLock {
    fn take(dir: &Path) -> Result<Self> {
        let path = dir.join("lock");
        let f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| LabError::io("cannot open", &path, e))?;
        // SAFETY: flock(2) on a file descriptor we own for the lifetime of the lock.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(LabError::io(
                "cannot lock",
                &path,
                std::io::Error::last_os_error(),
            ));
        }
        Ok(Self(f))
    }
}

/// The base root filesystem, built when missing (about a minute from a nearby mirror).
pub fn ensure() -> Result<PathBuf> {
    let cache = cache_dir();
    std::fs::create_dir_all(&cache).map_err(|e| LabError::io("cannot create", &cache, e))?;
    let sources = host_sources();
    let base = cache.join(format!("base-bookworm-{}", key(&sources)));
    if base.join("etc/os-release").exists() {
        return Ok(base);
    }
    let _lock = CacheLock::take(&cache)?;
    if base.join("etc/os-release").exists() {
        return Ok(base);
    }
    let tmp = cache.join(format!("build-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let src_file = cache.join(format!("sources-{}", std::process::id()));
    std::fs::write(&src_file, &sources).map_err(|e| LabError::io("cannot write", &src_file, e))?;
    let hook = cache.join(format!("customize-{}.sh", std::process::id()));
    std::fs::write(&hook, CUSTOMIZE).map_err(|e| LabError::io("cannot write", &hook, e))?;
    let log = cache.join("mmdebstrap.log");
    let include = format!("--include={}", PACKAGES.join(","));
    let setup = format!("--setup-hook={SETUP}");
    let customize = format!("--customize-hook=sh {} \"$1\"", hook.display());
    let args = [
        "--mode=root",
        "--variant=apt",
        "--format=directory",
        "--quiet",
        &include,
        "--dpkgopt=path-exclude=/usr/share/man/*",
        "--dpkgopt=path-exclude=/usr/share/info/*",
        "--dpkgopt=path-exclude=/usr/share/doc/*",
        "--dpkgopt=path-include=/usr/share/doc/*/copyright",
        "--dpkgopt=path-exclude=/usr/share/locale/*",
        &setup,
        &customize,
        "bookworm",
        &tmp.display().to_string(),
        &src_file.display().to_string(),
    ];
    let out = sys::output("mmdebstrap", &args, None);
    let _ = std::fs::remove_file(&src_file);
    let _ = std::fs::remove_file(&hook);
    let out = out?;
    let _ = std::fs::write(&log, [&out.stdout[..], &out.stderr[..]].concat());
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(LabError::Command {
            command: format!("mmdebstrap ... bookworm {}", tmp.display()),
            status: out.status.to_string(),
            stderr: format!(
                "{} (whole log: {})",
                sys::tail(&String::from_utf8_lossy(&out.stderr), 20),
                log.display()
            ),
        });
    }
    // Complete only once renamed: an interrupted build never looks like a base.
    std::fs::rename(&tmp, &base)
        .map_err(|e| LabError::io("cannot rename the new base to", &base, e))?;
    Ok(base)
}
