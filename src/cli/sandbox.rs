//! `weft sandbox`: serve the local stand-in for GHL and the partners until Ctrl-C.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::{EXIT_OK, EXIT_USAGE};
use crate::sandbox::webhooks::rsa_key_from_pem;
use crate::sandbox::{load_seed, parse_rate_limit, serve, with_generated_contacts, SandboxConfig, WebhookConfig};
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
    /// POST the apps' signed webhook events here when the sandbox's state changes: `URL` for every app, or
    /// `ghl=URL` / `razorpay=URL` for one (repeatable), e.g. `ghl=http://127.0.0.1:8080/hooks/ghl`.
    #[arg(long, value_name = "[APP=]URL")]
    webhook_url: Vec<String>,
    /// The RSA private key (PEM, PKCS#8) GHL events are signed with; `weft serve` must hold its public half.
    #[arg(long, value_name = "FILE")]
    webhook_key: Option<PathBuf>,
    /// The secret Razorpay events are signed with (HMAC-SHA256), the connection's `webhook_secret`.
    #[arg(long, env = "WEFT_SANDBOX_WEBHOOK_SECRET", hide_env_values = true)]
    webhook_secret: Option<String>,
}

/// The apps the sandbox can send events for.
const SENDERS: [&str; 2] = ["ghl", "razorpay"];

/// `--webhook-url`, `--webhook-key` and `--webhook-secret` as a [`WebhookConfig`], or why not.
fn webhook_config(args: &SandboxArgs) -> Result<WebhookConfig, String> {
    let mut config = WebhookConfig::default();
    for given in &args.webhook_url {
        let (app, url) = match given.split_once('=') {
            Some((app, url)) if !app.contains("://") => (app.to_string(), url.to_string()),
            _ => ("*".to_string(), given.clone()),
        };
        if app != "*" && !SENDERS.contains(&app.as_str()) {
            return Err(format!(
                "--webhook-url: the sandbox sends events for {} only, not `{app}`",
                SENDERS.join(" and ")
            ));
        }
        if !url.starts_with("http://") && !url.starts_with("https://") {
            return Err(format!("--webhook-url: `{url}` is not an http(s) URL"));
        }
        config.urls.push((app, url));
    }
    if let Some(path) = &args.webhook_key {
        let pem = std::fs::read_to_string(path)
            .map_err(|e| format!("--webhook-key: cannot read `{}`: {e}", path.display()))?;
        let key = rsa_key_from_pem(&pem).map_err(|e| format!("--webhook-key `{}`: {e}", path.display()))?;
        config.ghl_key = Some(Arc::new(key));
    }
    config.razorpay_secret = args.webhook_secret.clone().filter(|s| !s.is_empty());
    let unsigned: Vec<&str> = SENDERS.iter().copied().filter(|app| !config.can_sign(app)).collect();
    for (app, _) in &config.urls {
        if app != "*" && unsigned.contains(&app.as_str()) {
            let flag = if app == "ghl" { "--webhook-key" } else { "--webhook-secret" };
            return Err(format!("--webhook-url {app}=...: {app} events are signed, so they need {flag}"));
        }
    }
    if config.urls.iter().any(|(app, _)| app == "*") && unsigned.len() == SENDERS.len() {
        return Err(
            "--webhook-url: events are signed; give --webhook-key (GHL) and/or --webhook-secret (Razorpay)".into()
        );
    }
    Ok(config)
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
    let webhooks = match webhook_config(&args) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("error: {e}");
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
        webhooks,
    };
    let listen = args.listen;
    eprintln!("weft sandbox: http://{listen}/ghl, /razorpay, /payhere, … (GET /_sandbox/state, /_sandbox/log, /_sandbox/webhooks; POST /_sandbox/reset)");
    for app in SENDERS {
        match config.webhooks.url_for(app) {
            Some(url) if config.webhooks.can_sign(app) => eprintln!("  {app} events → {url}"),
            Some(_) => eprintln!("  {app} events are not sent: nothing to sign them with"),
            None => {}
        }
    }
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
