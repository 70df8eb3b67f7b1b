//! A ready "VPS + backup server" world for odoo-standby: a VPS cluster with an Odoo database
//! and filestore, addon sources, an odoo.conf, an sshd, and an odoo-standby config for one
//! instance (`vps1`) whose backup side lives under the same root. Used by `odoo-standby
//! sandbox up`, the demo and the end-to-end tests, so all three run the same setup.

use std::path::{Path, PathBuf};

use crate::error::{Result, SandboxError};
use crate::{os, Cluster, Sandbox, SizeMix, Sshd};

/// What [`vps_world`] made.
pub struct World {
    /// The VPS's cluster (database `clientes`, owner `odoo`).
    pub vps: Cluster,
    /// The VPS's sshd.
    pub sshd: Sshd,
    /// The odoo-standby config (`<root>/config.toml`).
    pub config: PathBuf,
    /// The backup's known_hosts (its Odoo user's copy, what the config names).
    pub known_hosts: PathBuf,
    /// The VPS's data_dir.
    pub data_dir: PathBuf,
    /// The VPS's odoo.conf.
    pub odoo_conf: PathBuf,
    /// The stand-in odoo-bin.
    pub odoo_bin: PathBuf,
    /// The standby cluster's port on the backup side.
    pub standby_port: u16,
    /// Where the backup keeps the instance's files (`<root>/backup/instances/vps1`).
    pub instance_dir: PathBuf,
    /// The backup's standby cluster folder (`data`, `sock`, `postgresql.log`).
    pub standby_dir: PathBuf,
}

fn write(path: &Path, text: String) -> Result<()> {
    std::fs::write(path, text).map_err(|e| SandboxError::io("cannot write", path, e))
}

/// The PostgreSQL major version of a bindir (`/usr/lib/postgresql/15/bin`).
pub fn pg_version(bindir: &Path) -> u32 {
    bindir
        .parent()
        .and_then(|p| p.file_name())
        .and_then(|v| v.to_str())
        .and_then(|v| v.parse().ok())
        .unwrap_or(15)
}

