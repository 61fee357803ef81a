//! The bytes of the journal: records framed with a length and a checksum,
//! and the compact binary form of an event inside them.
//!
//! A record is a 24-byte header then the payload, little-endian:
//!
//! ```text
//! u32 payload length | u32 CRC-32C of the rest | u64 seq | i64 received (unix ms) | payload
//! ```
//!
//! The checksum covers the sequence number and the time as well as the
//! payload, so a record copied to the wrong place is caught too. The payload
//! is the event: its `_type`, then each non-nil field as its catalogue index
//! and a tagged value. Field names are not stored: the catalogue has them.
//! This is hand-written because it is the journal's hot path and its format
//! must stay stable across versions; a general serializer would store names
//! or need a schema language for what is a dozen lines.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use brokerstream_event::{catalogue, Event, EventType, Value};

pub const HEADER_LEN: usize = 24;
/// No event comes near this; a larger length means a corrupt header.
pub const MAX_PAYLOAD_LEN: usize = 16 * 1024 * 1024;
const MAX_DEPTH: usize = 32;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RecordError {
    #[error("the record is cut short")]
    Truncated,
    #[error("payload length {0} is beyond any valid record")]
    BadLength(usize),
    #[error("checksum mismatch")]
    Checksum,
    #[error("undecodable event: {0}")]
    Payload(String),
}

/// Appends the record of one event to `out`.
pub fn encode_record(seq: u64, received_at: SystemTime, payload: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&[0; HEADER_LEN - 4]);
    out.extend_from_slice(payload);
    seal_record(&mut out[start..], seq, unix_millis(received_at));
}

/// Appends the record of `event` to `out` with its length but without its
/// sequence number, time and checksum, which [`seal_record`] fills in once
/// they are known. Producers encode this way before taking the journal's
/// lock, straight into the bytes that are written: no second copy.
pub fn encode_unsealed(event: &Event, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER_LEN]);
    encode_event(event, out);
    let payload_len = (out.len() - start - HEADER_LEN) as u32;
    out[start..start + 4].copy_from_slice(&payload_len.to_le_bytes());
}

/// Completes the header of the one record `record` holds (as
/// [`encode_unsealed`] left it): sequence number, time, and the checksum
/// over both and the payload, computed in one pass over contiguous bytes.
pub fn seal_record(record: &mut [u8], seq: u64, received_millis: i64) {
    record[8..16].copy_from_slice(&seq.to_le_bytes());
    record[16..24].copy_from_slice(&received_millis.to_le_bytes());
    let crc = crc32c::crc32c(&record[8..]);
    record[4..8].copy_from_slice(&crc.to_le_bytes());
}

/// The time as a record stores it: milliseconds since the Unix epoch.
pub fn unix_millis(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A record read back: where it ends and what it holds.
#[derive(Debug)]
pub struct RawRecord<'a> {
    pub seq: u64,
    pub received_at: SystemTime,
    pub payload: &'a [u8],
    /// Bytes the record takes, header included.
    pub len: usize,
}

/// Reads the record at the start of `buf`.
pub fn decode_record(buf: &[u8]) -> Result<RawRecord<'_>, RecordError> {
    if buf.len() < HEADER_LEN {
        return Err(RecordError::Truncated);
    }
    let len =
        u32::from_le_bytes(buf[0..4].try_into().map_err(|_| RecordError::Truncated)?) as usize;
    if len > MAX_PAYLOAD_LEN {
        return Err(RecordError::BadLength(len));
    }
    if buf.len() < HEADER_LEN + len {
        return Err(RecordError::Truncated);
    }
    let crc = u32::from_le_bytes(buf[4..8].try_into().map_err(|_| RecordError::Truncated)?);
    let payload = &buf[HEADER_LEN..HEADER_LEN + len];
    if crc32c::crc32c(&buf[8..HEADER_LEN + len]) != crc {
        return Err(RecordError::Checksum);
    }
    let seq = u64::from_le_bytes(buf[8..16].try_into().map_err(|_| RecordError::Truncated)?);
    let millis = i64::from_le_bytes(buf[16..24].try_into().map_err(|_| RecordError::Truncated)?);
    Ok(RawRecord {
        seq,
        received_at: UNIX_EPOCH + Duration::from_millis(millis.max(0) as u64),
        payload,
        len: HEADER_LEN + len,
    })
}

