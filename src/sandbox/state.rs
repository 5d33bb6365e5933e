//! The sandbox's memory: every record the fakes keep, in insertion order, keyed by id, plus the id and clock
//! helpers that make records look like the real ones.
//!
//! Records are plain JSON objects in the upstream's own field names, so what `GET /_sandbox/state` shows is what
//! the API returns. The seed file has the same layout as that state (a dump is a valid seed), with each
//! collection given as a list or as an object keyed by id; missing ids and bookkeeping fields are filled in.

use std::collections::HashMap;

use indexmap::IndexMap;
use serde::Serialize;
use serde_json::{json, Map, Value};

use super::faults::Xorshift;
use super::webhooks::Event;

/// The location seeded records belong to when the seed names none (GHL location ids are 20 alphanumerics).
pub const DEFAULT_LOCATION: &str = "sandboxLocation00001";

/// The custom field every location starts with: the lead score the shipped Razorpay flows write.
pub const LEAD_SCORE_KEY: &str = "contact.lead_score";

/// A map of records keyed by id.
pub type Records = IndexMap<String, Value>;

#[derive(Debug, Serialize)]
pub struct State {
    pub ghl: Ghl,
    pub razorpay: Razorpay,
    pub payhere: Payhere,
    #[serde(skip)]
    pub rng: Xorshift,
    /// What the last request changed, as the apps' webhook events; the caller takes them ([`super::webhooks`]).
    #[serde(skip)]
    pub events: Vec<Event>,
}

#[derive(Debug, Default, Serialize)]
pub struct Ghl {
    /// Where seeded records without a `locationId`/`altId` live.
    pub location_id: String,
    /// In creation order (a seed's order first), which is the order `GET /contacts/` pages through. Add and
    /// remove contacts with [`State::put_contact`] and [`State::remove_contact`], which keep the counts below.
    pub contacts: Records,
    /// Contacts per location: a page's `meta.total` without counting 20,000 contacts on every page.
    #[serde(skip)]
    pub contacts_per_location: HashMap<String, usize>,
    /// Notes and tasks carry their `contactId`; a contact's tags live on the contact.
    pub notes: Records,
    pub tasks: Records,
    pub custom_fields: Records,
    pub orders: Records,
    pub fulfillments: Records,
    pub transactions: Records,
    pub subscriptions: Records,
    pub invoices: Records,
}

#[derive(Debug, Default, Serialize)]
pub struct Razorpay {
    pub payments: Records,
}

#[derive(Debug, Default, Serialize)]
pub struct Payhere {
    pub customers: Records,
}

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

