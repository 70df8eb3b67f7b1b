//! Failover (runbook section 4): fence, show what is at risk, stop the syncs, promote,
//! smoke-test, start Odoo, write the nginx site. The checks of the files (lost, owned, served)
//! are in `files.rs`.

use std::time::Duration;

use async_trait::async_trait;

use super::files::{CheckHttp, LostFiles, OdooFiles};
use super::{f, hf, is_primary, same_file, write_ours, Run, Step};
use crate::env::Env;
use crate::error::{FailoverError, Result};
use crate::plan::{Out, RunOptions};
use crate::vps::{vps_state, VpsState};

/// The steps of failover, in order: fence, confirm, then stop the syncs, so that a refusal
/// (VPS alive, not confirmed) changes nothing.
pub fn failover() -> Vec<Box<dyn Step>> {
    vec![
        Box::new(Fence),
        Box::new(Confirm),
        Box::new(StopSyncs),
        Box::new(Promote),
        Box::new(LostFiles),
        Box::new(OdooFiles),
        Box::new(Smoke),
        Box::new(StartOdoo),
        Box::new(CheckHttp),
        Box::new(Nginx),
        Box::new(WatchVps),
    ]
}

/// The VPS's PostgreSQL takes no writes any more, or the operator said it cannot be reached.
pub struct Fence;

#[async_trait]
impl Step for Fence {
    fn id(&self) -> &'static str {
        "fence"
    }
    fn title(&self) -> &'static str {
        "make sure the VPS's PostgreSQL no longer accepts writes"
    }
    fn on_vps(&self) -> bool {
        true
    }
    fn runs(&self, env: &Env) -> Vec<Run> {
        let mut v = vec![
            Run::note(format!(
                "ssh {}@{} -p {} true (15 s): can the VPS be reached at all?",
                env.ssh.user, env.ssh.host, env.ssh.port
            )),
            Run::note(format!(
                "is {} running; psql on it: SELECT pg_is_in_recovery() (an answer within {} s, else it is not fenced)",
                env.vps_cluster.label(),
                crate::vps::ANSWER_WITHIN.as_secs()
            )),
            Run::note("reachable: hold it down (it must not come back as a primary by itself):"),
        ];
        v.extend(crate::vps::hold_runs(env));
        v
    }
    fn check(&self) -> &'static str {
        "checked on every run and every resume, never skipped"
    }
    fn hint(&self) -> &'static str {
        "stop the VPS's PostgreSQL (or pass --force); if the VPS cannot be reached, make sure it is down or cut off, then pass --vps-unreachable"
    }
    fn every_run(&self) -> bool {
        true
    }
    async fn is_done(&self, _env: &Env) -> Result<bool> {
        Ok(false)
    }
    async fn apply(&self, env: &Env, opts: &RunOptions, out: &Out) -> Result<()> {
        let label = env.vps_cluster.label();
        match vps_state(env).await {
            VpsState::Stopped => out.line(&format!("    {label} on the VPS does not run")),
            VpsState::Standby => out.line(&format!(
                "    {label} on the VPS is a standby: it takes no writes"
            )),
            VpsState::Unreachable(why) if opts.vps_unreachable => {
                out.line(&format!(
                    "    the VPS cannot be reached ({why}); going on as acknowledged with --vps-unreachable: nothing fenced it, so it must not serve again until failback (status holds it down when it can reach it)"
                ));
                return Ok(());
            }
            VpsState::Unreachable(why) => return Err(FailoverError::Refused(format!(
                "the VPS cannot be reached over SSH ({why}): it may be down or cut off; nothing could fence it. If it is down, or you have cut it off, run again with --vps-unreachable (--yes does not imply it)"
            ))),
            VpsState::NotAnswering(why) if !opts.force => return Err(FailoverError::Refused(format!(
                "the VPS's PostgreSQL runs but does not answer ({why}): it is not fenced, it may take writes again any moment. Stop it on the VPS and run again, or pass --force to have odoo-standby stop it over SSH"
            ))),
            VpsState::Primary if !opts.force => return Err(FailoverError::Refused(format!(
                "the VPS's PostgreSQL at {}:{} still accepts writes: failing over now would split the data in two. Stop it (or cut it off) and run again, or pass --force to have odoo-standby stop it over SSH",
                env.vps_pg.0, env.vps_pg.1
            ))),
            VpsState::Primary | VpsState::NotAnswering(_) => {
                out.line(&format!("    --force: stopping {label} over SSH"));
            }
        }
        let held = crate::vps::hold_vps(env).await?;
        out.line(&format!(
            "    held {label} down on the VPS: {}standby.signal, start.conf manual (failback sets it back)",
            if held.stopped { "stopped, " } else { "" }
        ));
        match vps_state(env).await {
            VpsState::Stopped => Ok(()),
            other => Err(FailoverError::Refused(format!(
                "the VPS's cluster {label} was held down but {other}: it is not fenced"
            ))),
        }
    }
}

/// What a failover now would lose, and the operator's yes.
pub struct Confirm;

