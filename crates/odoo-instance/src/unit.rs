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

/// Quotes one ExecStart word for systemd (double quotes, `\` escapes, `%` doubled).
fn quote_word(w: &str) -> String {
    let w = w.replace('%', "%%");
    if !w.is_empty()
        && !w
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '\\' | ';'))
    {
        return w;
    }
    format!("\"{}\"", w.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The unit file's text.
pub fn render(spec: &UnitSpec) -> String {
    let exec: Vec<String> = spec.exec_start.iter().map(|w| quote_word(w)).collect();
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
        wd = quote_word(&spec.working_dir.display().to_string()),
        exec = exec.join(" "),
    )
}

/// Runs `systemd-analyze verify` on a unit file; any warning counts (an unknown key is only a
/// warning to systemd, and is how the runbook's `StandarOuput` typo went unnoticed).
pub async fn verify(host: &dyn Host, unit_file: &Path) -> Result<()> {
    let out = host
        .run_unchecked(
            &CommandSpec::new("systemd-analyze")
                .arg("verify")
                .arg(unit_file.display().to_string()),
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

/// Links the unit into systemd, reloads, enables it, and starts it when `start`. Each step
/// is safe to repeat.
pub async fn install(host: &dyn Host, unit_file: &Path, start: bool) -> Result<()> {
    let name = unit_file
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| InstanceError::invalid("unit file", format!("{}", unit_file.display())))?
        .to_owned();
    let path = unit_file.display().to_string();
    let steps = [
        systemctl(&["link", &path]),
        systemctl(&["daemon-reload"]),
        if start {
            systemctl(&["enable", "--now", &name])
        } else {
            systemctl(&["enable", &name])
        },
    ];
    for s in steps {
        host.run(&s)
            .await
            .map_err(InstanceError::host(format!("installing {name}")))?;
    }
    Ok(())
}

/// Stops and disables the unit and removes its link; nothing to do when systemd does not
/// know it. The unit file itself stays in the instance folder.
pub async fn remove(host: &dyn Host, unit_name: &str) -> Result<()> {
    let known = host
        .run_unchecked(&CommandSpec::new("systemctl").args(["cat", unit_name]))
        .await
        .map_err(InstanceError::host(format!("looking up {unit_name}")))?;
    if !known.status.success() {
        return Ok(());
    }
    for s in [
        systemctl(&["disable", "--now", unit_name]),
        systemctl(&["daemon-reload"]),
    ] {
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
    fn words_are_quoted_for_systemd() {
        assert_eq!(quote_word("/opt/odoo-bin"), "/opt/odoo-bin");
        assert_eq!(quote_word("/opt/my odoo/x"), "\"/opt/my odoo/x\"");
        assert_eq!(quote_word("100%"), "100%%");
        assert_eq!(quote_word("a\"b"), "\"a\\\"b\"");
    }
}
