//! Rewriting a VPS's odoo.conf for the backup server: addons paths mapped to the replicated
//! sources, an explicit data_dir (without one Odoo looks under the HOME of whoever runs it),
//! the standby cluster's db_host/db_port/db_user, log and pid files, and ports when the backup
//! already uses the VPS's.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::conf::OdooConf;

/// Where things are on the backup server for one instance.
#[derive(Clone, Debug, Default)]
pub struct BackupTarget {
    /// VPS path prefix → backup path (longest prefix wins), e.g. `/opt/odoo/sources` →
    /// `<root>/<name>/sources`, and the VPS's Odoo tree → `<root>/<name>/odoo`.
    pub path_map: Vec<(PathBuf, PathBuf)>,
    /// The replicated data_dir.
    pub data_dir: PathBuf,
    /// `db_host`: a socket directory, a host, or `None` for `False` (the default socket).
    pub db_host: Option<String>,
    /// The standby cluster's port.
    pub db_port: u16,
    /// The role Odoo connects as on the backup (`None`: keep the VPS's).
    pub db_user: Option<String>,
    /// `logfile` (`None`: keep; log to the journal by setting it to `False` yourself).
    pub logfile: Option<PathBuf>,
    /// `pidfile`.
    pub pidfile: Option<PathBuf>,
    /// New HTTP port, when the backup already uses the VPS's.
    pub http_port: Option<u16>,
    /// New gevent (longpolling before Odoo 16) port, likewise.
    pub gevent_port: Option<u16>,
    /// The Odoo major version: which key a new gevent port gets when the file has neither
    /// (`longpolling_port` before 16, `gevent_port` from 16 on). `None`: `gevent_port`.
    pub odoo_major: Option<u32>,
}

/// One change made to the file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Change {
    /// The key.
    pub key: String,
    /// Its value before (`None`: it was not there).
    pub old: Option<String>,
    /// Its value now.
    pub new: String,
}

/// What `relocate` did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RelocationReport {
    /// Keys changed.
    pub changes: Vec<Change>,
    /// addons_path entries no mapping covers (kept as they were: check them).
    pub unmapped: Vec<String>,
    /// The original db_user (the owner of the database's objects, for a REASSIGN OWNED).
    pub original_db_user: Option<String>,
}

/// The path map of an instance: the VPS's addon sources to `backup_sources`, and each Odoo
/// tree the VPS's `addons_path` names (an entry `<tree>/addons` outside the sources) to
/// `backup_tree` (the backup's own Odoo source, linked as `<root>/<name>/odoo`; Odoo adds
/// `<tree>/odoo/addons` itself).
pub fn instance_path_map(
    vps_conf: &OdooConf,
    vps_sources: &Path,
    backup_sources: &Path,
    backup_tree: &Path,
) -> Vec<(PathBuf, PathBuf)> {
    let mut map = vec![(vps_sources.to_owned(), backup_sources.to_owned())];
    if let Some(addons) = vps_conf.get("addons_path") {
        for entry in addons
            .split([',', '\n'])
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            let p = Path::new(entry.trim_end_matches('/'));
            if p.starts_with(vps_sources)
                || p.file_name().and_then(|n| n.to_str()) != Some("addons")
            {
                continue;
            }
            if let Some(tree) = p.parent() {
                map.push((tree.to_owned(), backup_tree.to_owned()));
            }
        }
    }
    map
}

fn map_path(entry: &str, t: &BackupTarget) -> Option<String> {
    let p = Path::new(entry.trim_end_matches('/'));
    if !p.is_absolute() {
        return None;
    }
    // Already on the backup: leave it (a second rewrite changes nothing).
    if t.path_map.iter().any(|(_, to)| p.starts_with(to)) {
        return Some(p.display().to_string());
    }
    t.path_map
        .iter()
        .filter(|(from, _)| p.starts_with(from))
        .max_by_key(|(from, _)| from.components().count())
        .map(|(from, to)| {
            let rest = p.strip_prefix(from).unwrap_or(Path::new(""));
            if rest.as_os_str().is_empty() {
                to.display().to_string()
            } else {
                to.join(rest).display().to_string()
            }
        })
}