impl State {
    /// The state a seed describes (`None`: empty but for each location's lead-score field).
    pub fn from_seed(seed: Option<&Value>) -> Result<State, String> {
        let mut state = State {
            ghl: Ghl { location_id: DEFAULT_LOCATION.to_string(), ..Ghl::default() },
            razorpay: Razorpay::default(),
            payhere: Payhere::default(),
            rng: Xorshift::from_clock(),
            events: Vec::new(),
        };
        let empty = Map::new();
        let top = match seed {
            None | Some(Value::Null) => &empty,
            Some(Value::Object(top)) => top,
            Some(_) => return Err("the seed must be a mapping with `ghl`, `razorpay` and/or `payhere`".into()),
        };
        // The home location first: records listed before it in the file still belong to it.
        match top.get("ghl").and_then(|g| g.get("location_id")) {
            None => {}
            Some(Value::String(home)) => state.ghl.location_id = home.clone(),
            Some(_) => return Err("seed `ghl.location_id` must be a string".into()),
        }
        for (section, value) in top {
            let fields = value.as_object().ok_or_else(|| format!("seed `{section}` must be a mapping"))?;
            for (name, items) in fields {
                let at = format!("{section}.{name}");
                match (section.as_str(), name.as_str()) {
                    ("ghl", "location_id") => {}
                    ("ghl", "contacts") => {
                        state.load(&at, items, |s| &mut s.ghl.contacts, "id", State::fill_contact)?
                    }
                    ("ghl", "notes") => state.load(&at, items, |s| &mut s.ghl.notes, "id", fill_child)?,
                    ("ghl", "tasks") => state.load(&at, items, |s| &mut s.ghl.tasks, "id", fill_child)?,
                    ("ghl", "custom_fields") => {
                        state.load(&at, items, |s| &mut s.ghl.custom_fields, "id", State::fill_custom_field)?
                    }
                    ("ghl", "orders") => state.load(&at, items, |s| &mut s.ghl.orders, "_id", State::fill_payment)?,
                    ("ghl", "fulfillments") => {
                        state.load(&at, items, |s| &mut s.ghl.fulfillments, "_id", State::fill_payment)?
                    }
                    ("ghl", "transactions") => {
                        state.load(&at, items, |s| &mut s.ghl.transactions, "_id", State::fill_payment)?
                    }
                    ("ghl", "subscriptions") => {
                        state.load(&at, items, |s| &mut s.ghl.subscriptions, "_id", State::fill_payment)?
                    }
                    ("ghl", "invoices") => {
                        state.load(&at, items, |s| &mut s.ghl.invoices, "_id", State::fill_payment)?
                    }
                    ("razorpay", "payments") => {
                        state.load(&at, items, |s| &mut s.razorpay.payments, "id", fill_razorpay_payment)?
                    }
                    ("payhere", "customers") => {
                        state.load(&at, items, |s| &mut s.payhere.customers, "id", fill_payhere_customer)?
                    }
                    _ => {
                        return Err(format!(
                            "unknown seed key `{at}`; known: ghl.{{location_id, contacts, notes, tasks, custom_fields, \
                             orders, fulfillments, transactions, subscriptions, invoices}}, razorpay.payments, payhere.customers"
                        ))
                    }
                }
            }
        }
        let home = state.ghl.location_id.clone();
        state.ensure_location(&home);
        for contact in state.ghl.contacts.values() {
            let location = contact["locationId"].as_str().unwrap_or_default();
            *state.ghl.contacts_per_location.entry(location.to_string()).or_default() += 1;
        }
        Ok(state)
    }

    /// Raise an app's webhook event.
    pub fn emit(&mut self, connector: &'static str, kind: &str, body: Value) {
        self.events.push(Event { connector, kind: kind.to_string(), body });
    }

    /// Store a contact (a new one goes last); `true` when it is new.
    pub fn put_contact(&mut self, id: String, contact: Value) -> bool {
        let location = contact["locationId"].as_str().unwrap_or_default().to_string();
        let new = self.ghl.contacts.insert(id, contact).is_none();
        if new {
            *self.ghl.contacts_per_location.entry(location).or_default() += 1;
        }
        new
    }

    /// Remove a contact, keeping the others' order.
    pub fn remove_contact(&mut self, id: &str) -> Option<Value> {
        let contact = self.ghl.contacts.shift_remove(id)?;
        if let Some(n) = contact["locationId"].as_str().and_then(|l| self.ghl.contacts_per_location.get_mut(l)) {
            *n = n.saturating_sub(1);
        }
        Some(contact)
    }

