//! How an event is given to a script (docs/lua-runtime.md §6): a plain,
//! mutable table in API v1, a read-only `broker_event` userdata in API v2,
//! and the JSON text `broker.json_encode` makes of that userdata (§6.3).

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use mlua::{Lua, MetaMethod, Table, UserData, UserDataMethods, Value as LuaValue};

use super::json::{escape_into, format_g, shortest};
use super::EventJsonStyle;
use crate::event::{
    catalogue, proto3, Event, EventDef, FieldDef, FieldType, Label, Protocol, Value,
};
use crate::journal::Entry;

/// A Rust value as the Lua value Centreon pushes for it.
pub fn value_to_lua(lua: &Lua, value: &Value) -> mlua::Result<LuaValue> {
    Ok(match value {
        Value::Bool(b) => LuaValue::Boolean(*b),
        Value::Int(i) => LuaValue::Integer(*i),
        Value::Float(x) => LuaValue::Number(*x),
        Value::Str(s) => LuaValue::String(lua.create_string(s)?),
        Value::List(items) => {
            let table = lua.create_table_with_capacity(items.len(), 0)?;
            for (i, item) in items.iter().enumerate() {
                table.raw_set(i as i64 + 1, value_to_lua(lua, item)?)?;
            }
            LuaValue::Table(table)
        }
        Value::Table(entries) => {
            let table = lua.create_table_with_capacity(0, entries.len())?;
            for (k, v) in entries {
                table.raw_set(k.as_str(), value_to_lua(lua, v)?)?;
            }
            LuaValue::Table(table)
        }
    })
}

/// What a script finds in place of a protobuf value Centreon's reflection
/// does not convert (docs/lua-runtime.md §6.1).
const NOT_IMPLEMENTED: &str = "not_implemented";

/// The Lua value of one field: the stored value; for a protobuf field left
/// unset, its proto3 default (Centreon's reflection always yields one, a
/// table of defaults for a sub-message); nil for a mapped field under its
/// nil rule and for an unset optional or oneof.
fn field_to_lua(
    lua: &Lua,
    protocol: Protocol,
    field: &FieldDef,
    slot: Option<&Value>,
) -> mlua::Result<LuaValue> {
    match (protocol, slot) {
        (Protocol::Mapped, Some(v)) => value_to_lua(lua, v),
        (Protocol::Mapped, None) => Ok(LuaValue::Nil),
        (Protocol::Protobuf, Some(v)) => pb_to_lua(lua, field, v),
        (Protocol::Protobuf, None) => match field.proto3_default() {
            Some(default) => pb_to_lua(lua, field, &default),
            None => Ok(LuaValue::Nil),
        },
    }
}

/// A protobuf field's value, typed by its definition: sub-messages by
/// their layouts, unconverted types as `"not_implemented"`. Centreon's
/// converter corrupts the Lua stack on a repeated field of such a type
/// (OpenTelemetry's `bucket_counts`); here each item is that string.
fn pb_to_lua(lua: &Lua, field: &FieldDef, value: &Value) -> mlua::Result<LuaValue> {
    let one = |item: &Value| -> mlua::Result<LuaValue> {
        match (field.ty, item) {
            (ty, _) if ty.lua_not_implemented() => {
                Ok(LuaValue::String(lua.create_string(NOT_IMPLEMENTED)?))
            }
            (FieldType::PbMessage(name), Value::Table(entries)) => {
                message_to_lua(lua, catalogue::message(name).unwrap_or(&[]), entries)
            }
            (_, other) => value_to_lua(lua, other),
        }
    };
    match (field.label, value) {
        (Label::Repeated, Value::List(items)) => {
            let table = lua.create_table_with_capacity(items.len(), 0)?;
            for (i, item) in items.iter().enumerate() {
                table.raw_set(i as i64 + 1, one(item)?)?;
            }
            Ok(LuaValue::Table(table))
        }
        _ => one(value),
    }
}

