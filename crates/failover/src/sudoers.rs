//! The sudoers drop-in a VPS needs when odoo-standby logs in there as a user that is not
//! root: rendered from the very command specs the product runs as root there, so the rules
//! and the commands cannot drift apart.

use host::CommandSpec;

use crate::env::Env;
use crate::error::{FailoverError, Result};

/// Escapes one word for a sudoers command line (`,` `:` `=` `\` and glob characters).
fn escape(word: &str) -> String {
    let mut s = String::with_capacity(word.len());
    for c in word.chars() {
        if matches!(
            c,
            ',' | ':' | '=' | '\\' | '*' | '?' | '[' | ']' | ' ' | '\t'
        ) {
            s.push('\\');
        }
        s.push(c);
    }
    s
}

fn rule(spec: &CommandSpec) -> Result<String> {
    if !spec.program().starts_with('/') {
        return Err(FailoverError::Refused(format!(
            "internal: {} runs as root without an absolute program path; sudoers needs one",
            spec
        )));
    }
    let mut words = vec![escape(spec.program())];
    words.extend(spec.arguments().iter().map(|a| escape(a)));
    Ok(words.join(" "))
}

/// The commands odoo-standby runs as root on the VPS of `env`.
pub fn vps_root_commands(env: &Env) -> Vec<CommandSpec> {
    let mut v = env.vps_cluster.root_commands();
    v.extend(env.there.root_commands(&env.vps_odoo_service()));
    v
}

/// The drop-in for `/etc/sudoers.d/odoo-standby` on the VPS of `env`, with comments that say
/// what each rule is for and how to install it.
pub fn vps_sudoers(env: &Env) -> Result<String> {
    let login = &env.ssh.user;
    let pg = &env.cfg.backup.pg_os_user;
    let mut out = format!(
        "# sudoers drop-in for the VPS of odoo-standby instance {name} ({host}).\n\
         # Install it there as root:\n\
         #   visudo -cf FILE && install -m 0440 -o root -g root FILE /etc/sudoers.d/odoo-standby\n\
         #\n",
        name = env.name(),
        host = env.ssh.host,
    );
    if login == "root" {
        out.push_str("# odoo-standby logs in to this VPS as root: no rule is needed.\n");
        return Ok(out);
    }
    out.push_str(&format!(
        "# odoo-standby logs in as {login} (the Odoo user, who owns data_dir) and runs:\n\
         # - as {pg}, the cluster's owner: psql (settings, roles, slots, status, promotion),\n\
         #   pg_rewind, and reads and writes of the cluster's own files (pg_hba.conf,\n\
         #   postgresql.auto.conf, standby.signal, ~{pg}/.pgpass). {pg} is the database\n\
         #   superuser already, so this is what replication needs and no more;\n\
         # - as root, only the commands below: the cluster started and stopped through\n\
         #   systemd, and the Odoo unit stopped and started around a failback.\n\
         {login} ALL=({pg}) NOPASSWD: ALL\n"
    ));
    let rules = vps_root_commands(env)
        .iter()
        .map(rule)
        .collect::<Result<Vec<_>>>()?;
    if !rules.is_empty() {
        out.push_str(&format!(
            "{login} ALL=(root) NOPASSWD: {}\n",
            rules.join(", \\\n    ")
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_escaped_for_sudoers() {
        assert_eq!(escape("--now"), "--now");
        assert_eq!(escape("a,b:c=d"), "a\\,b\\:c\\=d");
        assert_eq!(escape("*"), "\\*");
    }
}
