//! `cargo bench --bench ingest`: webhook ingest (issue 6, item 4a). Signed Razorpay `payment.captured`
//! deliveries → `weft serve`'s `POST /hooks/razorpay` (verify the HMAC, read the event id, append to the
//! ingest journal, answer 200 `accepted`; the importer queues them into SQLite in WAL every 5 ms, as in `weft
//! serve`), against a bare axum handler that reads the body and answers 200, both on loopback in this process.
//! Target: weft ≥ 50% of the bare handler's requests/s, with p99 < 25 ms. `WEFT_INGEST_JOURNAL=off` measures
//! the design before it (each delivery committed to the queue before its answer) in the same binary.
//!
//! Set-up (chosen so that the two targets differ only in the handler):
//! - each server runs on its own tokio runtime with 2 worker threads (what `weft serve` uses), the load
//!   generator on a third runtime; all three are separate OS threads, sharing the machine's cores. Only one
//!   server has traffic at a time. Workers (`Service::work`) are NOT started: this measures ingest only, and
//!   every queued event stays in the table, which is counted after each weft round (nothing may be lost:
//!   every accepted event must be in the queue, once, within 5 s).
//! - the load generator is a minimal HTTP/1.1 client over tokio `TcpStream`s: N keep-alive connections, one
//!   request in flight on each (closed loop), requests fully serialised *before* timing (headers, a unique
//!   `x-razorpay-event-id`, the signature over the real sample body), so the client's own CPU cost is little
//!   more than a write and a read per request. `WEFT_INGEST_CLIENT=reqwest` uses reqwest instead (a pool of
//!   the same number of keep-alive connections), which spends several times more CPU per request on the same
//!   cores that serve it, and so flatters the slower target.
//! - rounds are interleaved (bare, weft, bare, weft, ...) after one untimed warm-up of each; after each weft
//!   run a 1.1 s pause lets weft's checkpointer copy that run's WAL, so that it does not run on into the bare
//!   handler's next run. Each run reports the process's CPU per request and by thread.
//! - the global allocator is mimalloc, as in the `weft` binary.
//!
//! Run without `--bench` (as `cargo test --all-targets` does) it is a smoke test: a few hundred requests, the
//! same checks through both clients, no timing claims. Knobs (env): WEFT_INGEST_CLIENT (raw | reqwest),
//! WEFT_INGEST_REQUESTS (50000 per run), WEFT_INGEST_CONCURRENCY (32), WEFT_INGEST_ROUNDS (3),
//! WEFT_INGEST_WARMUP (2000), WEFT_INGEST_CLIENT_THREADS (1), WEFT_INGEST_SERVER_THREADS (2),
//! WEFT_INGEST_IDS (sequential | random: event ids in no order, as GHL's `webhookId` UUIDs are),
//! WEFT_INGEST_JOURNAL (on | off).
//! Results: benches/INGEST_RESULTS.md.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::routing::post;
use axum::{Json, Router};
use ring::hmac;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::runtime::Runtime;
use weft::serve::Service;
use weft::store::journal::Journal;
use weft::store::sqlite::SqliteStore;
use weft::validate::ProjectContext;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SECRET: &str = "whsec-bench-5d1e9a3c7b2f4068";
const BODY: &[u8] = include_bytes!("../connectors/razorpay/webhooks/payment.captured.json");
/// No single request may take longer than this; the whole benchmark stops itself at `Config::deadline`.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

struct Config {
    requests: usize,
    concurrency: usize,
    rounds: usize,
    warmup: usize,
    client_threads: usize,
    server_threads: usize,
    client: ClientKind,
    /// The whole run (warm-up and all rounds) is abandoned past this.
    deadline: Duration,
    /// The pause after each weft run for weft's checkpointer to copy the run's WAL (none in the smoke test).
    quiet: Duration,
}

