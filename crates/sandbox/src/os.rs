//! Small OS helpers: which user runs the servers, running programs as that user, free ports,
//! files with the right mode from their first byte.

use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::error::{Result, SandboxError};

/// The OS user the servers run as: `postgres` when we are root (PostgreSQL refuses root),
/// otherwise ourselves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunUser {
    /// User name.
    pub name: String,
    /// Numeric uid.
    pub uid: u32,
    /// Numeric primary gid.
    pub gid: u32,
    /// Whether we had to switch to it (we are root).
    pub switched: bool,
}

pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn lookup_user(name: Option<&str>) -> Option<(String, u32, u32)> {
    host::account::lookup(name).map(|a| (a.name, a.uid, a.gid))
}

/// The user we are.
pub fn current_user() -> Result<RunUser> {
    let (name, uid, gid) = lookup_user(None)
        .ok_or_else(|| SandboxError::Usage("the current uid has no name in /etc/passwd".into()))?;
    Ok(RunUser {
        name,
        uid,
        gid,
        switched: false,
    })
}

impl RunUser {
    /// `postgres` when we are root, else the current user.
    pub fn for_servers() -> Result<Self> {
        if !is_root() {
            return current_user();
        }
        let (name, uid, gid) =
            lookup_user(Some("postgres")).ok_or_else(|| SandboxError::Missing {
                program: "the postgres OS user".into(),
                hint: "PostgreSQL refuses to run as root and the sandbox runs it as `postgres`"
                    .into(),
                package: "postgresql".into(),
            })?;
        Ok(Self {
            name,
            uid,
            gid,
            switched: true,
        })
    }

    /// A command that runs `program` as this user.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        if self.switched {
            let mut c = Command::new("runuser");
            c.args(["-u", &self.name, "--"]).arg(program);
            c
        } else {
            Command::new(program)
        }
    }

    /// Gives `path` to this user.
    pub fn chown(&self, path: &Path) -> Result<()> {
        if !self.switched {
            return Ok(());
        }
        std::os::unix::fs::chown(path, Some(self.uid), Some(self.gid))
            .map_err(|e| SandboxError::io("cannot chown", path, e))
    }
}

/// Runs a command to completion; a non-zero exit is an error with its stderr.
pub(crate) fn run(mut cmd: Command, stdin: Option<&[u8]>) -> Result<Output> {
    let shown = format!("{cmd:?}");
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| SandboxError::io(format!("cannot start {shown} in"), PathBuf::from("."), e))?;
    if let (Some(bytes), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(bytes).map_err(|e| {
            SandboxError::io(format!("cannot feed {shown} in"), PathBuf::from("."), e)
        })?;
    }
    let out = child.wait_with_output().map_err(|e| {
        SandboxError::io(format!("cannot wait for {shown} in"), PathBuf::from("."), e)
    })?;
    if !out.status.success() {
        return Err(SandboxError::Command {
            command: shown,
            status: out.status.to_string(),
            stderr: tail(&String::from_utf8_lossy(&out.stderr), 3000),
        });
    }
    Ok(out)
}

/// The last `max` bytes of `text` (on a char boundary).
pub(crate) fn tail(text: &str, max: usize) -> String {
    let text = text.trim_end();
    if text.len() <= max {
        return text.to_owned();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_owned()
}

/// A TCP port on 127.0.0.1 that nothing listens on right now.
pub fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0")
        .map_err(|e| SandboxError::io("cannot bind a free port on", "127.0.0.1", e))?;
    let port = l
        .local_addr()
        .map_err(|e| SandboxError::io("cannot read the port of", "127.0.0.1", e))?
        .port();
    Ok(port)
}

/// Writes a file created with `mode` (0600 for secrets) before any byte goes in.
pub fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| SandboxError::io("cannot create", path, e))?;
    f.write_all(contents)
        .map_err(|e| SandboxError::io("cannot write", path, e))
}

/// Creates a directory (and parents) with `mode`.
pub(crate) fn mkdir(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path).map_err(|e| SandboxError::io("cannot create", path, e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| SandboxError::io("cannot chmod", path, e))
}

/// The directory with PostgreSQL's server programs (`initdb`, `pg_ctl`, `postgres`...):
/// `$PG_BINDIR` if set, else the newest `/usr/lib/postgresql/*/bin` (Debian's layout).
pub fn pg_bindir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("PG_BINDIR") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let e = e.ok()?;
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, p)| p)
        .ok_or_else(|| SandboxError::Missing {
            program: "initdb".into(),
            hint: "looked in /usr/lib/postgresql/*/bin; set PG_BINDIR to use another".into(),
            package: "postgresql".into(),
        })
}

/// Finds a program in the usual system directories.
pub(crate) fn find_program(name: &str, package: &str) -> Result<PathBuf> {
    for dir in [
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
        "/usr/local/bin",
        "/usr/local/sbin",
    ] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return Ok(p);
        }
    }
    Err(SandboxError::Missing {
        program: name.into(),
        hint: "looked in /usr/sbin, /usr/bin, /sbin, /bin, /usr/local".into(),
        package: package.into(),
    })
}
