//! Ways an SSH connection must fail: each distinct, each naming the host.

use std::net::TcpListener;
use std::process::Command;
use std::time::Duration;

use host::{CommandSpec, Host, HostError, HostErrorKind, SshAuth, SshHost};
use sandbox::Sandbox;

use crate::testutil::ssh_config;

/// `ssh-keygen -lf` of a public key file: the fingerprint as OpenSSH prints it.
fn openssh_fingerprint(pub_file: &std::path::Path) -> String {
    let out = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(pub_file)
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_owned()
}

async fn try_connect(host: &SshHost) -> HostError {
    host.run(&CommandSpec::new("true")).await.unwrap_err()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_host_key_is_refused_with_its_fingerprint() {
    let mut sb = Sandbox::new().unwrap();
    let mut cfg = ssh_config(&mut sb);
    let empty = sb.root().join("empty_known_hosts");
    std::fs::write(&empty, "").unwrap();
    cfg.known_hosts = empty.clone();
    let want = openssh_fingerprint(&sb.start_sshd().unwrap().host_key_pub);
    let host = SshHost::new(cfg);

    let err = try_connect(&host).await;
    match &err {
        HostError::HostKeyUnknown {
            fingerprint,
            key_type,
            ..
        } => {
            assert_eq!(fingerprint, &want);
            assert_eq!(key_type, "ssh-ed25519");
        }
        other => panic!("expected HostKeyUnknown, got {other:?}"),
    }
    assert_eq!(err.kind(), HostErrorKind::HostKey);
    let text = err.to_string();
    assert!(
        text.contains(&want) && text.contains(&host.name()),
        "{text}"
    );
    // Nothing was added to the file: we never accept a key by ourselves.
    assert_eq!(std::fs::read_to_string(&empty).unwrap(), "");

    // A missing known_hosts file is the same refusal, not a crash.
    let mut cfg = host.config().clone();
    cfg.known_hosts = sb.root().join("does-not-exist");
    let err = try_connect(&SshHost::new(cfg)).await;
    assert!(matches!(err, HostError::HostKeyUnknown { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_host_key_is_refused_with_the_offered_fingerprint() {
    let mut sb = Sandbox::new().unwrap();
    let mut cfg = ssh_config(&mut sb);
    let sshd = sb.start_sshd().unwrap();
    // Another key, recorded for this very host and port.
    let other = sb.root().join("other_key");
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other)
        .status()
        .unwrap();
    assert!(st.success());
    let other_pub = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    let mut f = other_pub.split_whitespace();
    let kh = sb.root().join("changed_known_hosts");
    std::fs::write(
        &kh,
        format!(
            "# a comment, and a line libssh2 cannot parse\nbogus-line\n[127.0.0.1]:{} {} {}\n",
            sshd.port,
            f.next().unwrap(),
            f.next().unwrap()
        ),
    )
    .unwrap();
    cfg.known_hosts = kh;
    let host = SshHost::new(cfg);
    let err = try_connect(&host).await;
    let want = openssh_fingerprint(&sshd.host_key_pub);
    match &err {
        HostError::HostKeyChanged { fingerprint, .. } => assert_eq!(fingerprint, &want),
        other => panic!("expected HostKeyChanged, got {other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains("CHANGED") && text.contains(&host.name()) && text.contains(&want));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_key_refused_connection_and_timeout_are_three_distinct_errors() {
    let mut sb = Sandbox::new().unwrap();
    let good = ssh_config(&mut sb);

    // 1. A key the server does not know.
    let stranger = sb.root().join("stranger");
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&stranger)
        .status()
        .unwrap();
    assert!(st.success());
    let mut cfg = good.clone();
    cfg.auth = SshAuth::KeyFile(stranger);
    let rejected_host = SshHost::new(cfg);
    let rejected = try_connect(&rejected_host).await;
    assert!(
        matches!(rejected, HostError::AuthRejected { .. }),
        "{rejected:?}"
    );
    assert!(rejected.to_string().contains(&rejected_host.name()));

    // 2. A port nobody listens on.
    let mut cfg = good.clone();
    cfg.port = sandbox::free_port().unwrap();
    let refused_host = SshHost::new(cfg);
    let refused = try_connect(&refused_host).await;
    assert!(
        matches!(refused, HostError::ConnectionRefused { .. }),
        "{refused:?}"
    );
    assert!(refused.to_string().contains(&refused_host.name()));

    // 3. A server that accepts TCP and then says nothing.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut cfg = good.clone();
    cfg.port = silent.local_addr().unwrap().port();
    cfg.connect_timeout = Duration::from_secs(1);
    let slow_host = SshHost::new(cfg);
    let started = std::time::Instant::now();
    let timed_out = try_connect(&slow_host).await;
    assert!(
        matches!(timed_out, HostError::Timeout { .. }),
        "{timed_out:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(timed_out.to_string().contains(&slow_host.name()));
    drop(silent);

    let kinds = [rejected.kind(), refused.kind(), timed_out.kind()];
    assert_eq!(kinds[2], HostErrorKind::Timeout);
    let texts = [
        rejected.to_string(),
        refused.to_string(),
        timed_out.to_string(),
    ];
    assert!(texts[0] != texts[1] && texts[1] != texts[2] && texts[0] != texts[2]);

    // And the good config works on the same server.
    let out = SshHost::new(good)
        .run(&CommandSpec::new("echo").arg("ok"))
        .await
        .unwrap();
    assert_eq!(out.stdout_text(), "ok\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_serves_many_commands_and_survives_a_restart_of_sshd() {
    let mut sb = Sandbox::new().unwrap();
    let host = SshHost::new(ssh_config(&mut sb));
    host.connect().await.unwrap();
    for i in 0..20 {
        let out = host
            .run(&CommandSpec::new("echo").arg(i.to_string()))
            .await
            .unwrap();
        assert_eq!(out.stdout_text(), format!("{i}\n"));
    }
    // The server's connection handler goes away (as when sshd restarts or a NAT drops us):
    // kill every session child of our sshd, not the listener.
    let sshd = sb.start_sshd().unwrap();
    let pkill = Command::new("pkill")
        .args(["-KILL", "-P", &sshd.pid.to_string()])
        .status()
        .unwrap();
    assert!(pkill.success(), "no session process of our sshd to kill");
    std::thread::sleep(Duration::from_millis(200));
    let out = host
        .run(&CommandSpec::new("echo").arg("again"))
        .await
        .unwrap();
    assert_eq!(out.stdout_text(), "again\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scanning_shows_the_key_without_trusting_it() {
    let mut sb = Sandbox::new().unwrap();
    let sshd = sb.start_sshd().unwrap();
    let key = host::scan_host_key("127.0.0.1", sshd.port, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(key.fingerprint, openssh_fingerprint(&sshd.host_key_pub));
    let public = std::fs::read_to_string(&sshd.host_key_pub).unwrap();
    assert!(public.contains(&format!("{} {}", key.key_type, key.key_base64)));
}