impl Config {
    fn from_env(bench: bool) -> Config {
        let client = match std::env::var("WEFT_INGEST_CLIENT").as_deref() {
            Ok("reqwest") => ClientKind::Reqwest,
            Ok("raw") | Err(_) => ClientKind::Raw,
            Ok(other) => panic!("WEFT_INGEST_CLIENT={other}: expected raw or reqwest"),
        };
        let var = |name: &str, default: usize| {
            std::env::var(name).ok().and_then(|v| v.parse::<usize>().ok()).filter(|&n| n > 0).unwrap_or(default)
        };
        if bench {
            Config {
                requests: var("WEFT_INGEST_REQUESTS", 50_000),
                concurrency: var("WEFT_INGEST_CONCURRENCY", 32),
                rounds: var("WEFT_INGEST_ROUNDS", 3),
                warmup: var("WEFT_INGEST_WARMUP", 2_000),
                client_threads: var("WEFT_INGEST_CLIENT_THREADS", 1),
                server_threads: var("WEFT_INGEST_SERVER_THREADS", 2),
                client,
                deadline: Duration::from_secs(300),
                // Two of weft's checkpoint intervals (500 ms).
                quiet: Duration::from_millis(1_100),
            }
        } else {
            Config {
                requests: 200,
                concurrency: 4,
                rounds: 1,
                warmup: 20,
                client_threads: 1,
                server_threads: 2,
                client,
                deadline: Duration::from_secs(60),
                quiet: Duration::ZERO,
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    Bare,
    Weft,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Bare => "bare axum 200",
            Target::Weft => "weft ingest",
        }
    }
}

/// One timed run against one target.
struct Run {
    target: Target,
    round: usize,
    requests: usize,
    elapsed: Duration,
    /// CPU time (user + system) the whole process used during the run: the server, the load generator and any
    /// thread of its own (weft's writer and checkpointer).
    cpu: Duration,
    /// CPU clock ticks per thread name during the run (`/proc/self/task`), largest first when reported.
    threads: Vec<(u64, String)>,
    /// Per-request latency, sorted.
    latencies: Vec<Duration>,
    /// Rows in the events table after the run, and how many there should be (weft only).
    rows: Option<(u64, u64)>,
}

impl Run {
    fn rps(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
    fn quantile(&self, q: f64) -> Duration {
        let i = ((self.latencies.len() as f64 * q).ceil() as usize).clamp(1, self.latencies.len()) - 1;
        self.latencies[i]
    }
    fn max(&self) -> Duration {
        self.latencies.last().copied().unwrap_or_default()
    }
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let cfg = Config::from_env(bench);
    let _ = rustls::crypto::ring::default_provider().install_default();

    let dir = project();
    let db = dir.join(".weft/state.db");
    let ctx = ProjectContext::load(Some(&dir.join("weft.yaml")));
    assert!(ctx.diagnostics.iter().all(|d| !d.is_error()), "{:#?}", ctx.diagnostics);
    let store = Arc::new(SqliteStore::open(&db).expect("open the state file"));
    let svc = Service::build(&ctx, &[dir.join("flows")], store).unwrap_or_else(|d| panic!("{d:#?}"));
    // As `weft serve` does: deliveries go to the ingest journal before their answer, and the importer queues
    // them. WEFT_INGEST_JOURNAL=off commits each to the queue before answering instead (the design before it).
    let journal = std::env::var("WEFT_INGEST_JOURNAL").map_or(true, |v| v != "off");
    let svc = Arc::new(match journal {
        true => svc.with_journal(Journal::open(&Journal::beside(&db)).expect("open the ingest journal")),
        false => svc,
    });
    let importer = svc.start_importer().expect("start the importer");

    let bare_rt = server_runtime("bare-srv", cfg.server_threads);
    let weft_rt = server_runtime("weft-srv", cfg.server_threads);
    let bare = serve(&bare_rt, Router::new().route("/hooks/razorpay", post(bare_handler)));
    let weft = serve(&weft_rt, svc.router());
    let client = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cfg.client_threads)
        .thread_name("load-gen")
        .enable_all()
        .build()
        .expect("client runtime");

    if bench {
        println!(
            "ingest: {} client, {} requests per run, {} connections (1 in flight each), {} rounds, warm-up {}, \
             client threads {}, server threads {} each, {} B body, {} cores, {}",
            cfg.client.name(),
            cfg.requests,
            cfg.concurrency,
            cfg.rounds,
            cfg.warmup,
            cfg.client_threads,
            cfg.server_threads,
            BODY.len(),
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            if journal {
                "ingest journal"
            } else {
                "no journal: each delivery committed to the queue before its answer"
            }
        );
    }

