//! Our seam over PostgreSQL: a small [`Sql`] trait that runs one statement and returns rows
//! of text, with two implementations:
//! - [`PgClient`]: tokio-postgres over TCP, password from a `.pgpass` file;
//! - [`Psql`]: the `psql` program run through a [`Host`] as an OS user (a local cluster
//!   reached by peer authentication on its socket, or one on another machine over SSH).
//!
//! Statements are built with [`crate::quote_literal`] / [`crate::quote_ident`]; nothing we send
//! holds a plaintext password (roles get SCRAM verifiers computed here).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use host::{CommandSpec, Host, HostError};
use tokio_postgres::error::SqlState;
use tokio_postgres::SimpleQueryMessage;

use crate::conninfo::ConnInfo;
use crate::error::{PgreplError, Result};

/// One row: each column as text, `None` for NULL.
pub type Row = Vec<Option<String>>;

/// Runs SQL on one server.
#[async_trait]
pub trait Sql: Send + Sync {
    /// `host:port` (or a description), for messages.
    fn server(&self) -> String;

    /// Runs one statement; returns its rows. Not retried: the caller knows whether it is safe.
    async fn query(&self, sql: &str) -> Result<Vec<Row>>;
}

/// The first column of the first row, if any (and not NULL).
pub async fn query_value(db: &dyn Sql, sql: &str) -> Result<Option<String>> {
    Ok(db
        .query(sql)
        .await?
        .into_iter()
        .next()
        .and_then(|r| r.into_iter().next().flatten()))
}

/// The first column of the first row as a WAL position (`pg_current_wal_lsn()`,
/// `pg_last_wal_replay_lsn()`...); `None` when it is NULL (a primary asked for its replay).
pub async fn query_lsn(db: &dyn Sql, sql: &str) -> Result<Option<crate::Lsn>> {
    query_value(db, sql)
        .await?
        .map(|v| {
            v.parse().map_err(|e: String| PgreplError::Parse {
                tool: "psql".into(),
                detail: e,
            })
        })
        .transpose()
}

/// Runs a statement whose rows do not matter.
pub async fn execute(db: &dyn Sql, sql: &str) -> Result<()> {
    db.query(sql).await.map(drop)
}

/// A tokio-postgres connection.
pub struct PgClient {
    client: tokio_postgres::Client,
    server: String,
}

impl PgClient {
    /// Connects with a libpq-style connection string. The password comes from
    /// `password=` (discouraged), else the `passfile=` file, else `$PGPASSFILE`, else
    /// `~/.pgpass`, looked up as libpq does; a password file readable by others is refused.
    pub async fn connect(conninfo: &str) -> Result<Self> {
        let mut info = ConnInfo::parse(conninfo)?;
        let passfile = info.remove("passfile");
        let host_name = info.host().to_owned();
        let port = info.port()?;
        let user = info.get("user").unwrap_or("postgres").to_owned();
        let dbname = info.get("dbname").unwrap_or(&user).to_owned();
        let server = format!("{host_name}:{port}");
        let mut password = info.remove("password");
        if password.is_none() {
            let path = passfile
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("PGPASSFILE").map(PathBuf::from))
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".pgpass")));
            if let Some(path) = path {
                let file = crate::pgpass::load(&host::LocalHost::new(), &path).await?;
                password = file
                    .lookup(&host_name, port, &dbname, &user)
                    .map(str::to_owned);
            }
        }
        // Parse what is left (no password in it) with tokio-postgres's own parser.
        let mut cfg: tokio_postgres::Config = info
            .to_libpq()
            .parse()
            .map_err(|e| PgreplError::invalid("connection string", format!("{info}: {e}")))?;
        if cfg.get_connect_timeout().is_none() {
            cfg.connect_timeout(Duration::from_secs(10));
        }
        if let Some(p) = &password {
            cfg.password(p.as_bytes());
        }
        let (client, connection) = cfg
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(|e| connect_error(&server, &user, password.is_some(), e))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("connection closed: {e}");
            }
        });
        Ok(Self { client, server })
    }
}