#[async_trait]
impl Step for Confirm {
    fn id(&self) -> &'static str {
        "confirm"
    }
    fn title(&self) -> &'static str {
        "show what is at risk and ask"
    }
    fn runs(&self, _env: &Env) -> Vec<Run> {
        vec![Run::note(
            "standby: receiver state, replay delay; referenced files missing here",
        )]
    }
    fn check(&self) -> &'static str {
        "asked once per run"
    }
    fn hint(&self) -> &'static str {
        "answer, or pass --yes"
    }
    async fn is_done(&self, _env: &Env) -> Result<bool> {
        Ok(false)
    }
    async fn apply(&self, env: &Env, opts: &RunOptions, out: &Out) -> Result<()> {
        let st = pgrepl::status(&env.standby_sql("postgres"))
            .await
            .map_err(f("reading the standby's status"))?;
        match &st {
            pgrepl::Status::Standby(s) => out.line(&format!(
                "    at risk: the standby's WAL receiver is {}, last replayed transaction {} s old (writes after it on the VPS are lost)",
                s.receiver_status.as_deref().unwrap_or("stopped"),
                s.replay_delay_seconds.map(|d| format!("{d:.0}")).unwrap_or_else(|| "?".into())
            )),
            pgrepl::Status::Primary(_) => out.line("    the standby is already a primary"),
        }
        for (db, n) in crate::status::missing_files(env).await? {
            out.line(&format!(
                "    at risk: {db}: {n} referenced file(s) missing here"
            ));
        }
        super::confirmed(
            opts,
            out,
            &format!("Fail over {} to this server?", env.name()),
            "not confirmed; nothing was promoted",
        )
    }
}

/// The syncs stop, and a marker keeps timer or cron passes from running, so the copies stay
/// as they were when the VPS was lost.
pub struct StopSyncs;

#[async_trait]
impl Step for StopSyncs {
    fn id(&self) -> &'static str {
        "stop-syncs"
    }
    fn title(&self) -> &'static str {
        "stop the file syncs (the copies stay as they are)"
    }
    fn runs(&self, env: &Env) -> Vec<Run> {
        let mut v = vec![Run::file(
            &env.state.paused(),
            "the marker that pauses every sync pass",
        )];
        v.extend(Run::cmds(
            &env.here.stop_specs(&env.sync_service()),
            "stop the sync service (kill -TERM its pid after checking its command line)",
        ));
        v
    }
    fn check(&self) -> &'static str {
        "the sync service does not run"
    }
    fn hint(&self) -> &'static str {
        "stop it by hand, then resume"
    }
    async fn is_done(&self, env: &Env) -> Result<bool> {
        Ok(!env.here.is_active(&env.sync_service()).await? && env.state.paused().exists())
    }
    async fn apply(&self, env: &Env, _opts: &RunOptions, _out: &Out) -> Result<()> {
        let p = env.state.paused();
        let text =
            "paused by failover: `odoo-standby sync` does nothing until failback re-enables it\n";
        tokio::task::spawn_blocking(move || {
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&p, text)
        })
        .await
        .map_err(|e| FailoverError::failed("writing the pause marker", e))?
        .map_err(|e| FailoverError::failed("writing the pause marker", e))?;
        env.here.stop(&env.sync_service()).await
    }
}

/// The standby becomes a primary.
pub struct Promote;

#[async_trait]
impl Step for Promote {
    fn id(&self) -> &'static str {
        "promote"
    }
    fn title(&self) -> &'static str {
        "promote the standby cluster"
    }
    fn runs(&self, env: &Env) -> Vec<Run> {
        vec![Run::sql(format!(
            "SELECT pg_promote() on {}; txid_current(); CHECKPOINT",
            env.standby.label()
        ))]
    }
    fn check(&self) -> &'static str {
        "it is not in recovery"
    }
    fn hint(&self) -> &'static str {
        "read the cluster log; a standby that never streamed has nothing to promote"
    }
    async fn is_done(&self, env: &Env) -> Result<bool> {
        Ok(env.standby.is_running().await.unwrap_or(false)
            && is_primary(&env.standby_sql("postgres")).await?)
    }
    async fn apply(&self, env: &Env, _opts: &RunOptions, out: &Out) -> Result<()> {
        let o = pgrepl::promote(&env.standby_sql("postgres"), Duration::from_secs(60))
            .await
            .map_err(f("promoting the standby"))?;
        out.line(&format!("    {o}"));
        Ok(())
    }
}

/// Odoo loads every database here (`--stop-after-init`), with the runbook's role fixes.
pub struct Smoke;