/// Rewrites `conf` for the backup. Keys not named here survive untouched. Idempotent.
pub fn relocate(conf: &mut OdooConf, t: &BackupTarget) -> RelocationReport {
    let mut report = RelocationReport {
        original_db_user: conf.get("db_user").map(str::to_owned),
        ..Default::default()
    };
    let mut set = |conf: &mut OdooConf, key: &str, value: String| {
        if let Some(old) = conf.set(key, &value) {
            report.changes.push(Change {
                key: key.to_owned(),
                old,
                new: value,
            });
        }
    };
    if let Some(addons) = conf.get("addons_path").map(str::to_owned) {
        let mut mapped = Vec::new();
        for entry in addons
            .split([',', '\n'])
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            match map_path(entry, t) {
                Some(m) => mapped.push(m),
                None => {
                    report.unmapped.push(entry.to_owned());
                    mapped.push(entry.to_owned());
                }
            }
        }
        set(conf, "addons_path", mapped.join(","));
    }
    set(conf, "data_dir", t.data_dir.display().to_string());
    set(
        conf,
        "db_host",
        t.db_host.clone().unwrap_or_else(|| "False".into()),
    );
    set(conf, "db_port", t.db_port.to_string());
    if let Some(u) = &t.db_user {
        set(conf, "db_user", u.clone());
    }
    if let Some(l) = &t.logfile {
        set(conf, "logfile", l.display().to_string());
    }
    if let Some(p) = &t.pidfile {
        set(conf, "pidfile", p.display().to_string());
    }
    if let Some(port) = t.http_port {
        // The legacy name, when that is what the file uses.
        let key = if conf.get("xmlrpc_port").is_some() && conf.get("http_port").is_none() {
            "xmlrpc_port"
        } else {
            "http_port"
        };
        set(conf, key, port.to_string());
    }
    if let Some(port) = t.gevent_port {
        let legacy = match (conf.get("longpolling_port"), conf.get("gevent_port")) {
            (Some(_), None) => true,
            (None, None) => t.odoo_major.is_some_and(|m| m < 16),
            _ => false,
        };
        let key = if legacy {
            "longpolling_port"
        } else {
            "gevent_port"
        };
        set(conf, key, port.to_string());
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> BackupTarget {
        BackupTarget {
            path_map: vec![
                ("/opt/odoo/sources".into(), "/srv/b/vps1/sources".into()),
                ("/opt/odoo/odoo".into(), "/srv/b/vps1/odoo".into()),
            ],
            data_dir: "/srv/b/vps1/data_dir".into(),
            db_port: 5435,
            ..Default::default()
        }
    }

    #[test]
    fn maps_longest_prefix_and_reports_the_rest() {
        let t = target();
        assert_eq!(
            map_path("/opt/odoo/sources/oca/web/", &t).unwrap(),
            "/srv/b/vps1/sources/oca/web"
        );
        assert_eq!(
            map_path("/opt/odoo/odoo/addons", &t).unwrap(),
            "/srv/b/vps1/odoo/addons"
        );
        assert_eq!(
            map_path("/srv/b/vps1/sources/x", &t).unwrap(),
            "/srv/b/vps1/sources/x"
        );
        assert_eq!(map_path("/usr/lib/other", &t), None);
        assert_eq!(map_path("relative/addons", &t), None);
        assert_eq!(
            map_path("/opt/odoo/sourcesX", &t),
            None,
            "prefixes match whole components"
        );
    }

    #[test]
    fn relocation_is_idempotent() {
        let mut c = OdooConf::parse(
            "[options]\naddons_path = /opt/odoo/odoo/addons, /opt/odoo/sources/a,/usr/x\ndb_user = odoo\nxmlrpc_port = 8069\n",
            "t",
        )
        .unwrap();
        let mut t = target();
        t.http_port = Some(8070);
        let r = relocate(&mut c, &t);
        assert_eq!(r.unmapped, vec!["/usr/x".to_owned()]);
        assert_eq!(r.original_db_user.as_deref(), Some("odoo"));
        assert_eq!(c.get("xmlrpc_port"), Some("8070"));
        assert_eq!(c.get("http_port"), None);
        let once = c.render();
        let r2 = relocate(&mut c, &t);
        assert!(r2.changes.is_empty(), "{r2:?}");
        assert_eq!(c.render(), once);
    }
}