/// Turns a failed connection into advice, branching on SQLSTATE.
fn connect_error(
    server: &str,
    user: &str,
    had_password: bool,
    e: tokio_postgres::Error,
) -> PgreplError {
    let code = e.code().cloned();
    let hint = match code {
        Some(c) if c == SqlState::INVALID_PASSWORD => format!(
            "the server rejected the password of role {user}: fix its line in the .pgpass file \
             (host:port:database:user:password), or set the role's password again with prepare-primary"
        ),
        Some(c) if c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION => format!(
            "no pg_hba.conf line lets {user} in from this machine: run `pgrepl prepare-primary` \
             with this server's address, or add the line yourself ({})",
            e.as_db_error().map(|d| d.message().to_owned()).unwrap_or_default()
        ),
        Some(c) if c == SqlState::INVALID_CATALOG_NAME => {
            "that database does not exist: check dbname= in the connection string".to_owned()
        }
        Some(c) => format!(
            "{} ({})",
            e.as_db_error().map(|d| d.message().to_owned()).unwrap_or_default(),
            c.code()
        ),
        None if !had_password && e.to_string().contains("password missing") => format!(
            "the server wants a password for {user} and none was found: add a line for \
             {server} to the .pgpass file (or passfile=)"
        ),
        None => format!("{e}: is PostgreSQL running there and listening on that address and port?"),
    };
    PgreplError::Connect {
        server: server.to_owned(),
        user: user.to_owned(),
        hint,
        source: Some(Box::new(e)),
    }
}

#[async_trait]
impl Sql for PgClient {
    fn server(&self) -> String {
        self.server.clone()
    }

    async fn query(&self, sql: &str) -> Result<Vec<Row>> {
        let msgs = self
            .client
            .simple_query(sql)
            .await
            .map_err(|e| PgreplError::Sql {
                server: self.server.clone(),
                during: format!("`{}`", short(sql)),
                message: e
                    .as_db_error()
                    .map(|d| d.message().to_owned())
                    .unwrap_or_else(|| e.to_string()),
                code: e.code().map(|c| c.code().to_owned()),
            })?;
        Ok(msgs
            .into_iter()
            .filter_map(|m| match m {
                SimpleQueryMessage::Row(r) => {
                    Some((0..r.len()).map(|i| r.get(i).map(str::to_owned)).collect())
                }
                _ => None,
            })
            .collect())
    }
}

/// The first line of a statement, for messages.
fn short(sql: &str) -> String {
    let line = sql.trim().lines().next().unwrap_or_default();
    if line.len() > 80 {
        format!(
            "{}…",
            &line[..line
                .char_indices()
                .nth(79)
                .map(|(i, _)| i)
                .unwrap_or(line.len())]
        )
    } else {
        line.to_owned()
    }
}

/// `psql` run through a host as an OS user, over a Unix socket directory or TCP.
#[derive(Clone)]
pub struct Psql {
    host: Arc<dyn Host>,
    bindir: Option<PathBuf>,
    os_user: String,
    /// `-h`: a socket directory or a host name.
    pg_host: String,
    port: u16,
    user: Option<String>,
    dbname: String,
    limit: Duration,
}

/// Marks NULL in psql's CSV output (which prints NULL and '' alike otherwise).
const NULL_MARK: &str = "\u{2}";

impl Psql {
    /// `psql -h pg_host -p port -d dbname` run as `os_user` on `host`.
    pub fn new(
        host: Arc<dyn Host>,
        os_user: impl Into<String>,
        pg_host: impl Into<String>,
        port: u16,
        dbname: impl Into<String>,
    ) -> Self {
        Self {
            host,
            bindir: None,
            os_user: os_user.into(),
            pg_host: pg_host.into(),
            port,
            user: None,
            dbname: dbname.into(),
            limit: Duration::from_secs(300),
        }
    }

    /// Gives each statement (connection included) at most `limit`, enforced where psql runs
    /// (the host ends the command and frees its connection), instead of 300 s: for a probe
    /// of a server that may be frozen.
    pub fn with_timeout(mut self, limit: Duration) -> Self {
        self.limit = limit;
        self
    }

    /// Uses `bindir/psql` instead of the one in `PATH`.
    pub fn with_bindir(mut self, bindir: impl Into<PathBuf>) -> Self {
        self.bindir = Some(bindir.into());
        self
    }

