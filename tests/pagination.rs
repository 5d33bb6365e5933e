//! `paginate:` follows the connector's rule: Razorpay's `count`/`skip` until a short page, collecting every
//! page's items; a step without a rule is rejected by validation.

use std::sync::Arc;

use serde_json::json;
use weft::engine::plan::compile_flow;
use weft::engine::run::{Direct, EventInput, RunStatus, Runner};
use weft::source::SourceFile;
use weft::transport::cassette::Cassette;
use weft::transport::replay::Replay;
use weft::validate::{validate_flow, ProjectContext};

const FLOW: &str = r#"
flow: razorpay-all-payments
description: Collect every payment of a day, page by page.
trigger:
  manual: {}
steps:
  - id: payments
    call: razorpay.payments.list-payments
    query: { from: 1717200000, to: 1717286399, count: 2 }
    paginate: { max_pages: 10 }
  - id: summary
    set:
      count: "${{ steps.payments.items | length }}"
      ids: "$.steps.payments.items[*].id"
"#;

fn page(skip: u32, ids: &[&str]) -> serde_json::Value {
    json!({
        "request": {"method": "GET", "path": "/payments", "query": {"skip": skip.to_string(), "count": "2"}},
        "response": {"status": 200, "body": {"entity": "collection", "count": ids.len(), "items": ids.iter().map(|id| json!({"id": id})).collect::<Vec<_>>()}}
    })
}

#[tokio::test]
async fn pages_until_a_short_page_and_collects_items() {
    let ctx = ProjectContext::implicit();
    let plan = Arc::new(compile_flow(&SourceFile::new("all.yaml", FLOW), &ctx).expect("compiles"));
    let cassette =
        Cassette::from_value(json!([page(0, &["pay_1", "pay_2"]), page(2, &["pay_3", "pay_4"]), page(4, &["pay_5"])]))
            .unwrap();
    let conns = weft::engine::connection::from_project(&ctx);
    let runner = Runner::new(plan, Arc::new(Direct(Arc::new(Replay::new(cassette)))), None, &conns);
    let report = runner
        .run(&EventInput { id: "e".into(), body: json!({}), kind: "manual".into(), received_at: String::new() })
        .await;
    assert_eq!(report.status, RunStatus::Succeeded, "{:?}", report.error);
    let requests = &report.steps[0].requests;
    let skips: Vec<&str> =
        requests.iter().map(|r| r.query.iter().find(|(k, _)| k == "skip").map(|(_, v)| v.as_str()).unwrap()).collect();
    assert_eq!(skips, ["0", "2", "4"]);
    assert!(requests.iter().all(|r| r.query.iter().any(|(k, v)| k == "count" && v == "2")));
    assert_eq!(report.steps[0].output.as_ref().unwrap()["pages"], 3);
    assert_eq!(
        report.steps[1].output.as_ref().unwrap(),
        &json!({"count": 5, "ids": ["pay_1", "pay_2", "pay_3", "pay_4", "pay_5"]})
    );
}

#[test]
fn paginate_on_an_operation_without_a_rule_is_rejected() {
    let flow = FLOW
        .replace("razorpay.payments.list-payments", "razorpay.payments.fetch-payment")
        .replace("query: { from: 1717200000, to: 1717286399, count: 2 }", "path: { pay_id: pay_1 }");
    let diags = validate_flow(&SourceFile::new("bad.yaml", flow), &ProjectContext::implicit());
    assert!(diags.iter().any(|d| d.code.id == "flow::call::not_paginated"), "{diags:#?}");
}
