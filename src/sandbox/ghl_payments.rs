//! GHL payments: orders, their fulfillments, and transactions, paged with `limit`/`offset` as GHL pages them.
//!
//! GHL v2 has no endpoint that creates an order or a transaction, so they come from the seed; the sandbox keeps
//! what a flow can do to them: `POST /payments/orders/{orderId}/fulfillments` records a fulfillment and moves
//! the order's `fulfillmentStatus` to `partially_fulfilled` or `fulfilled` by the quantities shipped. Every
//! route is scoped to the location in `altId`, as GHL scopes it.

use axum::http::StatusCode;
use serde_json::{json, Value};

use super::state::{now_iso, Records, State};
use super::{Call, Reply};

/// GHL's page size when `limit` is not given.
const DEFAULT_LIMIT: usize = 10;

pub fn handle(state: &mut State, call: &Call) -> Option<Reply> {
    let alt_id = call.query("altId").unwrap_or_default().to_string();
    let reply = match call.route.as_str() {
        "GET:/payments/orders" => {
            let filters = [("contactId", "contactId"), ("status", "status"), ("paymentMode", "liveMode")];
            page(call, &state.ghl.orders, &alt_id, &filters)
        }
        "GET:/payments/orders/{orderId}" => match scoped(&state.ghl.orders, call.param("orderId"), &alt_id) {
            Some(order) => call.ok(order.clone()),
            None => call.fail(StatusCode::NOT_FOUND, "Order not found"),
        },
        "POST:/payments/orders/{orderId}/fulfillments" => fulfill(state, call),
        "GET:/payments/orders/{orderId}/fulfillments" => {
            let order_id = call.param("orderId");
            if scoped(&state.ghl.orders, order_id, &alt_id).is_none() {
                return Some(call.fail(StatusCode::NOT_FOUND, "Order not found"));
            }
            let list: Vec<&Value> = state.ghl.fulfillments.values().filter(|f| f["orderId"] == order_id).collect();
            call.ok(json!({"status": true, "data": list}))
        }
        "GET:/payments/transactions" => {
            let filters = [
                ("contactId", "contactId"),
                ("entityId", "entityId"),
                ("subscriptionId", "subscriptionId"),
                ("entitySourceType", "entitySourceType"),
                ("paymentMode", "liveMode"),
            ];
            page(call, &state.ghl.transactions, &alt_id, &filters)
        }
        "GET:/payments/transactions/{transactionId}" => {
            match scoped(&state.ghl.transactions, call.param("transactionId"), &alt_id) {
                Some(txn) => call.ok(txn.clone()),
                None => call.fail(StatusCode::NOT_FOUND, "Transaction not found"),
            }
        }
        _ => return None,
    };
    Some(reply)
}

fn scoped<'a>(records: &'a Records, id: &str, alt_id: &str) -> Option<&'a Value> {
    records.get(id).filter(|r| r["altId"] == alt_id)
}

/// `{data, totalCount}` for the location's records that pass the query's filters, newest first.
fn page(call: &Call, records: &Records, alt_id: &str, filters: &[(&str, &str)]) -> Reply {
    let matches = |r: &&Value| {
        r["altId"] == alt_id
            && filters.iter().all(|(param, field)| match (call.query(param), &r[*field]) {
                (None, _) => true,
                // `paymentMode=live|test` against the record's `liveMode` flag.
                (Some(mode), Value::Bool(live)) => (mode == "live") == *live,
                (Some(want), got) => got.as_str() == Some(want),
            })
            && within(call, r["createdAt"].as_str().unwrap_or_default())
    };
    let mut hits: Vec<&Value> = records.values().filter(matches).collect();
    hits.sort_by(|a, b| b["createdAt"].as_str().cmp(&a["createdAt"].as_str()));
    let total = hits.len();
    let offset = call.query_usize("offset", 0);
    let limit = call.query_usize("limit", DEFAULT_LIMIT);
    let data: Vec<&Value> = hits.into_iter().skip(offset).take(limit).collect();
    call.ok(json!({"data": data, "totalCount": total}))
}

/// `startAt`/`endAt` (dates or ISO times) against an ISO `createdAt`; a bare end date includes that whole day.
fn within(call: &Call, created: &str) -> bool {
    let after_start = call.query("startAt").is_none_or(|start| created >= start);
    let before_end = call.query("endAt").is_none_or(|end| {
        if end.len() == 10 {
            created.get(..10).is_some_and(|day| day <= end)
        } else {
            created <= end
        }
    });
    after_start && before_end
}

fn fulfill(state: &mut State, call: &Call) -> Reply {
    let order_id = call.param("orderId").to_string();
    let alt_id = call.body["altId"].as_str().unwrap_or_default().to_string();
    let Some(order) = scoped(&state.ghl.orders, &order_id, &alt_id).cloned() else {
        return call.fail(StatusCode::NOT_FOUND, "Order not found");
    };
    let ordered: Vec<Value> = order["items"].as_array().cloned().unwrap_or_default();
    let mut items = Vec::new();
    for given in call.body["items"].as_array().into_iter().flatten() {
        let price_id = given["priceId"].as_str().unwrap_or_default();
        // The order's line for this price gives the product and price details GHL echoes back.
        let line = ordered.iter().find(|l| l["price"]["_id"] == price_id);
        let id = state.object_id();
        items.push(json!({
            "_id": line.map_or(json!(id), |l| l["_id"].clone()),
            "name": line.map_or(json!(""), |l| l["name"].clone()),
            "product": line.map_or(json!({}), |l| l["product"].clone()),
            "price": line.map_or(json!({"_id": price_id}), |l| l["price"].clone()),
            "qty": given["qty"],
        }));
    }
    let now = now_iso();
    let id = state.object_id();
    let fulfillment = json!({
        "_id": id, "altId": alt_id, "altType": call.body["altType"], "trackings": call.body["trackings"],
        "items": items, "createdAt": now, "updatedAt": now, "orderId": order_id,
    });
    state.ghl.fulfillments.insert(id, fulfillment.clone());
    let status = fulfillment_status(&ordered, state.ghl.fulfillments.values().filter(|f| f["orderId"] == order_id));
    if let Some(order) = state.ghl.orders.get_mut(&order_id) {
        order["fulfillmentStatus"] = json!(status);
        order["updatedAt"] = json!(now);
    }
    call.ok(json!({"status": true, "data": fulfillment}))
}

/// `fulfilled` once every ordered quantity has shipped (or the order lists no lines), else `partially_fulfilled`.
fn fulfillment_status<'a>(ordered: &[Value], fulfillments: impl Iterator<Item = &'a Value>) -> &'static str {
    let shipped: Vec<&Value> = fulfillments.flat_map(|f| f["items"].as_array().into_iter().flatten()).collect();
    let done = ordered.iter().all(|line| {
        let want = line["qty"].as_f64().unwrap_or(1.0);
        let got: f64 = shipped
            .iter()
            .filter(|s| s["price"]["_id"] == line["price"]["_id"])
            .filter_map(|s| s["qty"].as_f64())
            .sum();
        got >= want
    });
    if done {
        "fulfilled"
    } else {
        "partially_fulfilled"
    }
}
