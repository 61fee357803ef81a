//! BBDO 2 "mapped" payloads (docs/bbdo.md §6): every field of the catalogue
//! in order, hidden ones included, without names or separators. Integers are
//! big-endian, times 64-bit, strings NUL-terminated, doubles `%f` text.
//! Decoding applies each field's nil rule (§2.2); encoding writes the
//! sentinel back for a nil value, so decode → encode gives the same bytes.

use std::fmt::Write as _;

use crate::event::{Event, EventDef, FieldDef, FieldType, NilRule, Value};

use super::DecodeError;

/// Longest `%f` text Centreon writes, NUL included.
const MAX_DOUBLE_TEXT: usize = 32;

struct Reader<'a> {
    def: &'static EventDef,
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &FieldDef) -> Result<&'a [u8], DecodeError> {
        let end = self
            .offset
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len());
        match end {
            Some(end) => {
                let s = &self.bytes[self.offset..end];
                self.offset = end;
                Ok(s)
            }
            None => Err(self.truncated(field)),
        }
    }

    fn truncated(&self, field: &FieldDef) -> DecodeError {
        DecodeError::Field {
            event: self.def.name,
            field: field_name(field),
            reason: format!(
                "cannot extract {:?} value: payload ends at byte {}",
                field.ty,
                self.bytes.len()
            ),
        }
    }

    fn cstr(&mut self, field: &FieldDef) -> Result<&'a [u8], DecodeError> {
        let rest = &self.bytes[self.offset..];
        let nul = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| DecodeError::Field {
                event: self.def.name,
                field: field_name(field),
                reason: "cannot extract value: no NUL terminator in the rest of the payload".into(),
            })?;
        self.offset += nul + 1;
        Ok(&rest[..nul])
    }
}

fn field_name(field: &FieldDef) -> String {
    if field.is_hidden() {
        "(hidden)".to_owned()
    } else {
        field.key.to_owned()
    }
}

fn array<const N: usize>(s: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(s);
    a
}

/// Decodes a mapped payload. Bytes after the last field are ignored, so a
/// newer peer that appends fields is still understood.
pub fn decode(def: &'static EventDef, payload: &[u8]) -> Result<Event, DecodeError> {
    let mut r = Reader {
        def,
        bytes: payload,
        offset: 0,
    };
    let mut event = Event::new(def);
    for (slot, field) in event.values_mut().iter_mut().zip(def.fields) {
        if !field.on_wire {
            continue;
        }
        // Each arm writes its slot itself, nil rule applied on the raw
        // value: building a `Value` and passing it through
        // `apply_nil_rule` made the compiler copy it through the stack in
        // a way that stalled on every field (a third of decode's time).
        match field.ty {
            FieldType::Bool => *slot = Some(Value::Bool(r.take(1, field)?[0] != 0)),
            FieldType::Short => {
                let i = i16::from_be_bytes(array(r.take(2, field)?)).into();
                *slot = int_unless_nil(field, i);
            }
            FieldType::Int => {
                let i = i32::from_be_bytes(array(r.take(4, field)?)).into();
                *slot = int_unless_nil(field, i);
            }
            FieldType::UInt => {
                let i = u32::from_be_bytes(array(r.take(4, field)?)).into();
                *slot = int_unless_nil(field, i);
            }
            // u64 keeps its bit pattern in an i64, as Centreon pushes it to Lua.
            FieldType::ULong | FieldType::Time => {
                let i = i64::from_be_bytes(array(r.take(8, field)?));
                *slot = int_unless_nil(field, i);
            }
            FieldType::Str => {
                let bytes = r.cstr(field)?;
                if !(bytes.is_empty() && field.nil == NilRule::Zero) {
                    // Checking is quicker than the lossy conversion's
                    // chunking, and nearly every string is valid UTF-8.
                    *slot = Some(Value::Str(match std::str::from_utf8(bytes) {
                        Ok(text) => text.to_owned(),
                        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
                    }));
                }
            }
            FieldType::Double => {
                let text = r.cstr(field)?;
                let x = parse_double(text).ok_or_else(|| DecodeError::Field {
                    event: def.name,
                    field: field_name(field),
                    reason: format!(
                        "{:?} is not a number",
                        String::from_utf8_lossy(&text[..text.len().min(40)])
                    ),
                })?;
                *slot = Some(Value::Float(x));
            }
            other => {
                return Err(DecodeError::Field {
                    event: def.name,
                    field: field_name(field),
                    reason: format!("{other:?} is not a mapped type"),
                })
            }
        }
    }
    Ok(event)
}

/// An integer field's value, or nil by its nil rule: the same decision as
/// `apply_nil_rule`, taken before a `Value` exists.
fn int_unless_nil(field: &FieldDef, i: i64) -> Option<Value> {
    let nil = match field.nil {
        NilRule::Never => false,
        NilRule::Zero => i == 0,
        NilRule::MinusOne if field.ty == FieldType::UInt => i == u32::MAX as i64,
        NilRule::MinusOne => i == -1,
    };
    (!nil).then_some(Value::Int(i))
}

/// Centreon reads doubles with `strtod`, which takes any prefix that looks
/// like a number and gives 0 for garbage. Garbage here is refused instead:
/// an event whose value cannot be read is better dropped and counted than
/// delivered as a silent 0.
fn parse_double(text: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(text)
        .ok()?
        .trim_matches(|c: char| c.is_ascii_whitespace());
    text.parse().ok()
}

