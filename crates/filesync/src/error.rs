//! The crate's error type.

use std::path::PathBuf;

/// What can go wrong moving files.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// Input we refuse before touching anything.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// Which input.
        what: String,
        /// Why, and what to write instead.
        reason: String,
    },
    /// A local file operation failed (disk full, permissions...).
    #[error("{what} {}: {hint}", path.display())]
    Local {
        /// What we were doing.
        what: String,
        /// Where.
        path: PathBuf,
        /// What to do about it.
        hint: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Talking to the VPS failed.
    #[error("{during}")]
    Remote {
        /// What we were doing.
        during: String,
        /// The host error (names the host).
        #[source]
        source: Box<host::HostError>,
    },
    /// Reading the standby database failed.
    #[error("reading the attachments of {db} from the standby")]
    Db {
        /// Which database.
        db: String,
        /// The error.
        #[source]
        source: Box<pgrepl::PgreplError>,
    },
    /// The transfer stream was not a valid tar, or was cut.
    #[error("the transfer from {host} broke off: {detail}; files already renamed are complete, the next pass fetches the rest")]
    Stream {
        /// The VPS.
        host: String,
        /// What happened.
        detail: String,
    },
}

impl SyncError {
    pub(crate) fn local(
        what: impl Into<String>,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        let hint = match source.raw_os_error() {
            Some(libc::ENOSPC) => {
                "the disk is full: free space on the backup server, then run again".to_owned()
            }
            Some(libc::EACCES) | Some(libc::EPERM) => {
                "permission denied: run as the user that owns the filestore".to_owned()
            }
            Some(libc::EROFS) => "the filesystem is read-only".to_owned(),
            _ => "see the cause below".to_owned(),
        };
        Self::Local {
            what: what.into(),
            path: path.into(),
            hint,
            source,
        }
    }

    pub(crate) fn remote(during: impl Into<String>) -> impl FnOnce(host::HostError) -> Self {
        let during = during.into();
        move |e| Self::Remote {
            during,
            source: Box::new(e),
        }
    }

    /// The VPS has no filestore folder where the config says (`folder`, on `host`).
    pub(crate) fn no_vps_folder(folder: impl std::fmt::Display, host: &str) -> Self {
        Self::invalid(
            "VPS filestore",
            format!(
                "{folder} does not exist on {host}: check data_dir in the config (the VPS's odoo.conf says where it is)"
            ),
        )
    }

    pub(crate) fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            what: what.into(),
            reason: reason.into(),
        }
    }
}

/// Short for `Result<T, SyncError>`.
pub type Result<T, E = SyncError> = std::result::Result<T, E>;
