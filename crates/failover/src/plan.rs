//! Plans are data: an ordered list of steps, each with a description, the host it runs on,
//! what it will run (commands, SQL, files; never a secret), a check that tells whether it is
//! already done, and a hint for when it fails. `--dry-run` prints them; [`execute`] runs them
//! with a [`Journal`], so an interrupted run resumes where it stopped.

use std::collections::HashSet;

use serde::Serialize;

use crate::actions::Action;
use crate::env::Env;
use crate::error::{FailoverError, Result};
use crate::journal::{Current, Journal};

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
}

impl Operation {
    /// Its name on the command line and in the journal.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Protect => "protect",
            Self::Failover => "failover",
            Self::Failback => "failback",
        }
    }

    /// Parses [`Operation::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Protect, Self::Failover, Self::Failback]
            .into_iter()
            .find(|o| o.as_str() == s)
    }

    /// The steps, in order.
    pub fn actions(self) -> Vec<Action> {
        use Action::*;
        match self {
            Self::Protect => vec![
                Preflight,
                Secrets,
                PreparePrimary,
                CloneStandby,
                Layout,
                SeedFiles,
                OdooConf,
                OdooLogin,
                OdooUnit,
                SyncUnit,
                StartSyncs,
            ],
            Self::Failover => vec![
                Fence, Confirm, StopSyncs, Promote, LostFiles, OdooFiles, Smoke, StartOdoo,
                CheckHttp, Nginx,
            ],
            Self::Failback => vec![
                StopVpsOdoo,
                PrepareBackupPrimary,
                RejoinVps,
                StopOdoo,
                CopyFilesBack,
                CatchUp,
                StopStandby,
                PromoteVps,
                RejoinBackup,
                DropStaleSlots,
                StartSyncs,
                StartVpsOdoo,
            ],
        }
    }
}

/// One step, as shown.
#[derive(Clone, Debug, Serialize)]
pub struct Step {
    /// Stable id (journal, kill points, `--json`).
    pub id: &'static str,
    /// What it does.
    pub description: String,
    /// Where it runs.
    pub host: String,
    /// What it will run: commands, SQL, files (secrets redacted).
    pub runs: Vec<String>,
    /// How it knows it is already done.
    pub check: String,
    /// What to do when it fails.
    pub hint: String,
    /// The action.
    #[serde(skip)]
    pub action: Action,
}

/// A plan for one instance.
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    /// The operation.
    pub operation: Operation,
    /// The instance.
    pub instance: String,
    /// The steps in order.
    pub steps: Vec<Step>,
}

