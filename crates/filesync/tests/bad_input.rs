//! Bad input gets a clear error and leaves nothing half-written.

use std::sync::Arc;

use filesync::{sync_db, SyncError, SyncOptions, Vps};
use host::{HostError, SshHost};
use sandbox::SizeMix;

use crate::testutil::{files_under, sound, World};

fn remote_cause(e: &SyncError) -> &HostError {
    match e {
        SyncError::Remote { source, .. } => source,
        other => panic!("expected a remote error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_host_key_wrong_user_and_missing_remote_dir() {
    let w = World::new(5, &SizeMix::fixed(100));
    let db = w.standby_sql().await;
    let local = w.local_filestore();

    let mut cfg = w.ssh.clone();
    cfg.known_hosts = w.sb.root().join("empty_known_hosts");
    std::fs::write(&cfg.known_hosts, "").unwrap();
    let vps = Vps::new(
        Arc::new(SshHost::new(cfg)),
        w.vps_data.join("filestore"),
        None,
    );
    let err = sync_db(
        &db,
        "clientes",
        &vps,
        &local,
        &mut w.index(),
        &SyncOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(remote_cause(&err), HostError::HostKeyUnknown { .. }),
        "{err:?}"
    );
    assert!(std::error::Error::source(&err)
        .unwrap()
        .to_string()
        .contains("SHA256:"));

    let mut cfg = w.ssh.clone();
    cfg.user = "nosuchuser".into();
    let vps = Vps::new(
        Arc::new(SshHost::new(cfg)),
        w.vps_data.join("filestore"),
        None,
    );
    let err = sync_db(
        &db,
        "clientes",
        &vps,
        &local,
        &mut w.index(),
        &SyncOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(remote_cause(&err), HostError::AuthRejected { .. }),
        "{err:?}"
    );

    let vps = Vps::new(w.vps().host, w.sb.root().join("no/such/filestore"), None);
    let err = sync_db(
        &db,
        "clientes",
        &vps,
        &local,
        &mut w.index(),
        &SyncOptions::default(),
    )
    .await
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("does not exist on") && text.contains("no/such/filestore/clientes"),
        "{text}"
    );
    assert!(
        files_under(&local.join("clientes")).is_empty(),
        "nothing was written"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_local_disk_leaves_only_complete_files() {
    if !sandbox::RunUser::for_servers().unwrap().switched {
        eprintln!("skipped: mounting a small tmpfs needs root");
        return;
    }
    let w = World::new(20, &SizeMix::fixed(300 * 1024));
    let db = w.standby_sql().await;
    let small = w.sb.dir("small_disk").unwrap();
    let mount = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "odoo-standby-test"])
        .arg(&small)
        .status()
        .unwrap();
    assert!(mount.success());
    let local = small.join("filestore");
    let result = sync_db(
        &db,
        "clientes",
        &w.vps(),
        &local,
        &mut w.index(),
        &SyncOptions::default(),
    )
    .await;
    let listing = files_under(&local.join("clientes"));
    let sound_all = listing
        .iter()
        .all(|f| !f.ends_with(filesync::TMP_SUFFIX) && sound(&local.join("clientes").join(f)));
    let _ = std::process::Command::new("umount").arg(&small).status();
    let err = result.unwrap_err();
    assert!(err.to_string().contains("the disk is full"), "{err}");
    assert!(!listing.is_empty() && listing.len() < 20, "{listing:?}");
    assert!(
        sound_all,
        "a partial or temporary file was left: {listing:?}"
    );
}