    /// Connects as this role instead of the OS user's name.
    pub fn with_user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    /// The same server, another database.
    pub fn database(&self, dbname: impl Into<String>) -> Self {
        let mut s = self.clone();
        s.dbname = dbname.into();
        s
    }
}

#[async_trait]
impl Sql for Psql {
    fn server(&self) -> String {
        format!("{}:{} on {}", self.pg_host, self.port, self.host.name())
    }

    async fn query(&self, sql: &str) -> Result<Vec<Row>> {
        let spec = self.spec(sql.as_bytes().to_vec(), true);
        match self.host.run(&spec).await {
            Ok(out) => parse_csv(&out.stdout_text()),
            Err(HostError::CommandFailed { stderr_tail, .. }) => {
                Err(psql_error(&self.server(), sql, &stderr_tail))
            }
            Err(e) => Err(PgreplError::host(
                format!("running psql on {}", self.server()),
                e,
            )),
        }
    }
}

/// One statement of a [`Psql::batch`]: on another database of the same server (`db`), or on
/// the one of the statement before it (the batch's own for the first).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stmt {
    /// The database to connect to first (`\connect`), if another.
    pub db: Option<String>,
    /// One SQL statement.
    pub sql: String,
}

impl Stmt {
    /// `sql` on the database the statement before it used.
    pub fn here(sql: impl Into<String>) -> Self {
        Self {
            db: None,
            sql: sql.into(),
        }
    }

    /// `sql` on `db`.
    pub fn on(db: impl Into<String>, sql: impl Into<String>) -> Self {
        Self {
            db: Some(db.into()),
            sql: sql.into(),
        }
    }
}

/// Marks where a statement's output starts in a batch's stdout (never in psql's CSV: a NULL
/// is `\x02` alone in its field).
const BATCH_MARK: &str = "\u{2}\u{3}odoo-standby-batch ";

impl Psql {
    /// The psql command for `script` on stdin (never argv, where `ps` shows it);
    /// `stop_on_error` ends it at the first error (exit 3).
    fn spec(&self, script: Vec<u8>, stop_on_error: bool) -> CommandSpec {
        let program = match &self.bindir {
            Some(b) => b.join("psql").display().to_string(),
            None => "psql".to_owned(),
        };
        let stop = format!("ON_ERROR_STOP={}", u8::from(stop_on_error));
        let mut spec = CommandSpec::new(program)
            .args(["-X", "-q", "-t", "--csv", "-v", &stop])
            .args(["-v", "VERBOSITY=verbose"])
            .args(["-P", &format!("null={NULL_MARK}"), "-h", &self.pg_host])
            .args(["-p", &self.port.to_string(), "-d", &self.dbname, "-f", "-"])
            .env(
                "PGCONNECT_TIMEOUT",
                self.limit.as_secs().clamp(2, 300).to_string(),
            )
            .run_as(self.os_user.clone())
            .timeout(self.limit)
            .carries_sql()
            .secret_stdin(script);
        if let Some(u) = &self.user {
            spec = spec.args(["-U", u]);
        }
        spec
    }

    /// Runs `stmts` in one psql process, each after the one before whatever it gave (a
    /// failed statement does not stop the others), and returns each one's rows or error, in
    /// order. One process instead of one per statement: `status` of a fleet asks each
    /// standby here a handful of questions, and on two cores the programs started cost more
    /// than the answers. `Err` when psql could not run or not connect to its first database.
    /// A statement whose `\connect` fails gets that error, and those after it are not run
    /// (psql ends there, as it does in a script): each gets an error that says so.
    pub async fn batch(&self, stmts: &[Stmt]) -> Result<Vec<Result<Vec<Row>>>> {
        let items: Vec<Item<'_>> = stmts.iter().map(Item::of).collect();
        Ok(self
            .run_items(&items)
            .await?
            .into_iter()
            .map(Answer::into_result)
            .collect())
    }

    /// Whether `other` runs its psql the same way (same host, OS user, program and role), so
    /// that one process can reach both servers.
    fn runs_like(&self, other: &Psql) -> bool {
        self.host.name() == other.host.name()
            && self.os_user == other.os_user
            && self.bindir == other.bindir
            && self.user == other.user
    }

