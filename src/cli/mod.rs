//! The command line: parse arguments (clap), run a command, render its diagnostics, choose the exit code.
//!
//! Commands return data; this module is the only one that prints.

/// `println!` that does not panic when stdout is closed early (`weft catalog ghl | head`).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// `print!` with the same tolerance.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout().lock(), $($arg)*);
    }};
}

mod catalog;
mod dry_run;
mod events;
mod graph;
mod map;
mod new_test;
mod run;
mod sandbox;
mod serve;
mod test;
mod validate;

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// The input was checked and is fine (warnings allowed unless denied).
pub const EXIT_OK: i32 = 0;
/// The input is invalid: a flow, project or connector has errors.
pub const EXIT_INVALID: i32 = 1;
/// Usage or I/O error: bad arguments, a path that cannot be read.
pub const EXIT_USAGE: i32 = 2;

#[derive(Parser, Debug)]
#[command(name = "weft", version, about = "Integration flows between HighLevel (GHL) and partner apps, as YAML.")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Check flows (and the weft.yaml they belong to) against the schemas and the API catalog.
    Validate {
        /// Flow files or directories (searched recursively). Default: `flows/`.
        paths: Vec<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
        /// Fail (exit 1) on warnings too.
        #[arg(long)]
        deny_warnings: bool,
    },
    /// Print the generated JSON Schemas (flow, project, connector).
    Schema {
        /// Which schema; all of them as one JSON object when omitted.
        #[arg(value_enum)]
        which: Option<SchemaKind>,
    },
    /// List connectors, or one connector's operations and webhook events.
    Catalog {
        /// A connector name (`ghl`, `razorpay`, …); all connectors when omitted.
        connector: Option<String>,
        /// Only entries whose id, path, summary or event name contains TEXT (case-insensitive).
        #[arg(long)]
        search: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Run a flow's `set` step (or a mapping file) over NDJSON events, writing NDJSON.
    Map {
        /// A flow with a `set` step, or a YAML file that is one mapping.
        target: PathBuf,
        /// NDJSON input (default: standard input; `-` too).
        #[arg(long)]
        input: Option<PathBuf>,
        /// Which `set` step of the flow (default: the first).
        #[arg(long)]
        step: Option<String>,
    },
    /// Run a flow for one event without sending anything: print each request and each step's output.
    DryRun {
        flow: PathBuf,
        /// The input event (JSON or YAML file).
        #[arg(long)]
        event: PathBuf,
        /// Recorded responses that answer the flow's reads (and writes, when recorded).
        #[arg(long)]
        cassette: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
    /// Write a test case to start from: the flow run for one event against stand-in answers made from each
    /// operation's response schema (no network), its requests and step statuses as expectations.
    NewTest {
        flow: PathBuf,
        /// The input event (JSON or YAML file).
        #[arg(long)]
        event: PathBuf,
        /// What the case shows, in the file name: `tests/FLOW.NAME.yaml` beside the flow.
        #[arg(long, default_value = "new")]
        name: String,
    },
    /// Run a flow for one event against the real APIs (auth, rate limits, retries, idempotency).
    Run {
        flow: PathBuf,
        /// The input event: a JSON or YAML file, or `-` for JSON on standard input.
        #[arg(long)]
        event: PathBuf,
        /// The event's id (its idempotency scope); default: a hash of the event.
        #[arg(long)]
        event_id: Option<String>,
        /// The state database (default: `.weft/state.db` beside weft.yaml).
        #[arg(long)]
        state: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
    /// Run a flow live and record every exchange as a scrubbed cassette for tests and dry runs.
    Record {
        flow: PathBuf,
        #[arg(long)]
        event: PathBuf,
        /// Where to write the cassette.
        #[arg(long)]
        cassette: PathBuf,
        #[arg(long)]
        event_id: Option<String>,
        #[arg(long)]
        state: Option<PathBuf>,
    },
    /// Receive webhooks (signatures verified, events persisted before 2xx) and run the matching flows.
    Serve {
        /// Flow files or directories (default `flows/`).
        paths: Vec<PathBuf>,
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// Workers running queued events concurrently.
        #[arg(long, default_value_t = 2)]
        workers: usize,
        /// The state database (default: `.weft/state.db` beside weft.yaml).
        #[arg(long)]
        state: Option<PathBuf>,
    },
    /// A local stateful stand-in for GHL, Razorpay and Payhere (routes and request checks from the catalog).
    Sandbox(sandbox::SandboxArgs),
    /// List the events `weft serve` received (newest first).
    Events {
        /// Only `queued`, `claimed`, `done` or `dead` events.
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long)]
        state: Option<PathBuf>,
    },
    /// List the dead letters: events that failed their last attempt.
    DeadLetters {
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long)]
        state: Option<PathBuf>,
    },
    /// Queue a done or dead event again (by the id `weft events` shows).
    Replay {
        id: i64,
        #[arg(long)]
        state: Option<PathBuf>,
    },
    /// Validate, then run every test case: the check CI runs on a project.
    Check {
        /// Default: `flows/`.
        paths: Vec<PathBuf>,
    },
    /// Run every flow test case (files in `tests/` folders beside flows) against its recorded responses.
    Test {
        /// Directories to search or case files. Default: `flows/`.
        paths: Vec<PathBuf>,
    },
    /// Print a flow as a mermaid diagram (trigger, steps, conditions, data dependencies).
    Graph { flow: PathBuf },
    /// Explain a diagnostic code, or list them all.
    Explain {
        /// A code such as `flow::call::unknown_operation`.
        code: Option<String>,
        /// Print the whole registry as markdown (docs/errors.md).
        #[arg(long)]
        markdown: bool,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// miette reports for people.
    Human,
    /// One JSON document with every diagnostic.
    Json,
    /// GitHub Actions workflow commands (annotations on the lines).
    Github,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SchemaKind {
    Flow,
    Project,
    Connector,
    /// A flow's test case (`flows/<app>/tests/*.yaml`).
    Test,
}

/// Print diagnostics to stderr as miette reports (colourless: they often end up in logs).
pub(crate) fn eprint_diagnostics(diags: &[crate::diag::Diagnostic]) {
    for d in diags {
        eprintln!("{}", crate::diag::render::human(d, crate::diag::render::Human::plain()));
    }
}

/// The async runtime of a command (`threads` 1: current thread); a failure to start is a usage error.
pub(crate) fn runtime(threads: usize) -> Result<tokio::runtime::Runtime, i32> {
    let mut builder = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    if threads > 1 {
        builder.worker_threads(threads);
    }
    // Blocking work here is mostly SQLite calls, which the store serialises anyway: a few threads carry them, and
    // a burst of queued events does not grow the process by a thread (and an allocator heap) per waiting call.
    builder.max_blocking_threads(8);
    builder.enable_all().build().map_err(|e| {
        eprintln!("error: cannot start the runtime: {e}");
        EXIT_USAGE
    })
}

/// The log of what happens while a command runs (a delivery refused, a reload, a failed run), as lines with a
/// time and a level on stderr; a command's own answer and its diagnostics are printed, not logged. The services
/// (`serve`, `sandbox`) log from `info` up, every other command only warnings; `RUST_LOG` says otherwise
/// (`RUST_LOG=warn`, `RUST_LOG=weft=debug`).
fn init_log(service: bool) {
    use tracing_subscriber::EnvFilter;
    let default = if service { "info" } else { "warn" };
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => EnvFilter::try_new(&spec).unwrap_or_else(|e| {
            eprintln!("warning: RUST_LOG={spec:?} is not a log filter ({e}); logging `{default}` and up");
            EnvFilter::new(default)
        }),
        _ => EnvFilter::new(default),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(use_color(std::io::stderr().is_terminal()))
        .with_target(false)
        .try_init();
}

/// Colour only for a terminal, and never when `NO_COLOR` is set (https://no-color.org).
pub fn use_color(stream_is_tty: bool) -> bool {
    stream_is_tty && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { EXIT_OK };
            let _ = e.print();
            return code;
        }
    };
    run(cli)
}

