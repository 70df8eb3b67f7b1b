//! The fetch helper kept on the VPS between the passes of a watch.

use std::sync::Arc;

use filesync::{sync_db_tracked, Session, SyncError, SyncOptions, Tracker, Vps};
use host::SshHost;
use sandbox::SizeMix;

use crate::testutil::{files_under, sound, World};

/// The VPS with a helper kept on a second connection, as `filesync watch` builds it.
fn kept(w: &World, python: &str) -> Vps {
    let mut vps = w.vps();
    vps.session = Some(Arc::new(Session::with_python(
        Arc::new(SshHost::new(w.ssh.clone())),
        python,
    )));
    vps
}

/// Pids of helpers running for this world's filestore (its path is in their command line).
fn helpers(w: &World) -> Vec<String> {
    let out = std::process::Command::new("pgrep")
        .args(["-f", "odoo-standby-fetch"])
        .output()
        .unwrap();
    let root = w.vps_data.join("filestore").display().to_string();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(&root))
                .unwrap_or(false)
        })
        .map(str::to_owned)
        .collect()
}

async fn pass(
    w: &World,
    vps: &Vps,
    index: &mut filesync::Index,
    tracker: &mut Tracker,
) -> filesync::Result<filesync::PassReport> {
    sync_db_tracked(
        &w.standby_sql().await,
        "clientes",
        vps,
        &w.local_filestore(),
        index,
        &SyncOptions::default(),
        tracker,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_helper_serves_pass_after_pass_and_reports_missing_names() {
    let w = World::new(40, &SizeMix::fixed(3000));
    let referenced: Vec<String> = w.referenced().into_iter().collect();
    let gone = referenced[3].clone();
    std::fs::remove_file(w.vps_data.join("filestore/clientes").join(&gone)).unwrap();
    let vps = kept(&w, "python3");
    let (mut index, mut tracker) = (w.index(), Tracker::default());
    let local = w.local_filestore().join("clientes");

    let first = pass(&w, &vps, &mut index, &mut tracker).await.unwrap();
    assert_eq!(first.missing_on_vps, vec![gone.clone()]);
    assert_eq!(first.fetched, referenced.len() - 1);
    let mut expected = w.referenced();
    expected.remove(&gone);
    assert_eq!(files_under(&local), expected);
    assert!(files_under(&local).iter().all(|f| sound(&local.join(f))));
    let helper = helpers(&w);
    assert_eq!(helper.len(), 1, "one helper on the VPS: {helper:?}");

    // New attachments: the same helper brings them.
    w.vps_db
        .add_attachments("clientes", &w.vps_data, 10, &SizeMix::odoo(), 21)
        .unwrap();
    w.wait_replayed();
    let second = pass(&w, &vps, &mut index, &mut tracker).await.unwrap();
    assert!(second.fetched >= 9, "{second:?}");
    assert_eq!(helpers(&w), helper, "the helper was started again");
    let mut expected = w.referenced();
    expected.remove(&gone);
    assert_eq!(files_under(&local), expected);
    assert!(!vps.session.as_ref().unwrap().unavailable().await);

    // The VPS's folder disappears: a clear refusal, nothing written; back, the next pass
    // (a new helper) completes.
    let folder = w.vps_data.join("filestore/clientes");
    let aside = w.vps_data.join("filestore/clientes.aside");
    std::fs::rename(&folder, &aside).unwrap();
    w.vps_db
        .add_attachments("clientes", &w.vps_data, 3, &SizeMix::fixed(100), 22)
        .unwrap();
    // add_attachments made the folder again for its 3 files: move those into the aside one.
    for f in files_under(&folder) {
        std::fs::create_dir_all(aside.join(&f[..2])).unwrap();
        std::fs::rename(folder.join(&f), aside.join(&f)).unwrap();
    }
    for d in std::fs::read_dir(&folder).unwrap() {
        std::fs::remove_dir(d.unwrap().path()).unwrap();
    }
    std::fs::remove_dir(&folder).unwrap();
    w.wait_replayed();
    let before = files_under(&local);
    let err = pass(&w, &vps, &mut index, &mut tracker)
        .await
        .expect_err("the folder is gone");
    assert!(matches!(err, SyncError::Invalid { .. }), "{err:?}");
    assert!(err.to_string().contains("does not exist"), "{err}");
    assert_eq!(files_under(&local), before);
    std::fs::rename(&aside, &folder).unwrap();
    let third = pass(&w, &vps, &mut index, &mut tracker).await.unwrap();
    assert_eq!(third.fetched, 3);
    let mut expected = w.referenced();
    expected.remove(&gone);
    assert_eq!(files_under(&local), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_helper_cut_mid_stream_leaves_no_partial_file_and_the_next_pass_completes() {
    let mut w = World::new(60, &SizeMix::fixed(4 * 1024 * 1024));
    let vps = kept(&w, "python3");
    let local = w.local_filestore().join("clientes");
    let sshd_pid = w.sb.start_sshd().unwrap().pid;
    let local_watch = local.clone();
    let killer = crate::testutil::cut_when_first_file_lands(local_watch, sshd_pid);
    let (mut index, mut tracker) = (w.index(), Tracker::default());
    let cut = pass(&w, &vps, &mut index, &mut tracker).await;
    assert!(killer.await.unwrap(), "the session was not killed");
    let err = cut.expect_err("the pass should have been cut");
    assert!(matches!(err, SyncError::Stream { .. }), "{err:?}");
    let after_cut = files_under(&local);
    assert!(
        after_cut.iter().all(|f| !f.ends_with(filesync::TMP_SUFFIX)),
        "a temporary file was left: {after_cut:?}"
    );
    assert!(
        !after_cut.is_empty() && after_cut.len() < 60,
        "{after_cut:?}"
    );
    assert!(after_cut.iter().all(|f| sound(&local.join(f))));

    // The same watch, next pass: a new helper, only what was missing.
    let next = pass(&w, &vps, &mut index, &mut tracker).await.unwrap();
    assert_eq!(next.fetched, 60 - after_cut.len());
    assert_eq!(files_under(&local), w.referenced());
    assert!(files_under(&local).iter().all(|f| sound(&local.join(f))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_python_on_the_vps_passes_fall_back_to_tar() {
    let w = World::new(20, &SizeMix::fixed(1500));
    let vps = kept(&w, "/nonexistent/python3");
    let (mut index, mut tracker) = (w.index(), Tracker::default());
    let r = pass(&w, &vps, &mut index, &mut tracker).await.unwrap();
    assert_eq!(r.fetched, 20);
    assert!(vps.session.as_ref().unwrap().unavailable().await);
    assert_eq!(
        files_under(&w.local_filestore().join("clientes")),
        w.referenced()
    );
}
