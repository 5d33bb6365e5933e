//! Credentials on the wire: what a connection adds to a request just before it is sent.
//!
//! The [`RequestSpec`] the engine renders, prints and records never carries credentials; [`Authenticator::
//! authorize`] returns an [`Authorization`] (headers, or Slack's secret URL) applied to a copy that goes to the
//! transport and nowhere else.
//!
//! OAuth 2 is the only stateful scheme. The token pair comes from the store (the latest refresh), else from
//! `auth.refresh_token` / `auth.token` in weft.yaml. It is refreshed shortly before it expires and once when the
//! app answers 401, and the new pair is saved before it is used. GHL rotates the refresh token on every refresh,
//! so two concurrent refreshes would burn one another's token: all token work for a connection happens under
//! one async mutex, and a caller that waited for it finds the token already fresh and does not refresh again.

use std::fmt;
use std::sync::Arc;

use serde_json::Value;

use super::connection::ConnectionRuntime;
use super::secrets::{self, Redactor, SecretError};
use crate::catalog::manifest::AuthScheme;
use crate::dsl::project::SecretRef;
use crate::store::{Store, TokenPair};
use crate::transport::{encode, RequestSpec, Transport};

/// Refresh a token this long before its stated expiry, for clock skew and the time a request takes.
pub const EXPIRY_SKEW_SECS: i64 = 60;

/// What to change on the outgoing copy of a request.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Authorization {
    pub headers: Vec<(String, String)>,
    /// `url` auth: the secret URL that replaces the request's base URL.
    pub base_url: Option<String>,
    /// The OAuth access token sent, so that a 401 can tell whether it was already replaced.
    pub access_token: Option<String>,
}

impl fmt::Debug for Authorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("Authorization")
            .field("headers", &names)
            .field("base_url", &self.base_url.as_ref().map(|_| "[redacted]"))
            .finish_non_exhaustive()
    }
}

impl Authorization {
    /// Apply to the copy of a request that is about to be sent. Auth headers replace same-named ones.
    pub fn apply(&self, req: &mut RequestSpec) {
        for (name, value) in &self.headers {
            req.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
            req.headers.push((name.clone(), value.clone()));
        }
        if let Some(url) = &self.base_url {
            req.base_url = url.trim_end_matches('/').to_string();
            // The secret URL is the whole endpoint (Slack): a bare `/` must not become a trailing slash.
            if req.path == "/" {
                req.path.clear();
            }
        }
    }
}

/// Why a request could not be authorized.
#[derive(Clone, Debug, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// The token endpoint refused or could not be reached. Never holds a secret value.
    #[error("{message}")]
    Token { status: Option<u16>, body: Option<Value>, message: String },
    #[error("connection `{connection}`: the OAuth token store failed: {message}")]
    Store { connection: String, message: String },
}

/// Authorizes requests of one connection.
pub struct Authenticator {
    method: Method,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.method {
            Method::Fixed(_) => "fixed",
            Method::OAuth(_) => "oauth2",
        };
        f.debug_struct("Authenticator").field("method", &kind).finish()
    }
}

enum Method {
    /// Everything but OAuth: resolved once; a secret error is reported on each call that needs it.
    Fixed(Result<Authorization, SecretError>),
    OAuth(Box<OAuth>),
}

impl Authenticator {
    /// Resolve the connection's secrets (each value goes to `redactor`). Never fails: a missing secret fails the
    /// calls that need it, so a project with one unconfigured connection still runs flows that do not use it.
    pub fn new(
        conn: &ConnectionRuntime,
        store: Option<Arc<dyn Store>>,
        transport: Arc<dyn Transport>,
        redactor: Arc<Redactor>,
    ) -> Self {
        let a = &conn.auth;
        // A fixed token with nothing to refresh it (GHL private integration token) is plain bearer.
        let oauth = conn.auth_scheme == AuthScheme::Oauth2 && !(a.token.is_some() && a.refresh_token.is_none());
        let method = if oauth {
            Method::OAuth(Box::new(OAuth::new(conn, store, transport, redactor)))
        } else {
            Method::Fixed(fixed(conn, &redactor))
        };
        Self { method }
    }

    /// The credentials for the next attempt (refreshing an OAuth token that is about to expire).
    pub async fn authorize(&self) -> Result<Authorization, AuthError> {
        match &self.method {
            Method::Fixed(result) => result.clone().map_err(AuthError::from),
            Method::OAuth(oauth) => oauth.authorize().await,
        }
    }

