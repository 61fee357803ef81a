//! BBDO 3 payloads (docs/bbdo.md §7): standard protobuf binary messages.
//!
//! Why a codec driven by the catalogue rather than `prost`-generated
//! structs: the catalogue already holds every message's field numbers,
//! types and labels (it is the single source of truth for the JSON form and
//! the Lua tables), and events travel through brokerstream as catalogue
//! [`Event`]s, not typed structs. Sixty generated structs would duplicate
//! that table, need a `.proto` copy and `protoc` at build time, and a
//! struct ↔ `Event` conversion for each. Only the wire primitives (varints,
//! keys, wire types) come from `prost::encoding`.
//!
//! Decoding follows proto3: a `Single` scalar absent from the wire has its
//! default (0, "", false), an `Optional` one stays nil, a repeated one is an
//! empty list, an absent nested message is nil. Unknown field numbers, and
//! fields whose wire type does not match the catalogue, are skipped as
//! protobuf does with unknown fields. Packed and unpacked repeated scalars
//! are both read; packed is written.
//!
//! Nested messages whose layout this codec holds (`BBDOHeader`, `TagInfo`,
//! `Bbdo`, the `map<uint64, uint64>` entry of `RebuildMessage`) decode to a
//! `Value::Table` keyed by field name. The others (`AgentInfo`,
//! `ServiceState`, `TimePoint`, `Timeserie`, whose layouts docs/bbdo.md
//! §3.4 gives but which are not here yet) decode to a `Value::Table` of
//! their raw fields, keyed by field number in wire order: varint → integer,
//! 64-bit → float (their doubles), 32-bit → integer, length-delimited → a
//! string when it is UTF-8, else a list of byte values. Encoding such a
//! table writes integers and booleans as varints, floats as 64-bit, strings
//! as length-delimited, so integer and string fields round-trip.

use bytes::{Buf, BufMut};
use prost::encoding::{decode_key, decode_varint, encode_key, encode_varint, WireType};

use crate::event::{Event, EventDef, FieldDef, FieldType, Label, Value};

use super::DecodeError;

/// Sub-messages whose layout this codec holds (docs/bbdo.md §3.4).
fn layout(message: &str) -> Option<&'static [FieldDef]> {
    const fn f(key: &'static str, ty: FieldType, tag: u32) -> FieldDef {
        FieldDef::pb(key, ty, tag, Label::Single)
    }
    static BBDO_HEADER: &[FieldDef] = &[f("conf_version", FieldType::PbUInt32, 1)];
    static TAG_INFO: &[FieldDef] = &[
        f("id", FieldType::PbUInt64, 1),
        f("type", FieldType::PbEnum, 2),
    ];
    static BBDO: &[FieldDef] = &[
        f("major", FieldType::PbUInt32, 1),
        f("minor", FieldType::PbUInt32, 2),
        f("patch", FieldType::PbUInt32, 3),
    ];
    static U64_MAP_ENTRY: &[FieldDef] = &[
        f("key", FieldType::PbUInt64, 1),
        f("value", FieldType::PbUInt64, 2),
    ];
    static TIMESERIE_ENTRY: &[FieldDef] = &[
        f("key", FieldType::PbUInt64, 1),
        f("value", FieldType::PbMessage("Timeserie"), 2),
    ];
    Some(match message {
        "BBDOHeader" => BBDO_HEADER,
        "TagInfo" => TAG_INFO,
        "Bbdo" => BBDO,
        "MetricToIndexIdEntry" => U64_MAP_ENTRY,
        "TimeserieEntry" => TIMESERIE_ENTRY,
        _ => return None,
    })
}

fn wire_type(ty: FieldType) -> WireType {
    match ty {
        FieldType::PbDouble => WireType::SixtyFourBit,
        FieldType::PbString | FieldType::PbMessage(_) => WireType::LengthDelimited,
        _ => WireType::Varint,
    }
}

fn is_packable(ty: FieldType) -> bool {
    wire_type(ty) != WireType::LengthDelimited
}

fn err(def_name: &str, e: impl std::fmt::Display) -> DecodeError {
    DecodeError::Protobuf {
        event: def_name.to_owned(),
        reason: e.to_string(),
    }
}

