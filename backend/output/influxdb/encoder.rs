//! InfluxDB line protocol from Centreon events, as Centreon's InfluxDB
//! guide lays points out: the measurement is the service description, the
//! tag `host` the host name, the field the metric name, the time the
//! event's `ctime`.

use std::fmt::Write as _;

use crate::cache::Cache;
use crate::event::{Event, Value};
use crate::output::lua::perfdata;

/// How a timestamp in seconds is written, matching the `precision` query
/// parameter of the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    Seconds,
    Milliseconds,
    Microseconds,
    Nanoseconds,
}

impl Precision {
    pub fn parse(text: &str) -> Option<Precision> {
        match text {
            "s" => Some(Precision::Seconds),
            "ms" => Some(Precision::Milliseconds),
            "us" | "u" => Some(Precision::Microseconds),
            "ns" | "n" => Some(Precision::Nanoseconds),
            _ => None,
        }
    }

    pub fn as_query(self) -> &'static str {
        match self {
            Precision::Seconds => "s",
            Precision::Milliseconds => "ms",
            Precision::Microseconds => "u",
            Precision::Nanoseconds => "ns",
        }
    }

    fn scale(self, seconds: i64) -> i64 {
        let factor = match self {
            Precision::Seconds => 1,
            Precision::Milliseconds => 1_000,
            Precision::Microseconds => 1_000_000,
            Precision::Nanoseconds => 1_000_000_000,
        };
        seconds.saturating_mul(factor)
    }
}

pub struct Encoder {
    pub precision: Precision,
    /// Also write the perfdata of service and host statuses.
    pub status_perfdata: bool,
}

/// The measurement of a host's own perfdata, which has no service.
pub const HOST_MEASUREMENT: &str = "_HOST_";

impl Encoder {
    /// Appends the lines of one event (none when it carries no point).
    pub fn encode(&self, event: &Event, cache: &Cache, out: &mut Vec<u8>) {
        let name = event.def().name;
        match name {
            "metric" | "pb_metric" => self.metric(event, cache, out),
            "service_status" | "ServiceStatus" | "host_status" | "HostStatus"
                if self.status_perfdata =>
            {
                self.perfdata(event, cache, out)
            }
            _ => {}
        }
    }

    fn metric(&self, event: &Event, cache: &Cache, out: &mut Vec<u8>) {
        let (Some(field), Some(value)) = (
            event.get("name").and_then(Value::as_str),
            event.get("value").and_then(Value::as_f64),
        ) else {
            return;
        };
        let Some(time) = int(event, "ctime").or_else(|| int(event, "time")) else {
            return;
        };
        if !value.is_finite() || field.is_empty() {
            // Line protocol has no NaN or infinity: such a point cannot be
            // written, and a batch holding one would be refused whole.
            return;
        }
        let (host_id, service_id) = ids(event, cache);
        let mut line = String::with_capacity(96);
        push_head(&mut line, cache, host_id, service_id);
        line.push(' ');
        escape_key(field, &mut line);
        let _ = write!(line, "={value} {}", self.precision.scale(time));
        line.push('\n');
        out.extend_from_slice(line.as_bytes());
    }

    fn perfdata(&self, event: &Event, cache: &Cache, out: &mut Vec<u8>) {
        let Some(text) = event.get("perfdata").and_then(Value::as_str) else {
            return;
        };
        let Some(time) = int(event, "last_check") else {
            return;
        };
        let metrics = perfdata::parse(text);
        let mut fields = String::new();
        for metric in metrics.iter().filter(|m| m.value.is_finite()) {
            if !fields.is_empty() {
                fields.push(',');
            }
            escape_key(&metric.label, &mut fields);
            let _ = write!(fields, "={}", metric.value);
        }
        if fields.is_empty() {
            return;
        }
        let host_id = int(event, "host_id").unwrap_or(0);
        let service_id = int(event, "service_id").unwrap_or(0);
        let mut line = String::with_capacity(64 + fields.len());
        push_head(&mut line, cache, host_id, service_id);
        line.push(' ');
        line.push_str(&fields);
        let _ = write!(line, " {}", self.precision.scale(time));
        line.push('\n');
        out.extend_from_slice(line.as_bytes());
    }
}

fn int(event: &Event, key: &str) -> Option<i64> {
    event.get(key).and_then(Value::as_i64)
}

/// A metric's host and service: from the event, or (BBDO 2 metrics of old
/// brokers carry neither) through the index and metric mappings.
fn ids(event: &Event, cache: &Cache) -> (i64, i64) {
    let host = int(event, "host_id").unwrap_or(0);
    let service = int(event, "service_id").unwrap_or(0);
    if host != 0 {
        return (host, service);
    }
    int(event, "metric_id")
        .and_then(|id| cache.metric_mapping(id))
        .and_then(|m| cache.index_mapping(m.index_id))
        .map_or((host, service), |m| (m.host_id, m.service_id))
}

