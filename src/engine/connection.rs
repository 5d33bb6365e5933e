//! What the runtime knows about one connection: the connector's declarations merged with the project's
//! `weft.yaml` entry. Built once per process from a validated project.

use std::path::{Path, PathBuf};

use indexmap::IndexMap;

use crate::catalog::manifest::{AuthScheme, RateLimit};
use crate::catalog::Catalog;
use crate::dsl::project::{Connection, ConnectionAuth};

/// A connection ready to send through.
#[derive(Clone, Debug)]
pub struct ConnectionRuntime {
    pub name: String,
    pub connector: String,
    /// The connection's `base_url`, else the connector's (no trailing slash).
    pub base_url: String,
    pub auth_scheme: AuthScheme,
    /// Secret references only; resolved when a request is sent.
    pub auth: ConnectionAuth,
    /// With `header` auth: the header that carries the key (connection's choice, else the connector's).
    pub auth_header: Option<String>,
    /// OAuth 2 token endpoint.
    pub token_url: Option<String>,
    /// Fixed headers of the connector (GHL's `Version`).
    pub headers: Vec<(String, String)>,
    /// The effective rate limit: the connection's override, else the connector's.
    pub rate_limit: Option<RateLimit>,
    pub retry_statuses: Vec<u16>,
    pub idempotency_header: Option<String>,
    pub location_id: Option<String>,
    /// Where `file:` secrets are relative to (the directory of weft.yaml).
    pub base_dir: PathBuf,
}

/// The runtime view of every connection of a project (connections whose connector is unknown are left out:
/// validation reports them).
pub fn from_project(ctx: &crate::validate::ProjectContext) -> IndexMap<String, ConnectionRuntime> {
    let base = ctx.file.as_ref().and_then(|f| f.path().parent().map(Path::to_path_buf)).unwrap_or_default();
    ctx.connections
        .iter()
        .filter_map(|(name, info)| {
            Some((
                name.clone(),
                ConnectionRuntime::build(name, info.config.as_ref(), &info.connector, &ctx.catalog, &base)?,
            ))
        })
        .collect()
}

impl ConnectionRuntime {
    /// Merge a project connection with its connector. `None` when the connector does not exist (reported by
    /// validation).
    pub fn build(
        name: &str,
        conn: Option<&Connection>,
        connector: &str,
        catalog: &Catalog,
        base_dir: &Path,
    ) -> Option<Self> {
        let c = catalog.connector(connector)?;
        let m = &c.manifest;
        let base_url = conn
            .and_then(|c| c.base_url.clone())
            .or_else(|| m.base_url.clone())
            .unwrap_or_default()
            .trim_end_matches('/')
            .to_string();
        let auth = conn.and_then(|c| c.auth.clone()).unwrap_or_default();
        Some(ConnectionRuntime {
            name: name.to_string(),
            connector: connector.to_string(),
            base_url,
            auth_scheme: m.auth.scheme,
            auth_header: auth.header.clone().or_else(|| m.auth.header.clone()),
            auth,
            // A connection pointed elsewhere (a sandbox, a proxy) refreshes tokens there too, not at the real app.
            token_url: m.auth.token_url.as_ref().map(|url| {
                match (&m.base_url, conn.and_then(|c| c.base_url.as_ref())) {
                    (Some(default), Some(own)) if url.starts_with(default.trim_end_matches('/')) => {
                        format!("{}{}", own.trim_end_matches('/'), &url[default.trim_end_matches('/').len()..])
                    }
                    _ => url.clone(),
                }
            }),
            headers: m.headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            rate_limit: conn.and_then(|c| c.rate_limit.clone()).or_else(|| m.rate_limit.clone()),
            retry_statuses: if m.retry_statuses.is_empty() {
                vec![429, 500, 502, 503, 504]
            } else {
                m.retry_statuses.clone()
            },
            idempotency_header: m.idempotency_header.clone(),
            location_id: conn.and_then(|c| c.location_id.clone()),
            base_dir: base_dir.to_path_buf(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_with_its_own_base_url_refreshes_tokens_there() {
        let catalog = Catalog::builtin().expect("catalog");
        let conn: Connection =
            serde_json::from_value(serde_json::json!({"connector": "ghl", "base_url": "http://127.0.0.1:8090/ghl"}))
                .unwrap();
        let rt = ConnectionRuntime::build("ghl", Some(&conn), "ghl", &catalog, Path::new(".")).unwrap();
        assert_eq!(rt.base_url, "http://127.0.0.1:8090/ghl");
        assert_eq!(rt.token_url.as_deref(), Some("http://127.0.0.1:8090/ghl/oauth/token"));
        let plain = ConnectionRuntime::build("ghl", None, "ghl", &catalog, Path::new(".")).unwrap();
        assert_eq!(plain.token_url.as_deref(), Some("https://services.leadconnectorhq.com/oauth/token"));
    }
}
