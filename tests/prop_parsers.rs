//! Property tests: no input makes the loader or the validator panic, and every diagnostic they return
//! points inside the file, on character boundaries, so that it can always be rendered.

use proptest::prelude::*;
use weft::diag::render;
use weft::source::SourceFile;
use weft::validate::{validate_flow, ProjectContext};

const SEED_FLOWS: &[&str] = &[
    include_str!("cases/valid/razorpay-payment-captured.yaml"),
    r#"flow: ghl-contact-created
description: Mirror new GHL contacts.
trigger:
  webhook: { connection: ghl, event: ContactCreate }
vars:
  tag: "${{ trigger.email | lower }}"
steps:
  - id: get
    call: ghl.contacts.get-contact
    path: { contactId: $.trigger.id }
  - id: each
    for_each: $.steps.get.contact.tags
    concurrency: 2
    set: { tag: $.item, at: "${{ index }}", literal: { literal: "$.x" } }
  - id: relay
    call: http.relay.post
    body: { id: { from: $.steps.get.contact.id, default: none }, phone: { from: $.steps.get.contact.phone, optional: true }, when: "${{ event.id }}" }
    on_error: continue
"#,
];

fn project() -> &'static ProjectContext {
    static CTX: std::sync::OnceLock<ProjectContext> = std::sync::OnceLock::new();
    CTX.get_or_init(ProjectContext::implicit)
}

fn assert_renderable(file: &SourceFile, diags: &[weft::diag::Diagnostic]) {
    let text = file.text();
    for d in diags {
        for l in &d.labels {
            assert!(
                l.span.start <= l.span.end && l.span.end <= text.len(),
                "{}: span {:?} outside {} bytes",
                d.code.id,
                l.span,
                text.len()
            );
            assert!(
                text.is_char_boundary(l.span.start) && text.is_char_boundary(l.span.end),
                "{}: span {:?} splits a character",
                d.code.id,
                l.span
            );
        }
        let out = render::human(d, render::Human::plain());
        assert!(out.contains(d.code.id));
        let _ = render::github(d);
        let _ = serde_json::to_string(&render::json(d)).expect("json");
    }
}

/// Small edits a person (or a bad merge) makes to a YAML file.
#[derive(Debug, Clone)]
enum Edit {
    Delete { at: usize, len: usize },
    Insert { at: usize, text: String },
    DuplicateLine { line: usize },
    SwapLines { a: usize, b: usize },
    Indent { line: usize, by: i8 },
}

fn edit_strategy() -> impl Strategy<Value = Edit> {
    let snippet = prop_oneof![
        Just(":".to_string()),
        Just("- ".to_string()),
        Just("{".to_string()),
        Just("]".to_string()),
        Just("$.".to_string()),
        Just("${{".to_string()),
        Just("}}".to_string()),
        Just("&a ".to_string()),
        Just("*a".to_string()),
        Just("!tag ".to_string()),
        Just("\n---\n".to_string()),
        Just("\t".to_string()),
        Just("é".to_string()),
        Just("'".to_string()),
        "[ -~]{1,12}",
    ];
    prop_oneof![
        (any::<usize>(), 1usize..20).prop_map(|(at, len)| Edit::Delete { at, len }),
        (any::<usize>(), snippet).prop_map(|(at, text)| Edit::Insert { at, text }),
        any::<usize>().prop_map(|line| Edit::DuplicateLine { line }),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::SwapLines { a, b }),
        (any::<usize>(), -4i8..4).prop_map(|(line, by)| Edit::Indent { line, by }),
    ]
}

fn floor_boundary(s: &str, mut at: usize) -> usize {
    at = at.min(s.len());
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    at
}

