//! The behaviour every `Host` must have, checked on `LocalHost` and on `SshHost`.

use std::path::Path;
use std::time::{Duration, Instant};

use host::{CommandSpec, FileKind, HostError, HostErrorKind, Ownership};
use tokio::io::AsyncReadExt;

use crate::testutil::{other_user, Fixture};

pub async fn captures_output_and_status(f: Fixture) {
    let spec = CommandSpec::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]);
    let out = f.host.run_unchecked(&spec).await.unwrap();
    assert_eq!(out.status.code, Some(3));
    assert_eq!(out.stdout_text(), "out\n");
    assert_eq!(out.stderr_text(), "err\n");

    let err = f.host.run(&spec).await.unwrap_err();
    assert_eq!(err.kind(), HostErrorKind::CommandFailed);
    assert_eq!(err.exit_code(), Some(3));
    let text = err.to_string();
    assert!(text.contains(&f.host.name()), "{text}");
    assert!(
        text.contains("exit code 3") && text.ends_with(": err"),
        "{text}"
    );
}

pub async fn arguments_reach_the_program_verbatim(f: Fixture) {
    let words = [
        "$(echo pwned)",
        "a b",
        "it's",
        "`id`",
        "*",
        "; rm -rf /",
        "",
    ];
    let out = f
        .host
        .run(&CommandSpec::new("printf").arg("%s\\0").args(words))
        .await
        .unwrap();
    let got: Vec<String> = out
        .stdout
        .split(|b| *b == 0)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect();
    let mut want: Vec<String> = words.iter().map(|s| s.to_string()).collect();
    want.push(String::new()); // after the last NUL
    assert_eq!(got, want);
}

pub async fn env_cwd_and_stdin(f: Fixture) {
    let spec = CommandSpec::new("sh")
        .args(["-c", "echo \"$FOO\"; pwd; cat"])
        .env("FOO", "bar baz")
        .cwd(&f.scratch)
        .stdin("from stdin");
    let out = f.host.run(&spec).await.unwrap();
    assert_eq!(
        out.stdout_text(),
        format!("bar baz\n{}\nfrom stdin", f.scratch.display())
    );
}

pub async fn runs_as_another_user(f: Fixture) {
    let user = other_user(&f);
    let out = f
        .host
        .run(
            &CommandSpec::new("id")
                .arg("-un")
                .run_as(user.clone())
                .env("X", "1"),
        )
        .await
        .unwrap();
    assert_eq!(out.stdout_text().trim(), user);
}

pub async fn secrets_never_reach_errors(f: Fixture) {
    let secret = "hunter2-Zq9";
    // In an argument (which callers must avoid, but must still never leak), echoed to stderr.
    let spec = CommandSpec::new("sh")
        .args([
            "-c",
            "echo \"auth failed for $1\" >&2; exit 1",
            "sh",
            secret,
        ])
        .redact(secret);
    let err = f.host.run(&spec).await.unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(!text.contains(secret), "{text}");
    assert!(text.contains("***"), "{text}");

    // On stdin, echoed back in the error output (as psql does with a failing statement).
    let spec = CommandSpec::new("sh")
        .args(["-c", "cat >&2; exit 1"])
        .secret_stdin(format!("ALTER ROLE r PASSWORD '{secret}'"))
        .redact(secret);
    let err = f.host.run(&spec).await.unwrap_err();
    let text = format!("{err} {err:?} {spec:?}");
    assert!(!text.contains(secret), "{text}");
    assert!(text.contains("PASSWORD '***'"), "{text}");
}

pub async fn timeout_stops_the_command(f: Fixture) {
    let start = Instant::now();
    let spec = CommandSpec::new("sleep")
        .arg("30")
        .timeout(Duration::from_secs(1));
    let err = f.host.run(&spec).await.unwrap_err();
    assert!(matches!(err, HostError::CommandTimedOut { .. }), "{err}");
    assert_eq!(err.kind(), HostErrorKind::Timeout);
    assert!(start.elapsed() < Duration::from_secs(20));
    // The host is still usable afterwards (SSH reconnects).
    let out = f.host.run(&CommandSpec::new("true")).await.unwrap();
    assert!(out.status.success());
}

