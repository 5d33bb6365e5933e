//! Walks the whole built-in catalog: every operation's schemas resolve, every event schema compiles and
//! accepts its own example, and the facts the validator relies on hold.

use serde_json::Value;
use weft::catalog::{Catalog, Lookup};

fn catalog() -> Catalog {
    Catalog::builtin().unwrap_or_else(|d| panic!("built-in catalog does not load: {d:#?}"))
}

/// Every `$ref` reachable from `schema` must resolve inside `doc`.
fn assert_refs_resolve(doc: &Value, schema: &Value, what: &str) {
    let mut stack = vec![schema];
    let mut seen = std::collections::HashSet::new();
    while let Some(node) = stack.pop() {
        match node {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    if !seen.insert(r.clone()) {
                        continue;
                    }
                    let target = r.strip_prefix('#').and_then(|p| doc.pointer(p));
                    let target = target.unwrap_or_else(|| panic!("{what}: `$ref: {r}` does not resolve"));
                    stack.push(target);
                }
                stack.extend(map.values());
            }
            Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
}

#[test]
fn every_operation_resolves_its_schemas() {
    let catalog = catalog();
    let mut count = 0;
    for op in catalog.operations() {
        count += 1;
        assert!(!op.id.is_empty() && op.path.starts_with('/'), "{}: bad id or path", op.qualified());
        for p in &op.params {
            assert_refs_resolve(&op.doc, &p.schema, &format!("{} param {}", op.qualified(), p.name));
        }
        if let Some(body) = &op.body {
            assert_refs_resolve(&op.doc, body, &format!("{} body", op.qualified()));
            // Reading the body's shape must not fail or loop.
            let _ = weft::catalog::schema::Shape::of(&op.doc, body);
        }
        if let Some(resp) = &op.response {
            assert_refs_resolve(&op.doc, resp, &format!("{} response", op.qualified()));
        }
        // Every placeholder in the path is a declared path parameter.
        for name in op.path_params() {
            assert!(
                op.params.iter().any(|p| p.name == name),
                "{}: path placeholder `{{{name}}}` has no parameter",
                op.qualified()
            );
        }
        // The operation can be found by what `weft catalog` prints for it.
        let connector = catalog.connector(&op.connector).expect("connector");
        match catalog.lookup(connector, &op.api, &op.route()) {
            Lookup::Found(found) => assert_eq!(found.route(), op.route()),
            _ => panic!("{} not found by its route", op.qualified_by_route()),
        }
    }
    assert!(count > 250, "only {count} operations in the catalog");
}

#[test]
fn every_event_schema_compiles_and_accepts_its_example() {
    let catalog = catalog();
    let mut checked = 0;
    for connector in catalog.connectors.values() {
        for event in connector.events.values() {
            let schema =
                event.schema.as_ref().unwrap_or_else(|| panic!("{}/{}: no payload schema", connector.name, event.name));
            let validator = jsonschema::validator_for(schema)
                .unwrap_or_else(|e| panic!("{}/{}: schema does not compile: {e}", connector.name, event.name));
            let example =
                event.example.as_ref().unwrap_or_else(|| panic!("{}/{}: no example", connector.name, event.name));
            let errors: Vec<String> =
                validator.iter_errors(example).map(|e| format!("{} at {}", e, e.instance_path())).collect();
            assert!(errors.is_empty(), "{}/{}: example does not match schema: {errors:?}", connector.name, event.name);
            checked += 1;
        }
    }
    assert!(checked >= 58 + 20, "only {checked} events checked");
}

#[test]
fn every_event_alias_names_an_event_that_exists_and_is_not_one_itself() {
    let catalog = catalog();
    let mut aliases = 0;
    for connector in catalog.connectors.values() {
        let Some(hooks) = &connector.manifest.webhooks else { continue };
        for (alias, target) in &hooks.aliases {
            assert!(hooks.events.contains_key(target), "{}: alias `{alias}` names no event `{target}`", connector.name);
            assert!(!hooks.events.contains_key(alias), "{}: alias `{alias}` is an event itself", connector.name);
            aliases += 1;
        }
    }
    assert!(aliases >= 4, "GHL's INSTALL, UNINSTALL, PLAN_CHANGE and ConversationUnreadUpdate: {aliases}");
}

#[test]
fn ghl_facts_hold() {
    let catalog = catalog();
    let ghl = catalog.connector("ghl").expect("ghl");
    assert_eq!(ghl.apis.len(), 10);
    assert_eq!(ghl.events.len(), 58);
    // operationIds collide inside payments.json: the lookup must say so.
    assert!(matches!(catalog.lookup(ghl, "payments", "create-integration"), Lookup::Ambiguous(ops) if ops.len() >= 2));
    // Scopes come from Scopes.md.
    let get_contact = ghl.apis["contacts"].iter().find(|o| o.id == "get-contact").expect("get-contact");
    assert!(get_contact.scopes.contains(&"contacts.readonly".to_string()), "{:?}", get_contact.scopes);
    assert!(ghl.events["ContactCreate"].scopes.contains(&"contacts.readonly".to_string()));
    // v2 has no refund fields on the white-label provider operation.
    let whitelabel = ghl.apis["payments"]
        .iter()
        .find(|o| o.route() == "POST:/payments/integrations/provider/whitelabel")
        .expect("whitelabel");
    let shape = weft::catalog::schema::Shape::of(&whitelabel.doc, whitelabel.body.as_ref().expect("body"));
    assert!(!shape.properties.contains_key("refundAmount"));
}
