//! This machine, through `tokio::process`.

use std::process::Stdio;

use async_trait::async_trait;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

use crate::spec::ExitStatus;
use crate::{BoxRead, BoxWrite, CommandSpec, Host, HostError, Output};

/// The machine we run on.
///
/// A command with a `run_as` user other than ours runs through `runuser -u USER --` when we
/// are root and `sudo -n -u USER --` otherwise (never prompting for a password). Each command
/// runs in its own process group, which is killed whole when its timeout runs out.
///
/// Children die with us, however we end (a `SIGKILL` included): beside each command, in its
/// process group, waits a guard (`sh -c 'read _; kill -KILL 0'`) whose standard input is a
/// pipe only we hold. When we end, the kernel closes the pipe, the guard's `read` returns and
/// it kills the whole group: the command and what it started (pg_basebackup's WAL streamer,
/// rsync's ssh). When the command ends first, the guard is killed by its pid. Decision: a
/// guard rather than `PR_SET_PDEATHSIG`, which fires when the spawning *thread* ends (tokio's
/// blocking threads come and go) and reaches only the direct child.
#[derive(Clone, Debug, Default)]
pub struct LocalHost {
    file_user: Option<String>,
}

impl LocalHost {
    /// This machine; file operations run as the user we are.
    pub fn new() -> Self {
        Self::default()
    }

    /// This machine; file operations run as `user` (e.g. `postgres` for its data directory).
    pub fn with_file_user(user: impl Into<String>) -> Self {
        Self {
            file_user: Some(user.into()),
        }
    }

    fn invalid(&self, reason: String) -> HostError {
        HostError::InvalidSpec {
            host: self.name(),
            reason,
        }
    }

    fn command(&self, spec: &CommandSpec) -> Result<Command, HostError> {
        spec.validate().map_err(|r| self.invalid(r))?;
        let mut argv: Vec<String> = Vec::new();
        let via_sudo = match spec.user() {
            Some(user) if Some(user) != current_user_name().as_deref() => {
                if is_root() {
                    argv.extend(["runuser", "-u", user, "--"].map(String::from));
                    false
                } else {
                    argv.extend(["sudo", "-n", "-u", user, "--"].map(String::from));
                    true
                }
            }
            _ => false,
        };
        if via_sudo && !spec.env.is_empty() {
            // sudo resets the environment; `env` puts it back for the target program.
            argv.push("env".into());
            argv.extend(spec.env.iter().map(|(k, v)| format!("{k}={v}")));
        }
        argv.push(spec.program.clone());
        argv.extend(spec.args.iter().cloned());

        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0);
        if let Some(dir) = &spec.cwd {
            cmd.current_dir(dir);
        }
        Ok(cmd)
    }

    fn spawn(
        &self,
        spec: &CommandSpec,
        mut cmd: Command,
        stdin: bool,
    ) -> Result<(Child, Guard), HostError> {
        cmd.stdin(if stdin { Stdio::piped() } else { Stdio::null() });
        let child = cmd.spawn().map_err(|source| HostError::Spawn {
            host: self.name(),
            program: spec.program.clone(),
            source,
        })?;
        let guard = Guard::beside(child.id());
        Ok((child, guard))
    }

    /// Kills the command and everything it started (its own process group).
    fn kill_group(child_pid: Option<u32>) {
        if let Some(pid) = child_pid.and_then(|p| i32::try_from(p).ok()) {
            // SAFETY: kill(2) with a negative pid signals the process group we created for
            // this command (process_group(0) made the child its leader); no memory involved.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
    }

    fn timed_out(&self, spec: &CommandSpec, child_pid: Option<u32>) -> HostError {
        Self::kill_group(child_pid);
        HostError::CommandTimedOut {
            host: self.name(),
            command: spec.to_string(),
            seconds: spec.time_limit().map(|d| d.as_secs()).unwrap_or_default(),
        }
    }

    fn io(&self, during: String, source: std::io::Error) -> HostError {
        HostError::Io {
            host: self.name(),
            during,
            source,
        }
    }
}

