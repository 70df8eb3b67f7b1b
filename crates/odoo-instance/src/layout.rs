//! The per-instance layout on the backup server (runbook 3.2), one naming rule everywhere:
//! `<root>/<name>/{data_dir/, sources/, odoo -> <Odoo source tree>, odoo.conf,
//! odoo_<name>.service, requirement.txt}`.

use std::path::PathBuf;

use host::{FileKind, Host, Ownership};

use crate::error::{InstanceError, Result};

/// Checks an instance name: `^[a-z][a-z0-9_]{0,62}$` (it becomes a cluster, a folder, a slot,
/// a unit and a log tag).
pub fn validate_name(name: &str) -> Result<()> {
    host::Name::new("instance name", name)
        .map(drop)
        .map_err(|e| InstanceError::invalid("instance name", e.reason()))
}

/// Where one instance's files live on the backup server.
#[derive(Clone, Debug)]
pub struct Layout {
    /// The backup root (one folder per instance).
    pub root: PathBuf,
    /// The instance name.
    pub name: String,
    /// The OS user that owns the files and runs a promoted Odoo.
    pub os_user: String,
    /// The Odoo source tree the `odoo` link points to.
    pub odoo_source: PathBuf,
}

impl Layout {
    /// A layout; the name is validated.
    pub fn new(
        root: impl Into<PathBuf>,
        name: &str,
        os_user: impl Into<String>,
        odoo_source: impl Into<PathBuf>,
    ) -> Result<Self> {
        validate_name(name)?;
        Ok(Self {
            root: root.into(),
            name: name.to_owned(),
            os_user: os_user.into(),
            odoo_source: odoo_source.into(),
        })
    }
    /// `<root>/<name>`.
    pub fn dir(&self) -> PathBuf {
        self.root.join(&self.name)
    }
    /// The replicated data_dir.
    pub fn data_dir(&self) -> PathBuf {
        self.dir().join("data_dir")
    }
    /// The replicated addon sources.
    pub fn sources(&self) -> PathBuf {
        self.dir().join("sources")
    }
    /// The link to the Odoo source tree.
    pub fn odoo(&self) -> PathBuf {
        self.dir().join("odoo")
    }
    /// The rewritten odoo.conf.
    pub fn conf(&self) -> PathBuf {
        self.dir().join("odoo.conf")
    }
    /// The unit file's name, `odoo_<name>.service`.
    pub fn unit_name(&self) -> String {
        format!("odoo_{}.service", self.name)
    }
    /// The unit file.
    pub fn unit_file(&self) -> PathBuf {
        self.dir().join(self.unit_name())
    }
    /// The VPS's `pip freeze`, copied.
    pub fn requirements(&self) -> PathBuf {
        self.dir().join("requirement.txt")
    }

    /// Creates what is missing, sets owner and modes, points the `odoo` link; returns what
    /// it changed (nothing on a second run). Never removes anything.
    pub async fn ensure(&self, host: &dyn Host) -> Result<Vec<String>> {
        let mut changes = Vec::new();
        let owner = format!("{0}:{0}", self.os_user);
        for (dir, mode) in [
            (self.root.clone(), 0o755),
            (self.dir(), 0o750),
            (self.data_dir(), 0o750),
            (self.sources(), 0o755),
        ] {
            let before = host
                .stat(&dir)
                .await
                .map_err(InstanceError::host(format!("checking {}", dir.display())))?;
            let want_owner = dir != self.root;
            let fine = before.as_ref().is_some_and(|s| {
                s.kind == FileKind::Dir && s.mode == mode && (!want_owner || s.user == self.os_user)
            });
            if fine {
                continue;
            }
            let own = if want_owner {
                Ownership::owned(mode, owner.clone())
            } else {
                Ownership::mode(before.as_ref().map(|s| s.mode).unwrap_or(mode))
            };
            host.mkdir_p(&dir, &own)
                .await
                .map_err(InstanceError::host(format!("creating {}", dir.display())))?;
            changes.push(format!(
                "{} ({:o}, {})",
                dir.display(),
                own.mode,
                own.owner.unwrap_or_default()
            ));
        }
        let link = host
            .stat(&self.odoo())
            .await
            .map_err(InstanceError::host(format!(
                "checking {}",
                self.odoo().display()
            )))?;
        if link.and_then(|s| s.link_target) != Some(self.odoo_source.clone()) {
            host.symlink(&self.odoo_source, &self.odoo())
                .await
                .map_err(InstanceError::host(format!(
                    "linking {}",
                    self.odoo().display()
                )))?;
            changes.push(format!(
                "{} -> {}",
                self.odoo().display(),
                self.odoo_source.display()
            ));
        }
        Ok(changes)
    }
}
