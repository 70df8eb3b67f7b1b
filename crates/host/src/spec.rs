//! Commands as data: what to run, where, as whom, with which input.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// What to run: an argv (never a shell string), its environment, working directory,
/// standard input and the OS user to run it as.
///
/// Secrets never belong in `args` or `env` (other users can read both through `ps` and
/// `/proc`); pass them on stdin with [`CommandSpec::secret_stdin`] or in a 0600 file. Any
/// string registered with [`CommandSpec::redact`] is replaced by `***` wherever the spec or
/// its outcome is shown: `Debug`, error messages, the stderr tail.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct CommandSpec {
    pub(crate) program: String,
    pub(crate) args: Vec<String>,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) cwd: Option<PathBuf>,
    pub(crate) stdin: Option<Vec<u8>>,
    pub(crate) stdin_is_secret: bool,
    pub(crate) run_as: Option<String>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) secrets: Vec<String>,
    pub(crate) kind: Kind,
}

/// What a command does to the machine it runs on, as plans show it: `--dry-run` lists the
/// commands that act, by their exact argv, and describes the rest (questions, SQL, file
/// edits) in words.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Kind {
    /// It changes something (pg_basebackup, rsync, systemctl start...).
    #[default]
    Acts,
    /// It only asks (stat, pg_lsclusters, `systemctl is-active`, pg_controldata...).
    Asks,
    /// One of the host's own file operations (read, write, mkdir, rename...).
    File,
    /// `psql` carrying a statement (shown as the SQL itself).
    Sql,
}

impl CommandSpec {
    /// A command that runs `program` (looked up in `PATH` when it has no `/`).
    pub fn new(program: impl Into<String>) -> Self {
        Self {
            program: program.into(),
            ..Self::default()
        }
    }

    /// Appends one argument.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Appends several arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets one environment variable for the command (never a secret: see the type docs).
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Runs the command in `dir` instead of the user's default directory.
    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// Feeds `bytes` to the command's standard input, then closes it.
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(bytes.into());
        self.stdin_is_secret = false;
        self
    }

    /// Like [`CommandSpec::stdin`], for input that holds a secret: it is never shown.
    pub fn secret_stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(bytes.into());
        self.stdin_is_secret = true;
        self
    }

    /// Runs the command as this OS user (`runuser` when we are root, `sudo -n` otherwise).
    pub fn run_as(mut self, user: impl Into<String>) -> Self {
        self.run_as = Some(user.into());
        self
    }

    /// Kills the command (its whole process group, locally) when it runs longer than this.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Registers a string that must never be shown: it is replaced by `***` in `Debug`,
    /// in error messages and in the captured stderr tail of errors.
    pub fn redact(mut self, secret: impl Into<String>) -> Self {
        let secret = secret.into();
        if !secret.is_empty() {
            self.secrets.push(secret);
        }
        self
    }

    /// Marks the command as a question: it changes nothing (plans do not list it as an
    /// action).
    pub fn asks(mut self) -> Self {
        self.kind = Kind::Asks;
        self
    }

    /// Marks the command as carrying SQL (`psql`).
    pub fn carries_sql(mut self) -> Self {
        self.kind = Kind::Sql;
        self
    }

    pub(crate) fn file_op(mut self) -> Self {
        self.kind = Kind::File;
        self
    }

    /// What the command does to its machine (see [`Kind`]).
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The program to run.
    pub fn program(&self) -> &str {
        &self.program
    }

    /// The arguments, unredacted (for the hosts that run them).
    pub fn arguments(&self) -> &[String] {
        &self.args
    }

    /// The OS user the command runs as, when not the connecting one.
    pub fn user(&self) -> Option<&str> {
        self.run_as.as_deref()
    }

    /// The command's timeout, if any.
    pub fn time_limit(&self) -> Option<Duration> {
        self.timeout
    }

    /// Whether stdin bytes were given with the spec.
    pub fn has_stdin(&self) -> bool {
        self.stdin.is_some()
    }

    /// The argv as it may be shown: program then arguments, secrets replaced by `***`.
    pub fn display_argv(&self) -> Vec<String> {
        std::iter::once(&self.program)
            .chain(self.args.iter())
            .map(|a| self.redact_text(a))
            .collect()
    }

    /// Replaces every registered secret in `text` by `***`.
    pub fn redact_text(&self, text: &str) -> String {
        // Longest first, so that a secret containing another is hidden whole.
        let mut secrets: Vec<&String> = self.secrets.iter().collect();
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets
            .into_iter()
            .fold(text.to_owned(), |acc, s| acc.replace(s.as_str(), "***"))
    }

    /// The env list, values redacted.
    fn display_env(&self) -> Vec<String> {
        self.env
            .iter()
            .map(|(k, v)| format!("{k}={}", self.redact_text(v)))
            .collect()
    }

    /// Checks what no host can run: an empty program, or NUL bytes anywhere.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.program.is_empty() {
            return Err("the program name is empty".into());
        }
        let has_nul = std::iter::once(&self.program)
            .chain(self.args.iter())
            .chain(self.env.iter().flat_map(|(k, v)| [k, v]))
            .any(|s| s.contains('\0'));
        if has_nul {
            return Err("a NUL byte in the program, an argument or the environment".into());
        }
        if let Some((k, _)) = self
            .env
            .iter()
            .find(|(k, _)| k.is_empty() || k.contains('='))
        {
            return Err(format!("invalid environment variable name {k:?}"));
        }
        if self.program.contains('=') {
            return Err("the program name contains '='".into());
        }
        if let Some(user) = &self.run_as {
            if !valid_user_name(user) {
                return Err(format!("invalid OS user name {user:?}"));
            }
        }
        Ok(())
    }
}