#[async_trait]
impl Step for Smoke {
    fn id(&self) -> &'static str {
        "smoke"
    }
    fn title(&self) -> &'static str {
        "smoke-test Odoo (fixing roles and ownership)"
    }
    fn runs(&self, env: &Env) -> Vec<Run> {
        let mut v = Vec::new();
        for db in env.planned_databases() {
            v.push(Run::cmd(&odoo_instance::smoke::command(
                &env.smoke_test(&db, None),
            )));
        }
        v.push(Run::note(
            "on a missing role: createuser -s; on objects owned by another role: REASSIGN OWNED",
        ));
        v
    }
    fn check(&self) -> &'static str {
        "the Odoo unit already runs"
    }
    fn hint(&self) -> &'static str {
        "the diagnosis lists each failure and its fix; fix, then resume"
    }
    async fn is_done(&self, env: &Env) -> Result<bool> {
        env.here.is_active(&env.odoo_service()).await
    }
    async fn apply(&self, env: &Env, _opts: &RunOptions, out: &Out) -> Result<()> {
        use odoo_instance::smoke::Failure;
        for db in env.databases().await? {
            let t = env.smoke_test(&db, Some(&env.instance_conf().await?));
            let mut fixed = false;
            loop {
                let r = odoo_instance::smoke::run(env.local.as_ref(), &t)
                    .await
                    .map_err(|e| FailoverError::failed(format!("smoke-testing {db}"), e))?;
                if r.ok {
                    out.line(&format!("    {db}: Odoo loads it"));
                    break;
                }
                // Roles and ownership are ours to fix (runbook 4.3); anything else is shown.
                let fix = r.diagnoses.iter().find(|d| {
                    matches!(
                        d.failure,
                        Failure::RoleMissing { .. } | Failure::WrongOwner { .. }
                    )
                });
                match (fix.and_then(|d| d.fix.command.clone()), fixed) {
                    (Some(cmd), false) => {
                        out.line(&format!("    {db}: fixing: {cmd}"));
                        env.local.run(&cmd).await.map_err(hf("fixing roles"))?;
                        fixed = true;
                    }
                    _ => {
                        let list: Vec<String> = r.diagnoses.iter().map(|d| d.to_string()).collect();
                        return Err(FailoverError::Refused(format!(
                            "Odoo does not load {db}: {}\n{}",
                            list.join("; "),
                            r.log_tail
                        )));
                    }
                }
            }
        }
        Ok(())
    }
}

/// The promoted Odoo's unit, installed and started.
pub struct StartOdoo;

#[async_trait]
impl Step for StartOdoo {
    fn id(&self) -> &'static str {
        "start-odoo"
    }
    fn title(&self) -> &'static str {
        "install and start Odoo"
    }
    fn runs(&self, env: &Env) -> Vec<Run> {
        Run::cmds(&env.here.start_specs(&env.odoo_service()), "start Odoo")
    }
    fn check(&self) -> &'static str {
        "the Odoo unit runs"
    }
    fn hint(&self) -> &'static str {
        "journalctl -u odoo_NAME (or its log), then resume"
    }
    async fn is_done(&self, env: &Env) -> Result<bool> {
        env.here.is_active(&env.odoo_service()).await
    }
    async fn apply(&self, env: &Env, _opts: &RunOptions, _out: &Out) -> Result<()> {
        env.here.start(&env.odoo_service()).await
    }
}

/// A site file for nginx in front of the promoted Odoo (enabling it is left to the operator).
pub struct Nginx;

#[async_trait]
impl Step for Nginx {
    fn id(&self) -> &'static str {
        "nginx"
    }
    fn title(&self) -> &'static str {
        "write the nginx site"
    }
    fn runs(&self, env: &Env) -> Vec<Run> {
        vec![Run::file(
            &env.nginx_path(),
            "server block proxying to Odoo's HTTP and gevent ports",
        )]
    }
    fn check(&self) -> &'static str {
        "the file already has that content"
    }
    fn hint(&self) -> &'static str {
        "check the instance folder"
    }
    async fn is_done(&self, env: &Env) -> Result<bool> {
        same_file(env, &env.nginx_path(), &env.nginx_site().await).await
    }
    async fn apply(&self, env: &Env, _opts: &RunOptions, _out: &Out) -> Result<()> {
        let text = env.nginx_site().await;
        write_ours(env, &env.nginx_path(), &text, 0o644, "root").await
    }
}

/// The sync service started again, paused (the marker stop-syncs wrote stays): it copies
/// nothing, and every `vps_watch_seconds` holds the VPS down if it comes back as a primary
/// (`sync::watch_failed_over_vps`).
pub struct WatchVps;

#[async_trait]
impl Step for WatchVps {
    fn id(&self) -> &'static str {
        "watch-vps"
    }
    fn title(&self) -> &'static str {
        "start the sync service paused: it fetches nothing, holds the VPS down if it comes back as a primary, and after a switchover sends the files written here back to the VPS"
    }
    fn runs(&self, env: &Env) -> Vec<Run> {
        Run::cmds(
            &env.here.start_specs(&env.sync_service()),
            "start the sync service (paused)",
        )
    }
    fn check(&self) -> &'static str {
        "the sync service runs"
    }
    fn hint(&self) -> &'static str {
        "see its log; production runs here all the same; `odoo-standby status NAME` also holds a revived VPS down"
    }
    async fn is_done(&self, env: &Env) -> Result<bool> {
        env.here.is_active(&env.sync_service()).await
    }
    async fn apply(&self, env: &Env, _opts: &RunOptions, _out: &Out) -> Result<()> {
        env.here.start(&env.sync_service()).await
    }
}