/// A sub-message as a new table keyed by field name.
fn message_to_lua(
    lua: &Lua,
    fields: &'static [FieldDef],
    entries: &[(String, Value)],
) -> mlua::Result<LuaValue> {
    let table = lua.create_table_with_capacity(0, fields.len())?;
    for field in fields {
        let value = match proto3::entry(entries, field.key) {
            Some(v) => pb_to_lua(lua, field, v)?,
            None => field_to_lua(lua, Protocol::Protobuf, field, None)?,
        };
        if !value.is_nil() {
            table.raw_set(field.key, value)?;
        }
    }
    Ok(LuaValue::Table(table))
}

/// The keys of the API v1 tables (`_type`, `category`, `element`, then
/// each field of the definition), per event definition, as Lua strings
/// made once per state: setting a field with a key that is already a Lua
/// string saves interning the name again for every event (the per-event
/// hot path).
#[derive(Default)]
struct TableKeys(HashMap<usize, Rc<[mlua::LuaString]>>);

fn table_keys(lua: &Lua, def: &'static EventDef) -> mlua::Result<Rc<[mlua::LuaString]>> {
    let id = std::ptr::from_ref(def) as usize;
    if let Some(keys) = lua.app_data_ref::<TableKeys>() {
        if let Some(found) = keys.0.get(&id) {
            return Ok(Rc::clone(found));
        }
    }
    let mut names = Vec::with_capacity(def.fields.len() + HEADER.len());
    for name in HEADER {
        names.push(lua.create_string(name)?);
    }
    for field in def.fields {
        names.push(lua.create_string(field.key)?);
    }
    let names: Rc<[mlua::LuaString]> = names.into();
    if lua.app_data_ref::<TableKeys>().is_none() {
        lua.set_app_data(TableKeys::default());
    }
    if let Some(mut keys) = lua.app_data_mut::<TableKeys>() {
        keys.0.insert(id, Rc::clone(&names));
    }
    Ok(names)
}

/// API v1: a new table with `_type`, `category`, `element` and every
/// visible field that is not nil.
pub fn to_table(lua: &Lua, event: &Event) -> mlua::Result<Table> {
    let def = event.def();
    let ty = event.event_type();
    let keys = table_keys(lua, def)?;
    let table = lua.create_table_with_capacity(0, def.fields.len() + 3)?;
    table.raw_set(&keys[0], i64::from(ty.0))?;
    table.raw_set(&keys[1], i64::from(ty.category()))?;
    table.raw_set(&keys[2], i64::from(ty.element()))?;
    for ((field, slot), key) in def.fields.iter().zip(event.values()).zip(&keys[3..]) {
        if field.is_hidden() {
            continue;
        }
        // Scalars are pushed straight onto the table, without a reference
        // to a Lua value in between: this is the per-event hot path.
        match slot {
            None if def.protocol == Protocol::Mapped => continue,
            _ if field.ty.lua_not_implemented() => {}
            Some(Value::Str(s)) => {
                table.raw_set(key, s.as_str())?;
                continue;
            }
            Some(Value::Int(i)) => {
                table.raw_set(key, *i)?;
                continue;
            }
            Some(Value::Float(x)) => {
                table.raw_set(key, *x)?;
                continue;
            }
            Some(Value::Bool(b)) => {
                table.raw_set(key, *b)?;
                continue;
            }
            _ => {}
        }
        let value = field_to_lua(lua, def.protocol, field, slot.as_ref())?;
        if !value.is_nil() {
            table.raw_set(key, value)?;
        }
    }
    Ok(table)
}

/// An event shared with Lua without copying it: from the journal or from
/// the cache.
#[derive(Clone)]
pub enum Shared {
    Event(Arc<Event>),
    Entry(Arc<Entry>),
}

impl Shared {
    pub fn event(&self) -> &Event {
        match self {
            Shared::Event(e) => e,
            Shared::Entry(entry) => &entry.event,
        }
    }
}

/// API v2: the `broker_event` userdata.
#[derive(Clone)]
pub struct LuaEvent(pub Shared);

/// `pairs` order: the three header keys, then the visible fields.
const HEADER: [&str; 3] = ["_type", "category", "element"];

impl LuaEvent {
    fn header(&self, i: usize) -> i64 {
        let ty = self.0.event().event_type();
        match i {
            0 => i64::from(ty.0),
            1 => i64::from(ty.category()),
            _ => i64::from(ty.element()),
        }
    }