fn apply(text: &str, edit: &Edit) -> String {
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    match edit {
        Edit::Delete { at, len } => {
            let start = floor_boundary(text, at % (text.len() + 1));
            let end = floor_boundary(text, start + len);
            format!("{}{}", &text[..start], &text[end..])
        }
        Edit::Insert { at, text: ins } => {
            let at = floor_boundary(text, at % (text.len() + 1));
            format!("{}{ins}{}", &text[..at], &text[at..])
        }
        Edit::DuplicateLine { line } if !lines.is_empty() => {
            let i = line % lines.len();
            lines.insert(i, lines[i].clone());
            lines.join("\n")
        }
        Edit::SwapLines { a, b } if !lines.is_empty() => {
            let n = lines.len();
            lines.swap(a % n, b % n);
            lines.join("\n")
        }
        Edit::Indent { line, by } if !lines.is_empty() => {
            let i = line % lines.len();
            if *by >= 0 {
                lines[i] = format!("{}{}", " ".repeat(*by as usize), lines[i]);
            } else {
                let trim = (-*by) as usize;
                let spaces = lines[i].len() - lines[i].trim_start_matches(' ').len();
                lines[i] = lines[i][spaces.min(trim)..].to_string();
            }
            lines.join("\n")
        }
        _ => text.to_string(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(text in "(?s).{0,400}") {
        let file = SourceFile::new("arb.yaml", text);
        let diags = validate_flow(&file, project());
        assert_renderable(&file, &diags);
    }

    #[test]
    fn yaml_like_text_never_panics(text in "([a-z$.{}\\[\\]:,'\"&*!|>#-]|\\$\\{\\{|\\}\\}|\n  |\n- | ){0,120}") {
        let file = SourceFile::new("arb.yaml", text);
        let diags = validate_flow(&file, project());
        assert_renderable(&file, &diags);
    }

    #[test]
    fn mutated_flows_never_panic(seed in 0usize..SEED_FLOWS.len(), edits in prop::collection::vec(edit_strategy(), 1..6)) {
        let mut text = SEED_FLOWS[seed].to_string();
        for e in &edits {
            text = apply(&text, e);
        }
        let file = SourceFile::new("mutated.yaml", text);
        let diags = validate_flow(&file, project());
        assert_renderable(&file, &diags);
    }

    #[test]
    fn arbitrary_values_in_a_valid_flow_never_panic(value in "(\\$[.\\[][ -~]{0,30}|\\$\\{\\{[ -~]{0,30}\\}\\}|[ -~]{0,30})") {
        let text = format!(
            "flow: f\ndescription: d\ntrigger:\n  webhook: {{ connection: razorpay, event: payment.captured }}\nsteps:\n  - id: a\n    call: ghl.contacts.create-note\n    path: {{ contactId: {v:?} }}\n    body: {{ body: {v:?} }}\n    when: {v:?}\n",
            v = value
        );
        let file = SourceFile::new("values.yaml", text);
        let diags = validate_flow(&file, project());
        assert_renderable(&file, &diags);
    }
}

#[test]
fn hostile_files_get_located_diagnostics() {
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", Vec::new(), "file::empty"),
        ("not utf-8", b"flow: a\ndescription: \xff\xfe\n".to_vec(), "file::not_utf8"),
        ("deep", format!("a: {}{}", "[".repeat(10_000), "]".repeat(10_000)).into_bytes(), "yaml::too_deep"),
        ("huge", vec![b'#'; 10 * 1024 * 1024], "file::too_large"),
        ("duplicate keys", b"flow: a\nflow: b\n".to_vec(), "yaml::duplicate_key"),
        ("not yaml", b"flow: [unclosed\n  description: x\n".to_vec(), "yaml::syntax"),
        ("binary", vec![0u8, 159, 146, 150, 1, 2, 3], "file::not_utf8"),
    ];
    for (what, bytes, code) in cases {
        let diags = match weft::dsl::load::from_bytes(std::path::Path::new("hostile.yaml"), bytes) {
            Ok(file) => {
                let d = validate_flow(&file, project());
                assert_renderable(&file, &d);
                d
            }
            Err(d) => vec![d],
        };
        assert!(!diags.is_empty(), "{what}: no diagnostic");
        assert_eq!(diags[0].code.id, code, "{what}");
        assert!(diags[0].file.is_some() && diags[0].location().is_some(), "{what}: diagnostic has no location");
    }
}
