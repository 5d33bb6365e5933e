//! The project a flow belongs to: its `weft.yaml` (checked here), its connections, and the catalog of
//! built-in plus project connectors. A flow with no project file gets one implicit connection per
//! built-in connector, named after it, with no declared scopes (so scope checks are skipped).

use std::path::Path;

use indexmap::IndexMap;

use super::builtin_catalog;
use crate::catalog::manifest::AuthScheme;
use crate::catalog::Catalog;
use crate::diag::{codes, suggest, Diagnostic, Sink};
use crate::dsl::project::{Connection, ConnectionAuth, Project, SecretRef};
use crate::dsl::yaml::Node;
use crate::dsl::{load, shape};
use crate::source::SourceFile;

/// What a flow may know about one connection.
#[derive(Clone, Debug)]
pub struct ConnectionInfo {
    pub connector: String,
    /// Declared scopes; `None` when the project does not declare any (no scope check).
    pub scopes: Option<Vec<String>>,
    pub config: Option<Connection>,
}

/// A loaded project: connections, catalog and the project file's own diagnostics.
#[derive(Debug)]
pub struct ProjectContext {
    pub file: Option<SourceFile>,
    pub project: Project,
    pub connections: IndexMap<String, ConnectionInfo>,
    pub catalog: Catalog,
    pub diagnostics: Vec<Diagnostic>,
}

impl ProjectContext {
    /// The context of flows with no weft.yaml.
    pub fn implicit() -> ProjectContext {
        let (catalog, diagnostics) = match builtin_catalog() {
            Ok(c) => (c.clone(), Vec::new()),
            Err(d) => (Catalog::default(), d.to_vec()),
        };
        let connections = catalog
            .connectors
            .keys()
            .map(|name| (name.clone(), ConnectionInfo { connector: name.clone(), scopes: None, config: None }))
            .collect();
        ProjectContext { file: None, project: Project::default(), connections, catalog, diagnostics }
    }

    /// Load and check a project file (or the implicit project when `path` is `None`).
    pub fn load(path: Option<&Path>) -> ProjectContext {
        let Some(path) = path else {
            return ProjectContext::implicit();
        };
        match load::read(path) {
            Ok(file) => ProjectContext::from_file(&file, path.parent()),
            Err(d) => {
                let mut ctx = ProjectContext::implicit();
                ctx.connections.clear();
                ctx.diagnostics.push(d);
                ctx
            }
        }
    }

    /// A project file given as text, resolved against the built-ins only (tests and benchmarks).
    pub fn from_source(file: &SourceFile) -> ProjectContext {
        ProjectContext::from_file(file, None)
    }

    /// Check a project file; with `base`, also load the connector folders beside it.
    fn from_file(file: &SourceFile, base: Option<&Path>) -> ProjectContext {
        let mut ctx = ProjectContext::implicit();
        ctx.connections.clear();
        ctx.file = Some(file.clone());
        // Project connectors first, so that the connections below can name them.
        if let Some(base) = base {
            ctx.diagnostics.extend(ctx.catalog.add_dir(&base.join("connectors")));
        }
        let root = match load::parse(file) {
            Ok(r) => r,
            Err(d) => {
                ctx.diagnostics.extend(d);
                return ctx;
            }
        };
        let mut sink = Sink::new(file);
        let json = shape::check(shape::Format::Project, &root, &mut sink);
        let project = match serde_json::from_value::<Project>(json.clone()) {
            Ok(project) => project,
            // One bad connection must not hide the others from every flow: keep each that still reads.
            Err(_) => Project {
                connections: json
                    .get("connections")
                    .and_then(serde_json::Value::as_object)
                    .map(|conns| {
                        conns.iter().filter_map(|(name, c)| Some((name.clone(), lenient_connection(c)?))).collect()
                    })
                    .unwrap_or_default(),
                ..Project::default()
            },
        };
        if let Some(base) = base {
            for extra in &project.connectors {
                sink.diagnostics.extend(ctx.catalog.add_dir(&base.join(extra)));
            }
        }
        check(&root, &project, &ctx.catalog, &mut sink);
        for (name, conn) in &project.connections {
            let info = ConnectionInfo {
                connector: conn.connector.clone(),
                scopes: conn.scopes.clone(),
                config: Some(conn.clone()),
            };
            ctx.connections.insert(name.clone(), info);
        }
        ctx.project = project;
        ctx.diagnostics.extend(sink.diagnostics);
        ctx
    }
}

/// A connection whose credentials are malformed (already reported) still names its connector and scopes.
fn lenient_connection(value: &serde_json::Value) -> Option<Connection> {
    serde_json::from_value(value.clone()).ok().or_else(|| {
        let mut stripped = value.clone();
        let map = stripped.as_object_mut()?;
        // Keep the (reported) broken credentials out of the model but remember they were given.
        let had_auth = map.remove("auth").is_some();
        map.remove("webhook_secret");
        map.remove("webhook_public_key");
        let mut conn: Connection = serde_json::from_value(stripped).ok()?;
        if had_auth {
            conn.auth = Some(ConnectionAuth { malformed: true, ..ConnectionAuth::default() });
        }
        Some(conn)
    })
}

