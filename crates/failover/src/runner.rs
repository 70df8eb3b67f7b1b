//! Running a plan with a [`Journal`]: one lock per instance, every step checked before it
//! acts, each event recorded, so a run killed at any point continues where it stopped. A
//! step marked `every_run` (the fence) is checked again on a resume although the journal
//! says it was done.

use std::collections::HashSet;

use crate::env::Env;
use crate::error::{FailoverError, Result};
use crate::journal::{Current, Journal};
use crate::plan::{Operation, Out, RunOptions};
use crate::steps::Step;

/// Starts `op` on the instance of `env`, or continues the interrupted run of the same
/// operation. A different operation interrupted earlier is refused: resume it first.
pub async fn start(env: &Env, op: Operation, opts: &RunOptions, out: &Out) -> Result<()> {
    let journal = Journal::open(&env.state)?;
    let current = match journal.current()? {
        Some(c) if c.operation == op.as_str() => {
            out.line(&format!(
                "continuing the interrupted {} of {} (run {})",
                c.operation,
                env.name(),
                c.run
            ));
            let (c, opts) = merged(&journal, c, opts)?;
            return run_steps(env, &op.steps(), &journal, &c, &opts, out).await;
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
            crate::sides::check_fits(env, op).await?;
            let now = crate::journal::now();
            let c = Current {
                operation: op.as_str().into(),
                run: format!("{}-{now}-{}", op.as_str(), std::process::id()),
                force: opts.force,
                restart_vps: opts.restart_vps,
                vps_unreachable: opts.vps_unreachable,
                discard_vps_writes: opts.discard_vps_writes,
                started: now,
            };
            journal.begin(&c)?;
            c
        }
    };
    run_steps(env, &op.steps(), &journal, &current, opts, out).await
}

/// Continues the interrupted operation of the instance and returns it; `Ok(None)` when there
/// is none.
pub async fn resume(env: &Env, opts: &RunOptions, out: &Out) -> Result<Option<Operation>> {
    let journal = Journal::open(&env.state)?;
    let Some(current) = journal.current()? else {
        return Ok(None);
    };
    let op = operation_of(env, &current)?;
    out.line(&format!(
        "resuming the {} of {} (run {})",
        current.operation,
        env.name(),
        current.run
    ));
    let (current, opts) = merged(&journal, current, opts)?;
    run_steps(env, &op.steps(), &journal, &current, &opts, out).await?;
    Ok(Some(op))
}

/// The operation an interrupted run was doing.
fn operation_of(env: &Env, current: &Current) -> Result<Operation> {
    Operation::parse(&current.operation).ok_or_else(|| FailoverError::Journal {
        path: env.state.current().display().to_string(),
        cause: format!("unknown operation {:?}", current.operation),
    })
}

/// The interrupted run's acknowledgements (`--force`, `--vps-unreachable`,
/// `--discard-vps-writes`, `--restart-vps`) with those given now: what the operator said once
/// holds for the rest of the run and its resumes (recorded); the fence is checked anyway.
fn merged(journal: &Journal, c: Current, opts: &RunOptions) -> Result<(Current, RunOptions)> {
    let m = Current {
        force: c.force || opts.force,
        restart_vps: c.restart_vps || opts.restart_vps,
        vps_unreachable: c.vps_unreachable || opts.vps_unreachable,
        discard_vps_writes: c.discard_vps_writes || opts.discard_vps_writes,
        ..c.clone()
    };
    if m != c {
        journal.begin(&m)?;
    }
    let opts = RunOptions {
        force: m.force,
        yes: opts.yes,
        restart_vps: m.restart_vps,
        vps_unreachable: m.vps_unreachable,
        discard_vps_writes: m.discard_vps_writes,
        reclone: opts.reclone,
    };
    Ok((m, opts))
}

/// What [`abort`] set aside, and what the run had done.
#[derive(Clone, Debug)]
pub struct Aborted {
    /// The run that was interrupted.
    pub current: Current,
    /// Its steps that completed (or were found done), in plan order.
    pub done: Vec<&'static str>,
    /// Its steps that did not.
    pub not_done: Vec<&'static str>,
}

