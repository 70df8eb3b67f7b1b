//! A VPS (cluster + data_dir + sshd) and a backup (streaming standby + local filestore).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use filesync::{Index, Vps};
use host::{SshAuth, SshConfig, SshHost};
use sandbox::{Sandbox, SizeMix};

pub struct World {
    pub sb: Sandbox,
    pub vps_db: sandbox::Cluster,
    pub standby: sandbox::Cluster,
    pub vps_data: PathBuf,
    pub backup_data: PathBuf,
    pub state: PathBuf,
    pub ssh: SshConfig,
}

impl World {
    pub fn new(files: usize, mix: &SizeMix) -> Self {
        let mut sb = Sandbox::new().unwrap();
        let vps_db = sb.add_cluster("vps").unwrap();
        vps_db.create_odoo_db("clientes", "odoo").unwrap();
        let vps_data = sb.dir("vps_data").unwrap();
        vps_db
            .add_attachments("clientes", &vps_data, files, mix, 11)
            .unwrap();
        let standby = sb.add_standby("backup", &vps_db).unwrap();
        let sshd = sb.start_sshd().unwrap();
        let ssh = SshConfig::new(
            sshd.user.clone(),
            sshd.host.clone(),
            sshd.port,
            SshAuth::KeyFile(sshd.client_key.clone()),
            sshd.known_hosts.clone(),
        );
        let backup_data = sb.dir("backup_data").unwrap();
        let state = sb.dir("state").unwrap();
        let w = Self {
            sb,
            vps_db,
            standby,
            vps_data,
            backup_data,
            state,
            ssh,
        };
        w.wait_replayed();
        w
    }

    /// Waits until the standby has every attachment row the VPS has.
    pub fn wait_replayed(&self) {
        let n = self
            .vps_db
            .psql("clientes", "SELECT count(*) FROM ir_attachment")
            .unwrap();
        self.standby
            .wait_for(
                "clientes",
                "SELECT count(*) FROM ir_attachment",
                &n,
                Duration::from_secs(30),
            )
            .unwrap();
    }

    pub fn vps(&self) -> Vps {
        Vps::new(
            Arc::new(SshHost::new(self.ssh.clone())),
            self.vps_data.join("filestore"),
            None,
        )
    }

    pub fn local_filestore(&self) -> PathBuf {
        self.backup_data.join("filestore")
    }

    pub fn index(&self) -> Index {
        Index::load_or_build(
            &self.state.join("clientes.index"),
            &self.local_filestore().join("clientes"),
        )
        .unwrap()
    }

    pub async fn standby_sql(&self) -> pgrepl::PgClient {
        pgrepl::PgClient::connect(&self.standby.conninfo("clientes"))
            .await
            .unwrap()
    }

    /// One pass as a fresh `filesync sync` would run it: a new connection to the VPS, the
    /// index as saved on disk, default options.
    pub async fn pass(&self, standby: &pgrepl::PgClient) -> filesync::PassReport {
        filesync::sync_db(
            standby,
            "clientes",
            &self.vps(),
            &self.local_filestore(),
            &mut self.index(),
            &Default::default(),
        )
        .await
        .unwrap()
    }

    /// The distinct names the VPS database references.
    pub fn referenced(&self) -> BTreeSet<String> {
        self.vps_db
            .psql(
                "clientes",
                "SELECT DISTINCT store_fname FROM ir_attachment WHERE store_fname IS NOT NULL",
            )
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

/// Every file under `root` as `dir/name` (temporary files included, so that tests see them).
pub fn files_under(root: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let Ok(dirs) = std::fs::read_dir(root) else {
        return out;
    };
    for d in dirs.flatten() {
        if !d.file_type().unwrap().is_dir() {
            continue;
        }
        for f in std::fs::read_dir(d.path()).unwrap().flatten() {
            out.insert(format!(
                "{}/{}",
                d.file_name().to_str().unwrap(),
                f.file_name().to_str().unwrap()
            ));
        }
    }
    out
}

/// Whether the file's content hashes to its name.
pub fn sound(path: &Path) -> bool {
    use sha1::Digest;
    let bytes = std::fs::read(path).unwrap();
    hex::encode(sha1::Sha1::digest(&bytes)) == path.file_name().unwrap().to_str().unwrap()
}

/// Kills every session of the sshd `sshd_pid` (its children) as soon as a first complete
/// file lands under `local`; resolves to whether it did.
pub fn cut_when_first_file_lands(local: PathBuf, sshd_pid: u32) -> tokio::task::JoinHandle<bool> {
    tokio::spawn(async move {
        for _ in 0..5000 {
            if files_under(&local)
                .iter()
                .any(|f| !f.ends_with(filesync::TMP_SUFFIX))
            {
                let st = std::process::Command::new("pkill")
                    .args(["-KILL", "-P", &sshd_pid.to_string()])
                    .status()
                    .unwrap();
                return st.success();
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        false
    })
}
