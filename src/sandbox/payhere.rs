//! Payhere (payhere.co) customers: the list, paged with `page`/`per_page` and a `meta` block whose `next_page`
//! is null on the last page (what weft's page pagination follows), and a fetch by numeric id.
//!
//! Customers come from the seed: Payhere creates them when someone pays, and its API cannot create one.

use axum::http::StatusCode;
use serde_json::{json, Value};

use super::state::State;
use super::{Call, Reply};

/// Payhere's page size when `per_page` is not given.
const DEFAULT_PER_PAGE: usize = 20;

pub fn handle(state: &mut State, call: &Call) -> Option<Reply> {
    let reply = match call.route.as_str() {
        "GET:/customers" => {
            let per_page = call.query_usize("per_page", DEFAULT_PER_PAGE).max(1);
            let page = call.query_usize("page", 1).max(1);
            let total = state.payhere.customers.len();
            let total_pages = total.div_ceil(per_page);
            let data: Vec<&Value> =
                state.payhere.customers.values().skip((page - 1) * per_page).take(per_page).collect();
            call.ok(json!({
                "data": data,
                "meta": {
                    "current_page": page,
                    "next_page": (page < total_pages).then_some(page + 1),
                    "prev_page": (page > 1).then(|| (page - 1).min(total_pages.max(1))),
                    "total_pages": total_pages,
                    "total_count": total,
                },
            }))
        }
        "GET:/customers/{id}" => match state.payhere.customers.get(call.param("id")) {
            Some(c) => call.ok(json!({"data": c})),
            None => call.fail(StatusCode::NOT_FOUND, "Not found"),
        },
        _ => return None,
    };
    Some(reply)
}
