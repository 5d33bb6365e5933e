//! GHL contacts with their tags, notes, tasks and custom-field values, and each location's custom fields.
//!
//! De-duplication follows GHL with "Allow Duplicate Contact" off: within a location a contact is the same one
//! when its email matches (case-insensitively), else its phone (digits only). `POST /contacts/upsert` updates
//! that contact or creates one and says which (`new`); `POST /contacts/` refuses a duplicate with GHL's 400.
//! A `tags` list in an upsert or update replaces the contact's tags, as GHL does; `POST/DELETE .../tags` add and
//! remove. Custom-field values are given by field `id` or `key` (`contact.lead_score` or `lead_score`) and stored
//! as `{id, value}`; a key no field of the location has is ignored, as GHL ignores it.

use axum::http::StatusCode;
use serde_json::{json, Map, Value};

use super::state::{now_iso, State};
use super::webhooks::ghl_event;
use super::{Call, Reply};

/// The stateful routes; `None` for any other (the caller answers it from the schema).
pub fn handle(state: &mut State, call: &Call) -> Option<Reply> {
    let reply = match call.route.as_str() {
        "POST:/contacts/upsert" => upsert(state, call),
        "POST:/contacts/" => create(state, call),
        "GET:/contacts/" => super::ghl_contact_list::list(state, call),
        "GET:/contacts/search/duplicate" => {
            let location = call.query("locationId").unwrap_or_default();
            let email = call.query("email");
            let phone = call.query("number").or_else(|| call.query("phone"));
            let found = find_duplicate(state, location, email, phone).map(|id| state.ghl.contacts[&id].clone());
            call.ok(json!({"contact": found}))
        }
        "GET:/contacts/{contactId}" => match state.ghl.contacts.get(call.param("contactId")) {
            Some(c) => call.ok(json!({"contact": c})),
            None => contact_not_found(call),
        },
        "PUT:/contacts/{contactId}" => {
            let Some(mut contact) = state.ghl.contacts.get(call.param("contactId")).cloned() else {
                return Some(contact_not_found(call));
            };
            let tags_before = contact["tags"].clone();
            apply_fields(state, &mut contact, call.body);
            state.put_contact(call.param("contactId").to_string(), contact.clone());
            emit_contact(state, "ContactUpdate", &contact);
            if contact["tags"] != tags_before {
                emit_contact(state, "ContactTagUpdate", &contact);
            }
            call.ok(json!({"succeded": true, "contact": contact}))
        }
        "DELETE:/contacts/{contactId}" => {
            let id = call.param("contactId");
            let Some(contact) = state.remove_contact(id) else {
                return Some(contact_not_found(call));
            };
            emit_contact(state, "ContactDelete", &contact);
            state.ghl.notes.retain(|_, n| n["contactId"] != id);
            state.ghl.tasks.retain(|_, t| t["contactId"] != id);
            call.ok(json!({"succeded": true}))
        }
        "POST:/contacts/{contactId}/tags" | "DELETE:/contacts/{contactId}/tags" => {
            let Some(contact) = state.ghl.contacts.get_mut(call.param("contactId")) else {
                return Some(contact_not_found(call));
            };
            let before = strings(&contact["tags"]);
            let given: Vec<String> = strings(&call.body["tags"]);
            let mut tags = strings(&contact["tags"]);
            if call.route.starts_with("POST") {
                for tag in given {
                    if !tags.contains(&tag) {
                        tags.push(tag);
                    }
                }
            } else {
                tags.retain(|t| !given.contains(t));
            }
            let changed = tags != before;
            contact["tags"] = json!(tags);
            contact["dateUpdated"] = json!(now_iso());
            if changed {
                let contact = contact.clone();
                emit_contact(state, "ContactTagUpdate", &contact);
            }
            call.ok(json!({"tags": tags}))
        }
        "POST:/contacts/{contactId}/notes" => {
            let contact_id = call.param("contactId").to_string();
            if !state.ghl.contacts.contains_key(&contact_id) {
                return Some(contact_not_found(call));
            }
            let id = state.ghl_id();
            let note = json!({
                "id": id, "body": call.body["body"], "userId": call.body.get("userId").unwrap_or(&json!("")),
                "dateAdded": now_iso(), "contactId": contact_id,
            });
            state.ghl.notes.insert(id, note.clone());
            emit_child(state, "NoteCreate", &note);
            call.ok(json!({"note": note}))
        }
        "GET:/contacts/{contactId}/notes" => children(&state.ghl.contacts, &state.ghl.notes, call, "notes"),
        "GET:/contacts/{contactId}/notes/{id}" => match state.ghl.notes.get(call.param("id")) {
            Some(n) if n["contactId"] == call.param("contactId") => call.ok(json!({"note": n})),
            _ => call.fail(StatusCode::NOT_FOUND, "Note not found"),
        },
        "POST:/contacts/{contactId}/tasks" => {
            let contact_id = call.param("contactId").to_string();
            if !state.ghl.contacts.contains_key(&contact_id) {
                return Some(contact_not_found(call));
            }
            let id = state.ghl_id();
            let mut task = json!({"id": id, "contactId": contact_id, "body": "", "assignedTo": ""});
            merge(&mut task, call.body);
            state.ghl.tasks.insert(id, task.clone());
            emit_child(state, "TaskCreate", &task);
            call.ok(json!({"task": task}))
        }
        "GET:/contacts/{contactId}/tasks" => children(&state.ghl.contacts, &state.ghl.tasks, call, "tasks"),
        "GET:/contacts/{contactId}/tasks/{taskId}" | "PUT:/contacts/{contactId}/tasks/{taskId}/completed" => {
            match state.ghl.tasks.get_mut(call.param("taskId")) {
                Some(task) if task["contactId"] == call.param("contactId") => {
                    let mut completed_now = false;
                    if call.route.starts_with("PUT") {
                        completed_now = task["completed"] != true && call.body["completed"] == true;
                        task["completed"] = call.body["completed"].clone();
                    }
                    let task = task.clone();
                    if completed_now {
                        emit_child(state, "TaskComplete", &task);
                    }
                    call.ok(json!({"task": task}))
                }
                _ => call.fail(StatusCode::NOT_FOUND, "Task not found"),
            }
        }
        "GET:/locations/{locationId}/customFields" => {
            let location = call.param("locationId");
            state.ensure_location(location);
            let model = call.query("model").filter(|m| *m != "all");
            let fields: Vec<&Value> = state
                .ghl
                .custom_fields
                .values()
                .filter(|f| f["locationId"] == location && model.is_none_or(|m| f["model"] == m))
                .collect();
            call.ok(json!({"customFields": fields}))
        }
        "POST:/locations/{locationId}/customFields" => {
            let location = call.param("locationId").to_string();
            let id = state.ghl_id();
            let name = call.body["name"].as_str().unwrap_or_default();
            let mut field = json!({
                "id": id, "fieldKey": format!("contact.{}", name.to_lowercase().replace(' ', "_")),
                "placeholder": "", "position": 0, "model": "contact", "locationId": location,
            });
            merge(&mut field, call.body);
            state.ghl.custom_fields.insert(id, field.clone());
            call.ok(json!({"customField": field}))
        }
        _ => return None,
    };
    Some(reply)
}