/// Locally the whole process group goes, grandchildren included. (Over SSH, the remote
/// command loses its channel; sshd gives no way to signal it: see `SshHost` docs.)
pub async fn timeout_kills_grandchildren(f: Fixture) {
    let pidfile = f.scratch.join("grandchild.pid");
    let spec = CommandSpec::new("sh")
        .args(["-c", "sleep 30 & echo $! > \"$1\"; wait", "sh"])
        .arg(pidfile.display().to_string())
        .timeout(Duration::from_secs(1));
    let err = f.host.run(&spec).await.unwrap_err();
    assert!(matches!(err, HostError::CommandTimedOut { .. }), "{err}");
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while sandbox::is_alive(pid) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !sandbox::is_alive(pid),
        "grandchild {pid} survived the timeout"
    );
}

/// 24 MiB through `cat` in both directions at once: a host that writes all input before
/// reading output would deadlock on pipe or SSH window limits.
pub async fn streams_both_ways_at_once(f: Fixture) {
    let size = 24 * 1024 * 1024;
    let data: Vec<u8> = (0..size).map(|i| (i * 7 + i / 4096) as u8).collect();
    let (writer, mut reader) = tokio::io::duplex(64 * 1024);
    let reading = tokio::spawn(async move {
        let mut got = Vec::new();
        reader.read_to_end(&mut got).await.map(|_| got)
    });
    let input: host::BoxRead = Box::new(std::io::Cursor::new(data.clone()));
    let out = f
        .host
        .stream(&CommandSpec::new("cat"), Some(input), Box::new(writer))
        .await
        .unwrap();
    assert!(out.stdout.is_empty());
    let got = reading.await.unwrap().unwrap();
    assert_eq!(got.len(), data.len());
    assert!(got == data, "streamed bytes differ");

    // A failing streamed command is an error, and its partial output still arrived.
    let (writer, mut reader) = tokio::io::duplex(1024);
    let err = f
        .host
        .stream(
            &CommandSpec::new("sh").args(["-c", "echo partial; exit 4"]),
            None,
            Box::new(writer),
        )
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), Some(4));
    let mut got = String::new();
    reader.read_to_string(&mut got).await.unwrap();
    assert_eq!(got, "partial\n");
}

pub async fn write_file_is_atomic_with_mode_and_owner(f: Fixture) {
    let user = other_user(&f);
    let path = f.scratch.join("secret.pgpass");
    let own = Ownership::owned(0o600, user.clone());
    for round in 0..2 {
        let body = format!("*:*:*:replica_user:pw{round}\n");
        f.host
            .write_file(&path, body.as_bytes(), &own)
            .await
            .unwrap();
        assert_eq!(f.host.read_file(&path).await.unwrap(), body.as_bytes());
    }
    let st = f.host.stat(&path).await.unwrap().unwrap();
    assert_eq!(
        (st.kind, st.mode, st.user.as_str()),
        (FileKind::File, 0o600, user.as_str())
    );
    // No temporary file is left beside it.
    let names: Vec<_> = std::fs::read_dir(&f.scratch)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, vec!["secret.pgpass".to_owned()]);

    // A missing parent is NotFound, and nothing is created.
    let err = f
        .host
        .write_file(&f.scratch.join("nope/x"), b"x", &Ownership::mode(0o644))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), HostErrorKind::NotFound, "{err}");
    // A relative path is refused before anything runs.
    let err = f
        .host
        .write_file(Path::new("relative"), b"x", &Ownership::mode(0o644))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), HostErrorKind::Invalid, "{err}");
}

