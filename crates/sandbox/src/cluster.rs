//! PostgreSQL clusters on loopback, made with `initdb` or `pg_basebackup` and run with `pg_ctl`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Result, SandboxError};
use crate::os::{self, RunUser};
use crate::procs::{self, ProcessTable, Tracked};

/// Everything a cluster needs from its sandbox.
#[derive(Clone, Debug)]
pub(crate) struct ClusterEnv {
    pub(crate) root: PathBuf,
    pub(crate) user: RunUser,
    pub(crate) bindir: PathBuf,
    pub(crate) password: String,
    pub(crate) passfile: PathBuf,
    pub(crate) procs: Arc<ProcessTable>,
}

/// One PostgreSQL cluster of a sandbox, listening on `127.0.0.1:port` and on a private
/// socket directory. Its superuser is `postgres`, with a generated password that the
/// sandbox's 0600 `.pgpass` holds. Cheap to clone: every clone drives the same server.
#[derive(Clone, Debug)]
pub struct Cluster {
    name: String,
    port: u16,
    dir: PathBuf,
    env: ClusterEnv,
}

/// Settings every sandbox cluster gets: loopback only, replication-ready, small and fast
/// (`fsync = off` is safe here: a killed process loses nothing the OS has, and these clusters
/// never outlive the machine).
fn base_settings(port: u16, socket_dir: &Path) -> String {
    format!(
        "\n# odoo-standby sandbox\n\
         port = {port}\n\
         listen_addresses = '127.0.0.1'\n\
         unix_socket_directories = '{}'\n\
         fsync = off\n\
         shared_buffers = 16MB\n\
         max_connections = 40\n\
         wal_level = replica\n\
         max_wal_senders = 10\n\
         max_replication_slots = 10\n\
         hot_standby = on\n\
         logging_collector = off\n\
         log_line_prefix = '%m [%p] %q%u@%d '\n",
        socket_dir.display()
    )
}

impl Cluster {
    fn layout(env: &ClusterEnv, name: &str) -> PathBuf {
        env.root.join("pg").join(name)
    }

    /// A new, empty cluster directory with a free port; refuses a name already used.
    fn fresh(env: &ClusterEnv, name: &str) -> Result<Self> {
        let dir = Self::layout(env, name);
        if dir.exists() {
            return Err(SandboxError::Usage(format!(
                "a cluster named {name:?} already exists in this sandbox"
            )));
        }
        let c = Self {
            name: name.to_owned(),
            port: os::free_port()?,
            dir,
            env: env.clone(),
        };
        c.make_dirs()?;
        Ok(c)
    }

    /// `initdb` a new cluster and start it.
    pub(crate) fn init(env: &ClusterEnv, name: &str) -> Result<Self> {
        let c = Self::fresh(env, name)?;
        // The password reaches initdb through a 0600 file owned by the server user.
        let pwfile = c.dir.join("pwfile");
        os::write_new(&pwfile, env.password.as_bytes(), 0o600)?;
        env.user.chown(&pwfile)?;
        let mut cmd = env.user.command(env.bindir.join("initdb"));
        cmd.arg("-D")
            .arg(c.data_dir())
            .args(["-U", "postgres", "-A", "trust", "--auth-host=scram-sha-256"])
            .args(["-E", "UTF8", "--no-locale", "-N", "--pwfile"])
            .arg(&pwfile);
        let made = os::run(cmd, None);
        let _ = std::fs::remove_file(&pwfile);
        made?;
        c.append_conf(&base_settings(c.port, &c.socket_dir()))?;
        c.write_hba()?;
        c.start_first()
    }

    /// Like a locked-down VPS: the Unix socket (private to the server user) trusts, TCP lets
    /// in only the superuser; every other role needs a line someone adds (pgrepl's block).
    fn write_hba(&self) -> Result<()> {
        let path = self.data_dir().join("pg_hba.conf");
        let text = "# odoo-standby sandbox\n\
                    local   all          all                     trust\n\
                    local   replication  all                     trust\n\
                    host    all          postgres  127.0.0.1/32  scram-sha-256\n\
                    host    replication  postgres  127.0.0.1/32  scram-sha-256\n";
        std::fs::write(&path, text).map_err(|e| SandboxError::io("cannot write", &path, e))
    }

