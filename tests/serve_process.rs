//! `weft serve` as a process, the way a service manager runs it: SIGHUP reloads the flows (a broken flow is
//! refused and the running ones stay), SIGTERM stops it with exit code 0, and a schedule missed while it was
//! stopped runs once when it starts again. Its log has a level on every line and never a refused body.

#![cfg(unix)]

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Serve {
    child: Child,
    log: std::path::PathBuf,
    port: u16,
}

impl Serve {
    fn start(dir: &Path) -> Serve {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = dir.join(format!("serve-{port}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_weft"))
            .current_dir(dir)
            .args(["serve", "flows", "--listen", &format!("127.0.0.1:{port}"), "--workers", "1"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let serve = Serve { child, log, port };
        serve.wait_for_log("listening on", Duration::from_secs(30));
        // The signal handlers are installed by the tasks that start right after the banner.
        std::thread::sleep(Duration::from_millis(300));
        serve
    }

    fn log(&self) -> String {
        let mut text = String::new();
        let _ = std::fs::File::open(&self.log).and_then(|mut f| f.read_to_string(&mut text));
        text
    }

    fn wait_for_log(&self, needle: &str, limit: Duration) -> String {
        let until = Instant::now() + limit;
        loop {
            let text = self.log();
            if text.contains(needle) {
                return text;
            }
            assert!(Instant::now() < until, "no `{needle}` in serve's log:\n{text}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill").args([format!("-{name}"), self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
    }

    fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let until = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(Instant::now() < until, "serve did not stop:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const NIGHTLY: &str = "flow: nightly\ndescription: Every night at 02:00 in Kolkata.\ntrigger:\n  schedule: { cron: \"0 2 * * *\", timezone: Asia/Kolkata }\nsteps:\n  - id: at\n    set: { at: $.trigger.scheduled_at }\n";

#[test]
fn sighup_reloads_sigterm_stops_cleanly_and_a_missed_schedule_runs_once_on_start() {
    let dir = std::env::temp_dir().join(format!("weft-serve-process-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("flows")).unwrap();
    std::fs::write(dir.join("weft.yaml"), "connections: {}\n").unwrap();
    std::fs::write(dir.join("flows/nightly.yaml"), NIGHTLY).unwrap();

    let mut serve = Serve::start(&dir);
    // A refused delivery is logged as a warning with its reason, never with its body.
    let refused = || {
        let mut http = std::net::TcpStream::connect(("127.0.0.1", serve.port)).unwrap();
        let body = r#"{"email":"private-customer@example.com"}"#;
        let request = format!(
            "POST /hooks/nowhere HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        std::io::Write::write_all(&mut http, request.as_bytes()).unwrap();
        let mut answer = String::new();
        http.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    };
    refused();
    let log = serve.wait_for_log("404 for a delivery to /hooks/nowhere", Duration::from_secs(10));
    assert!(log.contains(" WARN 404 for a delivery"), "{log}");
    assert!(!log.contains("private-customer"), "{log}");
    assert!(log.contains(" INFO listening on"), "{log}");
    // A flood of them is not a flood of lines: 20 within 10 s, then one line saying the rest are only counted.
    for _ in 0..40 {
        refused();
    }
    let log = serve.wait_for_log("not logged one by one", Duration::from_secs(10));
    assert_eq!(log.matches("404 for a delivery").count(), 20, "{log}");

    serve.signal("HUP");
    serve.wait_for_log("reloaded after SIGHUP: 1 flow(s) served", Duration::from_secs(10));

    // A broken flow is refused on reload, with its diagnostics; the running flow stays.
    std::fs::write(dir.join("flows/broken.yaml"), "flow: broken\ntrigger: {}\nsteps: []\n").unwrap();
    serve.signal("HUP");
    let log = serve.wait_for_log("rejected; the running flows stay", Duration::from_secs(10));
    assert!(log.contains(" ERROR reload after SIGHUP rejected"), "{log}");
    std::fs::remove_file(dir.join("flows/broken.yaml")).unwrap();

    serve.signal("TERM");
    assert_eq!(serve.wait_exit(Duration::from_secs(15)), Some(0), "{}", serve.log());
    drop(serve);

    // While it was stopped, the nightly time passed (the last fire is moved three days back): one run, not three.
    let db = dir.join(".weft/state.db");
    let raw = rusqlite::Connection::open(&db).unwrap();
    let three_days_ago = (chrono::Utc::now() - chrono::Duration::days(3)).to_rfc3339();
    let changed =
        raw.execute("UPDATE poll_cursors SET cursor = ?1 WHERE poll = 'schedule:nightly'", [&three_days_ago]).unwrap();
    assert_eq!(changed, 1, "serve saved when the schedule started counting");
    drop(raw);
    let mut serve = Serve::start(&dir);
    serve.wait_for_log("missed its run", Duration::from_secs(10));
    let until = Instant::now() + Duration::from_secs(10);
    let runs = loop {
        let raw = rusqlite::Connection::open(&db).unwrap();
        let runs: i64 = raw
            .query_row("SELECT count(*) FROM runs WHERE flow = 'nightly' AND status = 'succeeded'", [], |r| r.get(0))
            .unwrap();
        if runs > 0 || Instant::now() > until {
            break runs;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(runs, 1, "{}", serve.log());
    serve.signal("TERM");
    assert_eq!(serve.wait_exit(Duration::from_secs(15)), Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}

const PAID: &str = "flow: paid\ndescription: Each captured payment, in major units.\ntrigger:\n  webhook: { connection: razorpay, event: payment.captured }\nsteps:\n  - id: amount\n    set: { major: \"${{ trigger.payload.payment.entity.amount / 100 }}\" }\n";

#[test]
fn a_killed_server_loses_no_delivery_it_answered_and_runs_each_once_after_its_restart() {
    let dir = std::env::temp_dir().join(format!("weft-serve-kill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("flows")).unwrap();
    let secret = "whsec-kill-test-5e1a";
    std::fs::write(dir.join("secret.txt"), secret).unwrap();
    std::fs::write(
        dir.join("weft.yaml"),
        "connections:\n  razorpay:\n    connector: razorpay\n    auth: { username: { env: X_ID }, password: { env: X_SECRET } }\n    webhook_secret: { file: secret.txt }\n",
    )
    .unwrap();
    std::fs::write(dir.join("flows/paid.yaml"), PAID).unwrap();
    let body = std::fs::read("connectors/razorpay/webhooks/payment.captured.json").unwrap();
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let signature = hex::encode(ring::hmac::sign(&key, &body).as_ref());

    let mut serve = Serve::start(&dir);
    const DELIVERIES: usize = 300;
    for i in 0..DELIVERIES {
        let mut http = std::net::TcpStream::connect(("127.0.0.1", serve.port)).unwrap();
        let head = format!(
            "POST /hooks/razorpay HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nx-razorpay-signature: \
             {signature}\r\nx-razorpay-event-id: evt_kill_{i:04}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        );
        std::io::Write::write_all(&mut http, &[head.as_bytes(), &body].concat()).unwrap();
        let mut answer = String::new();
        http.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200") && answer.contains(r#""status":"accepted""#), "{answer}");
    }
    // Killed at once after the last answer, without a chance to tidy up (what a crash or an OOM kill does).
    serve.child.kill().unwrap();
    serve.child.wait().unwrap();
    let waiting = weft::store::journal::Journal::waiting(&dir.join(".weft/state.db-ingest")).unwrap();

    // The next start queues what the dead one's journal held; every delivery runs exactly once.
    let mut serve = Serve::start(&dir);
    let db = dir.join(".weft/state.db");
    let count = |sql: &str| -> i64 {
        let raw = rusqlite::Connection::open(&db).unwrap();
        raw.query_row(sql, [], |r| r.get(0)).unwrap()
    };
    // The one event the dead server's worker held (claimed, `--workers 1`) waits for its lease to pass (a
    // minute); every other one is run by the new server.
    let settled = "SELECT count(*) FROM events WHERE status = 'done' OR status = 'claimed'";
    let until = Instant::now() + Duration::from_secs(30);
    while count(settled) < DELIVERIES as i64 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    let why = format!("{waiting:?} (bytes, segments) waited in the journal at the kill\n{}", serve.log());
    assert_eq!(count("SELECT count(DISTINCT event_id) FROM events"), DELIVERIES as i64, "{why}");
    assert_eq!(count(settled), DELIVERIES as i64, "{why}");
    assert!(count("SELECT count(*) FROM events WHERE status = 'claimed'") <= 1, "{why}");
    let done = count("SELECT count(*) FROM events WHERE status = 'done'");
    assert_eq!(count("SELECT count(*) FROM runs"), done, "one run per event done: {why}");
    assert_eq!(weft::store::journal::Journal::waiting(&dir.join(".weft/state.db-ingest")).unwrap(), (0, 0));
    serve.signal("TERM");
    assert_eq!(serve.wait_exit(Duration::from_secs(15)), Some(0));
    // The dead server's journal was adopted and removed, and a clean stop removes the server's own.
    let left: Vec<_> = std::fs::read_dir(dir.join(".weft/state.db-ingest")).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
