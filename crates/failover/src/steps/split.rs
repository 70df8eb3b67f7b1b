//! Before pg_rewind makes the VPS follow this server, what the VPS wrote after the split is
//! found, kept and named, and the operator says it may go (runbook 5.3 never looked).
//!
//! The VPS's cluster is held down first (`pgrepl::fence`). Its WAL from the fork point on
//! (this cluster's timeline history says where) is read with `pg_waldump`: rows changed per
//! table by transactions that committed. When there are any, the cluster is started
//! read-only (the signal file), each database with changes is dumped to this server
//! (`<root>/<name>/kept/vps-writes-tl<T>-<end LSN>/<db>.dump`, 0700, root) with a report
//! beside it, attachments written there are named (their files stay in the VPS's filestore:
//! the copy-back never deletes or replaces one), and the cluster is stopped again. Then
//! `--discard-vps-writes` (or a yes on the terminal; `--yes` does not imply it) lets the
//! failback go on.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use pgrepl::walafter::{self, WalAfter};
use pgrepl::{Lsn, Sql as _, StopMode};

use super::{f, Run, Step};
use crate::env::{rows, Env};
use crate::error::{FailoverError, Result};
use crate::plan::{Out, RunOptions};

/// What the VPS wrote after the split is reported, kept, and confirmed.
pub struct VpsWrites;

/// One database's writes after the split.
struct DbWrites {
    name: String,
    tables: Vec<(String, walafter::RelChanges)>,
    attachments: Vec<String>,
}

fn kept_dir(env: &Env, timeline: u32, end: Option<Lsn>) -> PathBuf {
    let end = end
        .map(|l| l.to_string().replace('/', "-"))
        .unwrap_or_default();
    env.layout
        .dir()
        .join("kept")
        .join(format!("vps-writes-tl{timeline}-{end}"))
}

#[async_trait]
impl Step for VpsWrites {
    fn id(&self) -> &'static str {
        "vps-writes"
    }
    fn title(&self) -> &'static str {
        "find what the VPS wrote after the split, keep it here, and ask before pg_rewind discards it"
    }
    fn on_vps(&self) -> bool {
        true
    }
    fn runs(&self, env: &Env) -> Vec<Run> {
        let c = env.vps_cluster.as_ref();
        let mut v = crate::vps::hold_runs(env);
        v.push(Run::note(format!(
            "pg_controldata on the VPS; the fork point from this cluster's timeline history; {} --path={}/pg_wal --timeline=TL --start=FORK (reads only): rows changed per table after the fork",
            c.bindir().join("pg_waldump").display(),
            c.data_dir().display()
        )));
        v.push(Run::cmd_when(
            &c.start_spec(),
            "rows changed: it starts read-only (standby.signal) for the dump",
        ));
        for db in env.planned_databases() {
            v.push(Run::cmd_when(
                &walafter::dump_spec(c, &db),
                "rows of that database changed",
            ));
        }
        v.push(Run::file(
            &env.layout.dir().join("kept/vps-writes-tlTL-END"),
            "DB.dump per database with changes (0700), report.txt",
        ));
        v.push(Run::cmd_when(
            &c.stop_spec(StopMode::Fast),
            "it was started for the dump",
        ));
        v.push(Run::note(
            "rows changed: go on only with --discard-vps-writes or a yes on the terminal (--yes does not imply it)",
        ));
        v
    }
    fn check(&self) -> &'static str {
        "the WAL after the fork changes no row, or the operator let the kept writes go"
    }
    fn hint(&self) -> &'static str {
        "read the report: the writes are kept in the folder it names; failback --discard-vps-writes goes on"
    }
    async fn is_done(&self, _env: &Env) -> Result<bool> {
        Ok(false)
    }
    async fn apply(&self, env: &Env, opts: &RunOptions, out: &Out) -> Result<()> {
        let c = env.vps_cluster.as_ref();
        if super::streams_from(c, env.upstream_backup()).await? {
            out.line("    the VPS already follows this server: nothing of its own to keep");
            return Ok(());
        }
        crate::vps::hold_vps(env).await?;
        let cd = pgrepl::divergence::controldata(c)
            .await
            .map_err(f("reading the VPS's control file"))?;
        let here = env.standby_sql("postgres");
        let (tl, history) = pgrepl::divergence::history(&here)
            .await
            .map_err(f("reading this cluster's timeline history"))?;
        if cd.timeline == tl {
            out.line(&format!(
                "    the VPS is on this cluster's timeline {tl} already: it wrote nothing of its own after the split"
            ));
            return Ok(());
        }
        let Some(fork) = history
            .iter()
            .find(|h| h.parent == cd.timeline)
            .map(|h| h.switchpoint)
        else {
            out.line(&format!(
                "    the VPS is on timeline {}, which this cluster's history does not fork from: the rejoin makes a new clone and moves its data directory aside (kept)",
                cd.timeline
            ));
            return Ok(());
        };
        if cd.clean() && cd.checkpoint < fork {
            out.line(&format!(
                "    the VPS stopped cleanly at {} on timeline {}, before this cluster forked off at {fork}: it wrote nothing after the split",
                cd.checkpoint, cd.timeline
            ));
            return Ok(());
        }
        let wal = walafter::wal_after(c, cd.timeline, fork)
            .await
            .map_err(f("reading the VPS's WAL after the split"))?;
        if wal.complete && !wal.changed_rows() {
            out.line(&format!(
                "    the VPS wrote no row after the split (timeline {}, {} WAL record(s) after {fork}: checkpoints, maintenance)",
                cd.timeline, wal.records
            ));
            return Ok(());
        }
        let dir = kept_dir(env, cd.timeline, wal.end);
        let report = keep(env, &wal, cd.timeline, &dir, out).await?;
        for l in report.lines() {
            out.line(&format!("    {l}"));
        }
        if opts.discard_vps_writes {
            out.line("    --discard-vps-writes: going on; pg_rewind discards them from the VPS's live database");
            return Ok(());
        }
        match out.confirm("Discard these writes from the VPS's live database (they are kept above) and go on?") {
            Some(true) => Ok(()),
            _ => Err(FailoverError::Refused(format!(
                "the VPS wrote after the split; its writes are kept in {} (on this server). To let pg_rewind discard them from the VPS and go on: odoo-standby failback {} --discard-vps-writes",
                dir.display(),
                env.name()
            ))),
        }
    }
}

