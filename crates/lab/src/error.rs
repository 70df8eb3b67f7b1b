//! The lab's error type.

use std::path::PathBuf;

/// What can go wrong building, booting or driving the lab's machines.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// The lab cannot run here (not root, a program or kernel feature missing).
    #[error("the lab cannot run here: {0}")]
    Unsupported(String),
    /// A program we ran failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// The end of its stderr.
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
    /// Something did not happen in time.
    #[error("{what}: not done after {seconds} s{}", detail_suffix(.detail))]
    Timeout {
        /// What we waited for.
        what: String,
        /// How long.
        seconds: u64,
        /// What we saw last (the end of a log, a state).
        detail: String,
    },
    /// The lab was used in a way it does not support.
    #[error("{0}")]
    Usage(String),
}

fn detail_suffix(d: &str) -> String {
    if d.is_empty() {
        String::new()
    } else {
        format!("; last seen:\n{d}")
    }
}

impl LabError {
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

/// Results of the lab.
pub type Result<T, E = LabError> = std::result::Result<T, E>;