/// Whether `name` is a plausible POSIX user name (what `useradd` accepts on Debian).
pub(crate) fn valid_user_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && name.len() <= 32
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'))
}

impl fmt::Debug for CommandSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let stdin = match (&self.stdin, self.stdin_is_secret) {
            (None, _) => "none".to_owned(),
            (Some(b), true) => format!("<{} bytes, secret>", b.len()),
            (Some(b), false) => format!("<{} bytes>", b.len()),
        };
        f.debug_struct("CommandSpec")
            .field("argv", &self.display_argv())
            .field("env", &self.display_env())
            .field("cwd", &self.cwd)
            .field("stdin", &stdin)
            .field("run_as", &self.run_as)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl fmt::Display for CommandSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(user) = &self.run_as {
            write!(f, "[as {user}] ")?;
        }
        f.write_str(&crate::quote::join(&self.display_argv()))
    }
}

/// How a command ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExitStatus {
    /// The exit code, when the command exited.
    pub code: Option<i32>,
    /// The signal that ended it, when one did (a number locally, a name over SSH).
    pub signal: Option<String>,
}

impl ExitStatus {
    /// Exit code zero.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.code, &self.signal) {
            (Some(c), _) => write!(f, "exit code {c}"),
            (None, Some(s)) => write!(f, "signal {s}"),
            (None, None) => f.write_str("unknown status"),
        }
    }
}

/// What a finished command gave back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Output {
    /// How it ended.
    pub status: ExitStatus,
    /// Everything it wrote to stdout (empty when stdout was streamed elsewhere).
    pub stdout: Vec<u8>,
    /// Everything it wrote to stderr.
    pub stderr: Vec<u8>,
}

impl Output {
    /// Stdout as text, lossily decoded.
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Stderr as text, lossily decoded.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// The last lines of a command's stderr, at most `STDERR_TAIL` bytes, secrets redacted.
pub(crate) fn stderr_tail(spec: &CommandSpec, stderr: &[u8]) -> String {
    const STDERR_TAIL: usize = 2000;
    let text = String::from_utf8_lossy(stderr);
    let text = spec.redact_text(text.trim_end());
    if text.len() <= STDERR_TAIL {
        return text;
    }
    let mut start = text.len() - STDERR_TAIL;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &text[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_hide_secrets() {
        let spec = CommandSpec::new("psql")
            .arg("password=hunter2")
            .env("X", "hunter2 too")
            .secret_stdin("ALTER ROLE a PASSWORD 'hunter2'")
            .redact("hunter2");
        let debug = format!("{spec:?}");
        let display = spec.to_string();
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(!display.contains("hunter2"), "{display}");
        assert!(debug.contains("password=***"));
        assert!(debug.contains("secret>"));
    }

    #[test]
    fn longer_secrets_are_hidden_whole() {
        let spec = CommandSpec::new("x").redact("ab").redact("abcd");
        assert_eq!(spec.redact_text("abcd ab"), "*** ***");
    }

    #[test]
    fn validation_rejects_what_cannot_run() {
        assert!(CommandSpec::new("").validate().is_err());
        assert!(CommandSpec::new("a").arg("b\0").validate().is_err());
        assert!(CommandSpec::new("a").env("A=B", "c").validate().is_err());
        assert!(CommandSpec::new("a").run_as("root; rm").validate().is_err());
        assert!(CommandSpec::new("a").run_as("postgres").validate().is_ok());
    }

    #[test]
    fn stderr_tail_keeps_the_end() {
        let spec = CommandSpec::new("x");
        let long = "é".repeat(3000);
        let tail = stderr_tail(&spec, long.as_bytes());
        assert!(tail.starts_with('…'));
        assert!(tail.len() <= 2000 + '…'.len_utf8());
    }
}