impl Plan {
    /// The plan of `op` for the instance of `env` (touches nothing).
    pub fn new(op: Operation, env: &Env) -> Self {
        Self {
            operation: op,
            instance: env.name().to_owned(),
            steps: op.actions().into_iter().map(|a| a.step(env)).collect(),
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
}

/// Where progress goes (a terminal, a log, a test).
pub trait Reporter: Send + Sync {
    /// One line.
    fn line(&self, text: &str);
    /// Asks a yes/no question (`None` when nobody can answer).
    fn confirm(&self, question: &str) -> Option<bool>;
}

/// Starts `op` on the instance of `env`, or continues the interrupted run of the same
/// operation. A different operation interrupted earlier is refused: resume it first.
pub async fn start(env: &Env, op: Operation, opts: &RunOptions, out: &dyn Reporter) -> Result<()> {
    let journal = Journal::open(&env.cfg.backup.state_dir, env.name())?;
    let current = match journal.current()? {
        Some(c) if c.operation == op.as_str() => {
            out.line(&format!(
                "continuing the interrupted {} of {} (run {})",
                c.operation,
                env.name(),
                c.run
            ));
            c
        }
        Some(c) => {
            return Err(FailoverError::Refused(format!(
                "a {} of {} was interrupted (run {}); finish it first: odoo-standby resume {}",
                c.operation,
                env.name(),
                c.run,
                env.name()
            )))
        }
        None => {
            let now = crate::journal::now();
            let c = Current {
                operation: op.as_str().into(),
                run: format!("{}-{now}-{}", op.as_str(), std::process::id()),
                force: opts.force,
                restart_vps: opts.restart_vps,
                vps_unreachable: opts.vps_unreachable,
                started: now,
            };
            journal.begin(&c)?;
            c
        }
    };
    run(env, &journal, &current, op, opts, out).await
}

/// Continues the interrupted operation of the instance; `Ok(false)` when there is none.
pub async fn resume(env: &Env, opts: &RunOptions, out: &dyn Reporter) -> Result<bool> {
    let journal = Journal::open(&env.cfg.backup.state_dir, env.name())?;
    let Some(current) = journal.current()? else {
        return Ok(false);
    };
    let op = Operation::parse(&current.operation).ok_or_else(|| FailoverError::Journal {
        path: journal.dir().join("current.json").display().to_string(),
        cause: format!("unknown operation {:?}", current.operation),
    })?;
    out.line(&format!(
        "resuming the {} of {} (run {})",
        current.operation,
        env.name(),
        current.run
    ));
    let opts = RunOptions {
        force: current.force || opts.force,
        yes: opts.yes,
        restart_vps: current.restart_vps || opts.restart_vps,
        vps_unreachable: current.vps_unreachable || opts.vps_unreachable,
    };
    run(env, &journal, &current, op, &opts, out).await?;
    Ok(true)
}

/// A test hook: `ODOO_STANDBY_KILL_AFTER=<step id>` makes the process kill itself (SIGKILL)
/// right after that step acted and before the journal records it: the worst moment to die.
fn kill_point(step: &str) {
    if std::env::var("ODOO_STANDBY_KILL_AFTER").ok().as_deref() == Some(step) {
        // SAFETY: raising a signal on our own process.
        unsafe {
            libc::raise(libc::SIGKILL);
        }
    }
}

async fn run(
    env: &Env,
    journal: &Journal,
    current: &Current,
    op: Operation,
    opts: &RunOptions,
    out: &dyn Reporter,
) -> Result<()> {
    let plan = Plan::new(op, env);
    let done: HashSet<String> = journal.done(&current.run)?;
    let mut changed = !done.is_empty();
    let total = plan.steps.len();
    for (i, step) in plan.steps.iter().enumerate() {
        let n = i + 1;
        if done.contains(step.id) && !step.action.every_run() {
            out.line(&format!("[{n}/{total}] {}: done earlier", step.description));
            continue;
        }
        journal.record(current, step.id, "started")?;
        let fail = |e: FailoverError| FailoverError::Step {
            instance: env.name().to_owned(),
            step: step.id.to_owned(),
            title: step.description.clone(),
            cause: e.to_string(),
            hint: step.hint.clone(),
        };
        let clock = std::time::Instant::now();
        let checked = step.action.is_done(env).await;
        let checked = match checked {
            Ok(c) => c,
            Err(e) => return Err(abort_if_untouched(journal, changed, fail(e))),
        };
        if checked {
            journal.record(current, step.id, "already")?;
            out.line(&format!("[{n}/{total}] {}: already done", step.description));
            continue;
        }
        out.line(&format!("[{n}/{total}] {} ...", step.description));
        if let Err(e) = step.action.apply(env, opts, out).await {
            return Err(abort_if_untouched(journal, changed, fail(e)));
        }
        changed = true;
        kill_point(step.id);
        journal.record(current, step.id, "done")?;
        out.line(&format!(
            "[{n}/{total}] {}: done ({:.1} s)",
            step.description,
            clock.elapsed().as_secs_f64()
        ));
    }
    journal.finish()?;
    Ok(())
}

/// A run that fails before any step acted changed nothing: it is not left "interrupted"
/// (a refused failover must not keep the instance in a half-started state).
fn abort_if_untouched(journal: &Journal, changed: bool, e: FailoverError) -> FailoverError {
    if !changed {
        let _ = journal.abort();
    }
    e
}
