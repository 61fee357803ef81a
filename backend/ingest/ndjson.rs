//! NDJSON ingest: one event per line in its JSON form.
//!
//! A request is taken whole or not at all: if any line is invalid, nothing
//! is accepted and every bad line is reported with its number and reason
//! (up to [`MAX_REPORTED_ERRORS`]). A producer can then fix and resend the
//! same request without creating duplicates. A line longer than the limit
//! (`limits.max_ndjson_line_bytes`) is such an invalid line: it is not
//! parsed at all.

use serde::Serialize;

use crate::event::Event;
use crate::journal::EncodedBatch;

pub const MAX_REPORTED_ERRORS: usize = 20;

#[derive(Debug, PartialEq, Serialize)]
pub struct LineError {
    /// 1-based line number in the request body.
    pub line: usize,
    pub message: String,
}

/// Parses a body; blank lines are skipped. Lines are not limited in size.
pub fn parse(body: &[u8]) -> Result<Vec<Event>, Vec<LineError>> {
    parse_with_limit(body, usize::MAX)
}

/// Parses a body whose lines may hold at most `max_line` bytes.
pub fn parse_with_limit(body: &[u8], max_line: usize) -> Result<Vec<Event>, Vec<LineError>> {
    let mut parser = Parser::new(max_line);
    parser.feed(body);
    parser.finish()
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Parses a body fed in chunks of any size, as they arrive: what it holds
/// besides the events is the line being read, never more than the line
/// limit (a longer line is counted, not kept).
pub struct Parser {
    max_line: usize,
    /// The current line, up to `max_line` bytes, a `\r` and a BOM.
    line: Vec<u8>,
    /// Its length so far, kept or not.
    line_len: usize,
    last_byte: u8,
    /// 1-based number of the current line.
    number: usize,
    events: Sink,
    errors: Vec<LineError>,
}

/// Where the parsed events go. A large body is encoded as it is parsed, each
/// event dropped once in its record form: a decoded event takes several
/// times the memory of its JSON line, its record about as much as the line.
enum Sink {
    Events(Vec<Event>),
    Encoded(EncodedBatch),
}

impl Parser {
    /// A parser that keeps the decoded events.
    pub fn new(max_line: usize) -> Parser {
        Parser::with_sink(max_line, Sink::Events(Vec::new()))
    }

    /// A parser that keeps the events in the journal's record form only.
    pub fn encoding(max_line: usize) -> Parser {
        Parser::with_sink(max_line, Sink::Encoded(EncodedBatch::default()))
    }

    fn with_sink(max_line: usize, events: Sink) -> Parser {
        Parser {
            max_line,
            line: Vec::new(),
            line_len: 0,
            last_byte: 0,
            number: 1,
            events,
            errors: Vec::new(),
        }
    }

    pub fn feed(&mut self, mut chunk: &[u8]) {
        while let Some(end) = memchr::memchr(b'\n', chunk) {
            self.keep(&chunk[..end]);
            self.end_line();
            chunk = &chunk[end + 1..];
        }
        self.keep(chunk);
    }

    fn keep(&mut self, bytes: &[u8]) {
        // Room for a `\r`, and a byte order mark on the first line.
        let room = self
            .max_line
            .saturating_add(1 + BOM.len())
            .saturating_sub(self.line.len());
        self.line.extend_from_slice(&bytes[..bytes.len().min(room)]);
        self.line_len += bytes.len();
        if let Some(last) = bytes.last() {
            self.last_byte = *last;
        }
    }

    fn end_line(&mut self) {
        let mut len = self.line_len;
        if self.last_byte == b'\r' && len > 0 {
            len -= 1;
        }
        let kept = len.min(self.line.len());
        let mut line = std::mem::take(&mut self.line);
        line.truncate(kept);
        // A byte order mark opens the body (some Windows tools write one).
        if self.number == 1 && line.starts_with(BOM) {
            line.drain(..BOM.len());
            len -= BOM.len();
        }
        let number = self.number;
        self.number += 1;
        self.line_len = 0;
        self.last_byte = 0;
        let result = if len > self.max_line {
            Err(format!(
                "the line is {len} bytes, longer than the {}-byte limit (limits.max_ndjson_line_bytes)",
                self.max_line
            ))
        } else if line.iter().all(u8::is_ascii_whitespace) {
            Ok(None)
        } else {
            parse_line(&line).map(Some)
        };
        // The buffer is used again for the next line.
        line.clear();
        self.line = line;
        match result {
            // Once a line is bad the body is refused whole: what follows
            // is only checked, not kept.
            Ok(Some(_)) if !self.errors.is_empty() => {}
            Ok(Some(event)) => match &mut self.events {
                Sink::Events(events) => events.push(event),
                Sink::Encoded(batch) => batch.push(&event),
            },
            Ok(None) => {}
            Err(message) => {
                if self.errors.is_empty() {
                    self.events = match self.events {
                        Sink::Events(_) => Sink::Events(Vec::new()),
                        Sink::Encoded(_) => Sink::Encoded(EncodedBatch::default()),
                    };
                }
                if self.errors.len() < MAX_REPORTED_ERRORS {
                    self.errors.push(LineError {
                        line: number,
                        message,
                    })
                }
            }
        }
    }

    /// Ends the last line, and answers for the whole body.
    pub fn finish(self) -> Result<Vec<Event>, Vec<LineError>> {
        match self.finish_sink()? {
            Sink::Events(events) => Ok(events),
            Sink::Encoded(batch) => Ok(batch.decode()),
        }
    }

    /// [`Parser::finish`] for a parser made by [`Parser::encoding`].
    pub fn finish_encoded(self) -> Result<EncodedBatch, Vec<LineError>> {
        match self.finish_sink()? {
            Sink::Encoded(batch) => Ok(batch),
            Sink::Events(events) => {
                let mut batch = EncodedBatch::default();
                for event in &events {
                    batch.push(event);
                }
                Ok(batch)
            }
        }
    }

    fn finish_sink(mut self) -> Result<Sink, Vec<LineError>> {
        self.end_line();
        if self.errors.is_empty() {
            Ok(self.events)
        } else {
            Err(self.errors)
        }
    }
}

fn parse_line(line: &[u8]) -> Result<Event, String> {
    let json = strict::from_slice(line)?;
    let event = Event::from_json(&json).map_err(|e| e.to_string())?;
    if is_protocol_control(&event) {
        return Err(format!(
            "`{}` is a BBDO protocol message, consumed by the connection and never ingested",
            event.def().name
        ));
    }
    Ok(event)
}

/// JSON as `serde_json::Value`, but refusing what `Value` would silently
/// accept: a key given twice (`Value` keeps the last one) and a string
/// holding U+0000 (C strings, Lua patterns and log files cut at it).
mod strict {
    use std::fmt;

    use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
    use serde_json::{Map, Number, Value};

    pub fn from_slice(line: &[u8]) -> Result<Value, String> {
        let mut de = serde_json::Deserializer::from_slice(line);
        let parsed = Strict
            .deserialize(&mut de)
            .and_then(|v| de.end().map(|()| v));
        parsed.map_err(|e| {
            if e.is_data() {
                // Our own refusal: its text, without serde's position.
                let text = e.to_string();
                let position = format!(" at line {} column {}", e.line(), e.column());
                text.strip_suffix(&position).unwrap_or(&text).to_owned()
            } else {
                format!("invalid JSON: {e}")
            }
        })
    }

    fn check<E: de::Error>(text: &str) -> Result<(), E> {
        if text.contains('\0') {
            return Err(E::custom(
                "a string contains \\u0000 (NUL), which no event may carry",
            ));
        }
        Ok(())
    }

    struct Strict;

    impl<'de> DeserializeSeed<'de> for Strict {
        type Value = Value;
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
            d.deserialize_any(Strict)
        }
    }

    impl<'de> Visitor<'de> for Strict {
        type Value = Value;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON value")
        }
        fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
            Ok(Value::Bool(v))
        }
        fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
            Ok(Value::from(v))
        }
        fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
            Ok(Value::from(v))
        }
        fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
            Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
            check(v)?;
            Ok(Value::String(v.to_owned()))
        }
        fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
            check(&v)?;
            Ok(Value::String(v))
        }
        fn visit_unit<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_none<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
            let mut items = Vec::new();
            while let Some(item) = seq.next_element_seed(Strict)? {
                items.push(item);
            }
            Ok(Value::Array(items))
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
            let mut object = Map::new();
            while let Some(key) = map.next_key::<String>()? {
                check(&key)?;
                if object.contains_key(&key) {
                    return Err(de::Error::custom(format!("duplicate key `{key}`")));
                }
                let value = map.next_value_seed(Strict)?;
                object.insert(key, value);
            }
            Ok(Value::Object(object))
        }
    }
}

