//! Poll triggers: each due flow pages through its list operation, one page at a time. Every page's new items are
//! queued in the same transaction that saves where the list continues, so a scan of 20,000 records holds one page
//! in memory, and a scan cut short (shutdown, crash, an upstream error) resumes at the page after the last one
//! queued. Requests go through the connection's rate limiter like every other call: a long scan paces itself
//! instead of collecting 429s.
//!
//! An item's event id is the flow and the item's id, so the queue's deduplication runs each item once, however
//! many scans see it. When a scan reaches the end of a cursor-paged list (GHL's `startAfterId`) the next scan
//! starts after the last item; offset- and page-numbered lists are scanned again from the first page. A saved
//! position names the list it was saved for (the flow's call, path and query): another list starts at its first
//! page.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Service;
use crate::diag::render;
use crate::engine::pager::Position;
use crate::engine::run::{PollNext, Runner};
use crate::store::{Enqueued, NewEvent};

impl Service {
    /// Poll every poll-triggered flow on its interval until shutdown.
    pub async fn poll(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        // Next poll time per flow, by name, so a reload keeps the rhythm of flows it did not change.
        let mut next: HashMap<String, Instant> = HashMap::new();
        loop {
            let flows = self.current();
            let now = Instant::now();
            for runner in &flows.pollers {
                let due = next.entry(runner.plan.name.clone()).or_insert(now);
                if *due > now {
                    continue;
                }
                let watch = shutdown.clone();
                let scan = tokio::select! {
                    scan = self.scan(runner, &watch) => scan,
                    // A page in flight is dropped: nothing of it was queued, and the saved position still points at it.
                    _ = shutdown.changed() => return,
                };
                if let Err(e) = scan {
                    tracing::warn!("{e}");
                }
                // The interval counts from the end of a scan, so a long scan is never started twice at once.
                let every = runner.plan.poll.as_ref().map_or(Duration::from_secs(60), |p| p.every);
                next.insert(runner.plan.name.clone(), Instant::now() + every);
            }
            let names: std::collections::HashSet<&str> = flows.pollers.iter().map(|r| r.plan.name.as_str()).collect();
            next.retain(|name, _| names.contains(name.as_str()));
            let wait =
                next.values().min().map_or(Duration::from_secs(3600), |t| t.saturating_duration_since(Instant::now()));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.reloaded.notified() => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Scan the poll flow `flow` once now, from its saved position to the end of its list; returns how many
    /// items were new. The server calls this on each flow's interval.
    pub async fn poll_now(self: &Arc<Self>, flow: &str) -> Result<u64, String> {
        let flows = self.current();
        let runner = flows.pollers.iter().find(|r| r.plan.name == flow).ok_or(format!("no poll flow `{flow}`"))?;
        let (_keep, running) = tokio::sync::watch::channel(false);
        self.scan(runner, &running).await
    }

    /// One scan of a flow's list: from the saved position to the end, queueing each page's new items. Returns
    /// how many items were new.
    async fn scan(
        self: &Arc<Self>,
        runner: &Runner,
        shutdown: &tokio::sync::watch::Receiver<bool>,
    ) -> Result<u64, String> {
        let name = &runner.plan.name;
        let list = runner.plan.poll.as_ref().map_or("", |p| p.list.as_str());
        let saved = self.store.poll_cursor(name).map_err(|e| format!("poll of `{name}`: {e}"))?;
        let mut resume = match saved.as_deref().map(|text| decode(text, list)) {
            Some(Saved::At(at)) => Some(at),
            Some(Saved::OtherList) => {
                tracing::info!(
                    "poll of `{name}`: its list (call, path or query) changed since the position was \
                     saved; this scan starts from the first page"
                );
                None
            }
            Some(Saved::Start) | None => None,
        };
        let mut fresh = 0;
        // The page before this one, still committing: the next request needs only its cursor, so the two overlap.
        let mut committing: Option<tokio::task::JoinHandle<Result<u64, String>>> = None;
        loop {
            let page = runner.poll_page(resume.as_ref()).await;
            if let Some(previous) = committing.take() {
                fresh += previous.await.map_err(|e| format!("poll of `{name}`: {e}"))??;
            }
            let page = page.map_err(|d| render::one_line(&d))?;
            let received_at_ms = chrono::Utc::now().timestamp_millis();
            let events: Vec<NewEvent> = page
                .items
                .into_iter()
                .map(|(id, item)| NewEvent {
                    connection: "poll".into(),
                    event_id: format!("{name}:{id}"),
                    kind: name.clone(),
                    payload: item.into(),
                    received_at_ms,
                })
                .collect();
            let saved = match &page.next {
                PollNext::More(at) | PollNext::Done(Some(at)) => encode(at, list),
                PollNext::Done(None) => String::new(),
            };
            let commit = self.commit_page(name, events, saved);
            match page.next {
                PollNext::More(at) if !*shutdown.borrow() => {
                    resume = Some(at);
                    committing = Some(commit);
                }
                _ => return Ok(fresh + commit.await.map_err(|e| format!("poll of `{name}`: {e}"))??),
            }
        }
    }

    /// Queue a page's items and save where the list continues, in one transaction on the blocking pool; the
    /// handle answers how many items were new.
    fn commit_page(
        self: &Arc<Self>,
        name: &str,
        events: Vec<NewEvent>,
        saved: String,
    ) -> tokio::task::JoinHandle<Result<u64, String>> {
        let (svc, poll) = (self.clone(), name.to_string());
        tokio::task::spawn_blocking(move || {
            let queued =
                svc.store.enqueue_polled(&poll, &events, &saved).map_err(|e| format!("poll of `{poll}`: {e}"))?;
            let new = queued.iter().filter(|q| matches!(q, Enqueued::New(_))).count() as u64;
            if new > 0 {
                svc.metrics.received.fetch_add(new, Relaxed);
                svc.wake.notify_waiters();
            }
            Ok(new)
        })
    }
}

/// A position as the store keeps it: the list it belongs to and the paging parameters,
/// `{"list": "…", "at": {"skip": "200"}}`.
fn encode(at: &Position, list: &str) -> String {
    let at: serde_json::Map<String, serde_json::Value> =
        at.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect();
    serde_json::json!({"list": list, "at": at}).to_string()
}

/// What a saved cursor says for the poll's current list.
#[derive(Debug, PartialEq)]
enum Saved {
    /// Continue here.
    At(Position),
    /// Start at the first page: nothing saved, the last scan reached the end of an offset-paged list, or the
    /// cursor is unreadable.
    Start,
    /// Saved for another list (the flow's call, path or query changed): start at the first page.
    OtherList,
}

fn decode(text: &str, list: &str) -> Saved {
    let Ok(serde_json::Value::Object(mut saved)) = serde_json::from_str(text) else { return Saved::Start };
    let params = match (saved.remove("list"), saved.remove("at")) {
        (Some(serde_json::Value::String(of)), Some(serde_json::Value::Object(at))) if of == list => at,
        (Some(_), Some(serde_json::Value::Object(_))) => return Saved::OtherList,
        // Saved by weft before positions named their list: the paging parameters alone.
        (None, None) => saved,
        _ => return Saved::Start,
    };
    let at: Position = params.into_iter().filter_map(|(k, v)| Some((k, v.as_str()?.to_string()))).collect();
    if at.is_empty() {
        Saved::Start
    } else {
        Saved::At(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_position_comes_back_for_its_own_list_only() {
        let at: Position = [("startAfterId".to_string(), "c00229".to_string())].into_iter().collect();
        let saved = encode(&at, "a1b2");
        assert_eq!(decode(&saved, "a1b2"), Saved::At(at.clone()));
        assert_eq!(decode(&saved, "ffff"), Saved::OtherList);
        assert_eq!(decode(r#"{"startAfterId":"c00229"}"#, "a1b2"), Saved::At(at), "an older weft's cursor");
        for start in ["", "{}", "not json", "[1]", r#"{"list":"a1b2","at":"x"}"#] {
            assert_eq!(decode(start, "a1b2"), Saved::Start, "{start:?}");
        }
    }
}
