//! An Odoo-shaped database (the tables and columns our tools read) and a filestore laid out
//! as Odoo lays it out: `<data_dir>/filestore/<db>/<sha1[:2]>/<sha1>`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use rand::{Rng, RngCore, SeedableRng};
use sha1::{Digest, Sha1};

use crate::cluster::Cluster;
use crate::error::{Result, SandboxError};
use crate::os;

/// The stand-in `odoo-bin` (Python 3), see its header for what it checks.
pub const ODOO_BIN: &str = include_str!("odoo-bin.py");

/// One attachment row and its file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    /// `ir_attachment.id`.
    pub id: i64,
    /// `xx/<sha1>`, relative to the database's filestore.
    pub store_fname: String,
    /// SHA-1 of the content, hex.
    pub checksum: String,
    /// Size in bytes.
    pub file_size: u64,
}

/// How big attachments are: weighted ranges of sizes in bytes.
#[derive(Clone, Debug)]
pub struct SizeMix {
    /// `(weight, min, max)`, sizes uniform within each range.
    pub buckets: Vec<(u32, u64, u64)>,
}

impl SizeMix {
    /// A mix like an Odoo filestore's: mostly small images and thumbnails, some PDFs, a few
    /// large scans; about 25 KB on average.
    pub fn odoo() -> Self {
        Self {
            buckets: vec![
                (70, 512, 12 * 1024),
                (24, 12 * 1024, 64 * 1024),
                (5, 64 * 1024, 256 * 1024),
                (1, 256 * 1024, 1024 * 1024),
            ],
        }
    }

    /// Every file exactly `size` bytes.
    pub fn fixed(size: u64) -> Self {
        Self {
            buckets: vec![(1, size, size)],
        }
    }

    fn sample(&self, rng: &mut impl Rng) -> u64 {
        let total: u32 = self.buckets.iter().map(|b| b.0).sum();
        let mut pick = rng.gen_range(0..total.max(1));
        for &(w, lo, hi) in &self.buckets {
            if pick < w {
                return if hi > lo { rng.gen_range(lo..=hi) } else { lo };
            }
            pick -= w;
        }
        self.buckets.last().map(|b| b.1).unwrap_or(0)
    }
}

const SCHEMA: &str = r#"
-- Odoo's registry signaling sequences (Odoo looks them up in information_schema).
CREATE SEQUENCE base_registry_signaling;
CREATE SEQUENCE base_cache_signaling;
CREATE TABLE res_users (
    id serial PRIMARY KEY, login varchar NOT NULL UNIQUE, active boolean DEFAULT true,
    password varchar, partner_id integer,
    create_date timestamp DEFAULT (now() AT TIME ZONE 'UTC'),
    write_date timestamp DEFAULT (now() AT TIME ZONE 'UTC'));
CREATE TABLE ir_module_module (
    id serial PRIMARY KEY, name varchar NOT NULL UNIQUE, state varchar(16),
    latest_version varchar,
    create_date timestamp DEFAULT (now() AT TIME ZONE 'UTC'),
    write_date timestamp DEFAULT (now() AT TIME ZONE 'UTC'));
CREATE TABLE ir_attachment (
    id serial PRIMARY KEY, name varchar NOT NULL, res_model varchar, res_field varchar,
    res_id integer, company_id integer, type varchar NOT NULL DEFAULT 'binary',
    url varchar(1024), public boolean, access_token varchar, db_datas bytea,
    store_fname varchar, file_size integer, checksum varchar(40), mimetype varchar,
    index_content text, create_uid integer,
    create_date timestamp DEFAULT (now() AT TIME ZONE 'UTC'), write_uid integer,
    write_date timestamp DEFAULT (now() AT TIME ZONE 'UTC'));
CREATE INDEX ir_attachment_checksum_index ON ir_attachment (checksum);
CREATE INDEX ir_attachment_store_fname_index ON ir_attachment (store_fname);
CREATE TABLE res_partner (
    id serial PRIMARY KEY, name varchar, email varchar,
    create_date timestamp DEFAULT (now() AT TIME ZONE 'UTC'));
