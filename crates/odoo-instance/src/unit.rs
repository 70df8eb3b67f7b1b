//! The systemd unit of a standby Odoo (runbook 3.4, corrected): one `User=`,
//! `StandardOutput=journal`, bound to the instance's own cluster unit, restarted always,
//! its own log tag. Checked with `systemd-analyze verify`; installed and removed through a host.

use std::path::Path;

use host::{CommandSpec, Host};

use crate::error::{InstanceError, Result};

/// What goes in the unit.
#[derive(Clone, Debug)]
pub struct UnitSpec {
    /// The instance name (log tag `odoo_<name>`).
    pub instance: String,
    /// User and group Odoo runs as.
    pub os_user: String,
    /// The command: interpreter and odoo-bin with `-c <conf>`.
    pub exec_start: Vec<String>,
    /// The cluster unit it needs, `postgresql@<version>-<name>.service`.
    pub cluster_unit: String,
    /// Working directory (the instance folder).
    pub working_dir: std::path::PathBuf,
}

/// The cluster unit of a Debian cluster.
pub fn cluster_unit(version: u32, name: &str) -> String {
    format!("postgresql@{version}-{name}.service")
}

/// The unit file's text.
pub fn render(spec: &UnitSpec) -> String {
    let exec = host::quote::systemd_line(&spec.exec_start);
    format!(
        "# Written by odoo-standby for instance {name}; disabled until a failover enables it.\n\
         [Unit]\n\
         Description=Odoo standby of {name} (odoo-standby)\n\
         Requires={cluster}\n\
         After=network.target {cluster}\n\
         \n\
         [Service]\n\
         Type=simple\n\
         User={user}\n\
         Group={user}\n\
         WorkingDirectory={wd}\n\
         ExecStart={exec}\n\
         StandardOutput=journal\n\
         StandardError=journal\n\
         SyslogIdentifier=odoo_{name}\n\
         Restart=always\n\
         RestartSec=5\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        name = spec.instance,
        cluster = spec.cluster_unit,
        user = spec.os_user,
        wd = host::quote::systemd_word(&spec.working_dir.display().to_string()),
        exec = exec,
    )
}

/// Runs `systemd-analyze verify` on a unit file; any warning counts (an unknown key is only a
/// warning to systemd, and is how the runbook's `StandarOuput` typo went unnoticed).
pub async fn verify(host: &dyn Host, unit_file: &Path) -> Result<()> {
    let out = host
        .run_unchecked(
            &CommandSpec::new("systemd-analyze")
                .arg("verify")
                .arg(unit_file.display().to_string())
                .asks(),
        )
        .await
        .map_err(InstanceError::host("running systemd-analyze verify"))?;
    let said = format!("{}{}", out.stdout_text(), out.stderr_text());
    let problems: Vec<&str> = said
        .lines()
        .filter(|l| !l.trim().is_empty())
        // Units we depend on may be absent where we verify (a build machine); that is not
        // a problem of this file.
        .filter(|l| !l.contains("postgresql@") || !l.contains("not found"))
        .collect();
    if out.status.success() && problems.is_empty() {
        Ok(())
    } else {
        Err(InstanceError::UnitInvalid {
            unit: unit_file.display().to_string(),
            problems: problems.join("; "),
        })
    }
}

/// `systemctl ARGS` as root.
fn systemctl(args: &[&str]) -> CommandSpec {
    CommandSpec::new("/usr/bin/systemctl")
        .args(args.iter().copied())
        .run_as("root")
}

fn file_name(unit_file: &Path) -> Result<String> {
    unit_file
        .file_name()
        .and_then(|n| n.to_str())
        .map(str::to_owned)
        .ok_or_else(|| InstanceError::invalid("unit file", format!("{}", unit_file.display())))
}

/// What [`install`] runs: link the unit file into systemd, reload, enable (and start).
pub fn install_specs(unit_file: &Path, start: bool) -> Result<Vec<CommandSpec>> {
    let name = file_name(unit_file)?;
    let path = unit_file.display().to_string();
    Ok(vec![
        systemctl(&["link", &path]),
        systemctl(&["daemon-reload"]),
        if start {
            systemctl(&["enable", "--now", &name])
        } else {
            systemctl(&["enable", &name])
        },
    ])
}

