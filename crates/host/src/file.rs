//! File operations, written once on top of [`Host::run`] so that every host, local or remote,
//! behaves the same: each is a fixed POSIX `sh` script whose inputs are positional arguments,
//! never text pasted into the script.

use std::path::{Path, PathBuf};

use crate::{CommandSpec, Host, HostError};

/// Exit code our scripts use for "that path does not exist" (`EX_NOINPUT`).
const EXIT_MISSING: i32 = 66;
/// Exit code our scripts use for "something else is in the way" (`EX_CANTCREAT`).
const EXIT_CONFLICT: i32 = 73;

/// Mode and owner of a file or directory we create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ownership {
    /// Permission bits, e.g. `0o600`.
    pub mode: u32,
    /// `user` or `user:group`; `None` keeps whoever creates it.
    pub owner: Option<String>,
}

impl Ownership {
    /// This mode, owned by whoever creates it.
    pub fn mode(mode: u32) -> Self {
        Self { mode, owner: None }
    }

    /// This mode, owned by `owner` (`user` or `user:group`).
    pub fn owned(mode: u32, owner: impl Into<String>) -> Self {
        Self {
            mode,
            owner: Some(owner.into()),
        }
    }
}

/// What kind of thing a path is (the path itself: symlinks are not followed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// Anything else (socket, fifo, device).
    Other,
}

/// What `stat` tells about a path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileStat {
    /// File, directory, link...
    pub kind: FileKind,
    /// Size in bytes.
    pub size: u64,
    /// Permission bits.
    pub mode: u32,
    /// Owner's user name (or uid when it has none).
    pub user: String,
    /// Owner's group name (or gid).
    pub group: String,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// Where a symlink points, for symlinks.
    pub link_target: Option<PathBuf>,
}

fn path_arg(path: &Path) -> Result<String, String> {
    let s = path
        .to_str()
        .ok_or_else(|| format!("{} is not valid UTF-8", path.display()))?;
    if !path.is_absolute() {
        return Err(format!("{s} is not an absolute path"));
    }
    Ok(s.to_owned())
}

fn script<H: Host + ?Sized>(
    host: &H,
    body: &str,
    paths: &[&Path],
    more: &[&str],
) -> Result<CommandSpec, HostError> {
    let mut spec = CommandSpec::new("sh").args(["-c", body, "sh"]).file_op();
    for p in paths {
        spec = spec.arg(path_arg(p).map_err(|reason| HostError::InvalidSpec {
            host: host.name(),
            reason,
        })?);
    }
    spec = spec.args(more.iter().copied());
    if let Some(user) = host.file_user() {
        spec = spec.run_as(user);
    }
    Ok(spec)
}

/// Runs a script and maps our two conventional exit codes to typed errors.
async fn run_script<H: Host + ?Sized>(
    host: &H,
    spec: CommandSpec,
    path: &Path,
) -> Result<Vec<u8>, HostError> {
    match host.run(&spec).await {
        Ok(out) => Ok(out.stdout),
        Err(e) if e.exit_code() == Some(EXIT_MISSING) => Err(HostError::NotFound {
            host: host.name(),
            path: path.to_owned(),
        }),
        Err(HostError::CommandFailed {
            stderr_tail,
            status,
            ..
        }) if status.code == Some(EXIT_CONFLICT) => Err(HostError::Conflict {
            host: host.name(),
            path: path.to_owned(),
            problem: stderr_tail,
        }),
        Err(e) => Err(e),
    }
}

fn owner_arg(own: &Ownership) -> Result<(String, String), String> {
    if own.mode > 0o7777 {
        return Err(format!("mode {:o} is not a permission mode", own.mode));
    }
    let owner = own.owner.clone().unwrap_or_default();
    let ok = owner.split(':').all(crate::spec::valid_user_name);
    if !owner.is_empty() && !ok {
        return Err(format!("invalid owner {owner:?}"));
    }
    Ok((format!("{:o}", own.mode), owner))
}

pub(crate) async fn read_file<H: Host + ?Sized>(
    host: &H,
    path: &Path,
) -> Result<Vec<u8>, HostError> {
    const BODY: &str = r#"[ -f "$1" ] || exit 66; exec cat -- "$1""#;
    run_script(host, script(host, BODY, &[path], &[])?, path).await
}

pub(crate) async fn write_file<H: Host + ?Sized>(
    host: &H,
    path: &Path,
    contents: &[u8],
    own: &Ownership,
) -> Result<(), HostError> {
    // The temporary file is created 0600 by mktemp, gets its final mode and owner, and only
    // then receives the contents: a secret is never readable by anyone it was not meant for.
    const BODY: &str = r#"set -eu
dest=$1 mode=$2 owner=$3
dir=$(dirname -- "$dest")
[ -d "$dir" ] || exit 66
if [ -d "$dest" ] && [ ! -L "$dest" ]; then echo "is a directory" >&2; exit 73; fi
tmp=$(mktemp -- "$dir/.odoo-standby.XXXXXXXX")
trap 'rm -f -- "$tmp"' EXIT
chmod -- "$mode" "$tmp"
if [ -n "$owner" ]; then chown -- "$owner" "$tmp"; fi
cat > "$tmp"
sync -- "$tmp"
mv -f -- "$tmp" "$dest"
trap - EXIT
sync -- "$dir" 2>/dev/null || true"#;
    let (mode, owner) = owner_arg(own).map_err(|reason| HostError::InvalidSpec {
        host: host.name(),
        reason,
    })?;
    // The contents may be a secret (a .pgpass): never shown.
    let spec = script(host, BODY, &[path], &[&mode, &owner])?.secret_stdin(contents.to_vec());
    run_script(host, spec, path).await.map(drop)
}

