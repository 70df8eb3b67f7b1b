//! Helpers: a host of each kind, backed by a sandbox that lives as long as the test.

use std::path::PathBuf;
use std::sync::Arc;

use host::{Host, LocalHost, SshAuth, SshConfig, SshHost};
use sandbox::Sandbox;

/// A host under test and what keeps its servers alive.
pub struct Fixture {
    pub host: Arc<dyn Host>,
    /// A scratch directory on the host (the sandbox runs on this machine either way).
    pub scratch: PathBuf,
    pub sandbox: Sandbox,
}

pub fn local() -> Fixture {
    let sandbox = Sandbox::new().expect("sandbox");
    let scratch = sandbox.dir("scratch").expect("scratch dir");
    Fixture {
        host: Arc::new(LocalHost::new()),
        scratch,
        sandbox,
    }
}

pub fn ssh_config(sandbox: &mut Sandbox) -> SshConfig {
    let sshd = sandbox.start_sshd().expect("sshd");
    SshConfig::new(
        sshd.user.clone(),
        sshd.host.clone(),
        sshd.port,
        SshAuth::KeyFile(sshd.client_key.clone()),
        sshd.known_hosts.clone(),
    )
}

pub fn ssh() -> Fixture {
    let mut sandbox = Sandbox::new().expect("sandbox");
    let cfg = ssh_config(&mut sandbox);
    let scratch = sandbox.dir("scratch").expect("scratch dir");
    Fixture {
        host: Arc::new(SshHost::new(cfg)),
        scratch,
        sandbox,
    }
}

/// The user the servers run as (`postgres` when the tests run as root), to test `run_as`.
pub fn other_user(f: &Fixture) -> String {
    f.sandbox.run_user().name.clone()
}
