//! Another machine, over one SSH connection (libssh2 through the `ssh2` crate).
//!
//! libssh2 is blocking, so every operation runs on a tokio blocking thread. A command's stdin,
//! stdout and stderr are pumped together with the session in non-blocking mode, so a command
//! that writes while it still reads (tar fed a long list of names) cannot deadlock on SSH flow
//! control. Streams cross between the blocking thread and async code through bounded channels.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine as _;
use sha2::Digest as _;
use ssh2::{BlockDirections, CheckResult, HostKeyType, KnownHostFileKind, Session};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::spec::ExitStatus;
use crate::{quote, BoxRead, BoxWrite, CommandSpec, Host, HostError, Output};

/// libssh2's "would block" (`LIBSSH2_ERROR_EAGAIN`).
const LIBSSH2_ERROR_EAGAIN: i32 = -37;
/// libssh2's timeout (`LIBSSH2_ERROR_TIMEOUT`).
const LIBSSH2_ERROR_TIMEOUT: i32 = -9;
/// libssh2's "could not read the key file" (`LIBSSH2_ERROR_FILE`).
const LIBSSH2_ERROR_FILE: i32 = -16;
/// Chunks in flight between the SSH thread and async readers/writers, per direction.
const CHANNEL_DEPTH: usize = 16;
const CHUNK: usize = 64 * 1024;
/// Shortest and longest wait for the socket while a command is idle.
const MIN_IDLE_WAIT: Duration = Duration::from_millis(1);
const MAX_IDLE_WAIT: Duration = Duration::from_millis(50);
/// Shortest and longest wait while a command waits for input we have not produced yet (a
/// long-lived helper between requests): short at first, so that a request goes out at once,
/// longer while nothing comes, so that an idle helper does not keep a core awake.
const MIN_INPUT_WAIT: Duration = Duration::from_micros(500);
const MAX_INPUT_WAIT: Duration = Duration::from_millis(10);

/// How we prove who we are to the SSH server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SshAuth {
    /// A private key file without passphrase (for a key with one, use the agent).
    KeyFile(PathBuf),
    /// The keys of the ssh-agent at `$SSH_AUTH_SOCK`.
    Agent,
}

/// Where and how to connect.
#[derive(Clone, Debug)]
pub struct SshConfig {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Login user.
    pub user: String,
    /// How to authenticate.
    pub auth: SshAuth,
    /// The known_hosts file the server's key must be in (OpenSSH format, hashed or not).
    pub known_hosts: PathBuf,
    /// Limit for TCP connect, handshake and authentication, each.
    pub connect_timeout: Duration,
    /// Default limit for commands whose spec has none.
    pub command_timeout: Option<Duration>,
    /// Interval of SSH keepalive messages.
    pub keepalive: Duration,
    /// The user file operations run as (`sudo -n -u`); `None`: the login user.
    pub file_user: Option<String>,
}

impl SshConfig {
    /// A config with 10 s connect timeout, 15 s keepalive and no command timeout.
    pub fn new(
        user: impl Into<String>,
        host: impl Into<String>,
        port: u16,
        auth: SshAuth,
        known_hosts: impl Into<PathBuf>,
    ) -> Self {
        Self {
            host: host.into(),
            port,
            user: user.into(),
            auth,
            known_hosts: known_hosts.into(),
            connect_timeout: Duration::from_secs(10),
            command_timeout: None,
            keepalive: Duration::from_secs(15),
            file_user: None,
        }
    }

