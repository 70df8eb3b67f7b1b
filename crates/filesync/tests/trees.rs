//! Plain trees with rsync over the sandbox's sshd, the first copy with progress, SSH setup.

use std::path::PathBuf;
use std::time::Duration;

use filesync::rsync::{mirror, seed, SshTarget, Tree};
use filesync::sshsetup;
use host::{CommandSpec, Host, LocalHost, SshAuth, SshConfig, SshHost};
use sandbox::Sandbox;

fn target(sb: &mut Sandbox) -> SshTarget {
    let sshd = sb.start_sshd().unwrap();
    SshTarget {
        user: sshd.user.clone(),
        host: sshd.host.clone(),
        port: sshd.port,
        identity: sshd.client_key.clone(),
        known_hosts: sshd.known_hosts.clone(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sources_are_mirrored_with_delete_and_without_trailing_slash() {
    let mut sb = Sandbox::new().unwrap();
    let t = target(&mut sb);
    let vps = sb.dir("vps").unwrap();
    let sources = vps.join("sources");
    std::fs::create_dir_all(sources.join("oca/web")).unwrap();
    std::fs::write(sources.join("oca/web/__manifest__.py"), "{}").unwrap();
    std::fs::write(sources.join("old.py"), "x").unwrap();
    let backup = sb.dir("backup").unwrap();
    let tree = Tree {
        remote: PathBuf::from(format!("{}/", sources.display())),
        dest_parent: backup.clone(),
        delete: true,
        compress: false,
        exclude: vec![],
    };
    mirror(&LocalHost::new(), &t, &tree, None).await.unwrap();
    assert!(
        backup.join("sources/oca/web/__manifest__.py").exists(),
        "the folder itself is copied"
    );
    std::fs::remove_file(sources.join("old.py")).unwrap();
    mirror(&LocalHost::new(), &t, &tree, None).await.unwrap();
    assert!(
        !backup.join("sources/old.py").exists(),
        "--delete as the runbook"
    );

    // A host key we do not know stops rsync instead of being accepted.
    let mut strange = t.clone();
    strange.known_hosts = sb.root().join("empty");
    std::fs::write(&strange.known_hosts, "").unwrap();
    let err = mirror(&LocalHost::new(), &strange, &tree, None)
        .await
        .unwrap_err();
    assert!(
        std::error::Error::source(&err)
            .unwrap()
            .to_string()
            .contains("Host key verification failed"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_copies_a_data_dir_with_progress() {
    let mut sb = Sandbox::new().unwrap();
    let t = target(&mut sb);
    let vps = sb.dir("vps").unwrap();
    let data = vps.join("data_dir");
    for i in 0..50 {
        let d = data.join(format!("filestore/db/{:02x}", i));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("f"), vec![i as u8; 100_000]).unwrap();
    }
    let backup = sb.dir("backup").unwrap();
    let mut seen = Vec::new();
    seed(&LocalHost::new(), &t, &data, &backup, None, &mut |b, p| {
        seen.push((b, p))
    })
    .await
    .unwrap();
    assert_eq!(seen.last().map(|s| s.1), Some(100), "{seen:?}");
    assert_eq!(
        std::fs::read(backup.join("data_dir/filestore/db/31/f")).unwrap(),
        vec![0x31u8; 100_000]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_setup_key_authorized_once_and_host_key_only_when_confirmed() {
    let mut sb = Sandbox::new().unwrap();
    let sshd = sb.start_sshd().unwrap();
    let local = LocalHost::new();
    let home = sb.dir("home").unwrap();
    let me = sandbox::RunUser::for_servers().unwrap();
    let user = if me.switched {
        "root".to_owned()
    } else {
        me.name
    };
    let public = sshsetup::ensure_key(&local, &user, &home).await.unwrap();
    assert!(public.starts_with("ssh-ed25519 "));
    assert_eq!(
        sshsetup::ensure_key(&local, &user, &home).await.unwrap(),
        public,
        "kept, not regenerated"
    );

    // Installed through the existing access, once.
    let admin = SshHost::new(SshConfig::new(
        sshd.user.clone(),
        "127.0.0.1",
        sshd.port,
        SshAuth::KeyFile(sshd.client_key.clone()),
        sshd.known_hosts.clone(),
    ));
    let auth = sshd.client_key.parent().unwrap().join("authorized_keys");
    assert!(sshsetup::install_public_key(&admin, &public, Some(&auth))
        .await
        .unwrap());
    assert!(!sshsetup::install_public_key(&admin, &public, Some(&auth))
        .await
        .unwrap());
    assert_eq!(
        std::fs::read_to_string(&auth)
            .unwrap()
            .matches(public.split_whitespace().nth(1).unwrap())
            .count(),
        1
    );

    // The host key: shown, refused on a wrong confirmation, added on the right one.
    let known = home.join(".ssh/known_hosts");
    let scanned = host::scan_host_key("127.0.0.1", sshd.port, Duration::from_secs(5))
        .await
        .unwrap();
    let err = sshsetup::trust_host_key(
        &local,
        &known,
        &user,
        "127.0.0.1",
        sshd.port,
        &scanned,
        "SHA256:wrong",
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains(&scanned.fingerprint));
    assert!(!known.exists());
    assert!(sshsetup::trust_host_key(
        &local,
        &known,
        &user,
        "127.0.0.1",
        sshd.port,
        &scanned,
        &scanned.fingerprint
    )
    .await
    .unwrap());
    assert!(!sshsetup::trust_host_key(
        &local,
        &known,
        &user,
        "127.0.0.1",
        sshd.port,
        &scanned,
        &scanned.fingerprint
    )
    .await
    .unwrap());

    // The new key and known_hosts now log in.
    let fresh = SshHost::new(SshConfig::new(
        sshd.user.clone(),
        "127.0.0.1",
        sshd.port,
        SshAuth::KeyFile(home.join(".ssh/id_ed25519")),
        known,
    ));
    let out = fresh
        .run(&CommandSpec::new("echo").arg("in"))
        .await
        .unwrap();
    assert_eq!(out.stdout_text(), "in\n");
}
