//! The crate's error type.

/// What can go wrong on the Odoo side.
#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    /// odoo.conf does not parse (as Odoo would refuse it too).
    #[error("{file}, line {line}: {reason}")]
    Conf {
        /// The file.
        file: String,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// Input we refuse before touching anything.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// Which input.
        what: String,
        /// Why, and what to write instead.
        reason: String,
    },
    /// `systemd-analyze verify` found problems in a unit.
    #[error("systemd-analyze verify found problems in {unit}: {problems}")]
    UnitInvalid {
        /// The unit file.
        unit: String,
        /// What it said.
        problems: String,
    },
    /// Odoo did not serve what a running instance must serve.
    #[error("Odoo does not serve {url}: {problem}")]
    NotServing {
        /// What was asked.
        url: String,
        /// What happened instead, and for how long we tried.
        problem: String,
    },
    /// A command on a host failed.
    #[error("{during}")]
    Host {
        /// What we were doing.
        during: String,
        /// The host error.
        #[source]
        source: Box<host::HostError>,
    },
}

impl InstanceError {
    pub(crate) fn host(during: impl Into<String>) -> impl FnOnce(host::HostError) -> Self {
        let during = during.into();
        move |e| Self::Host {
            during,
            source: Box::new(e),
        }
    }

    pub(crate) fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            what: what.into(),
            reason: reason.into(),
        }
    }
}

/// Short for `Result<T, InstanceError>`.
pub type Result<T, E = InstanceError> = std::result::Result<T, E>;