    /// Parses `user@host`, `user@host:port` or `user@[v6addr]:port` (port 22 by default).
    pub fn from_target(
        target: &str,
        auth: SshAuth,
        known_hosts: impl Into<PathBuf>,
    ) -> Result<Self, String> {
        let (user, rest) = target
            .split_once('@')
            .ok_or_else(|| format!("{target:?} has no user: write it as user@host[:port]"))?;
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("{target:?}: missing ']' after an IPv6 address"))?;
            match after.strip_prefix(':') {
                Some(p) => (h, Some(p)),
                None if after.is_empty() => (h, None),
                None => return Err(format!("{target:?}: unexpected text after ']'")),
            }
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            }
        };
        let port = match port {
            Some(p) => p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| {
                format!("{target:?}: the port {p:?} is not a number from 1 to 65535")
            })?,
            None => 22,
        };
        if user.is_empty() || host.is_empty() {
            return Err(format!("{target:?}: empty user or host"));
        }
        if !crate::spec::valid_user_name(user) {
            return Err(format!("{target:?}: {user:?} is not a valid user name"));
        }
        Ok(Self::new(user, host, port, auth, known_hosts))
    }

    fn name(&self) -> String {
        if self.host.contains(':') {
            format!("{}@[{}]:{}", self.user, self.host, self.port)
        } else {
            format!("{}@{}:{}", self.user, self.host, self.port)
        }
    }
}

struct Connection {
    session: Session,
    /// A clone of the socket the session uses, for poll(2).
    socket: TcpStream,
}

/// A machine reached over SSH. One connection, opened on first use and reopened when it
/// breaks; commands on one `SshHost` run one at a time.
///
/// Remote commands are handed to the login user's shell as one line in which every word is
/// quoted (the remote login shell must be POSIX: sh, dash, bash, zsh). A `run_as` user runs
/// through `runuser` when we log in as root, `sudo -n -u` otherwise.
#[derive(Clone)]
pub struct SshHost {
    cfg: Arc<SshConfig>,
    conn: Arc<Mutex<Option<Connection>>>,
}

impl std::fmt::Debug for SshHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshHost").field("cfg", &self.cfg).finish()
    }
}

/// A server's host key as offered during the handshake, before anyone trusts it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScannedKey {
    /// Key algorithm, e.g. `ssh-ed25519`.
    pub key_type: String,
    /// The key blob, base64 (the second field of a known_hosts line).
    pub key_base64: String,
    /// `SHA256:...`, as `ssh-keygen -l` prints it.
    pub fingerprint: String,
}

/// Connects to `host:port`, completes the SSH handshake and returns the offered host key
/// without authenticating or trusting it: for showing the fingerprint to the operator, who
/// decides whether it goes into known_hosts.
pub async fn scan_host_key(
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<ScannedKey, HostError> {
    let mut cfg = SshConfig::new("nobody", host, port, SshAuth::Agent, "/dev/null");
    cfg.connect_timeout = timeout;
    let name = format!("{host}:{port}");
    blocking(&name.clone(), move || {
        let tcp = tcp_connect(&cfg.host, cfg.port, cfg.connect_timeout, &name)?;
        let mut session = Session::new().map_err(|source| HostError::Ssh {
            host: name.clone(),
            during: "starting an SSH session".into(),
            source,
        })?;
        session.set_timeout(u32::try_from(cfg.connect_timeout.as_millis()).unwrap_or(u32::MAX));
        session.set_tcp_stream(tcp);
        session.handshake().map_err(|source| HostError::Ssh {
            host: name.clone(),
            during: "the SSH handshake".into(),
            source,
        })?;
        let (key, kind) = session.host_key().ok_or_else(|| HostError::Unexpected {
            host: name.clone(),
            during: "reading the server's host key".into(),
            output: "no host key".into(),
        })?;
        Ok(ScannedKey {
            key_type: key_type_name(kind).to_owned(),
            key_base64: base64::engine::general_purpose::STANDARD.encode(key),
            fingerprint: fingerprint_sha256(key),
        })
    })
    .await
}

/// SHA-256 fingerprint of a public key blob as OpenSSH prints it (`SHA256:base64`).
pub fn fingerprint_sha256(key: &[u8]) -> String {
    let digest = sha2::Sha256::digest(key);
    format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)
    )
}

fn key_type_name(t: HostKeyType) -> &'static str {
    match t {
        HostKeyType::Rsa => "ssh-rsa",
        HostKeyType::Dss => "ssh-dss",
        HostKeyType::Ecdsa256 => "ecdsa-sha2-nistp256",
        HostKeyType::Ecdsa384 => "ecdsa-sha2-nistp384",
        HostKeyType::Ecdsa521 => "ecdsa-sha2-nistp521",
        HostKeyType::Ed25519 => "ssh-ed25519",
        HostKeyType::Unknown => "unknown",
    }
}

