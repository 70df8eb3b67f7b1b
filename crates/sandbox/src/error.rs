//! The sandbox's error type.

use std::path::PathBuf;

/// What can go wrong setting up or driving sandbox servers.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// A system program we need is not installed.
    #[error("{program} not found ({hint}); install it first, e.g. `apt-get install {package}`")]
    Missing {
        /// The program.
        program: String,
        /// Where we looked.
        hint: String,
        /// The Debian package that has it.
        package: String,
    },
    /// A program we ran failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// The end of its stderr (and of the server log when relevant).
        stderr: String,
    },
    /// A file or directory operation failed.
    #[error("{what} {}", path.display())]
    Io {
        /// What we were doing.
        what: String,
        /// On which path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A server did not become ready in time.
    #[error("{what} was not ready after {seconds} s{}", log_suffix(.log))]
    NotReady {
        /// Which server.
        what: String,
        /// How long we waited.
        seconds: u64,
        /// The end of its log.
        log: String,
    },
    /// A SQL query failed.
    #[error("SQL on {cluster} failed")]
    Sql {
        /// Which cluster.
        cluster: String,
        /// Why.
        #[source]
        source: tokio_postgres::Error,
    },
    /// The sandbox was used in a way it does not support.
    #[error("{0}")]
    Usage(String),
}

fn log_suffix(log: &str) -> String {
    if log.is_empty() {
        String::new()
    } else {
        format!("; log ends with:\n{log}")
    }
}

impl SandboxError {
    pub(crate) fn io(
        what: impl Into<String>,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Self::Io {
            what: what.into(),
            path: path.into(),
            source,
        }
    }
}

/// Short for `Result<T, SandboxError>`.
pub type Result<T, E = SandboxError> = std::result::Result<T, E>;