    /// The app answered 401 to `sent`. Returns true when a retry has new credentials: the token was refreshed
    /// now, or by a concurrent call since `sent` went out. False for fixed credentials (a 401 is final).
    pub async fn unauthorized(&self, sent: &Authorization) -> Result<bool, AuthError> {
        match (&self.method, &sent.access_token) {
            (Method::OAuth(oauth), Some(token)) => oauth.unauthorized(token).await,
            _ => Ok(false),
        }
    }
}

fn fixed(conn: &ConnectionRuntime, redactor: &Redactor) -> Result<Authorization, SecretError> {
    let get = |key: &str, secret: &Option<SecretRef>| -> Result<Option<String>, SecretError> {
        let Some(secret) = secret else { return Ok(None) };
        let value = secrets::resolve(&conn.name, key, secret, &conn.base_dir)?;
        redactor.add(&value);
        Ok(Some(value))
    };
    let need = |key: &str, value: Option<String>| value.ok_or_else(|| SecretError::unconfigured(&conn.name, key));
    let a = &conn.auth;
    let mut auth = Authorization::default();
    match conn.auth_scheme {
        AuthScheme::None => {}
        // An oauth2 connection with a fixed `auth.token` (GHL private integration token) is plain bearer.
        AuthScheme::Bearer | AuthScheme::Oauth2 => {
            let token = need("auth.token", get("auth.token", &a.token)?)?;
            auth.headers.push(("Authorization".into(), format!("Bearer {token}")));
        }
        AuthScheme::Basic => {
            let user = need("auth.username", get("auth.username", &a.username)?)?;
            let pass = get("auth.password", &a.password)?.unwrap_or_default();
            redactor.add_basic(&user, &pass);
            // Exactly `Basic <base64>`: Razorpay rejects any other casing of the scheme.
            auth.headers.push(("Authorization".into(), format!("Basic {}", secrets::basic_token(&user, &pass))));
        }
        AuthScheme::Header => {
            // The `http` relay may run without a header (a catch hook whose URL is its own secret).
            if let Some(key) = get("auth.api_key", &a.api_key)? {
                let name =
                    conn.auth_header.clone().ok_or_else(|| SecretError::unconfigured(&conn.name, "auth.header"))?;
                auth.headers.push((name, key));
            }
        }
        AuthScheme::Url => auth.base_url = Some(need("auth.url", get("auth.url", &a.url)?)?),
    }
    Ok(auth)
}

/// OAuth 2 state of one connection.
struct OAuth {
    connection: String,
    token_url: Option<String>,
    client_id: Option<Result<String, SecretError>>,
    client_secret: Option<Result<String, SecretError>>,
    /// The pair from weft.yaml, used when the store has none.
    configured: Result<Option<TokenPair>, SecretError>,
    store: Option<Arc<dyn Store>>,
    transport: Arc<dyn Transport>,
    redactor: Arc<Redactor>,
    state: tokio::sync::Mutex<TokenState>,
}

#[derive(Default)]
struct TokenState {
    loaded: bool,
    pair: Option<TokenPair>,
    /// A refreshed pair the store failed to save: saved again before the next use.
    unsaved: bool,
}

impl OAuth {
    fn new(
        conn: &ConnectionRuntime,
        store: Option<Arc<dyn Store>>,
        transport: Arc<dyn Transport>,
        redactor: Arc<Redactor>,
    ) -> Self {
        let resolve = |key: &str, secret: &Option<SecretRef>| {
            secret.as_ref().map(|s| {
                let value = secrets::resolve(&conn.name, key, s, &conn.base_dir);
                if let Ok(v) = &value {
                    redactor.add(v);
                }
                value
            })
        };
        let a = &conn.auth;
        let refresh = resolve("auth.refresh_token", &a.refresh_token).transpose();
        let access = resolve("auth.token", &a.token).transpose();
        let configured = match (refresh, access) {
            (Err(e), _) | (_, Err(e)) => Err(e),
            (Ok(None), Ok(None)) => Ok(None),
            (Ok(refresh_token), Ok(access)) => Ok(Some(TokenPair {
                // No access token yet: an empty one counts as expired and is refreshed before first use.
                expires_at: if access.is_some() { None } else { Some(0) },
                access_token: access.unwrap_or_default(),
                refresh_token,
                scope: None,
            })),
        };
        OAuth {
            connection: conn.name.clone(),
            token_url: conn.token_url.clone(),
            client_id: resolve("auth.client_id", &a.client_id),
            client_secret: resolve("auth.client_secret", &a.client_secret),
            configured,
            store,
            transport,
            redactor,
            state: tokio::sync::Mutex::new(TokenState::default()),
        }
    }

