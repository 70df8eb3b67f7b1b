//! One long-lived helper process on the VPS for the passes of a watch.
//!
//! Starting a command over SSH costs the server about 100 ms (a session, a login shell), more
//! than everything else a steady-state pass does. A [`Session`] starts one small Python
//! program on the VPS (Odoo's own interpreter is there: `python3`) and keeps it for the life
//! of the watch; each batch is one request on its stdin and one tar stream back, so a pass
//! costs a round trip, not a process.
//!
//! Protocol (everything framed, so a batch's end is never guessed from tar padding):
//! - request: a 4-byte big-endian length, then the database folder and the names, each
//!   followed by a NUL byte;
//! - reply: frames of one type byte and a 4-byte big-endian length: `H` once at start
//!   (hello), `T` tar bytes, `M` names the VPS does not have (NUL-separated), `X` a
//!   refusal (the database folder is missing), `E` end of the batch.
//!
//! If the helper cannot start (no `python3` on the VPS's PATH), the session says so once in
//! the log and the passes fall back to one `tar` command per batch. A broken session (the
//! connection cut, the helper killed) fails its pass with the files completed so far, and
//! the next pass starts a new one.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use host::{CommandSpec, Host, HostError};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, DuplexStream};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio_util::io::SyncIoBridge;

use crate::error::SyncError;
use crate::filestore::{unpack, Fetched};
use crate::name::StoreName;

/// The helper run on the VPS: `python3 -I -c HELPER <filestore>`. It only reads files under
/// `<filestore>/<db>/` whose names the backup sent (already validated there as `xx/<sha1>`).
const HELPER: &str = r#"
import os, stat, struct, sys, tarfile
root = sys.argv[1]
inp, out = sys.stdin.buffer, sys.stdout.buffer
def frame(kind, data=b""):
    out.write(kind + struct.pack(">I", len(data)))
    out.write(data)
class Frames:
    def __init__(self):
        self.buf = bytearray()
    def write(self, b):
        self.buf += b
        if len(self.buf) >= 262144:
            self.flush()
        return len(b)
    def flush(self):
        if self.buf:
            frame(b"T", bytes(self.buf))
            self.buf = bytearray()
frame(b"H", b"odoo-standby-fetch 1")
out.flush()
while True:
    head = inp.read(4)
    if len(head) < 4:
        break
    (n,) = struct.unpack(">I", head)
    parts = inp.read(n).split(b"\0")
    folder = os.path.join(root, parts[0].decode())
    if not os.path.isdir(folder):
        frame(b"X", folder.encode())
        frame(b"E")
        out.flush()
        continue
    frames, missing = Frames(), []
    tar = tarfile.open(fileobj=frames, mode="w|", format=tarfile.GNU_FORMAT)
    for raw in parts[1:]:
        if not raw:
            continue
        name = raw.decode()
        try:
            f = open(os.path.join(folder, name), "rb")
        except OSError:
            missing.append(raw)
            continue
        with f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                missing.append(raw)
                continue
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = st.st_size, int(st.st_mtime), 0o644
            tar.addfile(info, f)
    tar.close()
    frames.flush()
    if missing:
        frame(b"M", b"\0".join(missing))
    frame(b"E")
    out.flush()
"#;

/// Longest wait for the next bytes of a reply before the session is declared dead.
const STALL: Duration = Duration::from_secs(120);

/// A helper process on the VPS kept between passes (see the module docs). Give it a host
/// of its own (a second SSH connection): it holds its connection for as long as it lives.
pub struct Session {
    host: Arc<dyn Host>,
    python: String,
    state: Mutex<State>,
}

enum State {
    Idle,
    Running(Running),
    /// The helper cannot run there; the passes use one tar command per batch.
    Unavailable,
}

struct Running {
    root: PathBuf,
    requests: DuplexStream,
    replies: BufReader<DuplexStream>,
    task: JoinHandle<Result<host::Output, HostError>>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("host", &self.host.name())
            .finish()
    }
}

/// How a batch through the session ended.
pub(crate) enum Outcome {
    /// Done (possibly with an error and the files completed before it).
    Done(std::result::Result<Fetched, (Fetched, SyncError)>),
    /// The helper cannot run on the VPS: fetch this batch another way.
    Unavailable,
}

impl Session {
    /// A session that will start `python3` on `host` at the first batch.
    pub fn new(host: Arc<dyn Host>) -> Self {
        Self::with_python(host, "python3")
    }

    /// Same, with another interpreter (a path, when `python3` is not on the PATH).
    pub fn with_python(host: Arc<dyn Host>, python: impl Into<String>) -> Self {
        Self {
            host,
            python: python.into(),
            state: Mutex::new(State::Idle),
        }
    }

    /// Whether the helper was found unusable (the passes then run one tar per batch).
    pub async fn unavailable(&self) -> bool {
        matches!(*self.state.lock().await, State::Unavailable)
    }

    fn broken(&self, detail: impl std::fmt::Display) -> SyncError {
        SyncError::Stream {
            host: self.host.name(),
            detail: format!("the fetch helper: {detail}"),
        }
    }