/// Decodes a protobuf payload into an event of `def`.
pub fn decode(def: &'static EventDef, payload: &[u8]) -> Result<Event, DecodeError> {
    let mut event = Event::new(def);
    let values = decode_fields(def.fields, payload).map_err(|e| err(def.name, e))?;
    for (slot, value) in event.values_mut().iter_mut().zip(values) {
        *slot = value;
    }
    Ok(event)
}

/// One slot per field of `fields`, filled from the message bytes.
fn decode_fields(fields: &[FieldDef], mut buf: &[u8]) -> Result<Vec<Option<Value>>, String> {
    let mut values: Vec<Option<Value>> = vec![None; fields.len()];
    while buf.has_remaining() {
        let (tag, wt) = decode_key(&mut buf).map_err(|e| e.to_string())?;
        let Some(index) = fields.iter().position(|f| f.tag == tag) else {
            skip(wt, &mut buf)?;
            continue;
        };
        let field = &fields[index];
        let expected = wire_type(field.ty);
        if field.label == Label::Repeated {
            let list = values[index].get_or_insert_with(|| Value::List(Vec::new()));
            let Value::List(items) = list else {
                unreachable!("repeated slots hold lists")
            };
            if wt == WireType::LengthDelimited && is_packable(field.ty) {
                let mut packed = length_delimited(&mut buf)?;
                while packed.has_remaining() {
                    items.push(scalar(field.ty, expected, &mut packed)?);
                }
            } else if wt == expected {
                items.push(scalar(field.ty, wt, &mut buf)?);
            } else {
                skip(wt, &mut buf)?;
            }
        } else if wt == expected {
            // Last one wins, as protobuf merges repeated occurrences of a
            // scalar.
            values[index] = Some(scalar(field.ty, wt, &mut buf)?);
        } else {
            skip(wt, &mut buf)?;
        }
    }
    for (slot, field) in values.iter_mut().zip(fields) {
        if slot.is_none() {
            *slot = match field.label {
                Label::Repeated => Some(Value::List(Vec::new())),
                Label::Optional => None,
                Label::Single => default_of(field.ty),
            };
        }
    }
    Ok(values)
}

fn default_of(ty: FieldType) -> Option<Value> {
    Some(match ty {
        FieldType::PbBool => Value::Bool(false),
        FieldType::PbDouble => Value::Float(0.0),
        FieldType::PbString => Value::Str(String::new()),
        FieldType::PbMessage(_) => return None,
        _ => Value::Int(0),
    })
}

fn length_delimited<'a>(buf: &mut &'a [u8]) -> Result<&'a [u8], String> {
    let len = decode_varint(buf).map_err(|e| e.to_string())?;
    let len = usize::try_from(len)
        .ok()
        .filter(|&l| l <= buf.len())
        .ok_or_else(|| format!("length {len} runs past the end of the message"))?;
    let (head, tail) = buf.split_at(len);
    *buf = tail;
    Ok(head)
}

fn skip(wt: WireType, buf: &mut &[u8]) -> Result<(), String> {
    let n = match wt {
        WireType::Varint => {
            decode_varint(buf).map_err(|e| e.to_string())?;
            0
        }
        WireType::SixtyFourBit => 8,
        WireType::ThirtyTwoBit => 4,
        WireType::LengthDelimited => {
            length_delimited(buf)?;
            0
        }
        WireType::StartGroup | WireType::EndGroup => return Err("groups are not supported".into()),
    };
    if buf.len() < n {
        return Err("message ends inside a field".into());
    }
    buf.advance(n);
    Ok(())
}

