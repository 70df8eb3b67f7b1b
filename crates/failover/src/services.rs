//! Starting and stopping services (a promoted Odoo, the syncs of an instance, the VPS's
//! Odoo) behind one trait, so that the plans are the same on real servers (systemd) and in
//! the sandbox (plain processes with pid files; it has no systemd). Clusters go through
//! `pgrepl::Cluster` (postgresql-common or `pg_ctl`), the same way.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use host::{CommandSpec, Host, Ownership};
use serde::Serialize;

use crate::error::{FailoverError, Result};

/// One service, described for both kinds of supervisor.
#[derive(Clone, Debug, Serialize)]
pub struct Service {
    /// The systemd unit (`odoo_vps1.service`); also names the pid file of a supervised one.
    pub unit: String,
    /// The command a supervised process runs (systemd's unit file has its own).
    pub argv: Vec<String>,
    /// The OS user it runs as.
    pub user: String,
    /// A unit file of ours to link into systemd before enabling it (`None`: systemd knows it).
    pub unit_file: Option<PathBuf>,
}

/// Starts, stops and asks about services on one machine. Starting enables (it comes back
/// after a reboot); stopping disables. Both are idempotent.
#[async_trait]
pub trait Supervisor: Send + Sync {
    /// Whether it runs.
    async fn is_active(&self, s: &Service) -> Result<bool>;
    /// Whether this supervisor answers for every service of its machine, whichever
    /// instance made it (systemd does; a supervised instance knows only the pid files of its
    /// own run directory): then one [`Supervisor::are_active`] can ask about a whole fleet.
    fn machine_wide(&self) -> bool {
        false
    }
    /// Whether each runs, in one question where the manager allows it (systemd does).
    async fn are_active(&self, services: &[Service]) -> Result<Vec<bool>> {
        let mut v = Vec::with_capacity(services.len());
        for s in services {
            v.push(self.is_active(s).await?);
        }
        Ok(v)
    }
    /// Enables and starts it (nothing when it runs).
    async fn start(&self, s: &Service) -> Result<()>;
    /// Stops and disables it (nothing when it does not run).
    async fn stop(&self, s: &Service) -> Result<()>;
    /// The commands `start` runs, for plans (the very specs it executes).
    fn start_specs(&self, s: &Service) -> Vec<CommandSpec>;
    /// The commands `stop` runs, for plans.
    fn stop_specs(&self, s: &Service) -> Vec<CommandSpec>;
    /// The commands `start` and `stop` run as root (for the VPS's sudoers drop-in).
    fn root_commands(&self, s: &Service) -> Vec<CommandSpec> {
        self.start_specs(s)
            .into_iter()
            .chain(self.stop_specs(s))
            .filter(|c| c.user() == Some("root"))
            .collect()
    }
}

fn failed(what: String, host: &dyn Host) -> impl FnOnce(host::HostError) -> FailoverError + '_ {
    move |e| FailoverError::failed(format!("{what} on {}", host.name()), e)
}

/// systemd, through `odoo_instance::unit` (the one place that installs, enables and removes
/// units): a unit file of ours is linked, reloaded and enabled; a unit systemd knows (the
/// VPS's own Odoo) is enabled or disabled with `--now`.
pub struct Systemd {
    host: Arc<dyn Host>,
}

impl Systemd {
    /// systemd on `host`.
    pub fn new(host: Arc<dyn Host>) -> Self {
        Self { host }
    }
}

fn unit_err(what: String) -> impl FnOnce(odoo_instance::InstanceError) -> FailoverError {
    move |e| FailoverError::failed(what, e)
}

#[async_trait]
impl Supervisor for Systemd {
    fn machine_wide(&self) -> bool {
        true
    }

    async fn is_active(&self, s: &Service) -> Result<bool> {
        odoo_instance::unit::is_active(self.host.as_ref(), &s.unit)
            .await
            .map_err(unit_err(format!("asking systemd about {}", s.unit)))
    }

    async fn are_active(&self, services: &[Service]) -> Result<Vec<bool>> {
        let units: Vec<&str> = services.iter().map(|s| s.unit.as_str()).collect();
        odoo_instance::unit::are_active(self.host.as_ref(), &units)
            .await
            .map_err(unit_err(format!(
                "asking systemd about {}",
                units.join(", ")
            )))
    }

    async fn start(&self, s: &Service) -> Result<()> {
        let what = format!("starting {} on {}", s.unit, self.host.name());
        match &s.unit_file {
            Some(file) => odoo_instance::unit::install(self.host.as_ref(), file, true)
                .await
                .map_err(unit_err(what)),
            None => self
                .host
                .run(&odoo_instance::unit::enable_spec(&s.unit))
                .await
                .map(drop)
                .map_err(|e| FailoverError::failed(what, e)),
        }
    }

    async fn stop(&self, s: &Service) -> Result<()> {
        odoo_instance::unit::remove(self.host.as_ref(), &s.unit, s.unit_file.is_some())
            .await
            .map_err(unit_err(format!(
                "stopping {} on {}",
                s.unit,
                self.host.name()
            )))
    }

    fn start_specs(&self, s: &Service) -> Vec<CommandSpec> {
        match &s.unit_file {
            Some(f) => odoo_instance::unit::install_specs(f, true).unwrap_or_default(),
            None => vec![odoo_instance::unit::enable_spec(&s.unit)],
        }
    }

    fn stop_specs(&self, s: &Service) -> Vec<CommandSpec> {
        odoo_instance::unit::remove_specs(&s.unit, s.unit_file.is_some())
    }
}