    // The smoke test goes through both clients; a benchmark uses the one chosen.
    let kinds = if bench { vec![cfg.client] } else { vec![ClientKind::Raw, ClientKind::Reqwest] };
    let started = Instant::now();
    let mut runs = Vec::new();
    for kind in kinds {
        let cfg = Config { client: kind, ..cfg };
        runs.extend(
            client
                .block_on(async {
                    tokio::time::timeout(cfg.deadline, measure(&cfg, bare, weft, &db))
                        .await
                        .unwrap_or_else(|_| panic!("the benchmark did not finish within {:?}: abandoned", cfg.deadline))
                })
                .unwrap_or_else(|e| panic!("{e}")),
        );
    }

    client.shutdown_timeout(Duration::from_secs(1));
    bare_rt.shutdown_timeout(Duration::from_secs(1));
    weft_rt.shutdown_timeout(Duration::from_secs(1));
    drop(importer);
    drop(svc);
    let _ = std::fs::remove_dir_all(&dir);

    if bench {
        report(&runs);
        println!("total {:.1} s", started.elapsed().as_secs_f64());
    } else {
        println!(
            "ingest smoke: {} runs of {} requests, nothing lost (run with --bench to measure)",
            runs.len(),
            cfg.requests
        );
    }
}

/// Sanity checks, the warm-up, then the interleaved rounds.
async fn measure(cfg: &Config, bare: SocketAddr, weft: SocketAddr, db: &Path) -> Result<Vec<Run>, String> {
    // A forged signature is refused and not stored: the benchmark really goes through verification.
    let stored_before = count_rows(db)?;
    // Event ids are unique across runs and clients: nothing is ever a duplicate.
    let k = if cfg.client == ClientKind::Raw { "raw" } else { "rq" };
    let Requests::Raw(forged) = build_requests(ClientKind::Raw, weft, "forged", 1, Some(&"0".repeat(64))) else {
        unreachable!()
    };
    let (status, body) = one_request(weft, &forged[0]).await.map_err(|e| format!("forged request: {e}"))?;
    if status != 401 {
        return Err(format!("a forged signature got {status}, not 401: {}", String::from_utf8_lossy(&body)));
    }
    let mut expected_rows = stored_before;
    if count_rows(db)? != expected_rows {
        return Err("the forged request was stored".into());
    }

    // One pool of keep-alive connections per target for reqwest, kept from the warm-up on (unused when raw).
    let pool = || reqwest::Client::builder().pool_max_idle_per_host(cfg.concurrency).build();
    let (bare_client, weft_client) = (pool().map_err(|e| e.to_string())?, pool().map_err(|e| e.to_string())?);
    for target in [Target::Bare, Target::Weft] {
        let (addr, client) = if target == Target::Bare { (bare, &bare_client) } else { (weft, &weft_client) };
        let requests = build_requests(cfg.client, addr, &format!("{k}_warm"), cfg.warmup, None);
        load(addr, target, requests, cfg.concurrency, client).await?;
    }
    expected_rows += cfg.warmup as u64;
    check_rows(db, expected_rows)?;
    std::thread::sleep(cfg.quiet);

    let mut runs = Vec::new();
    for round in 1..=cfg.rounds {
        for target in [Target::Bare, Target::Weft] {
            let (addr, client) = if target == Target::Bare { (bare, &bare_client) } else { (weft, &weft_client) };
            // Unique ids in every run; the bare handler gets the same requests (ids included) as weft.
            let tag = format!("{k}_r{round}{}", if target == Target::Bare { "b" } else { "w" });
            let requests = build_requests(cfg.client, addr, &tag, cfg.requests, None);
            let (cpu_before, threads_before) = (process_cpu(), thread_cpu());
            let (elapsed, mut latencies) = load(addr, target, requests, cfg.concurrency, client).await?;
            let cpu = process_cpu().saturating_sub(cpu_before);
            let threads = thread_cpu()
                .into_iter()
                .map(|(name, ticks)| (ticks.saturating_sub(threads_before.get(&name).copied().unwrap_or(0)), name))
                .filter(|(ticks, _)| *ticks > 0)
                .collect();
            latencies.sort_unstable();
            let rows = if target == Target::Weft {
                expected_rows += cfg.requests as u64;
                let rows = check_rows(db, expected_rows)?;
                // weft's checkpointer copies the run's WAL into the database for a while after it: let it finish
                // before the next timed run. Until 2026-11-27 it went on during the bare handler's next run, which
                // it slowed (and weft's own run started with less left to copy): the ratio flattered weft by ~4
                // points (benches/INGEST_RESULTS.md).
                std::thread::sleep(cfg.quiet);
                Some((rows, expected_rows))
            } else {
                None
            };
            runs.push(Run { target, round, requests: cfg.requests, elapsed, cpu, threads, latencies, rows });
        }
    }
    Ok(runs)
}

/// How the load generator talks HTTP.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ClientKind {
    /// The minimal HTTP/1.1 client below: pre-serialised bytes, a write and a read per request.
    Raw,
    /// reqwest (hyper underneath), a pool of `concurrency` keep-alive connections; several times the CPU.
    Reqwest,
}