/// `measurement,host=name`. Names the cache does not know yet are written
/// as their ids, so the point is kept rather than lost.
fn push_head(line: &mut String, cache: &Cache, host_id: i64, service_id: i64) {
    let measurement = if service_id == 0 {
        Some(HOST_MEASUREMENT.to_owned())
    } else {
        cache.service_description(host_id, service_id)
    };
    match measurement.filter(|m| !m.is_empty()) {
        Some(m) => escape_measurement(&m, line),
        None => {
            let _ = write!(line, "{service_id}");
        }
    }
    line.push_str(",host=");
    match cache.host_name(host_id).filter(|h| !h.is_empty()) {
        Some(h) => escape_key(&h, line),
        None => {
            let _ = write!(line, "{host_id}");
        }
    }
}

/// Measurements escape commas and spaces.
pub fn escape_measurement(text: &str, out: &mut String) {
    escape(text, &[',', ' '], out)
}

/// Tag keys, tag values and field keys also escape `=`.
pub fn escape_key(text: &str, out: &mut String) {
    escape(text, &[',', '=', ' '], out)
}

fn escape(text: &str, special: &[char], out: &mut String) {
    for c in text.chars() {
        match c {
            // A line break would end the point: written as the two
            // characters `\n`, which line protocol keeps as they are.
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if special.contains(&c) => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    // A trailing backslash would escape the separator after it.
    if text.ends_with('\\') {
        out.push('\\');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache() -> std::sync::Arc<Cache> {
        let cache = Cache::new();
        let host = Event::named("host")
            .unwrap()
            .with("host_id", 1i64)
            .with("name", "srv 01,eu");
        let service = Event::named("service")
            .unwrap()
            .with("host_id", 1i64)
            .with("service_id", 3i64)
            .with("description", "Disk /var,used");
        cache.update(&host);
        cache.update(&service);
        cache
    }

    fn metric(name: &str, value: f64) -> Event {
        Event::named("metric")
            .unwrap()
            .with("host_id", 1i64)
            .with("service_id", 3i64)
            .with("metric_id", 12i64)
            .with("name", name)
            .with("value", value)
            .with("ctime", 1_732_000_000i64)
    }

    fn encode(encoder: &Encoder, event: &Event, cache: &Cache) -> String {
        let mut out = Vec::new();
        encoder.encode(event, cache, &mut out);
        String::from_utf8(out).unwrap()
    }

    const SECONDS: Encoder = Encoder {
        precision: Precision::Seconds,
        status_perfdata: false,
    };

    #[test]
    fn metric_lines_escape_names() {
        let cache = cache();
        assert_eq!(
            encode(&SECONDS, &metric("used=bytes", 42.5), &cache),
            "Disk\\ /var\\,used,host=srv\\ 01\\,eu used\\=bytes=42.5 1732000000\n"
        );
    }

    #[test]
    fn precision_scales_the_timestamp() {
        let cache = cache();
        let encoder = Encoder {
            precision: Precision::Milliseconds,
            status_perfdata: false,
        };
        assert!(encode(&encoder, &metric("a", 1.0), &cache).ends_with(" 1732000000000\n"));
    }

    #[test]
    fn unknown_names_are_written_as_ids() {
        let cache = Cache::new();
        assert_eq!(
            encode(&SECONDS, &metric("cpu", 1.0), &cache),
            "3,host=1 cpu=1 1732000000\n"
        );
    }

    #[test]
    fn non_finite_values_and_other_events_give_nothing() {
        let cache = cache();
        assert_eq!(encode(&SECONDS, &metric("cpu", f64::NAN), &cache), "");
        assert_eq!(encode(&SECONDS, &metric("cpu", f64::INFINITY), &cache), "");
        let host = Event::named("host").unwrap().with("host_id", 1i64);
        assert_eq!(encode(&SECONDS, &host, &cache), "");
    }

    #[test]
    fn line_breaks_and_trailing_backslashes_cannot_break_a_point() {
        let mut out = String::new();
        escape_key("a\nb\\", &mut out);
        assert_eq!(out, "a\\nb\\\\");
    }

    #[test]
    fn status_perfdata_becomes_one_point() {
        let cache = cache();
        let status = Event::named("service_status")
            .unwrap()
            .with("host_id", 1i64)
            .with("service_id", 3i64)
            .with("last_check", 1_732_000_100i64)
            .with("perfdata", "used=80%;90;95 'free space'=20;;;0;100 bad=x");
        let encoder = Encoder {
            precision: Precision::Seconds,
            status_perfdata: true,
        };
        assert_eq!(
            encode(&encoder, &status, &cache),
            "Disk\\ /var\\,used,host=srv\\ 01\\,eu used=80,free\\ space=20 1732000100\n"
        );
        assert_eq!(encode(&SECONDS, &status, &cache), "");
    }
}
