//! The files at failover: what never reached this server (reported by name; generated asset
//! bundles without a file dropped so Odoo builds them again), data_dir made the Odoo user's,
//! and, once Odoo runs, a check by HTTP that it serves.

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use host::CommandSpec;

use super::{f, hf, Run, Step};
use crate::env::{rows, Env};
use crate::error::{FailoverError, Result};
use crate::plan::{Out, RunOptions};

/// Where the failover keeps the names of the files it found lost.
pub fn lost_path(env: &Env) -> PathBuf {
    env.state.lost_files()
}

/// Attachment files referenced here but missing: lost, named; bundles rebuilt.
pub struct LostFiles;

#[async_trait]
impl Step for LostFiles {
    fn id(&self) -> &'static str {
        "lost-files"
    }
    fn title(&self) -> &'static str {
        "report attachment files that never reached this server; drop asset bundles whose files are missing (Odoo rebuilds them)"
    }
    fn runs(&self, env: &Env) -> Vec<Run> {
        vec![
            Run::note(format!(
                "per database: SELECT store_fname FROM ir_attachment, each looked up under {}/filestore/DB",
                env.layout.data_dir().display()
            )),
            Run::sql("DELETE FROM ir_attachment WHERE store_fname IN (missing) AND res_model = 'ir.ui.view' AND url LIKE '/web/assets/%' (generated bundles only)"),
            Run::file(&lost_path(env), "the lost names, per database"),
        ]
    }
    fn check(&self) -> &'static str {
        "runs every time: it reports, and removes only bundles Odoo regenerates"
    }
    fn hint(&self) -> &'static str {
        "the lost names are printed and kept in the file above: restore them from a file backup if there is one"
    }
    async fn is_done(&self, _env: &Env) -> Result<bool> {
        Ok(false)
    }
    async fn apply(&self, env: &Env, _opts: &RunOptions, out: &Out) -> Result<()> {
        let fs = env.layout.data_dir().join("filestore");
        let mut report = serde_json::Map::new();
        for db in env.databases().await? {
            let sql = env.standby_sql(&db);
            let audit = filesync::audit::audit(&sql, &db, &fs, false)
                .await
                .map_err(|e| FailoverError::failed(format!("auditing {db}"), e))?;
            let mut bundles = Vec::new();
            for chunk in audit.missing.chunks(500) {
                let list: Vec<String> = chunk.iter().map(|n| pgrepl::quote_literal(n)).collect();
                // Generated asset bundles are caches: without their rows Odoo builds them
                // again; with a row whose file is missing it answers 500 for good.
                bundles.extend(
                    rows(
                        &sql,
                        &format!(
                            "DELETE FROM ir_attachment WHERE store_fname IN ({}) AND res_model = 'ir.ui.view' AND url LIKE '/web/assets/%' RETURNING store_fname",
                            list.join(",")
                        ),
                    )
                    .await?,
                );
            }
            let lost: Vec<&String> = audit
                .missing
                .iter()
                .filter(|n| !bundles.contains(n))
                .collect();
            if lost.is_empty() && bundles.is_empty() {
                out.line(&format!("    {db}: every referenced file is here"));
            }
            if !bundles.is_empty() {
                out.line(&format!(
                    "    {db}: {} asset bundle(s) had no file here: their rows were removed, Odoo builds them again",
                    bundles.len()
                ));
            }
            if !lost.is_empty() {
                out.line(&format!(
                    "    {db}: LOST: {} attachment file(s) never reached this server (Odoo serves the rows without content):",
                    lost.len()
                ));
                for n in &lost {
                    out.line(&format!("      lost {db}/{n}"));
                }
            }
            report.insert(
                db.clone(),
                serde_json::json!({ "lost": lost, "rebuilt_bundles": bundles }),
            );
        }
        let path = lost_path(env);
        let text = serde_json::to_string_pretty(&report).unwrap_or_default() + "\n";
        tokio::task::spawn_blocking(move || std::fs::write(&path, text))
            .await
            .map_err(|e| FailoverError::failed("writing the lost files' names", e))?
            .map_err(|e| FailoverError::failed("writing the lost files' names", e))
    }
}

/// data_dir belongs to the Odoo user everywhere and is writable where Odoo writes.
pub struct OdooFiles;

fn chown_spec(env: &Env) -> CommandSpec {
    let u = &env.cfg.backup.os_user;
    CommandSpec::new("find")
        .arg(env.layout.data_dir().display().to_string())
        .args(["(", "!", "-user", u, "-o", "!", "-group", u, ")"])
        .args([
            "-print",
            "-exec",
            "chown",
            "-h",
            &format!("{u}:{u}"),
            "{}",
            "+",
        ])
}

