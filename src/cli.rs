//! Command-line interface (clap derive). The doc comments here are the `--help` text.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Move a legacy database (Oracle, SQLite) into PostgreSQL: mappings, transforms, exact values,
/// resume after any crash, validation.
///
/// Without a subcommand, runs the migration: every entity of --mappings in dependency order.
/// Each subcommand takes only its own options (`migrate status --help`).
#[derive(Debug, Parser)]
#[command(
    name = "migrate",
    version,
    args_conflicts_with_subcommands = true,
    after_help = EXIT_CODES
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    conn: Conn,
    #[command(flatten)]
    scope: Scope,
    #[command(flatten)]
    checkpoint: CheckpointArg,
    #[command(flatten)]
    report: ReportArg,
    #[command(flatten)]
    logs: Logs,
    #[command(flatten)]
    pub run: RunArgs,
    /// What the command was given, whichever of the forms above it came from ([`Cli::settle`]).
    #[arg(skip)]
    pub common: Common,
}

const EXIT_CODES: &str = "Exit codes: 0 success; 1 migration or validation failure (rows missing, rejects over a limit, \
a lost connection past --retries); 2 usage or configuration error (a flag, a mapping, a URL, a certificate); \
130 stopped by Ctrl-C (SIGINT), 143 stopped by SIGTERM, both after the batch in flight committed (--resume goes on).\n\
.env in the working directory is read; real environment variables win.";

/// The settings every mode reads from, filled from the options of the command that was given;
/// what a command does not take keeps its default.
#[derive(Debug, Clone)]
pub struct Common {
    pub source: Option<String>,
    pub target: Option<String>,
    pub mappings: PathBuf,
    pub entity: Vec<String>,
    pub checkpoint: PathBuf,
    pub report: Option<String>,
    pub logs: Logs,
}

impl Default for Common {
    fn default() -> Self {
        Self {
            source: None,
            target: None,
            mappings: PathBuf::from(DEFAULT_MAPPINGS),
            entity: Vec::new(),
            checkpoint: PathBuf::from(DEFAULT_CHECKPOINT),
            report: None,
            logs: Logs::default(),
        }
    }
}

const DEFAULT_MAPPINGS: &str = "mappings";
const DEFAULT_CHECKPOINT: &str = "migration_checkpoint.json";

impl Cli {
    /// Parses the command line and fills [`Cli::common`].
    pub fn parse_args() -> Self {
        let mut cli = Self::parse();
        cli.settle();
        cli
    }

    /// Moves the options of the command that was given into [`Cli::common`].
    pub fn settle(&mut self) {
        let c = &mut self.common;
        let take_conn = |c: &mut Common, conn: &Conn| {
            c.source = conn.source.clone();
            c.target = conn.target.clone();
        };
        let take_scope = |c: &mut Common, s: &Scope| {
            c.mappings = s.mappings.clone();
            c.entity = s.entity.clone();
        };
        match &self.command {
            None => {
                take_conn(c, &self.conn);
                take_scope(c, &self.scope);
                c.checkpoint = self.checkpoint.checkpoint.clone();
                c.report = self.report.report.clone();
                c.logs = self.logs.clone();
            }
            Some(Command::Validate(a)) => {
                take_conn(c, &a.conn);
                take_scope(c, &a.scope);
                c.report = a.report.report.clone();
                c.logs = a.logs.clone();
            }
            Some(Command::Sync(a)) => {
                take_conn(c, &a.conn);
                take_scope(c, &a.scope);
                c.checkpoint = a.checkpoint.checkpoint.clone();
                c.report = a.report.report.clone();
                c.logs = a.logs.clone();
            }
            Some(Command::Status(a)) => {
                take_conn(c, &a.conn);
                take_scope(c, &a.scope);
                c.logs = a.logs.clone();
            }
            Some(Command::Scaffold(a)) => {
                c.source = a.source.clone();
                c.logs = a.logs.clone();
            }
            Some(Command::Demo(a)) => {
                c.target = a.target.clone();
                c.logs = a.logs.clone();
            }
            Some(Command::Profile(a)) => {
                c.source = a.source.clone();
                c.logs = a.logs.clone();
            }
        }
    }

