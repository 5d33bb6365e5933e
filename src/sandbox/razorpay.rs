//! Razorpay payments: the list (`count`/`skip`, `from`/`to` in Unix seconds, newest first, as Razorpay pages
//! it), a fetch by id, and capture (an `authorized` payment becomes `captured` when the amount matches, and
//! raises `payment.captured`).
//!
//! Payments come from the seed: Razorpay creates them at checkout, which no server-side API call does. Errors
//! use Razorpay's `400 BAD_REQUEST_ERROR` shape with its wording.

use axum::http::StatusCode;
use serde_json::{json, Value};

use super::state::State;
use super::webhooks::razorpay_payment_event;
use super::{Call, Reply};

/// Razorpay's page size when `count` is not given.
const DEFAULT_COUNT: usize = 10;

pub fn handle(state: &mut State, call: &Call) -> Option<Reply> {
    let reply = match call.route.as_str() {
        "GET:/payments" => {
            let from = call.query("from").and_then(|v| v.parse::<i64>().ok());
            let to = call.query("to").and_then(|v| v.parse::<i64>().ok());
            let mut hits: Vec<&Value> = state
                .razorpay
                .payments
                .values()
                .filter(|p| {
                    let at = p["created_at"].as_i64().unwrap_or_default();
                    from.is_none_or(|f| at >= f) && to.is_none_or(|t| at <= t)
                })
                .collect();
            // Newest first; among equal times, the later-created first.
            hits.reverse();
            hits.sort_by_key(|p| std::cmp::Reverse(p["created_at"].as_i64().unwrap_or_default()));
            let items: Vec<&Value> = hits
                .into_iter()
                .skip(call.query_usize("skip", 0))
                .take(call.query_usize("count", DEFAULT_COUNT))
                .collect();
            call.ok(json!({"entity": "collection", "count": items.len(), "items": items}))
        }
        "GET:/payments/{pay_id}" => match state.razorpay.payments.get(call.param("pay_id")) {
            Some(p) => call.ok(p.clone()),
            None => no_such_id(call),
        },
        "POST:/payments/{pay_id}/capture" => {
            let Some(payment) = state.razorpay.payments.get_mut(call.param("pay_id")) else {
                return Some(no_such_id(call));
            };
            if payment["status"] != "authorized" {
                let message = if payment["status"] == "captured" {
                    "This payment has already been captured"
                } else {
                    "Only payments which have been authorized and not yet captured can be captured"
                };
                return Some(call.fail(StatusCode::BAD_REQUEST, message));
            }
            if payment["amount"] != call.body["amount"] || payment["currency"] != call.body["currency"] {
                return Some(
                    call.fail(StatusCode::BAD_REQUEST, "Capture amount must be equal to the amount authorized"),
                );
            }
            payment["status"] = json!("captured");
            payment["captured"] = json!(true);
            let payment = payment.clone();
            state.emit("razorpay", "payment.captured", razorpay_payment_event("payment.captured", &payment));
            call.ok(payment)
        }
        _ => return None,
    };
    Some(reply)
}

fn no_such_id(call: &Call) -> Reply {
    call.fail(StatusCode::BAD_REQUEST, "The id provided does not exist")
}