/// Puts the interrupted run of the instance aside (`current.json` becomes `aborted.json`;
/// the journal keeps its lines), so the next operation starts from its first step, each step
/// checking what is already in place. `Ok(None)`: nothing was interrupted. Nothing on either
/// machine is touched: what the run changed stays as it is, and the caller says what that is.
pub fn abort(env: &Env) -> Result<Option<Aborted>> {
    let journal = Journal::open(&env.state)?;
    let Some(current) = journal.current()? else {
        return Ok(None);
    };
    let op = operation_of(env, &current)?;
    let done = journal.done(&current.run)?;
    let (done, not_done) = op
        .steps()
        .iter()
        .map(|s| s.id())
        .partition(|id| done.contains(*id));
    journal.abort()?;
    Ok(Some(Aborted {
        current,
        done,
        not_done,
    }))
}

/// Runs `steps` in order under the run `current` of `journal`: a step done earlier in this
/// run is skipped (unless it runs every time), a step whose check says done is recorded
/// `already`, the others act and are recorded `done`. The first failure stops the run; when
/// nothing acted yet, the run is not left "interrupted".
pub async fn run_steps(
    env: &Env,
    steps: &[Box<dyn Step>],
    journal: &Journal,
    current: &Current,
    opts: &RunOptions,
    out: &Out,
) -> Result<()> {
    use crate::events::{emit, main_log};
    let what = format!(
        "{} of {} (run {})",
        current.operation,
        env.name(),
        current.run
    );
    let resumed = !journal.done(&current.run)?.is_empty();
    let event = if resumed {
        "operation-resumed"
    } else {
        "operation-started"
    };
    emit(env, main_log(env), event, "info", &what).await;
    let r = steps_of_run(env, steps, journal, current, opts, out).await;
    match &r {
        Ok(()) => {
            emit(
                env,
                main_log(env),
                "operation-ended",
                "info",
                &format!("{what}: complete"),
            )
            .await
        }
        Err(e) => {
            emit(
                env,
                main_log(env),
                "operation-failed",
                "critical",
                &format!("{what}: {}", crate::error::chain(e)),
            )
            .await
        }
    }
    r
}