pub async fn file_operations_are_idempotent_and_never_destroy(f: Fixture) {
    let h = &f.host;
    let dir = f.scratch.join("a/b/c");
    for _ in 0..2 {
        h.mkdir_p(&dir, &Ownership::mode(0o750)).await.unwrap();
    }
    let st = h.stat(&dir).await.unwrap().unwrap();
    assert_eq!((st.kind, st.mode), (FileKind::Dir, 0o750));

    let file = dir.join("data.txt");
    h.write_file(&file, b"precious", &Ownership::mode(0o644))
        .await
        .unwrap();

    let link = f.scratch.join("link");
    for _ in 0..2 {
        h.symlink(&dir, &link).await.unwrap();
    }
    let st = h.stat(&link).await.unwrap().unwrap();
    assert_eq!(st.kind, FileKind::Symlink);
    assert_eq!(st.link_target.as_deref(), Some(dir.as_path()));
    // Re-pointing a link is fine; replacing a real file with a link is refused.
    h.symlink(&f.scratch, &link).await.unwrap();
    let err = h.symlink(&dir, &file).await.unwrap_err();
    assert!(matches!(err, HostError::Conflict { .. }), "{err}");
    assert_eq!(h.read_file(&file).await.unwrap(), b"precious");

    // remove: a non-empty directory is refused and kept.
    let err = h.remove(&dir).await.unwrap_err();
    assert!(matches!(err, HostError::Conflict { .. }), "{err}");
    assert!(h.stat(&file).await.unwrap().is_some());
    // rename never overwrites.
    let aside = f.scratch.join("aside");
    h.write_file(&aside, b"other", &Ownership::mode(0o644))
        .await
        .unwrap();
    let err = h.rename(&file, &aside).await.unwrap_err();
    assert!(
        matches!(err, HostError::Conflict { ref path, .. } if path == &aside),
        "{err}"
    );
    assert_eq!(h.read_file(&aside).await.unwrap(), b"other");
    h.remove(&aside).await.unwrap();
    h.rename(&file, &aside).await.unwrap();
    assert_eq!(h.read_file(&aside).await.unwrap(), b"precious");

    // Removing twice is fine; reading or stat-ing what is gone says so.
    h.remove(&aside).await.unwrap();
    h.remove(&aside).await.unwrap();
    assert!(h.stat(&aside).await.unwrap().is_none());
    let err = h.read_file(&aside).await.unwrap_err();
    assert!(matches!(err, HostError::NotFound { .. }), "{err}");
    assert!(err.to_string().contains(&h.name()));
}

/// Instantiates every suite test for one kind of host.
macro_rules! host_suite {
    ($kind:ident) => {
        mod $kind {
            use crate::suite;
            use crate::testutil;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn captures_output_and_status() {
                suite::captures_output_and_status(testutil::$kind()).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn arguments_reach_the_program_verbatim() {
                suite::arguments_reach_the_program_verbatim(testutil::$kind()).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn env_cwd_and_stdin() {
                suite::env_cwd_and_stdin(testutil::$kind()).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn runs_as_another_user() {
                suite::runs_as_another_user(testutil::$kind()).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn secrets_never_reach_errors() {
                suite::secrets_never_reach_errors(testutil::$kind()).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn timeout_stops_the_command() {
                suite::timeout_stops_the_command(testutil::$kind()).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn streams_both_ways_at_once() {
                suite::streams_both_ways_at_once(testutil::$kind()).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn write_file_is_atomic_with_mode_and_owner() {
                suite::write_file_is_atomic_with_mode_and_owner(testutil::$kind()).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn file_operations_are_idempotent_and_never_destroy() {
                suite::file_operations_are_idempotent_and_never_destroy(testutil::$kind()).await
            }
        }
    };
}

host_suite!(local);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_timeout_kills_grandchildren() {
    timeout_kills_grandchildren(crate::testutil::local()).await
}
host_suite!(ssh);

/// When the process that runs a command is killed (SIGKILL: no destructor, no handler), the
/// command and everything it started die with it. The test runs itself again as that
/// process (`HOST_TEST_CHILD_PIDS` set), which starts `sh` with a background `sleep` and
/// writes their pids; then it kills that copy of itself and watches both pids go.
#[test]
fn children_die_with_a_killed_runner() {
    if let Ok(file) = std::env::var("HOST_TEST_CHILD_PIDS") {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let spec = host::CommandSpec::new("sh").args([
                "-c",
                &format!("sleep 600 & echo $$ $! > {file}.tmp; mv {file}.tmp {file}; wait"),
            ]);
            let _ = host::Host::run(&host::LocalHost::new(), &spec).await;
        });
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pids");
    let mut runner = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "suite::children_die_with_a_killed_runner",
            "--nocapture",
        ])
        .env("HOST_TEST_CHILD_PIDS", &file)
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while !file.exists() {
        assert!(
            start.elapsed().as_secs() < 30,
            "the runner never started its command"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let pids: Vec<i32> = std::fs::read_to_string(&file)
        .unwrap()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(pids.len(), 2);
    runner.kill().unwrap();
    runner.wait().unwrap();
    let alive = |pid: i32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| !s.contains(") Z "))
            .unwrap_or(false)
    };
    let start = std::time::Instant::now();
    while pids.iter().any(|p| alive(*p)) {
        assert!(
            start.elapsed().as_secs() < 5,
            "still running 5 s after their runner was killed: {:?}",
            pids.iter().filter(|p| alive(**p)).collect::<Vec<_>>()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
