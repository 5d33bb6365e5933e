//! `cargo bench --bench bulk_sync`: bulk sync under a rate limit (issue 6, item 4b). A poll flow pages through
//! N GHL contacts in `weft sandbox`, which enforces GHL's 100 requests per 10 s; `weft serve` queues each contact
//! and its workers run the flow once per contact. Both are the real `weft` binary in child processes, on
//! loopback, so the serve process's peak RSS is its own.
//!
//! Reported per N: list requests, 429 answers, the time from the first list request to the last against the
//! least the limit allows for that many requests (the k-th request, from 0, cannot start before ⌊k/100⌋
//! windows), the time until every contact's run is done, and the peak RSS (VmHWM) of `weft serve`. Targets:
//! throughput ≥ 95% of the allowed rate, no request that ends as a failure because of a 429, RSS flat from
//! 2,000 to 20,000 contacts.
//!
//! Checks (a run that fails one stops the benchmark): every contact queued and processed exactly once, no
//! failed or dead event, no poll error in serve's log.
//!
//! Without `--bench` (as `cargo test --all-targets` runs it) it is a smoke run: 250 contacts, 2 requests per
//! 1 s, a page of 50 — the same checks, no timing claims. Knobs (env): WEFT_BULK_CONTACTS (`2000,20000`),
//! WEFT_BULK_PAGE (100, GHL's largest), WEFT_BULK_LIMIT (requests per window, 100), WEFT_BULK_WINDOW_S (10; a
//! smaller window scales time down: weft's connection gets the same limit), WEFT_BULK_WORKERS (2).
//! Results: benches/BULK_SYNC_RESULTS.md.

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const LOCATION: &str = "benchLocation0000001";

struct Config {
    contacts: Vec<usize>,
    page: usize,
    limit: usize,
    window_s: u64,
    workers: usize,
}

impl Config {
    fn from_env(bench: bool) -> Config {
        let var = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_string());
        let number = |name: &str, default: &str| -> usize {
            var(name, default).parse().unwrap_or_else(|_| panic!("{name} must be a number"))
        };
        let (contacts, page, limit, window) =
            if bench { ("2000,20000", "100", "100", "10") } else { ("250", "50", "2", "1") };
        Config {
            contacts: var("WEFT_BULK_CONTACTS", contacts)
                .split(',')
                .map(|n| n.trim().parse().expect("WEFT_BULK_CONTACTS: numbers separated by commas"))
                .collect(),
            page: number("WEFT_BULK_PAGE", page),
            limit: number("WEFT_BULK_LIMIT", limit),
            window_s: number("WEFT_BULK_WINDOW_S", window) as u64,
            workers: number("WEFT_BULK_WORKERS", "2"),
        }
    }
}

/// What one run measured.
struct Outcome {
    contacts: usize,
    requests: usize,
    throttled: usize,
    /// First list request to last, as the sandbox's log saw them (sampled every 10 ms).
    paging: Duration,
    /// The least time the limit allows for `requests` requests.
    allowed: Duration,
    /// Start of serve to the last contact's run done.
    done: Duration,
    serve_peak_rss_kib: u64,
    serve_rss_at_end_kib: u64,
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let config = Config::from_env(bench);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("bulk-sync-{}", std::process::id()));
    let mut outcomes = Vec::new();
    for &n in &config.contacts {
        let outcome = runtime.block_on(run(&config, n, &root.join(n.to_string())));
        outcomes.push(outcome);
    }
    let _ = std::fs::remove_dir_all(&root);
    report(&config, &outcomes, bench);
}

