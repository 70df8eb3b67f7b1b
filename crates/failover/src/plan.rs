//! Plans are data: an ordered list of steps ([`crate::steps::Step`]), each shown with what it
//! runs (the commands that act, by their exact argv; SQL, files and questions in words), how
//! it knows it is done, and what to do when it fails. `--dry-run` prints them; the runner
//! (`crate::runner`) runs the same steps with a journal.

use serde::Serialize;

use crate::env::Env;
use crate::steps::{self, Run, Step};

/// The operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// Set up replication of an instance (runbook §1–3).
    Protect,
    /// Move production to the backup (runbook §4).
    Failover,
    /// Give it back to the VPS and protect it again (runbook §5).
    Failback,
    /// Move production to the backup for planned work on the VPS, without loss; the VPS
    /// follows the backup after it.
    Switchover,
}

impl Operation {
    /// Its name on the command line and in the journal.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Protect => "protect",
            Self::Failover => "failover",
            Self::Failback => "failback",
            Self::Switchover => "switchover",
        }
    }

    /// Parses [`Operation::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Protect,
            Self::Failover,
            Self::Failback,
            Self::Switchover,
        ]
        .into_iter()
        .find(|o| o.as_str() == s)
    }

    /// The steps, in order.
    pub fn steps(self) -> Vec<Box<dyn Step>> {
        match self {
            Self::Protect => steps::protect(),
            Self::Failover => steps::failover(),
            Self::Failback => steps::failback(),
            Self::Switchover => steps::switchover(),
        }
    }
}

/// One step, as shown.
#[derive(Clone, Debug, Serialize)]
pub struct PlannedStep {
    /// Stable id (journal, kill points, `--json`).
    pub id: &'static str,
    /// What it does.
    pub description: String,
    /// Where it runs.
    pub host: String,
    /// What it runs, one line each (secrets as `***`).
    pub runs: Vec<String>,
    /// The argv of every command it runs that acts: exactly what it executes.
    pub commands: Vec<Vec<String>>,
    /// What it runs, structured.
    pub does: Vec<Run>,
    /// How it knows it is already done.
    pub check: String,
    /// What to do when it fails.
    pub hint: String,
}

impl PlannedStep {
    /// How `step` shows for the instance of `env`.
    pub fn of(step: &dyn Step, env: &Env) -> Self {
        let does = step.runs(env);
        Self {
            id: step.id(),
            description: step.title().to_owned(),
            host: if step.on_vps() {
                env.vps_label()
            } else {
                env.here_label()
            },
            runs: does.iter().map(Run::shown).collect(),
            commands: does
                .iter()
                .filter_map(|r| match r {
                    Run::Command { argv, .. } => Some(argv.clone()),
                    _ => None,
                })
                .collect(),
            does,
            check: step.check().to_owned(),
            hint: step.hint().to_owned(),
        }
    }
}

/// A plan for one instance.
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    /// The operation.
    pub operation: Operation,
    /// The instance.
    pub instance: String,
    /// The steps in order.
    pub steps: Vec<PlannedStep>,
}

impl Plan {
    /// The plan of `op` for the instance of `env` (touches nothing).
    pub fn new(op: Operation, env: &Env) -> Self {
        Self {
            operation: op,
            instance: env.name().to_owned(),
            steps: op
                .steps()
                .iter()
                .map(|s| PlannedStep::of(s.as_ref(), env))
                .collect(),
        }
    }

    /// The plan as text, for `--dry-run`.
    pub fn render(&self) -> String {
        let mut out = format!(
            "{} {}: {} steps (dry run: nothing is touched)\n",
            self.operation.as_str(),
            self.instance,
            self.steps.len()
        );
        for (i, s) in self.steps.iter().enumerate() {
            out.push_str(&format!(
                "\n{:>2}. [{}] {} (on {})\n",
                i + 1,
                s.id,
                s.description,
                s.host
            ));
            for r in &s.runs {
                out.push_str(&format!("      $ {r}\n"));
            }
            out.push_str(&format!("      done when: {}\n", s.check));
            out.push_str(&format!("      if it fails: {}\n", s.hint));
        }
        out
    }
}