/// Plain processes: started detached (`setsid`) with output to `<run_dir>/<unit>.log`, the pid
/// in `<run_dir>/<unit>.pid`; stopped by that pid after checking its command line, so a
/// reused pid is never signalled.
pub struct Supervised {
    host: Arc<dyn Host>,
    run_dir: PathBuf,
}

impl Supervised {
    /// Processes on `host`, their pid files and logs in `run_dir`.
    pub fn new(host: Arc<dyn Host>, run_dir: impl Into<PathBuf>) -> Self {
        Self {
            host,
            run_dir: run_dir.into(),
        }
    }

    fn pid_file(&self, s: &Service) -> PathBuf {
        self.run_dir.join(format!("{}.pid", s.unit))
    }

    fn log_file(&self, s: &Service) -> PathBuf {
        self.run_dir.join(format!("{}.log", s.unit))
    }

    /// The detached start of `s`, its output appended to its log; prints the pid.
    fn spawn_spec(&self, s: &Service) -> CommandSpec {
        CommandSpec::new("sh")
            .args([
                "-c",
                "log=$1; shift; setsid \"$@\" >>\"$log\" 2>&1 </dev/null & echo $!",
                "sh",
            ])
            .arg(self.log_file(s).display().to_string())
            .args(s.argv.iter().cloned())
            .run_as(s.user.clone())
            .timeout(Duration::from_secs(30))
    }

    /// The pid from the pid file, when that process runs `s.argv`.
    async fn running_pid(&self, s: &Service) -> Result<Option<u32>> {
        let pid_file = self.pid_file(s);
        let text = match self.host.read_file(&pid_file).await {
            Ok(b) => String::from_utf8_lossy(&b).trim().to_owned(),
            Err(e) if e.kind() == host::HostErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(failed(
                    format!("reading {}", pid_file.display()),
                    self.host.as_ref(),
                )(e))
            }
        };
        let Ok(pid) = text.parse::<u32>() else {
            return Ok(None);
        };
        // A process that ended (its /proc entry gone or unreadable) does not run; a zombie
        // has an empty command line: it is not running any more.
        let Ok(cmdline) = self
            .host
            .read_file(Path::new(&format!("/proc/{pid}/cmdline")))
            .await
        else {
            return Ok(None);
        };
        let argv: Vec<String> = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        Ok((argv == s.argv).then_some(pid))
    }
}

#[async_trait]
impl Supervisor for Supervised {
    async fn is_active(&self, s: &Service) -> Result<bool> {
        Ok(self.running_pid(s).await?.is_some())
    }

    async fn start(&self, s: &Service) -> Result<()> {
        if self.is_active(s).await? {
            return Ok(());
        }
        self.host
            .mkdir_p(&self.run_dir, &Ownership::mode(0o755))
            .await
            .map_err(failed(
                format!("creating {}", self.run_dir.display()),
                self.host.as_ref(),
            ))?;
        let log = self.log_file(s);
        // The log is made ours first, so the service (another user) can append to it.
        if self.host.stat(&log).await.ok().flatten().is_none() {
            self.host
                .write_file(&log, b"", &Ownership::owned(0o640, s.user.clone()))
                .await
                .map_err(failed(
                    format!("creating {}", log.display()),
                    self.host.as_ref(),
                ))?;
        }
        let spec = self.spawn_spec(s);
        let out = self
            .host
            .run(&spec)
            .await
            .map_err(failed(format!("starting {}", s.unit), self.host.as_ref()))?;
        let pid = out.stdout_text().trim().to_owned();
        self.host
            .write_file(
                &self.pid_file(s),
                format!("{pid}\n").as_bytes(),
                &Ownership::mode(0o644),
            )
            .await
            .map_err(failed(
                format!("writing the pid file of {}", s.unit),
                self.host.as_ref(),
            ))?;
        // A process that dies at once (bad config, taken port) is a failed start.
        tokio::time::sleep(Duration::from_millis(500)).await;
        if !self.is_active(s).await? {
            let tail = self
                .host
                .read_file(&log)
                .await
                .map(|b| {
                    let t = String::from_utf8_lossy(&b).into_owned();
                    let lines: Vec<&str> = t.lines().collect();
                    lines[lines.len().saturating_sub(8)..].join("\n")
                })
                .unwrap_or_default();
            return Err(FailoverError::Refused(format!(
                "{} exited right after starting; the end of {}:\n{tail}",
                s.unit,
                log.display()
            )));
        }
        Ok(())
    }

    async fn stop(&self, s: &Service) -> Result<()> {
        let Some(pid) = self.running_pid(s).await? else {
            return Ok(());
        };
        let kill = |sig: &str| CommandSpec::new("kill").arg(sig).arg(pid.to_string());
        self.host
            .run_unchecked(&kill("-TERM"))
            .await
            .map_err(failed(format!("stopping {}", s.unit), self.host.as_ref()))?;
        for i in 0..150 {
            if self.running_pid(s).await?.is_none() {
                return Ok(());
            }
            if i == 100 {
                self.host
                    .run_unchecked(&kill("-KILL"))
                    .await
                    .map_err(failed(format!("killing {}", s.unit), self.host.as_ref()))?;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(FailoverError::Refused(format!(
            "{} (pid {pid}) did not stop within 15 s",
            s.unit
        )))
    }

    fn start_specs(&self, s: &Service) -> Vec<CommandSpec> {
        vec![self.spawn_spec(s)]
    }

    fn stop_specs(&self, _s: &Service) -> Vec<CommandSpec> {
        // `kill -TERM PID`, the pid read from the pid file at that moment, after checking that
        // it still runs the service's command: nothing to show before.
        Vec::new()
    }
}
