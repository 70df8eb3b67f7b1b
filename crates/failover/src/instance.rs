//! What the instance is made of on this server, as the steps build it: the promoted Odoo's
//! service and unit, the smoke test, the sync service and its unit, the VPS's Odoo, the
//! sources mirror, the nginx site.

use std::path::PathBuf;

use odoo_instance::OdooConf;

use crate::env::Env;
use crate::error::{FailoverError, Result};
use crate::services::Service;

impl Env {
    /// The odoo.conf of this server's copy (as protect wrote it), parsed.
    pub async fn instance_conf(&self) -> Result<OdooConf> {
        let path = self.layout.conf();
        let text = self
            .local
            .read_file(&path)
            .await
            .map_err(|e| FailoverError::failed(format!("reading {}", path.display()), e))?;
        OdooConf::parse(&String::from_utf8_lossy(&text), &path.display().to_string())
            .map_err(|e| FailoverError::failed("reading odoo.conf", e))
    }

    /// What the sync service runs: `odoo-standby -c CONFIG sync NAME --watch`.
    fn sync_argv(&self) -> Vec<String> {
        vec![
            self.program.display().to_string(),
            "-c".into(),
            self.config_path.display().to_string(),
            "sync".into(),
            self.name().to_owned(),
            "--watch".into(),
        ]
    }
    /// The promoted Odoo here.
    pub fn odoo_service(&self) -> Service {
        Service {
            unit: self.layout.unit_name(),
            argv: self.exec_start(),
            user: self.cfg.backup.os_user.clone(),
            unit_file: Some(self.layout.unit_file()),
        }
    }

    /// The unit's command: the configured python, `<instance>/odoo/odoo-bin -c <instance>/odoo.conf`.
    pub fn exec_start(&self) -> Vec<String> {
        vec![
            self.cfg.backup.python.display().to_string(),
            self.layout.odoo().join("odoo-bin").display().to_string(),
            "-c".into(),
            self.layout.conf().display().to_string(),
        ]
    }

    /// The promoted Odoo's unit file.
    pub fn odoo_unit(&self) -> String {
        let cluster_unit = match &self.cfg.backup.clusters_dir {
            None => odoo_instance::unit::cluster_unit(self.cfg.backup.pg_version, self.name()),
            Some(_) => "postgresql.service".into(),
        };
        odoo_instance::unit::render(&odoo_instance::unit::UnitSpec {
            instance: self.name().to_owned(),
            os_user: self.cfg.backup.os_user.clone(),
            exec_start: self.exec_start(),
            cluster_unit,
            working_dir: self.layout.dir(),
        })
    }

    /// The smoke test of database `db` (the HTTP port probe from `conf`, when given).
    pub fn smoke_test(&self, db: &str, conf: Option<&OdooConf>) -> odoo_instance::smoke::SmokeTest {
        let b = &self.cfg.backup;
        odoo_instance::smoke::SmokeTest {
            exec_start: self.exec_start(),
            database: db.to_owned(),
            os_user: b.os_user.clone(),
            http: conf.map(|c| {
                let iface = c
                    .get("http_interface")
                    .filter(|_| c.is_set("http_interface"))
                    .map(str::trim)
                    .unwrap_or("0.0.0.0")
                    .to_owned();
                (iface, c.http_port())
            }),
            db_user: conf
                .and_then(|c| c.db_user().map(str::to_owned))
                .unwrap_or_else(|| b.os_user.clone()),
            vps_db_user: None,
            cluster_socket: self.standby.socket_dir(),
            cluster_port: self.inst.standby_port,
            requirements: self.layout.requirements(),
        }
    }

    /// The instance's syncs here (`odoo-standby sync NAME --watch`): with systemd the
    /// template's instance `odoo-standby-sync@NAME.service` (see [`crate::units`]).
    pub fn sync_service(&self) -> Service {
        Service {
            unit: crate::units::SYNC.instance(self.name()),
            argv: self.sync_argv(),
            user: self.cfg.backup.os_user.clone(),
            unit_file: None,
        }
    }

    /// The 12-hourly refresh's timer, `odoo-standby-refresh@NAME.timer` (systemd only: in
    /// the sandbox the sync's passes do the refresh).
    pub fn refresh_timer(&self) -> Option<Service> {
        (self.cfg.backup.services == crate::config::ServiceKind::Systemd).then(|| Service {
            unit: crate::units::REFRESH_TIMER.instance(self.name()),
            argv: Vec::new(),
            user: self.cfg.backup.os_user.clone(),
            unit_file: None,
        })
    }

    /// The VPS's own Odoo.
    pub fn vps_odoo_service(&self) -> Service {
        Service {
            unit: format!(
                "{}.service",
                self.inst.vps_odoo_unit.trim_end_matches(".service")
            ),
            argv: vec![
                self.inst.vps_python.display().to_string(),
                self.inst.vps_odoo_bin.display().to_string(),
                "-c".into(),
                self.inst.odoo_conf.display().to_string(),
            ],
            user: self.ssh.user.clone(),
            unit_file: None,
        }
    }

    /// The addon sources, as rsync mirrors them.
    pub fn sources_tree(&self) -> filesync::rsync::Tree {
        filesync::rsync::Tree {
            remote: self.inst.sources.clone(),
            dest_parent: self.layout.dir(),
            delete: true,
            compress: false,
            exclude: Vec::new(),
        }
    }

    /// Mirrors the VPS's addon sources into the instance folder (rsync `--delete`, as the
    /// runbook does): the first copy in protect, then every 12 h in the sync service.
    pub async fn mirror_sources(&self) -> Result<()> {
        filesync::rsync::mirror(self.local.as_ref(), &self.ssh, &self.sources_tree(), None)
            .await
            .map_err(|e| FailoverError::failed("mirroring the sources", e))
    }

    /// Where the nginx site is written.
    pub fn nginx_path(&self) -> PathBuf {
        self.layout
            .dir()
            .join(format!("nginx_{}.conf", self.name()))
    }

    /// The nginx site for the promoted Odoo: the ports of the odoo.conf here, the Odoo major
    /// version protect recorded, the config's `server_name` (else the VPS's SSH host) and
    /// TLS certificate, and the filestore for nginx when odoo.conf has `x_sendfile`.
    pub async fn nginx_site(&self) -> String {
        let conf = self.instance_conf().await.ok();
        let settings = crate::settings::recorded(&self.cfg.backup.state_dir, self.name());
        let server_names = if self.inst.server_name.is_empty() {
            vec![self.ssh.host.clone()]
        } else {
            self.inst.server_name.clone()
        };
        let sendfile = conf.as_ref().and_then(|c| c.flag("x_sendfile")) == Some(true);
        odoo_instance::nginx::render(&odoo_instance::nginx::NginxSite {
            instance: self.name().to_owned(),
            server_names,
            http_port: conf.as_ref().map(OdooConf::http_port).unwrap_or(8069),
            gevent_port: conf.as_ref().map(OdooConf::gevent_port).unwrap_or(8072),
            odoo_major: settings.map(|s| s.odoo_major).unwrap_or(17),
            x_sendfile_data_dir: sendfile.then(|| self.layout.data_dir()),
            tls: self.inst.tls.clone(),
        })
    }
}