/// What the operator asked for, besides the operation.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Failover: go on while the VPS's PostgreSQL accepts writes, stopping it over SSH.
    pub force: bool,
    /// Failover: do not ask for confirmation.
    pub yes: bool,
    /// Protect: restart the VPS's PostgreSQL when a setting needs it.
    pub restart_vps: bool,
    /// Failover: go on although the VPS cannot be reached, so nothing could fence it (the
    /// operator knows it is down or cut off). `yes` does not imply it.
    pub vps_unreachable: bool,
    /// Failback: go on although the VPS wrote after the split (its writes are kept where the
    /// report says; pg_rewind discards them from its live database). `yes` does not imply it.
    pub discard_vps_writes: bool,
    /// Protect: clone the standby again when its slot on the VPS is lost (the VPS removed
    /// WAL it still needed); its data directory is moved aside.
    pub reclone: bool,
}

/// What steps and the runner report to: a [`Reporter`] that borrows nothing (a terminal, a
/// log, a test's collector), so that a mocked step can be handed it.
pub type Out = dyn Reporter + 'static;

/// Where progress goes (a terminal, a log, a test).
pub trait Reporter: Send + Sync {
    /// One line.
    fn line(&self, text: &str);
    /// Asks a yes/no question (`None` when nobody can answer).
    fn confirm(&self, question: &str) -> Option<bool>;
    /// How far a long copy is (`what`: "base backup", "data_dir"): `done` bytes, `percent`
    /// of the whole. The default says nothing; [`Term`] draws a bar on a terminal and
    /// prints a line every 10 % otherwise.
    fn progress(&self, what: &str, done: u64, percent: u8) {
        let _ = (what, done, percent);
    }
}

/// Prints each line as it happens on stdout; asks on the terminal (never when stdin is not
/// one: then `--yes` is needed); shows long copies as a bar (indicatif) when stdout is a
/// terminal, as a line every 10 % when it is not (a log, a pipe).
#[derive(Default)]
pub struct Term {
    /// The copy in progress: its name, its bar (on a terminal), the last tenth printed.
    bar: std::sync::Mutex<Option<(String, Option<indicatif::ProgressBar>, u8)>>,
}

impl Term {
    /// A reporter on this process's terminal (or its stdout when that is no terminal).
    pub fn new() -> Self {
        Self::default()
    }
}

impl Reporter for Term {
    fn line(&self, text: &str) {
        use std::io::Write;
        let print = || {
            let mut out = std::io::stdout().lock();
            // A closed pipe (`| head`) is not an error of ours.
            let _ = writeln!(out, "{text}");
            let _ = out.flush();
        };
        let bar = self
            .bar
            .lock()
            .ok()
            .and_then(|b| b.as_ref().and_then(|b| b.1.clone()));
        match bar {
            Some(bar) if !bar.is_finished() => bar.suspend(print),
            _ => print(),
        }
    }

    fn progress(&self, what: &str, done: u64, percent: u8) {
        use std::io::IsTerminal;
        let Ok(mut cur) = self.bar.lock() else {
            return;
        };
        if cur.as_ref().is_none_or(|c| c.0 != what) {
            if let Some((_, Some(old), _)) = cur.take() {
                old.finish();
            }
            let bar = std::io::stdout().is_terminal().then(|| {
                let b = indicatif::ProgressBar::new(100);
                if let Ok(style) = indicatif::ProgressStyle::with_template(
                    "    {msg:<12} [{bar:40}] {pos:>3}% {elapsed_precise}",
                ) {
                    b.set_style(style.progress_chars("=> "));
                }
                b.set_message(what.to_owned());
                b
            });
            *cur = Some((what.to_owned(), bar, 0));
        }
        let Some((_, bar, tenth)) = cur.as_mut() else {
            return;
        };
        let percent = percent.min(100);
        match bar {
            Some(b) => {
                b.set_position(u64::from(percent));
                b.set_message(format!("{what} {}", crate::problem::bytes(done as i64)));
                if percent >= 100 {
                    b.finish();
                }
            }
            None if percent / 10 > *tenth => {
                *tenth = percent / 10;
                drop(cur);
                self.line(&format!(
                    "    {what}: {percent}% ({})",
                    crate::problem::bytes(done as i64)
                ));
            }
            None => {}
        }
    }

    fn confirm(&self, question: &str) -> Option<bool> {
        use std::io::{BufRead, IsTerminal, Write};
        if !std::io::stdin().is_terminal() {
            return None;
        }
        print!("{question} [y/N] ");
        let _ = std::io::stdout().flush();
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer).ok()?;
        Some(matches!(answer.trim(), "y" | "Y" | "yes"))
    }
}
