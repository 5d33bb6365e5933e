//! `GET /contacts/` (deprecated upstream, still listed): a location's contacts in keyset pages, as GHL pages them.
//!
//! The order is the state's (creation order, a seed's order first). A page starts after `startAfterId` — an
//! index lookup, so page 200 of 20,000 contacts costs what page 1 does — or, when that contact is gone, after
//! the first listed contact added later than `startAfter` (milliseconds). `limit` is 20 by default and at most 100.
//! `query` keeps contacts whose name, email, phone or company contains it (case-insensitively); with it, the
//! page's `meta.total` needs a full count, without it the state's per-location count answers.
//!
//! The answer is `{contacts, count, meta}`: `count` is what the OpenAPI response schema lists, `meta` is GHL's
//! `ContactsMetaSchema` (`total`, `nextPageUrl`, `startAfterId`, `startAfter`, `currentPage`, `nextPage`,
//! `prevPage`), which weft's GHL pagination rule reads: it sends `meta.startAfter`/`meta.startAfterId` back
//! and stops at a page shorter than `limit`. `startAfter`/`startAfterId` name the page's last contact;
//! `nextPage` and `nextPageUrl` are null on the last page.

use serde_json::{json, Value};

use super::state::State;
use super::validate::{rejection, Problem, ProblemKind};
use super::{Call, Reply};

/// GHL's page size when `limit` is not given, and the most it allows.
const DEFAULT_LIMIT: usize = 20;
const MAX_LIMIT: usize = 100;

pub fn list(state: &State, call: &Call) -> Reply {
    let limit = call.query_usize("limit", DEFAULT_LIMIT).max(1);
    if limit > MAX_LIMIT {
        let (status, body) =
            rejection(call.connector, &[Problem { field: "limit".into(), kind: ProblemKind::TooLarge(100.0) }]);
        return Reply { status, body };
    }
    let contacts = &state.ghl.contacts;
    let location = call.query("locationId").unwrap_or_default();
    let query = call.query("query").map(str::to_lowercase);
    let matches = |c: &Value| c["locationId"] == location && query.as_deref().is_none_or(|q| contains(c, q));

    let start = match call.query("startAfterId").and_then(|id| contacts.get_index_of(id)) {
        Some(i) => i + 1,
        None => match call.query("startAfter").and_then(|v| v.parse::<f64>().ok()) {
            // The cursor's contact was deleted: fall back to its time (a rare, linear path).
            Some(after) => {
                contacts.values().position(|c| matches(c) && added_ms(c).is_some_and(|ms| ms as f64 > after))
            }
            None => Some(0),
        }
        .unwrap_or(contacts.len()),
    };
    let page: Vec<&Value> =
        contacts.get_range(start..).into_iter().flat_map(|s| s.values()).filter(|c| matches(c)).take(limit).collect();

    // How many match in all, and before this page (for the page numbers).
    let in_location = state.ghl.contacts_per_location.get(location).copied().unwrap_or(0);
    let (total, before) = if query.is_none() && in_location == contacts.len() {
        (in_location, start)
    } else if query.is_none() {
        let before = contacts.get_range(..start).map_or(0, |s| s.values().filter(|c| matches(c)).count());
        (in_location, before)
    } else {
        let before = contacts.get_range(..start).map_or(0, |s| s.values().filter(|c| matches(c)).count());
        let after = contacts.get_range(start..).map_or(0, |s| s.values().filter(|c| matches(c)).count());
        (before + after, before)
    };

    let current = before / limit + 1;
    let more = before + page.len() < total;
    let last = page.last();
    let start_after_id = last.and_then(|c| c["id"].as_str());
    let start_after = last.and_then(|c| added_ms(c));
    let next_url = match (more, start_after, start_after_id) {
        (true, Some(ms), Some(id)) => {
            let mut url = format!("{}/contacts/?locationId={location}&limit={limit}", call.base);
            if let Some(q) = call.query("query") {
                url.push_str(&format!("&query={}", encode(q)));
            }
            json!(format!("{url}&startAfter={ms}&startAfterId={id}"))
        }
        _ => Value::Null,
    };
    call.ok(json!({
        "contacts": page,
        "count": total,
        "meta": {
            "total": total,
            "nextPageUrl": next_url,
            "startAfterId": start_after_id,
            "startAfter": start_after,
            "currentPage": current,
            "nextPage": more.then_some(current + 1),
            "prevPage": (current > 1).then(|| current - 1),
        },
    }))
}

/// A contact's `dateAdded` in milliseconds (GHL's ISO text, or a number).
fn added_ms(contact: &Value) -> Option<i64> {
    match &contact["dateAdded"] {
        Value::String(s) => chrono::DateTime::parse_from_rfc3339(s).ok().map(|t| t.timestamp_millis()),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

/// `query` against the fields GHL's contact search looks at; `needle` is lower case.
fn contains(contact: &Value, needle: &str) -> bool {
    ["name", "contactName", "firstName", "lastName", "email", "phone", "companyName"]
        .iter()
        .filter_map(|k| contact[*k].as_str())
        .any(|v| v.to_lowercase().contains(needle))
}

/// Percent-encode a query value for `nextPageUrl`.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
