//! `odoo-standby sandbox up DIR` / `down DIR`: a VPS on this machine (PostgreSQL with an Odoo
//! database and filestore, sshd), left running, with a ready config and a description of every
//! server for scripting faults.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use sandbox::{Sandbox, SizeMix};
use serde_json::json;

/// `sandbox up|down`.
#[derive(clap::Subcommand, Debug)]
pub enum SandboxCmd {
    /// Start a VPS in DIR (new or empty) and leave it running; writes DIR/config.toml and
    /// DIR/sandbox.json.
    Up {
        /// Where everything goes.
        dir: PathBuf,
        /// Attachments in the demo database.
        #[arg(long, default_value_t = 200)]
        attachments: usize,
    },
    /// Stop every server `sandbox up` started in DIR (by pid, checked); files stay.
    Down {
        /// The directory given to `sandbox up`.
        dir: PathBuf,
    },
}

impl SandboxCmd {
    /// Runs the subcommand.
    pub fn run(self) -> Result<ExitCode, Box<dyn Error>> {
        match self {
            Self::Up { dir, attachments } => up(&dir, attachments),
            Self::Down { dir } => down(&dir),
        }
    }
}

fn pg_version(bindir: &Path) -> u32 {
    bindir
        .parent()
        .and_then(|p| p.file_name())
        .and_then(|v| v.to_str())
        .and_then(|v| v.parse().ok())
        .unwrap_or(15)
}

fn up(dir: &Path, attachments: usize) -> Result<ExitCode, Box<dyn Error>> {
    let mut sb = Sandbox::in_dir(dir)?;
    let root = sb.root().to_owned();
    let vps = sb.add_cluster("vps")?;
    vps.create_odoo_db("clientes", "odoo")?;
    let vps_dir = sb.dir("vps")?;
    let data_dir = vps_dir.join("data_dir");
    std::fs::create_dir_all(&data_dir)?;
    vps.add_attachments("clientes", &data_dir, attachments, &SizeMix::odoo(), 7)?;
    let sources = vps_dir.join("sources");
    sandbox::write_addon(&sources, "sale_custom", &[])?;
    let odoo_src = sandbox::write_odoo_source(&sb.dir("odoo_src")?)?;
    let odoo_conf = vps_dir.join("odoo.conf");
    std::fs::write(
        &odoo_conf,
        format!(
            "[options]\naddons_path = {},{}\ndata_dir = {}\ndb_host = {}\ndb_port = {}\ndb_user = odoo\nhttp_interface = 127.0.0.1\n",
            odoo_src.with_file_name("addons").display(),
            sources.display(),
            data_dir.display(),
            vps.socket_dir().display(),
            vps.port()
        ),
    )?;
    let sshd = sb.start_sshd()?;
    let standby_port = sandbox::free_port()?;
    let pg = format!(
        "host=127.0.0.1 port={} user=postgres passfile={}",
        vps.port(),
        vps.passfile().display()
    );
    let config = format!(
        "# Written by `odoo-standby sandbox up` for the sandbox in {root}.\n\
         [backup]\nroot = \"{root}/backup\"\nodoo_source = \"{src}\"\nos_user = \"{user}\"\naddress = \"127.0.0.1\"\npg_version = {ver}\n\n\
         [[instance]]\nname = \"vps1\"\nssh = \"{ssh}\"\npg = \"{pg}\"\nstandby_port = {standby_port}\n\
         data_dir = \"{data}\"\nsources = \"{sources}\"\nodoo_conf = \"{conf}\"\n",
        root = root.display(),
        src = odoo_src.parent().map(|p| p.display().to_string()).unwrap_or_default(),
        user = sb.run_user().name,
        ver = pg_version(vps.bindir()),
        ssh = sshd.target(),
        data = data_dir.display(),
        sources = sources.display(),
        conf = odoo_conf.display(),
    );
    let config_path = root.join("config.toml");
    failover::Config::parse(&config, &config_path.display().to_string())?;
    std::fs::write(&config_path, &config)?;
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
    println!("sandbox up in {}", root.display());
    println!(
        "  VPS PostgreSQL on 127.0.0.1:{} (database clientes, {attachments} attachments)",
        vps.port()
    );
    println!("  VPS sshd on 127.0.0.1:{} ({})", sshd.port, sshd.target());
    println!("  config: {}", config_path.display());
    println!("  servers: {}", root.join("sandbox.json").display());
    println!("stop it with: odoo-standby sandbox down {}", root.display());
    Ok(ExitCode::SUCCESS)
}

fn down(dir: &Path) -> Result<ExitCode, Box<dyn Error>> {
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
    println!(
        "sandbox down in {}: {signalled} process(es) stopped; files kept",
        root.display()
    );
    Ok(ExitCode::SUCCESS)
}
