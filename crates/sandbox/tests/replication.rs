//! Two real clusters, one streaming from the other.

use std::time::Duration;

use sandbox::Sandbox;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_streams_from_its_primary() {
    let mut sb = Sandbox::new().unwrap();
    let primary = sb.add_cluster("primary").unwrap();
    primary
        .psql("postgres", "CREATE TABLE t (id int PRIMARY KEY, v text)")
        .unwrap();
    let standby = sb.add_standby("standby", &primary).unwrap();
    assert_ne!(primary.port(), standby.port());

    // Rows written on the primary after the clone arrive on the standby.
    let client = primary.connect("postgres").await.unwrap();
    client
        .execute(
            "INSERT INTO t SELECT g, 'row ' || g FROM generate_series(1, 500) g",
            &[],
        )
        .await
        .unwrap();
    standby
        .wait_for(
            "postgres",
            "SELECT count(*) FROM t",
            "500",
            Duration::from_secs(30),
        )
        .unwrap();

    let state = primary
        .psql("postgres", "SELECT state FROM pg_stat_replication")
        .unwrap();
    assert_eq!(state, "streaming");
    let standby_client = standby.connect("postgres").await.unwrap();
    let row = standby_client
        .query_one(
            "SELECT pg_is_in_recovery(), (SELECT status FROM pg_stat_wal_receiver)",
            &[],
        )
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0));
    assert_eq!(row.get::<_, String>(1), "streaming");
    // The standby refuses writes.
    let err = standby_client
        .execute("INSERT INTO t VALUES (0, 'x')", &[])
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::READ_ONLY_SQL_TRANSACTION)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clusters_stop_start_and_survive_a_kill() {
    let mut sb = Sandbox::new().unwrap();
    let c = sb.add_cluster("c").unwrap();
    c.psql("postgres", "CREATE TABLE t AS SELECT 1 AS x")
        .unwrap();
    let pid = c.pid().unwrap();
    assert!(c.is_running());

    // SIGKILL, as a crash: it and its children go; a restart recovers committed data.
    assert!(c.kill());
    assert!(!sandbox::is_alive(pid));
    assert!(!c.is_running());
    c.start().unwrap();
    assert_eq!(c.psql("postgres", "SELECT x FROM t").unwrap(), "1");

    // Clean stop and start, twice each: idempotent.
    c.stop().unwrap();
    c.stop().unwrap();
    assert!(!c.is_running());
    c.start().unwrap();
    c.start().unwrap();
    assert!(c.is_running());

    // Only scram over TCP: a wrong password is refused.
    let mut cfg = c.client_config("postgres");
    cfg.password("wrong");
    let err = cfg.connect(tokio_postgres::NoTls).await.err().unwrap();
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::INVALID_PASSWORD)
    );
}