    fn get(&self, lua: &Lua, key: &str) -> mlua::Result<LuaValue> {
        if let Some(i) = HEADER.iter().position(|h| *h == key) {
            return Ok(LuaValue::Integer(self.header(i)));
        }
        let event = self.0.event();
        let def = event.def();
        match def.field_index(key) {
            Some(i) => field_to_lua(
                lua,
                def.protocol,
                &def.fields[i],
                event.values()[i].as_ref(),
            ),
            None => Ok(LuaValue::Nil),
        }
    }

    /// `__next`: the key after `key` and its value; nothing at the end, and
    /// for a protobuf event at the first unset optional field, as Centreon.
    fn next(&self, lua: &Lua, key: &LuaValue) -> mlua::Result<Option<(String, LuaValue)>> {
        let event = self.0.event();
        let def = event.def();
        let visible: Vec<usize> = (0..def.fields.len())
            .filter(|&i| !def.fields[i].is_hidden())
            .collect();
        // Position in the sequence header ++ visible fields of the next key.
        let position = match key {
            LuaValue::Nil => 0,
            LuaValue::String(s) => {
                let s = s.to_str()?;
                match HEADER.iter().position(|h| *h == &*s) {
                    Some(i) => i + 1,
                    None => match def.field_index(&s) {
                        Some(field) => {
                            3 + visible.iter().position(|&v| v == field).unwrap_or(0) + 1
                        }
                        None => return Err(mlua::Error::runtime("invalid key to 'next'")),
                    },
                }
            }
            _ => return Err(mlua::Error::runtime("invalid key to 'next'")),
        };
        if position < 3 {
            return Ok(Some((
                HEADER[position].to_owned(),
                LuaValue::Integer(self.header(position)),
            )));
        }
        let Some(&field_index) = visible.get(position - 3) else {
            return Ok(None);
        };
        let field = &def.fields[field_index];
        let slot = event.values()[field_index].as_ref();
        if def.protocol == Protocol::Protobuf && field.label.may_be_absent() && slot.is_none() {
            return Ok(None);
        }
        Ok(Some((
            field.key.to_owned(),
            field_to_lua(lua, def.protocol, field, slot)?,
        )))
    }

    /// The JSON text of docs/lua-runtime.md §6.3: mapping or declaration
    /// order, `", "` between fields; an error where Centreon's encoder
    /// throws.
    pub fn to_json(&self, style: EventJsonStyle) -> Result<String, UnencodableField> {
        event_json(self.0.event(), style)
    }
}

impl UserData for LuaEvent {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_meta_method(MetaMethod::Index, |lua, this, key: LuaValue| {
            let key = match &key {
                LuaValue::String(s) => s.to_str()?.to_owned(),
                LuaValue::Integer(i) => i.to_string(),
                LuaValue::Number(x) => super::json::lua_number(*x),
                other => {
                    return Err(mlua::Error::runtime(format!(
                        "bad argument #2 to '__index' (string expected, got {})",
                        other.type_name()
                    )))
                }
            };
            this.get(lua, &key)
        });
        methods.add_meta_function(MetaMethod::Pairs, |lua, ud: mlua::AnyUserData| {
            let next = lua.create_function(|lua, (ud, key): (mlua::AnyUserData, LuaValue)| {
                let this = ud.borrow::<LuaEvent>()?;
                match this.next(lua, &key)? {
                    Some((k, v)) => Ok(mlua::MultiValue::from_vec(vec![
                        LuaValue::String(lua.create_string(k)?),
                        v,
                    ])),
                    None => Ok(mlua::MultiValue::new()),
                }
            })?;
            Ok((next, ud, LuaValue::Nil))
        });
        methods.add_meta_method(MetaMethod::ToString, |_, this, ()| {
            Ok(format!("broker_event: {}", this.0.event().def().name))
        });
    }
}

