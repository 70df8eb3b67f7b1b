//! What protect settles for an instance on this server and records, so that every later run
//! (and failover, years later) uses the same: the backup's Odoo ports and the Odoo major
//! version. Kept in `<state_dir>/<name>/settings.json`.
//!
//! Ports: the config's `http_port`/`gevent_port` when given; else the recorded ones; else the
//! first free pair among the VPS's own ports, 10 up, 20 up, ... (8069/8072, 8079/8082, ...):
//! free means no other instance of the config has them (given, or recorded in its own
//! settings), no standby cluster here uses them, and nothing listens on them here. Two VPSs
//! that both serve on 8069 thus get different ports on the one backup server.
//!
//! The Odoo major version is read from the `odoo/release.py` of the VPS's Odoo tree (the
//! tree its `addons_path` names), else of the tree this server runs for the instance; it
//! decides the nginx site's `/websocket` (16 and newer) or `/longpolling`, and the port key
//! (`gevent_port`, or `longpolling_port` before 16) when the VPS's odoo.conf has neither.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::env::Env;
use crate::error::{FailoverError, Result};

/// What protect settled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// The backup's Odoo HTTP port for the instance.
    pub http_port: u16,
    /// Its gevent (websocket / longpolling) port.
    pub gevent_port: u16,
    /// The Odoo major version (17).
    pub odoo_major: u32,
}

/// Where an instance's settings are kept.
pub fn path(state_dir: &Path, name: &str) -> PathBuf {
    state_dir.join(name).join("settings.json")
}

/// The recorded settings of instance `name`, if protect recorded any.
pub fn recorded(state_dir: &Path, name: &str) -> Option<Settings> {
    let text = std::fs::read_to_string(path(state_dir, name)).ok()?;
    serde_json::from_str(&text).ok()
}

/// `version_info = (17, 0, 0, FINAL, 0)` in a `release.py`: 17.
pub fn major_of_release(text: &str) -> Option<u32> {
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("version_info"))?;
    let inside = line.split_once('(')?.1;
    let first = inside.split(',').next()?.trim();
    // saas~17.2 trees write the number the same way.
    first.parse().ok()
}

async fn odoo_major(env: &Env, vps_conf: &odoo_instance::OdooConf) -> Option<u32> {
    let map = odoo_instance::instance_path_map(
        vps_conf,
        &env.inst.sources,
        &env.layout.sources(),
        &env.layout.odoo(),
    );
    for (tree, to) in &map {
        if to != &env.layout.odoo() {
            continue;
        }
        if let Ok(b) = env.vps.read_file(&tree.join("odoo/release.py")).await {
            if let Some(m) = major_of_release(&String::from_utf8_lossy(&b)) {
                return Some(m);
            }
        }
    }
    let here = env.layout.odoo().join("odoo/release.py");
    let b = env.local.read_file(&here).await.ok()?;
    major_of_release(&String::from_utf8_lossy(&b))
}

fn free_here(port: u16) -> bool {
    std::net::TcpListener::bind(("0.0.0.0", port)).is_ok()
}

/// The ports the other instances of the config hold on this server.
fn taken_by_others(env: &Env) -> std::collections::BTreeSet<u16> {
    let mut taken = std::collections::BTreeSet::new();
    for i in &env.cfg.instances {
        taken.insert(i.standby_port);
        if i.name == env.name() {
            continue;
        }
        taken.extend(i.http_port);
        taken.extend(i.gevent_port);
        if let Some(s) = recorded(&env.cfg.backup.state_dir, &i.name) {
            taken.extend([s.http_port, s.gevent_port]);
        }
    }
    taken
}

/// The settings of `env`'s instance, settled now when none are recorded (see the module)
/// and, with `record`, written to its settings file. Without `record` (a check), nothing is
/// written and `None` says that protect has not settled them yet.
pub async fn settle(
    env: &Env,
    vps_conf: &odoo_instance::OdooConf,
    record: bool,
) -> Result<Option<Settings>> {
    let state_dir = &env.cfg.backup.state_dir;
    let old = recorded(state_dir, env.name());
    let odoo_major = match old {
        Some(s) => s.odoo_major,
        None => odoo_major(env, vps_conf).await.unwrap_or(17),
    };
    let (http_port, gevent_port) = match (env.inst.http_port, env.inst.gevent_port, old) {
        (Some(h), Some(g), _) => (h, g),
        (h, g, Some(s)) => (h.unwrap_or(s.http_port), g.unwrap_or(s.gevent_port)),
        (_, _, None) if !record => return Ok(None),
        (h, g, None) => {
            let taken = taken_by_others(env);
            let (vh, vg) = (vps_conf.http_port(), vps_conf.gevent_port());
            let ok = |p: u16| !taken.contains(&p) && free_here(p);
            let pick = (0u16..100)
                .filter_map(|k| Some((vh.checked_add(10 * k)?, vg.checked_add(10 * k)?)))
                .map(|(a, b)| (h.unwrap_or(a), g.unwrap_or(b)))
                .find(|(a, b)| a != b && ok(*a) && ok(*b));
            pick.ok_or_else(|| {
                FailoverError::Refused(format!(
                    "no free pair of Odoo ports from {vh}/{vg} in steps of 10 on this server: set http_port and gevent_port for instance {} in the config",
                    env.name()
                ))
            })?
        }
    };
    let s = Settings {
        http_port,
        gevent_port,
        odoo_major,
    };
    if record && old != Some(s) {
        let file = path(state_dir, env.name());
        let text = serde_json::to_string_pretty(&s)
            .map_err(|e| FailoverError::failed("instance settings", e))?;
        env.local
            .write_file(&file, text.as_bytes(), &host::Ownership::mode(0o644))
            .await
            .map_err(|e| FailoverError::failed(format!("writing {}", file.display()), e))?;
    }
    Ok(Some(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_major_version_is_read_from_release_py() {
        let r = "RELEASE_LEVELS = [ALPHA, BETA, RELEASE_CANDIDATE, FINAL]\nversion_info = (17, 0, 0, FINAL, 0)\n";
        assert_eq!(major_of_release(r), Some(17));
        assert_eq!(
            major_of_release("version_info = (15, 0, 0, FINAL, 0, '')"),
            Some(15)
        );
        assert_eq!(major_of_release("nothing"), None);
    }
}
