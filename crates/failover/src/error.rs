//! Errors of the orchestration: what was being done, on which host, and what to do next. The
//! lower layers' errors stay causes (`source()`), so the operator reads their words too (a
//! changed host key comes with its fingerprint); binaries print the whole chain.

/// A cause from a lower layer (host, pgrepl, filesync, odoo-instance, I/O).
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

/// Something went wrong while planning or running an operation.
#[derive(Debug, thiserror::Error)]
pub enum FailoverError {
    /// The configuration file is wrong.
    #[error(transparent)]
    Config(#[from] crate::ConfigError),
    /// An action failed; `what` says what was being done (and where); the cause follows.
    #[error("{what}")]
    Failed {
        /// What was being done, on which host.
        what: String,
        /// Why (its secrets already redacted by the layer below).
        #[source]
        source: Cause,
    },
    /// We refuse to go on (fencing, a busy instance, an interrupted plan...): the text says
    /// why and what to do.
    #[error("{0}")]
    Refused(String),
    /// A switchover could not go on safely and put everything back as it was before the run
    /// (production on the VPS, nothing promoted): the text says why. Nothing is left to
    /// resume; the same command runs again once the cause is fixed.
    #[error("{0}")]
    PutBack(String),
    /// A step of a plan failed; [`FailoverError::hint`] says what the operator can do.
    #[error("step {step:?} ({title}) failed")]
    Step {
        /// The instance.
        instance: String,
        /// The step's id.
        step: String,
        /// The step's description.
        title: String,
        /// What to do about it.
        hint: String,
        /// Whether the run is left interrupted (something acted before): then `resume`
        /// continues it; else nothing changed and the same command can simply run again.
        resumable: bool,
        /// What went wrong.
        #[source]
        source: Box<FailoverError>,
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

/// What kind of failure, for callers that branch on it (exit codes, retries).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The configuration is wrong: fix the file.
    Config,
    /// We refused, touching nothing more: read why.
    Refused,
    /// Something we ran failed.
    Failed,
    /// The journal or lock.
    Journal,
}

impl FailoverError {
    /// A failure of `what`, caused by `e`.
    pub fn failed(what: impl Into<String>, e: impl Into<Cause>) -> Self {
        Self::Failed {
            what: what.into(),
            source: e.into(),
        }
    }

    /// Its kind (a failed step has the kind of its cause).
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Config(_) => ErrorKind::Config,
            Self::Failed { .. } => ErrorKind::Failed,
            Self::Refused(_) | Self::PutBack(_) => ErrorKind::Refused,
            Self::Step { source, .. } => source.kind(),
            Self::Journal { .. } => ErrorKind::Journal,
        }
    }

    /// What the operator can do next, when we know (a failed step: its hint, then resume).
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::Step {
                hint,
                instance,
                resumable: true,
                ..
            } => Some(format!(
                "hint: {hint}\nthen: odoo-standby resume {instance}"
            )),
            Self::Step { source, .. } if matches!(**source, Self::PutBack(_)) => Some(
                "then: production runs on the VPS as before; fix the cause, then run the same command again".into(),
            ),
            Self::Step { hint, .. } => Some(format!(
                "hint: {hint}\nthen: nothing was changed by this run; run the same command again"
            )),
            _ => None,
        }
    }
}

/// Prints `e` for the operator on stderr: the error, each cause on its own line, then what
/// to do next when it is a failed step (its hint and the resume command).
pub fn eprint(e: &(dyn std::error::Error + 'static)) {
    eprintln!("error: {e}");
    let mut source = e.source();
    while let Some(s) = source {
        eprintln!("  caused by: {s}");
        source = s.source();
    }
    // What to do next comes after the causes, where the operator reads last.
    if let Some(hint) = e
        .downcast_ref::<FailoverError>()
        .and_then(FailoverError::hint)
    {
        for line in hint.lines() {
            eprintln!("  {line}");
        }
    }
}

/// The exit code of a command: its own when it ran, else 2 after [`eprint`].
pub fn report(
    result: std::result::Result<std::process::ExitCode, Box<dyn std::error::Error>>,
) -> std::process::ExitCode {
    result.unwrap_or_else(|e| {
        eprint(e.as_ref());
        std::process::ExitCode::from(2)
    })
}

/// An error and its causes on one line (`a: b: c`), for status lines and state files.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    filesync::watch::chain(e)
}

/// Results of this crate.
pub type Result<T, E = FailoverError> = std::result::Result<T, E>;
