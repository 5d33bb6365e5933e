//! `weft sandbox`: serve the local stand-in for GHL and the partners until Ctrl-C.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{EXIT_OK, EXIT_USAGE};
use crate::sandbox::{load_seed, parse_rate_limit, serve, with_generated_contacts, SandboxConfig};
use crate::validate::{find_project, ProjectContext};

/// `weft sandbox`'s flags.
#[derive(Debug, clap::Args)]
pub struct SandboxArgs {
    #[arg(long, default_value = "127.0.0.1:8090")]
    listen: std::net::SocketAddr,
    /// Initial state (JSON or YAML, the layout of `GET /_sandbox/state`).
    #[arg(long)]
    seed: Option<PathBuf>,
    /// Add N synthetic GHL contacts (distinct names, emails, phones; `dateAdded` in order) after the seed's.
    #[arg(long, value_name = "N", default_value_t = 0)]
    generate_contacts: usize,
    /// Share of requests that fail with a 500, 502, timeout or dropped connection (0 to 1).
    #[arg(long, default_value_t = 0.0)]
    fail_rate: f64,
    /// Delay before every answer, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Requests per window per connector and credential, e.g. `100/10s`, `5/500ms`, `off`.
    #[arg(long, default_value = "100/10s")]
    rate_limit: String,
}

pub fn run(args: SandboxArgs) -> i32 {
    if !(0.0..=1.0).contains(&args.fail_rate) {
        eprintln!("error: --fail-rate must be between 0 and 1, got {}", args.fail_rate);
        return EXIT_USAGE;
    }
    let rate_limit = match parse_rate_limit(&args.rate_limit) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: --rate-limit: {e}");
            return EXIT_USAGE;
        }
    };
    let seed = match args.seed.as_deref().map(load_seed).transpose() {
        Ok(s) => s,
        Err(diags) => {
            super::eprint_diagnostics(&diags);
            return EXIT_USAGE;
        }
    };
    let seed = match with_generated_contacts(seed, args.generate_contacts) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: --generate-contacts: {e}");
            return EXIT_USAGE;
        }
    };
    // The catalog a project here would see: built-ins plus its own connector folders.
    let ctx = ProjectContext::load(find_project(Path::new("./x")).as_deref());
    let config = SandboxConfig {
        fail_rate: args.fail_rate,
        latency: Duration::from_millis(args.latency_ms),
        rate_limit,
        seed,
    };
    let listen = args.listen;
    eprintln!("weft sandbox: http://{listen}/ghl, /razorpay, /payhere, … (GET /_sandbox/state, /_sandbox/log; POST /_sandbox/reset)");
    let rt = match super::runtime(2) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match rt.block_on(async {
        tokio::select! {
            r = serve(listen, config, &ctx.catalog) => r,
            _ = tokio::signal::ctrl_c() => Ok(()),
        }
    }) {
        Ok(()) => EXIT_OK,
        Err(e) => {
            eprintln!("error: {e}");
            EXIT_USAGE
        }
    }
}
