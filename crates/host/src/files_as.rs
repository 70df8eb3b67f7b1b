//! One machine seen as another OS user for its files: a server's own files (a cluster's
//! `pg_hba.conf`, data directory and `.pgpass` belong to `postgres`) are read and written as
//! their owner, while commands keep running as whoever they say.

use std::sync::Arc;

use async_trait::async_trait;

use crate::{BoxRead, BoxWrite, CommandSpec, Host, HostError, Output};

/// `inner`, with every file operation run as `user` (through `runuser` when we are root,
/// `sudo -n -u USER` otherwise). Commands are passed on unchanged.
#[derive(Clone)]
pub struct FilesAs {
    inner: Arc<dyn Host>,
    user: String,
}

impl FilesAs {
    /// `host`, its file operations as `user`.
    pub fn new(host: Arc<dyn Host>, user: impl Into<String>) -> Self {
        Self {
            inner: host,
            user: user.into(),
        }
    }
}

#[async_trait]
impl Host for FilesAs {
    fn name(&self) -> String {
        self.inner.name()
    }

    fn file_user(&self) -> Option<String> {
        Some(self.user.clone())
    }

    async fn run_unchecked(&self, spec: &CommandSpec) -> Result<Output, HostError> {
        self.inner.run_unchecked(spec).await
    }

    async fn stream(
        &self,
        spec: &CommandSpec,
        stdin: Option<BoxRead>,
        stdout: BoxWrite,
    ) -> Result<Output, HostError> {
        self.inner.stream(spec, stdin, stdout).await
    }
}
