//! The sandbox's routes, read from the catalog: every operation of every connector that has operations,
//! mounted under the connector's name.
//!
//! [`Routes::find`] matches a method and a path (without the connector prefix) against the operations' path
//! templates. A literal segment beats a `{param}`, leftmost first, so `/contacts/search/duplicate` is not
//! `/contacts/{contactId}/...` and `/campaigns/removeAll` is not `/campaigns/{campaignId}`; a trailing slash does
//! not matter (`/contacts/` is `/contacts`). Each route also knows the status its document gives for success.

use axum::http::StatusCode;
use indexmap::IndexMap;
use serde_json::Value;

use crate::catalog::{Catalog, Operation};

/// One operation the sandbox answers.
#[derive(Debug)]
pub struct Route {
    pub op: Operation,
    /// The status the document gives for success (the first 2xx), 200 when it gives none.
    pub success: StatusCode,
    segments: Vec<Segment>,
}

#[derive(Debug)]
enum Segment {
    Literal(String),
    Param(String),
}

/// Every connector's routes, keyed by connector name (the URL prefix).
#[derive(Debug, Default)]
pub struct Routes {
    pub by_connector: IndexMap<String, Vec<Route>>,
}

impl Routes {
    /// Every connector of the catalog that has operations (Wizehire has none: it publishes no API).
    pub fn from_catalog(catalog: &Catalog) -> Routes {
        let mut by_connector = IndexMap::new();
        for (name, connector) in &catalog.connectors {
            let routes: Vec<Route> = connector.operations().map(Route::new).collect();
            if !routes.is_empty() {
                by_connector.insert(name.clone(), routes);
            }
        }
        Routes { by_connector }
    }

    /// The most specific route for `method path` (the path without the connector prefix), with its path params.
    pub fn find(&self, connector: &str, method: &str, path: &str) -> Option<(&Route, IndexMap<String, String>)> {
        let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let mut best: Option<(&Route, Vec<bool>)> = None;
        for route in self.by_connector.get(connector)? {
            if !route.op.method.eq_ignore_ascii_case(method) || route.segments.len() != parts.len() {
                continue;
            }
            let fits = route.segments.iter().zip(&parts).all(|(seg, part)| match seg {
                Segment::Literal(l) => l == part,
                Segment::Param(_) => true,
            });
            if !fits {
                continue;
            }
            // Literal segments win, leftmost first: `/campaigns/removeAll` over `/campaigns/{campaignId}`.
            let rank: Vec<bool> = route.segments.iter().map(|s| matches!(s, Segment::Literal(_))).collect();
            if best.as_ref().is_none_or(|(_, r)| rank > *r) {
                best = Some((route, rank));
            }
        }
        let (route, _) = best?;
        let params = route
            .segments
            .iter()
            .zip(&parts)
            .filter_map(|(seg, part)| match seg {
                Segment::Param(name) => Some((name.clone(), percent_decode(part))),
                Segment::Literal(_) => None,
            })
            .collect();
        Some((route, params))
    }
}

impl Route {
    fn new(op: &Operation) -> Route {
        let segments = op
            .path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) => Segment::Param(name.to_string()),
                None => Segment::Literal(s.to_string()),
            })
            .collect();
        let success = op
            .doc
            .pointer(&format!(
                "/paths/{}/{}/responses",
                op.path.replace('~', "~0").replace('/', "~1"),
                op.method.to_lowercase()
            ))
            .and_then(Value::as_object)
            .and_then(|r| r.keys().find(|k| k.starts_with('2')))
            .and_then(|k| k.parse::<u16>().ok())
            .and_then(|c| StatusCode::from_u16(c).ok())
            .unwrap_or(StatusCode::OK);
        Route { op: op.clone(), success, segments }
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_segments_win_and_params_are_decoded() {
        let routes = Routes::from_catalog(&Catalog::builtin().unwrap());
        let (route, params) = routes.find("ghl", "GET", "/contacts/search/duplicate").unwrap();
        assert_eq!(route.op.id, "get-duplicate-contact");
        assert!(params.is_empty());
        let (route, params) = routes.find("ghl", "DELETE", "/contacts/abc/campaigns/removeAll").unwrap();
        assert_eq!(route.op.id, "remove-contact-from-every-campaign");
        assert_eq!(params["contactId"], "abc");
        let (route, params) = routes.find("ghl", "POST", "/contacts/a%20b/notes").unwrap();
        assert_eq!((route.op.id.as_str(), params["contactId"].as_str()), ("create-note", "a b"));
        assert_eq!(route.success, StatusCode::CREATED);
        assert_eq!(routes.find("ghl", "POST", "/contacts").unwrap().0.op.id, "create-contact");
        assert!(routes.find("ghl", "PATCH", "/contacts/abc").is_none());
        assert!(routes.find("wizehire", "GET", "/").is_none(), "Wizehire publishes no API");
        assert_eq!(routes.find("razorpay", "GET", "/payments/pay_1").unwrap().1["pay_id"], "pay_1");
    }
}
