//! Where commands run: one [`Host`] trait for "this machine" and "that machine over SSH".
//!
//! Every other crate of odoo-standby reaches a machine only through [`Host`]:
//! - [`LocalHost`] runs commands with `tokio::process` (as another OS user through `runuser`
//!   when we are root, `sudo -n` otherwise).
//! - [`SshHost`] runs them over one SSH connection (libssh2 on blocking threads), with
//!   public-key authentication, host keys checked strictly against a known_hosts file, connect
//!   and command timeouts, and keepalives.
//!
//! Commands are data ([`CommandSpec`]): an argv, never a shell string built from input. A
//! non-zero exit is an error ([`HostError::CommandFailed`]) that carries the command line, the
//! exit status and the end of stderr, with every registered secret replaced by `***`.
//!
//! File operations (read, atomic write with mode and owner, stat, mkdir -p, symlink, remove,
//! rename) are built once on top of [`Host::run`], so they behave the same on every host;
//! [`FilesAs`] runs them as another OS user (a server's own files, as their owner).
//!
//! ```no_run
//! use host::{CommandSpec, Host, LocalHost, Ownership};
//! use std::path::Path;
//!
//! # async fn demo() -> Result<(), host::HostError> {
//! let host = LocalHost::new();
//! let out = host
//!     .run(&CommandSpec::new("psql").args(["-XAtc", "select 1"]).run_as("postgres"))
//!     .await?;
//! assert_eq!(out.stdout_text().trim(), "1");
//! host.write_file(Path::new("/tmp/example.conf"), b"x = 1\n", &Ownership::mode(0o644))
//!     .await?;
//! # Ok(())
//! # }
//! ```
//!
//! With the `test-utils` feature, `MockHost` (mockall) stands in for a host in orchestration
//! tests.

pub mod account;
mod error;
mod file;
mod files_as;
mod local;
mod name;
pub mod quote;
mod recorder;
mod spec;
mod ssh;

use std::path::Path;

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncWrite};

pub use error::{HostError, HostErrorKind};
pub use file::{FileKind, FileStat, Ownership};
pub use files_as::FilesAs;
pub use local::LocalHost;
pub use name::{InvalidName, Name};
pub use recorder::{Recorder, Sink};
pub use spec::{CommandSpec, ExitStatus, Kind, Output};
pub use ssh::{fingerprint_sha256, scan_host_key, ScannedKey, SshAuth, SshConfig, SshHost};

/// A source of bytes for a streamed command's stdin.
pub type BoxRead = Box<dyn AsyncRead + Send + Unpin>;
/// A sink for a streamed command's stdout.
pub type BoxWrite = Box<dyn AsyncWrite + Send + Unpin>;

/// A machine we can run commands on and whose files we can read and write.
///
/// Contract:
/// - `run_unchecked` and `stream`/`run` are as idempotent as the command they run; the file
///   operations are idempotent by design (`mkdir_p`, `symlink`, `remove`, `write_file` can run
///   twice with the same result) except `rename`, which refuses to overwrite.
/// - Nothing here deletes data: `remove` takes files, links and *empty* directories only.
/// - Errors never contain secrets registered on the spec.
/// - Implementations may serialize calls (one SSH connection runs one command at a time);
///   use several hosts for parallel work.
#[cfg_attr(any(test, feature = "test-utils"), mockall::automock)]
#[async_trait]
pub trait Host: Send + Sync {
    /// How this host is named in messages: `localhost` or `user@host:port`.
    fn name(&self) -> String;

    /// The OS user file operations run as (`None`: the user we are, or log in as).
    fn file_user(&self) -> Option<String>;

    /// Runs a command to completion and returns its output, whatever its exit status.
    async fn run_unchecked(&self, spec: &CommandSpec) -> Result<Output, HostError>;

    /// Runs a command to completion; a non-zero exit is [`HostError::CommandFailed`].
    async fn run(&self, spec: &CommandSpec) -> Result<Output, HostError> {
        let out = self.run_unchecked(spec).await?;
        check_status(&self.name(), spec, out)
    }

    /// Runs a command with `stdin` read from a reader (instead of the spec's bytes) and its
    /// stdout written to `stdout` as it comes, for large streams (tar). The returned output's
    /// `stdout` is empty. A non-zero exit is an error.
    async fn stream(
        &self,
        spec: &CommandSpec,
        stdin: Option<BoxRead>,
        stdout: BoxWrite,
    ) -> Result<Output, HostError>;

    /// Reads a whole regular file. [`HostError::NotFound`] when it is not there.
    async fn read_file(&self, path: &Path) -> Result<Vec<u8>, HostError> {
        file::read_file(self, path).await
    }

    /// Replaces `path` atomically: a temporary file in the same directory gets the mode and
    /// owner first, then the contents, is fsynced and renamed over `path`. The contents are
    /// treated as secret (never logged). The parent directory must exist.
    async fn write_file(
        &self,
        path: &Path,
        contents: &[u8],
        ownership: &Ownership,
    ) -> Result<(), HostError> {
        file::write_file(self, path, contents, ownership).await
    }

    /// Status of `path` itself (links not followed); `None` when nothing is there.
    async fn stat(&self, path: &Path) -> Result<Option<FileStat>, HostError> {
        file::stat(self, path).await
    }

    /// Creates a directory and its parents; then sets its mode and owner (also when it existed).
    async fn mkdir_p(&self, path: &Path, ownership: &Ownership) -> Result<(), HostError> {
        file::mkdir_p(self, path, ownership).await
    }

    /// Makes `link` a symlink to `target`; re-points an existing link, refuses anything else.
    async fn symlink(&self, target: &Path, link: &Path) -> Result<(), HostError> {
        file::symlink(self, target, link).await
    }

    /// Removes a file, a link or an empty directory; nothing there is fine.
    async fn remove(&self, path: &Path) -> Result<(), HostError> {
        file::remove(self, path).await
    }

    /// Renames `from` to `to` (to move data aside); refuses when `to` exists.
    async fn rename(&self, from: &Path, to: &Path) -> Result<(), HostError> {
        file::rename(self, from, to).await
    }
}

/// Turns a finished command's output into an error when it did not exit 0.
pub fn check_status(host: &str, spec: &CommandSpec, out: Output) -> Result<Output, HostError> {
    if out.status.success() {
        Ok(out)
    } else {
        Err(HostError::CommandFailed {
            host: host.to_owned(),
            command: spec.to_string(),
            status: out.status,
            stderr_tail: spec::stderr_tail(spec, &out.stderr),
        })
    }
}
