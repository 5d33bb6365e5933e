//! `weft catalog`: what operations and events exist, with method, path, scopes and required fields.

use serde_json::json;

use super::{EXIT_OK, EXIT_USAGE};
use crate::catalog::{Catalog, Connector, ParamIn};
use crate::diag::{render, suggest};
use crate::validate::{find_project, ProjectContext};

pub fn run(connector: Option<&str>, search: Option<&str>, as_json: bool) -> i32 {
    // The catalog a flow in the current directory would see: built-ins plus project connectors.
    let project = find_project(std::path::Path::new("./flows/x")).or_else(|| find_project(std::path::Path::new("./x")));
    let ctx = ProjectContext::load(project.as_deref());
    for d in &ctx.diagnostics {
        eprintln!("{}", render::one_line(d));
    }
    let catalog: &Catalog = &ctx.catalog;
    let selected: Vec<&Connector> = match connector {
        Some(name) => match catalog.connector(name) {
            Some(c) => vec![c],
            None => {
                eprintln!("no connector `{name}`: {}", suggest(name, catalog.connectors.keys().map(String::as_str)));
                return EXIT_USAGE;
            }
        },
        None => catalog.connectors.values().collect(),
    };
    let needle = search.map(str::to_lowercase);
    let matches = |texts: &[&str]| needle.as_ref().is_none_or(|n| texts.iter().any(|t| t.to_lowercase().contains(n)));

    if as_json {
        let doc: Vec<_> = selected
            .iter()
            .map(|c| {
                let ops: Vec<_> = c
                    .operations()
                    .filter(|o| matches(&[&o.qualified(), &o.path, &o.summary]))
                    .map(|o| {
                        json!({
                            "call": o.qualified(), "route": o.qualified_by_route(), "method": o.method, "path": o.path,
                            "summary": o.summary, "scopes": o.scopes,
                            "path_params": o.path_params().collect::<Vec<_>>(),
                            "required_query": o.params.iter().filter(|p| p.location == ParamIn::Query && p.required).map(|p| &p.name).collect::<Vec<_>>(),
                            "required_body": o.required_body_fields(),
                        })
                    })
                    .collect();
                let events: Vec<_> = c
                    .events
                    .values()
                    .filter(|e| matches(&[&e.name, &e.description]))
                    .map(|e| json!({"event": e.name, "description": e.description, "scopes": e.scopes}))
                    .collect();
                json!({"connector": c.name, "title": c.manifest.title, "origin": c.origin, "operations": ops, "events": events})
            })
            .collect();
        outln!("{}", super::pretty(&json!(doc)));
        return EXIT_OK;
    }

    if connector.is_none() && search.is_none() {
        outln!("{:<12} {:>5} {:>7}  description", "connector", "ops", "events");
        for c in &selected {
            outln!("{:<12} {:>5} {:>7}  {}", c.name, c.operations().count(), c.events.len(), c.manifest.title);
        }
        outln!("\n`weft catalog NAME` lists a connector's operations and events; `--search TEXT` filters.");
        return EXIT_OK;
    }
    for c in selected {
        let ops: Vec<_> = c.operations().filter(|o| matches(&[&o.qualified(), &o.path, &o.summary])).collect();
        let events: Vec<_> = c.events.values().filter(|e| matches(&[&e.name, &e.description])).collect();
        if ops.is_empty() && events.is_empty() {
            continue;
        }
        outln!("{} — {} ({})", c.name, c.manifest.title, c.origin);
        for o in ops {
            let mut extra = Vec::new();
            if !o.scopes.is_empty() {
                extra.push(format!("scopes: {}", o.scopes.join(" | ")));
            }
            let q: Vec<&str> = o
                .params
                .iter()
                .filter(|p| p.location == ParamIn::Query && p.required)
                .map(|p| p.name.as_str())
                .collect();
            if !q.is_empty() {
                extra.push(format!("query: {}", q.join(", ")));
            }
            let b = o.required_body_fields();
            if !b.is_empty() {
                extra.push(format!("body: {}", b.join(", ")));
            }
            outln!("  {:<6} {:<58} {}", o.method, o.path, o.qualified());
            if !o.summary.is_empty() {
                outln!("         {}", o.summary);
            }
            if !extra.is_empty() {
                outln!("         {}", extra.join("; "));
            }
        }
        for e in events {
            let scopes =
                if e.scopes.is_empty() { String::new() } else { format!(" [scopes: {}]", e.scopes.join(" | ")) };
            outln!("  event  {:<58} {}{scopes}", e.name, e.description);
        }
        outln!();
    }
    EXIT_OK
}
