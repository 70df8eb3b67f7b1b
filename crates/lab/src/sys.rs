//! Host-side commands (ip, mount, mmdebstrap, nsenter) with errors that carry the command
//! line, the exit status and the end of stderr.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::error::{LabError, Result};

/// The end of a text, for error messages.
pub(crate) fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn shown(program: &str, args: &[&str]) -> String {
    let mut s = program.to_owned();
    for a in args {
        s.push(' ');
        s.push_str(a);
    }
    s
}

/// Runs a command with `stdin`; its output whatever the exit status.
pub(crate) fn output(program: &str, args: &[&str], stdin: Option<&[u8]>) -> Result<Output> {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    let mut child = cmd.spawn().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            LabError::Unsupported(format!(
                "{program} is not installed (bash scripts/install-deps installs what the lab needs)"
            ))
        } else {
            LabError::io(format!("cannot start {program} for"), Path::new(program), e)
        }
    })?;
    if let Some(bytes) = stdin {
        if let Some(mut w) = child.stdin.take() {
            // A command that exits without reading its input is not an error of ours.
            let _ = w.write_all(bytes);
        }
    }
    child
        .wait_with_output()
        .map_err(|e| LabError::io(format!("waiting for {program} of"), Path::new(program), e))
}

/// Turns a finished command into an error unless it exited 0.
pub(crate) fn check(command: String, out: Output) -> Result<Output> {
    if out.status.success() {
        return Ok(out);
    }
    Err(LabError::Command {
        command,
        status: out.status.to_string(),
        stderr: tail(
            &format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
            15,
        ),
    })
}

/// Runs a command to success.
pub(crate) fn run(program: &str, args: &[&str]) -> Result<Output> {
    check(shown(program, args), output(program, args, None)?)
}

/// Runs a command and ignores how it ends (cleanup of what may already be gone).
pub(crate) fn quiet(program: &str, args: &[&str]) {
    let _ = output(program, args, None);
}

/// Whether `pid` is a live process (a zombie counts as gone).
pub(crate) fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the first field after the command name in parentheses.
        Ok(s) => s
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Sends `sig` to `pid` (nothing when it is gone).
pub(crate) fn signal(pid: i32, sig: i32) {
    if pid > 1 {
        // SAFETY: kill(2) on a pid we read from one of our own cgroups or pid files.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// Whether we run as root (the lab needs mounts, namespaces and cgroups).
pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid(2) has no preconditions.
    unsafe { libc::geteuid() == 0 }
}
