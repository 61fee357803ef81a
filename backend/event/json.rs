//! The JSON form of an event: an object with `_type`, `category`, `element`
//! and the fields a Lua script sees in an API v1 table, with the same keys
//! and value types (integers stay integers, doubles are floats, nil fields
//! are absent).

use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use serde_json::{Map, Value as Json};

use super::types::{FieldDef, FieldType, Label, LuaType, NilRule, Protocol};
use super::{catalogue, proto3, Event, EventType, Value};

/// Deepest nesting accepted in a table field of outside input.
pub const MAX_NESTING: usize = 16;

/// Why a JSON object is not a valid event. The messages name the field so
/// that an operator can fix the producer.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EventJsonError {
    #[error("an event must be a JSON object")]
    NotAnObject,
    #[error("missing `_type` (or `category` and `element`)")]
    MissingType,
    #[error("`{0}` must be an integer")]
    BadTypeKey(&'static str),
    #[error("`_type` {ty} does not match `category` {category} and `element` {element}")]
    TypeMismatch {
        ty: u32,
        category: u16,
        element: u16,
    },
    #[error("unknown event type {0} (`_type` {n})", n = .0 .0)]
    UnknownType(EventType),
    #[error("`{event}` has no field `{field}`")]
    UnknownField { event: &'static str, field: String },
    #[error("`{field}`: expected {expected}, got {got}")]
    WrongType {
        field: String,
        expected: &'static str,
        got: &'static str,
    },
    #[error("`{field}`: {value} is out of range ({min} to {max})")]
    OutOfRange {
        field: String,
        value: i64,
        min: i64,
        max: i64,
    },
    #[error("`{0}`: nested deeper than {MAX_NESTING} levels")]
    TooDeep(String),
}

impl Event {
    /// Parses the JSON form. Unknown types and fields, and values of the
    /// wrong type or range, are errors; nil rules are applied, so
    /// `"host_id": 0` is stored as nil exactly as Centreon would show it.
    pub fn from_json(json: &Json) -> Result<Event, EventJsonError> {
        let object = json.as_object().ok_or(EventJsonError::NotAnObject)?;
        let event_type = type_of(object)?;
        let def = catalogue::by_type(event_type).ok_or(EventJsonError::UnknownType(event_type))?;
        let mut event = Event::new(def);
        for (key, json_value) in object {
            if matches!(key.as_str(), "_type" | "category" | "element") {
                continue;
            }
            let index = def
                .field_index(key)
                .ok_or_else(|| EventJsonError::UnknownField {
                    event: def.name,
                    field: key.clone(),
                })?;
            event.values[index] = field_from_json(&def.fields[index], key, json_value, 0)?;
        }
        if def.protocol == Protocol::Protobuf {
            proto3::complete(def.fields, &mut event.values);
        }
        Ok(event)
    }

    pub fn to_json(&self) -> Json {
        // Serializing our own types into a Value cannot fail: every key is a
        // string and floats that JSON cannot hold become null.
        serde_json::to_value(self).unwrap_or(Json::Null)
    }
}

impl Value {
    pub fn to_json(&self) -> Json {
        serde_json::to_value(self).unwrap_or(Json::Null)
    }
}

fn type_of(object: &Map<String, Json>) -> Result<EventType, EventJsonError> {
    let read = |key: &'static str| -> Result<Option<u64>, EventJsonError> {
        match object.get(key) {
            None | Some(Json::Null) => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or(EventJsonError::BadTypeKey(key)),
        }
    };
    let ty = read("_type")?;
    let category = read("category")?;
    let element = read("element")?;
    let pair = match (category, element) {
        (Some(c), Some(e)) => {
            let c = u16::try_from(c).map_err(|_| EventJsonError::BadTypeKey("category"))?;
            let e = u16::try_from(e).map_err(|_| EventJsonError::BadTypeKey("element"))?;
            Some(EventType::new(c, e))
        }
        _ => None,
    };
    match (ty, pair) {
        (Some(ty), pair) => {
            let ty = u32::try_from(ty).map_err(|_| EventJsonError::BadTypeKey("_type"))?;
            if let Some(pair) = pair {
                if pair.0 != ty {
                    return Err(EventJsonError::TypeMismatch {
                        ty,
                        category: pair.category(),
                        element: pair.element(),
                    });
                }
            }
            Ok(EventType(ty))
        }
        (None, Some(pair)) => Ok(pair),
        (None, None) => Err(EventJsonError::MissingType),
    }
}

