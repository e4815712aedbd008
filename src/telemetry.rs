//! Logging and progress on stderr, the log file, and secret redaction.

/// A URL with its password replaced by `***`, for every message and log line.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    // The userinfo ends at the last '@' before an Oracle descriptor's '(' (a password may hold
    // an unencoded '/' or '?', so the usual authority end is not trusted).
    let searched = &rest[..rest.find('(').unwrap_or(rest.len())];
    match searched.rfind('@') {
        Some(at) => {
            let userinfo = &rest[..at];
            match userinfo.find(':') {
                Some(colon) => format!("{}://{}:***{}", &url[..scheme_end], &userinfo[..colon], &rest[at..]),
                None => url.to_string(),
            }
        }
        None => url.to_string(),
    }
}

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::error::Error as StdError;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tracing::Level;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::writer::MakeWriterExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Sets up tracing: stderr at the level -v/-q choose, and, when `log_file` is set, the same
/// events at debug level in that file. Returns the log file's path.
/// Where the log file goes: `--log-file`, else for a command that writes to the target
/// `migration_YYYYMMDD_HHMMSS.log` in `MIGRATE_LOG_DIR` (created if missing) or the working
/// directory; read-only commands write none.
pub fn log_file_path(asked: Option<&Path>, writes: bool, dir: Option<&std::ffi::OsStr>) -> Option<PathBuf> {
    if let Some(p) = asked {
        return Some(p.to_path_buf());
    }
    if !writes {
        return None;
    }
    let name = format!("migration_{}.log", chrono::Local::now().format("%Y%m%d_%H%M%S"));
    Some(match dir.filter(|d| !d.is_empty()) {
        Some(d) => Path::new(d).join(name),
        None => PathBuf::from(name),
    })
}

/// Appends `text` to the log file (the error that ended a run, written after the subscriber's
/// last line).
pub fn append_to_log(path: &Path, text: &str) {
    use std::io::Write;
    if let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(path) {
        let _ = writeln!(f, "{} {text}", chrono::Local::now().format("%Y-%m-%dT%H:%M:%S%.6f%:z"));
    }
}

/// Sets up logging: stderr at the level of -v/-q, and `log_file` (appended, with debug detail)
/// when given. Returns the log file that could be opened.
pub fn init(verbose: u8, quiet: u8, log_file: Option<PathBuf>) -> Option<PathBuf> {
    let level = match (verbose as i8) - (quiet as i8) {
        i8::MIN..=-2 => Level::ERROR,
        -1 => Level::WARN,
        0 => Level::INFO,
        1 => Level::DEBUG,
        _ => Level::TRACE,
    };
    // One filter for the whole subscriber, and stderr's level applied by its writer. Per-layer
    // filters lost events here (about one line in five at the end of an entity when entities
    // loaded side by side, from both outputs): a disabled `enabled!` check, as sqlx makes for its
    // statement log, leaves per-thread filter state behind that the next event then inherits.
    let file_level = if log_file.is_some() { Level::DEBUG } else { level };
    let global = Targets::new()
        .with_default(LevelFilter::WARN)
        .with_target("migrate", LevelFilter::from_level(level.max(file_level)));
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer((|| BarAwareStderr).with_max_level(level))
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .without_time();
    let mut path = None;
    let file_layer = if let Some(name) = log_file {
        if let Some(dir) = name.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = std::fs::create_dir_all(dir);
        }
        match std::fs::OpenOptions::new().create(true).append(true).open(&name) {
            Ok(f) => {
                path = Some(name.clone());
                Some(
                    tracing_subscriber::fmt::layer()
                        .with_writer(Mutex::new(f))
                        .with_ansi(false)
                        .with_target(false),
                )
            }
            Err(e) => {
                eprintln!("warning: cannot create log file {}: {e}", name.display());
                None
            }
        }
    } else {
        None
    };
    let _ = tracing_subscriber::registry()
        .with(global)
        .with(stderr)
        .with(file_layer)
        .try_init();
    path
}

/// The bars on screen, if any: log lines are written while they are hidden, so a line never
/// lands inside a bar or leaves a copy of it behind.
static ACTIVE_BARS: Mutex<Option<MultiProgress>> = Mutex::new(None);

/// stderr for log lines: each event is one write (tracing formats it whole), made with the
/// bars cleared and redrawn below it.
struct BarAwareStderr;