/// Links the unit into systemd, reloads, enables it, and starts it when `start`. Each step
/// is safe to repeat.
pub async fn install(host: &dyn Host, unit_file: &Path, start: bool) -> Result<()> {
    let name = file_name(unit_file)?;
    for s in install_specs(unit_file, start)? {
        host.run(&s)
            .await
            .map_err(InstanceError::host(format!("installing {name}")))?;
    }
    Ok(())
}

/// `systemctl daemon-reload`, after a unit file or a drop-in changed.
pub fn reload_spec() -> CommandSpec {
    systemctl(&["daemon-reload"])
}

/// What starting a unit systemd already knows runs (enable, so it comes back after a
/// reboot, and start).
pub fn enable_spec(unit_name: &str) -> CommandSpec {
    systemctl(&["enable", "--now", unit_name])
}

/// What [`remove`] runs on a unit systemd knows: disable and stop it; for a unit file of ours
/// (`linked`), reload too, since disabling removed its link.
pub fn remove_specs(unit_name: &str, linked: bool) -> Vec<CommandSpec> {
    let mut v = vec![systemctl(&["disable", "--now", unit_name])];
    if linked {
        v.push(systemctl(&["daemon-reload"]));
    }
    v
}

/// Whether systemd knows the unit (`systemctl cat`).
pub async fn is_known(host: &dyn Host, unit_name: &str) -> Result<bool> {
    let out = host
        .run_unchecked(
            &CommandSpec::new("systemctl")
                .args(["cat", unit_name])
                .asks(),
        )
        .await
        .map_err(InstanceError::host(format!("looking up {unit_name}")))?;
    Ok(out.status.success())
}

/// Whether the unit runs (`systemctl is-active`).
pub async fn is_active(host: &dyn Host, unit_name: &str) -> Result<bool> {
    let out = host
        .run_unchecked(
            &CommandSpec::new("systemctl")
                .args(["is-active", "--quiet", unit_name])
                .asks(),
        )
        .await
        .map_err(InstanceError::host(format!(
            "asking systemd about {unit_name}"
        )))?;
    Ok(out.status.success())
}

/// Whether each unit runs, asked in one `systemctl is-active` (it prints one state per
/// unit, in order): `status` of a fleet asks two units per instance.
pub async fn are_active(host: &dyn Host, units: &[&str]) -> Result<Vec<bool>> {
    if units.is_empty() {
        return Ok(Vec::new());
    }
    let out = host
        .run_unchecked(
            &CommandSpec::new("systemctl")
                .arg("is-active")
                .args(units.iter().copied())
                .asks(),
        )
        .await
        .map_err(InstanceError::host(format!(
            "asking systemd about {}",
            units.join(", ")
        )))?;
    active_states(&out.stdout_text(), units.len()).ok_or_else(|| InstanceError::Invalid {
        what: "systemctl is-active's answer".into(),
        reason: format!(
            "{} line(s) for {} unit(s): {}",
            out.stdout_text().lines().count(),
            units.len(),
            out.stderr_text().trim()
        ),
    })
}

/// One state per line, `active` the only running one (`activating`, `reloading` and the
/// rest are not yet or no longer serving, as `is-active --quiet` says).
fn active_states(text: &str, n: usize) -> Option<Vec<bool>> {
    let v: Vec<bool> = text.lines().map(|l| l.trim() == "active").collect();
    (v.len() == n).then_some(v)
}

/// Stops and disables the unit (and, `linked`, removes its link and reloads); nothing to do
/// when systemd does not know it. A unit file of ours stays in the instance folder.
pub async fn remove(host: &dyn Host, unit_name: &str, linked: bool) -> Result<()> {
    if !is_known(host, unit_name).await? {
        return Ok(());
    }
    for s in remove_specs(unit_name, linked) {
        host.run(&s)
            .await
            .map_err(InstanceError::host(format!("removing {unit_name}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_active_lines_are_read_in_order() {
        assert_eq!(
            active_states("active\ninactive\nactivating\n", 3),
            Some(vec![true, false, false])
        );
        assert_eq!(active_states("active\n", 2), None);
    }
}