    /// The `\connect` argument to this server's database `db`, as a conninfo string (host
    /// and port of its own: the statements before it were on another server).
    fn conninfo(&self, db: &str) -> String {
        let v = |s: &str| format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"));
        let mut c = format!(
            "dbname={} host={} port={}",
            v(db),
            v(&self.pg_host),
            self.port
        );
        if let Some(u) = &self.user {
            c.push_str(&format!(" user={}", v(u)));
        }
        c
    }

    /// One psql process for `items`; `Err` when it did not run or did not connect to its
    /// first database.
    async fn run_items(&self, items: &[Item<'_>]) -> Result<Vec<Answer>> {
        let (script, lines) = batch_script(items);
        let out = self
            .host
            .run_unchecked(&self.spec(script.into_bytes(), false))
            .await
            .map_err(|e| PgreplError::host(format!("running psql on {}", self.server()), e))?;
        let stdout = out.stdout_text();
        let stderr = out.stderr_text();
        if !stdout.starts_with(BATCH_MARK) {
            // Not even the first mark: psql did not connect (or did not start).
            let first = items.first().map(|s| s.sql).unwrap_or_default();
            return Err(psql_error(&self.server(), first, &stderr));
        }
        Ok(split_batch(&self.server(), items, &lines, &stdout, &stderr))
    }
}

/// One part's answers in [`batch_many`]: each statement's, or why its server was not reached.
type PartAnswers = Result<Vec<Result<Vec<Row>>>>;

/// Runs each part's statements on the part's own server, in as few psql processes as it
/// can: one for all the parts whose psql runs alike (same host, OS user, program and role),
/// started on the first one's server, every later part reached by a `\connect` to its server
/// and database. `status` of fifty standbys here is then two psql processes, not a hundred.
/// Each part gets its answers as [`Psql::batch`] gives them, or `Err` when its server could
/// not be reached: psql ends there (as it does in a script), and the parts after it go on in
/// a new process. When psql itself fails (it cannot run, or runs out of time), every part of
/// that process gets the error.
pub async fn batch_many(parts: &[(Psql, Vec<Stmt>)]) -> Vec<PartAnswers> {
    let mut done: Vec<Option<PartAnswers>> = parts
        .iter()
        .map(|(_, stmts)| stmts.is_empty().then(|| Ok(Vec::new())))
        .collect();
    while let Some(lead) = done.iter().position(Option::is_none) {
        let psql = &parts[lead].0;
        let group: Vec<usize> = (lead..parts.len())
            .filter(|j| done[*j].is_none() && parts[*j].0.runs_like(psql))
            .collect();
        let mut items = Vec::new();
        let mut owner = Vec::new();
        for (k, j) in group.iter().enumerate() {
            let (part, stmts) = &parts[*j];
            for (m, s) in stmts.iter().enumerate() {
                let mut item = Item::of(s);
                if m == 0 && k > 0 {
                    let db = s.db.as_deref().unwrap_or(&part.dbname);
                    item.connect = Some(part.conninfo(db));
                }
                items.push(item);
                owner.push(*j);
            }
        }
        let answers = match psql.run_items(&items).await {
            Ok(a) => a,
            Err(e) => {
                // Not connected to its first server: that part's error. Psql that could
                // not run at all: the error of every part it carried.
                if matches!(e, PgreplError::Host { .. }) {
                    let why = chain(&e);
                    for j in &group[1..] {
                        done[*j] = Some(Err(PgreplError::State(format!(
                            "not asked: the psql that was to ask it failed: {why}"
                        ))));
                    }
                }
                done[lead] = Some(Err(e));
                continue;
            }
        };
        let mut answers = answers.into_iter().zip(owner).peekable();
        for j in &group {
            let mut mine = Vec::new();
            while let Some((a, _)) = answers.next_if(|(_, o)| o == j) {
                mine.push(a);
            }
            match mine.first() {
                Some(Answer::ConnectFailed(_)) => {
                    if let Some(Answer::ConnectFailed(e)) = mine.into_iter().next() {
                        done[*j] = Some(Err(e));
                    }
                    // The parts after it were not run: the next process takes them.
                    break;
                }
                Some(Answer::NotRun(_)) => break,
                _ => {
                    done[*j] = Some(Ok(mine.into_iter().map(Answer::into_result).collect()));
                }
            }
        }
    }
    done.into_iter()
        .map(|d| d.unwrap_or_else(|| Ok(Vec::new())))
        .collect()
}

/// An error and its sources, on one line.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        text.push_str(": ");
        text.push_str(&s.to_string());
        next = s.source();
    }
    text
}

