//! The crate's error type.

use std::path::PathBuf;

/// What can go wrong managing replication. Messages say what was being done, where, and
/// what to do next; they never contain passwords.
#[derive(Debug, thiserror::Error)]
pub enum PgreplError {
    /// Input that we refuse before touching anything (a bad name, a bad address...).
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// Which input.
        what: String,
        /// Why, and what to write instead.
        reason: String,
    },

    /// A `.pgpass` file that is readable by others: libpq ignores it, and so do we.
    #[error(
        "{path} has mode {mode:04o}: a password file must not be readable by group or others; \
         run `chmod 0600 {path}` (libpq ignores such files too)"
    )]
    PgpassPermissions {
        /// The file.
        path: PathBuf,
        /// Its mode.
        mode: u32,
    },

    /// Could not connect or authenticate to a server.
    #[error("cannot connect to {server} as {user}: {hint}")]
    Connect {
        /// Which server (host:port).
        server: String,
        /// As which role.
        user: String,
        /// What the server said, turned into advice.
        hint: String,
        /// The client error.
        #[source]
        source: Option<Box<tokio_postgres::Error>>,
    },

    /// A query failed on a server.
    #[error("{during} on {server} failed: {message}")]
    Sql {
        /// Which server.
        server: String,
        /// What we were doing.
        during: String,
        /// The server's message (never contains secrets: we send none).
        message: String,
        /// SQLSTATE, when the server sent one.
        code: Option<String>,
    },

    /// A command on a host failed.
    #[error("{during}")]
    Host {
        /// What we were doing.
        during: String,
        /// The host error (carries the host, command and stderr tail).
        #[source]
        source: Box<host::HostError>,
    },

    /// The cluster is not in the state the operation needs.
    #[error("{0}")]
    State(String),

    /// Waited too long for a server to reach a state.
    #[error("{what} did not happen within {seconds} s{}", detail_suffix(.detail))]
    Timeout {
        /// What we waited for.
        what: String,
        /// How long.
        seconds: u64,
        /// The last thing we saw.
        detail: String,
    },

    /// Output of a PostgreSQL tool we could not understand.
    #[error("cannot understand the output of {tool}: {detail}")]
    Parse {
        /// Which tool.
        tool: String,
        /// What was wrong.
        detail: String,
    },
}

fn detail_suffix(d: &str) -> String {
    if d.is_empty() {
        String::new()
    } else {
        format!(" (last seen: {d})")
    }
}

impl PgreplError {
    pub(crate) fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            what: what.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn host(during: impl Into<String>, source: host::HostError) -> Self {
        Self::Host {
            during: during.into(),
            source: Box::new(source),
        }
    }

    /// The SQLSTATE of a failed query, to branch on (never on message text).
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            Self::Sql { code, .. } => code.as_deref(),
            _ => None,
        }
    }
}

/// Short for `Result<T, PgreplError>`.
pub type Result<T, E = PgreplError> = std::result::Result<T, E>;