impl std::io::Write for BarAwareStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let bars = ACTIVE_BARS.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match bars {
            Some(m) => m.suspend(|| std::io::stderr().write_all(buf)).map(|()| buf.len()),
            None => std::io::stderr().write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Prints a line to stderr without breaking the bars (messages outside tracing).
pub fn eprint_line(text: &str) {
    use std::io::Write;
    let _ = BarAwareStderr.write_all(format!("{text}\n").as_bytes());
}

/// Progress bars for the entities of a run, on stderr; hidden when stderr is not a terminal.
pub struct Bars {
    multi: MultiProgress,
    tty: bool,
}

impl Drop for Bars {
    fn drop(&mut self) {
        if self.tty {
            *ACTIVE_BARS.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
    }
}

/// "1m 05s", "42s", "2h 03m": an estimate reads no finer than that.
fn short_duration(secs: f64) -> String {
    let s = secs.round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// The rate and time left of a bar, from the rows moved in this run (a resumed entity starts
/// at its committed rows): no estimate before 3 s and 1% of the way, when it would mean nothing.
fn rate_and_eta(pos: u64, start: u64, total: u64, elapsed: f64) -> (String, String) {
    let moved = pos.saturating_sub(start) as f64;
    let rate = if elapsed > 0.0 { moved / elapsed } else { 0.0 };
    let shown_rate = if elapsed < 0.5 || moved == 0.0 {
        "-".to_string()
    } else {
        format!("{}/s", crate::report::thousands(rate.round() as u64))
    };
    let left = total.saturating_sub(pos) as f64;
    let eta = if total == 0 || pos >= total {
        String::new()
    } else if elapsed < 3.0 || rate <= 0.0 || moved < (total - start) as f64 / 100.0 {
        "eta …".to_string()
    } else {
        format!("eta {}", short_duration(left / rate))
    };
    (shown_rate, eta)
}

impl Default for Bars {
    fn default() -> Self {
        Self::new()
    }
}

impl Bars {
    pub fn new() -> Bars {
        let tty = std::io::stderr().is_terminal();
        let target = if tty {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let multi = MultiProgress::with_draw_target(target);
        if tty {
            *ACTIVE_BARS.lock().unwrap_or_else(|e| e.into_inner()) = Some(multi.clone());
        }
        Bars { multi, tty }
    }

    /// A bar for `name`: `total` rows (0: not known, as in a sync pass), `done` already committed.
    pub fn entity(&self, name: &str, total: u64, done: u64) -> EntityBar {
        let bar = self.multi.add(ProgressBar::new(total));
        let start = done;
        let template = if total == 0 {
            "{prefix:>14} {spinner} {pos} rows moved  {rate}"
        } else {
            "{prefix:>14} [{bar:30}] {pos}/{len} rows  {rate}  {left}"
        };
        bar.set_style(
            ProgressStyle::with_template(template)
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .with_key(
                    "rate",
                    move |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                        let (rate, _) = rate_and_eta(s.pos(), start, s.len().unwrap_or(0), s.elapsed().as_secs_f64());
                        let _ = w.write_str(&rate);
                    },
                )
                .with_key(
                    "left",
                    move |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                        let (_, eta) = rate_and_eta(s.pos(), start, s.len().unwrap_or(0), s.elapsed().as_secs_f64());
                        let _ = w.write_str(&eta);
                    },
                )
                .progress_chars("=> "),
        );
        if total == 0 {
            bar.enable_steady_tick(Duration::from_millis(250));
        }
        bar.set_prefix(name.to_string());
        bar.set_position(done);
        EntityBar {
            bar,
            name: name.to_string(),
            tty: self.tty,
            started: Instant::now(),
            last_log: Mutex::new(Instant::now()),
            total,
            start_pos: done,
        }
    }
}

/// One entity's bar; without a terminal, a log line every few seconds instead.
pub struct EntityBar {
    bar: ProgressBar,
    name: String,
    tty: bool,
    started: Instant,
    last_log: Mutex<Instant>,
    total: u64,
    start_pos: u64,
}

const LOG_EVERY: Duration = Duration::from_secs(5);

impl EntityBar {
    pub fn hidden() -> EntityBar {
        EntityBar {
            bar: ProgressBar::hidden(),
            name: String::new(),
            tty: true,
            started: Instant::now(),
            last_log: Mutex::new(Instant::now()),
            total: 0,
            start_pos: 0,
        }
    }

