//! Paging through a list operation by its connector's `pagination:` rule. `paginate:` steps collect every page;
//! poll triggers take one page at a time and keep the [`Position`] of the next one in the store, so a poll of
//! 20,000 records never holds more than a page and an interrupted scan resumes where it stopped.
//!
//! A position is the values of the query parameters the rule moves: `skip` (offset style), `page` (page style)
//! or the cursor parameters (`startAfter`, `startAfterId` for GHL). Resuming sets them on the first request.

use serde_json::Value;

use crate::catalog::manifest::{Pagination, PaginationStyle};
use crate::transport::RequestSpec;

/// Where a list continues: the paging query parameters and their values.
pub type Position = Vec<(String, String)>;

/// One walk through a list.
pub struct Pager<'a> {
    rule: &'a Pagination,
    /// The page size asked for: a page with fewer items is the last.
    limit: u64,
    /// Offset or page number (unused for cursors).
    position: u64,
    items: Option<serde_json_path::JsonPath>,
    next: Option<serde_json_path::JsonPath>,
    more: Option<serde_json_path::JsonPath>,
}

impl<'a> Pager<'a> {
    /// Prepare the first request: the page size the flow asked for (clamped to the app's largest) or the
    /// largest, then `resume` (a saved [`Position`]) if any, then the position in place.
    pub fn start(rule: &'a Pagination, req: &mut RequestSpec, resume: Option<&Position>) -> Pager<'a> {
        let max = u64::from(rule.max_limit.max(1));
        let limit = query_number(req, &rule.limit).unwrap_or(max).clamp(1, max);
        set_query(req, &rule.limit, limit.to_string());
        for (name, value) in resume.into_iter().flatten() {
            set_query(req, name, value.clone());
        }
        let position = match rule.style {
            PaginationStyle::Offset => rule.offset.as_deref().and_then(|o| query_number(req, o)).unwrap_or(0),
            PaginationStyle::Page => rule.page.as_deref().and_then(|p| query_number(req, p)).unwrap_or(1),
            PaginationStyle::Cursor => 0,
        };
        let pager = Pager {
            rule,
            limit,
            position,
            items: serde_json_path::JsonPath::parse(&rule.items).ok(),
            next: rule.next.as_deref().and_then(|n| serde_json_path::JsonPath::parse(n).ok()),
            more: rule.more.as_deref().and_then(|m| serde_json_path::JsonPath::parse(m).ok()),
        };
        pager.place(req);
        pager
    }

    /// The page's items by the rule: a bare array is the page; otherwise the first list `items` selects.
    pub fn items(&self, body: &Value) -> Vec<Value> {
        match body {
            Value::Array(a) => a.clone(),
            _ => self
                .items
                .as_ref()
                .and_then(|p| p.query(body).all().into_iter().find_map(|v| v.as_array().cloned()))
                .unwrap_or_default(),
        }
    }

    /// After a page of `count` items answered with `body`: move `req` to the next page. `false` when that was
    /// the last page (short, or the response names no next page), leaving `req` as it was.
    pub fn advance(&mut self, req: &mut RequestSpec, body: &Value, count: usize) -> bool {
        if (count as u64) < self.limit {
            return false;
        }
        let more = self.more.as_ref().and_then(|p| p.query(body).first().cloned());
        if matches!(more, Some(Value::Null | Value::Bool(false))) {
            return false;
        }
        let next = self.next.as_ref().and_then(|p| p.query(body).first().cloned());
        match self.rule.style {
            PaginationStyle::Offset => self.position += count as u64,
            PaginationStyle::Page => {
                if next.as_ref().is_some_and(Value::is_null) {
                    return false;
                }
                self.position += 1;
            }
            PaginationStyle::Cursor => {
                // The next page starts after the values the response names (e.g. GHL's meta.startAfter).
                let Some(values) = cursor_values(self.rule, next.as_ref()) else { return false };
                for (name, value) in values {
                    set_query(req, &name, value);
                }
                return true;
            }
        }
        self.place(req);
        true
    }

    /// Where the list ends for a poll that follows it: for a cursor, the values after the last item (the
    /// response's `next`, when it names them on the last page too), so that the next poll asks only for what came
    /// later; offsets and page numbers shift as items arrive, so those polls start again from the first page.
    pub fn tail(&self, req: &RequestSpec, body: &Value) -> Option<Position> {
        if self.rule.style != PaginationStyle::Cursor {
            return None;
        }
        let next = self.next.as_ref().and_then(|p| p.query(body).first().cloned());
        cursor_values(self.rule, next.as_ref()).or_else(|| {
            let here = self.position_of(req);
            (!here.is_empty()).then_some(here)
        })
    }

    /// The paging parameters' values in `req`: what to save to resume at `req`.
    pub fn position_of(&self, req: &RequestSpec) -> Position {
        let names: Vec<&str> = match self.rule.style {
            PaginationStyle::Offset => self.rule.offset.as_deref().into_iter().collect(),
            PaginationStyle::Page => self.rule.page.as_deref().into_iter().collect(),
            PaginationStyle::Cursor => self.rule.cursor.iter().map(String::as_str).collect(),
        };
        req.query.iter().filter(|(k, _)| names.contains(&k.as_str())).cloned().collect()
    }

    fn place(&self, req: &mut RequestSpec) {
        match self.rule.style {
            PaginationStyle::Offset => {
                set_query(req, self.rule.offset.as_deref().unwrap_or("offset"), self.position.to_string())
            }
            PaginationStyle::Page => {
                set_query(req, self.rule.page.as_deref().unwrap_or("page"), self.position.to_string())
            }
            PaginationStyle::Cursor => {}
        }
    }
}

/// The cursor parameters' values in a response's `next` object; `None` when it names none of them.
fn cursor_values(rule: &Pagination, next: Option<&Value>) -> Option<Position> {
    let next = next.filter(|v| v.is_object())?;
    let values: Position =
        rule.cursor.iter().filter_map(|param| Some((param.clone(), scalar_text(next.get(param)?)?))).collect();
    (!values.is_empty()).then_some(values)
}

pub(crate) fn query_number(req: &RequestSpec, name: &str) -> Option<u64> {
    req.query.iter().find(|(k, _)| k == name).and_then(|(_, v)| v.parse().ok())
}

pub(crate) fn set_query(req: &mut RequestSpec, name: &str, value: String) {
    match req.query.iter_mut().find(|(k, _)| k == name) {
        Some(pair) => pair.1 = value,
        None => req.query.push((name.to_string(), value)),
    }
}

/// A string, number or boolean as text; `None` for null, arrays and objects.
pub(crate) fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}