fn scalar(ty: FieldType, wt: WireType, buf: &mut &[u8]) -> Result<Value, String> {
    let varint = |buf: &mut &[u8]| decode_varint(buf).map_err(|e| e.to_string());
    Ok(match ty {
        FieldType::PbBool => Value::Bool(varint(buf)? != 0),
        FieldType::PbInt32 | FieldType::PbEnum => Value::Int((varint(buf)? as i32).into()),
        FieldType::PbUInt32 => Value::Int((varint(buf)? as u32).into()),
        FieldType::PbInt64 | FieldType::PbUInt64 => Value::Int(varint(buf)? as i64),
        FieldType::PbDouble => {
            if buf.len() < 8 {
                return Err("message ends inside a double".into());
            }
            Value::Float(buf.get_f64_le())
        }
        FieldType::PbString => Value::Str(String::from_utf8_lossy(length_delimited(buf)?).into()),
        FieldType::PbMessage(name) => {
            let bytes = length_delimited(buf)?;
            match layout(name) {
                Some(fields) => {
                    let values = decode_fields(fields, bytes)?;
                    Value::Table(
                        fields
                            .iter()
                            .zip(values)
                            .filter_map(|(f, v)| v.map(|v| (f.key.to_owned(), v)))
                            .collect(),
                    )
                }
                None => raw_table(bytes)?,
            }
        }
        other => {
            let _ = wt;
            return Err(format!("{other:?} is not a protobuf type"));
        }
    })
}

/// A message of unknown layout: its raw fields keyed by number.
fn raw_table(mut buf: &[u8]) -> Result<Value, String> {
    let mut entries = Vec::new();
    while buf.has_remaining() {
        let (tag, wt) = decode_key(&mut buf).map_err(|e| e.to_string())?;
        let value = match wt {
            WireType::Varint => {
                Value::Int(decode_varint(&mut buf).map_err(|e| e.to_string())? as i64)
            }
            WireType::SixtyFourBit => {
                if buf.len() < 8 {
                    return Err("message ends inside a field".into());
                }
                Value::Float(buf.get_f64_le())
            }
            WireType::ThirtyTwoBit => {
                if buf.len() < 4 {
                    return Err("message ends inside a field".into());
                }
                Value::Int(buf.get_u32_le().into())
            }
            WireType::LengthDelimited => {
                let bytes = length_delimited(&mut buf)?;
                match std::str::from_utf8(bytes) {
                    Ok(s) => Value::Str(s.to_owned()),
                    Err(_) => Value::List(bytes.iter().map(|&b| Value::Int(b.into())).collect()),
                }
            }
            WireType::StartGroup | WireType::EndGroup => {
                return Err("groups are not supported".into())
            }
        };
        entries.push((tag.to_string(), value));
    }
    Ok(Value::Table(entries))
}

/// Appends the protobuf payload of `event`.
pub fn encode(event: &Event, out: &mut Vec<u8>) {
    encode_fields(event.def().fields, event.values(), out);
}

fn encode_fields(fields: &[FieldDef], values: &[Option<Value>], out: &mut Vec<u8>) {
    for (field, value) in fields.iter().zip(values) {
        let Some(value) = value else { continue };
        match (field.label, value) {
            (Label::Repeated, Value::List(items)) => {
                if items.is_empty() {
                    continue;
                }
                if is_packable(field.ty) {
                    let mut packed = Vec::new();
                    for item in items {
                        encode_scalar_body(field.ty, item, &mut packed);
                    }
                    encode_key(field.tag, WireType::LengthDelimited, out);
                    encode_varint(packed.len() as u64, out);
                    out.extend_from_slice(&packed);
                } else {
                    for item in items {
                        encode_key(field.tag, wire_type(field.ty), out);
                        encode_scalar_body(field.ty, item, out);
                    }
                }
            }
            (Label::Single, v) if is_default(field.ty, v) => {}
            (_, v) => {
                encode_key(field.tag, wire_type(field.ty), out);
                encode_scalar_body(field.ty, v, out);
            }
        }
    }
}

/// proto3 writes no field whose value is its default.
fn is_default(ty: FieldType, v: &Value) -> bool {
    match (ty, v) {
        (FieldType::PbMessage(_), _) => false,
        (_, Value::Bool(b)) => !b,
        (_, Value::Int(i)) => *i == 0,
        // -0.0 is not the default: its bits differ.
        (_, Value::Float(f)) => f.to_bits() == 0,
        (_, Value::Str(s)) => s.is_empty(),
        _ => false,
    }
}

fn int_of(v: &Value) -> i64 {
    match v {
        Value::Int(i) => *i,
        Value::Bool(b) => *b as i64,
        Value::Float(f) => *f as i64,
        _ => 0,
    }
}

