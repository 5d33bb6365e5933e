//! `weft graph FLOW`: the flow as a mermaid diagram — trigger, steps in order (with `when` and `for_each` on
//! the edges), and dotted arrows from each step to the earlier steps whose output it reads.

use std::path::Path;

use super::{EXIT_INVALID, EXIT_OK};
use crate::diag::render;
use crate::dsl::flow::{Flow, Step};
use crate::dsl::load;
use crate::dsl::value::{static_segments, Segment};
use crate::validate::{find_project, validate_flow, ProjectContext};

pub fn run(flow: &Path) -> i32 {
    let ctx = ProjectContext::load(find_project(flow).as_deref());
    let file = match load::read(flow) {
        Ok(f) => f,
        Err(d) => {
            eprintln!("{}", render::human(&d, render::Human::plain()));
            return EXIT_INVALID;
        }
    };
    let diags = validate_flow(&file, &ctx);
    if diags.iter().any(|d| d.is_error()) {
        super::eprint_diagnostics(&diags);
        return EXIT_INVALID;
    }
    let Ok(Ok(model)) = load::parse(&file).map(|root| serde_json::from_value::<Flow>(root.to_json())) else {
        return EXIT_INVALID;
    };
    out!("{}", mermaid(&model));
    EXIT_OK
}

pub fn mermaid(flow: &Flow) -> String {
    let mut out = String::from("flowchart TD\n");
    let t = &flow.trigger;
    let trigger = if let Some(w) = &t.webhook {
        format!("webhook: {} {}", w.connection, w.event)
    } else if let Some(s) = &t.schedule {
        format!("schedule: {}", s.cron)
    } else if let Some(p) = &t.poll {
        format!("poll: {} every {}", p.call, p.every)
    } else {
        "manual".to_string()
    };
    out.push_str(&format!("  trigger([\"{}\"])\n", escape(&trigger)));
    let mut previous = "trigger".to_string();
    for step in &flow.steps {
        let node = node_id(&step.id);
        let what = match (&step.call, &step.set) {
            (Some(call), _) => call.clone(),
            (None, Some(_)) => "set".to_string(),
            _ => String::new(),
        };
        let shape = if step.set.is_some() { ("[/", "/]") } else { ("[", "]") };
        out.push_str(&format!(
            "  {node}{}\"{}<br/><small>{}</small>\"{}\n",
            shape.0,
            escape(&step.id),
            escape(&what),
            shape.1
        ));
        let mut label = Vec::new();
        if let Some(w) = &step.when {
            label.push(format!("when {}", short(&value_text(w))));
        }
        if let Some(f) = &step.for_each {
            label.push(format!("for each {}", short(f)));
        }
        if label.is_empty() {
            out.push_str(&format!("  {previous} --> {node}\n"));
        } else {
            out.push_str(&format!("  {previous} -->|\"{}\"| {node}\n", escape(&label.join(", "))));
        }
        for used in reads(step) {
            if flow.steps.iter().any(|s| s.id == used && s.id != step.id) {
                out.push_str(&format!("  {} -.-> {node}\n", node_id(&used)));
            }
        }
        previous = node;
    }
    out
}

/// The step ids a step's values read (`$.steps.ID…` or `steps.ID` in templates).
fn reads(step: &Step) -> Vec<String> {
    let mut text = String::new();
    for v in [&step.path, &step.query, &step.headers].into_iter().flatten() {
        text.push_str(&serde_json::to_string(v).unwrap_or_default());
    }
    for v in [&step.body, &step.when, &step.set].into_iter().flatten() {
        text.push_str(&serde_json::to_string(v).unwrap_or_default());
    }
    if let Some(f) = &step.for_each {
        text.push_str(f);
    }
    let mut found = Vec::new();
    for (i, _) in text.match_indices("steps.") {
        let rest = &text[i + 6..];
        let id: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        if !id.is_empty() && !found.contains(&id) {
            found.push(id);
        }
    }
    found
}

fn value_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn short(s: &str) -> String {
    let segs = static_segments(s);
    let text = if s.starts_with('$') && !segs.is_empty() {
        segs.iter()
            .map(|g| match g {
                Segment::Name(n) => n.clone(),
                Segment::Index(i) => i.to_string(),
            })
            .collect::<Vec<_>>()
            .join(".")
    } else {
        s.to_string()
    };
    if text.chars().count() > 40 {
        format!("{}…", text.chars().take(39).collect::<String>())
    } else {
        text
    }
}

fn node_id(id: &str) -> String {
    format!("s_{id}")
}

/// Mermaid labels are quoted; quotes inside become `#quot;`.
fn escape(s: &str) -> String {
    s.replace('"', "#quot;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_trigger_steps_conditions_and_data_edges() {
        let flow: Flow = serde_json::from_value(serde_json::json!({
            "flow": "f", "description": "d",
            "trigger": {"webhook": {"connection": "razorpay", "event": "payment.captured"}},
            "steps": [
                {"id": "find", "call": "ghl.contacts.get-duplicate-contact"},
                {"id": "tag", "when": "$.steps.find.contact.id", "call": "ghl.contacts.add-tags", "path": {"contactId": "$.steps.find.contact.id"}}
            ]
        }))
        .unwrap();
        let m = mermaid(&flow);
        assert!(m.starts_with("flowchart TD\n  trigger([\"webhook: razorpay payment.captured\"])"), "{m}");
        assert!(m.contains("s_find -->|\"when steps.find.contact.id\"| s_tag"), "{m}");
        assert!(m.contains("s_find -.-> s_tag"), "{m}");
    }
}
