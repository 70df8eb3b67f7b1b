//! Schedules per instance (runbook 3.5, corrected): the filestore watch as a service (a new
//! attachment is here within seconds, not 5 minutes), sources and requirements as timers
//! every 12 hours (`0 */12 * * *`, not the first runbook's `* */12 * * *`, which ran every
//! minute of every twelfth hour), each with its own log tag; or the same as cron lines.

/// What to schedule for one instance.
#[derive(Clone, Debug)]
pub struct Schedule {
    /// The instance name.
    pub instance: String,
    /// The OS user that runs the syncs.
    pub os_user: String,
    /// The filesync program.
    pub filesync: String,
    /// The config file every command reads.
    pub config: String,
}

/// A unit file: name and text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnitFile {
    /// `odoo-standby-...`.
    pub name: String,
    /// Its text.
    pub text: String,
}

/// The unit of an instance's sync service (odoo-standby's `sync NAME --watch`: the
/// filestore every few seconds, the sources every 12 hours): `odoo-standby-sync-NAME.service`,
/// run as `user` (Odoo's user on the backup: every file it makes is that user's), restarted
/// always, logging to the journal under its own tag.
pub fn sync_service(instance: &str, exec_start: &[String], user: &str) -> UnitFile {
    UnitFile {
        name: format!("odoo-standby-sync-{instance}.service"),
        text: format!(
            "# Written by odoo-standby: the file syncs of instance {instance}.\n\
             [Unit]\nDescription=odoo-standby syncs of {instance}\nAfter=network-online.target\n\n\
             [Service]\nType=simple\nUser={user}\nExecStart={exec}\nRestart=always\nRestartSec=10\n\
             StandardOutput=journal\nSyslogIdentifier=odoo-standby-sync-{instance}\n\n\
             [Install]\nWantedBy=multi-user.target\n",
            exec = host::quote::systemd_line(exec_start)
        ),
    }
}

impl Schedule {
    fn exec(&self, verb: &str) -> String {
        format!(
            "{} {verb} --config {} --instance {}",
            self.filesync, self.config, self.instance
        )
    }

    fn tag(&self, what: &str) -> String {
        format!("{}_{what}", self.instance)
    }

    /// The systemd units: the watch service, and a service + timer for sources and for
    /// requirements.
    pub fn units(&self) -> Vec<UnitFile> {
        let n = &self.instance;
        let mut v = vec![UnitFile {
            name: format!("odoo-standby-filestore-{n}.service"),
            text: format!(
                "[Unit]\nDescription=odoo-standby: filestore of {n}, every few seconds\nAfter=network-online.target\nWants=network-online.target\n\n\
                 [Service]\nType=simple\nUser={u}\nGroup={u}\nExecStart={exec}\nRestart=always\nRestartSec=10\n\
                 StandardOutput=journal\nStandardError=journal\nSyslogIdentifier={tag}\n\n[Install]\nWantedBy=multi-user.target\n",
                u = self.os_user,
                exec = self.exec("watch"),
                tag = self.tag("filestore"),
            ),
        }];
        for (what, verb, desc) in [
            ("sources", "sources", "addon sources and data_dir trees"),
            ("requirements", "requirements", "pip freeze of the VPS"),
        ] {
            v.push(UnitFile {
                name: format!("odoo-standby-{what}-{n}.service"),
                text: format!(
                    "[Unit]\nDescription=odoo-standby: {desc} of {n}\nAfter=network-online.target\nWants=network-online.target\n\n\
                     [Service]\nType=oneshot\nUser={u}\nGroup={u}\nExecStart={exec}\n\
                     StandardOutput=journal\nStandardError=journal\nSyslogIdentifier={tag}\n",
                    u = self.os_user,
                    exec = self.exec(verb),
                    tag = self.tag(what),
                ),
            });
            v.push(UnitFile {
                name: format!("odoo-standby-{what}-{n}.timer"),
                text: format!(
                    "[Unit]\nDescription=odoo-standby: {desc} of {n}, every 12 hours\n\n\
                     [Timer]\nOnCalendar=*-*-* 00/12:00:00\nRandomizedDelaySec=10min\nPersistent=true\n\n\
                     [Install]\nWantedBy=timers.target\n"
                ),
            });
        }
        v
    }

    /// The same as cron lines for the OS user's crontab (one-minute passes: cron cannot do
    /// seconds; `flock` keeps passes from overlapping), each logged with its own tag.
    pub fn cron_lines(&self) -> Vec<String> {
        let lock = format!("/tmp/odoo-standby-{}.lock", self.instance);
        vec![
            format!(
                "# odoo-standby: {} (filestore every minute, sources and requirements every 12 h)",
                self.instance
            ),
            format!(
                "* * * * * flock -n {lock} {} 2>&1 | logger -t {}",
                self.exec("sync"),
                self.tag("filestore")
            ),
            format!(
                "0 */12 * * * {} 2>&1 | logger -t {}",
                self.exec("sources"),
                self.tag("sources")
            ),
            format!(
                "0 */12 * * * {} 2>&1 | logger -t {}",
                self.exec("requirements"),
                self.tag("requirements")
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_12_hours_means_minute_zero() {
        let s = Schedule {
            instance: "vps1".into(),
            os_user: "odoouser".into(),
            filesync: "/usr/local/bin/filesync".into(),
            config: "/etc/odoo-standby/config.toml".into(),
        };
        let cron = s.cron_lines();
        assert!(
            cron.iter()
                .filter(|l| l.starts_with("0 */12 * * *"))
                .count()
                == 2
        );
        assert!(!cron.iter().any(|l| l.starts_with("* */12")));
        assert!(cron
            .iter()
            .all(|l| l.starts_with('#') || l.contains("logger -t vps1_")));
        let units = s.units();
        assert_eq!(units.len(), 5);
        assert!(units
            .iter()
            .any(|u| u.text.contains("OnCalendar=*-*-* 00/12:00:00")));
    }
}