    async fn authorize(&self) -> Result<Authorization, AuthError> {
        let mut state = self.state.lock().await;
        self.load(&mut state)?;
        let stale = match &state.pair {
            None => true,
            Some(pair) => expires_soon(pair),
        };
        if stale {
            self.renew(&mut state).await?;
        }
        let token = state.pair.as_ref().map(|p| p.access_token.clone()).unwrap_or_default();
        Ok(bearer(token))
    }

    async fn unauthorized(&self, rejected: &str) -> Result<bool, AuthError> {
        let mut state = self.state.lock().await;
        self.load(&mut state)?;
        if state.pair.as_ref().is_some_and(|p| p.access_token != rejected) {
            return Ok(true);
        }
        if !self.can_renew(&state) {
            return Ok(false);
        }
        self.renew(&mut state).await?;
        Ok(true)
    }

    /// First use: the stored pair (it holds the latest rotated refresh token), else the configured one. Also
    /// retries saving a pair the store could not take last time.
    fn load(&self, state: &mut TokenState) -> Result<(), AuthError> {
        if !state.loaded {
            let stored = match &self.store {
                Some(store) => store.load_token(&self.connection).map_err(|e| self.store_error(e))?,
                None => None,
            };
            state.pair = match stored {
                Some(pair) => Some(pair),
                None => self.configured.clone()?,
            };
            if let Some(pair) = &state.pair {
                self.remember(pair);
            }
            state.loaded = true;
        }
        if state.unsaved {
            if let (Some(store), Some(pair)) = (&self.store, &state.pair) {
                store.save_token(&self.connection, pair).map_err(|e| self.store_error(e))?;
            }
            state.unsaved = false;
        }
        Ok(())
    }

    fn can_renew(&self, state: &TokenState) -> bool {
        let has_refresh = state.pair.as_ref().is_some_and(|p| p.refresh_token.is_some());
        self.token_url.is_some() && (has_refresh || (self.client_id.is_some() && self.client_secret.is_some()))
    }