const TAG_FALSE: u8 = 0;
const TAG_TRUE: u8 = 1;
const TAG_INT: u8 = 2;
const TAG_FLOAT: u8 = 3;
const TAG_STR: u8 = 4;
const TAG_LIST: u8 = 5;
const TAG_TABLE: u8 = 6;

pub fn encode_event(event: &Event, out: &mut Vec<u8>) {
    out.extend_from_slice(&event.event_type().0.to_le_bytes());
    let present = event.values().iter().filter(|v| v.is_some()).count();
    out.extend_from_slice(&(present as u16).to_le_bytes());
    for (index, value) in event.values().iter().enumerate() {
        if let Some(value) = value {
            out.extend_from_slice(&(index as u16).to_le_bytes());
            encode_value(value, out);
        }
    }
}

fn encode_value(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Bool(false) => out.push(TAG_FALSE),
        Value::Bool(true) => out.push(TAG_TRUE),
        Value::Int(i) => {
            out.push(TAG_INT);
            put_varint(((i << 1) ^ (i >> 63)) as u64, out);
        }
        Value::Float(x) => {
            out.push(TAG_FLOAT);
            out.extend_from_slice(&x.to_le_bytes());
        }
        Value::Str(s) => {
            out.push(TAG_STR);
            put_bytes(s.as_bytes(), out);
        }
        Value::List(items) => {
            out.push(TAG_LIST);
            put_varint(items.len() as u64, out);
            for item in items {
                encode_value(item, out);
            }
        }
        Value::Table(entries) => {
            out.push(TAG_TABLE);
            put_varint(entries.len() as u64, out);
            for (key, item) in entries {
                put_bytes(key.as_bytes(), out);
                encode_value(item, out);
            }
        }
    }
}

fn put_varint(mut n: u64, out: &mut Vec<u8>) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn put_bytes(bytes: &[u8], out: &mut Vec<u8>) {
    put_varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

struct Reader<'a> {
    buf: &'a [u8],
}

fn bad(what: &str) -> RecordError {
    RecordError::Payload(what.to_owned())
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], RecordError> {
        if self.buf.len() < n {
            return Err(bad("cut short"));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, RecordError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, RecordError> {
        Ok(u16::from_le_bytes(
            self.take(2)?.try_into().map_err(|_| bad("u16"))?,
        ))
    }
    fn varint(&mut self) -> Result<u64, RecordError> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.u8()?;
            n |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err(bad("varint too long"))
    }
    fn string(&mut self) -> Result<String, RecordError> {
        let len = usize::try_from(self.varint()?).map_err(|_| bad("length"))?;
        String::from_utf8(self.take(len)?.to_vec()).map_err(|_| bad("invalid UTF-8"))
    }
    fn value(&mut self, depth: usize) -> Result<Value, RecordError> {
        if depth > MAX_DEPTH {
            return Err(bad("nested too deep"));
        }
        Ok(match self.u8()? {
            TAG_FALSE => Value::Bool(false),
            TAG_TRUE => Value::Bool(true),
            TAG_INT => {
                let z = self.varint()?;
                Value::Int(((z >> 1) as i64) ^ -((z & 1) as i64))
            }
            TAG_FLOAT => Value::Float(f64::from_le_bytes(
                self.take(8)?.try_into().map_err(|_| bad("f64"))?,
            )),
            TAG_STR => Value::Str(self.string()?),
            TAG_LIST => {
                let n = self.varint()?;
                let mut items = Vec::new();
                for _ in 0..n {
                    items.push(self.value(depth + 1)?);
                }
                Value::List(items)
            }
            TAG_TABLE => {
                let n = self.varint()?;
                let mut entries = Vec::new();
                for _ in 0..n {
                    let key = self.string()?;
                    entries.push((key, self.value(depth + 1)?));
                }
                Value::Table(entries)
            }
            tag => return Err(RecordError::Payload(format!("unknown value tag {tag}"))),
        })
    }
}