fn json_kind(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Json::Number(_) => "a float",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

/// One field's value; `path` names it in errors (`header.conf_version`).
fn field_from_json(
    field: &FieldDef,
    path: &str,
    json: &Json,
    depth: usize,
) -> Result<Option<Value>, EventJsonError> {
    if json.is_null() {
        return Ok(None);
    }
    let value = if field.label == Label::Repeated {
        let items = json.as_array().ok_or_else(|| EventJsonError::WrongType {
            field: path.to_owned(),
            expected: "an array",
            got: json_kind(json),
        })?;
        let list = items
            .iter()
            .map(|item| scalar_from_json(path, field.ty, item, depth))
            .collect::<Result<_, _>>()?;
        Value::List(list)
    } else {
        scalar_from_json(path, field.ty, json, depth)?
    };
    Ok(apply_nil_rule(field, value))
}

/// `None` when the value is the field's nil sentinel.
fn apply_nil_rule(field: &FieldDef, value: Value) -> Option<Value> {
    let nil = match (field.nil, &value) {
        (NilRule::Zero, Value::Int(0)) => true,
        (NilRule::Zero, Value::Str(s)) => s.is_empty(),
        (NilRule::MinusOne, Value::Int(i)) => match field.ty {
            FieldType::UInt => *i == u32::MAX as i64,
            _ => *i == -1,
        },
        _ => false,
    };
    (!nil).then_some(value)
}

fn scalar_from_json(
    key: &str,
    ty: FieldType,
    json: &Json,
    depth: usize,
) -> Result<Value, EventJsonError> {
    let wrong = |expected| EventJsonError::WrongType {
        field: key.to_owned(),
        expected,
        got: json_kind(json),
    };
    Ok(match ty.lua_type() {
        LuaType::Boolean => Value::Bool(json.as_bool().ok_or_else(|| wrong("a boolean"))?),
        LuaType::Integer => {
            let unsigned64 = ty.is_unsigned_64();
            let i = match json {
                Json::Number(n) => match (n.as_i64(), n.as_u64()) {
                    (Some(i), _) => i,
                    // uint64 above i64::MAX keeps its bit pattern, as in Lua.
                    (None, Some(u)) if unsigned64 => u as i64,
                    (None, Some(u)) => {
                        let (min, max) = ty.integer_range().unwrap_or((i64::MIN, i64::MAX));
                        return Err(EventJsonError::OutOfRange {
                            field: key.to_owned(),
                            value: u.min(i64::MAX as u64) as i64,
                            min,
                            max,
                        });
                    }
                    _ => return Err(wrong("an integer")),
                },
                _ => return Err(wrong("an integer")),
            };
            if let Some((min, max)) = ty.integer_range() {
                if !(min..=max).contains(&i) {
                    return Err(EventJsonError::OutOfRange {
                        field: key.to_owned(),
                        value: i,
                        min,
                        max,
                    });
                }
            }
            Value::Int(i)
        }
        LuaType::Number => Value::Float(json.as_f64().ok_or_else(|| wrong("a number"))?),
        LuaType::String => {
            let s = json.as_str().ok_or_else(|| wrong("a string"))?;
            if ty == FieldType::PbBytes && hex::decode(s).is_err() {
                return Err(wrong("hexadecimal text"));
            }
            Value::Str(s.to_owned())
        }
        LuaType::Table => match ty {
            FieldType::PbMessage(name) => message_from_json(key, name, json, depth + 1)?,
            _ => table_from_json(key, json, 0)?,
        },
    })
}

/// A sub-message, checked against its layout like an event: known keys,
/// typed values, in declaration order, completed by the proto3 rules.
fn message_from_json(
    path: &str,
    name: &'static str,
    json: &Json,
    depth: usize,
) -> Result<Value, EventJsonError> {
    if depth > MAX_NESTING {
        return Err(EventJsonError::TooDeep(path.to_owned()));
    }
    let Some(fields) = catalogue::message(name) else {
        return table_from_json(path, json, depth);
    };
    let object = json.as_object().ok_or_else(|| EventJsonError::WrongType {
        field: path.to_owned(),
        expected: "an object",
        got: json_kind(json),
    })?;
    let mut values: Vec<Option<Value>> = vec![None; fields.len()];
    for (key, json_value) in object {
        let sub_path = format!("{path}.{key}");
        let index = fields.iter().position(|f| f.key == key).ok_or_else(|| {
            EventJsonError::UnknownField {
                event: name,
                field: sub_path.clone(),
            }
        })?;
        values[index] = field_from_json(&fields[index], &sub_path, json_value, depth)?;
    }
    proto3::complete(fields, &mut values);
    Ok(proto3::message_table(fields, values))
}

/// Tables of no known layout keep whatever shape they were given.
fn table_from_json(key: &str, json: &Json, depth: usize) -> Result<Value, EventJsonError> {
    if depth > MAX_NESTING {
        return Err(EventJsonError::TooDeep(key.to_owned()));
    }
    Ok(match json {
        Json::Object(map) => Value::Table(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), table_from_json(key, v, depth + 1)?)))
                .collect::<Result<_, EventJsonError>>()?,
        ),
        Json::Array(items) => Value::List(
            items
                .iter()
                .map(|v| table_from_json(key, v, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64().unwrap_or(0.0)),
        },
        Json::String(s) => Value::Str(s.clone()),
        Json::Null => {
            return Err(EventJsonError::WrongType {
                field: key.to_owned(),
                expected: "a value",
                got: "null",
            })
        }
    })
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let ty = self.event_type();
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("_type", &ty.0)?;
        map.serialize_entry("category", &ty.category())?;
        map.serialize_entry("element", &ty.element())?;
        match self.def.protocol {
            Protocol::Mapped => {
                for (key, value) in self.visible_fields() {
                    map.serialize_entry(key, value)?;
                }
            }
            // What a script sees: unset plain fields at their defaults
            // (docs/bbdo.md §3.3), absent optionals left out.
            Protocol::Protobuf => {
                for (field, slot) in self.def.fields.iter().zip(&self.values) {
                    match slot {
                        Some(value) => map.serialize_entry(field.key, value)?,
                        None => {
                            if let Some(default) = field.proto3_default() {
                                map.serialize_entry(field.key, &default)?;
                            }
                        }
                    }
                }
            }
        }
        map.end()
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Bool(b) => serializer.serialize_bool(*b),
            Value::Int(i) => serializer.serialize_i64(*i),
            Value::Float(x) => serializer.serialize_f64(*x),
            Value::Str(s) => serializer.serialize_str(s),
            Value::List(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Value::Table(entries) => {
                let mut map = serializer.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}
