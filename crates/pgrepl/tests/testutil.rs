//! A VPS cluster made by the sandbox, and a backup cluster that pgrepl manages.

use std::path::PathBuf;
use std::sync::Arc;

use host::{Host, LocalHost, Ownership};
use pgrepl::pgpass::PgpassEntry;
use pgrepl::{Name, PgClient, PlainCluster, Secret, Sql, Upstream};
use sandbox::Sandbox;

pub struct Pair {
    pub sb: Sandbox,
    pub vps: sandbox::Cluster,
    /// The same VPS cluster, driven by pgrepl (for the rejoin).
    pub vps_ctl: PlainCluster,
    /// The backup server's standby cluster, made by pgrepl.
    pub backup: PlainCluster,
    pub passfile: PathBuf,
    pub local: Arc<dyn Host>,
    pub replication_pw: Secret,
    pub rewind_pw: Secret,
}

pub fn os_user(sb: &Sandbox) -> String {
    sb.run_user().name.clone()
}

impl Pair {
    pub async fn new() -> Self {
        let mut sb = Sandbox::new().unwrap();
        let vps = sb.add_cluster("vps").unwrap();
        let local: Arc<dyn Host> = Arc::new(LocalHost::new());
        let user = os_user(&sb);
        let base = sb.dir("backup").unwrap();
        local
            .mkdir_p(&base, &Ownership::owned(0o700, user.clone()))
            .await
            .unwrap();
        let backup = PlainCluster::new(
            local.clone(),
            vps.bindir(),
            base.join("data"),
            sandbox::free_port().unwrap(),
            user.clone(),
            base.clone(),
            base.join("postgresql.log"),
        )
        .unwrap();
        let vps_ctl = PlainCluster::new(
            local.clone(),
            vps.bindir(),
            vps.data_dir(),
            vps.port(),
            user.clone(),
            vps.socket_dir(),
            vps.log_file(),
        )
        .unwrap();
        let secrets = sb.dir("backup_secrets").unwrap();
        local
            .mkdir_p(&secrets, &Ownership::owned(0o700, user.clone()))
            .await
            .unwrap();
        Self {
            passfile: secrets.join("pgpass"),
            sb,
            vps,
            vps_ctl,
            backup,
            local,
            replication_pw: Secret::generate(),
            rewind_pw: Secret::generate(),
        }
    }

    /// A superuser connection to the VPS over TCP.
    pub async fn vps_admin(&self) -> PgClient {
        PgClient::connect(&self.vps.conninfo("postgres"))
            .await
            .unwrap()
    }

    pub fn options(&self) -> pgrepl::PrepareOptions {
        pgrepl::PrepareOptions::new(
            vec!["127.0.0.1".into()],
            self.replication_pw.clone(),
            self.rewind_pw.clone(),
        )
        .unwrap()
    }

    /// Both roles' passwords for a server at 127.0.0.1:port, in the backup's passfile.
    pub async fn write_pgpass(&self, port: u16) {
        let e = |db: &str, user: &str, pw: &Secret| PgpassEntry {
            host: "127.0.0.1".into(),
            port: port.to_string(),
            database: db.into(),
            user: user.into(),
            password: pw.expose().into(),
        };
        pgrepl::pgpass::upsert(
            self.local.as_ref(),
            &self.passfile,
            &os_user(&self.sb),
            &[
                e("replication", "replica_user", &self.replication_pw),
                e("postgres", "replica_rewind", &self.rewind_pw),
            ],
        )
        .await
        .unwrap();
    }

    pub fn upstream(&self, port: u16, slot: &str) -> Upstream {
        Upstream {
            host: "127.0.0.1".into(),
            port,
            user: Name::new("role", "replica_user").unwrap(),
            passfile: self.passfile.clone(),
            slot: Name::new("slot", slot).unwrap(),
            max_mb_per_s: 0,
        }
    }

    /// Prepares the VPS (with the restart its settings need) and the backup's passfile.
    pub async fn prepared(self) -> Self {
        let admin = self.vps_admin().await;
        pgrepl::prepare_primary(&admin, self.local.as_ref(), &self.options())
            .await
            .unwrap();
        self.vps.stop().unwrap();
        self.vps.start().unwrap();
        self.write_pgpass(self.vps.port()).await;
        self
    }
}

pub async fn count(db: &dyn Sql, sql: &str) -> i64 {
    pgrepl::query_value(db, sql)
        .await
        .unwrap()
        .unwrap()
        .parse()
        .unwrap()
}