    /// Get a new access token: the refresh-token grant when there is a refresh token, else the client-credentials
    /// grant (payhere.lk) when the connection has a client id and secret.
    async fn renew(&self, state: &mut TokenState) -> Result<(), AuthError> {
        let refresh_token = state.pair.as_ref().and_then(|p| p.refresh_token.clone());
        let Some(token_url) = self.token_url.clone() else {
            return Err(self.token_error(None, None, "the connector declares no token_url to refresh it at".into()));
        };
        let client_id = self.client_id.clone().transpose()?;
        let client_secret = self.client_secret.clone().transpose()?;
        let mut headers = vec![
            ("Content-Type".to_string(), "application/x-www-form-urlencoded".to_string()),
            ("Accept".to_string(), "application/json".to_string()),
        ];
        let form = match (&refresh_token, &client_id, &client_secret) {
            // GHL's documented form (POST /oauth/token): credentials in the body.
            (Some(refresh), Some(id), Some(secret)) => form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh),
                ("client_id", id),
                ("client_secret", secret),
            ]),
            (Some(_), _, _) => {
                let key = if client_id.is_none() { "auth.client_id" } else { "auth.client_secret" };
                return Err(SecretError::unconfigured(&self.connection, key).into());
            }
            // Client credentials: RFC 6749 §2.3.1 makes HTTP Basic the client authentication every server takes.
            (None, Some(id), Some(secret)) => {
                headers.push(("Authorization".into(), format!("Basic {}", secrets::basic_token(id, secret))));
                form(&[("grant_type", "client_credentials")])
            }
            (None, _, _) => {
                return Err(self.token_error(
                    None,
                    None,
                    "there is no OAuth token: set `auth.refresh_token` (from the app's install) or `auth.token`".into(),
                ))
            }
        };
        let req = RequestSpec {
            connection: self.connection.clone(),
            operation: format!("{}.oauth.token", self.connection),
            method: "POST".into(),
            base_url: token_url.clone(),
            path: String::new(),
            query: vec![],
            headers,
            body: Some(Value::String(form)),
        };
        let resp = self
            .transport
            .send(&req)
            .await
            .map_err(|e| self.token_error(None, None, format!("the token endpoint {token_url} failed: {e}")))?;
        if !resp.is_success() {
            let mut body = resp.body.clone();
            self.redactor.redact_json(&mut body);
            let detail = crate::engine::call::excerpt(&body);
            return Err(self.token_error(
                Some(resp.status),
                Some(body),
                format!("the token endpoint {token_url} answered HTTP {}: {detail}", resp.status),
            ));
        }
        let pair = parse_token(&resp.body, refresh_token).ok_or_else(|| {
            self.token_error(Some(resp.status), None, format!("the token endpoint {token_url} sent no access_token"))
        })?;
        self.remember(&pair);
        state.pair = Some(pair);
        // Saved before it is used: GHL has already invalidated the old refresh token, so a pair that only lives
        // in memory would be lost with the process.
        if let (Some(store), Some(pair)) = (&self.store, &state.pair) {
            if let Err(e) = store.save_token(&self.connection, pair) {
                state.unsaved = true;
                return Err(self.store_error(e));
            }
        }
        Ok(())
    }

    fn remember(&self, pair: &TokenPair) {
        self.redactor.add(&pair.access_token);
        if let Some(r) = &pair.refresh_token {
            self.redactor.add(r);
        }
    }

    fn token_error(&self, status: Option<u16>, body: Option<Value>, detail: String) -> AuthError {
        let message = self.redactor.redact(&format!("connection `{}`: OAuth: {detail}", self.connection));
        AuthError::Token { status, body, message }
    }

    fn store_error(&self, e: impl fmt::Display) -> AuthError {
        AuthError::Store { connection: self.connection.clone(), message: self.redactor.redact(&e.to_string()) }
    }
}

fn bearer(token: String) -> Authorization {
    Authorization {
        headers: vec![("Authorization".into(), format!("Bearer {token}"))],
        base_url: None,
        access_token: Some(token),
    }
}

fn expires_soon(pair: &TokenPair) -> bool {
    pair.access_token.is_empty()
        || pair.expires_at.is_some_and(|at| at - EXPIRY_SKEW_SECS <= chrono::Utc::now().timestamp())
}

fn form(pairs: &[(&str, &str)]) -> String {
    pairs.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect::<Vec<_>>().join("&")
}

/// A token endpoint's JSON answer. A missing `refresh_token` means the old one stays valid.
fn parse_token(body: &Value, previous_refresh: Option<String>) -> Option<TokenPair> {
    let access_token = body.get("access_token")?.as_str()?.to_string();
    let expires_in = body
        .get("expires_in")
        .and_then(|v| v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)).or_else(|| v.as_str()?.parse().ok()));
    Some(TokenPair {
        access_token,
        refresh_token: body.get("refresh_token").and_then(Value::as_str).map(str::to_string).or(previous_refresh),
        expires_at: expires_in.map(|s| chrono::Utc::now().timestamp() + s),
        scope: body.get("scope").and_then(Value::as_str).map(str::to_string),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_answer_keeps_the_old_refresh_token_when_none_is_sent() {
        let pair =
            parse_token(&serde_json::json!({"access_token": "a", "expires_in": "100"}), Some("r".into())).unwrap();
        assert_eq!(pair.refresh_token.as_deref(), Some("r"));
        assert!(pair.expires_at.unwrap() > chrono::Utc::now().timestamp() + 90);
        assert!(parse_token(&serde_json::json!({"error": "invalid_grant"}), None).is_none());
    }

    #[test]
    fn url_auth_replaces_the_endpoint() {
        let auth =
            Authorization { base_url: Some("https://hooks.example/services/T/B/X".into()), ..Default::default() };
        let mut req = RequestSpec {
            connection: "slack".into(),
            operation: "slack.webhook.post".into(),
            method: "POST".into(),
            base_url: String::new(),
            path: "/".into(),
            query: vec![],
            headers: vec![],
            body: None,
        };
        auth.apply(&mut req);
        assert_eq!(req.url(), "https://hooks.example/services/T/B/X");
    }
}
