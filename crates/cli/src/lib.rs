//! What every odoo-standby binary shares.
//!
//! - [`LogArgs`] and [`init_logs`]: one `tracing` subscriber per process. `RUST_LOG` wins;
//!   else `-q` (warnings), nothing (progress: info), `-v` (debug), `-vv` (trace). Under
//!   systemd (stderr is the journal, `JOURNAL_STREAM` set) each line starts with its syslog
//!   priority (`<3>` error ... `<7>` debug), so `journalctl -p warning` filters ours, and
//!   carries no timestamp of its own; `--log-json` (or `ODOO_STANDBY_LOG=json`) prints one
//!   JSON object per event for log shippers. Logs go to stderr; stdout is the command's
//!   output.
//! - [`say`] / [`say!`]: stdout that ends quietly on a closed pipe (`status | head -1`).
//!
//! ```no_run
//! use clap::Parser;
//!
//! #[derive(Parser)]
//! struct Args {
//!     #[command(flatten)]
//!     logs: cli::LogArgs,
//! }
//!
//! let args = Args::parse();
//! cli::init_logs(&args.logs);
//! tracing::info!("base backup 25%");
//! cli::say!("done");
//! ```

use std::io::Write;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// The logging flags every binary takes (global: before or after the subcommand).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct LogArgs {
    /// More detail on stderr (-v debug, -vv trace); RUST_LOG, when set, decides instead.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only warnings and errors on stderr.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// One JSON object per log event (also with ODOO_STANDBY_LOG=json).
    #[arg(long, global = true)]
    pub log_json: bool,
}

impl LogArgs {
    /// The level these flags ask for.
    pub fn level(&self) -> Level {
        match (self.quiet, self.verbose) {
            (true, _) => Level::WARN,
            (false, 0) => Level::INFO,
            (false, 1) => Level::DEBUG,
            _ => Level::TRACE,
        }
    }
}

/// Whether stderr is the systemd journal (systemd sets `JOURNAL_STREAM` to the device and
/// inode of the stream it gave the service; a shell started from the service inherits the
/// variable but not the stream, hence the comparison).
pub fn stderr_is_journal() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Some(v) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let v = v.to_string_lossy().into_owned();
    let Some((dev, ino)) = v.split_once(':') else {
        return false;
    };
    let Ok(meta) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    dev.parse() == Ok(meta.dev()) && ino.parse() == Ok(meta.ino())
}

/// The syslog priority of a level, as journald reads it from a `<N>` prefix.
pub fn priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

/// `<N>message`: the format journald turns into a priority.
struct Journald;

impl<S, N> FormatEvent<S, N> for Journald
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        write!(writer, "<{}>", priority(event.metadata().level()))?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// Installs the process's log subscriber (once; a second call changes nothing).
pub fn init_logs(args: &LogArgs) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(args.level().as_str().to_ascii_lowercase()));
    let json = args.log_json
        || std::env::var("ODOO_STANDBY_LOG").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().with_current_span(false).try_init()
    } else if stderr_is_journal() {
        builder.event_format(Journald).try_init()
    } else {
        use std::io::IsTerminal;
        builder
            .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
            .with_target(false)
            .try_init()
    };
}

/// Writes `text` to stdout and flushes; a closed pipe ends the output quietly (the reader
/// has what it wanted), any other error too (stdout is gone).
pub fn say(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// `println!` that never panics on a closed pipe: [`say`] with a newline.
#[macro_export]
macro_rules! say {
    () => {
        $crate::say("\n")
    };
    ($($arg:tt)*) => {
        $crate::say(&format!("{}\n", format_args!($($arg)*)))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_choose_the_level_and_priorities_are_syslogs() {
        let mut a = LogArgs::default();
        assert_eq!(a.level(), Level::INFO);
        a.verbose = 2;
        assert_eq!(a.level(), Level::TRACE);
        a.quiet = true;
        assert_eq!(a.level(), Level::WARN);
        assert_eq!(priority(&Level::ERROR), 3);
        assert_eq!(priority(&Level::WARN), 4);
        assert_eq!(priority(&Level::DEBUG), 7);
    }

    #[test]
    fn a_journal_stream_of_another_file_is_not_ours() {
        // The variable alone (inherited by a shell) does not make stderr the journal.
        std::env::set_var("JOURNAL_STREAM", "1:1");
        assert!(!stderr_is_journal());
        std::env::remove_var("JOURNAL_STREAM");
        assert!(!stderr_is_journal());
    }
}