/// `snprintf("%f")`: fixed notation with 6 decimals, cut to 31 characters.
fn format_double(x: f64, out: &mut Vec<u8>) {
    let mut s = String::new();
    if x.is_nan() {
        s.push_str(if x.is_sign_negative() { "-nan" } else { "nan" });
    } else if x.is_infinite() {
        s.push_str(if x < 0.0 { "-inf" } else { "inf" });
    } else {
        let _ = write!(s, "{x:.6}");
    }
    s.truncate(MAX_DOUBLE_TEXT - 1);
    out.extend_from_slice(s.as_bytes());
    out.push(0);
}

/// The wire value of a nil field: the sentinel of its nil rule.
fn sentinel(field: &FieldDef) -> Value {
    match (field.ty, field.nil) {
        (FieldType::Bool, _) => Value::Bool(false),
        (FieldType::Str, _) => Value::Str(String::new()),
        (FieldType::Double, _) => Value::Float(0.0),
        (FieldType::UInt, NilRule::MinusOne) => Value::Int(u32::MAX.into()),
        (_, NilRule::MinusOne) => Value::Int(-1),
        _ => Value::Int(0),
    }
}

/// Appends the mapped payload of `event`. Values of the wrong variant
/// (impossible for events built through the catalogue) are written as the
/// field's sentinel, and integers are cut to the wire width, as a C++ cast
/// would.
pub fn encode(event: &Event, out: &mut Vec<u8>) {
    for (field, value) in event.def().fields.iter().zip(event.values()) {
        if !field.on_wire {
            continue;
        }
        let fallback;
        let value = match value {
            Some(v) => v,
            None => {
                fallback = sentinel(field);
                &fallback
            }
        };
        let int = || match value {
            Value::Int(i) => *i,
            Value::Bool(b) => *b as i64,
            Value::Float(f) => *f as i64,
            _ => 0,
        };
        match field.ty {
            FieldType::Bool => out.push(matches!(value, Value::Bool(true)) as u8),
            FieldType::Short => out.extend_from_slice(&(int() as i16).to_be_bytes()),
            FieldType::Int | FieldType::UInt => {
                out.extend_from_slice(&(int() as u32).to_be_bytes())
            }
            FieldType::ULong | FieldType::Time => out.extend_from_slice(&int().to_be_bytes()),
            FieldType::Str => {
                let s = value.as_str().unwrap_or("");
                // A NUL inside would end the string early for the reader.
                out.extend(s.bytes().filter(|&b| b != 0));
                out.push(0);
            }
            FieldType::Double => format_double(value.as_f64().unwrap_or(0.0), out),
            // Not a mapped type: the catalogue never mixes them.
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::catalogue;

    #[test]
    fn host_check_worked_example() {
        let def = catalogue::by_name("host_check").unwrap();
        let mut event = Event::new(def)
            .with("host_id", 42)
            .with("command_line", "./my_plugin -H 127.0.0.1");
        event.values_mut()[0] = Some(Value::Bool(true));
        event.values_mut()[1] = Some(Value::Int(0));
        event.values_mut()[3] = Some(Value::Int(1365080225));
        let mut out = Vec::new();
        encode(&event, &mut out);
        let mut expected = vec![1, 0, 0, 0, 0, 0, 0x2a, 0, 0, 0, 0, 0x51, 0x5d, 0x78, 0xa1];
        expected.extend_from_slice(b"./my_plugin -H 127.0.0.1\0");
        assert_eq!(out, expected);
        assert_eq!(decode(def, &out).unwrap(), event);
    }

    #[test]
    fn doubles_are_percent_f_text() {
        let mut out = Vec::new();
        for x in [5.0, 0.25, -1.5, 1e300, f64::NAN, f64::NEG_INFINITY] {
            format_double(x, &mut out);
        }
        let texts: Vec<&str> = out
            .split(|&b| b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| std::str::from_utf8(s).unwrap())
            .collect();
        assert_eq!(texts[..3], ["5.000000", "0.250000", "-1.500000"]);
        assert_eq!(texts[3].len(), 31);
        assert_eq!(texts[4..], ["nan", "-inf"]);
        assert_eq!(parse_double(b" 1.5e3"), Some(1500.0));
        assert_eq!(parse_double(b"abc"), None);
    }

    #[test]
    fn nil_values_travel_as_sentinels() {
        let def = catalogue::by_name("downtime").unwrap();
        let event = Event::new(def);
        let mut out = Vec::new();
        encode(&event, &mut out);
        // actual_end_time: nil if -1.
        assert_eq!(&out[..8], &[0xff; 8]);
        let back = decode(def, &out).unwrap();
        assert_eq!(back.get("actual_end_time"), None);
        assert_eq!(back.get("fixed"), Some(&Value::Bool(false)));
    }

    #[test]
    fn truncated_and_unterminated_fields_are_errors() {
        let def = catalogue::by_name("metric").unwrap();
        let event = Event::new(def).with("name", "cpu").with("value", 1.0);
        let mut out = Vec::new();
        encode(&event, &mut out);
        for cut in 0..out.len() {
            assert!(decode(def, &out[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad = out.clone();
        let at = bad.windows(9).position(|w| w == b"1.000000\0").unwrap();
        bad[at..at + 8].copy_from_slice(b"1.0x0000");
        let err = decode(def, &bad).unwrap_err().to_string();
        assert!(
            err.contains("`value`") && err.contains("not a number"),
            "{err}"
        );
    }

    #[test]
    fn every_mapped_event_round_trips_with_defaults() {
        for def in catalogue::EVENTS
            .iter()
            .filter(|d| d.protocol == crate::event::Protocol::Mapped)
        {
            let mut out = Vec::new();
            encode(&Event::new(def), &mut out);
            let back = decode(def, &out).unwrap();
            let mut again = Vec::new();
            encode(&back, &mut again);
            assert_eq!(out, again, "{}", def.name);
        }
    }
}
