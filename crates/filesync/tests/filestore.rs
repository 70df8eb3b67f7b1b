//! The database-driven filestore sync.

use filesync::{audit::audit, sync_db, SyncError, SyncOptions};
use sandbox::SizeMix;

use crate::testutil::{files_under, sound, World};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_leaves_exactly_the_referenced_files_and_then_only_fetches_new_ones() {
    let w = World::new(300, &SizeMix::odoo());
    let db = w.standby_sql().await;
    let vps = w.vps();
    let mut index = w.index();
    let first = sync_db(
        &db,
        "clientes",
        &vps,
        &w.local_filestore(),
        &mut index,
        &SyncOptions::default(),
    )
    .await
    .unwrap();
    let referenced = w.referenced();
    assert_eq!(first.referenced, referenced.len());
    assert_eq!(first.fetched, referenced.len());
    assert!(first.missing_on_vps.is_empty() && first.corrupt_on_vps.is_empty());
    let local = w.local_filestore().join("clientes");
    assert_eq!(
        files_under(&local),
        referenced,
        "exactly the referenced files, nothing else"
    );
    for n in &referenced {
        assert_eq!(
            std::fs::read(local.join(n)).unwrap(),
            std::fs::read(w.vps_data.join("filestore/clientes").join(n)).unwrap()
        );
    }

    // New attachments on the VPS: once the standby has their rows, the next pass takes
    // exactly those.
    let added = w
        .vps_db
        .add_attachments("clientes", &w.vps_data, 25, &SizeMix::odoo(), 99)
        .unwrap();
    w.wait_replayed();
    let new_names: std::collections::BTreeSet<_> =
        added.iter().map(|a| a.store_fname.clone()).collect();
    let second = sync_db(
        &db,
        "clientes",
        &vps,
        &w.local_filestore(),
        &mut index,
        &SyncOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(second.fetched, new_names.difference(&referenced).count());
    assert_eq!(files_under(&local), w.referenced());
    // Steady state: nothing to fetch, and a reloaded index agrees without listing the disk.
    let third = sync_db(
        &db,
        "clientes",
        &vps,
        &w.local_filestore(),
        &mut w.index(),
        &SyncOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!((third.fetched, third.bytes), (0, 0));
    assert_eq!(
        third.skipped, 0,
        "URL and in-database rows have no store_fname and are not counted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_missing_on_the_vps_is_reported_by_name_and_the_rest_arrives() {
    let w = World::new(40, &SizeMix::fixed(2000));
    let referenced: Vec<String> = w.referenced().into_iter().collect();
    let gone = &referenced[7];
    std::fs::remove_file(w.vps_data.join("filestore/clientes").join(gone)).unwrap();
    // A row whose store_fname is not a filestore name is skipped, never used as a path.
    w.vps_db
        .psql(
            "clientes",
            "INSERT INTO ir_attachment (name, store_fname) VALUES ('evil', '../../../etc/passwd')",
        )
        .unwrap();
    w.wait_replayed();
    let db = w.standby_sql().await;
    let r = w.pass(&db).await;
    assert_eq!(r.missing_on_vps, vec![gone.clone()]);
    assert_eq!(r.skipped, 1);
    assert_eq!(r.fetched, referenced.len() - 1);
    assert!(!w.local_filestore().join("clientes").join(gone).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_cut_mid_stream_leaves_no_partial_file_and_the_next_pass_completes() {
    // Large files, so that the stream is still running when the connection is killed.
    let mut w = World::new(60, &SizeMix::fixed(4 * 1024 * 1024));
    let db = w.standby_sql().await;
    let vps = w.vps();
    let local = w.local_filestore().join("clientes");
    let sshd_pid = w.sb.start_sshd().unwrap().pid;
    let local_watch = local.clone();
    let killer = crate::testutil::cut_when_first_file_lands(local_watch, sshd_pid);
    let mut index = w.index();
    let cut = sync_db(
        &db,
        "clientes",
        &vps,
        &w.local_filestore(),
        &mut index,
        &SyncOptions::default(),
    )
    .await;
    assert!(killer.await.unwrap(), "the session was not killed");
    let err = cut.expect_err("the pass should have been cut");
    assert!(matches!(err, SyncError::Stream { .. }), "{err:?}");
    let after_cut = files_under(&local);
    let complete: Vec<_> = after_cut
        .iter()
        .filter(|f| !f.ends_with(filesync::TMP_SUFFIX))
        .collect();
    assert!(
        !complete.is_empty() && complete.len() < 60,
        "{} files",
        complete.len()
    );
    for f in &complete {
        assert!(
            sound(&local.join(f)),
            "{f} is under its final name but incomplete"
        );
    }
    assert!(
        after_cut.iter().all(|f| !f.ends_with(filesync::TMP_SUFFIX)),
        "a temporary file was left: {after_cut:?}"
    );

    // The next pass (a new connection) completes, and fetches only what was missing.
    let next = w.pass(&db).await;
    assert_eq!(next.fetched, w.referenced().len() - complete.len());
    assert_eq!(files_under(&local), w.referenced());
    assert!(files_under(&local).iter().all(|f| sound(&local.join(f))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_finds_a_truncated_and_a_corrupted_file() {
    let w = World::new(30, &SizeMix::fixed(5000));
    let db = w.standby_sql().await;
    w.pass(&db).await;
    let ok = audit(&db, "clientes", &w.local_filestore(), true)
        .await
        .unwrap();
    assert!(ok.healthy(), "{ok:?}");
    assert_eq!(ok.checked, w.referenced().len());

    let names: Vec<String> = w.referenced().into_iter().collect();
    let local = w.local_filestore().join("clientes");
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(local.join(&names[0]))
        .unwrap();
    f.set_len(1000).unwrap();
    let mut bytes = std::fs::read(local.join(&names[1])).unwrap();
    bytes[42] ^= 0xff;
    std::fs::write(local.join(&names[1]), bytes).unwrap();
    std::fs::remove_file(local.join(&names[2])).unwrap();

    let quick = audit(&db, "clientes", &w.local_filestore(), false)
        .await
        .unwrap();
    assert_eq!(quick.truncated, vec![names[0].clone()]);
    assert_eq!(quick.missing, vec![names[2].clone()]);
    assert!(
        quick.corrupt.is_empty(),
        "without verify the content is not read"
    );
    let full = audit(&db, "clientes", &w.local_filestore(), true)
        .await
        .unwrap();
    assert_eq!(full.corrupt, vec![names[1].clone()]);
    assert!(!full.healthy());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_reboot_recent_files_are_checked_and_bad_ones_fetched_again() {
    let w = World::new(20, &SizeMix::fixed(3000));
    let db = w.standby_sql().await;
    w.pass(&db).await;
    let local = w.local_filestore().join("clientes");
    let names: Vec<String> = w.referenced().into_iter().collect();

    // What a power cut can leave: a file under its final name with the wrong content.
    let victim = local.join(&names[3]);
    std::fs::write(&victim, b"").unwrap();
    // The index was saved in another boot: rewrite its boot id.
    let index_file = w.state.join("clientes.index");
    let bytes = std::fs::read(&index_file).unwrap();
    let magic_end = bytes.iter().position(|b| *b == b'\n').unwrap() + 1;
    let boot_end = magic_end + bytes[magic_end..].iter().position(|b| *b == b'\n').unwrap();
    let mut forged = bytes[..magic_end].to_vec();
    forged.extend_from_slice(b"00000000-0000-0000-0000-000000000000");
    forged.extend_from_slice(&bytes[boot_end..]);
    std::fs::write(&index_file, forged).unwrap();

    let mut index = w.index();
    assert_eq!(index.len(), names.len() - 1, "the bad file is not claimed");
    assert!(!victim.exists(), "the bad copy (ours) was removed");
    let r = sync_db(
        &db,
        "clientes",
        &w.vps(),
        &w.local_filestore(),
        &mut index,
        &SyncOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(r.fetched, 1);
    assert!(sound(&victim));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_passes_read_only_new_rows_and_still_catch_everything() {
    let w = World::new(50, &SizeMix::fixed(2000));
    // Old rows, as in a store that has been running for years.
    w.vps_db
        .psql(
            "clientes",
            "UPDATE ir_attachment SET write_date = timestamp '2020-01-01' + id * interval '1 day'",
        )
        .unwrap();
    w.standby
        .wait_for(
            "clientes",
            "SELECT count(*) FROM ir_attachment WHERE write_date > '2021-01-01'",
            "0",
            std::time::Duration::from_secs(30),
        )
        .unwrap();
    let db = w.standby_sql().await;
    let vps = w.vps();
    let mut index = w.index();
    let mut tracker = filesync::Tracker::default();
    // Reads exactly the rows above the highest id seen (the default margin of 1000 ids
    // would cover this whole small table).
    tracker.id_margin = 0;
    let full = filesync::sync_db_tracked(
        &db,
        "clientes",
        &vps,
        &w.local_filestore(),
        &mut index,
        &SyncOptions::default(),
        &mut tracker,
    )
    .await
    .unwrap();
    assert_eq!(full.referenced, w.referenced().len());

    // New rows, and a row whose content was replaced (Odoo writes a new file and updates
    // store_fname and write_date).
    let added = w
        .vps_db
        .add_attachments("clientes", &w.vps_data, 10, &SizeMix::fixed(2000), 5)
        .unwrap();
    let (replacement, _) =
        sandbox::attachment(&w.vps_data, "clientes", b"the new content of an old row").unwrap();
    w.vps_db
        .psql(
            "clientes",
            &format!(
                "UPDATE ir_attachment SET store_fname = '{replacement}', write_date = now() AT TIME ZONE 'UTC' \
                 WHERE id = (SELECT min(id) FROM ir_attachment WHERE store_fname IS NOT NULL)"
            ),
        )
        .unwrap();
    w.wait_replayed();
    // Within 30 s of the last read of recent rows: only rows with new ids (the primary
    // key's index), which the replaced row is not.
    let inc = filesync::sync_db_tracked(
        &db,
        "clientes",
        &vps,
        &w.local_filestore(),
        &mut index,
        &SyncOptions::default(),
        &mut tracker,
    )
    .await
    .unwrap();
    let distinct: std::collections::BTreeSet<_> = added.iter().map(|a| &a.store_fname).collect();
    assert_eq!(
        inc.referenced,
        distinct.len(),
        "a pass between recent-row reads reads only the new rows: {inc:?}"
    );
    let replaced = w.local_filestore().join("clientes").join(&replacement);
    assert!(!replaced.exists(), "the replaced row's file came early");
    for a in &added {
        assert!(
            w.local_filestore()
                .join("clientes")
                .join(&a.store_fname)
                .exists(),
            "{} (a new row) missing",
            a.store_fname
        );
    }
    // When the read of recent rows is due, the replaced row is read too.
    tracker.recent_every = std::time::Duration::ZERO;
    let recent = filesync::sync_db_tracked(
        &db,
        "clientes",
        &vps,
        &w.local_filestore(),
        &mut index,
        &SyncOptions::default(),
        &mut tracker,
    )
    .await
    .unwrap();
    // The new rows, plus the old rows within the one-hour margin of the newest one seen.
    assert!(
        recent.referenced <= 12 && recent.referenced * 4 < full.referenced,
        "an incremental pass reads only recent rows: {recent:?}"
    );
    assert_eq!(recent.fetched, 1);
    assert!(replaced.exists());
    assert_eq!(
        files_under(&w.local_filestore().join("clientes")).len(),
        w.referenced().len() + 1,
        "the replaced file stays (never deleted)"
    );
    for name in w.referenced() {
        assert!(
            w.local_filestore().join("clientes").join(&name).exists(),
            "{name} missing"
        );
    }
}
