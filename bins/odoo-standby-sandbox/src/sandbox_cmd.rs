//! `odoo-standby-sandbox up DIR` / `down DIR`: a VPS on this machine (PostgreSQL with an Odoo
//! database and filestore, sshd), left running, with a ready config and a description of every
//! server for scripting faults.

use std::error::Error;
use std::path::Path;
use std::process::ExitCode;

use sandbox::Sandbox;
use serde_json::json;

/// `up DIR`: the servers, left running; DIR/config.toml and DIR/sandbox.json.
pub fn up(dir: &Path, attachments: usize) -> Result<ExitCode, Box<dyn Error>> {
    let mut sb = Sandbox::in_dir(dir)?;
    let root = sb.root().to_owned();
    let w = sandbox::vps_world(&mut sb, attachments)?;
    let (vps, sshd, data_dir, odoo_conf, odoo_src) =
        (&w.vps, &w.sshd, &w.data_dir, &w.odoo_conf, &w.odoo_bin);
    let config_path = w.config.clone();
    failover::Config::load(&config_path)?;
    let description = json!({
        "root": root,
        "config": config_path,
        "servers": [
            {
                "role": "vps", "kind": "postgresql", "name": vps.name(),
                "conninfo": vps.conninfo("postgres"), "port": vps.port(),
                "data_dir": vps.data_dir(), "pid_file": vps.data_dir().join("postmaster.pid"),
                "socket_dir": vps.socket_dir(), "log": vps.log_file(), "os_user": sb.run_user().name,
                "pid": vps.pid(),
            },
            {
                "role": "vps", "kind": "sshd", "target": sshd.target(), "port": sshd.port,
                "config": sshd.config, "client_key": sshd.client_key, "known_hosts": sshd.known_hosts,
                "log": sshd.log, "pid": sshd.pid,
            }
        ],
        "odoo": {"database": "clientes", "data_dir": data_dir, "filestore": data_dir.join("filestore/clientes"), "odoo_conf": odoo_conf, "odoo_bin": odoo_src},
    });
    let pids = sb.detach();
    let mut description = description;
    description["pids"] = json!(pids);
    std::fs::write(
        root.join("sandbox.json"),
        serde_json::to_string_pretty(&description)?,
    )?;
    cli::say!("sandbox up in {}", root.display());
    cli::say!(
        "  VPS PostgreSQL on 127.0.0.1:{} (database clientes, {attachments} attachments)",
        vps.port()
    );
    cli::say!("  VPS sshd on 127.0.0.1:{} ({})", sshd.port, sshd.target());
    cli::say!("  config: {}", config_path.display());
    cli::say!("  servers: {}", root.join("sandbox.json").display());
    cli::say!("stop it with: odoo-standby sandbox down {}", root.display());
    Ok(ExitCode::SUCCESS)
}

/// `down DIR`: every server `up` started there, stopped by pid (checked).
pub fn down(dir: &Path) -> Result<ExitCode, Box<dyn Error>> {
    let path = dir.join("sandbox.json");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "cannot read {}: {e}; is {} a sandbox made by `sandbox up`?",
            path.display(),
            dir.display()
        )
    })?;
    let v: serde_json::Value = serde_json::from_str(&text)?;
    let pids: Vec<i32> = v["pids"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p.as_i64())
                .filter_map(|p| i32::try_from(p).ok())
                .collect()
        })
        .unwrap_or_default();
    let root = std::fs::canonicalize(dir)?;
    let signalled = sandbox::stop_detached(&root, &pids);
    cli::say!(
        "sandbox down in {}: {signalled} process(es) stopped; files kept",
        root.display()
    );
    Ok(ExitCode::SUCCESS)
}