/// Meaning checks of weft.yaml: connectors exist, auth fits the scheme, scopes are known.
fn check(root: &Node, project: &Project, catalog: &Catalog, sink: &mut Sink) {
    for (name, conn) in &project.connections {
        let at = |rest: &str| root.at_pointer(&format!("/connections/{name}{rest}")).0.span;
        let Some(connector) = catalog.connector(&conn.connector) else {
            let known: Vec<&str> = catalog.connectors.keys().map(String::as_str).collect();
            sink.error(
                codes::PROJECT_UNKNOWN_CONNECTOR,
                at("/connector"),
                format!("connection `{name}` uses connector `{}`, which does not exist", conn.connector),
                "unknown connector",
            )
            .help = Some(format!(
                "{}; or add `connectors/{}/connector.yaml` next to weft.yaml",
                suggest(&conn.connector, known),
                conn.connector
            ));
            continue;
        };
        let auth = conn.auth.clone().unwrap_or_default();
        let needed: &[(&str, bool)] = match connector.manifest.auth.scheme {
            AuthScheme::None => &[],
            AuthScheme::Bearer => &[("token", auth.token.is_some())],
            AuthScheme::Basic => &[("username", auth.username.is_some()), ("password", auth.password.is_some())],
            AuthScheme::Header => &[("api_key", auth.api_key.is_some())],
            // OAuth apps also take a ready access token (GHL private integration tokens).
            AuthScheme::Oauth2 if auth.token.is_some() => &[],
            AuthScheme::Oauth2 => {
                &[("client_id", auth.client_id.is_some()), ("client_secret", auth.client_secret.is_some())]
            }
            AuthScheme::Url => &[("url", auth.url.is_some())],
        };
        let missing: Vec<&str> = if auth.malformed {
            Vec::new() // already reported by the shape check
        } else {
            needed.iter().filter(|(_, present)| !present).map(|(k, _)| *k).collect()
        };
        // A bearer connector may also be used with OAuth (GHL): client credentials stand in for a token.
        let oauth_instead = connector.manifest.auth.scheme == AuthScheme::Bearer
            && auth.client_id.is_some()
            && auth.client_secret.is_some();
        let optional = connector.manifest.auth.optional && conn.auth.is_none();
        if !missing.is_empty() && !oauth_instead && !optional {
            let keys: Vec<String> = missing.iter().map(|k| format!("`{k}`")).collect();
            let example = format!(
                "auth: {{ {}: {{ env: {}_{} }} }}",
                missing[0],
                name.to_uppercase().replace('-', "_"),
                missing[0].to_uppercase()
            );
            sink.error(
                codes::PROJECT_AUTH,
                at(if conn.auth.is_some() { "/auth" } else { "" }),
                format!(
                    "connection `{name}` uses `{}` auth and needs {}",
                    scheme_name(connector.manifest.auth.scheme),
                    keys.join(" and ")
                ),
                "credentials missing",
            )
            .help = Some(format!("add e.g. `{example}`"));
        }
        for (key, secret) in secret_refs(conn) {
            if secret.env.is_some() == secret.file.is_some() {
                sink.error(
                    codes::PROJECT_AUTH,
                    at(&key),
                    "a secret reference needs exactly one of `env` or `file`",
                    "here",
                )
                .help = Some("write `{ env: NAME }` or `{ file: path }`".into());
            }
        }
        if let (Some(scopes), false) = (&conn.scopes, connector.known_scopes.is_empty()) {
            for (i, scope) in scopes.iter().enumerate() {
                if !connector.known_scopes.contains(scope) {
                    sink.error(
                        codes::PROJECT_UNKNOWN_SCOPE,
                        at(&format!("/scopes/{i}")),
                        format!("`{scope}` is not a {} scope", connector.name),
                        "unknown scope",
                    )
                    .help = Some(suggest(scope, connector.known_scopes.iter().map(String::as_str)));
                }
            }
        }
    }
}

fn secret_refs(conn: &Connection) -> Vec<(String, &SecretRef)> {
    let mut out = Vec::new();
    if let Some(a) = &conn.auth {
        let slots = [
            ("token", &a.token),
            ("username", &a.username),
            ("password", &a.password),
            ("api_key", &a.api_key),
            ("client_id", &a.client_id),
            ("client_secret", &a.client_secret),
            ("refresh_token", &a.refresh_token),
            ("url", &a.url),
        ];
        for (k, v) in slots {
            if let Some(s) = v {
                out.push((format!("/auth/{k}"), s));
            }
        }
    }
    if let Some(s) = &conn.webhook_secret {
        out.push(("/webhook_secret".to_string(), s));
    }
    if let Some(s) = &conn.webhook_public_key {
        out.push(("/webhook_public_key".to_string(), s));
    }
    out
}

fn scheme_name(scheme: AuthScheme) -> &'static str {
    match scheme {
        AuthScheme::None => "none",
        AuthScheme::Bearer => "bearer",
        AuthScheme::Basic => "basic",
        AuthScheme::Header => "header",
        AuthScheme::Oauth2 => "oauth2",
        AuthScheme::Url => "url",
    }
}