async fn steps_of_run(
    env: &Env,
    steps: &[Box<dyn Step>],
    journal: &Journal,
    current: &Current,
    opts: &RunOptions,
    out: &Out,
) -> Result<()> {
    let done: HashSet<String> = journal.done(&current.run)?;
    let mut changed = !done.is_empty();
    let total = steps.len();
    for (i, step) in steps.iter().enumerate() {
        let n = i + 1;
        let title = step.title();
        if done.contains(step.id()) && !step.every_run() {
            out.line(&format!("[{n}/{total}] {title}: done earlier"));
            continue;
        }
        env.trace_step(step.id());
        journal.record(current, step.id(), "started")?;
        let fail = |e: FailoverError, resumable: bool| FailoverError::Step {
            instance: env.name().to_owned(),
            step: step.id().to_owned(),
            title: title.to_owned(),
            hint: step.hint().to_owned(),
            resumable,
            source: Box::new(e),
        };
        let clock = std::time::Instant::now();
        let checked = match step.is_done(env).await {
            Ok(c) => c,
            Err(e) => return Err(abort_if_untouched(journal, changed, fail(e, changed))),
        };
        if checked {
            journal.record(current, step.id(), "already")?;
            out.line(&format!("[{n}/{total}] {title}: already done"));
            continue;
        }
        out.line(&format!("[{n}/{total}] {title} ..."));
        if let Err(e) = step.apply(env, opts, out).await {
            // A switchover that put everything back leaves nothing to resume.
            let left = changed && !matches!(e, FailoverError::PutBack(_));
            return Err(abort_if_untouched(journal, left, fail(e, left)));
        }
        changed = true;
        crate::hooks::kill_point(step.id());
        journal.record(current, step.id(), "done")?;
        crate::hooks::hold_point(step.id()).await;
        out.line(&format!(
            "[{n}/{total}] {title}: done ({:.1} s)",
            clock.elapsed().as_secs_f64()
        ));
    }
    env.trace_step("");
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use mockall::Sequence;

    use super::*;
    use crate::plan::Reporter;
    use crate::steps::MockStep;

    struct Lines(Mutex<Vec<String>>);

    impl Reporter for Lines {
        fn line(&self, text: &str) {
            self.0.lock().unwrap().push(text.to_owned());
        }
        fn confirm(&self, _question: &str) -> Option<bool> {
            None
        }
    }

    fn env(dir: &std::path::Path) -> Env {
        let text = crate::EXAMPLE.replace(
            "# state_dir = \"/var/lib/odoo-standby\"",
            &format!("state_dir = \"{}\"", dir.display()),
        );
        let cfg = crate::Config::parse(&text, "test.toml").unwrap();
        let host = || -> Arc<dyn host::Host> { Arc::new(host::MockHost::new()) };
        let hosts = crate::Hosts {
            local: host(),
            vps: host(),
            vps_files: host(),
        };
        Env::with_hosts(
            &cfg,
            std::path::Path::new("/test.toml"),
            "vps_clientes_1",
            hosts,
        )
        .unwrap()
    }

    fn step(id: &'static str, seq: &mut Sequence, acts: Option<bool>) -> Box<dyn Step> {
        let mut s = MockStep::new();
        s.expect_id().return_const(id);
        s.expect_title().return_const(id);
        s.expect_hint().return_const("hint");
        s.expect_every_run().return_const(false);
        match acts {
            None => {
                s.expect_is_done().times(0);
                s.expect_apply().times(0);
            }
            Some(ok) => {
                s.expect_is_done()
                    .times(1)
                    .in_sequence(seq)
                    .returning(|_| Ok(false));
                s.expect_apply()
                    .times(1)
                    .in_sequence(seq)
                    .returning(move |_, _, _| {
                        if ok {
                            Ok(())
                        } else {
                            Err(FailoverError::Refused(
                                "the VPS still accepts writes".into(),
                            ))
                        }
                    });
            }
        }
        Box::new(s)
    }

    fn begin(env: &Env, op: &str, run: &str) -> (Journal, Current) {
        let j = Journal::open(&env.state).unwrap();
        let c = Current {
            operation: op.into(),
            run: run.into(),
            force: false,
            restart_vps: false,
            vps_unreachable: false,
            discard_vps_writes: false,
            started: 1,
        };
        j.begin(&c).unwrap();
        (j, c)
    }

    #[tokio::test]
    async fn steps_run_in_their_order_and_a_failed_fence_promotes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let env = env(dir.path());
        let out = Lines(Mutex::default());
        // Fence, then promote, in this order.
        let mut seq = Sequence::new();
        let steps = vec![
            step("fence", &mut seq, Some(true)),
            step("promote", &mut seq, Some(true)),
        ];
        let (j, c) = begin(&env, "failover", "r1");
        run_steps(&env, &steps, &j, &c, &RunOptions::default(), &out)
            .await
            .unwrap();
        drop((steps, j));
        // The fence fails: promote never runs, and the journal says where it stopped.
        let mut seq = Sequence::new();
        let steps = vec![
            step("fence", &mut seq, Some(false)),
            step("promote", &mut seq, None),
        ];
        let (j, c) = begin(&env, "failover", "r2");
        let e = run_steps(&env, &steps, &j, &c, &RunOptions::default(), &out)
            .await
            .unwrap_err();
        assert!(
            matches!(&e, FailoverError::Step { step, .. } if step == "fence"),
            "{e:?}"
        );
        assert_eq!(e.kind(), crate::ErrorKind::Refused);
        let events: Vec<(String, String)> = j
            .entries()
            .unwrap()
            .into_iter()
            .filter(|x| x.run == "r2")
            .map(|x| (x.step, x.event))
            .collect();
        assert!(
            events.ends_with(&[("fence".into(), "started".into())]),
            "{events:?}"
        );
        assert!(
            !events
                .iter()
                .any(|(s, _)| s == "promote" && events.len() == 1),
            "{events:?}"
        );
        // Nothing acted in that run: it is not left interrupted.
        assert!(j.current().unwrap().is_none());
        assert!(env.state.aborted().exists());
    }

    #[tokio::test]
    async fn a_run_that_put_everything_back_is_not_left_to_resume() {
        let dir = tempfile::tempdir().unwrap();
        let env = env(dir.path());
        let out = Lines(Mutex::default());
        let mut seq = Sequence::new();
        let mut back = MockStep::new();
        back.expect_id().return_const("switch-point");
        back.expect_title().return_const("switch-point");
        back.expect_hint().return_const("hint");
        back.expect_every_run().return_const(true);
        back.expect_is_done().returning(|_| Ok(false));
        back.expect_apply().returning(|_, _, _| {
            Err(FailoverError::PutBack(
                "the standby is behind. Production is back on the VPS".into(),
            ))
        });
        let steps = vec![
            step("stop-vps-odoo", &mut seq, Some(true)),
            Box::new(back) as Box<dyn Step>,
        ];
        let (j, c) = begin(&env, "switchover", "r1");
        let e = run_steps(&env, &steps, &j, &c, &RunOptions::default(), &out)
            .await
            .unwrap_err();
        // A step acted before, yet nothing is left interrupted: the VPS was put back.
        assert!(j.current().unwrap().is_none());
        assert_eq!(e.kind(), crate::ErrorKind::Refused);
        let hint = e.hint().unwrap();
        assert!(
            hint.contains("production runs on the VPS") && !hint.contains("resume"),
            "{hint}"
        );
    }

    fn position(op: Operation, id: &str) -> usize {
        op.steps()
            .iter()
            .position(|s| s.id() == id)
            .unwrap_or_else(|| panic!("{id} is not a step of {}", op.as_str()))
    }

    #[test]
    fn the_plans_keep_the_order_that_matters() {
        use Operation::*;
        // Nothing is promoted before the fence held, and the syncs stop only after it.
        assert!(position(Failover, "fence") < position(Failover, "promote"));
        assert!(position(Failover, "fence") < position(Failover, "stop-syncs"));
        // Odoo starts only after the smoke test, and is checked by HTTP after it starts.
        assert!(position(Failover, "smoke") < position(Failover, "start-odoo"));
        assert!(position(Failover, "start-odoo") < position(Failover, "check-http"));
        // Failback: the VPS follows before production stops here, the files go back before
        // the VPS is promoted, and only a caught-up VPS is promoted.
        assert!(position(Failback, "stop-vps-odoo") < position(Failback, "rejoin-vps"));
        assert!(position(Failback, "rejoin-vps") < position(Failback, "stop-odoo"));
        assert!(position(Failback, "stop-odoo") < position(Failback, "copy-files-back"));
        assert!(position(Failback, "copy-files-back") < position(Failback, "promote-vps"));
        assert!(position(Failback, "catch-up") < position(Failback, "promote-vps"));
        assert!(position(Failback, "promote-vps") < position(Failback, "rejoin-backup"));
        // Switchover: everything that may refuse comes before Odoo stops on the VPS; the
        // VPS's cluster stops after the last files; nothing is promoted before the switch
        // point is checked; the VPS follows only after Odoo serves here.
        assert!(position(Switchover, "switch-ready") < position(Switchover, "stop-vps-odoo"));
        assert!(position(Switchover, "prepare-backup") < position(Switchover, "stop-vps-odoo"));
        assert!(position(Switchover, "stop-vps-odoo") < position(Switchover, "last-files"));
        assert!(position(Switchover, "stop-syncs") < position(Switchover, "last-files"));
        assert!(position(Switchover, "last-files") < position(Switchover, "stop-vps-cluster"));
        assert!(position(Switchover, "stop-vps-cluster") < position(Switchover, "switch-point"));
        assert!(position(Switchover, "switch-point") < position(Switchover, "promote"));
        assert!(position(Switchover, "smoke") < position(Switchover, "start-odoo"));
        assert!(position(Switchover, "check-http") < position(Switchover, "follow-here"));
        // Protect: the passwords exist before the VPS is prepared, the clone before the files.
        assert!(position(Protect, "secrets") < position(Protect, "prepare-primary"));
        assert!(position(Protect, "prepare-primary") < position(Protect, "clone-standby"));
    }
}
