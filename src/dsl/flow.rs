//! The flow file model: what a user writes in `flows/**/*.yaml`.
//!
//! These types are the single source of the flow format: serde reads them, schemars derives
//! `schemas/flow.schema.json` from them (the doc comments become the editor's hover help), and the
//! validator checks meaning on top. Kinds that are "one of" are structs of optional fields, not enums, so
//! that a mistake gets "unknown key" or "exactly one of" instead of an unreadable `oneOf` failure.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A weft flow: a trigger and the steps it runs. Validate it with `weft validate`.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "weft flow")]
pub struct Flow {
    /// The flow's name, unique in the project: lowercase letters, digits and dashes, e.g.
    /// `razorpay-payment-captured`.
    #[schemars(regex(pattern = r"^[a-z0-9][a-z0-9_-]*$"), length(max = 80))]
    pub flow: String,
    /// What the flow does, in a sentence or two, for the people who review it.
    #[schemars(length(min = 1))]
    pub description: String,
    /// What starts a run: exactly one of `webhook`, `schedule`, `poll` or `manual`.
    pub trigger: Trigger,
    /// Named values the steps can use as `$.vars.NAME` or `${{ vars.NAME }}`. Literals, or templates over
    /// `trigger`, `event` and `connections`. Never secrets: those live in weft.yaml.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub vars: IndexMap<String, Value>,
    /// The steps, run in order. A step sees the outputs of the steps before it as `$.steps.ID`.
    #[schemars(length(min = 1))]
    pub steps: Vec<Step>,
}

/// What starts a run. Give exactly one kind.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Trigger {
    /// Run for each webhook event a connection receives (signature verified by `weft serve`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookTrigger>,
    /// Run on a cron schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<ScheduleTrigger>,
    /// Call a list operation on an interval and run once per new item.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll: Option<PollTrigger>,
    /// Run only when started by hand (`weft run FLOW --event FILE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manual: Option<ManualTrigger>,
}

/// A webhook event from a connection, e.g. `{ connection: razorpay, event: payment.captured }`.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookTrigger {
    /// The connection (declared in weft.yaml) whose webhooks start the flow.
    pub connection: String,
    /// The event name as the connector's catalog lists it, e.g. `payment.captured` or `ContactCreate`.
    pub event: String,
}

/// A cron schedule, e.g. `{ cron: "0 2 * * *" }` for 02:00 every day.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleTrigger {
    /// Five fields: minute, hour, day of month, month, day of week (an optional sixth leading seconds
    /// field is accepted). `@daily`, `@hourly` and friends work too.
    pub cron: String,
    /// The time zone the cron fields are read in: `UTC` (the default), an IANA zone such as `Asia/Kolkata` or
    /// `America/New_York` (daylight saving followed), or a fixed offset such as `+05:30`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
}

/// Poll a list operation, e.g. `{ call: razorpay.payments.list-payments, every: 5m, items: $.items }`. Each poll
/// pages through the whole list by the connector's pagination rule, one page at a time, keeping its place in the
/// store; a cursor-paged list (GHL contacts) is followed from where the last poll ended.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PollTrigger {
    /// The list operation to call, as `connection.api.operation`.
    pub call: String,
    /// How often to poll: a number and a unit, `30s`, `5m`, `1h`.
    #[schemars(regex(pattern = r"^[0-9]+(s|m|h)$"))]
    pub every: String,
    /// Query parameters of the list call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<IndexMap<String, Value>>,
    /// Path parameters of the list call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<IndexMap<String, Value>>,
    /// JSONPath to the items in the list response, e.g. `$.items`. Each new item is one run, seen as
    /// `$.trigger`.
    pub items: String,
    /// JSONPath in an item that identifies it, e.g. `$.id`; an item already seen is not run again.
    pub id: String,
}

/// A flow started by hand or by a test case.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ManualTrigger {
    /// What the input event looks like, for the people who run it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// One step: either a `call` to an operation or a pure `set` mapping.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// The step's id, unique in the flow; later steps read its output as `$.steps.ID`.
    #[schemars(regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*$"))]
    pub id: String,
    /// What the step is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The operation to call: `connection.api.operation`, e.g. `ghl.contacts.get-contact`, or
    /// `connection.api.METHOD:/path` when an operation id is ambiguous.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call: Option<String>,
    /// Path parameters: each `{name}` in the operation's path mapped to a value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<IndexMap<String, Value>>,
    /// Query parameters mapped to values. `{ from: $.path, optional: true }` leaves a parameter out when the
    /// path matches nothing or only `null`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<IndexMap<String, Value>>,
    /// Extra request headers mapped to values (auth and fixed headers are added by the runtime).
    /// `{ from: $.path, optional: true }` leaves a header out when the path matches nothing or only `null`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<IndexMap<String, Value>>,
    /// The JSON request body: a mapping whose values are JSONPaths, `${{ }}` templates or literals,
    /// `{ from: $.path, default: VALUE }` (a fallback) or `{ from: $.path, optional: true }` (only a real
    /// value is sent: the key is left out when the path matches nothing or only `null`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    /// Run the step only when this is truthy: a JSONPath (true when it matches a value that is not
    /// `false`, `null`, `""` or `0`) or a `${{ }}` expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<Value>,
    /// Run the step once per element of the list this JSONPath selects; the element is `$.item`, its
    /// position `$.index`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub for_each: Option<String>,
    /// With `for_each`: how many elements run at once (1 to 16, default 1: in order).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 16))]
    pub concurrency: Option<u32>,
    /// Follow the connector's pagination rule and collect every page's items: the step's output is
    /// `{items: [...], pages: N}`. Only for list operations the connector declares a rule for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paginate: Option<Paginate>,
    /// A pure mapping step: its output is this value, mapped. No call is made. A key whose value is
    /// `{ from: $.path, optional: true }` is left out of the output when the path matches nothing or only `null`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set: Option<Value>,
    /// What a failure of this step does: `fail` the run (default), `skip` the remaining steps and end the
    /// run as successful, or `continue` with the next step (the output is the error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_error: Option<OnError>,
}

/// How far to page.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Paginate {
    /// Stop after this many pages (default 50), so a runaway list cannot exhaust a rate limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub max_pages: Option<u32>,
}

/// What a failed step does to the run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Stop the run and mark it failed (the default).
    #[default]
    Fail,
    /// Stop the run here and mark it succeeded.
    Skip,
    /// Go on with the next step; this step's output is `{error: {...}}`.
    Continue,
}