impl ClientKind {
    fn name(self) -> &'static str {
        match self {
            ClientKind::Raw => "raw HTTP/1.1",
            ClientKind::Reqwest => "reqwest",
        }
    }
}

/// Every request of one run, built before timing.
enum Requests {
    Raw(Vec<Vec<u8>>),
    Reqwest { url: String, body: Bytes, headers: Vec<reqwest::header::HeaderMap> },
}

impl Requests {
    fn len(&self) -> usize {
        match self {
            Requests::Raw(r) => r.len(),
            Requests::Reqwest { headers, .. } => headers.len(),
        }
    }
}

/// Send every request with `concurrency` in flight (closed loop: each of `concurrency` tasks sends its next
/// request when the previous one is answered, over its own keep-alive connection); return the wall time from
/// the first request to the last response and each request's latency. Any non-200 answer, or a weft answer
/// other than `queued`, fails the run.
async fn load(
    addr: SocketAddr,
    target: Target,
    requests: Requests,
    concurrency: usize,
    reqwest_client: &reqwest::Client,
) -> Result<(Duration, Vec<Duration>), String> {
    let requests = Arc::new(requests);
    let tasks = concurrency.min(requests.len());
    let mut conns = Vec::with_capacity(tasks);
    for _ in 0..tasks {
        conns.push(match *requests {
            Requests::Raw(_) => {
                let stream = TcpStream::connect(addr).await.map_err(|e| format!("connect to {addr}: {e}"))?;
                stream.set_nodelay(true).map_err(|e| e.to_string())?;
                Some(stream)
            }
            Requests::Reqwest { .. } => None,
        });
    }
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut handles = Vec::with_capacity(tasks);
    for mut stream in conns {
        let (requests, next, client) = (requests.clone(), next.clone(), reqwest_client.clone());
        handles.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(requests.len() / tasks + 1);
            let mut buf = Vec::with_capacity(1024);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= requests.len() {
                    break;
                }
                let sent = Instant::now();
                let answer = async {
                    match (&*requests, stream.as_mut()) {
                        (Requests::Raw(raw), Some(stream)) => exchange(stream, &raw[i], &mut buf)
                            .await
                            .map(|(status, _)| status)
                            .map_err(|e| e.to_string()),
                        (Requests::Reqwest { url, body, headers }, _) => {
                            let response = client
                                .post(url)
                                .headers(headers[i].clone())
                                .body(body.clone())
                                .send()
                                .await
                                .map_err(|e| e.to_string())?;
                            let status = response.status().as_u16();
                            buf.clear();
                            buf.extend_from_slice(&response.bytes().await.map_err(|e| e.to_string())?);
                            Ok(status)
                        }
                        (Requests::Raw(_), None) => unreachable!("a raw run has its connections"),
                    }
                };
                let status = tokio::time::timeout(REQUEST_TIMEOUT, answer)
                    .await
                    .map_err(|_| format!("request {i} took longer than {REQUEST_TIMEOUT:?}"))?
                    .map_err(|e| format!("request {i}: {e}"))?;
                latencies.push(sent.elapsed());
                // `exchange` leaves the whole response in `buf`, reqwest just the body: look for the status
                // in either.
                let ok = status == 200
                    && (target == Target::Bare
                        || buf.windows(17).any(|w| w == b"\"status\":\"queued\"")
                        || buf.windows(19).any(|w| w == b"\"status\":\"accepted\""));
                if !ok {
                    return Err(format!("request {i}: {status} {}", String::from_utf8_lossy(&buf)));
                }
            }
            Ok::<_, String>(latencies)
        }));
    }
    let mut all = Vec::with_capacity(requests.len());
    for handle in handles {
        all.extend(handle.await.map_err(|e| e.to_string())??);
    }
    Ok((started.elapsed(), all))
}

