//! `weft sandbox`: serve the local stand-in for GHL and the partners until Ctrl-C.

use std::path::Path;
use std::time::Duration;

use super::{EXIT_OK, EXIT_USAGE};
use crate::sandbox::{load_seed, parse_rate_limit, serve, SandboxConfig};
use crate::validate::{find_project, ProjectContext};

pub fn run(
    listen: std::net::SocketAddr,
    seed: Option<&Path>,
    fail_rate: f64,
    latency_ms: u64,
    rate_limit: &str,
) -> i32 {
    if !(0.0..=1.0).contains(&fail_rate) {
        eprintln!("error: --fail-rate must be between 0 and 1, got {fail_rate}");
        return EXIT_USAGE;
    }
    let rate_limit = match parse_rate_limit(rate_limit) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: --rate-limit: {e}");
            return EXIT_USAGE;
        }
    };
    let seed = match seed.map(load_seed).transpose() {
        Ok(s) => s,
        Err(diags) => {
            super::eprint_diagnostics(&diags);
            return EXIT_USAGE;
        }
    };
    // The catalog a project here would see: built-ins plus its own connector folders.
    let ctx = ProjectContext::load(find_project(Path::new("./x")).as_deref());
    let config = SandboxConfig { fail_rate, latency: Duration::from_millis(latency_ms), rate_limit, seed };
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
