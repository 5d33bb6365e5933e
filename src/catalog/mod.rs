//! The catalog: every connector's operations and webhook events, built once at start-up.
//!
//! Built-in connectors are embedded in the binary (see `build.rs`); a project adds its own by dropping a
//! folder with a `connector.yaml` next to `weft.yaml`, loaded the same way, with no recompile.

pub mod manifest;
pub mod openapi;
pub mod schema;
mod scopes;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use indexmap::IndexMap;
use serde_json::Value;

use crate::diag::{codes, Diagnostic, Sink};
use crate::dsl::{shape, yaml};
use crate::source::SourceFile;
pub use manifest::Manifest;
pub use openapi::{Operation, Param, ParamIn};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded_connectors.rs"));
}

/// One webhook event a connector sends.
#[derive(Clone, Debug)]
pub struct EventDef {
    pub name: String,
    pub description: String,
    pub schema: Option<Value>,
    pub example: Option<Value>,
    pub scopes: Vec<String>,
}

/// A loaded connector.
#[derive(Clone, Debug)]
pub struct Connector {
    pub name: String,
    pub manifest: Manifest,
    /// `built-in` or the folder it was loaded from.
    pub origin: String,
    /// API name → its operations.
    pub apis: IndexMap<String, Vec<Operation>>,
    pub events: IndexMap<String, EventDef>,
    /// Every scope the connector's table knows (empty when it has no scope table).
    pub known_scopes: Vec<String>,
    /// The PEM public key webhooks are verified with (rsa-sha256 signatures).
    pub webhook_public_key: Option<String>,
}

impl Connector {
    pub fn operations(&self) -> impl Iterator<Item = &Operation> {
        self.apis.values().flatten()
    }

    /// The pagination rule that applies to an operation: the first whose query parameters it declares.
    pub fn pagination_for(&self, op: &Operation) -> Option<&manifest::Pagination> {
        use manifest::PaginationStyle as S;
        let has = |name: &str| op.param(ParamIn::Query, name).is_some();
        self.manifest.pagination.iter().find(|rule| {
            has(&rule.limit)
                && match rule.style {
                    S::Offset => rule.offset.as_deref().is_some_and(has),
                    S::Page => rule.page.as_deref().is_some_and(has),
                    S::Cursor => rule.cursor.first().is_some_and(|c| has(c)),
                }
        })
    }
}