/// Builds the world in `sb` with `attachments` attachments in the VPS's database.
pub fn vps_world(sb: &mut Sandbox, attachments: usize) -> Result<World> {
    let root = sb.root().to_owned();
    let vps = sb.add_cluster("vps")?;
    vps.create_odoo_db("clientes", "odoo")?;
    let vps_dir = sb.dir("vps")?;
    let data_dir = vps_dir.join("data_dir");
    std::fs::create_dir_all(&data_dir)
        .map_err(|e| SandboxError::io("cannot create", &data_dir, e))?;
    vps.add_attachments("clientes", &data_dir, attachments, &SizeMix::odoo(), 7)?;
    let sources = vps_dir.join("sources");
    crate::write_addon(&sources, "sale_custom", &[])?;
    let odoo_src = crate::write_odoo_source(&sb.dir("odoo_src")?)?;
    let odoo_conf = vps_dir.join("odoo.conf");
    write(
        &odoo_conf,
        format!(
            "[options]\naddons_path = {},{}\ndata_dir = {}\ndb_host = {}\ndb_port = {}\ndb_user = odoo\nhttp_interface = 127.0.0.1\nhttp_port = {}\n",
            odoo_src.with_file_name("addons").display(),
            sources.display(),
            data_dir.display(),
            vps.socket_dir().display(),
            vps.port(),
            crate::free_port()?
        ),
    )?;
    let sshd = sb.start_sshd()?;
    let standby_port = crate::free_port()?;
    let pg = format!(
        "host=127.0.0.1 port={} user=postgres passfile={}",
        vps.port(),
        vps.passfile().display()
    );
    let user = sb.run_user().name.clone();
    // Folders the PostgreSQL user must own: the backup's clusters and both .pgpass files.
    let backup = root.join("backup");
    let private = [
        backup.join("clusters"),
        backup.join("secrets"),
        vps_dir.join("secrets"),
    ];
    for d in &private {
        os::mkdir(d, 0o700)?;
        sb.run_user().chown(d)?;
    }
    // The backup's Odoo user has its own copy of the key (runbook 3.1): the sync service runs
    // as that user.
    let ssh_dir = backup.join("ssh");
    os::mkdir(&ssh_dir, 0o700)?;
    sb.run_user().chown(&ssh_dir)?;
    let (key, known) = (ssh_dir.join("id_ed25519"), ssh_dir.join("known_hosts"));
    for (from, to, mode) in [
        (&sshd.client_key, &key, 0o600),
        (&sshd.known_hosts, &known, 0o644),
    ] {
        let bytes = std::fs::read(from).map_err(|e| SandboxError::io("cannot read", from, e))?;
        os::write_new(to, &bytes, mode)?;
        sb.run_user().chown(to)?;
    }
    // node-exporter's textfile folder of this world: the sync (as the Odoo user) writes there.
    let metrics = root.join("metrics");
    os::mkdir(&metrics, 0o755)?;
    sb.run_user().chown(&metrics)?;
    let config = format!(
        "# Written by `odoo-standby sandbox up` for the sandbox in {root}.\n\
         # Supervised services and pg_ctl clusters: the sandbox has no systemd.\n\
         [backup]\nroot = \"{root}/backup/instances\"\nodoo_source = \"{src}\"\nos_user = \"{user}\"\naddress = \"127.0.0.1\"\npg_version = {ver}\n\
         state_dir = \"{root}/state\"\nservices = \"supervised\"\nclusters_dir = \"{root}/backup/clusters\"\npg_bindir = \"{bindir}\"\n\
         pgpass = \"{root}/backup/secrets/pgpass\"\nssh_key = \"{key}\"\nknown_hosts = \"{known}\"\nmetrics_dir = \"{root}/metrics\"\n\n\
         [[instance]]\nname = \"vps1\"\nssh = \"{ssh}\"\npg = \"{pg}\"\nstandby_port = {standby_port}\n\
         data_dir = \"{data}\"\nsources = \"{sources}\"\nodoo_conf = \"{conf}\"\n\
         vps_cluster = \"{vps_data}\"\nvps_pgpass = \"{vps_secrets}/pgpass\"\nvps_odoo_bin = \"{odoo_bin}\"\n",
        root = root.display(),
        src = odoo_src.parent().map(|p| p.display().to_string()).unwrap_or_default(),
        ver = pg_version(vps.bindir()),
        bindir = vps.bindir().display(),
        key = key.display(),
        known = known.display(),
        ssh = sshd.target(),
        data = data_dir.display(),
        sources = sources.display(),
        conf = odoo_conf.display(),
        vps_data = vps.data_dir().display(),
        vps_secrets = vps_dir.join("secrets").display(),
        odoo_bin = odoo_src.display(),
    );
    let config_path = root.join("config.toml");
    write(&config_path, config)?;
    Ok(World {
        vps,
        sshd,
        config: config_path,
        known_hosts: known,
        data_dir,
        odoo_conf,
        odoo_bin: odoo_src,
        standby_port,
        instance_dir: root.join("backup/instances/vps1"),
        standby_dir: root.join("backup/clusters/vps1"),
    })
}

impl World {
    /// Adds to the config an instance `name` protecting the same VPS as `vps1` (its own
    /// standby cluster on a free port, its own slot, copy and sync): one sandbox VPS standing
    /// for several, for fleet tests and the fleet benchmark. Returns the new standby port.
    pub fn add_instance(&self, name: &str) -> Result<u16> {
        let text = std::fs::read_to_string(&self.config)
            .map_err(|e| SandboxError::io("cannot read", &self.config, e))?;
        let at = text.find("[[instance]]").ok_or_else(|| {
            SandboxError::io(
                "no [[instance]] block in",
                &self.config,
                std::io::Error::from(std::io::ErrorKind::InvalidData),
            )
        })?;
        let port = crate::free_port()?;
        let first_end = text[at + 1..]
            .find("[[instance]]")
            .map(|i| at + 1 + i)
            .unwrap_or(text.len());
        let block = text[at..first_end]
            .replace("name = \"vps1\"", &format!("name = \"{name}\""))
            .replace(
                &format!("standby_port = {}", self.standby_port),
                &format!("standby_port = {port}"),
            );
        let mut all = text.clone();
        if !all.ends_with('\n') {
            all.push('\n');
        }
        all.push('\n');
        all.push_str(&block);
        write(&self.config, all)?;
        Ok(port)
    }
}
