//! The systemd units of an instance's background work on the backup server, as the Debian
//! package ships them: the template `odoo-standby-sync@.service` (the file syncs, always
//! running) and `odoo-standby-refresh@.service` with its `.timer` (every 12 hours: the addon
//! sources and the VPS's `pip freeze`). Protect enables `odoo-standby-sync@NAME.service` and
//! `odoo-standby-refresh@NAME.timer` and writes one drop-in per instance and unit,
//! `/etc/systemd/system/<unit>.d/odoo-standby.conf`, with what only the config knows: the
//! backup's `os_user`, the folders the unit may write (the rest of the system is read-only
//! to it), and, when the program or the config is not the package's
//! (`/usr/bin/odoo-standby`, `/etc/odoo-standby/config.toml`), the `ExecStart` that names
//! them. Without the package (an `odoo-standby` copied by hand), protect writes the
//! templates into `/etc/systemd/system` itself, the same text.
//!
//! In the sandbox (`services = "supervised"`) there are no units: the sync process runs as
//! the same `odoo-standby sync NAME --watch`, and the 12-hourly refresh is done by its passes.

use std::path::{Path, PathBuf};

use crate::env::Env;

/// The sync service's template, as the package installs it.
pub const SYNC_TEMPLATE: &str = include_str!("../units/odoo-standby-sync@.service");
/// The refresh service's template.
pub const REFRESH_TEMPLATE: &str = include_str!("../units/odoo-standby-refresh@.service");
/// The refresh timer's template.
pub const REFRESH_TIMER_TEMPLATE: &str = include_str!("../units/odoo-standby-refresh@.timer");

/// Where the package puts the program; the templates' `ExecStart` runs it.
pub const PACKAGE_PROGRAM: &str = "/usr/bin/odoo-standby";
/// The config the templates' `ExecStart` reads.
pub const PACKAGE_CONFIG: &str = "/etc/odoo-standby/config.toml";
/// Where the package puts its units.
pub const PACKAGE_UNIT_DIR: &str = "/lib/systemd/system";
/// Where protect writes the templates when the package is not installed, and the drop-ins.
pub const LOCAL_UNIT_DIR: &str = "/etc/systemd/system";

/// One of the templates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Template {
    /// `odoo-standby-sync@.service`.
    pub file: &'static str,
    /// Its text.
    pub text: &'static str,
    /// The `odoo-standby` subcommand its `ExecStart` runs, with the arguments after the name.
    pub command: &'static [&'static str],
}

/// The sync service's template.
pub const SYNC: Template = Template {
    file: "odoo-standby-sync@.service",
    text: SYNC_TEMPLATE,
    command: &["sync", "%i", "--watch"],
};
/// The refresh service's template.
pub const REFRESH: Template = Template {
    file: "odoo-standby-refresh@.service",
    text: REFRESH_TEMPLATE,
    command: &["refresh", "%i"],
};
/// The refresh timer's template (no command: it starts the service of the same instance).
pub const REFRESH_TIMER: Template = Template {
    file: "odoo-standby-refresh@.timer",
    text: REFRESH_TIMER_TEMPLATE,
    command: &[],
};

impl Template {
    /// The unit of instance `name` (`odoo-standby-sync@vps1.service`).
    pub fn instance(&self, name: &str) -> String {
        self.file.replacen("@.", &format!("@{name}."), 1)
    }

    /// The paths systemd would load the template from (the package's, then ours).
    pub fn paths(&self) -> [PathBuf; 3] {
        [
            Path::new(PACKAGE_UNIT_DIR).join(self.file),
            Path::new("/usr/lib/systemd/system").join(self.file),
            Path::new(LOCAL_UNIT_DIR).join(self.file),
        ]
    }

    /// Where protect writes it when the package did not install it.
    pub fn local_path(&self) -> PathBuf {
        Path::new(LOCAL_UNIT_DIR).join(self.file)
    }
}

/// The drop-in of instance `name`'s unit of `t`.
pub fn drop_in_path(t: &Template, name: &str) -> PathBuf {
    Path::new(LOCAL_UNIT_DIR)
        .join(format!("{}.d", t.instance(name)))
        .join("odoo-standby.conf")
}