/// The `broker_event` global (docs/lua-runtime.md §2.1 step 9): the metatable
/// every API v2 event shares, as Centreon publishes it, so that
/// `getmetatable(d) == broker_event` holds for an event `d` and for what
/// `broker_cache` returns. It holds `__index`, `__pairs`, `__tostring` and
/// `__gc`; a script that changes it changes every event, as under Centreon.
/// mlua hides userdata metatables behind `__metatable = false`, which
/// Centreon does not: that field is removed. Called on a fresh state, before
/// the script's main chunk can replace `debug.getmetatable` or `rawset`.
pub fn event_metatable(lua: &Lua) -> mlua::Result<Table> {
    let sample = crate::event::catalogue::EVENTS
        .first()
        .ok_or_else(|| mlua::Error::runtime("the event catalogue is empty"))?;
    let event = lua.create_userdata(LuaEvent(Shared::Event(Arc::new(Event::new(sample)))))?;
    lua.load(
        "local d = ...\n\
         local mt = debug.getmetatable(d)\n\
         rawset(mt, '__metatable', nil)\n\
         return mt",
    )
    .set_name("=broker_event")
    .call(event)
}

/// A protobuf field `broker.json_encode` cannot write: Centreon's encoder
/// throws on sint32 (OpenTelemetry exponential histograms), logs the error
/// and returns nothing.
#[derive(Debug, thiserror::Error)]
#[error("json_encode encountered an error: field `{0}` has a type that cannot be encoded (sint32)")]
pub struct UnencodableField(pub &'static str);

/// `broker.json_encode(broker_event)`.
pub fn event_json(event: &Event, style: EventJsonStyle) -> Result<String, UnencodableField> {
    let ty = event.event_type();
    let mut out = Vec::with_capacity(512);
    match style {
        EventJsonStyle::Current => out.extend_from_slice(
            format!(
                "{{\"_type\":{}, \"category\":{}, \"element\":{}",
                ty.0,
                ty.category(),
                ty.element()
            )
            .as_bytes(),
        ),
        EventJsonStyle::Legacy2110 => out.extend_from_slice(
            format!(
                "{{ \"_type\": {}, \"category\": {}, \"element\": {}",
                ty.0,
                ty.category(),
                ty.element()
            )
            .as_bytes(),
        ),
    }
    let def = event.def();
    match def.protocol {
        Protocol::Mapped => {
            for (field, slot) in def.fields.iter().zip(event.values()) {
                let Some(value) = slot else { continue };
                if field.is_hidden() {
                    continue;
                }
                out.extend_from_slice(b", \"");
                out.extend_from_slice(field.key.as_bytes());
                out.extend_from_slice(b"\":");
                mapped_value_json(field.ty, value, &mut out);
            }
        }
        Protocol::Protobuf => {
            out.extend_from_slice(b", ");
            pb_fields_json(def.fields, |i, _| event.values()[i].as_ref(), &mut out)?;
        }
    }
    out.push(b'}');
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// The fields of a message in declaration order, `", "` before each one
/// whose declaration index is above 0 (even when the first is absent, as
/// Centreon writes it); unset plain fields at their defaults, absent
/// optionals and oneofs left out.
fn pb_fields_json<'a>(
    fields: &'static [FieldDef],
    value_of: impl Fn(usize, &FieldDef) -> Option<&'a Value>,
    out: &mut Vec<u8>,
) -> Result<(), UnencodableField> {
    for (index, field) in fields.iter().enumerate() {
        let value = match value_of(index, field) {
            Some(v) => std::borrow::Cow::Borrowed(v),
            None => match field.proto3_default() {
                Some(default) => std::borrow::Cow::Owned(default),
                None => continue,
            },
        };
        if index > 0 {
            out.extend_from_slice(b", ");
        }
        out.push(b'"');
        out.extend_from_slice(field.key.as_bytes());
        out.extend_from_slice(b"\":");
        if field.label == Label::Repeated {
            let Value::List(items) = &*value else {
                pb_value_json(field, &value, out)?;
                continue;
            };
            let message = matches!(field.ty, FieldType::PbMessage(_));
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.extend_from_slice(if message { b", " } else { b"," });
                }
                match item {
                    // iostream defaults in repeated fields: bools as 1/0,
                    // doubles with 6 significant digits.
                    Value::Bool(b) => out.push(if *b { b'1' } else { b'0' }),
                    Value::Float(x) => out.extend_from_slice(format_g(*x, 6).as_bytes()),
                    other => pb_value_json(field, other, out)?,
                }
            }
            out.push(b']');
        } else {
            pb_value_json(field, &value, out)?;
        }
    }
    Ok(())
}