    pub fn inc(&self, n: u64) {
        self.bar.inc(n);
        if !self.tty {
            let mut last = self.last_log.lock().unwrap_or_else(|e| e.into_inner());
            if last.elapsed() >= LOG_EVERY {
                *last = Instant::now();
                let pos = self.bar.position();
                let (rate, eta) = rate_and_eta(pos, self.start_pos, self.total, self.started.elapsed().as_secs_f64());
                if self.total > 0 {
                    let pct = pos as f64 * 100.0 / self.total as f64;
                    tracing::info!("{}: {pos}/{} rows ({pct:.0}%), {rate} {eta}", self.name, self.total);
                } else {
                    tracing::info!("{}: {pos} rows moved, {rate}", self.name);
                }
            }
        }
    }

    /// Back to `pos` rows: rows shown that a refused or lost batch will read again.
    pub fn set_position(&self, pos: u64) {
        self.bar.set_position(pos);
    }

    pub fn finish(&self) {
        self.bar.finish();
    }
}

/// `outer: inner: innermost`, the whole chain on one line.
pub fn chain(e: &(dyn StdError + 'static)) -> String {
    let mut parts = vec![shown(e)];
    let mut cur = e.source();
    while let Some(c) = cur {
        let s = shown(c);
        if !parts.last().is_some_and(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = c.source();
    }
    parts.join(": ")
}

/// One error of a chain as users read it: PostgreSQL's errors in its own words, with the detail
/// and the SQLSTATE (sqlx's own text ends in "at line N" of PostgreSQL's C source).
fn shown(e: &(dyn StdError + 'static)) -> String {
    if let Some(pg) = e
        .downcast_ref::<sqlx::Error>()
        .and_then(|e| e.as_database_error())
        .and_then(|d| d.try_downcast_ref::<sqlx::postgres::PgDatabaseError>())
    {
        let mut s = pg.message().to_string();
        if let Some(d) = pg.detail() {
            s.push_str(": ");
            s.push_str(d);
        }
        if let Some(h) = pg.hint() {
            s.push_str(&format!(" ({h})"));
        }
        return format!("{s} (SQLSTATE {})", pg.code());
    }
    e.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_rounded_and_an_eta_waits_until_it_means_something() {
        // 9% after 1 s: too early to say.
        assert_eq!(rate_and_eta(9_000, 0, 100_000, 1.0), ("9,000/s".into(), "eta …".into()));
        // 47,671.1585 rows/s, half way after 10 s: 10 s left.
        let (rate, eta) = rate_and_eta(476_712, 0, 953_423, 10.0);
        assert_eq!((rate.as_str(), eta.as_str()), ("47,671/s", "eta 10s"));
        // A resumed entity: the rate counts this run's rows only.
        assert_eq!(rate_and_eta(150_000, 100_000, 1_000_000, 10.0).0, "5,000/s");
        assert_eq!(rate_and_eta(150_000, 100_000, 1_000_000, 10.0).1, "eta 2m 50s");
        // Done, or no total (a sync pass): no estimate.
        assert_eq!(rate_and_eta(10, 0, 10, 5.0).1, "");
        assert_eq!(rate_and_eta(10, 0, 0, 5.0).1, "");
        assert_eq!(rate_and_eta(0, 0, 10, 0.1).0, "-");
        assert_eq!(short_duration(7_380.0), "2h 03m");
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("oracle://scott:tiger@db:1521/XE"),
            "oracle://scott:***@db:1521/XE"
        );
        assert_eq!(redact_url("postgres://u:p%40ss@h/db?x=1"), "postgres://u:***@h/db?x=1");
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("sqlite:///tmp/a.db"), "sqlite:///tmp/a.db");
        assert_eq!(redact_url("postgres://u:p@ss@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact_url("oracle://u:pa/ss?x@h:1521/XE"), "oracle://u:***@h:1521/XE");
        assert_eq!(
            redact_url("oracle://u:secret@(DESCRIPTION=(ADDRESS=(HOST=h)))"),
            "oracle://u:***@(DESCRIPTION=(ADDRESS=(HOST=h)))"
        );
        assert_eq!(
            redact_url("oracle://u:secret@//h:1521/XE"),
            "oracle://u:***@//h:1521/XE"
        );
    }
}
