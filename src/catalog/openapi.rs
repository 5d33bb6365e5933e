//! OpenAPI 3 documents → [`Operation`]s: method, path, parameters, request body schema.
//!
//! Only what weft checks and calls is extracted; schemas stay as JSON and are navigated lazily through
//! [`super::schema`], following local `$ref`s into the document they came from.

use std::sync::Arc;

use serde_json::Value;

/// Where a parameter goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamIn {
    Path,
    Query,
    Header,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Param {
    pub name: String,
    #[serde(rename = "in")]
    pub location: ParamIn,
    pub required: bool,
    #[serde(skip)]
    pub schema: Value,
}

/// One operation of one API of one connector.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Operation {
    pub connector: String,
    pub api: String,
    /// The OpenAPI operationId; `METHOD:/path` when the document gives none.
    pub id: String,
    pub method: String,
    pub path: String,
    pub summary: String,
    pub params: Vec<Param>,
    #[serde(skip)]
    pub body: Option<Value>,
    pub body_required: bool,
    /// The success response schema (2xx), for checking later steps' references.
    #[serde(skip)]
    pub response: Option<Value>,
    /// Scopes that grant this operation (any one of them suffices).
    pub scopes: Vec<String>,
    /// Whether `scopes` was inferred from the path's resource because the scope table does not list it.
    pub scopes_inferred: bool,
    /// False when the id is shared with another operation of the API or is not a plain name (GHL's
    /// documents have both): the operation is then addressed by `METHOD:/path`.
    pub addressable: bool,
    /// The document the schemas' `$ref`s resolve in.
    #[serde(skip)]
    pub doc: Arc<Value>,
}

impl Operation {
    /// `ghl.contacts.get-contact`: how flows address it.
    pub fn qualified(&self) -> String {
        format!("{}.{}.{}", self.connector, self.api, self.id)
    }

    /// How messages and `weft catalog` name it: by id when that is unique, else by route.
    pub fn display_name(&self) -> String {
        if self.addressable {
            self.qualified()
        } else {
            self.qualified_by_route()
        }
    }

    /// `ghl.payments.POST:/payments/...`: the address that is unique even when the id is not.
    pub fn qualified_by_route(&self) -> String {
        format!("{}.{}.{}", self.connector, self.api, self.route())
    }

    pub fn route(&self) -> String {
        format!("{}:{}", self.method, self.path)
    }

    pub fn path_params(&self) -> impl Iterator<Item = &str> {
        path_placeholders(&self.path)
    }

    pub fn param(&self, location: ParamIn, name: &str) -> Option<&Param> {
        self.params.iter().find(|p| p.location == location && p.name == name)
    }

    /// Body fields marked required, for `weft catalog`.
    pub fn required_body_fields(&self) -> Vec<String> {
        self.body.as_ref().map(|b| super::schema::Shape::of(&self.doc, b).required).unwrap_or_default()
    }
}

/// The `{name}` placeholders of a path template.
pub fn path_placeholders(path: &str) -> impl Iterator<Item = &str> {
    path.split('{').skip(1).filter_map(|s| s.split_once('}').map(|(name, _)| name))
}

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// Headers the runtime sets itself; an OpenAPI document that lists them as parameters is not asking the flow.
const RUNTIME_HEADERS: [&str; 3] = ["authorization", "version", "content-type"];

/// Read every operation of a document. Errors are messages about the document, not panics.
pub fn operations(connector: &str, api: &str, doc: Arc<Value>) -> Result<Vec<Operation>, String> {
    let paths = doc.get("paths").and_then(Value::as_object).ok_or("the document has no `paths` object")?;
    let mut ops = Vec::new();
    for (path, item) in paths {
        let shared = item.get("parameters").and_then(Value::as_array).cloned().unwrap_or_default();
        for method in METHODS {
            let Some(op) = item.get(method) else { continue };
            let route = format!("{}:{path}", method.to_uppercase());
            let id = op.get("operationId").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| route.clone());
            let mut params: Vec<Param> = Vec::new();
            let own = op.get("parameters").and_then(Value::as_array).cloned().unwrap_or_default();
            // Operation-level parameters override path-level ones of the same name and place.
            for raw in shared.iter().chain(own.iter()) {
                let p = super::schema::deref(&doc, raw);
                let Some(name) = p.get("name").and_then(Value::as_str) else {
                    continue;
                };
                let location = match p.get("in").and_then(Value::as_str) {
                    Some("path") => ParamIn::Path,
                    Some("query") => ParamIn::Query,
                    Some("header") if !RUNTIME_HEADERS.contains(&name.to_ascii_lowercase().as_str()) => ParamIn::Header,
                    _ => continue,
                };
                let param = Param {
                    name: name.to_string(),
                    location,
                    required: location == ParamIn::Path || p.get("required").and_then(Value::as_bool).unwrap_or(false),
                    schema: param_schema(p),
                };
                params.retain(|q| !(q.name == param.name && q.location == param.location));
                params.push(param);
            }
            // Some official documents use a `{placeholder}` without declaring it (GHL calendars'
            // `{noteId}`, locations' `{locationId}/timezones`); the server still needs it, so it is required.
            for name in path_placeholders(path) {
                if !params.iter().any(|p| p.location == ParamIn::Path && p.name == name) {
                    params.push(Param {
                        name: name.to_string(),
                        location: ParamIn::Path,
                        required: true,
                        schema: serde_json::json!({"type": "string"}),
                    });
                }
            }
            let body = op.get("requestBody").map(|b| super::schema::deref(&doc, b));
            let body_schema = body.and_then(|b| b.get("content")).and_then(Value::as_object).and_then(|c| {
                c.get("application/json").or_else(|| c.values().next()).and_then(|m| m.get("schema")).cloned()
            });
            let response = op.get("responses").and_then(Value::as_object).and_then(|r| {
                r.iter()
                    .find(|(code, _)| code.starts_with('2'))
                    .map(|(_, resp)| super::schema::deref(&doc, resp))
                    .and_then(|resp| resp.get("content"))
                    .and_then(|c| c.get("application/json"))
                    .and_then(|m| m.get("schema"))
                    .cloned()
            });
            ops.push(Operation {
                connector: connector.to_string(),
                api: api.to_string(),
                id,
                method: method.to_uppercase(),
                path: path.clone(),
                summary: op.get("summary").and_then(Value::as_str).unwrap_or_default().to_string(),
                params,
                body_required: body_schema.is_some()
                    && body.and_then(|b| b.get("required")).and_then(Value::as_bool).unwrap_or(false),
                body: body_schema,
                response,
                scopes: Vec::new(),
                scopes_inferred: false,
                addressable: true,
                doc: doc.clone(),
            });
        }
    }
    let ids: Vec<String> = ops.iter().map(|o| o.id.clone()).collect();
    for op in &mut ops {
        let shared = ids.iter().filter(|id| **id == op.id).count() > 1;
        op.addressable = !shared && !op.id.contains(char::is_whitespace);
    }
    Ok(ops)
}

/// A parameter's schema, carrying the parameter's own `description` when the schema has none (OpenAPI puts
/// it beside the schema): the validator quotes it in its help.
fn param_schema(param: &Value) -> Value {
    let mut schema = param.get("schema").cloned().unwrap_or(Value::Null);
    if let (Value::Object(map), Some(text)) = (&mut schema, param.get("description").and_then(Value::as_str)) {
        map.entry("description").or_insert_with(|| Value::String(text.to_string()));
    }
    schema
}
