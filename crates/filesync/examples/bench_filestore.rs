//! Benchmark: the database-driven filestore sync (the `filesync` binary) against `rsync -a`
//! over the same sandbox sshd, in one run:
//! 1. first copy of 20,000 files with an Odoo-like size mix (about 500 MB);
//! 2. a pass after 100 new attachments in a 200,000-file store.
//!
//! Run with `bash scripts/bench-filesync` (release build). Arguments: files for the first
//! copy, files in the big store (defaults 20000 and 200000).

// A benchmark that cannot set up its servers must stop: panicking is the point here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use sandbox::{Sandbox, SizeMix};

struct Bench {
    sb: Sandbox,
    filesync: PathBuf,
    sshd: sandbox::Sshd,
    /// Where the copies go: a folder of ours in /dev/shm (tmpfs), unless BENCH_ON_DISK is
    /// set (then the sandbox's folder, on disk).
    dest_root: PathBuf,
}

impl Drop for Bench {
    fn drop(&mut self) {
        if self.dest_root.starts_with("/dev/shm") {
            let _ = std::fs::remove_dir_all(&self.dest_root);
        }
    }
}

impl Bench {
    /// A fresh destination folder.
    fn dest(&self, name: &str) -> PathBuf {
        let d = self.dest_root.join(name);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn ssh_e(&self) -> String {
        format!(
            "ssh -p {} -i {} -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes -o BatchMode=yes",
            self.sshd.port,
            self.sshd.client_key.display(),
            self.sshd.known_hosts.display()
        )
    }

    fn rsync(&self, src: &Path, dest: &Path) -> Duration {
        std::fs::create_dir_all(dest).unwrap();
        let t = Instant::now();
        let out = Command::new("rsync")
            .args(["-a", "-e", &self.ssh_e()])
            .arg(format!("{}@127.0.0.1:{}", self.sshd.user, src.display()))
            .arg(format!("{}/", dest.display()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        t.elapsed()
    }

    /// One `filesync sync` pass; returns wall time and the peak memory it reported.
    fn ours(
        &self,
        vps_data: &Path,
        standby: &sandbox::Cluster,
        db: &str,
        local: &Path,
        state: &Path,
    ) -> (Duration, u64) {
        let t = Instant::now();
        let out = Command::new(&self.filesync)
            .args([
                "sync",
                "--vps",
                &format!("{}@127.0.0.1:{}", self.sshd.user, self.sshd.port),
            ])
            .arg("--identity")
            .arg(&self.sshd.client_key)
            .arg("--known-hosts")
            .arg(&self.sshd.known_hosts)
            .arg("--remote-data-dir")
            .arg(vps_data)
            .arg("--local-data-dir")
            .arg(local)
            .args([
                "--standby",
                &standby.conninfo("postgres"),
                "--db",
                db,
                "--stats",
            ])
            .arg("--state-dir")
            .arg(state)
            .output()
            .unwrap();
        let elapsed = t.elapsed();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if std::env::var_os("BENCH_VERBOSE").is_some() {
            eprint!("{text}");
        }
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let peak = text
            .lines()
            .find_map(|l| {
                l.split("peak memory ")
                    .nth(1)?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            })
            .unwrap_or(0);
        (elapsed, peak)
    }
}

/// CPU seconds (user, system) used by finished children so far.
fn children_cpu() -> (f64, f64) {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct we pass; RUSAGE_CHILDREN has no other precondition.
    let ru = unsafe {
        libc::getrusage(libc::RUSAGE_CHILDREN, ru.as_mut_ptr());
        ru.assume_init()
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (secs(ru.ru_utime), secs(ru.ru_stime))
}

/// Writes dirty pages out (sync(1)), so that the next timed run starts from the same state.
fn flush() {
    let _ = Command::new("sync").status();
}

fn count_files(dir: &Path) -> usize {
    let mut n = 0;
    for d in std::fs::read_dir(dir).unwrap().flatten() {
        if d.file_type().unwrap().is_dir() {
            n += std::fs::read_dir(d.path()).unwrap().count();
        }
    }
    n
}

fn main() {
    let first_n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
    let big_n: usize = std::env::args()
        .nth(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200_000);
    let exe = std::env::current_exe().unwrap();
    let filesync = exe.parent().unwrap().parent().unwrap().join("filesync");
    assert!(
        filesync.exists(),
        "build it first: cargo build --release -p filesync"
    );
    let mut sb = Sandbox::new().unwrap();
    let sshd = sb.start_sshd().unwrap();
    let vps = sb.add_cluster("vps").unwrap();
    // Both sides read the VPS files from the page cache: both are measured warm.
    let dest_root = if std::env::var_os("BENCH_ON_DISK").is_some() {
        sb.dir("dest").unwrap()
    } else {
        PathBuf::from(format!("/dev/shm/filesync-bench-{}", std::process::id()))
    };
    println!(
        "copies go to {} ({})",
        dest_root.display(),
        if dest_root.starts_with("/dev/shm") {
            "tmpfs: the disk's noise is left out; BENCH_ON_DISK=1 for the disk"
        } else {
            "disk"
        }
    );
    let mut b = Bench {
        filesync,
        sshd,
        sb,
        dest_root,
    };

    // 1. First copy.
    vps.create_odoo_db("first", "odoo").unwrap();
    let vps_data = b.sb.dir("vps_data").unwrap();
    let att = vps
        .add_attachments("first", &vps_data, first_n, &SizeMix::odoo(), 1)
        .unwrap();
    let bytes: u64 = att.iter().map(|a| a.file_size).sum();
    // A standby of the VPS: what filesync reads names from.
    let standby = b.sb.add_standby("standby", &vps).unwrap();
    let n = vps
        .psql("first", "SELECT count(*) FROM ir_attachment")
        .unwrap();
    standby
        .wait_for(
            "first",
            "SELECT count(*) FROM ir_attachment",
            &n,
            Duration::from_secs(60),
        )
        .unwrap();
    let distinct = count_files(&vps_data.join("filestore/first"));
    println!(
        "first copy: {distinct} files, {} MB (Odoo-like mix), over sshd on 127.0.0.1",
        bytes / 1_000_000
    );
    // Two rounds in alternating order (ours, rsync, rsync, ours), each into a fresh folder,
    // with dirty pages flushed before every run: neither side pays for the other's
    // writeback, and neither always goes first.
    let mut ours_t = Vec::new();
    let mut rsync_t = Vec::new();
    let mut peak_first = 0;
    let mut cpu_ours = (0.0, 0.0);
    let mut cpu_rsync = (0.0, 0.0);
    for (i, ours_first) in [true, false].into_iter().enumerate() {
        for ours in [ours_first, !ours_first] {
            flush();
            let cpu0 = children_cpu();
            if ours {
                let dir = b.dest(&format!("ours{i}"));
                let (t, peak) = b.ours(
                    &vps_data,
                    &standby,
                    "first",
                    &dir,
                    &b.dest(&format!("state{i}")),
                );
                assert_eq!(count_files(&dir.join("filestore/first")), distinct);
                ours_t.push(t.as_secs_f64());
                peak_first = peak_first.max(peak);
                let cpu1 = children_cpu();
                cpu_ours = (cpu_ours.0 + cpu1.0 - cpu0.0, cpu_ours.1 + cpu1.1 - cpu0.1);
            } else {
                let dir = b.dest(&format!("rsync{i}"));
                let t = b.rsync(&vps_data.join("filestore/first"), &dir);
                assert_eq!(count_files(&dir.join("first")), distinct);
                rsync_t.push(t.as_secs_f64());
                let cpu1 = children_cpu();
                cpu_rsync = (cpu_rsync.0 + cpu1.0 - cpu0.0, cpu_rsync.1 + cpu1.1 - cpu0.1);
            }
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    println!(
        "  filesync sync      runs {:.2} s, {:.2} s  mean {:>6.2} s   peak memory {} KiB   cpu/run user {:.2} s sys {:.2} s",
        ours_t[0],
        ours_t[1],
        mean(&ours_t),
        peak_first,
        cpu_ours.0 / 2.0,
        cpu_ours.1 / 2.0
    );
    println!(
        "  rsync -a           runs {:.2} s, {:.2} s  mean {:>6.2} s   (client side) cpu/run user {:.2} s sys {:.2} s",
        rsync_t[0],
        rsync_t[1],
        mean(&rsync_t),
        cpu_rsync.0 / 2.0,
        cpu_rsync.1 / 2.0
    );
    println!(
        "  ratio rsync/filesync (means)            {:>6.2}x",
        mean(&rsync_t) / mean(&ours_t)
    );

    if std::env::var_os("BENCH_FIRST_ONLY").is_some() {
        return;
    }

    // 2. 100 new files in a big store.
    vps.create_odoo_db("big", "odoo").unwrap();
    let t = Instant::now();
    vps.add_attachments(
        "big",
        &vps_data,
        big_n,
        &SizeMix {
            buckets: vec![(1, 512, 4096)],
        },
        2,
    )
    .unwrap();
    // A store that grew over years: rows written long ago, one every ten minutes.
    vps.psql(
        "big",
        "UPDATE ir_attachment SET write_date = timestamp '2020-01-01' + id * interval '10 minutes'",
    )
    .unwrap();
    let n = vps
        .psql("big", "SELECT count(*) FROM ir_attachment")
        .unwrap();
    standby
        .wait_for(
            "big",
            "SELECT count(*) FROM ir_attachment",
            &n,
            Duration::from_secs(120),
        )
        .unwrap();
    standby
        .wait_for("big", "SELECT count(*) FROM ir_attachment WHERE write_date > '2019-12-31' AND write_date < '2019-12-31 00:01'", "0", Duration::from_secs(120))
        .unwrap();
    let old = vps
        .psql(
            "big",
            "SELECT count(*) FROM ir_attachment WHERE write_date < '2030-01-01'",
        )
        .unwrap();
    standby
        .wait_for(
            "big",
            "SELECT count(*) FROM ir_attachment WHERE write_date < '2030-01-01'",
            &old,
            Duration::from_secs(120),
        )
        .unwrap();
    println!(
        "big store: {} files made in {:.0} s",
        count_files(&vps_data.join("filestore/big")),
        t.elapsed().as_secs_f64()
    );
    let ours_big = b.dest("ours_big");
    let state_big = b.dest("state_big");
    flush();
    let (t_initial, peak_initial) = b.ours(&vps_data, &standby, "big", &ours_big, &state_big);
    let rsync_big = b.dest("rsync_big");
    flush();
    let t_rsync_initial = b.rsync(&vps_data.join("filestore/big"), &rsync_big);
    println!(
        "  initial copy: filesync {:.2} s (peak {} KiB), rsync -a {:.2} s",
        t_initial.as_secs_f64(),
        peak_initial,
        t_rsync_initial.as_secs_f64()
    );
    // Steady state as `filesync watch` runs it: connections kept, index in memory,
    // incremental queries. One pass first (nothing new) sets the tracker's high-water mark.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let watch = rt.block_on(async {
        let db = pgrepl::PgClient::connect(&standby.conninfo("big"))
            .await
            .unwrap();
        let host = host::SshHost::new(host::SshConfig::new(
            b.sshd.user.clone(),
            "127.0.0.1",
            b.sshd.port,
            host::SshAuth::KeyFile(b.sshd.client_key.clone()),
            b.sshd.known_hosts.clone(),
        ));
        host.connect().await.unwrap();
        // As `filesync watch` runs: the fetch helper on a second connection of its own.
        let session = filesync::Session::new(std::sync::Arc::new(host::SshHost::new(
            host.config().clone(),
        )));
        let vps_side = filesync::Vps::new(
            std::sync::Arc::new(host),
            vps_data.join("filestore"),
            Some(std::sync::Arc::new(session)),
        );
        let mut index = filesync::Index::load_or_build(
            &state_big.join("big.index"),
            &ours_big.join("filestore/big"),
        )
        .unwrap();
        let mut tracker = filesync::Tracker::default();
        let local_fs = ours_big.join("filestore");
        let opts = filesync::SyncOptions::default();
        let t = Instant::now();
        let r = filesync::sync_db_tracked(
            &db,
            "big",
            &vps_side,
            &local_fs,
            &mut index,
            &opts,
            &mut tracker,
        )
        .await
        .unwrap();
        let full_pass = t.elapsed();
        assert_eq!(r.fetched, 0);
        // A watch that has been running: its helper on the VPS already started by an
        // earlier pass that fetched something.
        vps.add_attachments("big", &vps_data, 5, &SizeMix::odoo(), 5)
            .unwrap();
        let n = vps
            .psql("big", "SELECT count(*) FROM ir_attachment")
            .unwrap();
        standby
            .wait_for(
                "big",
                "SELECT count(*) FROM ir_attachment",
                &n,
                Duration::from_secs(60),
            )
            .unwrap();
        let warm = filesync::sync_db_tracked(
            &db,
            "big",
            &vps_side,
            &local_fs,
            &mut index,
            &opts,
            &mut tracker,
        )
        .await
        .unwrap();
        assert!(warm.fetched >= 4, "{warm:?}");
        assert!(!vps_side.session.as_ref().unwrap().unavailable().await);
        vps.add_attachments("big", &vps_data, 100, &SizeMix::odoo(), 3)
            .unwrap();
        let n = vps
            .psql("big", "SELECT count(*) FROM ir_attachment")
            .unwrap();
        standby
            .wait_for(
                "big",
                "SELECT count(*) FROM ir_attachment",
                &n,
                Duration::from_secs(60),
            )
            .unwrap();
        flush();
        let t = Instant::now();
        let r = filesync::sync_db_tracked(
            &db,
            "big",
            &vps_side,
            &local_fs,
            &mut index,
            &opts,
            &mut tracker,
        )
        .await
        .unwrap();
        let inc = t.elapsed();
        (full_pass, inc, r)
    });
    let (full_pass, t_watch, r) = watch;
    assert!(r.fetched >= 95, "{r:?}");
    flush();
    let t_rsync_watch = b.rsync(&vps_data.join("filestore/big"), &rsync_big);
    assert_eq!(
        count_files(&ours_big.join("filestore/big")),
        count_files(&rsync_big.join("big"))
    );
    println!("100 new files in the big store, as `filesync watch` passes (connections kept):");
    println!(
        "  filesync pass ({} fetched)      {:>8.3} s   (query {} ms, diff {} ms, fetch {} ms, save index {} ms)",
        r.fetched,
        t_watch.as_secs_f64(),
        r.query_ms,
        r.diff_ms,
        r.fetch_ms,
        r.persist_ms
    );
    println!(
        "  rsync -a                        {:>8.3} s",
        t_rsync_watch.as_secs_f64()
    );
    println!(
        "  ratio rsync/filesync            {:>8.1}x",
        t_rsync_watch.as_secs_f64() / t_watch.as_secs_f64()
    );
    println!(
        "  (a full watch pass, every name read, nothing new: {:.3} s)",
        full_pass.as_secs_f64()
    );

    // The same with the one-shot command (new process, new connections, full query).
    vps.add_attachments("big", &vps_data, 100, &SizeMix::odoo(), 4)
        .unwrap();
    let n = vps
        .psql("big", "SELECT count(*) FROM ir_attachment")
        .unwrap();
    standby
        .wait_for(
            "big",
            "SELECT count(*) FROM ir_attachment",
            &n,
            Duration::from_secs(60),
        )
        .unwrap();
    flush();
    let (t_inc, peak_inc) = b.ours(&vps_data, &standby, "big", &ours_big, &state_big);
    flush();
    let t_rsync_inc = b.rsync(&vps_data.join("filestore/big"), &rsync_big);
    assert_eq!(
        count_files(&ours_big.join("filestore/big")),
        count_files(&rsync_big.join("big"))
    );
    println!("100 more new files, one-shot `filesync sync` (new process and connections):");
    println!(
        "  filesync sync                   {:>8.3} s   peak memory {} KiB",
        t_inc.as_secs_f64(),
        peak_inc
    );
    println!(
        "  rsync -a                        {:>8.3} s",
        t_rsync_inc.as_secs_f64()
    );
    println!(
        "  ratio rsync/filesync            {:>8.1}x",
        t_rsync_inc.as_secs_f64() / t_inc.as_secs_f64()
    );
}