INSERT INTO res_users (login, password) VALUES ('__system__', NULL), ('admin', 'admin');
INSERT INTO ir_module_module (name, state, latest_version) VALUES
    ('base', 'installed', '17.0.1.3'), ('web', 'installed', '17.0.1.0'),
    ('mail', 'installed', '17.0.1.15'), ('sale', 'uninstalled', NULL);
-- Rows without a file, as Odoo has them: URL attachments and values kept in the database.
INSERT INTO ir_attachment (name, type, url, res_model) VALUES
    ('/web/static/img/logo.png', 'url', '/web/static/img/logo.png', 'ir.ui.view');
INSERT INTO ir_attachment (name, type, db_datas, res_model, file_size) VALUES
    ('in-db.txt', 'binary', '\x68656c6c6f', 'res.partner', 5);
"#;

/// A name safe to paste into our own generated SQL (checked, as the sandbox's only guard).
fn check_ident(what: &str, s: &str) -> Result<()> {
    let ok = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok && s.len() <= 63 {
        Ok(())
    } else {
        Err(SandboxError::Usage(format!(
            "{what} {s:?} must match ^[a-z_][a-z0-9_]{{0,62}}$"
        )))
    }
}

/// The filestore directory of `db` under `data_dir`.
pub fn filestore(data_dir: &Path, db: &str) -> PathBuf {
    data_dir.join("filestore").join(db)
}

impl Cluster {
    /// Creates database `db` owned by role `owner` (a login role, created when missing) with
    /// Odoo's tables, created as `owner` (Odoo's user owns its schema).
    pub fn create_odoo_db(&self, db: &str, owner: &str) -> Result<()> {
        check_ident("database name", db)?;
        check_ident("role name", owner)?;
        self.psql(
            "postgres",
            &format!(
                "SELECT count(*) > 0 AS exists FROM pg_roles WHERE rolname = '{owner}' \\gset\n\
                 \\if :exists\n\\else\nCREATE ROLE {owner} LOGIN CREATEDB;\n\\endif\n\
                 CREATE DATABASE {db} OWNER {owner};"
            ),
        )?;
        self.psql(db, &format!("SET ROLE {owner};\n{SCHEMA}"))?;
        Ok(())
    }

    /// Inserts `n` attachments in `db` and writes their files under `data_dir`'s filestore,
    /// sizes drawn from `mix` with a PRNG seeded by `seed` (same seed, same files). About one
    /// row in fifty reuses an earlier file, as Odoo does for identical content.
    pub fn add_attachments(
        &self,
        db: &str,
        data_dir: &Path,
        n: usize,
        mix: &SizeMix,
        seed: u64,
    ) -> Result<Vec<Attachment>> {
        check_ident("database name", db)?;
        let store = filestore(data_dir, db);
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut rows: Vec<(String, String, u64)> = Vec::with_capacity(n);
        let mut buf = Vec::new();
        for i in 0..n {
            if i > 0 && rng.gen_ratio(1, 50) {
                let prev = rows[rng.gen_range(0..rows.len())].clone();
                rows.push(prev);
                continue;
            }
            let size = mix.sample(&mut rng);
            buf.resize(usize::try_from(size).unwrap_or(0), 0);
            rng.fill_bytes(&mut buf);
            let sha = hex::encode(Sha1::digest(&buf));
            let fname = format!("{}/{}", &sha[..2], sha);
            let path = store.join(&fname);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| SandboxError::io("cannot create", dir, e))?;
            }
            std::fs::write(&path, &buf).map_err(|e| SandboxError::io("cannot write", &path, e))?;
            rows.push((fname, sha, size));
        }
        let mut all = Vec::with_capacity(n);
        for chunk in rows.chunks(2000) {
            let mut sql = String::from(
                "INSERT INTO ir_attachment (name, res_model, res_id, type, store_fname, \
                 file_size, checksum, mimetype) VALUES\n",
            );
            for (i, (fname, sha, size)) in chunk.iter().enumerate() {
                let sep = if i + 1 == chunk.len() { "" } else { "," };
                let _ = writeln!(
                    sql,
                    "('file-{}.bin', 'res.partner', {i}, 'binary', '{fname}', {size}, '{sha}', \
                     'application/octet-stream'){sep}",
                    &sha[..8]
                );
            }
            sql.push_str("RETURNING id, store_fname, checksum, file_size;");
            let out = self.psql(db, &sql)?;
            for line in out.lines() {
                let f: Vec<&str> = line.split('|').collect();
                if let [id, fname, sha, size] = f[..] {
                    all.push(Attachment {
                        id: id.parse().unwrap_or_default(),
                        store_fname: fname.to_owned(),
                        checksum: sha.to_owned(),
                        file_size: size.parse().unwrap_or_default(),
                    });
                }
            }
        }
        Ok(all)
    }
}