#[async_trait]
impl Step for OdooFiles {
    fn id(&self) -> &'static str {
        "odoo-files"
    }
    fn title(&self) -> &'static str {
        "make data_dir Odoo's: owned by the Odoo user and writable by it everywhere"
    }
    fn runs(&self, env: &Env) -> Vec<Run> {
        vec![
            Run::cmd(&chown_spec(env)),
            Run::note(format!(
                "as {}: find {dd}/filestore {dd}/sessions -type d ! -writable (must find nothing)",
                env.cfg.backup.os_user,
                dd = env.layout.data_dir().display()
            )),
        ]
    }
    fn check(&self) -> &'static str {
        "runs every time: it changes only what is not Odoo's"
    }
    fn hint(&self) -> &'static str {
        "real Odoo writing into a folder it cannot write commits the row and loses the file: fix what it names"
    }
    async fn is_done(&self, _env: &Env) -> Result<bool> {
        Ok(false)
    }
    async fn apply(&self, env: &Env, _opts: &RunOptions, out: &Out) -> Result<()> {
        let u = &env.cfg.backup.os_user;
        let dd = env.layout.data_dir().display().to_string();
        let fixed = super::run(
            env.local.as_ref(),
            &chown_spec(env),
            &format!("giving {dd} to {u}"),
        )
        .await?;
        let n = fixed.lines().count();
        if n > 0 {
            out.line(&format!(
                "    {n} file(s) or folder(s) under {dd} were not {u}'s: now they are"
            ));
        }
        // Where Odoo writes: the filestore and the sessions (`addons/<version>` is 0500 by
        // Odoo's own choice).
        let mut spec = CommandSpec::new("find");
        for sub in ["filestore", "sessions"] {
            let p = env.layout.data_dir().join(sub);
            if p.is_dir() {
                spec = spec.arg(p.display().to_string());
            }
        }
        if spec.arguments().is_empty() {
            return Ok(());
        }
        let stuck = env
            .local
            .run(
                &spec
                    .args(["-type", "d", "!", "-writable"])
                    .run_as(u.clone())
                    .asks(),
            )
            .await
            .map_err(hf(format!("checking as {u} that {dd} is writable")))?;
        let stuck: Vec<String> = stuck.stdout_text().lines().map(str::to_owned).collect();
        if let Some(first) = stuck.first() {
            return Err(FailoverError::Refused(format!(
                "{u} cannot write in {} folder(s) under {dd}, e.g. {first}: Odoo would commit attachments there and lose their files; fix their modes",
                stuck.len()
            )));
        }
        Ok(())
    }
}

/// Odoo answers its login page and serves an attachment, on the port it really uses.
pub struct CheckHttp;

#[async_trait]
impl Step for CheckHttp {
    fn id(&self) -> &'static str {
        "check-http"
    }
    fn title(&self) -> &'static str {
        "check that Odoo serves: the login page answers 200 and an attachment downloads intact"
    }
    fn runs(&self, _env: &Env) -> Vec<Run> {
        vec![
            Run::note("GET http://ADDR:PORT/web/login?db=DB until 200 (up to 90 s), ADDR and PORT from odoo.conf"),
            Run::note("GET /web/content/ID?db=DB of a public attachment whose file is here; SHA-1 of the body = its checksum"),
        ]
    }
    fn check(&self) -> &'static str {
        "checked on every run"
    }
    fn hint(&self) -> &'static str {
        "journalctl -u odoo_NAME: a taken port leaves Odoo running without HTTP"
    }
    async fn is_done(&self, _env: &Env) -> Result<bool> {
        Ok(false)
    }
    async fn apply(&self, env: &Env, _opts: &RunOptions, out: &Out) -> Result<()> {
        let conf = env.instance_conf().await?;
        let (addr, port) = (conf.http_local_address(), conf.http_port());
        let fs = env.layout.data_dir().join("filestore");
        for db in env.databases().await? {
            let pick = public_attachments(&env.standby_sql(&db), &fs.join(&db), 1)
                .await?
                .into_iter()
                .next();
            let seen =
                odoo_instance::http::check_serving(&addr, port, &db, pick, Duration::from_secs(90))
                    .await
                    .map_err(|e| {
                        FailoverError::failed(format!("checking Odoo on {addr}:{port}"), e)
                    })?;
            out.line(&format!(
                "    {db}: http://{addr}:{port}/web/login answers 200{}",
                match (seen.attachment, &seen.asset) {
                    (Some(id), _) => format!("; attachment {id} downloads with its bytes"),
                    (None, Some(a)) =>
                        format!("; no public attachment yet, asset bundle {a} served"),
                    (None, None) => "; nothing to download on the login page".into(),
                }
            ));
        }
        Ok(())
    }
}

/// Up to `n` of the newest public binary attachments of a database (`db`, a connection to
/// it) whose file is in `filestore` (that database's folder): (id, SHA-1 checksum). Public,
/// because the HTTP checks that download them log nobody in.
pub(crate) async fn public_attachments(
    db: &dyn pgrepl::Sql,
    filestore: &std::path::Path,
    n: usize,
) -> Result<Vec<(i64, String)>> {
    let rows = db
        .query("SELECT id::text, checksum, store_fname FROM ir_attachment WHERE public AND type = 'binary' AND store_fname IS NOT NULL AND checksum IS NOT NULL ORDER BY id DESC LIMIT 50")
        .await
        .map_err(f(format!(
            "listing the public attachments whose files are in {}",
            filestore.display()
        )))?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            let id = r.first().cloned().flatten()?.parse::<i64>().ok()?;
            let sum = r.get(1).cloned().flatten()?;
            let name = r.get(2).cloned().flatten()?;
            filestore.join(&name).is_file().then_some((id, sum))
        })
        .take(n)
        .collect())
}
