//! Test hooks, compiled in only with the `test-hooks` feature (the end-to-end tests enable
//! it; a release build has none of this):
//! - `ODOO_STANDBY_KILL_AFTER=<step id>`: the process kills itself (SIGKILL) right after that
//!   step acted and before the journal records it, the worst moment to die;
//! - `ODOO_STANDBY_HOLD_AFTER=<step>:<file>`: the run waits after that step until the file
//!   exists (it writes `<file>.held` when it starts waiting);
//! - `ODOO_STANDBY_RECORD=<file>`: every command run on either machine is appended to the
//!   file as a JSON line with the plan step that ran it, for comparison with `--dry-run`.

use std::sync::{Arc, Mutex};

use crate::env::Hosts;

/// The current step's id, shared with the recording hosts.
pub type Trace = Arc<Mutex<String>>;

/// Kills the process when `ODOO_STANDBY_KILL_AFTER` names `step`.
#[cfg(feature = "test-hooks")]
pub fn kill_point(step: &str) {
    if std::env::var("ODOO_STANDBY_KILL_AFTER").ok().as_deref() == Some(step) {
        // SAFETY: raising a signal on our own process.
        unsafe {
            libc::raise(libc::SIGKILL);
        }
    }
}

/// Without the `test-hooks` feature: nothing.
#[cfg(not(feature = "test-hooks"))]
#[inline]
pub fn kill_point(_step: &str) {}

/// `ODOO_STANDBY_HOLD_AFTER=<step>:<file>`: after that step is recorded done, the run writes
/// `<file>.held` and waits (up to 10 minutes) until `<file>` exists, so that a test can change
/// the world between two steps (pause the standby's replay right before a clean stop).
#[cfg(feature = "test-hooks")]
pub async fn hold_point(step: &str) {
    let Ok(v) = std::env::var("ODOO_STANDBY_HOLD_AFTER") else {
        return;
    };
    let Some((at, file)) = v.split_once(':') else {
        return;
    };
    if at != step {
        return;
    }
    let _ = std::fs::write(format!("{file}.held"), step);
    for _ in 0..6000 {
        if std::path::Path::new(file).exists() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Without the `test-hooks` feature: nothing.
#[cfg(not(feature = "test-hooks"))]
#[inline]
pub async fn hold_point(_step: &str) {}

/// `hosts`, recording into `ODOO_STANDBY_RECORD` when it is set.
#[cfg(feature = "test-hooks")]
pub fn recording(hosts: Hosts) -> (Hosts, Option<Trace>) {
    use std::io::Write;
    let Some(file) = std::env::var_os("ODOO_STANDBY_RECORD") else {
        return (hosts, None);
    };
    let trace: Trace = Arc::default();
    let sink: host::Sink = Arc::new(move |step: &str, spec: &host::CommandSpec| {
        let line = serde_json::json!({
            "step": step,
            "kind": format!("{:?}", spec.kind()),
            "argv": spec.display_argv(),
            "user": spec.user(),
        });
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&file)
        {
            let _ = writeln!(f, "{line}");
        }
    });
    let wrap = |h: Arc<dyn host::Host>| -> Arc<dyn host::Host> {
        Arc::new(host::Recorder::new(h, trace.clone(), sink.clone()))
    };
    let hosts = Hosts {
        local: wrap(hosts.local),
        vps: wrap(hosts.vps),
        vps_files: wrap(hosts.vps_files),
    };
    (hosts, Some(trace))
}

/// Without the `test-hooks` feature: the hosts as they are.
#[cfg(not(feature = "test-hooks"))]
pub fn recording(hosts: Hosts) -> (Hosts, Option<Trace>) {
    (hosts, None)
}

/// Sets the current step (nothing when nobody records).
pub fn set_step(trace: &Option<Trace>, step: &str) {
    if let Some(t) = trace {
        if let Ok(mut s) = t.lock() {
            *s = step.to_owned();
        }
    }
}