/// Category 2 events other than the three the broker publishes internally
/// (rebuild_graphs, remove_graphs, remove_poller) belong to the stream.
fn is_protocol_control(event: &Event) -> bool {
    let ty = event.event_type();
    ty.category() == 2 && !matches!(ty.element(), 4..=6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_every_bad_line_and_accepts_nothing() {
        let body =
            b"{\"_type\":196609,\"metric_id\":1,\"value\":1.5}\n\nnot json\n{\"_type\":1}\r\n";
        let errors = parse(body).unwrap_err();
        assert_eq!(errors.len(), 2);
        assert_eq!(errors[0].line, 3);
        assert!(
            errors[0].message.starts_with("invalid JSON"),
            "{}",
            errors[0].message
        );
        assert_eq!(errors[1].line, 4);
        assert!(
            errors[1].message.contains("unknown event type"),
            "{}",
            errors[1].message
        );
    }

    #[test]
    fn accepts_valid_lines_and_skips_blank_ones() {
        let body = b"{\"_type\":196609,\"metric_id\":1,\"value\":1.5}\r\n   \n{\"category\":3,\"element\":1}";
        assert_eq!(parse(body).unwrap().len(), 2);
    }

    #[test]
    fn a_line_over_the_limit_is_refused_unparsed_with_its_number() {
        let good = br#"{"_type":196609,"metric_id":1,"value":1.5}"#;
        let mut body = good.to_vec();
        body.extend_from_slice(b"\n");
        body.extend_from_slice(good);
        body.extend_from_slice(b"\n");
        assert_eq!(parse_with_limit(&body, good.len()).unwrap().len(), 2);
        let errors = parse_with_limit(&body, good.len() - 1).unwrap_err();
        assert_eq!(errors.len(), 2);
        assert_eq!(errors[1].line, 2);
        assert!(
            errors[0].message.contains("limits.max_ndjson_line_bytes"),
            "{}",
            errors[0].message
        );
    }

    #[test]
    fn fed_in_chunks_of_any_size_it_parses_the_same() {
        let body = b"\xEF\xBB\xBF{\"_type\":196609,\"metric_id\":1,\"value\":1.5}\r\n\n{\"_type\":196609,\"metric_id\":2}\r\nnot json\r\n";
        let whole = parse_with_limit(body, 60).unwrap_err();
        assert_eq!(whole.len(), 1, "{whole:?}");
        assert_eq!(whole[0].line, 4);
        for size in 1..body.len() {
            let mut parser = Parser::new(60);
            for chunk in body.chunks(size) {
                parser.feed(chunk);
            }
            assert_eq!(parser.finish().unwrap_err(), whole, "chunks of {size}");
        }
        // Only the line limit is held of a long line, and its length said.
        let mut parser = Parser::new(10);
        parser.feed(&[b'x'; 1000]);
        assert!(parser.line.len() <= 14);
        parser.feed(b"\r\n{}");
        let errors = parser.finish().unwrap_err();
        assert!(
            errors[0].message.starts_with("the line is 1000 bytes"),
            "{errors:?}"
        );
    }

    #[test]
    fn refuses_nul_in_strings_and_duplicate_keys_and_takes_a_bom() {
        let errors = parse(b"{\"_type\":196609,\"metric_id\":1,\"name\":\"a\\u0000b\"}\n{\"_type\":196609,\"metric_id\":1,\"metric_id\":2}").unwrap_err();
        assert_eq!(errors.len(), 2);
        assert_eq!(errors[0].line, 1);
        assert_eq!(
            errors[0].message,
            "a string contains \\u0000 (NUL), which no event may carry"
        );
        assert_eq!(errors[1].line, 2);
        assert_eq!(errors[1].message, "duplicate key `metric_id`");
        assert_eq!(
            parse(b"\xEF\xBB\xBF{\"_type\":196609,\"metric_id\":1}\n")
                .unwrap()
                .len(),
            1
        );
        // Only at the start of the body.
        assert!(parse(b"{\"_type\":196609}\n\xEF\xBB\xBF{\"_type\":196609}").is_err());
    }

    #[test]
    fn refuses_protocol_messages() {
        let errors = parse(b"{\"_type\":131074,\"acknowledged_events\":3}").unwrap_err();
        assert!(
            errors[0].message.contains("protocol"),
            "{}",
            errors[0].message
        );
    }
}