/// A statement as a script runs it: the `\connect` argument before it, if any.
struct Item<'a> {
    connect: Option<String>,
    sql: &'a str,
}

impl<'a> Item<'a> {
    fn of(s: &'a Stmt) -> Self {
        Self {
            connect: s.db.clone(),
            sql: &s.sql,
        }
    }
}

/// What a batch's statement got.
enum Answer {
    /// Its rows, or the error its SQL gave.
    Ran(Result<Vec<Row>>),
    /// Its `\connect` failed (and psql ended there).
    ConnectFailed(PgreplError),
    /// Psql ended before it.
    NotRun(PgreplError),
}

impl Answer {
    fn into_result(self) -> Result<Vec<Row>> {
        match self {
            Answer::Ran(r) => r,
            Answer::ConnectFailed(e) | Answer::NotRun(e) => Err(e),
        }
    }
}

/// Where a statement's part of a script is: the line (1-based) of its mark, and of its
/// `\connect` if it has one.
struct Lines {
    start: usize,
    connect: Option<usize>,
}

/// The script of a batch, and where each statement's part is: its mark, its `\connect`,
/// its SQL, on lines of their own.
fn batch_script(items: &[Item<'_>]) -> (String, Vec<Lines>) {
    let mut script = String::new();
    let mut lines = Vec::new();
    let mut line = 1;
    for (i, s) in items.iter().enumerate() {
        let start = line;
        // psql's `\echo '...'` reads octal escapes: \002\003 is the mark's start.
        script.push_str(&format!("\\echo '\\002\\003odoo-standby-batch {i}'\n"));
        line += 1;
        let mut connect = None;
        if let Some(target) = &s.connect {
            script.push_str(&format!(
                "\\connect '{}'\n",
                target.replace('\\', "\\\\").replace('\'', "\\'")
            ));
            connect = Some(line);
            line += 1;
        }
        let sql = s.sql.trim().trim_end_matches(';');
        script.push_str(sql);
        script.push_str(";\n");
        line += sql.matches('\n').count() + 1;
        lines.push(Lines { start, connect });
    }
    (script, lines)
}

/// Each statement's rows (its part of stdout, after its mark) or error (a psql error line
/// of stderr, `psql:<stdin>:LINE: ...`, whose line falls in its part of the script).
fn split_batch(
    server: &str,
    items: &[Item<'_>],
    lines: &[Lines],
    stdout: &str,
    stderr: &str,
) -> Vec<Answer> {
    let mut parts: Vec<Option<&str>> = vec![None; items.len()];
    for chunk in stdout.split(BATCH_MARK).skip(1) {
        let (i, rest) = chunk.split_once('\n').unwrap_or((chunk, ""));
        if let Some(p) = i
            .trim()
            .parse::<usize>()
            .ok()
            .and_then(|i| parts.get_mut(i))
        {
            *p = Some(rest);
        }
    }
    let mut errors: Vec<Option<(usize, String)>> = vec![None; items.len()];
    for l in stderr.lines() {
        let Some(n) = l
            .strip_prefix("psql:<stdin>:")
            .and_then(|r| r.split_once(':'))
            .and_then(|(n, _)| n.parse::<usize>().ok())
        else {
            continue;
        };
        let i = lines.partition_point(|s| s.start <= n).saturating_sub(1);
        if let Some(e) = errors.get_mut(i) {
            // The first line of an error is the one that names it.
            e.get_or_insert_with(|| (n, l.to_owned()));
        }
    }
    items
        .iter()
        .zip(lines)
        .zip(parts)
        .zip(errors)
        .map(|(((s, at), out), err)| match (err, out) {
            (Some((n, e)), _) if at.connect == Some(n) => {
                // `psql:<stdin>:2: error: \connect: connection to server ... failed: ...`
                let what = e.splitn(4, ':').nth(3).unwrap_or(&e).trim();
                Answer::ConnectFailed(psql_error(server, s.sql, what))
            }
            (Some((_, e)), _) => Answer::Ran(Err(psql_error(server, s.sql, &e))),
            (None, Some(out)) => Answer::Ran(parse_csv(out)),
            (None, None) => Answer::NotRun(PgreplError::Sql {
                server: server.to_owned(),
                during: format!("`{}`", short(s.sql)),
                message: format!(
                    "not run: psql ended before it{}",
                    stderr
                        .lines()
                        .rfind(|l| l.starts_with("psql:"))
                        .map(|l| format!(", after: {}", l.trim()))
                        .unwrap_or_default()
                ),
                code: None,
            }),
        })
        .collect()
}

/// Reads `psql: ... ERROR:  42P01: message` (VERBOSITY=verbose) into a typed error.
fn psql_error(server: &str, sql: &str, stderr: &str) -> PgreplError {
    let line = stderr
        .lines()
        .find(|l| l.contains("ERROR:") || l.contains("FATAL:") || l.contains("error:"))
        .unwrap_or(stderr)
        .to_owned();
    let after = line
        .split_once("ERROR:")
        .or_else(|| line.split_once("FATAL:"))
        .map(|(_, r)| r.trim())
        .unwrap_or(line.trim());
    let (code, message) = match after.split_once(": ") {
        Some((c, m)) if c.len() == 5 && c.chars().all(|ch| ch.is_ascii_alphanumeric()) => {
            (Some(c.to_owned()), m.to_owned())
        }
        _ => (None, after.to_owned()),
    };
    PgreplError::Sql {
        server: server.to_owned(),
        during: format!("`{}`", short(sql)),
        message,
        code,
    }
}

/// Parses psql's `--csv` output (no header) with our NULL marker.
fn parse_csv(text: &str) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    let mut row: Row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut was_quoted = false;
    let mut chars = text.chars().peekable();
    let finish = |field: &mut String, was_quoted: bool, row: &mut Row| {
        let f = std::mem::take(field);
        row.push(if !was_quoted && f == NULL_MARK {
            None
        } else {
            Some(f)
        });
    };
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                c => field.push(c),
            }
            continue;
        }
        match c {
            '"' => {
                quoted = true;
                was_quoted = true;
            }
            ',' => {
                finish(&mut field, was_quoted, &mut row);
                was_quoted = false;
            }
            '\n' => {
                finish(&mut field, was_quoted, &mut row);
                was_quoted = false;
                rows.push(std::mem::take(&mut row));
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            c => field.push(c),
        }
    }
    if quoted {
        return Err(PgreplError::Parse {
            tool: "psql --csv".into(),
            detail: "unterminated quoted field".into(),
        });
    }
    if !field.is_empty() || was_quoted || !row.is_empty() {
        finish(&mut field, was_quoted, &mut row);
        rows.push(row);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_with_nulls_quotes_and_newlines() {
        let text = "1,\u{2},,\"a,b\",\"l1\nl2\",\"q\"\"q\"\n2,x,\"\",y,z,w\n";
        let rows = parse_csv(text).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            rows[0],
            vec![
                Some("1".into()),
                None,
                Some("".into()),
                Some("a,b".into()),
                Some("l1\nl2".into()),
                Some("q\"q".into())
            ]
        );
        assert_eq!(rows[1][2], Some(String::new()));
        assert!(parse_csv("").unwrap().is_empty());
    }

    #[test]
    fn psql_errors_keep_their_sqlstate() {
        let e = psql_error(
            "s",
            "SELECT 1",
            "psql:<stdin>:1: ERROR:  42P01: relation \"nosuch\" does not exist\nLINE 1: ...",
        );
        assert_eq!(e.sqlstate(), Some("42P01"));
        assert!(e.to_string().contains("relation \"nosuch\" does not exist"));
    }
}
