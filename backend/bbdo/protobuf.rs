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
//! Nested messages decode to a `Value::Table` keyed by field name, from
//! the layouts the catalogue holds (`catalogue::message`), and every
//! message, the event's own included, is completed by the proto3 presence
//! rules (`event::proto3`): an unset sub-message is a table of its
//! defaults (`header` is `{conf_version = 0}`), and once one member of a
//! oneof is set, every member is present. `bytes` travel as hexadecimal
//! text. Nesting deeper than `event::MAX_NESTING` is refused: OpenTelemetry
//! values can contain themselves.

use bytes::{Buf, BufMut};
use prost::encoding::{decode_key, decode_varint, encode_key, encode_varint, WireType};

use crate::event::{
    catalogue, proto3, Event, EventDef, FieldDef, FieldType, Label, Value, MAX_NESTING,
};

use super::DecodeError;

fn layout(message: &str) -> &'static [FieldDef] {
    catalogue::message(message).unwrap_or(&[])
}

fn wire_type(ty: FieldType) -> WireType {
    match ty {
        FieldType::PbDouble | FieldType::PbFixed64 | FieldType::PbSFixed64 => {
            WireType::SixtyFourBit
        }
        FieldType::PbString | FieldType::PbBytes | FieldType::PbMessage(_) => {
            WireType::LengthDelimited
        }
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
    let values = decode_fields(def.fields, payload, 0).map_err(|e| err(def.name, e))?;
    for (slot, value) in event.values_mut().iter_mut().zip(values) {
        *slot = value;
    }
    Ok(event)
}

/// One slot per field of `fields`, filled from the message bytes.
fn decode_fields(
    fields: &[FieldDef],
    mut buf: &[u8],
    depth: usize,
) -> Result<Vec<Option<Value>>, String> {
    if depth > MAX_NESTING {
        return Err(format!("messages nested deeper than {MAX_NESTING} levels"));
    }
    let mut values: Vec<Option<Value>> = vec![None; fields.len()];
    let mut next = 0;
    while buf.has_remaining() {
        let (tag, wt) = decode_key(&mut buf).map_err(|e| e.to_string())?;
        // Writers emit fields in number order, which is mostly declaration
        // order: try the field after the last one first.
        let index = match fields.get(next) {
            Some(f) if f.tag == tag => Some(next),
            _ => fields.iter().position(|f| f.tag == tag),
        };
        let Some(index) = index else {
            skip(wt, &mut buf)?;
            continue;
        };
        next = index + 1;
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
                    items.push(scalar(field.ty, &mut packed, depth)?);
                }
            } else if wt == expected {
                items.push(scalar(field.ty, &mut buf, depth)?);
            } else {
                skip(wt, &mut buf)?;
            }
        } else if wt == expected {
            // Last one wins, as protobuf merges repeated occurrences of a
            // scalar.
            values[index] = Some(scalar(field.ty, &mut buf, depth)?);
        } else {
            skip(wt, &mut buf)?;
        }
    }
    // The plain scalars and lists here, on the hot path; sub-message
    // defaults and oneofs, rarer, by the shared rules.
    let mut rest = false;
    for (slot, field) in values.iter_mut().zip(fields) {
        if slot.is_some() {
            continue;
        }
        match (field.label, field.ty) {
            (Label::Repeated, _) => *slot = Some(Value::List(Vec::new())),
            (Label::Optional, _) => {}
            (Label::Single, FieldType::PbMessage(_)) | (Label::OneOf(_), _) => rest = true,
            (Label::Single, ty) => *slot = Some(ty.proto3_default()),
        }
    }
    if rest {
        proto3::complete(fields, &mut values);
    }
    Ok(values)
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