fn upsert(state: &mut State, call: &Call) -> Reply {
    let location = call.body["locationId"].as_str().unwrap_or_default().to_string();
    state.ensure_location(&location);
    let existing = find_duplicate(state, &location, call.body["email"].as_str(), call.body["phone"].as_str());
    let (id, mut contact, new) = match existing {
        Some(id) => {
            let contact = state.ghl.contacts[&id].clone();
            (id, contact, false)
        }
        None => {
            let id = state.ghl_id();
            (id.clone(), blank_contact(&id, &location), true)
        }
    };
    let tags_before = contact["tags"].clone();
    apply_fields(state, &mut contact, call.body);
    state.put_contact(id, contact.clone());
    if new {
        emit_contact(state, "ContactCreate", &contact);
    } else {
        emit_contact(state, "ContactUpdate", &contact);
        if contact["tags"] != tags_before {
            emit_contact(state, "ContactTagUpdate", &contact);
        }
    }
    let trace = state.object_id();
    call.ok(json!({"new": new, "contact": contact, "traceId": trace}))
}

fn create(state: &mut State, call: &Call) -> Reply {
    let location = call.body["locationId"].as_str().unwrap_or_default().to_string();
    state.ensure_location(&location);
    let email = call.body["email"].as_str();
    if let Some(id) = find_duplicate(state, &location, email, call.body["phone"].as_str()) {
        let existing = &state.ghl.contacts[&id];
        let field =
            if email.is_some() && existing["email"].as_str().map(str::to_lowercase) == email.map(str::to_lowercase) {
                "email"
            } else {
                "phone"
            };
        return Reply {
            status: StatusCode::BAD_REQUEST,
            body: json!({
                "statusCode": 400, "message": "This location does not allow duplicated contacts.",
                "meta": {"contactName": existing["name"], "contactId": id, "matchingField": field},
            }),
        };
    }
    let id = state.ghl_id();
    let mut contact = blank_contact(&id, &location);
    apply_fields(state, &mut contact, call.body);
    state.put_contact(id, contact.clone());
    emit_contact(state, "ContactCreate", &contact);
    call.ok(json!({"contact": contact}))
}

fn blank_contact(id: &str, location: &str) -> Value {
    let now = now_iso();
    json!({"id": id, "locationId": location, "type": "lead", "tags": [], "customFields": [], "dateAdded": now})
}

