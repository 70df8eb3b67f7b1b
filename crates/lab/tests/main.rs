//! The lab itself: machines boot with systemd, reach each other only on their own addresses,
//! die and come back with their disks, and leave nothing behind.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use lab::Lab;

#[test]
fn machines_boot_die_come_back_and_leave_nothing() {
    let lab = Lab::up(&Lab::two_machines()).unwrap();
    let id = lab.id().to_owned();
    let vps = lab.machine("vps").unwrap();
    let backup = lab.machine("backup").unwrap();
    for m in [vps, backup] {
        assert_eq!(m.run(&["cat", "/proc/1/comm"]).unwrap().trim(), "systemd");
        assert_eq!(m.run(&["hostname"]).unwrap().trim(), m.name());
    }
    // A cluster under systemd, reached from the other machine by its address.
    vps.run(&["pg_createcluster", "15", "main", "--start"])
        .unwrap();
    vps.run(&["systemctl", "is-active", "postgresql@15-main"])
        .unwrap();
    vps.sh("echo 'host all all 127.0.0.3/32 trust' >> /etc/postgresql/15/main/pg_hba.conf && echo \"listen_addresses = '*'\" > /etc/postgresql/15/main/conf.d/listen.conf && pg_ctlcluster 15 main restart", &[]).unwrap();
    let q = [
        "psql",
        "-h",
        "127.0.0.2",
        "-U",
        "postgres",
        "-XAtc",
        "SELECT inet_client_addr()",
    ];
    assert_eq!(backup.run(&q).unwrap().trim(), "127.0.0.3");
    // Cut: nothing gets through; heal: it does again.
    lab.cut("vps").unwrap();
    let out = backup
        .exec(&[
            "timeout",
            "3",
            "psql",
            "-h",
            "127.0.0.2",
            "-U",
            "postgres",
            "-XAtc",
            "SELECT 1",
        ])
        .unwrap();
    assert!(!out.status.success());
    lab.heal("vps").unwrap();
    assert_eq!(backup.run(&q).unwrap().trim(), "127.0.0.3");
    // The VPS dies and comes back with its disk: its cluster starts by itself.
    vps.write("/root/marker", b"kept\n", 0o600, "root:root")
        .unwrap();
    vps.kill().unwrap();
    assert!(!vps.is_running());
    assert!(!backup.exec(&q).unwrap().status.success());
    vps.boot().unwrap();
    assert_eq!(vps.read("/root/marker").unwrap(), "kept\n");
    let mut up = false;
    for _ in 0..100 {
        if backup.exec(&q).unwrap().status.success() {
            up = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(up, "the VPS's cluster did not come back by itself");
    drop(lab);
    // Nothing left: no namespace, no cgroup, no mount, no process of the lab.
    let netns = std::fs::read_dir("/run/netns")
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(&id))
                .count()
        })
        .unwrap_or(0);
    assert_eq!(netns, 0);
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&id), "{mounts}");
    for root in [
        "/sys/fs/cgroup/systemd",
        "/sys/fs/cgroup/unified",
        "/sys/fs/cgroup",
    ] {
        assert!(!std::path::Path::new(root)
            .join(format!("{id}-vps"))
            .exists());
    }
    assert!(!std::path::Path::new("/var/tmp/odoo-standby-lab")
        .join(&id)
        .exists());
}

#[test]
fn real_odoo_on_the_vps_serves_the_users_on_the_backup() {
    let src = lab::odoo::source().unwrap();
    let lab = Lab::up(&Lab::two_machines()).unwrap();
    let vps = lab.machine("vps").unwrap();
    let backup = lab.machine("backup").unwrap();
    lab::odoo::install_vps(vps, &src).unwrap();
    lab::odoo::install_backup(backup, &src, vps).unwrap();
    let users = lab::odoo::Client::new(backup, "http://127.0.0.2:8069");
    users.ok("wait-http", &[]).unwrap();
    let login = users.ok("web-login", &["admin", "admin"]).unwrap();
    assert_eq!(login["status"], 303, "{login}");
    users
        .ok(
            "write",
            &["--partners", "3", "--orders", "2", "--origin", "vps"],
        )
        .unwrap();
    let up = users
        .ok(
            "upload",
            &["--log", "/root/up.log", "--count", "6", "--rate", "0"],
        )
        .unwrap();
    assert_eq!(up["uploaded"], 6, "{up}");
    let c = users.ok("check", &["--log", "/root/up.log"]).unwrap();
    assert_eq!(c["ok"], c["logged"], "{c}");
    assert!(c["logged"].as_u64().unwrap() >= 6, "{c}");
    // The files are Odoo's, written where the runbook says, owned by its user.
    let owner = vps
        .sh("find /var/opt/odoo/data_dir/filestore/clientes -type f -newer /etc/odoo.conf | head -1 | xargs stat -c %U", &[])
        .unwrap();
    assert_eq!(owner.trim(), "odoo");
    // The backup logs in to the VPS as its Odoo user, with the host key checked.
    let who = backup
        .run(&[
            "runuser",
            "-u",
            "odoouser",
            "--",
            "ssh",
            "-o",
            "BatchMode=yes",
            "odoo@127.0.0.2",
            "id",
            "-un",
        ])
        .unwrap();
    assert_eq!(who.trim(), "odoo");
}
