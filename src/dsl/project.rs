//! The project file model: `weft.yaml`, which declares the connections flows call.
//!
//! Secrets never appear here as values: every credential is a [`SecretRef`] to an environment variable or a
//! file, so the project file can be committed and reviewed.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A weft project: the connections its flows use.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "weft project")]
pub struct Project {
    /// Named connections. A flow calls `NAME.api.operation` and triggers on `{ connection: NAME }`.
    #[serde(default)]
    pub connections: IndexMap<String, Connection>,
    /// Extra folders holding connector folders (each with a connector.yaml), relative to this file. The
    /// folder `connectors/` next to this file is always searched.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub connectors: Vec<String>,
    /// Where the state database lives, relative to this file (default `.weft/state.db`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
}

/// One account on one app: which connector, how to authenticate, and what it may do.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Connection {
    /// The connector: a built-in one (`ghl`, `razorpay`, `payhere`, `wizehire`, `slack`, `http`) or a
    /// folder name under `connectors/`.
    pub connector: String,
    /// What this connection is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Override the connector's base URL (a sandbox, a relay, `weft sandbox`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// Credentials, by reference only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<ConnectionAuth>,
    /// The webhook signing secret (Razorpay, Payhere, Wizehire relay), by reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<SecretRef>,
    /// The PEM public key that checks RSA-signed webhooks (GHL) instead of the connector's published one: a
    /// rotated key, or the pair `weft sandbox --webhook-key` signs with. From a file or an environment variable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_public_key: Option<SecretRef>,
    /// GHL: the sub-account (location) id, used as `${{ connections.NAME.location_id }}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location_id: Option<String>,
    /// OAuth scopes granted to this connection's token; every operation and event a flow uses must be
    /// covered (GHL scopes, e.g. `contacts.readonly`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    /// Override the connector's rate limit, e.g. when your plan allows more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<crate::catalog::manifest::RateLimit>,
}

/// Credentials of a connection. Which keys apply depends on the connector's auth scheme.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectionAuth {
    /// Bearer token (GHL private integration token, Payhere API key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<SecretRef>,
    /// Basic auth user name (Razorpay key id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<SecretRef>,
    /// Basic auth password (Razorpay key secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<SecretRef>,
    /// API key sent in `header` (scheme `header`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<SecretRef>,
    /// The header that carries `api_key`, e.g. `X-Api-Key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// OAuth 2 client id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<SecretRef>,
    /// OAuth 2 client secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<SecretRef>,
    /// OAuth 2 refresh token to start from; refreshed tokens are kept in the state database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<SecretRef>,
    /// A secret URL (Slack incoming webhook).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<SecretRef>,
    /// Set by the validator when the written credentials did not match the format (already reported).
    #[serde(skip)]
    #[schemars(skip)]
    pub malformed: bool,
}

/// Where a secret comes from: `{ env: NAME }` or `{ file: path }`. Never the secret itself.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    /// The environment variable that holds the secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*$"))]
    pub env: Option<String>,
    /// A file that holds the secret (trailing newline ignored), relative to weft.yaml.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}