pub fn run(cli: Cli) -> i32 {
    init_log(matches!(cli.command, Command::Serve { .. } | Command::Sandbox(_)));
    match cli.command {
        Command::Validate { paths, format, deny_warnings } => {
            let paths = if paths.is_empty() { vec![PathBuf::from("flows")] } else { paths };
            // The report goes to stdout: colour only when stdout is a terminal.
            validate::run(&paths, format, deny_warnings, use_color(std::io::stdout().is_terminal()))
        }
        Command::Schema { which } => {
            use crate::dsl::shape::Format as F;
            let text = match which {
                Some(SchemaKind::Flow) => pretty(F::Flow.schema()),
                Some(SchemaKind::Project) => pretty(F::Project.schema()),
                Some(SchemaKind::Connector) => pretty(F::Connector.schema()),
                Some(SchemaKind::Test) => pretty(F::TestCase.schema()),
                None => pretty(&serde_json::json!({
                    "flow": F::Flow.schema(),
                    "project": F::Project.schema(),
                    "connector": F::Connector.schema(),
                    "test": F::TestCase.schema(),
                })),
            };
            outln!("{text}");
            EXIT_OK
        }
        Command::Catalog { connector, search, json } => catalog::run(connector.as_deref(), search.as_deref(), json),
        Command::Graph { flow } => graph::run(&flow),
        Command::Explain { code, markdown } => explain(code.as_deref(), markdown),
        Command::DryRun { flow, event, cassette, format } => dry_run::run(&flow, &event, cassette.as_deref(), format),
        Command::Run { flow, event, event_id, state, format } => run::run(run::RunArgs {
            flow: &flow,
            event: &event,
            event_id: event_id.as_deref(),
            state: state.as_deref(),
            record: None,
            format,
        }),
        Command::Record { flow, event, cassette, event_id, state } => run::run(run::RunArgs {
            flow: &flow,
            event: &event,
            event_id: event_id.as_deref(),
            state: state.as_deref(),
            record: Some(&cassette),
            format: Format::Human,
        }),
        Command::Serve { paths, listen, workers, state } => {
            let paths = if paths.is_empty() { vec![PathBuf::from("flows")] } else { paths };
            serve::run(&paths, listen, workers, state.as_deref())
        }
        Command::Sandbox(args) => sandbox::run(args),
        Command::Events { status, limit, state } => events::list(state.as_deref(), status.as_deref(), limit),
        Command::DeadLetters { limit, state } => events::list(state.as_deref(), Some("dead"), limit),
        Command::Replay { id, state } => events::replay(state.as_deref(), id),
        Command::Check { paths } => {
            let paths = if paths.is_empty() { vec![PathBuf::from("flows")] } else { paths };
            let color = use_color(std::io::stdout().is_terminal());
            let validated = validate::run(&paths, Format::Human, false, color);
            if validated != EXIT_OK {
                return validated;
            }
            test::run(&paths)
        }
        Command::NewTest { flow, event, name } => new_test::run(&flow, &event, &name),
        Command::Test { paths } => test::run(&if paths.is_empty() { vec![PathBuf::from("flows")] } else { paths }),
        Command::Map { target, input, step } => map::run(&target, input.as_deref(), step.as_deref()),
    }
}

/// The committed form of a schema file: pretty JSON with a trailing newline.
pub fn pretty(v: &serde_json::Value) -> String {
    serde_json::to_string_pretty(v).expect("JSON values always serialise")
}

fn explain(code: Option<&str>, markdown: bool) -> i32 {
    use crate::diag::codes;
    if markdown {
        out!("{}", codes::markdown());
        return EXIT_OK;
    }
    match code {
        None => {
            for c in codes::ALL {
                outln!("{:<42} {}", c.id, c.summary);
            }
            EXIT_OK
        }
        Some(id) => match codes::find(id) {
            Some(c) => {
                outln!("{}\n\n{}\n\nhow to fix: {}", c.id, c.summary, c.help);
                EXIT_OK
            }
            None => {
                let ids: Vec<&str> = codes::ALL.iter().map(|c| c.id).collect();
                eprintln!("unknown code `{id}`: {}", crate::diag::suggest(id, ids));
                EXIT_USAGE
            }
        },
    }
}
