//! Bad input gets a clear error and touches nothing.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use pgrepl::pgpass::PgpassEntry;
use pgrepl::{clone_standby, Cluster, Name, PgreplError};

use crate::testutil::{os_user, Pair};

/// What is in the backup's directory (the data directory must not appear, or stay empty).
fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

async fn slots_on_vps(p: &Pair) -> i64 {
    crate::testutil::count(
        &p.vps_admin().await,
        "SELECT count(*) FROM pg_replication_slots",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_fails_clearly_and_leaves_nothing() {
    let p = Pair::new().await.prepared().await;
    // A wrong password for the replication role.
    pgrepl::pgpass::upsert(
        p.local.as_ref(),
        &p.passfile,
        &os_user(&p.sb),
        &[PgpassEntry {
            host: "127.0.0.1".into(),
            port: p.vps.port().to_string(),
            database: "replication".into(),
            user: "replica_user".into(),
            password: "not-the-password".into(),
        }],
    )
    .await
    .unwrap();
    let parent = p.backup.data_dir().parent().unwrap().to_owned();
    let before = listing(&parent);
    let err = clone_standby(&p.backup, &p.upstream(p.vps.port(), "s1"), &mut |_| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("password authentication failed"), "{err}");
    assert!(err.contains("is wrong: fix that line"), "{err}");
    assert!(!err.contains("not-the-password"), "{err}");
    assert_eq!(
        listing(&parent),
        before,
        "the failed clone left files behind"
    );
    assert_eq!(slots_on_vps(&p).await, 0, "the failed clone left a slot");
    assert!(!p.backup.is_running().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_pg_hba_entry_fails_clearly() {
    let p = Pair::new().await;
    // Prepared for another backup address: our 127.0.0.1 is not let in.
    let admin = p.vps_admin().await;
    let mut opts = p.options();
    opts.backup_addresses = vec!["127.0.0.2".into()];
    pgrepl::prepare_primary(&admin, p.local.as_ref(), &opts)
        .await
        .unwrap();
    p.write_pgpass(p.vps.port()).await;
    let parent = p.backup.data_dir().parent().unwrap().to_owned();
    let before = listing(&parent);
    let err = clone_standby(&p.backup, &p.upstream(p.vps.port(), "s1"), &mut |_| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("no pg_hba.conf entry"), "{err}");
    assert!(
        err.contains("run prepare-primary with this machine's address"),
        "{err}"
    );
    assert_eq!(listing(&parent), before);

    // The same through the TCP client: a hint, not just the server's words.
    let err = pgrepl::PgClient::connect(&format!(
        "host=127.0.0.1 port={} user=replica_rewind dbname=postgres passfile={}",
        p.vps.port(),
        p.passfile.display()
    ))
    .await
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("no pg_hba.conf line lets replica_rewind in"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pgpass_readable_by_others_is_refused_before_anything_happens() {
    let p = Pair::new().await.prepared().await;
    std::fs::set_permissions(&p.passfile, std::fs::Permissions::from_mode(0o644)).unwrap();
    let parent = p.backup.data_dir().parent().unwrap().to_owned();
    let before = listing(&parent);
    let err = clone_standby(&p.backup, &p.upstream(p.vps.port(), "s1"), &mut |_| {})
        .await
        .unwrap_err();
    assert!(
        matches!(err, PgreplError::PgpassPermissions { mode: 0o644, .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("chmod 0600") && text.contains(&p.passfile.display().to_string()),
        "{text}"
    );
    assert_eq!(listing(&parent), before);
    // Writing our secrets into it is refused too, until the operator fixes the mode.
    let err = pgrepl::pgpass::upsert(p.local.as_ref(), &p.passfile, &os_user(&p.sb), &[])
        .await
        .unwrap_err();
    assert!(
        matches!(err, PgreplError::PgpassPermissions { .. }),
        "{err:?}"
    );
    std::fs::set_permissions(&p.passfile, std::fs::Permissions::from_mode(0o600)).unwrap();
    p.write_pgpass(p.vps.port()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_name_with_a_quote_is_refused() {
    for bad in ["vps'1", "vps\"1", "Vps1", "vps-1", "1vps", ""] {
        let err = Name::new("slot name", bad).unwrap_err().to_string();
        assert!(
            err.contains("invalid slot name") && err.contains("lower-case"),
            "{err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_standby_port_is_refused() {
    let mut p = Pair::new().await.prepared().await;
    // Another server already listens on the port the backup cluster is meant to use.
    let squatter = p.sb.add_cluster("squatter").unwrap();
    let local = p.local.clone();
    let base = p.backup.data_dir().parent().unwrap().to_owned();
    let backup = pgrepl::PlainCluster::new(
        local,
        squatter.bindir(),
        p.backup.data_dir(),
        squatter.port(),
        os_user(&p.sb),
        base.clone(),
        base.join("postgresql.log"),
    )
    .unwrap();
    let before = listing(&base);
    let err = clone_standby(&backup, &p.upstream(p.vps.port(), "s1"), &mut |_| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("port {} is already taken", squatter.port())),
        "{err}"
    );
    assert_eq!(listing(&base), before);
    assert_eq!(slots_on_vps(&p).await, 0);
    p.backup = backup;
}

/// A batch runs every statement in one psql, each on its database, and gives each its own
/// rows or error: a failing statement spoils only its own answer; a database that does not
/// exist ends psql, and the statements after it say they did not run; NULLs, quotes and
/// newlines come through as with one statement each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_answers_each_statement_on_its_database() {
    use pgrepl::Stmt;
    let p = Pair::new().await;
    p.vps.create_odoo_db("clientes", "odoo").unwrap();
    let psql = p.vps_ctl.psql("postgres");
    let answers = psql
        .batch(&[
            Stmt::here("SELECT current_database(), NULL::text, 'a,\"b\"'"),
            Stmt::here("SELECT * FROM nosuch"),
            Stmt::on("clientes", "SELECT current_database(), E'l1\\nl2'"),
            Stmt::here("SELECT count(*) >= 0 FROM ir_attachment"),
            Stmt::on("no_such_db", "SELECT 1"),
            Stmt::here("SELECT 2"),
            Stmt::on("postgres", "SELECT current_database()"),
        ])
        .await
        .unwrap();
    let text = |i: usize| format!("{:?}", answers[i]);
    assert_eq!(answers.len(), 7);
    assert_eq!(
        answers[0].as_ref().unwrap(),
        &vec![vec![Some("postgres".into()), None, Some("a,\"b\"".into())]]
    );
    let e = answers[1].as_ref().unwrap_err();
    assert_eq!(e.sqlstate(), Some("42P01"), "{e}");
    assert_eq!(
        answers[2].as_ref().unwrap(),
        &vec![vec![Some("clientes".into()), Some("l1\nl2".into())]]
    );
    assert_eq!(answers[3].as_ref().unwrap(), &vec![vec![Some("t".into())]]);
    assert!(text(4).contains("no_such_db"), "{}", text(4));
    for i in [5, 6] {
        assert!(
            text(i).contains("not run: psql ended before it") && text(i).contains("no_such_db"),
            "{}",
            text(i)
        );
    }
    // A server that does not run: one error for the batch.
    let down = pgrepl::Psql::new(
        p.local.clone(),
        os_user(&p.sb),
        "/nonexistent",
        1,
        "postgres",
    )
    .with_bindir(p.vps.bindir());
    let e = down.batch(&[Stmt::here("SELECT 1")]).await.unwrap_err();
    assert!(e.to_string().contains("/nonexistent"), "{e}");
}

/// A host that counts the commands it runs: how many psql processes a batch took.
struct Counting {
    inner: std::sync::Arc<dyn host::Host>,
    runs: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl host::Host for Counting {
    fn name(&self) -> String {
        self.inner.name()
    }
    fn file_user(&self) -> Option<String> {
        self.inner.file_user()
    }
    async fn run_unchecked(
        &self,
        spec: &host::CommandSpec,
    ) -> Result<host::Output, host::HostError> {
        self.runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.run_unchecked(spec).await
    }
    async fn stream(
        &self,
        spec: &host::CommandSpec,
        stdin: Option<host::BoxRead>,
        stdout: host::BoxWrite,
    ) -> Result<host::Output, host::HostError> {
        self.inner.stream(spec, stdin, stdout).await
    }
}

/// Several servers in one batch: each part on its own server, all in one psql process while
/// each can be reached; a server that does not run gets its error alone, and the parts after
/// it are asked in a second process. Another cluster's port shows each part ran where it
/// should.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_several_servers_asks_each_on_its_own() {
    use pgrepl::Stmt;
    let mut p = Pair::new().await;
    p.vps.create_odoo_db("clientes", "odoo").unwrap();
    let other = p.sb.add_cluster("other").unwrap();
    let counting = std::sync::Arc::new(Counting {
        inner: p.local.clone(),
        runs: Default::default(),
    });
    let on = |c: &sandbox::Cluster| {
        pgrepl::Psql::new(
            counting.clone(),
            os_user(&p.sb),
            c.socket_dir().display().to_string(),
            c.port(),
            "postgres",
        )
        .with_bindir(c.bindir())
    };
    let port = "SELECT current_setting('port'), current_database()";
    let (vps, other_db) = (on(&p.vps), on(&other));
    // A server's name with a quote and a backslash: quoted through, refused by the server.
    let down = pgrepl::Psql::new(
        counting.clone(),
        os_user(&p.sb),
        "/nonexistent/it's\\here",
        1,
        "postgres",
    )
    .with_bindir(p.vps.bindir());
    let answers = pgrepl::batch_many(&[
        (
            vps.clone(),
            vec![Stmt::here(port), Stmt::here("SELECT * FROM nosuch")],
        ),
        (other_db.clone(), vec![Stmt::here(port)]),
        (vps.database("clientes"), vec![Stmt::here(port)]),
        (other_db.clone(), Vec::new()),
        (down, vec![Stmt::here("SELECT 1")]),
        (other_db.clone(), vec![Stmt::on("postgres", port)]),
    ])
    .await;
    let rows = |part: usize, stmt: usize| -> Vec<Option<String>> {
        answers[part].as_ref().unwrap()[stmt].as_ref().unwrap()[0].clone()
    };
    let cell = |port: u16, db: &str| vec![Some(port.to_string()), Some(db.to_owned())];
    assert_eq!(answers.len(), 6);
    assert_eq!(rows(0, 0), cell(p.vps.port(), "postgres"));
    let e = answers[0].as_ref().unwrap()[1].as_ref().unwrap_err();
    assert_eq!(e.sqlstate(), Some("42P01"), "{e}");
    assert_eq!(rows(1, 0), cell(other.port(), "postgres"));
    assert_eq!(rows(2, 0), cell(p.vps.port(), "clientes"));
    assert!(answers[3].as_ref().unwrap().is_empty());
    let e = answers[4].as_ref().unwrap_err().to_string();
    assert!(e.contains("/nonexistent/it's\\here"), "{e}");
    assert_eq!(rows(5, 0), cell(other.port(), "postgres"));
    // One process up to the server that does not run, one after it.
    assert_eq!(counting.runs.load(std::sync::atomic::Ordering::SeqCst), 2);
}