/// Starts the VPS's cluster read-only, names and dumps what changed, stops it; returns the
/// report (also written as `report.txt` beside the dumps).
async fn keep(env: &Env, wal: &WalAfter, timeline: u32, dir: &Path, out: &Out) -> Result<String> {
    let c = env.vps_cluster.as_ref();
    out.line(&format!(
        "    the VPS wrote after the split: starting {} read-only to keep it",
        c.label()
    ));
    c.start()
        .await
        .map_err(f("starting the VPS's cluster read-only"))?;
    let result = describe_and_dump(env, wal, dir).await;
    c.stop(StopMode::Fast)
        .await
        .map_err(f("stopping the VPS's cluster again"))?;
    let dbs = result?;
    let mut r = format!(
        "The VPS wrote after the split (timeline {timeline}, from {} to {}, {} WAL record(s)){}:\n",
        wal.from,
        wal.end.map(|l| l.to_string()).unwrap_or_else(|| "?".into()),
        wal.records,
        if wal.complete {
            String::new()
        } else {
            format!(
                "; its WAL is not all there ({}): what it wrote cannot all be counted, every database is kept",
                wal.problem.as_deref().unwrap_or("?")
            )
        }
    );
    for d in &dbs {
        let tables: Vec<String> = d
            .tables
            .iter()
            .map(|(t, ch)| {
                format!(
                    "{t} {} inserted, {} updated, {} deleted",
                    ch.inserted, ch.updated, ch.deleted
                )
            })
            .collect();
        r.push_str(&format!(
            "  {}: {}\n",
            d.name,
            if tables.is_empty() {
                "(counts unknown)".to_owned()
            } else {
                tables.join("; ")
            }
        ));
        if !d.attachments.is_empty() {
            r.push_str(&format!(
                "  {}: {} attachment(s) written there; their files stay in the VPS's filestore ({}/filestore/{}): {}\n",
                d.name,
                d.attachments.len(),
                env.inst.data_dir.display(),
                d.name,
                d.attachments.join(", ")
            ));
        }
        r.push_str(&format!(
            "  kept: {} (pg_dump -Fc; `pg_restore -l` lists it)\n",
            dir.join(format!("{}.dump", d.name)).display()
        ));
    }
    r.push_str("pg_rewind makes the VPS follow this server and discards these writes from its live database.\n");
    let path = dir.join("report.txt");
    let text = r.clone();
    tokio::task::spawn_blocking(move || std::fs::write(&path, text))
        .await
        .map_err(|e| FailoverError::failed("writing the report", e))?
        .map_err(|e| FailoverError::failed("writing the report", e))?;
    Ok(r)
}