    /// Read one collection (a list, or an object keyed by id) into its map, filling ids and defaults.
    fn load(
        &mut self,
        at: &str,
        items: &Value,
        map: fn(&mut State) -> &mut Records,
        id_field: &str,
        fill: fn(&mut State, &mut Map<String, Value>) -> Result<(), String>,
    ) -> Result<(), String> {
        let listed: Vec<(Option<String>, &Value)> = match items {
            Value::Array(list) => list.iter().map(|v| (None, v)).collect(),
            Value::Object(by_id) => by_id.iter().map(|(k, v)| (Some(k.clone()), v)).collect(),
            _ => return Err(format!("seed `{at}` must be a list or a mapping keyed by id")),
        };
        for (i, (key, item)) in listed.into_iter().enumerate() {
            let mut record = item.as_object().cloned().ok_or_else(|| format!("seed `{at}[{i}]` must be a mapping"))?;
            if let (Some(key), false) = (&key, record.contains_key(id_field)) {
                record.insert(id_field.to_string(), Value::String(key.clone()));
            }
            fill(self, &mut record).map_err(|e| format!("seed `{at}[{i}]`: {e}"))?;
            let id = match record.get(id_field) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Number(n)) => n.to_string(),
                _ => return Err(format!("seed `{at}[{i}]`: `{id_field}` must be a string or a number")),
            };
            map(self).insert(id, Value::Object(record));
        }
        Ok(())
    }

    fn fill_contact(&mut self, c: &mut Map<String, Value>) -> Result<(), String> {
        let id = self.ghl_id();
        let now = now_iso();
        put_default(c, "id", json!(id));
        put_default(c, "locationId", json!(self.ghl.location_id));
        put_default(c, "tags", json!([]));
        put_default(c, "customFields", json!([]));
        put_default(c, "dateAdded", json!(now));
        if let Some(email) = c.get("email").and_then(Value::as_str).map(str::to_lowercase) {
            put_default(c, "emailLowerCase", json!(email));
        }
        Ok(())
    }

    fn fill_custom_field(&mut self, f: &mut Map<String, Value>) -> Result<(), String> {
        let name = f.get("name").and_then(Value::as_str).ok_or("a custom field needs a `name`")?.to_string();
        let id = self.ghl_id();
        put_default(f, "id", json!(id));
        put_default(f, "fieldKey", json!(format!("contact.{}", name.to_lowercase().replace(' ', "_"))));
        put_default(f, "dataType", json!("TEXT"));
        put_default(f, "model", json!("contact"));
        put_default(f, "locationId", json!(self.ghl.location_id));
        Ok(())
    }

    /// Orders, fulfillments and transactions: a Mongo id, the location as `altId`, timestamps.
    fn fill_payment(&mut self, r: &mut Map<String, Value>) -> Result<(), String> {
        let id = self.object_id();
        let now = now_iso();
        put_default(r, "_id", json!(id));
        put_default(r, "altId", json!(self.ghl.location_id));
        put_default(r, "altType", json!("location"));
        put_default(r, "createdAt", json!(now));
        put_default(r, "updatedAt", json!(now));
        Ok(())
    }

    /// Give a location its starting custom fields the first time it is used.
    pub fn ensure_location(&mut self, location: &str) {
        let known = self.ghl.custom_fields.values().any(|f| f["locationId"] == location);
        if !known {
            let id = self.ghl_id();
            let field = json!({
                "id": id, "name": "Lead Score", "fieldKey": LEAD_SCORE_KEY, "placeholder": "", "dataType": "NUMERICAL",
                "position": 0, "locationId": location, "model": "contact",
            });
            self.ghl.custom_fields.insert(id, field);
        }
    }

    /// A GHL id: 20 alphanumerics (contacts, notes, tasks, custom fields).
    pub fn ghl_id(&mut self) -> String {
        self.rng.string(ALNUM, 20)
    }

    /// A Mongo ObjectId, as GHL's payments API uses: 24 hex digits.
    pub fn object_id(&mut self) -> String {
        self.rng.string(b"0123456789abcdef", 24)
    }

    /// `pay_` + 14 alphanumerics, Razorpay's id format.
    pub fn razorpay_id(&mut self, prefix: &str) -> String {
        format!("{prefix}_{}", self.rng.string(ALNUM, 14))
    }

    /// Payhere ids are 9-digit numbers.
    pub fn payhere_id(&mut self) -> u64 {
        100_000_000 + self.rng.below(900_000_000)
    }
}

fn fill_child(_: &mut State, r: &mut Map<String, Value>) -> Result<(), String> {
    if !r.get("contactId").is_some_and(Value::is_string) {
        return Err("needs the `contactId` it belongs to".into());
    }
    put_default(r, "dateAdded", json!(now_iso()));
    Ok(())
}

fn fill_razorpay_payment(state: &mut State, p: &mut Map<String, Value>) -> Result<(), String> {
    let id = state.razorpay_id("pay");
    put_default(p, "id", json!(id));
    put_default(p, "entity", json!("payment"));
    put_default(p, "currency", json!("INR"));
    put_default(p, "status", json!("captured"));
    let captured = p["status"] == "captured";
    put_default(p, "captured", json!(captured));
    put_default(p, "created_at", json!(now_unix()));
    Ok(())
}