/// The value part of a field (its key already written).
fn encode_scalar_body(ty: FieldType, v: &Value, out: &mut Vec<u8>) {
    match ty {
        FieldType::PbBool => encode_varint(matches!(v, Value::Bool(true)) as u64, out),
        // Negative int32 and enums are sign-extended to 10 bytes.
        FieldType::PbInt32 | FieldType::PbEnum => {
            encode_varint(int_of(v) as i32 as i64 as u64, out)
        }
        FieldType::PbUInt32 => encode_varint(int_of(v) as u32 as u64, out),
        FieldType::PbInt64 | FieldType::PbUInt64 => encode_varint(int_of(v) as u64, out),
        FieldType::PbDouble => out.put_f64_le(v.as_f64().unwrap_or(0.0)),
        FieldType::PbString => {
            let s = v.as_str().unwrap_or("");
            encode_varint(s.len() as u64, out);
            out.extend_from_slice(s.as_bytes());
        }
        FieldType::PbMessage(name) => {
            let mut body = Vec::new();
            match (layout(name), v) {
                (Some(fields), Value::Table(entries)) => {
                    let values: Vec<Option<Value>> = fields
                        .iter()
                        .map(|f| {
                            entries
                                .iter()
                                .find(|(k, _)| k == f.key)
                                .map(|(_, v)| v.clone())
                        })
                        .collect();
                    encode_fields(fields, &values, &mut body);
                }
                (None, Value::Table(entries)) => encode_raw_table(entries, &mut body),
                _ => {}
            }
            encode_varint(body.len() as u64, out);
            out.extend_from_slice(&body);
        }
        _ => {}
    }
}

fn encode_raw_table(entries: &[(String, Value)], out: &mut Vec<u8>) {
    for (key, value) in entries {
        // Keys that are not field numbers cannot be written.
        let Ok(tag) = key.parse::<u32>() else {
            continue;
        };
        if !(1..=(1 << 29) - 1).contains(&tag) {
            continue;
        }
        encode_raw_value(tag, value, out);
    }
}