/// The text of the drop-in of `env`'s unit of service template `t`: `User=` the backup's os_user, the
/// folders it writes, and the `ExecStart` when the program or the config differ from the
/// package's (both absolute: `env.program` and `env.config_path` are).
pub fn drop_in(env: &Env, t: &Template) -> String {
    let b = &env.cfg.backup;
    let mut s = format!(
        "# Written by odoo-standby protect {name}: what only the config knows.\n[Service]\nUser={u}\n",
        name = env.name(),
        u = b.os_user
    );
    let mut rw = vec![env.layout.dir(), env.state.dir().to_owned()];
    rw.extend(b.metrics_dir.clone());
    let rw: Vec<String> = rw.iter().map(|p| format!("-{}", p.display())).collect();
    s.push_str(&format!(
        "ReadWritePaths={}\n",
        host::quote::systemd_line(&rw)
    ));
    if env.program != Path::new(PACKAGE_PROGRAM) || env.config_path != Path::new(PACKAGE_CONFIG) {
        let mut argv = vec![
            env.program.display().to_string(),
            "--config".into(),
            env.config_path.display().to_string(),
        ];
        argv.extend(t.command.iter().map(|a| a.replace("%i", env.name())));
        s.push_str(&format!(
            "ExecStart=\nExecStart={}\n",
            host::quote::systemd_line(&argv)
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_run_the_package_program_with_the_package_config() {
        for t in [SYNC, REFRESH] {
            let exec = t
                .text
                .lines()
                .find(|l| l.starts_with("ExecStart="))
                .unwrap_or_default();
            let want = format!(
                "ExecStart={PACKAGE_PROGRAM} --config {PACKAGE_CONFIG} {}",
                t.command.join(" ")
            );
            assert_eq!(exec, want, "{}", t.file);
            assert!(t.text.contains("\nUser="), "{}", t.file);
            assert!(t.text.contains("\nNoNewPrivileges=yes"), "{}", t.file);
            assert!(t.text.contains("\nProtectSystem=strict"), "{}", t.file);
        }
        assert!(REFRESH_TIMER.text.contains("OnCalendar=*-*-* 00/12:00:00"));
        assert_eq!(SYNC.instance("vps1"), "odoo-standby-sync@vps1.service");
        assert_eq!(REFRESH_TIMER.instance("a"), "odoo-standby-refresh@a.timer");
    }

    fn env(config: &Path, program: &str) -> Env {
        let cfg = crate::Config::parse(crate::EXAMPLE, "test.toml").unwrap();
        let host =
            || -> std::sync::Arc<dyn host::Host> { std::sync::Arc::new(host::MockHost::new()) };
        let hosts = crate::Hosts {
            local: host(),
            vps: host(),
            vps_files: host(),
        };
        let mut env = Env::with_hosts(&cfg, config, "vps_clientes_1", hosts).unwrap();
        env.program = PathBuf::from(program);
        env
    }

    #[test]
    fn the_drop_in_names_the_user_the_folders_and_only_a_program_that_is_not_the_packages() {
        let packaged = env(Path::new(PACKAGE_CONFIG), PACKAGE_PROGRAM);
        let d = drop_in(&packaged, &SYNC);
        assert!(d.contains("\nUser=odoouser\n"), "{d}");
        assert!(
            d.contains("ReadWritePaths=-/opt/odoouser/respaldo_filestore/vps_clientes_1 -/var/lib/odoo-standby/vps_clientes_1"),
            "{d}"
        );
        assert!(!d.contains("ExecStart"), "{d}");
        // A relative config and a binary elsewhere: both named, the config made absolute.
        let by_hand = env(
            Path::new("conf/my config.toml"),
            "/usr/local/bin/odoo-standby",
        );
        let d = drop_in(&by_hand, &REFRESH);
        let cwd = std::env::current_dir().unwrap();
        let want = format!(
            "ExecStart=\nExecStart=/usr/local/bin/odoo-standby --config \"{}/conf/my config.toml\" refresh vps_clientes_1\n",
            cwd.display()
        );
        assert!(d.contains(&want), "{d}\nwant: {want}");
    }
}