fn fill_payhere_customer(state: &mut State, c: &mut Map<String, Value>) -> Result<(), String> {
    let id = state.payhere_id();
    // Payhere ids are numbers; a seed keyed by "123" means the number 123.
    if let Some(n) = c.get("id").and_then(Value::as_str).and_then(|s| s.parse::<u64>().ok()) {
        c.insert("id".into(), json!(n));
    }
    put_default(c, "id", json!(id));
    put_default(c, "type", json!("customers"));
    let now = now_iso();
    put_default(c, "created_at", json!(now));
    put_default(c, "updated_at", json!(now));
    Ok(())
}

fn put_default(record: &mut Map<String, Value>, key: &str, value: Value) {
    record.entry(key.to_string()).or_insert(value);
}

/// `n` synthetic contacts for the home location (`weft sandbox --generate-contacts`): distinct names, emails
/// and phones, fixed ids, and `dateAdded` one second apart from 2024-01-01 in list order, so a reset gives the
/// same contacts back and keyset pages have a strict order.
pub fn generated_contacts(n: usize) -> Vec<Value> {
    const FIRST: [&str; 8] = ["Asha", "Ben", "Chen", "Dilani", "Emeka", "Farah", "Gita", "Hugo"];
    const LAST: [&str; 8] = ["Perera", "Okafor", "Silva", "Nair", "Schmidt", "Khan", "Tanaka", "Moreau"];
    let start = chrono::DateTime::from_timestamp(1_704_067_200, 0).unwrap_or_default();
    (0..n)
        .map(|i| {
            let (first, last) = (FIRST[i % FIRST.len()], LAST[(i / FIRST.len()) % LAST.len()]);
            let added = start + chrono::Duration::seconds(i as i64);
            json!({
                "id": format!("sbxContact{i:010}"),
                "firstName": first, "lastName": last, "name": format!("{first} {last}"),
                "email": format!("{}.{}.{i}@example.com", first.to_lowercase(), last.to_lowercase()),
                "phone": format!("+1555{i:07}"),
                "source": "weft sandbox",
                "dateAdded": added.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            })
        })
        .collect()
}

/// Now as GHL writes times: `2024-05-01T09:27:42.355Z`.
pub fn now_iso() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Now as Razorpay writes times: Unix seconds.
pub fn now_unix() -> i64 {
    chrono::Utc::now().timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_fills_ids_and_defaults_and_a_dump_seeds_the_same_state() {
        let seed = json!({
            "ghl": {"contacts": [{"email": "Ann@Example.com"}], "transactions": {"65a1": {"amount": 10}}},
            "razorpay": {"payments": [{"amount": 5000, "created_at": 1700000000}]},
            "payhere": {"customers": {"989899294": {"email": "g@example.org"}}}
        });
        let state = State::from_seed(Some(&seed)).unwrap();
        let contact = state.ghl.contacts.values().next().unwrap();
        assert_eq!(contact["id"].as_str().unwrap().len(), 20);
        assert_eq!(contact["emailLowerCase"], "ann@example.com");
        assert_eq!(contact["locationId"], DEFAULT_LOCATION);
        assert_eq!(state.ghl.transactions["65a1"]["_id"], "65a1");
        let pay = state.razorpay.payments.values().next().unwrap();
        assert!(pay["id"].as_str().unwrap().starts_with("pay_") && pay["id"].as_str().unwrap().len() == 18);
        assert_eq!(state.payhere.customers["989899294"]["id"], 989899294);
        assert!(state.ghl.custom_fields.values().any(|f| f["fieldKey"] == LEAD_SCORE_KEY));

        let dump = serde_json::to_value(&state).unwrap();
        let again = State::from_seed(Some(&dump)).unwrap();
        assert_eq!(serde_json::to_value(&again).unwrap(), dump);
    }

    #[test]
    fn a_mistyped_seed_key_is_an_error() {
        let err = State::from_seed(Some(&json!({"ghl": {"contcts": []}}))).unwrap_err();
        assert!(err.contains("ghl.contcts"), "{err}");
        let err = State::from_seed(Some(&json!({"ghl": {"notes": [{"body": "x"}]}}))).unwrap_err();
        assert!(err.contains("contactId"), "{err}");
    }
}
