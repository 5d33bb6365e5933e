//! A connector's scope table: which OAuth scope grants which endpoint and webhook event.
//!
//! GHL's table (Scopes.md) writes endpoints as `GET /contacts/:contactId`; OpenAPI writes
//! `/contacts/{contactId}`. Both are normalised to `GET /contacts/{}` (trailing slash dropped) to match.

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
pub struct Table {
    scopes: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
struct Entry {
    scope: String,
    #[serde(default)]
    endpoints: Vec<String>,
    #[serde(default)]
    events: Vec<String>,
}

impl Table {
    pub fn parse(bytes: &[u8]) -> Result<Table, String> {
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }

    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.scopes.iter().map(|e| e.scope.clone()).collect();
        names.sort();
        names.dedup();
        names
    }

    pub fn for_endpoint(&self, method: &str, path: &str) -> Vec<String> {
        let key = normalise(method, path);
        let mut found: Vec<String> = self
            .scopes
            .iter()
            .filter(|e| e.endpoints.iter().any(|ep| ep.split_once(' ').is_some_and(|(m, p)| normalise(m, p) == key)))
            .map(|e| e.scope.clone())
            .collect();
        found.dedup();
        found
    }

    pub fn for_event(&self, event: &str) -> Vec<String> {
        self.scopes.iter().filter(|e| e.events.iter().any(|ev| ev == event)).map(|e| e.scope.clone()).collect()
    }
}

impl Table {
    /// A scope for an endpoint the table does not list, from the path's resource: GHL names scopes after it
    /// (`GET /contacts/...` → `contacts.readonly`, `POST /payments/orders/...` → `payments/orders.write`).
    pub fn infer_for_endpoint(&self, method: &str, path: &str) -> Option<String> {
        let mode = if method.eq_ignore_ascii_case("GET") { "readonly" } else { "write" };
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty() && !s.starts_with('{')).collect();
        let candidates = [segs.get(..2).map(|s| s.join("/")), segs.first().map(|s| s.to_string())];
        let names = self.names();
        candidates.into_iter().flatten().map(|r| format!("{r}.{mode}")).find(|c| names.contains(c))
    }

    /// Scopes for an event the table does not list: those of its family (`ContactUpdate` → `ContactCreate`'s),
    /// else the family's resource (`InvoicePaid` → `invoices.readonly`).
    pub fn infer_for_event(&self, event: &str) -> Vec<String> {
        let family: String =
            event.chars().enumerate().take_while(|(i, c)| *i == 0 || c.is_lowercase()).map(|(_, c)| c).collect();
        let mut found: Vec<String> = self
            .scopes
            .iter()
            .filter(|e| {
                e.events.iter().any(|ev| ev.starts_with(&family) && ev[family.len()..].starts_with(char::is_uppercase))
            })
            .map(|e| e.scope.clone())
            .collect();
        found.dedup();
        if found.is_empty() {
            let resource = format!("{}s", family.to_lowercase());
            let names = self.names();
            found = [format!("{resource}.readonly"), format!("payments/{resource}.readonly")]
                .into_iter()
                .filter(|c| names.contains(c))
                .collect();
        }
        found
    }
}

fn normalise(method: &str, path: &str) -> String {
    let segments: Vec<&str> = path
        .trim()
        .trim_end_matches('/')
        .split('/')
        .map(|s| if s.starts_with(':') || (s.starts_with('{') && s.ends_with('}')) { "{}" } else { s })
        .collect();
    format!("{} {}", method.trim().to_ascii_uppercase(), segments.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_colon_and_brace_params() {
        let t = Table::parse(br#"{"scopes":[{"scope":"contacts.readonly","endpoints":["GET /contacts/:contactId","GET /contacts/"],"events":["ContactCreate"]}]}"#).unwrap();
        assert_eq!(t.for_endpoint("GET", "/contacts/{contactId}"), ["contacts.readonly"]);
        assert_eq!(t.for_endpoint("get", "/contacts"), ["contacts.readonly"]);
        assert!(t.for_endpoint("POST", "/contacts/{id}").is_empty());
        assert_eq!(t.for_event("ContactCreate"), ["contacts.readonly"]);
    }
}