/// The contact of `location` with this email, else with this phone.
fn find_duplicate(state: &State, location: &str, email: Option<&str>, phone: Option<&str>) -> Option<String> {
    let in_location = || state.ghl.contacts.iter().filter(move |(_, c)| c["locationId"] == location);
    if let Some(email) = email.map(str::to_lowercase).filter(|e| !e.is_empty()) {
        let hit = in_location().find(|(_, c)| c["email"].as_str().is_some_and(|e| e.to_lowercase() == email));
        if let Some((id, _)) = hit {
            return Some(id.clone());
        }
    }
    let phone = phone.map(digits).filter(|p| !p.is_empty())?;
    in_location().find(|(_, c)| c["phone"].as_str().map(digits).as_deref() == Some(&phone)).map(|(id, _)| id.clone())
}

fn digits(phone: &str) -> String {
    phone.chars().filter(char::is_ascii_digit).collect()
}

/// Write a create/upsert/update body onto a contact: plain fields as given, custom fields by id or key.
fn apply_fields(state: &State, contact: &mut Value, body: &Value) {
    let Some(fields) = body.as_object() else { return };
    let location = contact["locationId"].as_str().unwrap_or_default().to_string();
    for (name, value) in fields {
        match name.as_str() {
            "customFields" => {
                let mut values: Vec<Value> = contact["customFields"].as_array().cloned().unwrap_or_default();
                for given in value.as_array().into_iter().flatten() {
                    let Some(field_id) = resolve_field(state, &location, given) else { continue };
                    values.retain(|v| v["id"] != field_id.as_str());
                    values.push(json!({"id": field_id, "value": given["field_value"]}));
                }
                contact["customFields"] = json!(values);
            }
            "locationId" => {}
            _ => contact[name] = value.clone(),
        }
    }
    let text = |k: &str| contact[k].as_str().unwrap_or_default().to_string();
    let (first, last, email) = (text("firstName"), text("lastName"), text("email"));
    let full = format!("{first} {last}").trim().to_string();
    // `name` follows first + last unless the caller set it.
    if !full.is_empty() && !fields.contains_key("name") {
        contact["name"] = json!(full);
    }
    let lower: Vec<(&str, String)> = vec![
        ("emailLowerCase", email.to_lowercase()),
        ("firstNameLowerCase", first.to_lowercase()),
        ("lastNameLowerCase", last.to_lowercase()),
        ("fullNameLowerCase", full.to_lowercase()),
    ];
    for (key, value) in lower.into_iter().filter(|(_, v)| !v.is_empty()) {
        contact[key] = json!(value);
    }
    contact["dateUpdated"] = json!(now_iso());
}

/// The id of the location's custom field a `{id | key, field_value}` item names.
fn resolve_field(state: &State, location: &str, given: &Value) -> Option<String> {
    let fields = || state.ghl.custom_fields.values().filter(|f| f["locationId"] == location);
    if let Some(id) = given["id"].as_str() {
        return fields().any(|f| f["id"] == id).then(|| id.to_string());
    }
    let key = given["key"].as_str()?;
    let full = if key.contains('.') { key.to_string() } else { format!("contact.{key}") };
    fields().find(|f| f["fieldKey"] == full.as_str()).and_then(|f| f["id"].as_str()).map(str::to_string)
}

/// A contact's notes or tasks.
fn children(contacts: &super::state::Records, records: &super::state::Records, call: &Call, key: &str) -> Reply {
    let contact_id = call.param("contactId");
    if !contacts.contains_key(contact_id) {
        return contact_not_found(call);
    }
    let list: Vec<&Value> = records.values().filter(|r| r["contactId"] == contact_id).collect();
    let mut body = Map::new();
    body.insert(key.to_string(), json!(list));
    call.ok(Value::Object(body))
}

/// Raise a contact event (`ContactCreate`, ...) with the contact as it now is.
fn emit_contact(state: &mut State, kind: &str, contact: &Value) {
    let body = ghl_event(kind, &contact["locationId"], contact);
    state.emit("ghl", kind, body);
}

/// Raise a note or task event; its location is its contact's.
fn emit_child(state: &mut State, kind: &str, record: &Value) {
    let contact = record["contactId"].as_str().and_then(|id| state.ghl.contacts.get(id));
    let location = contact.map_or(Value::Null, |c| c["locationId"].clone());
    let body = ghl_event(kind, &location, record);
    state.emit("ghl", kind, body);
}

fn contact_not_found(call: &Call) -> Reply {
    call.fail(StatusCode::NOT_FOUND, "Contact not found")
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().into_iter().flatten().filter_map(Value::as_str).map(str::to_string).collect()
}

fn merge(target: &mut Value, body: &Value) {
    if let (Some(target), Some(body)) = (target.as_object_mut(), body.as_object()) {
        for (k, v) in body {
            target.insert(k.clone(), v.clone());
        }
    }
}
