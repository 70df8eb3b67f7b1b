//! prepare → clone → stream → promote → the old primary writes on its own → rejoin: its own
//! rows are gone, everything committed on the new primary is there, and it streams through its
//! slot as the replication role.

use std::time::Duration;

use pgrepl::{
    clone_standby, prepare_primary, promote, rejoin, status, CloneOutcome, Cluster, Name,
    PromoteOutcome, RejoinOptions, RejoinOutcome, Status,
};

use crate::testutil::{count, Pair};

async fn wait_count(db: &dyn pgrepl::Sql, sql: &str, want: i64) {
    for _ in 0..150 {
        if pgrepl::query_value(db, sql)
            .await
            .ok()
            .flatten()
            .and_then(|v| v.parse().ok())
            == Some(want)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{sql} never reached {want}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepare_is_idempotent_and_reports_the_restart() {
    let p = Pair::new().await;
    let admin = p.vps_admin().await;
    let first = prepare_primary(&admin, p.local.as_ref(), &p.options())
        .await
        .unwrap();
    let text = first.changes.join("\n");
    for want in [
        "wal_log_hints",
        "created role replica_user",
        "created role replica_rewind",
        "pg_hba.conf",
        "pg_ls_dir",
        "pg_checkpoint",
    ] {
        assert!(text.contains(want), "{want} missing from:\n{text}");
    }
    // wal_log_hints only applies after a restart, and the report says so.
    assert!(
        first.restart_needed.contains(&"wal_log_hints".to_owned()),
        "{first:?}"
    );
    // The secret is nowhere in what we report.
    assert!(!format!("{first:?}").contains(p.replication_pw.expose()));

    // Before the restart, a second run changes nothing (the setting is already asked for).
    let second = prepare_primary(&admin, p.local.as_ref(), &p.options())
        .await
        .unwrap();
    assert!(second.changes.is_empty(), "{second:?}");
    p.vps.stop().unwrap();
    p.vps.start().unwrap();
    let admin = p.vps_admin().await;
    let third = prepare_primary(&admin, p.local.as_ref(), &p.options())
        .await
        .unwrap();
    assert_eq!(third, pgrepl::PrepareReport::default());

    // The pg_hba block is first, once, and the rest of the file is untouched.
    let hba = std::fs::read_to_string(p.vps.data_dir().join("pg_hba.conf")).unwrap();
    assert!(hba.starts_with(pgrepl::HBA_BEGIN));
    assert_eq!(hba.matches(pgrepl::HBA_BEGIN).count(), 1);
    assert!(hba.contains("host    all          postgres  127.0.0.1/32  scram-sha-256"));
    // Passwords were stored as SCRAM verifiers.
    let stored = pgrepl::query_value(
        &admin,
        "SELECT rolpassword FROM pg_authid WHERE rolname = 'replica_user'",
    )
    .await
    .unwrap()
    .unwrap();
    assert!(stored.starts_with("SCRAM-SHA-256$"));

    // A changed password is noticed and set (one change).
    let mut opts = p.options();
    opts.replication_password = pgrepl::Secret::generate();
    let rotated = prepare_primary(&admin, p.local.as_ref(), &opts)
        .await
        .unwrap();
    assert_eq!(
        rotated.changes,
        vec!["set the password of role replica_user".to_owned()]
    );
}

async fn lifecycle(kill_old_primary: bool) {
    let p = Pair::new().await.prepared().await;
    let vps = p.vps_admin().await;
    pgrepl::execute(
        &vps,
        "CREATE TABLE orders (id int PRIMARY KEY, origin text)",
    )
    .await
    .unwrap();
    pgrepl::execute(
        &vps,
        "INSERT INTO orders SELECT g, 'vps' FROM generate_series(1, 100) g",
    )
    .await
    .unwrap();

    // Clone, and a second clone changes nothing.
    let up = p.upstream(p.vps.port(), "vps_clientes_1");
    let mut seen = 0;
    let outcome = clone_standby(&p.backup, &up, &mut |_| seen += 1)
        .await
        .unwrap();
    assert_eq!(outcome, CloneOutcome::Cloned { moved_aside: None });
    assert_eq!(
        clone_standby(&p.backup, &up, &mut |_| {}).await.unwrap(),
        CloneOutcome::AlreadyStreaming
    );
    let _ = seen;

    // Rows written on the primary are read on the standby.
    pgrepl::execute(
        &vps,
        "INSERT INTO orders SELECT g, 'vps' FROM generate_series(101, 200) g",
    )
    .await
    .unwrap();
    let backup_db = p.backup.psql("postgres");
    wait_count(&backup_db, "SELECT count(*) FROM orders", 200).await;

    // Status: streaming, through an active slot, as replica_user.
    match status(&vps).await.unwrap() {
        Status::Primary(s) => {
            assert_eq!(s.replicas.len(), 1);
            assert_eq!(s.replicas[0].state, "streaming");
            assert_eq!(s.replicas[0].application_name, "vps_clientes_1");
            let slot = s
                .slots
                .iter()
                .find(|sl| sl.name == "vps_clientes_1")
                .unwrap();
            assert!(slot.active);
            assert_eq!(slot.wal_status.as_deref(), Some("reserved"));
        }
        other => panic!("{other:?}"),
    }
    let who = pgrepl::query_value(&vps, "SELECT usename FROM pg_stat_replication")
        .await
        .unwrap();
    assert_eq!(who.as_deref(), Some("replica_user"));
    match status(&backup_db).await.unwrap() {
        Status::Standby(s) => {
            assert_eq!(s.receiver_status.as_deref(), Some("streaming"));
            assert_eq!(s.slot_name.as_deref(), Some("vps_clientes_1"));
        }
        other => panic!("{other:?}"),
    }
    // The same, asked in one psql with a question more, on both sides.
    let more = [pgrepl::Stmt::here("SELECT count(*) FROM orders")];
    match pgrepl::status_batch(&backup_db, &more).await.unwrap() {
        (Status::Standby(s), answers) => {
            assert_eq!(s.receiver_status.as_deref(), Some("streaming"));
            assert_eq!(s.slot_name.as_deref(), Some("vps_clientes_1"));
            assert_eq!(
                answers[0].as_ref().unwrap(),
                &vec![vec![Some("200".into())]]
            );
        }
        other => panic!("{other:?}"),
    }
    match pgrepl::status_batch(&p.vps_ctl.psql("postgres"), &more)
        .await
        .unwrap()
    {
        (Status::Primary(s), answers) => {
            assert_eq!(s.replicas.len(), 1);
            assert_eq!(s.replicas[0].state, "streaming");
            assert!(s.replicas[0].lag_bytes.is_some());
            let slot = s
                .slots
                .iter()
                .find(|sl| sl.name == "vps_clientes_1")
                .unwrap();
            assert!(slot.active && slot.retained_bytes.is_some());
            assert_eq!(answers.len(), 1);
        }
        other => panic!("{other:?}"),
    }

    // Failover: promote the backup; it takes writes.
    match promote(&backup_db, Duration::from_secs(60)).await.unwrap() {
        PromoteOutcome::Promoted { timeline } => assert_eq!(timeline, 2),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        promote(&backup_db, Duration::from_secs(60)).await.unwrap(),
        PromoteOutcome::AlreadyPrimary
    );
    pgrepl::execute(
        &backup_db,
        "INSERT INTO orders SELECT g, 'backup' FROM generate_series(201, 300) g",
    )
    .await
    .unwrap();

    // Split brain: the old primary still takes writes of its own.
    pgrepl::execute(
        &vps,
        "INSERT INTO orders SELECT g, 'lost' FROM generate_series(1001, 1050) g",
    )
    .await
    .unwrap();
    pgrepl::execute(&vps, "CREATE TABLE only_on_old (x int)")
        .await
        .unwrap();
    drop(vps);
    if kill_old_primary {
        assert!(p.vps.kill());
    }

    // Failback, database half: the backup becomes a primary the VPS can follow.
    prepare_primary(&backup_db, p.local.as_ref(), &p.options())
        .await
        .unwrap();
    p.write_pgpass(p.backup.port()).await;
    let opts = RejoinOptions {
        upstream: p.upstream(p.backup.port(), "vps_return"),
        rewind_user: Name::new("role", "replica_rewind").unwrap(),
        clone_if_needed: false,
    };
    let outcome = rejoin(&p.vps_ctl, &backup_db, &opts, &mut |_| {})
        .await
        .unwrap();
    assert_eq!(
        outcome,
        RejoinOutcome::Rejoined {
            rewound: true,
            recovered: kill_old_primary
        },
    );
    assert_eq!(
        rejoin(&p.vps_ctl, &backup_db, &opts, &mut |_| {})
            .await
            .unwrap(),
        RejoinOutcome::AlreadyStreaming
    );

    // The old primary follows the new one: its own rows are gone, all committed rows are there.
    let old = p.vps_ctl.psql("postgres");
    pgrepl::execute(
        &backup_db,
        "INSERT INTO orders SELECT g, 'backup' FROM generate_series(301, 310) g",
    )
    .await
    .unwrap();
    wait_count(&old, "SELECT count(*) FROM orders", 310).await;
    assert_eq!(
        count(&old, "SELECT count(*) FROM orders WHERE origin = 'lost'").await,
        0
    );
    assert_eq!(
        count(
            &old,
            "SELECT count(*) FROM pg_tables WHERE tablename = 'only_on_old'"
        )
        .await,
        0
    );
    assert_eq!(
        pgrepl::query_value(&old, "SELECT pg_is_in_recovery()")
            .await
            .unwrap()
            .as_deref(),
        Some("t")
    );
    // It kept its own port and config (pg_rewind would have copied the backup's).
    assert_eq!(
        pgrepl::query_value(&old, "SHOW port").await.unwrap(),
        Some(p.vps.port().to_string())
    );
    match status(&backup_db).await.unwrap() {
        Status::Primary(s) => {
            let r = s
                .replicas
                .iter()
                .find(|r| r.application_name == "vps_return")
                .unwrap();
            assert_eq!(r.state, "streaming");
            assert!(s
                .slots
                .iter()
                .any(|sl| sl.name == "vps_return" && sl.active));
        }
        other => panic!("{other:?}"),
    }
    let who = pgrepl::query_value(
        &backup_db,
        "SELECT usename FROM pg_stat_replication WHERE application_name = 'vps_return'",
    )
    .await
    .unwrap();
    assert_eq!(who.as_deref(), Some("replica_user"));
    assert!(p.backup.is_running().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_lifecycle_with_a_cleanly_stopped_old_primary() {
    lifecycle(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_lifecycle_with_the_old_primary_killed() {
    lifecycle(true).await;
}
