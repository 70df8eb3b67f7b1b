//! An OpenSSH server on a loopback port, with its own host key, a generated client key and a
//! known_hosts file that holds exactly that host key.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::{Result, SandboxError};
use crate::os;
use crate::procs::{ProcessTable, Tracked};

/// Everything a client needs to reach the sandbox's sshd.
#[derive(Clone, Debug, Serialize)]
pub struct Sshd {
    /// Always 127.0.0.1.
    pub host: String,
    /// The port it listens on.
    pub port: u16,
    /// The user the client key logs in as (the user running the sandbox).
    pub user: String,
    /// The client's private key (ed25519, no passphrase, 0600).
    pub client_key: PathBuf,
    /// A known_hosts file with the server's key for `[127.0.0.1]:port`.
    pub known_hosts: PathBuf,
    /// The server's public host key file.
    pub host_key_pub: PathBuf,
    /// The server's config file.
    pub config: PathBuf,
    /// The server's log (it runs with `-D -e`).
    pub log: PathBuf,
    /// Its pid.
    pub pid: u32,
}

fn keygen(path: &Path, comment: &str) -> Result<()> {
    let mut cmd = Command::new(os::find_program("ssh-keygen", "openssh-client")?);
    cmd.args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path);
    os::run(cmd, None).map(drop)
}

impl Sshd {
    /// Generates keys and config under `dir`, starts sshd and waits until it accepts
    /// connections.
    pub(crate) fn start(dir: &Path, procs: &Arc<ProcessTable>) -> Result<Self> {
        let sshd_bin = os::find_program("sshd", "openssh-server")?;
        os::mkdir(dir, 0o700)?;
        let user = os::current_user()?;
        if os::is_root() {
            // OpenSSH's privilege separation directory; Debian's unit creates it at boot.
            os::mkdir(Path::new("/run/sshd"), 0o755)?;
        }
        let host_key = dir.join("ssh_host_ed25519_key");
        let client_key = dir.join("client_ed25519");
        for k in [&host_key, &client_key] {
            let _ = std::fs::remove_file(k);
            let _ = std::fs::remove_file(k.with_extension("pub"));
        }
        keygen(&host_key, "odoo-standby-sandbox-host")?;
        keygen(&client_key, "odoo-standby-sandbox-client")?;
        let client_pub = std::fs::read_to_string(client_key.with_extension("pub"))
            .map_err(|e| SandboxError::io("cannot read", client_key.with_extension("pub"), e))?;
        let authorized = dir.join("authorized_keys");
        os::write_new(&authorized, client_pub.as_bytes(), 0o600)?;

        let mut last_err = None;
        for _ in 0..5 {
            let port = os::free_port()?;
            let config = dir.join("sshd_config");
            let text = format!(
                "# odoo-standby sandbox sshd\n\
                 Port {port}\n\
                 ListenAddress 127.0.0.1\n\
                 HostKey {hk}\n\
                 PidFile {pid}\n\
                 AuthorizedKeysFile {ak}\n\
                 PubkeyAuthentication yes\n\
                 PasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\n\
                 PermitRootLogin prohibit-password\n\
                 UsePAM no\n\
                 StrictModes no\n\
                 MaxStartups 100:30:200\n\
                 MaxSessions 50\n\
                 LogLevel VERBOSE\n\
                 Subsystem sftp internal-sftp\n",
                hk = host_key.display(),
                pid = dir.join("sshd.pid").display(),
                ak = authorized.display(),
            );
            os::write_new(&config, text.as_bytes(), 0o600)?;
            let log = dir.join("sshd.log");
            let log_file = std::fs::File::create(&log)
                .map_err(|e| SandboxError::io("cannot create", &log, e))?;
            let child = Command::new(&sshd_bin)
                .arg("-D")
                .arg("-e")
                .arg("-f")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log_file)
                .spawn()
                .map_err(|e| SandboxError::io("cannot start", &sshd_bin, e))?;
            let pid = child.id();
            procs.add(Tracked::Child(child));
            let host_pub = std::fs::read_to_string(host_key.with_extension("pub"))
                .map_err(|e| SandboxError::io("cannot read", host_key.with_extension("pub"), e))?;
            let mut fields = host_pub.split_whitespace();
            let (kt, kb) = (
                fields.next().unwrap_or_default(),
                fields.next().unwrap_or_default(),
            );
            let known_hosts = dir.join("known_hosts");
            os::write_new(
                &known_hosts,
                format!("[127.0.0.1]:{port} {kt} {kb}\n").as_bytes(),
                0o644,
            )?;
            let sshd = Self {
                host: "127.0.0.1".into(),
                port,
                user: user.name.clone(),
                client_key: client_key.clone(),
                known_hosts,
                host_key_pub: host_key.with_extension("pub"),
                config,
                log: log.clone(),
                pid,
            };
            match sshd.wait_ready(Duration::from_secs(10)) {
                Ok(()) => return Ok(sshd),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| SandboxError::Usage("sshd did not start".into())))
    }

    /// Starts sshd again with the same config, keys and port (after [`crate::Sandbox::stop_sshd`]).
    pub(crate) fn respawn(&self, procs: &Arc<ProcessTable>) -> Result<Self> {
        let sshd_bin = os::find_program("sshd", "openssh-server")?;
        let log_file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&self.log)
            .map_err(|e| SandboxError::io("cannot open", &self.log, e))?;
        let child = Command::new(&sshd_bin)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .map_err(|e| SandboxError::io("cannot start", &sshd_bin, e))?;
        let mut again = self.clone();
        again.pid = child.id();
        procs.add(Tracked::Child(child));
        again.wait_ready(Duration::from_secs(10))?;
        Ok(again)
    }

    fn wait_ready(&self, limit: Duration) -> Result<()> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if !crate::procs::is_alive(i32::try_from(self.pid).unwrap_or(-1)) {
                break;
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(SandboxError::NotReady {
            what: format!("sshd on port {}", self.port),
            seconds: limit.as_secs(),
            log: std::fs::read_to_string(&self.log)
                .map(|s| os::tail(&s, 2000))
                .unwrap_or_default(),
        })
    }

    /// `user@127.0.0.1:port`, as the config file's `ssh` key takes it.
    pub fn target(&self) -> String {
        format!("{}@{}:{}", self.user, self.host, self.port)
    }

    /// The `ssh` command line options to reach it with OpenSSH's client (for scripts).
    pub fn ssh_options(&self) -> Vec<String> {
        vec![
            "-p".into(),
            self.port.to_string(),
            "-i".into(),
            self.client_key.display().to_string(),
            "-o".into(),
            format!("UserKnownHostsFile={}", self.known_hosts.display()),
            "-o".into(),
            "StrictHostKeyChecking=yes".into(),
            "-o".into(),
            "IdentitiesOnly=yes".into(),
        ]
    }
}
