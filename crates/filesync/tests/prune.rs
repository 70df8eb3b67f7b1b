//! Removal of files unreferenced for a day, only when asked.

use std::time::Duration;

use filesync::prune::{prune, PruneOptions};
use filesync::SyncError;
use sandbox::SizeMix;

use crate::testutil::{files_under, World};

/// Makes every record of `names` in the prune record look `hours` old.
fn age(w: &World, names: &[String], hours: u64) {
    let file = w.state.join("clientes.unreferenced");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let text = std::fs::read_to_string(&file).unwrap();
    let aged: String = text
        .lines()
        .map(|l| {
            let (t, n) = l.split_once(' ').unwrap();
            let t = if names.iter().any(|x| x == n) {
                now - hours * 3600
            } else {
                t.parse().unwrap()
            };
            format!("{t} {n}\n")
        })
        .collect();
    std::fs::write(&file, aged).unwrap();
}

/// One prune of the test database, with the index as saved.
async fn run(
    w: &World,
    db: &pgrepl::PgClient,
    opts: &PruneOptions,
) -> filesync::Result<filesync::prune::PruneReport> {
    prune(
        db,
        "clientes",
        &w.local_filestore(),
        &mut w.index(),
        &w.state,
        opts,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_files_unreferenced_for_a_day_go_and_only_when_asked() {
    let w = World::new(12, &SizeMix::fixed(1000));
    let db = w.standby_sql().await;
    w.pass(&db).await;
    let local = w.local_filestore().join("clientes");
    let all: Vec<String> = w.referenced().into_iter().collect();
    assert_eq!(files_under(&local).len(), all.len());
    let (a, b, c) = (all[0].clone(), all[1].clone(), all[2].clone());
    let rows = |names: &[&String]| {
        names
            .iter()
            .map(|n| format!("'{n}'"))
            .collect::<Vec<_>>()
            .join(",")
    };
    w.vps_db
        .psql(
            "clientes",
            &format!(
                "DELETE FROM ir_attachment WHERE store_fname IN ({})",
                rows(&[&a, &b, &c])
            ),
        )
        .unwrap();
    w.wait_replayed();
    // A pass never deletes.
    let r = w.pass(&db).await;
    assert_eq!(r.fetched, 0);
    assert_eq!(files_under(&local).len(), all.len());

    // The first run records, removes nothing; a dry run neither records nor removes.
    let mut watch_index = w.index();
    let opts = PruneOptions::default();
    let dry = PruneOptions {
        dry_run: true,
        older_than: Duration::ZERO,
        ..PruneOptions::default()
    };
    let r = run(&w, &db, &dry).await.unwrap();
    assert_eq!(r.removed.len(), 0, "nothing recorded yet: nothing is due");
    assert!(!w.state.join("clientes.unreferenced").exists());
    let first = run(&w, &db, &opts).await.unwrap();
    assert_eq!((first.unreferenced, first.new_unreferenced), (3, 3));
    assert!(first.removed.is_empty());
    assert_eq!(files_under(&local).len(), all.len());

    // A day later: `c` was referenced again meanwhile, `a` and `b` were not.
    w.vps_db
        .psql(
            "clientes",
            &format!("INSERT INTO ir_attachment (name, store_fname, file_size) VALUES ('again', '{c}', 1000)"),
        )
        .unwrap();
    w.wait_replayed();
    age(&w, &[a.clone(), b.clone(), c.clone()], 25);
    let r = run(&w, &db, &dry).await.unwrap();
    assert_eq!(r.removed, {
        let mut v = vec![a.clone(), b.clone()];
        v.sort();
        v
    });
    assert_eq!(
        files_under(&local).len(),
        all.len(),
        "a dry run removes nothing"
    );
    // A watch writing a file right now: its temporary file is not prune's to touch.
    let writing = local.join(format!("{}{}", all[3], filesync::TMP_SUFFIX));
    std::fs::write(&writing, b"half").unwrap();
    let second = run(&w, &db, &opts).await.unwrap();
    assert!(writing.exists(), "prune removed a file a pass was writing");
    std::fs::remove_file(&writing).unwrap();
    assert_eq!(second.removed.len(), 2);
    assert_eq!(second.bytes, 2000);
    assert_eq!(files_under(&local), w.referenced());
    assert!(!w.index().contains(&filesync::StoreName::parse(&a).unwrap()));
    let record = std::fs::read_to_string(w.state.join("clientes.unreferenced")).unwrap();
    assert!(record.is_empty(), "{record}");
    // Twice is a no-op.
    let again = run(&w, &db, &opts).await.unwrap();
    assert_eq!((again.unreferenced, again.removed.len()), (0, 0));

    // A watch that loaded its index before the prune: `a` referenced again is fetched again.
    w.vps_db
        .psql(
            "clientes",
            &format!("INSERT INTO ir_attachment (name, store_fname, file_size) VALUES ('back', '{a}', 1000)"),
        )
        .unwrap();
    w.wait_replayed();
    let r = filesync::sync_db(
        &db,
        "clientes",
        &w.vps(),
        &w.local_filestore(),
        &mut watch_index,
        &Default::default(),
    )
    .await
    .unwrap();
    assert_eq!(r.fetched, 1);
    assert!(local.join(&a).exists());

    // A database that references nothing while files are here: refused, nothing removed.
    w.vps_db
        .psql("clientes", "DELETE FROM ir_attachment")
        .unwrap();
    w.wait_replayed();
    let zero = PruneOptions {
        older_than: Duration::ZERO,
        ..PruneOptions::default()
    };
    let before = files_under(&local);
    let err = run(&w, &db, &zero).await.unwrap_err();
    assert!(matches!(err, SyncError::Invalid { .. }), "{err:?}");
    assert!(err.to_string().contains("nothing removed"), "{err}");
    assert_eq!(files_under(&local), before);
}