fn would_block(e: &ssh2::Error) -> bool {
    e.code() == ssh2::ErrorCode::Session(LIBSSH2_ERROR_EAGAIN)
}

/// What went wrong inside a command's exchange; `broken` says the connection is unusable.
struct ExecFailure {
    error: HostError,
    broken: bool,
}

enum Input {
    None,
    Bytes(Vec<u8>),
    Chunks(mpsc::Receiver<Vec<u8>>),
}

enum Sink {
    Collect(Vec<u8>),
    Chunks(mpsc::Sender<Vec<u8>>),
}

impl SshHost {
    /// A host that connects with `cfg` on first use.
    pub fn new(cfg: SshConfig) -> Self {
        Self {
            cfg: Arc::new(cfg),
            conn: Arc::new(Mutex::new(None)),
        }
    }

    /// The config it connects with.
    pub fn config(&self) -> &SshConfig {
        &self.cfg
    }

    /// Connects now (if not yet connected), so that address, host key and login problems
    /// show up before any work starts.
    pub async fn connect(&self) -> Result<(), HostError> {
        let cfg = self.cfg.clone();
        let conn = self.conn.clone();
        blocking(&self.cfg.name(), move || {
            let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
            if guard.is_none() {
                *guard = Some(connect(&cfg)?);
            }
            Ok(())
        })
        .await
    }

    /// The command line the remote shell receives for `spec`.
    fn remote_line(&self, spec: &CommandSpec) -> String {
        let mut argv: Vec<String> = Vec::new();
        if let Some(user) = spec.user().filter(|u| *u != self.cfg.user) {
            if self.cfg.user == "root" {
                argv.extend(["runuser", "-u", user, "--"].map(String::from));
            } else {
                argv.extend(["sudo", "-n", "-u", user, "--"].map(String::from));
            }
        }
        if spec.cwd.is_some() || !spec.env.is_empty() {
            argv.push("env".into());
            if let Some(dir) = &spec.cwd {
                argv.push("-C".into());
                argv.push(dir.to_string_lossy().into_owned());
            }
            argv.extend(spec.env.iter().map(|(k, v)| format!("{k}={v}")));
        }
        argv.push(spec.program.clone());
        argv.extend(spec.args.iter().cloned());
        quote::join(&argv)
    }

    async fn exec(
        &self,
        spec: &CommandSpec,
        input: Input,
        sink: Sink,
    ) -> Result<Output, HostError> {
        spec.validate().map_err(|reason| HostError::InvalidSpec {
            host: self.name(),
            reason,
        })?;
        let line = self.remote_line(spec);
        let cfg = self.cfg.clone();
        let conn = self.conn.clone();
        let spec = spec.clone();
        let limit = spec.time_limit().or(cfg.command_timeout);
        blocking(&self.cfg.name(), move || {
            let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
            let reused = guard.is_some();
            if guard.is_none() {
                *guard = Some(connect(&cfg)?);
            }
            let mut input = input;
            let mut sink = sink;
            // A reused connection may have died while idle (server restarted): when opening
            // the channel fails on one, reconnect once and try again.
            let first = guard
                .as_ref()
                .map(|c| open_channel(c, &cfg, &line))
                .ok_or_else(|| unexpected_state(&cfg))?;
            let channel = match first {
                Ok(ch) => ch,
                Err(_) if reused => {
                    *guard = None;
                    let fresh = connect(&cfg)?;
                    let ch = open_channel(&fresh, &cfg, &line).map_err(|f| f.error)?;
                    *guard = Some(fresh);
                    ch
                }
                Err(f) => {
                    *guard = None;
                    return Err(f.error);
                }
            };
            let c = guard.as_ref().ok_or_else(|| unexpected_state(&cfg))?;
            match pump(c, &cfg, &spec, channel, &mut input, &mut sink, limit) {
                Ok((status, stdout, stderr)) => Ok(Output {
                    status,
                    stdout,
                    stderr,
                }),
                Err(f) => {
                    if f.broken {
                        *guard = None;
                    } else {
                        c.session.set_blocking(true);
                    }
                    Err(f.error)
                }
            }
        })
        .await
    }
}