/// The guard of one command's process group (see [`LocalHost`]): killed when dropped.
struct Guard(#[allow(dead_code)] Option<Child>);

impl Guard {
    /// A guard in the process group of `pid` (the command leads its own group). `None`
    /// inside when it cannot be made (the command already ended and took its group along).
    fn beside(pid: Option<u32>) -> Self {
        let Some(pgid) = pid.and_then(|p| i32::try_from(p).ok()) else {
            return Self(None);
        };
        let guard = Command::new("sh")
            .args(["-c", "read _; kill -KILL 0"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .process_group(pgid)
            .spawn();
        Self(guard.ok())
    }
}

/// Runs `fut`, with the spec's time limit when it has one.
async fn with_limit<F: std::future::Future>(spec: &CommandSpec, fut: F) -> Option<F::Output> {
    match spec.time_limit() {
        Some(limit) => tokio::time::timeout(limit, fut).await.ok(),
        None => Some(fut.await),
    }
}

fn exit_status(status: std::process::ExitStatus) -> ExitStatus {
    use std::os::unix::process::ExitStatusExt;
    ExitStatus {
        code: status.code(),
        signal: status.signal().map(|s| s.to_string()),
    }
}

fn ignore_broken_pipe(r: std::io::Result<()>) -> std::io::Result<()> {
    match r {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

#[async_trait]
impl Host for LocalHost {
    fn name(&self) -> String {
        "localhost".to_owned()
    }

    fn file_user(&self) -> Option<String> {
        self.file_user.clone()
    }

    /// As the trait's (`[ -f ]`, then the bytes), read here without a program when files
    /// are ours to read (no file user): `status` of a fleet reads a few small files per
    /// instance, and a `sh` and a `cat` for each cost more than the read.
    async fn read_file(&self, path: &std::path::Path) -> Result<Vec<u8>, HostError> {
        if self.file_user.is_some() {
            return crate::file::read_file(self, path).await;
        }
        let missing = || HostError::NotFound {
            host: self.name(),
            path: path.to_owned(),
        };
        let during = || format!("reading {}", path.display());
        match tokio::fs::metadata(path).await {
            Ok(m) if m.is_file() => {}
            Ok(_) => return Err(missing()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(missing()),
            Err(e) => return Err(self.io(during(), e)),
        }
        match tokio::fs::read(path).await {
            Ok(b) => Ok(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(missing()),
            Err(e) => Err(self.io(during(), e)),
        }
    }

    async fn run_unchecked(&self, spec: &CommandSpec) -> Result<Output, HostError> {
        let cmd = self.command(spec)?;
        let (mut child, _guard) = self.spawn(spec, cmd, spec.stdin.is_some())?;
        let pid = child.id();
        let input = spec.stdin.clone();
        let mut stdin = child.stdin.take();
        let feed = async move {
            if let (Some(pipe), Some(bytes)) = (stdin.as_mut(), input) {
                ignore_broken_pipe(pipe.write_all(&bytes).await)?;
            }
            drop(stdin);
            Ok::<(), std::io::Error>(())
        };
        let work = async { tokio::try_join!(feed, child.wait_with_output()) };
        match with_limit(spec, work).await {
            None => Err(self.timed_out(spec, pid)),
            Some(Err(e)) => Err(self.io(format!("running `{spec}`"), e)),
            Some(Ok(((), out))) => Ok(Output {
                status: exit_status(out.status),
                stdout: out.stdout,
                stderr: out.stderr,
            }),
        }
    }

    async fn stream(
        &self,
        spec: &CommandSpec,
        stdin: Option<BoxRead>,
        mut stdout: BoxWrite,
    ) -> Result<Output, HostError> {
        if stdin.is_some() && spec.has_stdin() {
            return Err(self.invalid("stdin given both as bytes and as a reader".into()));
        }
        let cmd = self.command(spec)?;
        let has_input = stdin.is_some() || spec.has_stdin();
        let (mut child, _guard) = self.spawn(spec, cmd, has_input)?;
        let pid = child.id();
        let (mut pipe_in, mut pipe_out, mut pipe_err) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take());
        let bytes = spec.stdin.clone();
        let feed = async move {
            if let Some(pipe) = pipe_in.as_mut() {
                match (stdin, bytes) {
                    (Some(mut reader), _) => {
                        ignore_broken_pipe(tokio::io::copy(&mut reader, pipe).await.map(drop))?
                    }
                    (None, Some(b)) => ignore_broken_pipe(pipe.write_all(&b).await)?,
                    (None, None) => {}
                }
            }
            drop(pipe_in);
            Ok::<(), std::io::Error>(())
        };
        let drain = async move {
            if let Some(out) = pipe_out.as_mut() {
                tokio::io::copy(out, &mut stdout).await?;
            }
            stdout.flush().await?;
            stdout.shutdown().await
        };
        let errors = async move {
            let mut buf = Vec::new();
            if let Some(err) = pipe_err.as_mut() {
                err.read_to_end(&mut buf).await?;
            }
            Ok::<_, std::io::Error>(buf)
        };
        let work = async {
            let ((), (), stderr) = tokio::try_join!(feed, drain, errors)?;
            let status = child.wait().await?;
            Ok::<_, std::io::Error>((status, stderr))
        };
        match with_limit(spec, work).await {
            None => Err(self.timed_out(spec, pid)),
            Some(Err(e)) => {
                // The reader or writer failed: do not leave the command running.
                Self::kill_group(pid);
                Err(self.io(format!("streaming `{spec}`"), e))
            }
            Some(Ok((status, stderr))) => crate::check_status(
                &self.name(),
                spec,
                Output {
                    status: exit_status(status),
                    stdout: Vec::new(),
                    stderr,
                },
            ),
        }
    }
}

pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The name of the effective user, from the password database.
pub(crate) fn current_user_name() -> Option<String> {
    crate::account::lookup(None).map(|a| a.name)
}
