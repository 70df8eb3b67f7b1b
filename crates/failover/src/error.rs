//! Errors of the orchestration: what was being done, on which host, and what to do next.

/// Something went wrong while planning or running an operation.
#[derive(Debug, thiserror::Error)]
pub enum FailoverError {
    /// The configuration file is wrong.
    #[error(transparent)]
    Config(#[from] crate::ConfigError),
    /// An action failed; `what` says what was being done (and where), then the cause.
    #[error("{what}: {cause}")]
    Failed {
        /// What was being done, on which host.
        what: String,
        /// The underlying error, as text (its secrets already redacted by the layer below).
        cause: String,
    },
    /// We refuse to go on (fencing, a busy instance, an interrupted plan...): the text says
    /// why and what to do.
    #[error("{0}")]
    Refused(String),
    /// A step of a plan failed; the hint says what the operator can do.
    #[error("step {step:?} ({title}) failed: {cause}\n  hint: {hint}\n  then: odoo-standby resume {instance}")]
    Step {
        /// The instance.
        instance: String,
        /// The step's id.
        step: String,
        /// The step's description.
        title: String,
        /// What went wrong.
        cause: String,
        /// What to do about it.
        hint: String,
    },
    /// The journal or lock could not be used.
    #[error("journal {path}: {cause}")]
    Journal {
        /// The file.
        path: String,
        /// What went wrong.
        cause: String,
    },
}

impl FailoverError {
    /// A failure of `what`, caused by `e`.
    pub fn failed(what: impl Into<String>, e: impl std::fmt::Display) -> Self {
        Self::Failed {
            what: what.into(),
            cause: e.to_string(),
        }
    }
}

/// Results of this crate.
pub type Result<T, E = FailoverError> = std::result::Result<T, E>;