/// Names the tables and attachments per database, dumps each database with changes.
async fn describe_and_dump(env: &Env, wal: &WalAfter, dir: &Path) -> Result<Vec<DbWrites>> {
    let oids: BTreeMap<u32, String> = env
        .vps_psql("postgres")
        .query(
            "SELECT oid::text, datname FROM pg_database WHERE datallowconn AND NOT datistemplate",
        )
        .await
        .map_err(f("listing the VPS's databases"))?
        .into_iter()
        .filter_map(|r| {
            Some((
                r.first().cloned().flatten()?.parse().ok()?,
                r.get(1).cloned().flatten()?,
            ))
        })
        .collect();
    let mut per_db: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for (db, rel) in wal.rels.keys() {
        per_db.entry(*db).or_default().push(*rel);
    }
    if !wal.complete {
        for oid in oids.keys() {
            per_db.entry(*oid).or_default();
        }
    }
    let mut out = Vec::new();
    for (oid, rels) in per_db {
        let Some(name) = oids.get(&oid) else { continue };
        if !valid_db(name) {
            continue;
        }
        let sql = env.vps_psql(name);
        let names = walafter::relation_names(&sql, &rels)
            .await
            .map_err(f(format!("naming the tables of {name}")))?;
        let mut tables = Vec::new();
        let mut xids = BTreeSet::new();
        for rel in &rels {
            let (Some(t), Some(ch)) = (names.get(rel), wal.rels.get(&(oid, *rel))) else {
                continue;
            };
            if t.starts_with("pg_toast.") || ch.total() == 0 {
                continue;
            }
            tables.push((t.clone(), *ch));
            if t == "public.ir_attachment" {
                xids.extend(wal.xids.get(&(oid, *rel)).into_iter().flatten());
            }
        }
        if tables.is_empty() && wal.complete {
            continue;
        }
        let attachments = if xids.is_empty() {
            Vec::new()
        } else {
            let list: Vec<String> = xids.iter().map(u32::to_string).collect();
            rows(
                &sql,
                &format!(
                    "SELECT id || ' ' || coalesce(store_fname, '(no file)') FROM ir_attachment WHERE xmin::text::bigint IN ({}) ORDER BY id",
                    list.join(",")
                ),
            )
            .await?
        };
        dump(env, name, dir).await?;
        out.push(DbWrites {
            name: name.to_owned(),
            tables,
            attachments,
        });
    }
    Ok(out)
}

fn valid_db(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !name.starts_with(['.', '-'])
}

/// `pg_dump -Fc` of `db` on the VPS into `dir/<db>.dump` here (written as `.partial`, then
/// renamed; the folder is 0700).
async fn dump(env: &Env, db: &str, dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let d = dir.to_owned();
    tokio::task::spawn_blocking(move || {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&d)
    })
    .await
    .map_err(|e| FailoverError::failed("making the folder for the kept writes", e))?
    .map_err(|e| FailoverError::failed(format!("making {}", dir.display()), e))?;
    let part = dir.join(format!("{db}.dump.partial"));
    let file = tokio::fs::File::create(&part)
        .await
        .map_err(|e| FailoverError::failed(format!("creating {}", part.display()), e))?;
    let spec = walafter::dump_spec(env.vps_cluster.as_ref(), db);
    let o = env
        .vps
        .stream(&spec, None, Box::new(file))
        .await
        .map_err(|e| FailoverError::failed(format!("dumping {db} on the VPS"), e))?;
    if !o.status.success() {
        return Err(FailoverError::Refused(format!(
            "pg_dump of {db} on the VPS failed: {}",
            o.stderr_text().trim()
        )));
    }
    let done = dir.join(format!("{db}.dump"));
    tokio::fs::rename(&part, &done)
        .await
        .map_err(|e| FailoverError::failed(format!("renaming {}", part.display()), e))
}