fn mapped_value_json(ty: FieldType, value: &Value, out: &mut Vec<u8>) {
    match (ty, value) {
        // TIME is written as a quoted number (a std::string of the time_t).
        (FieldType::Time, Value::Int(i)) => out.extend_from_slice(format!("\"{i}\"").as_bytes()),
        // ULONG is a C++ uint64_t there: written unsigned.
        (FieldType::ULong, Value::Int(i)) => {
            out.extend_from_slice((*i as u64).to_string().as_bytes())
        }
        (_, Value::Bool(b)) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        (_, Value::Int(i)) => out.extend_from_slice(i.to_string().as_bytes()),
        (_, Value::Float(x)) => out.extend_from_slice(shortest(*x).as_bytes()),
        (_, Value::Str(s)) => {
            out.push(b'"');
            escape_into(s.as_bytes(), out);
            out.push(b'"');
        }
        (_, other) => out.extend_from_slice(other.to_json().to_string().as_bytes()),
    }
}

/// One protobuf value (an item of a repeated field, or a plain field):
/// strings not escaped (Centreon writes them raw), 64-bit unsigned types
/// unsigned, `bytes` as their hexadecimal text, sub-messages by their
/// layouts.
fn pb_value_json(
    field: &FieldDef,
    value: &Value,
    out: &mut Vec<u8>,
) -> Result<(), UnencodableField> {
    match (field.ty, value) {
        (FieldType::PbSInt32, _) => return Err(UnencodableField(field.key)),
        (FieldType::PbMessage(name), Value::Table(entries)) => {
            out.push(b'{');
            pb_fields_json(
                catalogue::message(name).unwrap_or(&[]),
                |_, f| proto3::entry(entries, f.key),
                out,
            )?;
            out.push(b'}');
        }
        (ty, Value::Int(i)) if ty.is_unsigned_64() => {
            out.extend_from_slice((*i as u64).to_string().as_bytes())
        }
        (_, Value::Bool(b)) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        (_, Value::Int(i)) => out.extend_from_slice(i.to_string().as_bytes()),
        (_, Value::Float(x)) => out.extend_from_slice(shortest(*x).as_bytes()),
        (_, Value::Str(s)) => {
            out.push(b'"');
            out.extend_from_slice(s.as_bytes());
            out.push(b'"');
        }
        // Values of no known shape (a table built in code): compact JSON.
        (_, other) => out.extend_from_slice(other.to_json().to_string().as_bytes()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(json: serde_json::Value) -> Event {
        Event::from_json(&json).unwrap()
    }

    #[test]
    fn adaptive_host_status_skips_unset_optionals() {
        let e = event(json!({"_type": 65592, "host_id": 1, "notification_number": 9}));
        assert_eq!(
            event_json(&e, EventJsonStyle::Current).unwrap(),
            r#"{"_type":65592, "category":1, "element":56, "host_id":1, "notification_number":9}"#
        );
        let e = event(
            json!({"_type": 65591, "host_id": 1, "service_id": 2, "acknowledgement_type": 2}),
        );
        assert_eq!(
            event_json(&e, EventJsonStyle::Current).unwrap(),
            r#"{"_type":65591, "category":1, "element":55, "host_id":1, "service_id":2, "type":0, "internal_id":0, "acknowledgement_type":2}"#
        );
    }

    #[test]
    fn mapped_times_are_quoted_and_doubles_short() {
        let e = event(
            json!({"_type": 65550, "host_id": 1, "last_check": 123456, "latency": 0.25, "check_interval": 5.0, "output": "a\"b\nc"}),
        );
        let text = event_json(&e, EventJsonStyle::Legacy2110).unwrap();
        assert!(text.starts_with(r#"{ "_type": 65550, "category": 1, "element": 14, "#));
        assert!(text.contains(r#""last_check":"123456""#));
        assert!(text.contains(r#""latency":0.25"#));
        assert!(text.contains(r#""check_interval":5, "#));
        assert!(text.contains(r#""output":"a\"b\nc""#));
    }
}