/// Write one request, read one response (status line, headers, `content-length` body) into `buf`.
async fn exchange<'b>(
    stream: &mut TcpStream,
    request: &[u8],
    buf: &'b mut Vec<u8>,
) -> std::io::Result<(u16, &'b [u8])> {
    stream.write_all(request).await?;
    buf.clear();
    let mut chunk = [0u8; 4096];
    let mut head: Option<(usize, u16, usize)> = None; // (body start, status, content length)
    loop {
        if head.is_none() {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let (status, len) = parse_head(&buf[..end])?;
                head = Some((end + 4, status, len));
            }
        }
        if let Some((start, status, len)) = head {
            if buf.len() >= start + len {
                if buf.len() > start + len {
                    return Err(bad("bytes after the response"));
                }
                return Ok((status, &buf[start..]));
            }
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed mid-response"));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The status code and `content-length` of a response head.
fn parse_head(head: &[u8]) -> std::io::Result<(u16, usize)> {
    let text = std::str::from_utf8(head).map_err(|_| bad("response head is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.strip_prefix("HTTP/1.1 "))
        .and_then(|l| l.get(..3))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no HTTP/1.1 status line"))?;
    let len = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .ok_or_else(|| bad("no content-length"))?;
    Ok((status, len))
}

fn bad(msg: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.to_string())
}

/// One request on a fresh connection (for the sanity checks).
async fn one_request(addr: SocketAddr, request: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
    let mut stream = TcpStream::connect(addr).await?;
    let mut buf = Vec::new();
    let (status, body) = exchange(&mut stream, request, &mut buf).await?;
    Ok((status, body.to_vec()))
}

/// The `i`th event id of a run: `evt_{tag}_{i:08}`, or with WEFT_INGEST_IDS=random a 64-bit mix of `i` in hex
/// (distinct for distinct `i`: the mix is a bijection), so that the ids reach the dedup index in no order.
fn event_id(tag: &str, i: usize) -> String {
    match std::env::var("WEFT_INGEST_IDS").as_deref() {
        Ok("random") => {
            // splitmix64's finaliser.
            let mut z = (i as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            format!("evt_{tag}_{:016x}", z ^ (z >> 31))
        }
        Ok("sequential") | Err(_) => format!("evt_{tag}_{i:08}"),
        Ok(other) => panic!("WEFT_INGEST_IDS={other}: expected sequential or random"),
    }
}

/// `count` requests, each with its own event id (see [`event_id`]) and the HMAC-SHA256 of the sample body under
/// the connection's secret (or `signature`, to forge one): complete HTTP/1.1 bytes for the raw client, header
/// maps for reqwest. Built before any timing.
fn build_requests(kind: ClientKind, addr: SocketAddr, tag: &str, count: usize, signature: Option<&str>) -> Requests {
    let key = hmac::Key::new(hmac::HMAC_SHA256, SECRET.as_bytes());
    let signed = (0..count).map(|i| {
        let sig = signature.map_or_else(|| hex::encode(hmac::sign(&key, BODY).as_ref()), str::to_string);
        (event_id(tag, i), sig)
    });
    match kind {
        ClientKind::Raw => Requests::Raw(
            signed
                .map(|(id, sig)| {
                    let mut req = format!(
                        "POST /hooks/razorpay HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
                         content-length: {}\r\nx-razorpay-signature: {sig}\r\nx-razorpay-event-id: {id}\r\n\r\n",
                        BODY.len()
                    )
                    .into_bytes();
                    req.extend_from_slice(BODY);
                    req
                })
                .collect(),
        ),
        ClientKind::Reqwest => Requests::Reqwest {
            url: format!("http://{addr}/hooks/razorpay"),
            body: Bytes::from_static(BODY),
            headers: signed
                .map(|(id, sig)| {
                    let mut h = reqwest::header::HeaderMap::new();
                    h.insert("content-type", "application/json".parse().expect("header"));
                    h.insert("x-razorpay-signature", sig.parse().expect("header"));
                    h.insert("x-razorpay-event-id", id.parse().expect("header"));
                    h
                })
                .collect(),
        },
    }
}

async fn bare_handler(body: Bytes) -> Json<serde_json::Value> {
    std::hint::black_box(&body);
    Json(json!({"status": "ok"}))
}

fn server_runtime(name: &str, threads: usize) -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name(name)
        .enable_all()
        .build()
        .expect("server runtime")
}

/// Serve `app` on 127.0.0.1 (a free port) on `rt`, as `weft serve` does (plain `axum::serve`).
fn serve(rt: &Runtime, app: Router) -> SocketAddr {
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local address");
    rt.spawn(async move { axum::serve(listener, app).await.expect("serve") });
    addr
}

/// Rows in the events table, read through a connection of its own (what is on disk, not what weft says).
fn count_rows(db: &Path) -> Result<u64, String> {
    let conn = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| format!("open {}: {e}", db.display()))?;
    conn.query_row("SELECT count(*) FROM events WHERE connection = 'razorpay'", [], |r| r.get(0))
        .map_err(|e| format!("count events: {e}"))
}

/// Every accepted event must reach the queue, once: at once without the journal, within a few of the
/// importer's intervals with it.
fn check_rows(db: &Path, expected: u64) -> Result<u64, String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let rows = count_rows(db)?;
        if rows == expected {
            return Ok(rows);
        }
        if rows > expected || Instant::now() >= deadline {
            return Err(format!("{rows} events in the queue, {expected} accepted: events were lost or duplicated"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A project like tests/serve.rs: one Razorpay connection with a webhook secret in a file, one flow on
/// `razorpay payment.captured`. Under Cargo's target tmp dir (on disk, not a tmpfs).
fn project() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("weft-ingest-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("flows")).expect("create the project");
    std::fs::write(dir.join("secret.txt"), format!("{SECRET}\n")).expect("write the secret");
    std::fs::write(dir.join("ghl-token.txt"), "pit-bench-token-0001\n").expect("write the token");
    std::fs::write(
        dir.join("weft.yaml"),
        "connections:\n  ghl:\n    connector: ghl\n    base_url: http://127.0.0.1:9\n    auth: { token: { file: ghl-token.txt } }\n    location_id: ve9EPM428h8vShlRW1KT\n  razorpay:\n    connector: razorpay\n    auth: { username: { env: X_ID }, password: { env: X_SECRET } }\n    webhook_secret: { file: secret.txt }\n",
    )
    .expect("write weft.yaml");
    std::fs::write(
        dir.join("flows/payment-captured.yaml"),
        include_str!("../tests/fixtures/payment-captured.flow.yaml"),
    )
    .expect("write the flow");
    dir
}

/// CPU time this process has used so far, all threads.
fn process_cpu() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the whole `rusage` it is given a pointer to; RUSAGE_SELF is always valid, and on
    // the impossible failure the zeroed value is still a valid `rusage`.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// CPU clock ticks (user + system) used so far by this process's threads, summed per thread name.
fn thread_cpu() -> std::collections::HashMap<String, u64> {
    let mut ticks = std::collections::HashMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return ticks };
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else { continue };
        // `pid (name) state ppid …`: the name may hold spaces, so split after its closing parenthesis; utime and
        // stime are the 12th and 13th fields after it.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let used: u64 = fields.get(11..13).into_iter().flatten().filter_map(|f| f.parse::<u64>().ok()).sum();
        *ticks.entry(stat[open + 1..close].to_string()).or_insert(0) += used;
    }
    ticks
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// A markdown table of every run, then per-target medians, the ratio and the verdicts.
fn report(runs: &[Run]) {
    println!();
    println!(
        "| round | target | requests | wall s | req/s | CPU µs/req | cores busy | p50 ms | p99 ms | max ms | queue rows after (expected) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for r in runs {
        let rows = r.rows.map_or_else(|| "-".to_string(), |(n, e)| format!("{n} ({e})"));
        println!(
            "| {} | {} | {} | {:.3} | {:.0} | {:.1} | {:.2} | {:.2} | {:.2} | {:.2} | {rows} |",
            r.round,
            r.target.name(),
            r.requests,
            r.elapsed.as_secs_f64(),
            r.rps(),
            r.cpu.as_secs_f64() * 1e6 / r.requests as f64,
            r.cpu.as_secs_f64() / r.elapsed.as_secs_f64(),
            ms(r.quantile(0.50)),
            ms(r.quantile(0.99)),
            ms(r.max())
        );
    }
    let of = |t: Target| runs.iter().filter(move |r| r.target == t);
    println!();
    println!("| target | median req/s | median p50 ms | median p99 ms | worst p99 ms | max ms |");
    println!("|---|---|---|---|---|---|");
    for t in [Target::Bare, Target::Weft] {
        println!(
            "| {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} |",
            t.name(),
            median(of(t).map(Run::rps).collect()),
            median(of(t).map(|r| ms(r.quantile(0.50))).collect()),
            median(of(t).map(|r| ms(r.quantile(0.99))).collect()),
            of(t).map(|r| ms(r.quantile(0.99))).fold(0.0, f64::max),
            of(t).map(|r| ms(r.max())).fold(0.0, f64::max)
        );
    }
    // Where the CPU went, per thread name, over all of a target's runs (clock ticks: a coarse split).
    // SAFETY: sysconf only reads a configuration value.
    let tick_us = 1e6 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    println!();
    for t in [Target::Bare, Target::Weft] {
        let mut by_thread = std::collections::BTreeMap::<&str, u64>::new();
        for run in of(t) {
            for (ticks, name) in &run.threads {
                *by_thread.entry(name.as_str()).or_insert(0) += ticks;
            }
        }
        let requests: usize = of(t).map(|r| r.requests).sum();
        let mut shares: Vec<(u64, &str)> = by_thread.into_iter().map(|(name, ticks)| (ticks, name)).collect();
        shares.sort_unstable_by(|a, b| b.cmp(a));
        let shares: Vec<String> = shares
            .iter()
            .map(|(ticks, name)| format!("{name} {:.1}", *ticks as f64 * tick_us / requests.max(1) as f64))
            .collect();
        println!("{} CPU µs per request by thread: {}", t.name(), shares.join(", "));
    }
    let ratio = median(of(Target::Weft).map(Run::rps).collect()) / median(of(Target::Bare).map(Run::rps).collect());
    // Each weft run against the bare run just before it, in the same round.
    let per_round: Vec<f64> =
        of(Target::Weft).zip(of(Target::Bare)).map(|(w, b)| w.rps() / b.rps()).collect::<Vec<_>>();
    let worst_p99 = of(Target::Weft).map(|r| ms(r.quantile(0.99))).fold(0.0, f64::max);
    println!();
    println!(
        "weft/bare req/s: {:.1}% (medians); per round: {}",
        ratio * 100.0,
        per_round.iter().map(|r| format!("{:.1}%", r * 100.0)).collect::<Vec<_>>().join(", ")
    );
    println!("target >= 50% of bare req/s: {}", if ratio >= 0.5 { "met" } else { "NOT met" });
    println!(
        "target weft p99 < 25 ms (worst round {worst_p99:.2} ms): {}",
        if worst_p99 < 25.0 { "met" } else { "NOT met" }
    );
}