fn encode_raw_value(tag: u32, value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Bool(b) => {
            encode_key(tag, WireType::Varint, out);
            encode_varint(*b as u64, out);
        }
        Value::Int(i) => {
            encode_key(tag, WireType::Varint, out);
            encode_varint(*i as u64, out);
        }
        Value::Float(f) => {
            encode_key(tag, WireType::SixtyFourBit, out);
            out.put_f64_le(*f);
        }
        Value::Str(s) => {
            encode_key(tag, WireType::LengthDelimited, out);
            encode_varint(s.len() as u64, out);
            out.extend_from_slice(s.as_bytes());
        }
        Value::List(items) => {
            for item in items {
                encode_raw_value(tag, item, out);
            }
        }
        Value::Table(entries) => {
            let mut body = Vec::new();
            encode_raw_table(entries, &mut body);
            encode_key(tag, WireType::LengthDelimited, out);
            encode_varint(body.len() as u64, out);
            out.extend_from_slice(&body);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{catalogue, Protocol};

    /// A value of every field, different from the proto3 default so that it
    /// travels, and varied by field number so that a swapped field shows.
    fn sample(field: &FieldDef) -> Value {
        let n = field.tag as i64;
        let one = |ty: FieldType| -> Value {
            match ty {
                FieldType::PbBool => Value::Bool(true),
                FieldType::PbInt32 => Value::Int(-n - 1),
                FieldType::PbEnum => Value::Int(n % 3 + 1),
                FieldType::PbUInt32 => Value::Int(4_000_000_000 - n),
                FieldType::PbInt64 => Value::Int(-1_700_000_000_000 - n),
                FieldType::PbUInt64 => Value::Int(-1 - n),
                FieldType::PbDouble => Value::Float(n as f64 + 0.25),
                FieldType::PbString => Value::Str(format!("é{n}\n\"x\"")),
                FieldType::PbMessage(name) => match layout(name) {
                    Some(fields) => Value::Table(
                        fields
                            .iter()
                            .map(|f| (f.key.to_owned(), sample(f)))
                            .collect(),
                    ),
                    None => Value::Table(vec![
                        ("1".into(), Value::Int(n)),
                        ("2".into(), Value::Str("raw".into())),
                        ("3".into(), Value::Float(1.5)),
                    ]),
                },
                _ => Value::Int(0),
            }
        };
        match field.label {
            Label::Repeated => Value::List(vec![one(field.ty), one(field.ty)]),
            _ => one(field.ty),
        }
    }

    fn sample_event(def: &'static EventDef) -> Event {
        let mut event = Event::new(def);
        for (slot, field) in event.values_mut().iter_mut().zip(def.fields) {
            *slot = Some(sample(field));
        }
        event
    }

    #[test]
    fn every_protobuf_event_round_trips() {
        let mut count = 0;
        for def in catalogue::EVENTS
            .iter()
            .filter(|d| d.protocol == Protocol::Protobuf)
        {
            let event = sample_event(def);
            let mut out = Vec::new();
            encode(&event, &mut out);
            let back = decode(def, &out).unwrap_or_else(|e| panic!("{}: {e}", def.name));
            assert_eq!(back, event, "{}", def.name);
            count += 1;
        }
        assert!(count > 60, "{count} protobuf events");
    }

    #[test]
    fn pb_ack_worked_example() {
        let def = catalogue::by_name("pb_ack").unwrap();
        let mut out = Vec::new();
        encode(&Event::new(def).with("acknowledged_events", 42), &mut out);
        assert_eq!(out, [0x08, 0x2a]);
    }

    #[test]
    fn absent_fields_take_proto3_defaults_and_unknown_ones_are_skipped() {
        let def = catalogue::by_name("pb_metric").unwrap();
        let mut out = Vec::new();
        // Field 99 (unknown, length-delimited), then metric_id = 7, then an
        // unknown varint and fixed32.
        encode_key(99, WireType::LengthDelimited, &mut out);
        encode_varint(3, &mut out);
        out.extend_from_slice(b"abc");
        encode_key(4, WireType::Varint, &mut out);
        encode_varint(7, &mut out);
        encode_key(100, WireType::Varint, &mut out);
        encode_varint(1, &mut out);
        encode_key(101, WireType::ThirtyTwoBit, &mut out);
        out.extend_from_slice(&[1, 2, 3, 4]);
        let event = decode(def, &out).unwrap();
        assert_eq!(event.get("metric_id"), Some(&Value::Int(7)));
        assert_eq!(event.get("value"), Some(&Value::Float(0.0)));
        assert_eq!(event.get("name"), Some(&Value::Str(String::new())));
    }

    #[test]
    fn optional_fields_stay_nil_when_absent() {
        let def = catalogue::by_name("AdaptiveHostStatus").unwrap();
        let event = decode(def, &[0x08, 0x05]).unwrap();
        assert_eq!(event.get("host_id"), Some(&Value::Int(5)));
        assert_eq!(event.get("notification_number"), None);
        // Present at its default value, an optional field is kept.
        let mut out = Vec::new();
        encode(&event.clone().with("notification_number", 0), &mut out);
        let back = decode(def, &out).unwrap();
        assert_eq!(back.get("notification_number"), Some(&Value::Int(0)));
    }

    #[test]
    fn unpacked_repeated_scalars_are_read() {
        let def = catalogue::by_name("remove_graph_message").unwrap();
        let mut out = Vec::new();
        for id in [3u64, 4] {
            encode_key(1, WireType::Varint, &mut out);
            encode_varint(id, &mut out);
        }
        let event = decode(def, &out).unwrap();
        assert_eq!(
            event.get("index_ids"),
            Some(&Value::List(vec![Value::Int(3), Value::Int(4)]))
        );
    }

    #[test]
    fn broken_messages_are_errors_not_panics() {
        let def = catalogue::by_name("ServiceStatus").unwrap();
        let mut out = Vec::new();
        encode(&sample_event(def), &mut out);
        for cut in 0..out.len() {
            let _ = decode(def, &out[..cut]);
        }
        assert!(decode(def, &[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]).is_err());
        assert!(decode(def, &[0x0b]).is_err(), "start group");
    }
}
