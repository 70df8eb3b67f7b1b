//! The one error type of this crate.

use std::path::PathBuf;

use crate::spec::ExitStatus;

/// Everything that can go wrong reaching a machine or running something on it.
///
/// Every variant names the host (`localhost` or `user@host:port`). Messages say what was
/// being done and, where the operator can act, what to do next. Command lines and stderr in
/// messages have the spec's secrets replaced by `***`.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The spec cannot be run anywhere (empty program, NUL byte, bad user name...).
    #[error("invalid command for {host}: {reason}")]
    InvalidSpec {
        /// The host it was meant for.
        host: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The command ran and exited non-zero, or was killed by a signal.
    #[error("`{command}` failed on {host} with {status}{}", tail_suffix(.stderr_tail))]
    CommandFailed {
        /// The host it ran on.
        host: String,
        /// The command line as shown to people (secrets redacted).
        command: String,
        /// How it ended.
        status: ExitStatus,
        /// The end of its stderr (secrets redacted).
        stderr_tail: String,
    },

    /// The command was still running when its time limit ran out; it was killed.
    #[error("`{command}` on {host} did not finish within {seconds} s and was stopped")]
    CommandTimedOut {
        /// The host it ran on.
        host: String,
        /// The command line as shown to people (secrets redacted).
        command: String,
        /// The limit, in seconds.
        seconds: u64,
    },

    /// The program could not be started at all.
    #[error("could not start `{program}` on {host}")]
    Spawn {
        /// The host.
        host: String,
        /// The program.
        program: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },

    /// A path asked for does not exist.
    #[error("{path} does not exist on {host}")]
    NotFound {
        /// The host.
        host: String,
        /// The path.
        path: PathBuf,
    },

    /// A path exists but is not what the operation expects (a directory where a symlink goes...).
    #[error("{path} on {host} {problem}; move it aside or choose another path")]
    Conflict {
        /// The host.
        host: String,
        /// The path.
        path: PathBuf,
        /// What is in the way.
        problem: String,
    },

    /// The host name did not resolve.
    #[error("cannot resolve {host}: check the name in the config or ~/.ssh/config")]
    Resolve {
        /// The host.
        host: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },

    /// Nothing listens on that address and port.
    #[error("connection to {host} refused: is sshd running and listening on that port?")]
    ConnectionRefused {
        /// The host.
        host: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// The host did not answer in time while connecting, handshaking or authenticating.
    #[error("{host} did not answer within {seconds} s while {during}: check the address, the port and any firewall between us")]
    Timeout {
        /// The host.
        host: String,
        /// The phase that timed out.
        during: String,
        /// The limit, in seconds.
        seconds: u64,
    },

    /// The server's host key is not in our known_hosts: we never accept it blindly.
    #[error(
        "the host key of {host} is not known (offered {key_type} key {fingerprint}); \
         compare the fingerprint with `ssh-keygen -lf` on the server, then add it to {known_hosts} \
         (`odoo-standby ssh-setup NAME` asks you to confirm the fingerprint, then adds it)"
    )]
    HostKeyUnknown {
        /// The host.
        host: String,
        /// Key algorithm, e.g. `ssh-ed25519`.
        key_type: String,
        /// `SHA256:...`, as `ssh-keygen -l` prints it.
        fingerprint: String,
        /// The known_hosts file that was checked.
        known_hosts: PathBuf,
    },

    /// The server offered a key different from the one we know: possibly an attack.
    #[error(
        "the host key of {host} CHANGED (offered {key_type} key {fingerprint}, which does not \
         match {known_hosts}); refusing to connect. If the server was reinstalled on purpose, \
         verify the new fingerprint out of band and replace its line in that file"
    )]
    HostKeyChanged {
        /// The host.
        host: String,
        /// Key algorithm of the offered key.
        key_type: String,
        /// Fingerprint of the offered key.
        fingerprint: String,
        /// The known_hosts file that was checked.
        known_hosts: PathBuf,
    },

    /// The server rejected our key (or the agent had none it accepted).
    #[error("{host} rejected public-key login as {user} with {key}: is its public key in ~{user}/.ssh/authorized_keys there?")]
    AuthRejected {
        /// The host.
        host: String,
        /// The user we tried to log in as.
        user: String,
        /// The key file, or `the ssh-agent's keys`.
        key: String,
    },

    /// An SSH protocol or transport error not covered above.
    #[error("SSH error on {host} while {during}")]
    Ssh {
        /// The host.
        host: String,
        /// What we were doing.
        during: String,
        /// The libssh2 error.
        #[source]
        source: ssh2::Error,
    },

    /// A local I/O error while talking to a host (socket, pipe, known_hosts file...).
    #[error("I/O error on {host} while {during}")]
    Io {
        /// The host.
        host: String,
        /// What we were doing.
        during: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },

    /// Output that a helper command printed could not be understood.
    #[error("unexpected output from {host} while {during}: {output:?}")]
    Unexpected {
        /// The host.
        host: String,
        /// What we were doing.
        during: String,
        /// What we got.
        output: String,
    },
}

fn tail_suffix(tail: &str) -> String {
    if tail.is_empty() {
        String::new()
    } else {
        format!(": {tail}")
    }
}

/// What class of failure an error is, for callers that must branch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostErrorKind {
    /// The command ran and failed; the machine is reachable.
    CommandFailed,
    /// The command or the connection took too long.
    Timeout,
    /// The path is not there.
    NotFound,
    /// We could not reach or log in to the machine.
    Unreachable,
    /// The server is not who we think it is: never retry blindly.
    HostKey,
    /// The request itself is wrong.
    Invalid,
    /// Anything else.
    Other,
}

impl HostError {
    /// The class of this error.
    pub fn kind(&self) -> HostErrorKind {
        match self {
            Self::CommandFailed { .. } => HostErrorKind::CommandFailed,
            Self::CommandTimedOut { .. } | Self::Timeout { .. } => HostErrorKind::Timeout,
            Self::NotFound { .. } => HostErrorKind::NotFound,
            Self::Resolve { .. } | Self::ConnectionRefused { .. } | Self::AuthRejected { .. } => {
                HostErrorKind::Unreachable
            }
            Self::HostKeyUnknown { .. } | Self::HostKeyChanged { .. } => HostErrorKind::HostKey,
            Self::InvalidSpec { .. } | Self::Conflict { .. } => HostErrorKind::Invalid,
            Self::Spawn { .. } | Self::Ssh { .. } | Self::Io { .. } | Self::Unexpected { .. } => {
                HostErrorKind::Other
            }
        }
    }

    /// The exit code, for a command that ran and exited non-zero.
    pub fn exit_code(&self) -> Option<i32> {
        match self {
            Self::CommandFailed { status, .. } => status.code,
            _ => None,
        }
    }
}