fn scalar(ty: FieldType, buf: &mut &[u8], depth: usize) -> Result<Value, String> {
    let varint = |buf: &mut &[u8]| decode_varint(buf).map_err(|e| e.to_string());
    let fixed64 = |buf: &mut &[u8]| {
        if buf.len() < 8 {
            return Err("message ends inside a 64-bit field".to_owned());
        }
        Ok(buf.get_u64_le())
    };
    Ok(match ty {
        FieldType::PbBool => Value::Bool(varint(buf)? != 0),
        FieldType::PbInt32 | FieldType::PbEnum => Value::Int((varint(buf)? as i32).into()),
        FieldType::PbUInt32 => Value::Int((varint(buf)? as u32).into()),
        FieldType::PbInt64 | FieldType::PbUInt64 => Value::Int(varint(buf)? as i64),
        FieldType::PbSInt32 => {
            let n = varint(buf)? as u32;
            Value::Int(i64::from((n >> 1) as i32 ^ -((n & 1) as i32)))
        }
        FieldType::PbFixed64 | FieldType::PbSFixed64 => Value::Int(fixed64(buf)? as i64),
        FieldType::PbDouble => Value::Float(f64::from_bits(fixed64(buf)?)),
        FieldType::PbString => Value::Str(String::from_utf8_lossy(length_delimited(buf)?).into()),
        FieldType::PbBytes => Value::Str(hex::encode(length_delimited(buf)?)),
        FieldType::PbMessage(name) => {
            let fields = layout(name);
            let values = decode_fields(fields, length_delimited(buf)?, depth + 1)?;
            proto3::message_table(fields, values)
        }
        other => return Err(format!("{other:?} is not a protobuf type")),
    })
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
        FieldType::PbSInt32 => {
            let n = int_of(v) as i32;
            encode_varint(u64::from(((n << 1) ^ (n >> 31)) as u32), out)
        }
        FieldType::PbFixed64 | FieldType::PbSFixed64 => out.put_u64_le(int_of(v) as u64),
        FieldType::PbDouble => out.put_f64_le(v.as_f64().unwrap_or(0.0)),
        FieldType::PbBytes => {
            // Ingest checks that bytes fields hold hexadecimal text; what is
            // not (an event built in code) is written as its UTF-8 bytes.
            let s = v.as_str().unwrap_or("");
            let bytes = hex::decode(s).unwrap_or_else(|_| s.as_bytes().to_vec());
            encode_varint(bytes.len() as u64, out);
            out.extend_from_slice(&bytes);
        }
        FieldType::PbString => {
            let s = v.as_str().unwrap_or("");
            encode_varint(s.len() as u64, out);
            out.extend_from_slice(s.as_bytes());
        }
        FieldType::PbMessage(name) => {
            let mut body = Vec::new();
            if let Value::Table(entries) = v {
                let fields = layout(name);
                let values: Vec<Option<Value>> = fields
                    .iter()
                    .map(|f| proto3::entry(entries, f.key).cloned())
                    .collect();
                encode_fields(fields, &values, &mut body);
            }
            encode_varint(body.len() as u64, out);
            out.extend_from_slice(&body);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{catalogue, Protocol};

    /// A value of every field, different from the proto3 default so that it
    /// travels, and varied by field number so that a swapped field shows;
    /// sub-messages filled the same way, down to `depth` levels (the
    /// OpenTelemetry values contain themselves).
    fn sample(field: &FieldDef, depth: usize) -> Value {
        let n = field.tag as i64;
        let one = |ty: FieldType| -> Value {
            match ty {
                FieldType::PbBool => Value::Bool(true),
                FieldType::PbInt32 => Value::Int(-n - 1),
                FieldType::PbSInt32 => Value::Int(-n - 70_000),
                FieldType::PbEnum => Value::Int(n % 3 + 1),
                FieldType::PbUInt32 => Value::Int(4_000_000_000 - n),
                FieldType::PbInt64 | FieldType::PbSFixed64 => Value::Int(-1_700_000_000_000 - n),
                FieldType::PbUInt64 | FieldType::PbFixed64 => Value::Int(-1 - n),
                FieldType::PbDouble => Value::Float(n as f64 + 0.25),
                FieldType::PbString => Value::Str(format!("é{n}\n\"x\"")),
                FieldType::PbBytes => Value::Str(format!("00ff{n:02x}")),
                FieldType::PbMessage(name) => Value::Table(
                    layout(name)
                        .iter()
                        .filter(|f| depth < 4 || !matches!(f.label, Label::OneOf(_)))
                        .map(|f| match f.label {
                            Label::Repeated if depth >= 4 => {
                                (f.key.to_owned(), Value::List(Vec::new()))
                            }
                            _ => (f.key.to_owned(), sample(f, depth + 1)),
                        })
                        .collect(),
                ),
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
            *slot = Some(sample(field, 0));
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
