//! The `connector.yaml` model: what a connector declares beside its OpenAPI documents.
//!
//! Only what OpenAPI cannot say lives here: auth scheme, fixed headers, pagination rules, rate limits,
//! retryable statuses and webhook events with their payload schemas and signature scheme.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A weft connector: an app's operations (OpenAPI 3 documents) and webhook events.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "weft connector")]
pub struct Manifest {
    /// The connector's name, used in `connector:` of a connection: lowercase letters, digits, dashes.
    #[schemars(regex(pattern = r"^[a-z][a-z0-9-]*$"))]
    pub connector: String,
    /// The app's display name.
    pub title: String,
    /// What the app is and what the connector covers.
    pub description: String,
    /// Where the app's API documentation lives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docs: Option<String>,
    /// The API's base URL; a connection may override it. Empty when the connection must give it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// API name → OpenAPI 3 JSON document, relative to this file. Operations are `connector.API.operationId`.
    #[serde(default)]
    pub apis: IndexMap<String, String>,
    /// How requests authenticate.
    pub auth: Auth,
    /// Headers sent on every request, e.g. GHL's `Version`.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub headers: IndexMap<String, String>,
    /// Pagination rules. A rule applies to an operation that declares the rule's query parameters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pagination: Vec<Pagination>,
    /// The app's documented rate limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// HTTP statuses worth retrying (with backoff).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retry_statuses: Vec<u16>,
    /// Header that makes a write idempotent, when the app supports one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_header: Option<String>,
    /// JSONPath to the human-readable message in an error response body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// A scope table (JSON: `{scopes: [{scope, endpoints, events}]}`), relative to this file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<String>,
    /// The webhooks the app sends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhooks: Option<Webhooks>,
}

/// How a connector authenticates requests.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    /// The scheme.
    pub scheme: AuthScheme,
    /// With `header`: the header name that carries the API key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// With `oauth2`: the authorization URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorize_url: Option<String>,
    /// With `oauth2`: the token URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_url: Option<String>,
    /// With `oauth2`: the grant type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<OAuthGrant>,
    /// Credentials may be left out (a relay whose URL is its own secret, an open endpoint).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuthScheme {
    /// No credentials.
    None,
    /// `Authorization: Bearer TOKEN`.
    Bearer,
    /// `Authorization: Basic base64(username:password)`.
    Basic,
    /// An API key in a named header.
    Header,
    /// OAuth 2 access tokens, refreshed by the runtime.
    Oauth2,
    /// The whole URL is the secret (Slack incoming webhooks).
    Url,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OAuthGrant {
    AuthorizationCode,
    ClientCredentials,
}

/// One way the app pages through lists.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Pagination {
    /// `offset` (limit + offset/skip), `page` (page number + page size) or `cursor` (ids of the last item).
    pub style: PaginationStyle,
    /// The query parameter for the page size.
    pub limit: String,
    /// With `offset`: the query parameter for the number of items to skip.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<String>,
    /// With `page`: the query parameter for the page number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<String>,
    /// With `cursor`: the query parameters fed from the previous page.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cursor: Vec<String>,
    /// The largest page size the app accepts.
    pub max_limit: u32,
    /// JSONPath to the page's items in the response body.
    pub items: String,
    /// JSONPath to the next page / cursor value, when the response carries one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    /// JSONPath to a value that is `null` or `false` on the last page (GHL's `$.meta.nextPageUrl`), so that a
    /// full last page is not followed by a request for an empty one. When a response lacks it, the page size
    /// decides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub more: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaginationStyle {
    Offset,
    Page,
    Cursor,
}

/// A rate limit: `requests` per `per_seconds`, and optionally a daily cap.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Requests allowed in each window.
    #[schemars(range(min = 1))]
    pub requests: u32,
    /// The window, in seconds.
    #[schemars(range(min = 1))]
    pub per_seconds: u32,
    /// Requests allowed per day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_day: Option<u32>,
}

/// The webhooks an app sends and how to verify them.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Webhooks {
    /// How the body is encoded.
    #[serde(default)]
    pub content_type: ContentType,
    /// How deliveries are signed.
    pub signature: Signature,
    /// JSONPath in the body that names the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    /// Where the delivery's unique id is, for de-duplication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<EventId>,
    /// Event name → description, payload schema and example.
    pub events: IndexMap<String, Event>,
    /// Event-type values that name one of `events` differently, value → event name (GHL sends `type: INSTALL`
    /// for `AppInstall`). A delivery with either runs the event's flows.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub aliases: IndexMap<String, String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ContentType {
    #[default]
    Json,
    Form,
}

/// A webhook signature scheme.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Signature {
    /// How the signature is computed: `hmac-sha256` (Razorpay), `hmac-sha1` (Payhere), `rsa-sha256` (GHL),
    /// `shared-secret` (a token header, e.g. a Zapier relay), `payhere-md5sig` (payhere.lk notify), `none`.
    pub scheme: SignatureScheme,
    /// The header that carries the signature (or the shared token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// How the signature bytes are written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<SignatureEncoding>,
    /// With `rsa-sha256`: the PEM public key file, relative to connector.yaml.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// JSONPath to a signed timestamp, checked against a replay window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_path: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SignatureScheme {
    None,
    HmacSha256,
    HmacSha1,
    RsaSha256,
    SharedSecret,
    PayhereMd5sig,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SignatureEncoding {
    Hex,
    Base64,
}

/// Where a delivery's unique id is: a header or a JSONPath in the body.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EventId {
    /// A request header holding the id, e.g. `x-razorpay-event-id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// A JSONPath in the body holding the id, e.g. `$.webhookId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// A second delivery with the same id: `acknowledge` (200 `duplicate`, not run again: what at-least-once
    /// senders such as Razorpay need, or they retry and disable the webhook) or `reject` (409: the sender's
    /// docs say a repeated id is a replay attack, as GHL's do for `webhookId`). Either way it never runs twice.
    #[serde(default)]
    pub on_duplicate: OnDuplicate,
}

/// What a repeated delivery id gets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnDuplicate {
    #[default]
    Acknowledge,
    Reject,
}

/// One webhook event.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// When the app sends it.
    pub description: String,
    /// JSON Schema of the payload, relative to connector.yaml.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// An example payload, relative to connector.yaml.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub example: Option<String>,
}