fn unexpected_state(cfg: &SshConfig) -> HostError {
    HostError::Unexpected {
        host: cfg.name(),
        during: "using the SSH connection".into(),
        output: "no connection".into(),
    }
}

async fn blocking<T: Send + 'static>(
    host: &str,
    f: impl FnOnce() -> Result<T, HostError> + Send + 'static,
) -> Result<T, HostError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| HostError::Io {
            host: host.to_owned(),
            during: "waiting for the SSH worker thread".into(),
            source: std::io::Error::other(e.to_string()),
        })?
}

/// Resolves `host` and opens TCP to the first address that answers; refused, timed out and
/// other failures are distinct errors that name the host.
fn tcp_connect(
    host: &str,
    port: u16,
    timeout: Duration,
    name: &str,
) -> Result<TcpStream, HostError> {
    let addrs: Vec<_> = (host, port)
        .to_socket_addrs()
        .map_err(|source| HostError::Resolve {
            host: name.to_owned(),
            source,
        })?
        .collect();
    let mut last = std::io::Error::new(ErrorKind::NotFound, "the name has no address");
    for addr in &addrs {
        match TcpStream::connect_timeout(addr, timeout) {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(match last.kind() {
        ErrorKind::ConnectionRefused => HostError::ConnectionRefused {
            host: name.to_owned(),
            source: last,
        },
        ErrorKind::TimedOut | ErrorKind::WouldBlock => HostError::Timeout {
            host: name.to_owned(),
            during: "connecting".into(),
            seconds: timeout.as_secs().max(1),
        },
        _ => HostError::Io {
            host: name.to_owned(),
            during: "connecting".into(),
            source: last,
        },
    })
}

fn connect(cfg: &SshConfig) -> Result<Connection, HostError> {
    let name = cfg.name();
    let secs = cfg.connect_timeout.as_secs().max(1);
    let timeout = |during: &str| HostError::Timeout {
        host: name.clone(),
        during: during.to_owned(),
        seconds: secs,
    };
    let tcp = tcp_connect(&cfg.host, cfg.port, cfg.connect_timeout, &name)?;
    let io = |during: &str, source| HostError::Io {
        host: name.clone(),
        during: during.to_owned(),
        source,
    };
    let ssh = |during: &str, source: ssh2::Error| {
        if source.code() == ssh2::ErrorCode::Session(LIBSSH2_ERROR_TIMEOUT) {
            timeout(during)
        } else {
            HostError::Ssh {
                host: name.clone(),
                during: during.to_owned(),
                source,
            }
        }
    };
    tcp.set_nodelay(true)
        .map_err(|e| io("configuring the socket", e))?;
    let socket = tcp
        .try_clone()
        .map_err(|e| io("configuring the socket", e))?;
    let mut session = Session::new().map_err(|e| ssh("starting an SSH session", e))?;
    session.set_timeout(u32::try_from(cfg.connect_timeout.as_millis()).unwrap_or(u32::MAX));
    session.set_tcp_stream(tcp);
    session
        .handshake()
        .map_err(|e| ssh("the SSH handshake", e))?;

    verify_host_key(&session, cfg)?;

    let auth = match &cfg.auth {
        SshAuth::KeyFile(key) => session.userauth_pubkey_file(&cfg.user, None, key, None),
        SshAuth::Agent => session.userauth_agent(&cfg.user),
    };
    let key_name = match &cfg.auth {
        SshAuth::KeyFile(k) => k.display().to_string(),
        SshAuth::Agent => "the ssh-agent's keys".to_owned(),
    };
    match auth {
        Err(e) if e.code() == ssh2::ErrorCode::Session(LIBSSH2_ERROR_TIMEOUT) => {
            return Err(timeout("authenticating"))
        }
        Err(e) if e.code() == ssh2::ErrorCode::Session(LIBSSH2_ERROR_FILE) => {
            return Err(HostError::Io {
                host: name.clone(),
                during: format!("reading the private key {key_name} (missing, unreadable, or protected by a passphrase: use the agent for those)"),
                source: std::io::Error::other(e.message().to_owned()),
            })
        }
        _ => {}
    }
    if !session.authenticated() {
        return Err(HostError::AuthRejected {
            host: name,
            user: cfg.user.clone(),
            key: key_name,
        });
    }
    let keepalive = u32::try_from(cfg.keepalive.as_secs())
        .unwrap_or(u32::MAX)
        .max(1);
    session.set_keepalive(true, keepalive);
    Ok(Connection { session, socket })
}

/// Checks the server's host key against our known_hosts file; never accepts an unknown key.
fn verify_host_key(session: &Session, cfg: &SshConfig) -> Result<(), HostError> {
    let name = cfg.name();
    let (key, kind) = session.host_key().ok_or_else(|| HostError::Unexpected {
        host: name.clone(),
        during: "reading the server's host key".into(),
        output: "the server offered no host key".into(),
    })?;
    let key_type = key_type_name(kind).to_owned();
    let fingerprint = fingerprint_sha256(key);
    let mut known = session.known_hosts().map_err(|source| HostError::Ssh {
        host: name.clone(),
        during: "reading known_hosts".into(),
        source,
    })?;
    // Read line by line: libssh2 gives up on a whole file at the first line it cannot parse
    // (a key type it does not know); we skip such lines instead.
    let text = match std::fs::read_to_string(&cfg.known_hosts) {
        Ok(t) => t,
        Err(e) if e.kind() == ErrorKind::NotFound => String::new(),
        Err(source) => {
            return Err(HostError::Io {
                host: name,
                during: format!("reading {}", cfg.known_hosts.display()),
                source,
            })
        }
    };
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('@') {
            continue;
        }
        let _ = known.read_str(line, KnownHostFileKind::OpenSSH);
    }
    match known.check_port(&cfg.host, cfg.port, key) {
        CheckResult::Match => Ok(()),
        CheckResult::Mismatch => Err(HostError::HostKeyChanged {
            host: name,
            key_type,
            fingerprint,
            known_hosts: cfg.known_hosts.clone(),
        }),
        CheckResult::NotFound | CheckResult::Failure => Err(HostError::HostKeyUnknown {
            host: name,
            key_type,
            fingerprint,
            known_hosts: cfg.known_hosts.clone(),
        }),
    }
}

fn open_channel(c: &Connection, cfg: &SshConfig, line: &str) -> Result<ssh2::Channel, ExecFailure> {
    let fail = |during: &str, source: ssh2::Error| ExecFailure {
        error: HostError::Ssh {
            host: cfg.name(),
            during: during.to_owned(),
            source,
        },
        broken: true,
    };
    c.session.set_blocking(true);
    c.session
        .set_timeout(u32::try_from(cfg.connect_timeout.as_millis()).unwrap_or(u32::MAX));
    quickack(c);
    let mut ch = c
        .session
        .channel_session()
        .map_err(|e| fail("opening a channel", e))?;
    quickack(c);
    ch.exec(line).map_err(|e| fail("starting a command", e))?;
    Ok(ch)
}

/// Asks the kernel to acknowledge incoming segments at once. sshd leaves Nagle on for
/// non-interactive sessions, so each small reply of its (channel open, exit status, close)
/// waits for our ACK; with delayed ACKs that is up to 40 ms per round trip. Linux resets
/// quick-ack mode by itself, hence one call before every wait.
fn quickack(c: &Connection) {
    let one: libc::c_int = 1;
    // SAFETY: setsockopt on a socket we own, with a pointer to a live c_int and its size.
    unsafe {
        libc::setsockopt(
            c.socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_QUICKACK,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// Waits until the socket is ready in the directions libssh2 is blocked on, or `max` passes.
fn wait_socket(c: &Connection, max: Duration) {
    quickack(c);
    let mut events = libc::POLLIN;
    if matches!(
        c.session.block_directions(),
        BlockDirections::Outbound | BlockDirections::Both
    ) {
        events |= libc::POLLOUT;
    }
    let mut fd = libc::pollfd {
        fd: c.socket.as_raw_fd(),
        events,
        revents: 0,
    };
    let ms = i32::try_from(max.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: one valid pollfd for a socket we own, count 1, bounded timeout.
    unsafe {
        libc::poll(&mut fd, 1, ms);
    }
}

/// Drives one command: feeds stdin, collects or forwards stdout, collects stderr, until the
/// remote side closes; then returns its exit status.
fn pump(
    c: &Connection,
    cfg: &SshConfig,
    spec: &CommandSpec,
    mut ch: ssh2::Channel,
    input: &mut Input,
    sink: &mut Sink,
    limit: Option<Duration>,
) -> Result<(ExitStatus, Vec<u8>, Vec<u8>), ExecFailure> {
    let name = cfg.name();
    let transport = |during: &str, source: std::io::Error| ExecFailure {
        error: HostError::Io {
            host: name.clone(),
            during: format!("{during} `{spec}`"),
            source,
        },
        broken: true,
    };
    let ssh_fail = |during: &str, source: ssh2::Error| ExecFailure {
        error: HostError::Ssh {
            host: name.clone(),
            during: format!("{during} `{spec}`"),
            source,
        },
        broken: true,
    };
    c.session.set_blocking(false);
    let start = Instant::now();
    let mut last_keepalive = Instant::now();
    let mut buf = vec![0u8; CHUNK];
    let mut stderr = Vec::new();
    let mut pending_in: Vec<u8> = match input {
        Input::Bytes(b) => std::mem::take(b),
        _ => Vec::new(),
    };
    let mut in_pos = 0usize;
    let mut input_done = !matches!(input, Input::Chunks(_));
    let mut eof_sent = false;
    let mut pending_out: Option<Vec<u8>> = None;
    let (mut out_eof, mut err_eof) = (false, false);
    let mut idle = MIN_IDLE_WAIT;
    let mut input_wait = MIN_INPUT_WAIT;

    loop {
        let mut progress = false;
        let mut waiting_on_app = false;
        let mut waiting_on_input = false;

        // stdin
        if !eof_sent {
            if in_pos == pending_in.len() && !input_done {
                if let Input::Chunks(rx) = input {
                    match rx.try_recv() {
                        Ok(chunk) => {
                            pending_in = chunk;
                            in_pos = 0;
                            progress = true;
                        }
                        Err(mpsc::error::TryRecvError::Empty) => waiting_on_input = true,
                        Err(mpsc::error::TryRecvError::Disconnected) => input_done = true,
                    }
                }
            }
            if in_pos < pending_in.len() {
                match ch.write(&pending_in[in_pos..]) {
                    Ok(n) => {
                        in_pos += n;
                        progress |= n > 0;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    // The command stopped reading (exited early): the rest is not wanted.
                    Err(_) if ch.eof() => {
                        in_pos = pending_in.len();
                        input_done = true;
                    }
                    Err(e) => return Err(transport("sending input to", e)),
                }
            }
            if input_done && in_pos == pending_in.len() {
                match ch.send_eof() {
                    Ok(()) => {
                        eof_sent = true;
                        progress = true;
                    }
                    Err(e) if would_block(&e) => {}
                    Err(_) if ch.eof() => eof_sent = true,
                    Err(e) => return Err(ssh_fail("closing the input of", e)),
                }
            }
        }

        // stdout
        if pending_out.is_none() && !out_eof {
            match ch.read(&mut buf) {
                Ok(0) => out_eof = ch.eof(),
                Ok(n) => {
                    progress = true;
                    match sink {
                        Sink::Collect(v) => v.extend_from_slice(&buf[..n]),
                        Sink::Chunks(_) => pending_out = Some(buf[..n].to_vec()),
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => return Err(transport("reading the output of", e)),
            }
        }
        if let (Some(chunk), Sink::Chunks(tx)) = (pending_out.take(), &*sink) {
            match tx.try_send(chunk) {
                Ok(()) => progress = true,
                Err(mpsc::error::TrySendError::Full(chunk)) => {
                    pending_out = Some(chunk);
                    waiting_on_app = true;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    return Err(transport(
                        "forwarding the output of",
                        std::io::Error::new(ErrorKind::BrokenPipe, "the output's reader went away"),
                    ))
                }
            }
        }

        // stderr
        if !err_eof {
            match ch.stderr().read(&mut buf) {
                Ok(0) => err_eof = ch.eof(),
                Ok(n) => {
                    stderr.extend_from_slice(&buf[..n]);
                    progress = true;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => return Err(transport("reading the errors of", e)),
            }
        }

        if out_eof && err_eof && pending_out.is_none() {
            break;
        }
        if let Some(limit) = limit {
            if start.elapsed() > limit {
                let _ = ch.close();
                return Err(ExecFailure {
                    error: HostError::CommandTimedOut {
                        host: name.clone(),
                        command: spec.to_string(),
                        seconds: limit.as_secs(),
                    },
                    broken: true,
                });
            }
        }
        if last_keepalive.elapsed() >= cfg.keepalive {
            let _ = c.session.keepalive_send();
            last_keepalive = Instant::now();
        }
        if !progress {
            if waiting_on_input && !waiting_on_app {
                // Nothing to forward, nothing to send: the command waits for our next input.
                // Wake up when the server sends something, or after a while to look for input.
                wait_socket(c, input_wait);
                input_wait = (input_wait * 2).min(MAX_INPUT_WAIT);
            } else if waiting_on_app {
                // Our side is the bottleneck (the output's reader is full, or the input has no
                // bytes yet). The socket is likely readable, so poll(2) would return at once
                // and this thread would spin a core the reader needs: sleep instead.
                std::thread::sleep(Duration::from_micros(500));
            } else {
                // libssh2 may already hold the next packets in its own buffer, where poll(2)
                // cannot see them: wait briefly, and longer only while nothing happens.
                wait_socket(c, idle);
                idle = (idle * 2).min(MAX_IDLE_WAIT);
            }
        } else {
            idle = MIN_IDLE_WAIT;
            input_wait = MIN_INPUT_WAIT;
        }
    }

    let mut idle = MIN_IDLE_WAIT;
    loop {
        match ch.wait_close() {
            Ok(()) => break,
            Err(e) if would_block(&e) => {
                wait_socket(c, idle);
                idle = (idle * 2).min(MAX_IDLE_WAIT);
            }
            Err(e) => return Err(ssh_fail("closing the channel of", e)),
        }
    }
    c.session.set_blocking(true);
    let code = ch
        .exit_status()
        .map_err(|e| ssh_fail("reading the exit status of", e))?;
    let signal = ch.exit_signal().ok().and_then(|s| s.exit_signal);
    let status = match signal {
        Some(sig) => ExitStatus {
            code: None,
            signal: Some(sig),
        },
        None => ExitStatus {
            code: Some(code),
            signal: None,
        },
    };
    let stdout = match sink {
        Sink::Collect(v) => std::mem::take(v),
        Sink::Chunks(_) => Vec::new(),
    };
    Ok((status, stdout, stderr))
}

#[async_trait]
impl Host for SshHost {
    fn name(&self) -> String {
        self.cfg.name()
    }

    fn file_user(&self) -> Option<String> {
        self.cfg.file_user.clone()
    }

    async fn run_unchecked(&self, spec: &CommandSpec) -> Result<Output, HostError> {
        let input = match &spec.stdin {
            Some(b) => Input::Bytes(b.clone()),
            None => Input::None,
        };
        self.exec(spec, input, Sink::Collect(Vec::new())).await
    }

    async fn stream(
        &self,
        spec: &CommandSpec,
        stdin: Option<BoxRead>,
        mut stdout: BoxWrite,
    ) -> Result<Output, HostError> {
        let name = self.name();
        let input = match (stdin, &spec.stdin) {
            (Some(_), Some(_)) => {
                return Err(HostError::InvalidSpec {
                    host: name,
                    reason: "stdin given both as bytes and as a reader".into(),
                })
            }
            (None, Some(b)) => (Input::Bytes(b.clone()), None),
            (None, None) => (Input::None, None),
            (Some(mut reader), None) => {
                let (tx, rx) = mpsc::channel::<Vec<u8>>(CHANNEL_DEPTH);
                let feeder = tokio::spawn(async move {
                    let mut buf = vec![0u8; CHUNK];
                    loop {
                        let n = reader.read(&mut buf).await?;
                        if n == 0 || tx.send(buf[..n].to_vec()).await.is_err() {
                            return Ok::<(), std::io::Error>(());
                        }
                    }
                });
                (Input::Chunks(rx), Some(feeder))
            }
        };
        let (input, feeder) = input;
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(CHANNEL_DEPTH);
        let drainer = tokio::spawn(async move {
            while let Some(chunk) = rx.recv().await {
                stdout.write_all(&chunk).await?;
            }
            stdout.flush().await?;
            stdout.shutdown().await
        });
        let result = self.exec(spec, input, Sink::Chunks(tx)).await;
        let io_err = |during: &str, e: std::io::Error| HostError::Io {
            host: name.clone(),
            during: format!("{during} `{spec}`"),
            source: e,
        };
        let drained = drainer.await.map_err(|e| {
            io_err(
                "writing the output of",
                std::io::Error::other(e.to_string()),
            )
        })?;
        let fed = match feeder {
            Some(f) => f.await.map_err(|e| {
                io_err("reading the input of", std::io::Error::other(e.to_string()))
            })?,
            None => Ok(()),
        };
        let out = result?;
        drained.map_err(|e| io_err("writing the output of", e))?;
        fed.map_err(|e| io_err("reading the input of", e))?;
        crate::check_status(&name, spec, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        let kh = "/k";
        let c = SshConfig::from_target("odoo@200.58.98.56:5253", SshAuth::Agent, kh).unwrap();
        assert_eq!(
            (c.user.as_str(), c.host.as_str(), c.port),
            ("odoo", "200.58.98.56", 5253)
        );
        let c = SshConfig::from_target("odoo@vps1", SshAuth::Agent, kh).unwrap();
        assert_eq!(c.port, 22);
        let c = SshConfig::from_target("root@[::1]:2222", SshAuth::Agent, kh).unwrap();
        assert_eq!((c.host.as_str(), c.port), ("::1", 2222));
        assert_eq!(c.name(), "root@[::1]:2222");
        assert!(SshConfig::from_target("vps1", SshAuth::Agent, kh).is_err());
        assert!(SshConfig::from_target("odoo@vps1:0", SshAuth::Agent, kh).is_err());
        assert!(SshConfig::from_target("odoo@vps1:x", SshAuth::Agent, kh).is_err());
        assert!(SshConfig::from_target("Bad User@vps1", SshAuth::Agent, kh).is_err());
    }

    #[test]
    fn remote_line_quotes_every_word() {
        let h = SshHost::new(SshConfig::new("odoo", "h", 22, SshAuth::Agent, "/k"));
        let spec = CommandSpec::new("psql")
            .arg("a b")
            .arg("it's")
            .env("PGAPPNAME", "x y")
            .cwd("/tmp")
            .run_as("postgres");
        assert_eq!(
            h.remote_line(&spec),
            r"sudo -n -u postgres -- env -C /tmp 'PGAPPNAME=x y' psql 'a b' 'it'\''s'"
        );
        let same_user = CommandSpec::new("ls").run_as("odoo");
        assert_eq!(h.remote_line(&same_user), "ls");
    }

    #[test]
    fn fingerprint_is_unpadded_base64_of_sha256() {
        // SHA-256 of nothing (e3b0c442...), as Python's base64 prints it; OpenSSH drops the '=' padding.
        assert_eq!(
            fingerprint_sha256(b""),
            "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU"
        );
    }
}
