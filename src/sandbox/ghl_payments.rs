//! GHL payments and invoices: orders, their fulfillments, transactions and subscriptions, paged with
//! `limit`/`offset` as GHL pages them, and invoices through their whole life.
//!
//! GHL v2 has no endpoint that creates an order, a transaction or a subscription, so they come from the seed; the
//! sandbox keeps what a flow can do to them: `POST /payments/orders/{orderId}/fulfillments` records a fulfillment
//! and moves the order's `fulfillmentStatus` to `partially_fulfilled` or `fulfilled` by the quantities shipped.
//! Invoices are created (`draft`, totals from the items), updated, sent (`sent`), paid (`record-payment`: the
//! amount is added to `amountPaid`, the status becomes `partially_paid` or `paid`, and the payment is recorded as
//! a transaction of the invoice, as GHL records it), voided and deleted. Every route is scoped to the location in
//! `altId`, as GHL scopes it.

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
        "GET:/payments/subscriptions" => {
            let filters = [("contactId", "contactId"), ("entityId", "entityId"), ("paymentMode", "liveMode")];
            page(call, &state.ghl.subscriptions, &alt_id, &filters)
        }
        "GET:/payments/subscriptions/{subscriptionId}" => {
            match scoped(&state.ghl.subscriptions, call.param("subscriptionId"), &alt_id) {
                Some(subscription) => call.ok(subscription.clone()),
                None => call.fail(StatusCode::NOT_FOUND, "Subscription not found"),
            }
        }
        "GET:/invoices/" => {
            let matches = |i: &&Value| {
                i["altId"] == alt_id.as_str()
                    && call.query("status").is_none_or(|s| i["status"] == s)
                    && call.query("contactId").is_none_or(|c| i["contactDetails"]["id"] == c)
            };
            let hits: Vec<&Value> = state.ghl.invoices.values().filter(matches).collect();
            let total = hits.len();
            let offset = call.query_usize("offset", 0);
            let limit = call.query_usize("limit", DEFAULT_LIMIT);
            let invoices: Vec<&Value> = hits.into_iter().skip(offset).take(limit).collect();
            call.ok(json!({"invoices": invoices, "total": total}))
        }
        "POST:/invoices/" => create_invoice(state, call),
        "GET:/invoices/{invoiceId}" => match scoped(&state.ghl.invoices, call.param("invoiceId"), &alt_id) {
            Some(invoice) => call.ok(invoice.clone()),
            None => invoice_not_found(call),
        },
        "PUT:/invoices/{invoiceId}" | "POST:/invoices/{invoiceId}/void" | "POST:/invoices/{invoiceId}/send" => {
            change_invoice(state, call)
        }
        "POST:/invoices/{invoiceId}/record-payment" => record_payment(state, call),
        "DELETE:/invoices/{invoiceId}" => {
            let id = call.param("invoiceId");
            if scoped(&state.ghl.invoices, id, &alt_id).is_none() {
                return Some(invoice_not_found(call));
            }
            let removed = state.ghl.invoices.shift_remove(id).unwrap_or_default();
            call.ok(removed)
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

fn invoice_not_found(call: &Call) -> Reply {
    call.fail(StatusCode::NOT_FOUND, "Invoice not found")
}

/// The sum of the items' `amount × qty`, less a percentage or fixed `discount`.
fn invoice_total(invoice: &Value) -> f64 {
    let items = invoice["invoiceItems"].as_array().or(invoice["items"].as_array());
    let gross: f64 = items
        .into_iter()
        .flatten()
        .map(|i| i["amount"].as_f64().unwrap_or(0.0) * i["qty"].as_f64().unwrap_or(1.0))
        .sum();
    let discount = match (invoice["discount"]["type"].as_str(), invoice["discount"]["value"].as_f64()) {
        (Some("percentage"), Some(p)) => gross * p / 100.0,
        (Some(_), Some(v)) => v,
        _ => 0.0,
    };
    (gross - discount).max(0.0)
}

fn create_invoice(state: &mut State, call: &Call) -> Reply {
    let now = now_iso();
    let id = state.object_id();
    let mut invoice = call.body.clone();
    if let Some(map) = invoice.as_object_mut() {
        let items = map.remove("items").unwrap_or(json!([]));
        map.insert("invoiceItems".into(), items);
    }
    let number = state.ghl.invoices.len() + 1;
    invoice["_id"] = json!(id);
    invoice["status"] = json!("draft");
    invoice["amountPaid"] = json!(0);
    if invoice["invoiceNumber"].is_null() {
        invoice["invoiceNumber"] = json!(number.to_string());
    }
    if invoice["title"].is_null() {
        invoice["title"] = json!("INVOICE");
    }
    if invoice["dueDate"].is_null() {
        invoice["dueDate"] = invoice["issueDate"].clone();
    }
    let total = invoice_total(&invoice);
    invoice["total"] = json!(total);
    invoice["amountDue"] = json!(total);
    invoice["createdAt"] = json!(now);
    invoice["updatedAt"] = json!(now);
    state.ghl.invoices.insert(id, invoice.clone());
    call.ok(invoice)
}

/// `PUT` (fields merged, totals recomputed; only a draft), `void` and `send`.
fn change_invoice(state: &mut State, call: &Call) -> Reply {
    let alt_id = call.body["altId"].as_str().or(call.query("altId")).unwrap_or_default().to_string();
    let id = call.param("invoiceId").to_string();
    let Some(mut invoice) = scoped(&state.ghl.invoices, &id, &alt_id).cloned() else {
        return invoice_not_found(call);
    };
    let status = invoice["status"].as_str().unwrap_or_default().to_string();
    match call.route.as_str() {
        "PUT:/invoices/{invoiceId}" if status != "draft" => {
            return call.fail(StatusCode::BAD_REQUEST, "Only draft invoices can be updated");
        }
        "PUT:/invoices/{invoiceId}" => {
            for (name, value) in call.body.as_object().into_iter().flatten() {
                let name = if name == "items" { "invoiceItems" } else { name.as_str() };
                invoice[name] = value.clone();
            }
            let total = invoice_total(&invoice);
            invoice["total"] = json!(total);
            invoice["amountDue"] = json!(total - invoice["amountPaid"].as_f64().unwrap_or(0.0));
        }
        _ if status == "paid" || status == "void" => {
            return call.fail(StatusCode::BAD_REQUEST, &format!("The invoice is already {status}"));
        }
        "POST:/invoices/{invoiceId}/void" => invoice["status"] = json!("void"),
        _ => invoice["status"] = json!("sent"),
    }
    invoice["updatedAt"] = json!(now_iso());
    state.ghl.invoices.insert(id, invoice.clone());
    call.ok(invoice)
}

/// A manual payment: `amountPaid` grows, the status follows, and the payment is a transaction of the invoice.
fn record_payment(state: &mut State, call: &Call) -> Reply {
    let alt_id = call.body["altId"].as_str().unwrap_or_default().to_string();
    let id = call.param("invoiceId").to_string();
    let Some(mut invoice) = scoped(&state.ghl.invoices, &id, &alt_id).cloned() else {
        return invoice_not_found(call);
    };
    if matches!(invoice["status"].as_str(), Some("paid" | "void" | "draft")) {
        let status = invoice["status"].as_str().unwrap_or_default().to_string();
        return call.fail(StatusCode::BAD_REQUEST, &format!("A payment cannot be recorded on a {status} invoice"));
    }
    let due = invoice["amountDue"].as_f64().unwrap_or(0.0);
    let amount = call.body["amount"].as_f64().unwrap_or(due).min(due);
    let paid = invoice["amountPaid"].as_f64().unwrap_or(0.0) + amount;
    let now = now_iso();
    invoice["amountPaid"] = json!(paid);
    invoice["amountDue"] = json!(due - amount);
    invoice["status"] = json!(if due - amount <= 0.0 { "paid" } else { "partially_paid" });
    invoice["updatedAt"] = json!(now);
    state.ghl.invoices.insert(id.clone(), invoice.clone());
    let txn_id = state.object_id();
    let transaction = json!({
        "_id": txn_id, "altId": alt_id, "altType": "location", "contactId": invoice["contactDetails"]["id"],
        "entityId": id, "entitySourceType": "invoice", "status": "succeeded", "amount": amount,
        "currency": invoice["currency"], "paymentProviderType": call.body["mode"], "liveMode": invoice["liveMode"],
        "createdAt": now, "updatedAt": now,
    });
    state.ghl.transactions.insert(txn_id, transaction);
    call.ok(json!({"success": true, "invoice": invoice}))
}