pub fn decode_event(payload: &[u8]) -> Result<Event, RecordError> {
    let mut r = Reader { buf: payload };
    let ty = EventType(u32::from_le_bytes(
        r.take(4)?.try_into().map_err(|_| bad("type"))?,
    ));
    let def = catalogue::by_type(ty)
        .ok_or_else(|| RecordError::Payload(format!("unknown event type {ty}")))?;
    let mut event = Event::new(def);
    let present = r.u16()?;
    for _ in 0..present {
        let index = usize::from(r.u16()?);
        let value = r.value(0)?;
        let slot = event
            .values_mut()
            .get_mut(index)
            .ok_or_else(|| RecordError::Payload(format!("{} has no field #{index}", def.name)))?;
        *slot = Some(value);
    }
    if !r.buf.is_empty() {
        return Err(bad("trailing bytes"));
    }
    Ok(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn golden_events() -> Vec<Event> {
        let text = include_str!("../../tests/data/cbd-21.10/events-api-v1.jsonl");
        text.lines()
            .map(|l| Event::from_json(&serde_json::from_str(l).unwrap()).unwrap())
            .collect()
    }

    #[test]
    fn every_golden_event_round_trips() {
        for event in golden_events() {
            let mut payload = Vec::new();
            encode_event(&event, &mut payload);
            assert_eq!(decode_event(&payload).unwrap(), event);
        }
    }

    #[test]
    fn nested_values_and_extreme_integers_round_trip() {
        let mut event = Event::named("Comment").unwrap();
        event.set(
            "header",
            Value::Table(vec![("conf_version".into(), Value::Int(5))]),
        );
        event.set("host_id", Value::Int(i64::MIN));
        event.set("internal_id", Value::Int(-1));
        event.set("author", "é\"\n\\");
        let mut payload = Vec::new();
        encode_event(&event, &mut payload);
        assert_eq!(decode_event(&payload).unwrap(), event);
    }

    #[test]
    fn records_detect_every_single_bit_flip() {
        let event = &golden_events()[1];
        let mut payload = Vec::new();
        encode_event(event, &mut payload);
        let mut record = Vec::new();
        encode_record(42, SystemTime::now(), &payload, &mut record);
        let raw = decode_record(&record).unwrap();
        assert_eq!((raw.seq, raw.len), (42, record.len()));
        for byte in 0..record.len() {
            for bit in 0..8 {
                let mut flipped = record.clone();
                flipped[byte] ^= 1 << bit;
                assert!(
                    decode_record(&flipped).is_err(),
                    "flip at byte {byte} bit {bit} went unnoticed"
                );
            }
        }
        assert_eq!(
            decode_record(&record[..record.len() - 1]).unwrap_err(),
            RecordError::Truncated
        );
        assert_eq!(
            decode_record(&record[..10]).unwrap_err(),
            RecordError::Truncated
        );
    }

    #[test]
    fn records_sealed_in_place_keep_the_format() {
        let mut unsealed = Vec::new();
        let events = golden_events();
        for event in &events {
            encode_unsealed(event, &mut unsealed);
        }
        let received = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let mut offset = 0;
        for (seq, event) in (1u64..).zip(&events) {
            let mut payload = Vec::new();
            encode_event(event, &mut payload);
            let end = offset + HEADER_LEN + payload.len();
            seal_record(&mut unsealed[offset..end], seq, unix_millis(received));
            // The checksum as the format defines it: over seq and time, then
            // the payload.
            let mut tail = Vec::new();
            tail.extend_from_slice(&seq.to_le_bytes());
            tail.extend_from_slice(&1_700_000_000_123i64.to_le_bytes());
            let crc = crc32c::crc32c_append(crc32c::crc32c(&tail), &payload);
            let mut expected = Vec::new();
            expected.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            expected.extend_from_slice(&crc.to_le_bytes());
            expected.extend_from_slice(&tail);
            expected.extend_from_slice(&payload);
            assert_eq!(unsealed[offset..end], expected[..]);
            let mut encoded = Vec::new();
            encode_record(seq, received, &payload, &mut encoded);
            assert_eq!(encoded, expected);
            let raw = decode_record(&unsealed[offset..]).unwrap();
            assert_eq!(
                (raw.seq, raw.received_at, raw.len),
                (seq, received, end - offset)
            );
            assert_eq!(&decode_event(raw.payload).unwrap(), event);
            offset = end;
        }
        assert_eq!(offset, unsealed.len());
    }

    #[test]
    fn garbage_payloads_are_errors_not_panics() {
        for payload in [
            &b""[..],
            b"\x01\x00",
            b"\x01\x00\x01\x00\x01\x00\xff\x00",
            b"\x0e\x00\x01\x00\x01\x00\x00\x04\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",
        ] {
            assert!(decode_event(payload).is_err());
        }
    }
}
