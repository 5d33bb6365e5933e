//! The registry of diagnostic codes: one declarative list, the only place a code is defined.
//!
//! Codes are stable: once released a code keeps its meaning and is never reused for another problem.
//! `docs/errors.md` is generated from this list (`weft explain --markdown`), and a test keeps it fresh.

/// One kind of problem weft can report.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Code {
    /// The stable identifier, `area::topic::problem`.
    pub id: &'static str,
    /// One line: what is wrong.
    pub summary: &'static str,
    /// How to fix it, in general terms; a diagnostic may add a more precise help of its own.
    pub help: &'static str,
}

macro_rules! codes {
    ($($name:ident = $id:literal, $summary:literal, $help:literal;)*) => {
        $(
            #[doc = $summary]
            pub const $name: &Code = &Code { id: $id, summary: $summary, help: $help };
        )*
        /// Every code, in registry order.
        pub const ALL: &[&Code] = &[$($name),*];
    };
}

codes! {
    // Files.
    FILE_IO = "file::io", "A file or directory could not be read.",
        "Check the path exists and is readable.";
    FILE_NOT_UTF8 = "file::not_utf8", "The file is not valid UTF-8 text.",
        "Save the file as UTF-8; flows and project files are text.";
    FILE_EMPTY = "file::empty", "The file is empty.",
        "A flow needs at least `flow`, `description`, `trigger` and `steps`.";
    FILE_TOO_LARGE = "file::too_large", "The file is larger than weft accepts.",
        "Split the flow; a flow file is limited to 4 MiB.";
    // YAML.
    YAML_SYNTAX = "yaml::syntax", "The file is not valid YAML.",
        "Check indentation, quoting and that every `:` in a plain string is quoted.";
    YAML_DUPLICATE_KEY = "yaml::duplicate_key", "A mapping has the same key twice.",
        "Remove or rename one of the keys; YAML keeps only one value per key.";
    YAML_TOO_DEEP = "yaml::too_deep", "The document nests deeper than weft accepts.",
        "Flatten the structure; nesting is limited to 64 levels.";
    YAML_UNSUPPORTED = "yaml::unsupported", "The file uses a YAML feature weft does not accept.",
        "Write one document per file without tags; anchors and aliases are allowed.";
    // Shape, from the generated JSON Schemas.
    SCHEMA_UNKNOWN_FIELD = "schema::unknown_field", "A key is not part of the file format.",
        "Remove the key or fix its spelling; `weft schema` prints the format.";
    SCHEMA_MISSING_FIELD = "schema::missing_field", "A required key is missing.",
        "Add the key; `weft schema` prints the format.";
    SCHEMA_TYPE = "schema::type", "A value has the wrong type.",
        "Change the value to the expected type; quote strings that look like numbers.";
    SCHEMA_VALUE = "schema::value", "A value is not one of the allowed values or out of range.",
        "Use one of the values listed in the message.";
    SCHEMA_INVALID = "schema::invalid", "A value does not match the file format.",
        "Compare the value with the format printed by `weft schema`.";
    // Flow structure.
    FLOW_TRIGGER_KIND = "flow::trigger::kind", "A trigger must have exactly one kind.",
        "Use one of `webhook`, `schedule`, `poll` or `manual`.";
    FLOW_TRIGGER_UNKNOWN_EVENT = "flow::trigger::unknown_event", "The trigger names an event the connector does not send.",
        "Pick an event from `weft catalog CONNECTOR`.";
    FLOW_TRIGGER_NO_WEBHOOKS = "flow::trigger::no_webhooks", "The connector sends no webhooks.",
        "Use a `poll` or `schedule` trigger for this connector.";
    FLOW_TRIGGER_BAD_CRON = "flow::trigger::bad_cron", "The schedule is not a valid cron expression.",
        "Write five fields `minute hour day-of-month month day-of-week`, e.g. `0 2 * * *`.";
    FLOW_TRIGGER_UNKNOWN_FIELD = "flow::trigger::unknown_field", "A trigger path names a field the event payload does not have.",
        "Use a field from the event's payload schema (`weft catalog CONNECTOR --search EVENT`).";
    FLOW_TRIGGER_OPEN_FIELD = "flow::trigger::unchecked_field", "A trigger path goes into a part of the payload whose schema is open.",
        "The field may exist; check it against a real event (e.g. a recorded fixture).";
    FLOW_STEP_DUPLICATE_ID = "flow::step::duplicate_id", "Two steps have the same id.",
        "Give each step a unique id; later steps refer to them as `$.steps.<id>`.";
    FLOW_STEP_KIND = "flow::step::kind", "A step must either `call` an operation or `set` a value.",
        "Add `call: connection.api.operation` or `set: {...}`, not both.";
    FLOW_STEP_MISPLACED_KEY = "flow::step::misplaced_key", "A key only makes sense on a `call` step.",
        "Move request keys (`path`, `query`, `headers`, `body`) to a step that has `call`.";
    FLOW_CALL_SYNTAX = "flow::call::syntax", "`call` must be `connection.api.operation`.",
        "Write the connection, the API and the operation id separated by dots.";
    FLOW_CALL_UNKNOWN_CONNECTION = "flow::call::unknown_connection", "The connection is not declared.",
        "Declare it under `connections` in weft.yaml, or use one of the declared names.";
    FLOW_CALL_UNKNOWN_API = "flow::call::unknown_api", "The connector has no API of that name.",
        "Use an API listed by `weft catalog CONNECTOR`.";
    FLOW_CALL_UNKNOWN_OPERATION = "flow::call::unknown_operation", "The API has no operation of that name.",
        "Use an operation listed by `weft catalog CONNECTOR --search TEXT`.";
    FLOW_CALL_AMBIGUOUS = "flow::call::ambiguous_operation", "The operation id is used by several operations.",
        "Address the operation by method and path, e.g. `ghl.payments.POST:/payments/custom-provider/provider`.";
    FLOW_CALL_NOT_PAGINATED = "flow::call::not_paginated", "`paginate` on an operation that has no pagination rule.",
        "Remove `paginate`, or call a list operation; `weft catalog CONNECTOR` shows the list operations.";
    FLOW_REQUEST_UNKNOWN_PATH_PARAM = "flow::request::unknown_path_param", "The operation's path has no such parameter.",
        "Bind only the `{params}` that appear in the operation's path.";
    FLOW_REQUEST_MISSING_PATH_PARAM = "flow::request::missing_path_param", "A path parameter is not bound.",
        "Add the parameter under `path:`.";
    FLOW_REQUEST_UNKNOWN_FIELD = "flow::request::unknown_field", "The operation does not accept this field.",
        "Remove the field or use one the operation's schema defines.";
    FLOW_REQUEST_MISSING_FIELD = "flow::request::missing_field", "A field the operation requires is missing.",
        "Add the field to the step.";
    FLOW_REQUEST_TYPE = "flow::request::type", "A literal does not have the type the operation expects.",
        "Change the literal to the type the operation's schema gives.";
    FLOW_REQUEST_NO_BODY = "flow::request::no_body", "The operation takes no request body.",
        "Remove `body:` or call an operation that accepts one.";
    FLOW_REQUEST_REQUIRED_OPTIONAL = "flow::request::required_optional", "A field the operation requires is marked `optional: true`.",
        "Give it a `default:` so it is always sent, or guard the step with `when:` so it runs only when the value exists.";
    FLOW_PATH_SYNTAX = "flow::path::syntax", "A JSONPath does not parse.",
        "Write an RFC 9535 JSONPath such as `$.trigger.id` or `$.steps.find.contact.id`.";
    FLOW_PATH_UNKNOWN_ROOT = "flow::path::unknown_root", "A JSONPath starts from an unknown root.",
        "Start from `$.trigger`, `$.steps`, `$.vars`, `$.connections`, `$.event` or, inside `for_each`, `$.item`.";
    FLOW_VALUE_CANNOT_OMIT = "flow::value::cannot_omit", "`optional: true` on a value that has nothing to be left out of.",
        "Only a key of a mapping (`body`, `query`, `headers`, `set`) or an item of a list can be left out; give a `default:` or guard the step with `when:`.";
    FLOW_VALUE_FROM = "flow::value::from", "A `{ from: ... }` value has conflicting, mistyped or misspelt keys.",
        "Write `{ from: $.path, default: VALUE }` to send a fallback, or `{ from: $.path, optional: true }` to leave the field out.";
    FLOW_VALUE_DEFAULT = "flow::value::default", "A `default:` holds a JSONPath, a template or a `{ from }` / `{ literal }` value: a default is sent exactly as written, so it would be sent as that text or object.",
        "Write the fallback value itself (`default: 0`, `default: unknown`); to fall back on another field, use a template such as `\"${{ trigger.phone | default(trigger.mobile) }}\"`.";
    FLOW_REF_UNKNOWN_STEP = "flow::ref::unknown_step", "A reference names a step that does not exist.",
        "Refer to the id of an earlier step.";
    FLOW_REF_LATER_STEP = "flow::ref::later_step", "A reference names a step that has not run yet.",
        "Only earlier steps' outputs exist; move this step after the one it reads.";
    FLOW_REF_UNKNOWN_VAR = "flow::ref::unknown_var", "A reference names a variable the flow does not declare.",
        "Declare it under `vars:` or fix its spelling.";
    FLOW_REF_UNKNOWN_CONNECTION = "flow::ref::unknown_connection", "A reference names a connection that is not declared.",
        "Use a connection declared in weft.yaml.";
    FLOW_TEMPLATE_SYNTAX = "flow::template::syntax", "A `${{ }}` template does not compile.",
        "Fix the expression; templates are minijinja expressions between `${{` and `}}`.";
    FLOW_TEMPLATE_UNKNOWN_VARIABLE = "flow::template::unknown_variable", "A template uses a variable that does not exist.",
        "Use `trigger`, `steps`, `vars`, `connections`, `event` or, inside `for_each`, `item`.";
    FLOW_SECRET_INLINE = "flow::secret::inline", "A literal looks like a secret.",
        "Never put secrets in flows; declare them in weft.yaml as `env:` or `file:` and reference the connection.";
    FLOW_SCOPE_MISSING = "flow::scope::missing", "The connection's declared scopes do not cover this operation or event.",
        "Add the scope to the connection's `scopes` in weft.yaml (and to the app's OAuth scopes).";
    FLOW_SCOPE_UNKNOWN = "flow::scope::unknown", "The connector's scope table does not say which scope this operation or event needs.",
        "Check the app's API docs for the scope and make sure the connection declares it.";
    // Project file.
    PROJECT_UNKNOWN_CONNECTOR = "project::connection::unknown_connector", "A connection names a connector that does not exist.",
        "Use a built-in connector (`weft catalog`) or add a folder with a connector.yaml next to weft.yaml.";
    PROJECT_AUTH = "project::connection::auth", "A connection's auth does not fit its connector.",
        "Give secrets by reference only: `token: { env: NAME }` or `token: { file: path }`.";
    PROJECT_UNKNOWN_SCOPE = "project::connection::unknown_scope", "A declared scope is not one the connector knows.",
        "Use a scope from the connector's scope table (GHL: Scopes.md).";
    // Running.
    RUN_PATH_NO_MATCH = "run::path::no_match", "A JSONPath matched nothing (or several values) where one value is needed.",
        "Guard the step with `when:`, give a fallback: `{ from: $.path, default: value }`, or leave the field out: `{ from: $.path, optional: true }`.";
    RUN_TEMPLATE = "run::template::render", "A template failed while rendering.",
        "Check the fields it reads exist in this event; use `| default(...)` or `is defined` for optional ones.";
    RUN_REQUEST = "run::request::render", "A request could not be built from the mapped values.",
        "Path parameters must map to a string or number; check the step's `path:` values for this event.";
    RUN_HTTP_STATUS = "run::http::status", "The upstream API answered with an error status.",
        "Read the upstream error in the message; fix the mapped request, or use `on_error: continue`/`skip` for expected failures.";
    RUN_HTTP_TRANSPORT = "run::http::transport", "The request got no response (timeout, refused or reset connection) after retries.",
        "Check the connection's base URL and network; the runtime already retried with backoff.";
    RUN_SECRET_MISSING = "run::secret::missing", "A secret the connection needs is not set.",
        "Export the environment variable (or create the file) named in weft.yaml for this connection.";
    RUN_AUTH = "run::auth::failed", "Authentication failed or a token could not be refreshed.",
        "Check the connection's credentials and scopes; for OAuth, re-authorise the app to get a new refresh token.";
    RUN_REPLAY_UNMATCHED = "run::replay::unmatched", "The cassette has no recorded response for a request the flow sent.",
        "Record the interaction (`weft record`) or add it to the test case's cassette; the message shows the nearest recorded request.";
    RUN_FOR_EACH = "run::for_each::not_a_list", "`for_each` did not select a list.",
        "Point `for_each` at a list (e.g. `$.steps.get.items`), or use a path with `[*]`.";
    // Flow test cases.
    TEST_EXPECT_ABSENT = "test::expect::absent", "An `absent:` entry of a test case does not name a field the request could send.",
        "Write `body.FIELD` (nested `body.contact.phone`, in lists `body.items[0].id`) or `query.NAME`, naming a field the step maps.";
    // Connectors.
    CONNECTOR_INVALID = "connector::invalid", "A connector folder is not usable.",
        "Fix the connector.yaml or the OpenAPI document it names.";
}

/// Look a code up by its id, for `weft explain`.
pub fn find(id: &str) -> Option<&'static Code> {
    ALL.iter().copied().find(|c| c.id == id)
}

/// The registry as markdown: the body of `docs/errors.md`.
pub fn markdown() -> String {
    let mut out = String::from(
        "# weft diagnostic codes\n\n\
         Generated from `src/diag/codes.rs` by `weft explain --markdown`; a test fails when this file is stale.\n\
         Codes are stable: a released code never changes meaning.\n\n\
         | code | problem | how to fix |\n|---|---|---|\n",
    );
    for c in ALL {
        out.push_str(&format!("| `{}` | {} | {} |\n", c.id, c.summary, c.help.replace('|', "\\|")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_unique_and_well_formed() {
        let mut seen = HashSet::new();
        for c in ALL {
            assert!(seen.insert(c.id), "duplicate code {}", c.id);
            assert!(c.id.split("::").count() >= 2, "{} is not area::problem", c.id);
            assert!(c.id.chars().all(|ch| ch.is_ascii_lowercase() || ch == ':' || ch == '_' || ch.is_ascii_digit()));
            assert!(!c.help.is_empty() && !c.summary.is_empty());
        }
    }
}