pub(crate) async fn stat<H: Host + ?Sized>(
    host: &H,
    path: &Path,
) -> Result<Option<FileStat>, HostError> {
    const BODY: &str = r#"if [ -e "$1" ] || [ -L "$1" ]; then
  stat -c '%F/%s/%a/%U/%G/%Y' -- "$1"
  if [ -L "$1" ]; then readlink -- "$1"; fi
else echo missing; fi"#;
    let out = run_script(host, script(host, BODY, &[path], &[])?, path).await?;
    let text = String::from_utf8_lossy(&out);
    let mut lines = text.lines();
    let first = lines.next().unwrap_or_default();
    if first == "missing" {
        return Ok(None);
    }
    let unexpected = || HostError::Unexpected {
        host: host.name(),
        during: format!("reading the status of {}", path.display()),
        output: text.to_string(),
    };
    let f: Vec<&str> = first.split('/').collect();
    if f.len() != 6 {
        return Err(unexpected());
    }
    let kind = match f[0] {
        "regular file" | "regular empty file" => FileKind::File,
        "directory" => FileKind::Dir,
        "symbolic link" => FileKind::Symlink,
        _ => FileKind::Other,
    };
    Ok(Some(FileStat {
        kind,
        size: f[1].parse().map_err(|_| unexpected())?,
        mode: u32::from_str_radix(f[2], 8).map_err(|_| unexpected())?,
        user: f[3].to_owned(),
        group: f[4].to_owned(),
        mtime: f[5].parse().map_err(|_| unexpected())?,
        link_target: if kind == FileKind::Symlink {
            lines.next().map(PathBuf::from)
        } else {
            None
        },
    }))
}

pub(crate) async fn mkdir_p<H: Host + ?Sized>(
    host: &H,
    path: &Path,
    own: &Ownership,
) -> Result<(), HostError> {
    const BODY: &str = r#"set -eu
if [ -e "$1" ] && [ ! -d "$1" ]; then echo "exists and is not a directory" >&2; exit 73; fi
mkdir -p -- "$1"
chmod -- "$2" "$1"
if [ -n "$3" ]; then chown -- "$3" "$1"; fi"#;
    let (mode, owner) = owner_arg(own).map_err(|reason| HostError::InvalidSpec {
        host: host.name(),
        reason,
    })?;
    let spec = script(host, BODY, &[path], &[&mode, &owner])?;
    run_script(host, spec, path).await.map(drop)
}

pub(crate) async fn symlink<H: Host + ?Sized>(
    host: &H,
    target: &Path,
    link: &Path,
) -> Result<(), HostError> {
    // Idempotent: an existing link is re-pointed (a link holds no data); anything else in
    // the way is refused, never removed.
    const BODY: &str = r#"set -eu
if [ -L "$2" ]; then
  [ "$(readlink -- "$2")" = "$1" ] && exit 0
  ln -sfn -- "$1" "$2"; exit 0
fi
if [ -e "$2" ]; then echo "exists and is not a symlink" >&2; exit 73; fi
ln -s -- "$1" "$2""#;
    let spec = script(host, BODY, &[target, link], &[])?;
    run_script(host, spec, link).await.map(drop)
}

pub(crate) async fn remove<H: Host + ?Sized>(host: &H, path: &Path) -> Result<(), HostError> {
    // Never recursive: a directory goes only when empty. Missing is fine (idempotent).
    const BODY: &str = r#"set -eu
if [ -d "$1" ] && [ ! -L "$1" ]; then
  rmdir -- "$1" 2>/dev/null || { echo "is a directory that is not empty" >&2; exit 73; }
elif [ -e "$1" ] || [ -L "$1" ]; then rm -f -- "$1"; fi"#;
    run_script(host, script(host, BODY, &[path], &[])?, path)
        .await
        .map(drop)
}

pub(crate) async fn rename<H: Host + ?Sized>(
    host: &H,
    from: &Path,
    to: &Path,
) -> Result<(), HostError> {
    const BODY: &str = r#"set -eu
[ -e "$1" ] || [ -L "$1" ] || exit 66
if [ -e "$2" ] || [ -L "$2" ]; then echo "is already there" >&2; exit 73; fi
mv -T -- "$1" "$2""#;
    match run_script(host, script(host, BODY, &[from, to], &[])?, from).await {
        Err(HostError::Conflict { host, problem, .. }) => Err(HostError::Conflict {
            host,
            path: to.to_owned(),
            problem,
        }),
        other => other.map(drop),
    }
}
