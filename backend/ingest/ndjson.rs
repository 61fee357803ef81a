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
    let mut events = Vec::new();
    let mut errors = Vec::new();
    for (index, line) in body.split(|b| *b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.len() > max_line {
            if errors.len() < MAX_REPORTED_ERRORS {
                errors.push(LineError {
                    line: index + 1,
                    message: format!(
                        "the line is {} bytes, longer than the {max_line}-byte limit (limits.max_ndjson_line_bytes)",
                        line.len()
                    ),
                });
            }
            continue;
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let result = serde_json::from_slice::<serde_json::Value>(line)
            .map_err(|e| format!("invalid JSON: {e}"))
            .and_then(|json| Event::from_json(&json).map_err(|e| e.to_string()))
            .and_then(|event| {
                if is_protocol_control(&event) {
                    Err(format!(
                        "`{}` is a BBDO protocol message, consumed by the connection and never ingested",
                        event.def().name
                    ))
                } else {
                    Ok(event)
                }
            });
        match result {
            Ok(event) => events.push(event),
            Err(message) if errors.len() < MAX_REPORTED_ERRORS => errors.push(LineError {
                line: index + 1,
                message,
            }),
            Err(_) => {}
        }
    }
    if errors.is_empty() {
        Ok(events)
    } else {
        Err(errors)
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
    fn refuses_protocol_messages() {
        let errors = parse(b"{\"_type\":131074,\"acknowledged_events\":3}").unwrap_err();
        assert!(
            errors[0].message.contains("protocol"),
            "{}",
            errors[0].message
        );
    }
}