    /// A standby of `primary`, cloned with `pg_basebackup -R` as `postgres`, then started.
    pub(crate) fn standby_of(env: &ClusterEnv, name: &str, primary: &Cluster) -> Result<Self> {
        let c = Self::fresh(env, name)?;
        let mut cmd = env.user.command(env.bindir.join("pg_basebackup"));
        cmd.arg("-D")
            .arg(c.data_dir())
            .args(["-X", "stream", "-c", "fast", "-R", "-w", "-h", "127.0.0.1"])
            .args(["-p", &primary.port.to_string(), "-U", "postgres"])
            .env("PGPASSFILE", &env.passfile);
        os::run(cmd, None)?;
        // The copied postgresql.conf has the primary's port and socket: later lines win.
        c.append_conf(&base_settings(c.port, &c.socket_dir()))?;
        c.start_first()
    }

    fn make_dirs(&self) -> Result<()> {
        os::mkdir(&self.dir, 0o700)?;
        self.env.user.chown(&self.dir)?;
        os::mkdir(&self.socket_dir(), 0o700)?;
        self.env.user.chown(&self.socket_dir())
    }

    /// Starts a new cluster; when another process took its port in the meantime, moves to
    /// a fresh port (a few times) instead of failing.
    fn start_first(mut self) -> Result<Self> {
        let mut attempts = 0;
        loop {
            match self.start() {
                Ok(()) => return Ok(self),
                Err(_) if attempts < 5 && self.log_tail().contains("could not bind") => {
                    attempts += 1;
                    self.port = os::free_port()?;
                    self.append_conf(&format!("port = {}\n", self.port))?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn append_conf(&self, text: &str) -> Result<()> {
        use std::io::Write;
        let path = self.data_dir().join("postgresql.conf");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| SandboxError::io("cannot open", &path, e))?;
        f.write_all(text.as_bytes())
            .map_err(|e| SandboxError::io("cannot append to", &path, e))
    }

    /// Its name in the sandbox.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The directory of its Unix socket.
    pub fn socket_dir(&self) -> PathBuf {
        self.dir.join("sock")
    }

    /// The server log file.
    pub fn log_file(&self) -> PathBuf {
        self.dir.join("postgresql.log")
    }

    /// The OS user the server runs as.
    pub fn os_user(&self) -> &RunUser {
        &self.env.user
    }

    /// PostgreSQL's server programs used for it.
    pub fn bindir(&self) -> &Path {
        &self.env.bindir
    }

    /// The superuser's password (sandbox-generated, for test clients; never logged).
    pub fn superuser_password(&self) -> &str {
        &self.env.password
    }

    /// The sandbox's 0600 passfile that has the superuser's password for every cluster.
    pub fn passfile(&self) -> &Path {
        &self.env.passfile
    }

    /// A libpq connection string for `db` as the superuser over TCP, without the password
    /// (libpq finds it in the passfile).
    pub fn conninfo(&self, db: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname={db} passfile={}",
            self.port,
            self.env.passfile.display()
        )
    }

    /// A tokio-postgres config for `db` as the superuser over TCP, password included.
    pub fn client_config(&self, db: &str) -> tokio_postgres::Config {
        let mut cfg = tokio_postgres::Config::new();
        cfg.host("127.0.0.1")
            .port(self.port)
            .user("postgres")
            .password(self.env.password.as_bytes())
            .dbname(db)
            .connect_timeout(Duration::from_secs(10));
        cfg
    }

    /// Connects with tokio-postgres as the superuser (the connection task is spawned).
    pub async fn connect(&self, db: &str) -> Result<tokio_postgres::Client> {
        let (client, conn) = self
            .client_config(db)
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(|source| SandboxError::Sql {
                cluster: self.name.clone(),
                source,
            })?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(client)
    }

    /// Runs SQL through `psql` over the Unix socket as the superuser, stopping at the first
    /// error; returns what it printed (unaligned, tuples only).
    pub fn psql(&self, db: &str, sql: &str) -> Result<String> {
        let mut cmd = self.env.user.command(self.env.bindir.join("psql"));
        cmd.args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(self.socket_dir())
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                db,
                "-f",
                "-",
            ]);
        let out = os::run(cmd, Some(sql.as_bytes()))?;
        Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_owned())
    }

    /// The postmaster's pid, from `postmaster.pid`, when that file exists.
    pub fn pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.data_dir().join("postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }

    /// Whether its postmaster is running.
    pub fn is_running(&self) -> bool {
        self.pid()
            .is_some_and(|pid| procs::is_our_postmaster(pid, &self.data_dir()))
    }

    /// Starts the server with `pg_ctl start -w` (no-op when it runs already).
    pub fn start(&self) -> Result<()> {
        if self.is_running() {
            return Ok(());
        }
        let mut cmd = self.env.user.command(self.env.bindir.join("pg_ctl"));
        cmd.arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.log_file())
            .args(["-w", "-t", "60", "start"]);
        if let Err(e) = os::run(cmd, None) {
            return Err(match e {
                SandboxError::Command {
                    command,
                    status,
                    stderr,
                } => SandboxError::Command {
                    command,
                    status,
                    stderr: format!("{stderr}\nserver log:\n{}", self.log_tail()),
                },
                other => other,
            });
        }
        let pid = self.pid().ok_or_else(|| SandboxError::NotReady {
            what: format!("cluster {}", self.name),
            seconds: 60,
            log: self.log_tail(),
        })?;
        self.env.procs.add(Tracked::Postmaster {
            pid,
            data_dir: self.data_dir(),
        });
        Ok(())
    }

    /// Stops the server cleanly (`pg_ctl stop -m fast`); no-op when it is not running.
    pub fn stop(&self) -> Result<()> {
        if !self.is_running() {
            self.env.procs.forget_postmaster(&self.data_dir());
            return Ok(());
        }
        let mut cmd = self.env.user.command(self.env.bindir.join("pg_ctl"));
        cmd.arg("-D")
            .arg(self.data_dir())
            .args(["-m", "fast", "-w", "-t", "60", "stop"]);
        os::run(cmd, None)?;
        self.env.procs.forget_postmaster(&self.data_dir());
        Ok(())
    }

    /// Kills the postmaster with SIGKILL, as a crash or an `kill -9` would, and waits until
    /// it and its children are gone. Returns whether it was running.
    pub fn kill(&self) -> bool {
        let Some(pid) = self.pid() else {
            return false;
        };
        let killed = procs::kill_postmaster(pid, &self.data_dir());
        self.env.procs.forget_postmaster(&self.data_dir());
        killed
    }

    /// The end of the server log.
    pub fn log_tail(&self) -> String {
        std::fs::read_to_string(self.log_file())
            .map(|s| os::tail(&s, 3000))
            .unwrap_or_default()
    }

    /// Polls `sql` (one value) on `db` until it prints `want`, up to `limit`.
    pub fn wait_for(&self, db: &str, sql: &str, want: &str, limit: Duration) -> Result<()> {
        let start = Instant::now();
        let mut last = String::new();
        while start.elapsed() < limit {
            match self.psql(db, sql) {
                Ok(v) if v == want => return Ok(()),
                Ok(v) => last = v,
                Err(e) => last = e.to_string(),
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(SandboxError::NotReady {
            what: format!(
                "{sql:?} = {want:?} on cluster {} (last: {last:?})",
                self.name
            ),
            seconds: limit.as_secs(),
            log: self.log_tail(),
        })
    }
}