    /// Whether the command changes the target (a load or a sync). The others (status, validate,
    /// --check-only, scaffold, demo) write a log file only when asked (--log-file).
    pub fn writes_to_target(&self) -> bool {
        match &self.command {
            None => !self.run.check_only,
            Some(Command::Sync(_)) => true,
            Some(_) => false,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct Conn {
    /// Source database: sqlite:///abs/path.db, sqlite:rel/path.db, oracle://user:pass@host:1521/SERVICE,
    /// oracle://user:pass@host:1521?sid=SID, oracle://user:pass@(DESCRIPTION=...), or a directory
    /// of CSV files: file:///path/to/dir (each mapping's source is then a file or glob in it).
    /// Default: MIGRATE_SOURCE, else built from ORACLE_USER, ORACLE_PASSWORD and ORACLE_HOST,
    /// ORACLE_PORT with ORACLE_SERVICE or ORACLE_SID (or ORACLE_CONNECT: a descriptor or //host:port/service)
    #[arg(long, env = "MIGRATE_SOURCE", hide_env_values = true)]
    pub source: Option<String>,

    /// Target PostgreSQL URL: postgres://user@host:5432/dbname?sslmode=require (sslmode, sslrootcert,
    /// sslcert, sslkey as libpq). What it leaves out comes from PGHOST, PGPORT, PGUSER, PGDATABASE,
    /// PGPASSWORD, ~/.pgpass (PGPASSFILE) and PGSSLMODE & co., as for psql; without it, from those alone
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub target: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct Scope {
    /// Directory of mapping files, one <entity>.toml per entity
    #[arg(long, default_value = DEFAULT_MAPPINGS)]
    pub mappings: PathBuf,

    /// Only this entity (repeatable); its dependencies must already be migrated
    #[arg(long, value_name = "NAME")]
    pub entity: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct CheckpointArg {
    /// JSON checkpoint file mirroring the progress stored in the target
    #[arg(long, value_name = "FILE", default_value = DEFAULT_CHECKPOINT)]
    pub checkpoint: PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct ReportArg {
    /// Write a summary of the run to FILE: JSON (`-` for stdout), or one self-contained HTML page
    /// when FILE ends in .html or .htm
    #[arg(long, value_name = "FILE")]
    pub report: Option<String>,
}

#[derive(Debug, Clone, Default, Args)]
pub struct Logs {
    /// More log output (repeat for more)
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Less log output (repeat for less)
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub quiet: u8,

    /// Log output on Django's scale, instead of -v/-q: 0 warnings and errors only, 1 progress
    /// (the default), 2 details (-v), 3 everything (-vv)
    #[arg(long, value_name = "0..3", value_parser = clap::value_parser!(u8).range(0..=3))]
    pub verbosity: Option<u8>,

    /// Also write the log (with debug detail) to FILE, appended. Runs that load or sync write
    /// migration_YYYYMMDD_HHMMSS.log by default (in MIGRATE_LOG_DIR, else the working directory);
    /// read-only commands write none unless given this
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,
}

impl Logs {
    /// The log level as (more, less): from --verbosity when given, else from -v and -q.
    pub fn log_level(&self) -> (u8, u8) {
        match self.verbosity {
            Some(0) => (0, 1),
            Some(v) => (v - 1, 0),
            None => (self.verbose, self.quiet),
        }
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Pre-migration checks only (tables, columns, types, keys, transforms, dependencies, row counts); writes nothing
    #[arg(long, conflicts_with_all = ["dry_run", "resume"])]
    pub check_only: bool,

    /// With --check-only: also read every source row of the mapped columns, through the
    /// mapping's transforms, and say per field how many values the target column would refuse
    /// (too long, too many digits, a date no mask fits) with examples, and what the column looks
    /// like it holds
    #[arg(long, requires = "check_only")]
    pub profile: bool,

    /// Read and transform every row and check it against the target columns; writes nothing
    #[arg(long, conflicts_with = "resume")]
    pub dry_run: bool,

    /// Rows per batch; each batch commits with its progress (default 50000, or the mapping's batch_size; at most 64 MiB of data)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub batch_size: Option<u64>,

    /// Continue after the last committed batch of each entity (starts from the beginning if nothing was started)
    #[arg(long)]
    pub resume: bool,

    /// Start the selected entities over: empty their target tables (children first, one TRUNCATE)
    /// and forget their progress and rejects, after confirmation
    #[arg(long, conflicts_with_all = ["resume", "dry_run", "check_only"])]
    pub truncate: bool,

    /// Seconds to wait for a lock: another run's lock on the target (the session of a run that
    /// was just killed takes a moment to end), or a lock another session holds on a target table
    /// (LOCK TABLE, an open ALTER TABLE, a long transaction). A wait is logged after 3 s with
    /// the backend that holds the lock; after SECS the run stops saying so (resume with --resume)
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub lock_wait: u64,

    /// Reconnection attempts when a connection is lost mid-run (server restart, killed backend,
    /// network, ORA-01555): the target's batch in flight is retried or found committed; the
    /// source is read on after the last key handed over
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub retries: u32,

    /// Seconds before the first reconnection; each next wait doubles, up to 30 s
    #[arg(long, value_name = "SECS", default_value_t = 1.0)]
    pub retry_wait: f64,

    /// Rows one source query (cursor) hands over before it is closed and the next one starts
    /// after its last key; with --cursor-secs, no read lives long enough for ORA-01555
    #[arg(long, value_name = "N", default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub cursor_rows: u64,

    /// Seconds one source query may stay open (checked between batches; keep it below the
    /// source's UNDO_RETENTION, 900 s by default)
    #[arg(long, value_name = "SECS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    pub cursor_secs: u64,

    /// Streams loading side by side, each on its own PostgreSQL session and reader thread: entities
    /// whose dependencies are loaded, and key ranges of an entity larger than a stream's share of
    /// its dependency level (50,000 rows or more; up to N ranges, each with its own progress row)
    /// (default: the number of cores; 1 = one at a time)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=64))]
    pub jobs: Option<u64>,

    /// Drop each loaded table's foreign keys and its plain secondary indexes for the load, and
    /// (on an empty table, for 50,000 rows or more) the primary and unique keys that take the
    /// source key unchanged;
    /// check every batch for its parents set-wise instead; re-create and validate them after
    /// the entity (also after a failure; a crash leaves them recorded in
    /// migrate.held_constraints, and the next run puts them back)
    #[arg(long)]
    pub defer_indexes: bool,

    /// Run the post-migration validation after the load
    #[arg(long, conflicts_with_all = ["dry_run", "check_only"])]
    pub validate: bool,

    /// With --validate: also compare every row of source and target (through the mapping's
    /// transforms), reporting missing, extra, duplicated and differing rows
    #[arg(long, requires = "validate")]
    pub deep: bool,

    /// Do not ask for confirmation (required when stdin is not a terminal and the run writes)
    #[arg(long, short = 'y')]
    pub yes: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Post-migration validation only: counts (source = loaded + rejected), rejects, foreign keys,
    /// sequences; with --deep, every row
    Validate(ValidateArgs),
    /// Create the demo legacy database: an ABIS-style steel processing ERP in SQLite
    Demo(DemoArgs),
    /// Write one mapping per source table (key from the primary key, depends_on from foreign
    /// keys, lower-cased target names) and, with --ddl, the PostgreSQL CREATE TABLE statements
    Scaffold(ScaffoldArgs),
    /// Trickle sync: move the rows of incremental entities changed since the last pass
    /// (upserted by key; deletes found when the mapping asks), once or --every interval
    Sync(SyncArgs),
    /// Per entity: mode, full-load state, rows loaded and synced, rejects, watermark, lag, last pass
    Status(StatusArgs),
    /// Per source column, what the values really hold: NULLs, empty strings, distinct values,
    /// min/max, longest text, digits and decimal places, date masks that fit, Y/N flags, bytes
    /// that are not UTF-8, NUL bytes, trailing blanks; before the first mapping is written
    Profile(ProfileArgs),
}

#[derive(Debug, Args)]
pub struct ProfileArgs {
    /// Source database (as for a run; default MIGRATE_SOURCE or ORACLE_*)
    #[arg(long, env = "MIGRATE_SOURCE", hide_env_values = true)]
    pub source: Option<String>,

    /// Source schema (Oracle owner) to read; default: the connected user's schema
    #[arg(long, value_name = "NAME")]
    pub schema: Option<String>,

    /// Only this table (repeatable; as the catalog names it)
    #[arg(long, value_name = "NAME")]
    pub table: Vec<String>,

    /// Read only the first N rows of each table
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub sample: Option<u64>,

    /// Also write the profile to FILE: CSV (FILE.csv) or JSON
    #[arg(long, value_name = "FILE")]
    pub out: Option<std::path::PathBuf>,

    #[command(flatten)]
    pub logs: Logs,
}

#[derive(Debug, Args)]
pub struct SyncArgs {
    #[command(flatten)]
    pub conn: Conn,
    #[command(flatten)]
    pub scope: Scope,
    #[command(flatten)]
    pub checkpoint: CheckpointArg,
    #[command(flatten)]
    pub report: ReportArg,
    #[command(flatten)]
    pub logs: Logs,

    /// Run a pass every interval (30s, 5m, 1h) until stopped; Ctrl-C or SIGTERM finishes the
    /// batch in flight. Without it: one pass
    #[arg(long, value_name = "INTERVAL")]
    pub every: Option<String>,

    /// How far below the stored watermark each pass starts reading: seconds for a date/time
    /// watermark, units for a number (rows committed late in the source are not missed; reading
    /// a row twice is harmless). A mapping's `overlap` wins
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub overlap: u64,

    /// Rows per batch in a sync pass, at most 1000 (default 1000, or the mapping's batch_size if smaller)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_size: Option<u64>,

    /// Reconnection attempts when a connection is lost mid-pass
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub retries: u32,

    /// Seconds before the first reconnection, doubling up to 30 s
    #[arg(long, value_name = "SECS", default_value_t = 1.0)]
    pub retry_wait: f64,

    /// Seconds to wait for a lock: another run's lock on the target, or a lock another session
    /// holds on a target table; after that the pass stops naming the backend that holds it
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub lock_wait: u64,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub conn: Conn,
    #[command(flatten)]
    pub scope: Scope,
    #[command(flatten)]
    pub logs: Logs,

    /// JSON for monitoring
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub conn: Conn,
    #[command(flatten)]
    pub scope: Scope,
    #[command(flatten)]
    pub report: ReportArg,
    #[command(flatten)]
    pub logs: Logs,

    /// Also compare every row: the source read through the mapping's transforms against the
    /// target, matched by key (hash ranges first, rows only where a range differs). Reports
    /// missing, extra, duplicated and differing rows with examples; rejected rows are accounted for
    #[arg(long)]
    pub deep: bool,
}

#[derive(Debug, Args)]
pub struct ScaffoldArgs {
    /// Source database to read the catalog of (as for a run; default MIGRATE_SOURCE or ORACLE_*)
    #[arg(long, env = "MIGRATE_SOURCE", hide_env_values = true)]
    pub source: Option<String>,
    #[command(flatten)]
    pub logs: Logs,

    /// Directory to write the mappings into (created if missing)
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,

    /// Also write PostgreSQL DDL (tables, primary keys, foreign keys) to FILE
    #[arg(long, value_name = "FILE")]
    pub ddl: Option<PathBuf>,

    /// Source schema (Oracle owner) to read; default: the connected user's schema
    #[arg(long, value_name = "NAME")]
    pub schema: Option<String>,

    /// PostgreSQL schema for the target tables (default: none, i.e. the search_path)
    #[arg(long, value_name = "NAME")]
    pub target_schema: Option<String>,

    /// Map RAW(16) columns to uuid instead of bytea
    #[arg(long)]
    pub raw16_uuid: bool,

    /// Overwrite mapping files and the DDL file that already exist
    #[arg(long)]
    pub force: bool,

    /// Read the data first (as `migrate profile`) and choose types and transforms from what the
    /// values hold: date masks, Y/N flags, rtrim, null_if_empty, numbers sized from their digits,
    /// varchar sized from the longest value (the headroom in a comment)
    #[arg(long)]
    pub profile: bool,

    /// With --profile: read only the first N rows of each table
    #[arg(long, value_name = "N", requires = "profile", value_parser = clap::value_parser!(u64).range(1..))]
    pub sample: Option<u64>,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Target PostgreSQL URL for --create-target (default DATABASE_URL)
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub target: Option<String>,
    #[command(flatten)]
    pub logs: Logs,

    /// Where to write the SQLite database (and which one --mutate changes)
    #[arg(long, default_value = "demo/legacy.db")]
    pub out: PathBuf,

    /// Size multiplier: 1 gives the document's 98,438 rows (25 carriers, 10 lines, 1,234
    /// customers, 45,678 coils, 23,456 jobs, 8,901 skids, 12,345 QA results, 6,789 shipments)
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,

    /// Also create the demo target tables in --target (drops the demo tables and the migrate
    /// schema first). Refused where the database holds anything else (other tables, other
    /// entities' progress, keys held by --defer-indexes); with --force it asks first
    #[arg(long)]
    pub create_target: bool,

    /// Overwrite --out if it exists; with --create-target, ask (instead of refusing) before
    /// wiping a database that holds more than the demo
    #[arg(long)]
    pub force: bool,

    /// Change the demo source as a live legacy system would: updates that move LAST_MODIFIED,
    /// new rows, deleted QA results, one row made invalid (then try `migrate sync`)
    #[arg(long, conflicts_with = "create_target")]
    pub mutate: bool,

    /// Write the demo as an Oracle SQL*Plus script (the same rows in Oracle's types, with foreign
    /// keys) to FILE instead of a SQLite database (--create-target still creates the target
    /// tables); with --mutate, the round of changes for a seed made at the same --scale
    #[arg(long, value_name = "FILE")]
    pub oracle_sql: Option<PathBuf>,

    /// With --mutate --oracle-sql: which round of changes this is (new rows get ids past the
    /// earlier rounds')
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub round: u64,
}