async fn run(config: &Config, contacts: usize, dir: &Path) -> Outcome {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir.join("flows")).unwrap();
    write_seed(&dir.join("seed.json"), contacts);
    let sandbox_addr = free_port();
    let rate = format!("{}/{}s", config.limit, config.window_s);
    let sandbox = Guard(
        Command::new(env!("CARGO_BIN_EXE_weft"))
            .args(["sandbox", "--listen", &sandbox_addr.to_string(), "--seed"])
            .arg(dir.join("seed.json"))
            .args(["--rate-limit", &rate])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("sandbox.log")).unwrap())
            .spawn()
            .expect("start weft sandbox"),
    );
    let client = reqwest::Client::new();
    let sandbox_url = format!("http://{sandbox_addr}");
    wait_for(&client, &format!("{sandbox_url}/_sandbox/log")).await;

    write_project(dir, &sandbox_url, config);
    let serve_addr = free_port();
    let started = Instant::now();
    let mut serve = Guard(
        Command::new(env!("CARGO_BIN_EXE_weft"))
            .current_dir(dir)
            .args(["serve", "flows", "--listen", &serve_addr.to_string(), "--workers", &config.workers.to_string()])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("serve.log")).unwrap())
            .spawn()
            .expect("start weft serve"),
    );
    let metrics_url = format!("http://{serve_addr}/metrics");

    // Sample until every contact's run is done.
    let pages = contacts.div_ceil(config.page) + 1;
    let expected = Duration::from_secs(config.window_s * (pages / config.limit.max(1)) as u64 + 10);
    // Paging at the limit, plus running every contact's flow at a modest 100 runs/s, with room to spare.
    let deadline = started + expected * 3 + Duration::from_secs(60 + contacts as u64 / 100);
    let (mut first, mut last, mut seen) = (None::<Instant>, None::<Instant>, 0usize);
    let done = loop {
        assert!(
            Instant::now() < deadline,
            "{contacts} contacts: not done after {:?}; see {}",
            expected * 3,
            dir.display()
        );
        if let Some(status) = serve.0.try_wait().unwrap() {
            panic!("weft serve exited with {status}: {}", read(&dir.join("serve.log")));
        }
        let log = get_json(&client, &format!("{sandbox_url}/_sandbox/log")).await;
        let count = log.as_array().map_or(0, Vec::len);
        if count > seen {
            let now = Instant::now();
            first.get_or_insert(now);
            last = Some(now);
            seen = count;
        }
        if let Some(m) = get_text(&client, &metrics_url).await {
            let failed = counter(&m, "weft_events_failed_total");
            assert_eq!(failed, 0, "a run failed: {}", read(&dir.join("serve.log")));
            if counter(&m, "weft_events_processed_total") >= contacts as u64 {
                break started.elapsed();
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let (peak, at_end) = rss_kib(serve.0.id());

    let log = get_json(&client, &format!("{sandbox_url}/_sandbox/log")).await;
    let entries = log.as_array().cloned().unwrap_or_default();
    let throttled = entries.iter().filter(|e| e["status"] == 429).count();
    let other: Vec<&Value> = entries.iter().filter(|e| e["status"] != 200 && e["status"] != 429).collect();
    assert!(other.is_empty(), "unexpected answers: {other:?}");
    let requests = entries.len() - throttled;
    let metrics = get_text(&client, &metrics_url).await.unwrap_or_default();
    assert_eq!(counter(&metrics, "weft_events_received_total"), contacts as u64, "each contact queued once");
    assert_eq!(counter(&metrics, "weft_events_processed_total"), contacts as u64, "each contact run once");
    assert_eq!(counter(&metrics, "weft_events_dead_total"), 0);
    drop(serve);
    drop(sandbox);
    let serve_log = read(&dir.join("serve.log"));
    assert!(!serve_log.contains("poll of"), "a poll failed: {serve_log}");
    let allowed_windows = (requests.saturating_sub(1) / config.limit.max(1)) as u64;
    Outcome {
        contacts,
        requests,
        throttled,
        paging: last.zip(first).map_or(Duration::ZERO, |(l, f)| l - f),
        allowed: Duration::from_secs(allowed_windows * config.window_s),
        done,
        serve_peak_rss_kib: peak,
        serve_rss_at_end_kib: at_end,
    }
}

/// N contacts in the home location, added one second apart, with distinct emails and phones.
fn write_seed(path: &Path, n: usize) {
    let base = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap();
    let contacts: Vec<Value> = (0..n)
        .map(|i| {
            json!({
                "id": format!("bulk{i:016}"),
                "locationId": LOCATION,
                "firstName": format!("Contact{i}"),
                "lastName": "Bulk",
                "email": format!("contact{i}@example.com"),
                "phone": format!("+9198{i:08}"),
                "tags": ["imported"],
                "dateAdded": (base + chrono::Duration::seconds(i as i64)).to_rfc3339(),
            })
        })
        .collect();
    let seed = json!({"ghl": {"location_id": LOCATION, "contacts": contacts}});
    std::fs::write(path, serde_json::to_vec(&seed).unwrap()).unwrap();
}

/// weft.yaml (GHL through the sandbox, with the sandbox's limit) and the poll flow: each contact mapped to the
/// record a downstream system would take.
fn write_project(dir: &Path, sandbox: &str, config: &Config) {
    std::fs::write(dir.join("ghl-token"), "pit-bench-bulk-sync-0001").unwrap();
    std::fs::write(
        dir.join("weft.yaml"),
        format!(
            "connections:\n  ghl:\n    connector: ghl\n    base_url: {sandbox}/ghl\n    auth: {{ token: {{ file: ghl-token }} }}\n    location_id: {LOCATION}\n    rate_limit: {{ requests: {}, per_seconds: {} }}\n",
            config.limit, config.window_s
        ),
    )
    .unwrap();
    let flow = format!(
        r#"flow: ghl-contacts-bulk-sync
description: Page through every GHL contact and map each to a downstream record.
trigger:
  poll:
    call: ghl.contacts.get-contacts
    every: 1h
    query: {{ locationId: "${{{{ connections.ghl.location_id }}}}", limit: {} }}
    items: $.contacts
    id: $.id
steps:
  - id: record
    set:
      external_id: $.trigger.id
      name: "${{{{ trigger.firstName }}}} ${{{{ trigger.lastName }}}}"
      email: $.trigger.email
      phone: $.trigger.phone
      added: $.trigger.dateAdded
"#,
        config.page
    );
    std::fs::write(dir.join("flows/bulk-sync.yaml"), flow).unwrap();
}

fn report(config: &Config, outcomes: &[Outcome], bench: bool) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "bulk sync: page {} contacts, sandbox and weft limited to {} requests / {} s, {} workers{}",
        config.page,
        config.limit,
        config.window_s,
        config.workers,
        if bench { "" } else { " (smoke run: no timing claims)" }
    );
    let _ = writeln!(
        out,
        "| contacts | list requests | 429 answers | paging s | least allowed s | throughput vs allowed | all runs done s | runs/s | serve peak RSS MiB | serve RSS at end MiB |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|");
    for o in outcomes {
        let ratio = if o.allowed.is_zero() {
            "n/a (within one window)".to_string()
        } else {
            format!("{:.1}%", 100.0 * o.allowed.as_secs_f64() / o.paging.as_secs_f64().max(1e-9))
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.2} | {:.0} | {} | {:.2} | {:.0} | {:.1} | {:.1} |",
            o.contacts,
            o.requests,
            o.throttled,
            o.paging.as_secs_f64(),
            o.allowed.as_secs_f64(),
            ratio,
            o.done.as_secs_f64(),
            o.contacts as f64 / o.done.as_secs_f64(),
            o.serve_peak_rss_kib as f64 / 1024.0,
            o.serve_rss_at_end_kib as f64 / 1024.0,
        );
    }
}

/// Kills the child when dropped, so a failed check leaves no server behind.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

async fn wait_for(client: &reqwest::Client, url: &str) {
    let until = Instant::now() + Duration::from_secs(60);
    while client.get(url).send().await.is_err() {
        assert!(Instant::now() < until, "{url} did not come up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn get_json(client: &reqwest::Client, url: &str) -> Value {
    let response = client.get(url).send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
    let bytes = response.bytes().await.unwrap_or_else(|e| panic!("{url}: {e}"));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{url}: {e}"))
}

/// `None` while the server is not up yet.
async fn get_text(client: &reqwest::Client, url: &str) -> Option<String> {
    client.get(url).send().await.ok()?.text().await.ok()
}

fn counter(metrics: &str, name: &str) -> u64 {
    metrics.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok()).unwrap_or(0)
}

/// (VmHWM, VmRSS) of a process, in KiB.
fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status.lines().find_map(|l| l.strip_prefix(name)?.trim().strip_suffix("kB")?.trim().parse().ok()).unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}