/// Writes one attachment's file into `<data_dir>/filestore/<db>/` as Odoo names it, and
/// returns the SQL that references it (run it on whichever cluster is primary).
pub fn attachment(data_dir: &Path, db: &str, content: &[u8]) -> Result<(String, String)> {
    check_ident("database name", db)?;
    let sha = hex::encode(Sha1::digest(content));
    let fname = format!("{}/{}", &sha[..2], sha);
    let path = filestore(data_dir, db).join(&fname);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| SandboxError::io("cannot create", dir, e))?;
    }
    std::fs::write(&path, content).map_err(|e| SandboxError::io("cannot write", &path, e))?;
    let sql = format!(
        "INSERT INTO ir_attachment (name, res_model, res_id, type, store_fname, file_size, checksum, mimetype) \
         VALUES ('file-{}.bin', 'res.partner', 1, 'binary', '{fname}', {}, '{sha}', 'application/octet-stream')",
        &sha[..8],
        content.len()
    );
    Ok((fname, sql))
}

/// The real Odoo tree the tests run: `$ODOO_SRC`, else `../shared/odoo/17.0` beside the
/// project. It is a test fixture, read only, never copied into the repository.
pub fn real_odoo_source() -> Result<PathBuf> {
    let p = match std::env::var_os("ODOO_SRC") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/odoo/17.0"),
    };
    if !p.join("odoo-bin").is_file() {
        return Err(SandboxError::Usage(format!(
            "no Odoo tree at {} (no odoo-bin there): set ODOO_SRC to an Odoo 17 checkout",
            p.display()
        )));
    }
    std::fs::canonicalize(&p).map_err(|e| SandboxError::io("cannot resolve", &p, e))
}

/// Writes an Odoo-like source tree at `dir`: the stand-in `odoo-bin`, the built-in
/// `odoo/addons/base`, and `addons/{web,mail}`. Returns the path of `odoo-bin`.
pub fn write_odoo_source(dir: &Path) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    write_addon(&dir.join("odoo").join("addons"), "base", &[])?;
    for m in ["web", "mail"] {
        write_addon(&dir.join("addons"), m, &[])?;
    }
    let bin = dir.join("odoo-bin");
    std::fs::write(&bin, ODOO_BIN).map_err(|e| SandboxError::io("cannot write", &bin, e))?;
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| SandboxError::io("cannot chmod", &bin, e))?;
    os::mkdir(dir, 0o755)?;
    Ok(bin)
}

/// Writes addon `name` under `addons_dir`, with these Python `external_dependencies`.
pub fn write_addon(addons_dir: &Path, name: &str, python_deps: &[&str]) -> Result<()> {
    check_ident("module name", name)?;
    let dir = addons_dir.join(name);
    std::fs::create_dir_all(&dir).map_err(|e| SandboxError::io("cannot create", &dir, e))?;
    let deps: Vec<String> = python_deps.iter().map(|d| format!("{d:?}")).collect();
    let manifest = format!(
        "{{\n    'name': '{name}',\n    'version': '17.0.1.0',\n    'depends': [],\n    \
         'external_dependencies': {{'python': [{}]}},\n}}\n",
        deps.join(", ")
    );
    for (file, text) in [("__manifest__.py", manifest.as_str()), ("__init__.py", "")] {
        let p = dir.join(file);
        std::fs::write(&p, text).map_err(|e| SandboxError::io("cannot write", &p, e))?;
    }
    Ok(())
}
