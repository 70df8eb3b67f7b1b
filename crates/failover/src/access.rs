//! `odoo-standby ssh-setup NAME` (runbook 3.1): the SSH access the backup's `os_user` needs
//! to an instance's VPS, in the operator's one command. In order, each step checked before
//! it acts, so running it again changes nothing:
//! 1. an ed25519 key for `os_user` at `backup.ssh_key` (made by `ssh-keygen` as that user
//!    when missing; an existing key is kept);
//! 2. the VPS's host key, scanned and added to `backup.known_hosts` only after the operator
//!    typed (or passed) the fingerprint they read on the VPS: never trusted on first sight;
//! 3. the public key in the VPS login user's `authorized_keys`, once: when the key cannot log
//!    in yet, through the operator's own login (their ssh-agent, as the VPS's login user);
//!    without one, the line to add by hand is printed and nothing else is changed there;
//! 4. a login with the key, to prove it.

use std::time::Duration;

use host::{CommandSpec, Host, ScannedKey, SshAuth, SshConfig, SshHost};

use crate::env::Env;
use crate::error::{FailoverError, Result};

/// What [`ssh_setup`] found and did.
#[derive(Clone, Debug)]
pub struct SshSetupReport {
    /// The public key line of `os_user`'s key.
    pub public_key: String,
    /// The host key was added to known_hosts (else it was there).
    pub host_key_added: bool,
    /// The public key was added to the VPS user's authorized_keys (else it was there).
    pub key_installed: bool,
}

fn failed(what: &str) -> impl FnOnce(filesync::SyncError) -> FailoverError + '_ {
    move |e| FailoverError::failed(what.to_owned(), e)
}

async fn key_logs_in(ssh: &SshConfig) -> bool {
    let vps = SshHost::new(ssh.clone());
    vps.run(&CommandSpec::new("true").asks()).await.is_ok()
}

/// Sets up `env`'s SSH access (see the module). `confirm` is shown the scanned host key and
/// returns the fingerprint the operator vouches for; anything but the key's own is refused.
pub async fn ssh_setup(
    env: &Env,
    confirm: impl FnOnce(&ScannedKey) -> Result<String>,
) -> Result<SshSetupReport> {
    let u = env.cfg.backup.os_user.clone();
    let local = env.local.as_ref();
    let public_key = filesync::sshsetup::ensure_key_at(local, &u, &env.ssh.identity)
        .await
        .map_err(failed("the backup user's SSH key"))?;
    let scanned = host::scan_host_key(&env.ssh.host, env.ssh.port, Duration::from_secs(10))
        .await
        .map_err(|e| FailoverError::failed("reading the VPS's host key", e))?;
    let confirmed = confirm(&scanned)?;
    let host_key_added = filesync::sshsetup::trust_host_key(
        local,
        &env.ssh.known_hosts,
        &u,
        &env.ssh.host,
        env.ssh.port,
        &scanned,
        &confirmed,
    )
    .await
    .map_err(failed("the VPS's host key"))?;
    let mut with_key = SshConfig::new(
        env.ssh.user.clone(),
        env.ssh.host.clone(),
        env.ssh.port,
        SshAuth::KeyFile(env.ssh.identity.clone()),
        env.ssh.known_hosts.clone(),
    );
    with_key.connect_timeout = Duration::from_secs(10);
    let mut key_installed = false;
    if !key_logs_in(&with_key).await {
        let mut admin = with_key.clone();
        admin.auth = SshAuth::Agent;
        let by_hand = || {
            FailoverError::Refused(format!(
                "the key of {u} cannot log in to {}@{} yet, and no ssh-agent of yours can either: add this line to {}'s ~/.ssh/authorized_keys on the VPS, then run ssh-setup again:\n{public_key}",
                env.ssh.user, env.ssh.host, env.ssh.user
            ))
        };
        if std::env::var_os("SSH_AUTH_SOCK").is_none() || !key_logs_in(&admin).await {
            return Err(by_hand());
        }
        key_installed =
            filesync::sshsetup::install_public_key(&SshHost::new(admin), &public_key, None)
                .await
                .map_err(failed("the VPS user's authorized_keys"))?;
        if !key_logs_in(&with_key).await {
            return Err(FailoverError::Refused(format!(
                "the key of {u} is in {}'s authorized_keys on the VPS but still cannot log in: check sshd's AuthorizedKeysFile and the modes of ~/.ssh (0700) and authorized_keys (0600) there",
                env.ssh.user
            )));
        }
    }
    Ok(SshSetupReport {
        public_key,
        host_key_added,
        key_installed,
    })
}
