//! The run context a mapping reads: `{trigger, event, vars, connections, steps, item, index}`.
//!
//! Each part is an `Arc<serde_json::Value>` so a step's outputs are shared, not copied, and templates see
//! JSON through [`JsonRef`], a lazy minijinja object: a template that reads one field of a 2 KB event
//! converts that field, not the event.

use std::sync::Arc;

use indexmap::IndexMap;
use minijinja::value::{Enumerator, Object, ObjectRepr, Value as MjValue};
use serde_json::Value;

/// Everything paths and templates may read during one run (or one `for_each` element).
#[derive(Clone, Debug, Default)]
pub struct Context {
    pub trigger: Arc<Value>,
    pub event: Arc<Value>,
    pub vars: Arc<Value>,
    pub connections: Arc<Value>,
    pub steps: IndexMap<String, Arc<Value>>,
    /// Inside `for_each`: the element and its position.
    pub item: Option<(Arc<Value>, usize)>,
}

impl Context {
    /// A root's value by name (`steps` needs the step id: see [`Context::step`]).
    pub fn root(&self, name: &str) -> Option<&Value> {
        match name {
            "trigger" => Some(&self.trigger),
            "event" => Some(&self.event),
            "vars" => Some(&self.vars),
            "connections" => Some(&self.connections),
            "item" => self.item.as_ref().map(|(v, _)| v.as_ref()),
            _ => None,
        }
    }

    pub fn step(&self, id: &str) -> Option<&Value> {
        self.steps.get(id).map(|v| v.as_ref())
    }

    /// The whole context as one JSON document, for the rare path that reads across roots (`$..id`).
    pub fn materialize(&self) -> Value {
        let mut root = serde_json::Map::new();
        root.insert("trigger".into(), (*self.trigger).clone());
        root.insert("event".into(), (*self.event).clone());
        root.insert("vars".into(), (*self.vars).clone());
        root.insert("connections".into(), (*self.connections).clone());
        root.insert(
            "steps".into(),
            Value::Object(self.steps.iter().map(|(k, v)| (k.clone(), (**v).clone())).collect()),
        );
        if let Some((item, index)) = &self.item {
            root.insert("item".into(), (**item).clone());
            root.insert("index".into(), Value::from(*index));
        }
        Value::Object(root)
    }

    /// The context as the root object templates render against.
    pub fn template_root(self: &Arc<Self>) -> MjValue {
        MjValue::from_object(ContextObject(self.clone()))
    }
}

#[derive(Debug)]
struct ContextObject(Arc<Context>);

impl Object for ContextObject {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &MjValue) -> Option<MjValue> {
        let ctx = &self.0;
        match key.as_str()? {
            "trigger" => Some(JsonRef::wrap(&ctx.trigger)),
            "event" => Some(JsonRef::wrap(&ctx.event)),
            "vars" => Some(JsonRef::wrap(&ctx.vars)),
            "connections" => Some(JsonRef::wrap(&ctx.connections)),
            "steps" => Some(MjValue::from_object(StepsObject(ctx.clone()))),
            "item" => ctx.item.as_ref().map(|(v, _)| JsonRef::wrap(v)),
            "index" => ctx.item.as_ref().map(|(_, i)| MjValue::from(*i)),
            _ => None,
        }
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Str(&["trigger", "event", "vars", "connections", "steps", "item", "index"])
    }
}

#[derive(Debug)]
struct StepsObject(Arc<Context>);

impl Object for StepsObject {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &MjValue) -> Option<MjValue> {
        self.0.steps.get(key.as_str()?).map(JsonRef::wrap)
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        let keys: Vec<MjValue> = self.0.steps.keys().map(|k| MjValue::from(k.as_str())).collect();
        Enumerator::Values(keys)
    }
}

/// A JSON node inside a shared document, seen by minijinja as a map or a list without copying it.
///
/// It holds the document's `Arc` and a pointer to the node: reading `trigger.payload.payment.entity.amount`
/// walks four nodes once, with no path to clone and no lookups repeated from the root. That walk is the hot
/// loop of `weft map` (see benches/MAPPING_RESULTS.md).
#[derive(Debug)]
pub struct JsonRef {
    root: Arc<Value>,
    node: std::ptr::NonNull<Value>,
}

// SAFETY: `node` points into the tree owned by `root`. The tree is behind an `Arc` and never mutated (serde_json
// values have no interior mutability and nothing hands out `&mut` to an `Arc`'s shared contents), so the node
// lives and stays unchanged as long as `root` does, and `&Value` is `Send + Sync`.
unsafe impl Send for JsonRef {}
unsafe impl Sync for JsonRef {}

impl JsonRef {
    /// Scalars become minijinja values directly; objects and arrays become lazy references.
    pub fn wrap(root: &Arc<Value>) -> MjValue {
        JsonRef::child(root, root)
    }

    /// `node` must be inside `root`'s tree.
    fn child(root: &Arc<Value>, node: &Value) -> MjValue {
        match node {
            Value::Object(_) | Value::Array(_) => {
                MjValue::from_object(JsonRef { root: root.clone(), node: std::ptr::NonNull::from(node) })
            }
            v => scalar(v),
        }
    }

    fn node(&self) -> &Value {
        // SAFETY: see the `Send`/`Sync` impls: the pointee is owned by `self.root` and immutable.
        unsafe { self.node.as_ref() }
    }
}

pub fn scalar(v: &Value) -> MjValue {
    match v {
        Value::Null => MjValue::from(()),
        Value::Bool(b) => MjValue::from(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                MjValue::from(i)
            } else if let Some(u) = n.as_u64() {
                MjValue::from(u)
            } else {
                MjValue::from(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Value::String(s) => MjValue::from(s.as_str()),
        // Objects and arrays are wrapped by `JsonRef::child`, never passed here.
        Value::Array(_) | Value::Object(_) => MjValue::UNDEFINED,
    }
}

impl Object for JsonRef {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        match self.node() {
            Value::Array(_) => ObjectRepr::Seq,
            _ => ObjectRepr::Map,
        }
    }

    fn get_value(self: &Arc<Self>, key: &MjValue) -> Option<MjValue> {
        let child = match self.node() {
            Value::Array(items) => {
                let i = key.as_i64()?;
                // Negative indexes count from the end, as in Python and JSONPath.
                let i = if i < 0 { items.len() as i64 + i } else { i };
                items.get(usize::try_from(i).ok()?)?
            }
            Value::Object(map) => map.get(key.as_str()?)?,
            _ => return None,
        };
        Some(JsonRef::child(&self.root, child))
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        match self.node() {
            Value::Array(items) => Enumerator::Seq(items.len()),
            Value::Object(map) => Enumerator::Values(map.keys().map(|k| MjValue::from(k.as_str())).collect()),
            _ => Enumerator::Empty,
        }
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        match self.node() {
            Value::Array(items) => Some(items.len()),
            Value::Object(map) => Some(map.len()),
            _ => None,
        }
    }
}