/// What a `call: connection.api.op` names, or why it names nothing.
pub enum Lookup<'a> {
    Found(&'a Operation),
    UnknownApi { known: Vec<&'a str> },
    UnknownOperation { known: Vec<&'a str> },
    Ambiguous(Vec<&'a Operation>),
}

/// All connectors.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    pub connectors: IndexMap<String, Connector>,
}

impl Catalog {
    /// The built-in connectors only.
    pub fn builtin() -> Result<Catalog, Vec<Diagnostic>> {
        let mut catalog = Catalog::default();
        let mut names: Vec<&str> = embedded::FILES
            .iter()
            .filter_map(|(p, _)| p.strip_suffix("/connector.yaml"))
            .filter(|p| !p.contains('/'))
            .collect();
        names.sort();
        let mut problems = Vec::new();
        for name in names {
            let files = Embedded { prefix: format!("{name}/") };
            match load_connector(&files, &format!("built-in:{name}")) {
                Ok(c) => {
                    catalog.connectors.insert(c.name.clone(), c);
                }
                Err(mut d) => problems.append(&mut d),
            }
        }
        if problems.is_empty() {
            Ok(catalog)
        } else {
            Err(problems)
        }
    }

    /// Load every connector folder (a directory holding `connector.yaml`) under `dir`. A folder whose
    /// connector has a built-in name replaces the built-in one. Problems are returned, good folders kept.
    pub fn add_dir(&mut self, dir: &Path) -> Vec<Diagnostic> {
        let mut problems = Vec::new();
        let Ok(entries) = std::fs::read_dir(dir) else {
            return problems;
        };
        let mut folders: Vec<PathBuf> =
            entries.flatten().map(|e| e.path()).filter(|p| p.join("connector.yaml").is_file()).collect();
        folders.sort();
        for folder in folders {
            let files = Folder { root: folder.clone() };
            match load_connector(&files, &folder.display().to_string()) {
                Ok(c) => {
                    self.connectors.insert(c.name.clone(), c);
                }
                Err(mut d) => problems.append(&mut d),
            }
        }
        problems
    }

    pub fn connector(&self, name: &str) -> Option<&Connector> {
        self.connectors.get(name)
    }

    pub fn operations(&self) -> impl Iterator<Item = &Operation> {
        self.connectors.values().flat_map(Connector::operations)
    }

    /// Resolve `api` + `op` (an operationId or `METHOD:/path`) in a connector.
    pub fn lookup<'a>(&'a self, connector: &'a Connector, api: &str, op: &str) -> Lookup<'a> {
        let Some(ops) = connector.apis.get(api) else {
            return Lookup::UnknownApi { known: connector.apis.keys().map(String::as_str).collect() };
        };
        let by_route: Vec<&Operation> = ops.iter().filter(|o| o.route() == op).collect();
        if by_route.len() == 1 {
            return Lookup::Found(by_route[0]);
        }
        let by_id: Vec<&Operation> = ops.iter().filter(|o| o.id == op).collect();
        match by_id.len() {
            0 => {
                let mut known: Vec<&str> = ops.iter().map(|o| o.id.as_str()).collect();
                known.dedup();
                Lookup::UnknownOperation { known }
            }
            1 => Lookup::Found(by_id[0]),
            _ => Lookup::Ambiguous(by_id),
        }
    }
}

/// Where a connector's files come from.
trait Files {
    fn read(&self, rel: &str) -> Result<(SourceFile, Vec<u8>), String>;
}

struct Embedded {
    prefix: String,
}

impl Files for Embedded {
    fn read(&self, rel: &str) -> Result<(SourceFile, Vec<u8>), String> {
        let full = format!("{}{}", self.prefix, rel.trim_start_matches("./"));
        let (_, bytes) =
            embedded::FILES.iter().find(|(p, _)| *p == full).ok_or_else(|| format!("`{full}` is not embedded"))?;
        let name = format!("connectors/{full}");
        Ok((SourceFile::new(&name, String::from_utf8_lossy(bytes).into_owned()), bytes.to_vec()))
    }
}

struct Folder {
    root: PathBuf,
}

impl Files for Folder {
    fn read(&self, rel: &str) -> Result<(SourceFile, Vec<u8>), String> {
        let path = self.root.join(rel);
        let bytes = std::fs::read(&path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
        Ok((SourceFile::new(&path, String::from_utf8_lossy(&bytes).into_owned()), bytes))
    }
}

fn load_connector(files: &dyn Files, origin: &str) -> Result<Connector, Vec<Diagnostic>> {
    let fail = |msg: String| vec![Diagnostic::error(codes::CONNECTOR_INVALID, format!("{origin}: {msg}"))];
    let (file, _) = files.read("connector.yaml").map_err(fail)?;
    let mut sink = Sink::new(&file);
    let root = match yaml::parse(&file) {
        Ok(Some(root)) => root,
        Ok(None) => return Err(fail("connector.yaml is empty".into())),
        Err(d) => return Err(d),
    };
    let json = shape::check(shape::Format::Connector, &root, &mut sink);
    if sink.has_errors() {
        return Err(sink.diagnostics);
    }
    let manifest: Manifest = serde_json::from_value(json).map_err(|e| fail(format!("connector.yaml: {e}")))?;
    let name = manifest.connector.clone();

    let scope_table = match &manifest.scopes {
        Some(rel) => {
            let (_, bytes) = files.read(rel).map_err(fail)?;
            scopes::Table::parse(&bytes).map_err(|e| fail(format!("{rel}: {e}")))?
        }
        None => scopes::Table::default(),
    };

    let mut apis = IndexMap::new();
    for (api, rel) in &manifest.apis {
        let (_, bytes) = files.read(rel).map_err(fail)?;
        let doc: Value = serde_json::from_slice(&bytes).map_err(|e| fail(format!("{rel}: not JSON: {e}")))?;
        let mut ops = openapi::operations(&name, api, Arc::new(doc)).map_err(|e| fail(format!("{rel}: {e}")))?;
        for op in &mut ops {
            op.scopes = scope_table.for_endpoint(&op.method, &op.path);
            if op.scopes.is_empty() {
                if let Some(inferred) = scope_table.infer_for_endpoint(&op.method, &op.path) {
                    op.scopes = vec![inferred];
                    op.scopes_inferred = true;
                }
            }
        }
        apis.insert(api.clone(), ops);
    }

    let mut events = IndexMap::new();
    if let Some(hooks) = &manifest.webhooks {
        for (event, def) in &hooks.events {
            let load_json = |rel: &Option<String>| -> Result<Option<Value>, Vec<Diagnostic>> {
                match rel {
                    None => Ok(None),
                    Some(rel) => {
                        let (_, bytes) = files.read(rel).map_err(fail)?;
                        serde_json::from_slice(&bytes).map(Some).map_err(|e| fail(format!("{rel}: not JSON: {e}")))
                    }
                }
            };
            events.insert(
                event.clone(),
                EventDef {
                    name: event.clone(),
                    description: def.description.clone(),
                    schema: load_json(&def.schema)?,
                    example: load_json(&def.example)?,
                    scopes: match scope_table.for_event(event) {
                        listed if listed.is_empty() => scope_table.infer_for_event(event),
                        listed => listed,
                    },
                },
            );
        }
    }

    let webhook_public_key = match manifest.webhooks.as_ref().and_then(|w| w.signature.public_key.as_ref()) {
        Some(rel) => Some(String::from_utf8_lossy(&files.read(rel).map_err(fail)?.1).into_owned()),
        None => None,
    };
    Ok(Connector {
        name,
        origin: origin.to_string(),
        known_scopes: scope_table.names(),
        webhook_public_key,
        manifest,
        apis,
        events,
    })
}