    /// Starts the helper for filestore `root` and waits for its hello.
    async fn start(&self, root: &Path) -> std::result::Result<Option<Running>, SyncError> {
        let spec = CommandSpec::new(self.python.clone())
            .args(["-I", "-c", HELPER])
            .arg(root.display().to_string());
        let (requests, their_stdin) = tokio::io::duplex(256 * 1024);
        let (their_stdout, replies) = tokio::io::duplex(1024 * 1024);
        let host = self.host.clone();
        let task = tokio::spawn(async move {
            host.stream(&spec, Some(Box::new(their_stdin)), Box::new(their_stdout))
                .await
        });
        let mut run = Running {
            root: root.to_owned(),
            requests,
            replies: BufReader::new(replies),
            task,
        };
        match read_frame(&mut run.replies).await {
            Ok((b'H', _)) => Ok(Some(run)),
            first => {
                // No hello: see why the command ended.
                drop(run.requests);
                let ended = tokio::time::timeout(Duration::from_secs(10), run.task).await;
                let why = match ended {
                    Ok(Ok(Err(e))) => e.to_string(),
                    Ok(Ok(Ok(out))) => out.stderr_text(),
                    _ => format!("{:?}", first.err()),
                };
                if why.contains("not found") || why.contains("No such file") {
                    tracing::warn!(
                        "{}: cannot start {} there ({}): fetching with one tar command per pass",
                        self.host.name(),
                        self.python,
                        why.trim()
                    );
                    Ok(None)
                } else {
                    Err(self.broken(format!("did not start: {}", why.trim())))
                }
            }
        }
    }

    /// Fetches one batch of database folder `db` (under `root` on the VPS) into `local`.
    pub(crate) async fn fetch(
        &self,
        root: &Path,
        db: &str,
        local: &Path,
        batch: &[StoreName],
        verify: bool,
    ) -> Outcome {
        let mut state = self.state.lock().await;
        let reuse = match &*state {
            State::Unavailable => return Outcome::Unavailable,
            State::Running(r) => r.root == root && !r.task.is_finished(),
            State::Idle => false,
        };
        if !reuse {
            *state = State::Idle;
            match self.start(root).await {
                Ok(Some(r)) => *state = State::Running(r),
                Ok(None) => {
                    *state = State::Unavailable;
                    return Outcome::Unavailable;
                }
                Err(e) => return Outcome::Done(Err((Fetched::default(), e))),
            }
        }
        let State::Running(run) = &mut *state else {
            return Outcome::Unavailable;
        };
        let result = self.exchange(run, db, local, batch, verify).await;
        if result.is_err() {
            // Out of step or dead: the next batch starts a new helper.
            *state = State::Idle;
        }
        Outcome::Done(result)
    }

    async fn exchange(
        &self,
        run: &mut Running,
        db: &str,
        local: &Path,
        batch: &[StoreName],
        verify: bool,
    ) -> std::result::Result<Fetched, (Fetched, SyncError)> {
        let mut request = Vec::with_capacity(4 + db.len() + 1 + batch.len() * 44);
        request.extend_from_slice(&[0; 4]);
        request.extend_from_slice(db.as_bytes());
        request.push(0);
        for n in batch {
            request.extend_from_slice(n.to_string().as_bytes());
            request.push(0);
        }
        let len = u32::try_from(request.len() - 4)
            .map_err(|_| (Fetched::default(), self.broken("batch too large")))?;
        request[..4].copy_from_slice(&len.to_be_bytes());
        let sent = async {
            run.requests.write_all(&request).await?;
            run.requests.flush().await
        };
        if let Err(e) = sent.await {
            return Err((Fetched::default(), self.broken(e)));
        }

        let (mut tar_in, tar_out) = tokio::io::duplex(256 * 1024);
        let wanted: HashSet<StoreName> = batch.iter().copied().collect();
        let dest = local.to_owned();
        let unpacker = tokio::task::spawn_blocking(move || {
            unpack(
                std::io::BufReader::with_capacity(1 << 20, SyncIoBridge::new(tar_out)),
                &dest,
                &wanted,
                verify,
            )
        });
        let mut missing = Vec::new();
        let mut refused = None;
        let mut failure = None;
        loop {
            match read_frame(&mut run.replies).await {
                Ok((b'T', data)) => {
                    // The unpacker stopped early (disk full): its error says more.
                    if tar_in.write_all(&data).await.is_err() {
                        failure = Some(self.broken("the local writer stopped"));
                        break;
                    }
                }
                Ok((b'M', data)) => missing.extend(
                    data.split(|b| *b == 0)
                        .filter(|n| !n.is_empty())
                        .map(|n| String::from_utf8_lossy(n).into_owned()),
                ),
                Ok((b'X', data)) => refused = Some(String::from_utf8_lossy(&data).into_owned()),
                Ok((b'E', _)) => break,
                Ok((kind, _)) => {
                    failure = Some(self.broken(format!("unexpected frame {:?}", kind as char)));
                    break;
                }
                Err(e) => {
                    failure = Some(self.broken(e));
                    break;
                }
            }
        }
        let _ = tar_in.shutdown().await;
        drop(tar_in);
        let (mut fetched, unpack_err) = match unpacker.await {
            Ok(r) => r,
            Err(e) => (Fetched::default(), Some(self.broken(e))),
        };
        if let Some(e) = unpack_err {
            return Err((fetched, e));
        }
        if let Some(e) = failure {
            return Err((fetched, e));
        }
        if let Some(folder) = refused {
            return Err((fetched, SyncError::no_vps_folder(folder, &self.host.name())));
        }
        fetched.missing = missing;
        Ok(fetched)
    }
}

/// Reads one reply frame; a stall longer than [`STALL`] is an error.
async fn read_frame(r: &mut BufReader<DuplexStream>) -> std::io::Result<(u8, Vec<u8>)> {
    let read = async {
        let mut head = [0u8; 5];
        r.read_exact(&mut head).await?;
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        if len > 64 * 1024 * 1024 {
            return Err(std::io::Error::other(format!("a frame of {len} bytes")));
        }
        let mut data = vec![0u8; len];
        r.read_exact(&mut data).await?;
        Ok((head[0], data))
    };
    match tokio::time::timeout(STALL, read).await {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no reply for {} s", STALL.as_secs()),
        )),
    }
}
