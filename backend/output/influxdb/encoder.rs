//! InfluxDB line protocol from Centreon events, as Centreon's InfluxDB
//! guide lays points out: the measurement is the service description, the
//! tag `host` the host name, the field the metric name, the time the
//! event's `ctime`.

use rustc_hash::FxHashMap;
use std::fmt::Write as _;
use std::io::Write as _;

use crate::cache::Cache;
use crate::event::{Event, EventDef, Value};
use crate::output::perfdata;

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
    heads: Heads,
    /// One per metric type seen (BBDO 2 `metric`, BBDO 3 `pb_metric`).
    metric_fields: Vec<MetricFields>,
}

/// The slots of a metric type's fields, found once by name rather than for
/// every event.
#[derive(Clone, Copy)]
struct MetricFields {
    def: &'static EventDef,
    name: Option<usize>,
    value: Option<usize>,
    ctime: Option<usize>,
    time: Option<usize>,
    host_id: Option<usize>,
    service_id: Option<usize>,
}

impl MetricFields {
    fn of(def: &'static EventDef) -> MetricFields {
        MetricFields {
            def,
            name: def.field_index("name"),
            value: def.field_index("value"),
            ctime: def.field_index("ctime"),
            time: def.field_index("time"),
            host_id: def.field_index("host_id"),
            service_id: def.field_index("service_id"),
        }
    }

    fn slot(event: &Event, index: Option<usize>) -> Option<&Value> {
        event.values().get(index?)?.as_ref()
    }

    fn name<'e>(&self, event: &'e Event) -> Option<&'e Value> {
        Self::slot(event, self.name)
    }

    fn value<'e>(&self, event: &'e Event) -> Option<&'e Value> {
        Self::slot(event, self.value)
    }

    /// `ctime`, or BBDO 3's `time`.
    fn time(&self, event: &Event) -> Option<i64> {
        Self::slot(event, self.ctime)
            .and_then(Value::as_i64)
            .or_else(|| Self::slot(event, self.time).and_then(Value::as_i64))
    }

    fn ids(&self, event: &Event) -> (i64, i64) {
        let id = |index| {
            Self::slot(event, index)
                .and_then(Value::as_i64)
                .unwrap_or(0)
        };
        (id(self.host_id), id(self.service_id))
    }
}

/// The escaped `measurement,host=name` start of the points of each (host,
/// service), as the cache named them. Asking the cache costs a lock, two
/// map lookups, a field search and two string copies per point, while a
/// name changes only when a host or service is defined again, which moves
/// the cache's names generation and empties this memo.
#[derive(Default)]
struct Heads {
    names_generation: u64,
    by_ids: FxHashMap<(i64, i64), Box<[u8]>>,
}

/// Past this many (host, service) pairs the memo starts over, so that an
/// output's memory stays bounded on the largest platforms.
const HEADS_MAX: usize = 100_000;

impl Heads {
    fn get(&mut self, cache: &Cache, host_id: i64, service_id: i64) -> &[u8] {
        let generation = cache.names_generation();
        if generation != self.names_generation || self.by_ids.len() >= HEADS_MAX {
            self.by_ids.clear();
            self.names_generation = generation;
        }
        self.by_ids.entry((host_id, service_id)).or_insert_with(|| {
            let mut head = String::with_capacity(64);
            push_head(&mut head, cache, host_id, service_id);
            head.into_bytes().into_boxed_slice()
        })
    }
}

/// The measurement of a host's own perfdata, which has no service.
pub const HOST_MEASUREMENT: &str = "_HOST_";

impl Encoder {
    pub fn new(precision: Precision, status_perfdata: bool) -> Encoder {
        Encoder {
            precision,
            status_perfdata,
            heads: Heads::default(),
            metric_fields: Vec::new(),
        }
    }

    /// Appends the lines of one event (none when it carries no point).
    pub fn encode(&mut self, event: &Event, cache: &Cache, out: &mut Vec<u8>) {
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

    fn metric(&mut self, event: &Event, cache: &Cache, out: &mut Vec<u8>) {
        let fields = self.metric_fields(event.def());
        let (Some(field), Some(value)) = (
            fields.name(event).and_then(Value::as_str),
            fields.value(event).and_then(Value::as_f64),
        ) else {
            return;
        };
        let Some(time) = fields.time(event) else {
            return;
        };
        if !value.is_finite() || field.is_empty() {
            // Line protocol has no NaN or infinity: such a point cannot be
            // written, and a batch holding one would be refused whole.
            return;
        }
        let (host_id, service_id) = match fields.ids(event) {
            (0, _) => ids(event, cache),
            ids => ids,
        };
        out.extend_from_slice(self.heads.get(cache, host_id, service_id));
        out.push(b' ');
        if needs_escape(field) {
            let mut escaped = String::with_capacity(field.len() + 8);
            escape_key(field, &mut escaped);
            out.extend_from_slice(escaped.as_bytes());
        } else {
            out.extend_from_slice(field.as_bytes());
        }
        out.push(b'=');
        push_float(value, out);
        out.push(b' ');
        out.extend_from_slice(
            itoa::Buffer::new()
                .format(self.precision.scale(time))
                .as_bytes(),
        );
        out.push(b'\n');
    }

    /// Where this metric type keeps the fields of a point.
    fn metric_fields(&mut self, def: &'static EventDef) -> MetricFields {
        match self.metric_fields.iter().find(|f| std::ptr::eq(f.def, def)) {
            Some(fields) => *fields,
            None => {
                let fields = MetricFields::of(def);
                self.metric_fields.push(fields);
                fields
            }
        }
    }

    fn perfdata(&self, event: &Event, cache: &Cache, out: &mut Vec<u8>) {
        let Some(text) = event.get("perfdata").and_then(Value::as_str) else {
            return;
        };
        let Some(time) = int(event, "last_check") else {
            return;
        };
        // Exact decimals: a native output owes Centreon no byte-identity, and
        // `0.03` is what the plugin wrote.
        let metrics = perfdata::parse(text, perfdata::Precision::Exact);
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

/// A finite value as `{}` prints it (`5` for 5.0, `42.5`), with whole
/// numbers, the most common metric values, printed as integers: the same
/// text, without the shortest-float search.
fn push_float(value: f64, out: &mut Vec<u8>) {
    // Below 2^53 every whole f64 is an exact i64; -0.0 prints as `-0`.
    let whole = value.fract() == 0.0 && value.abs() < 9_007_199_254_740_992.0;
    let negative_zero = value == 0.0 && value.is_sign_negative();
    if whole && !negative_zero {
        out.extend_from_slice(itoa::Buffer::new().format(value as i64).as_bytes());
    } else {
        let _ = write!(out, "{value}");
    }
}

/// Whether a name holds a character that line protocol escapes (a
/// measurement escapes fewer, so this errs on the side of escaping).
fn needs_escape(text: &str) -> bool {
    text.bytes()
        .any(|b| matches!(b, b',' | b'=' | b' ' | b'\n' | b'\r' | b'\\'))
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

    fn encode(encoder: &mut Encoder, event: &Event, cache: &Cache) -> String {
        let mut out = Vec::new();
        encoder.encode(event, cache, &mut out);
        String::from_utf8(out).unwrap()
    }

    fn seconds() -> Encoder {
        Encoder::new(Precision::Seconds, false)
    }

    #[test]
    fn metric_lines_escape_names() {
        let cache = cache();
        assert_eq!(
            encode(&mut seconds(), &metric("used=bytes", 42.5), &cache),
            "Disk\\ /var\\,used,host=srv\\ 01\\,eu used\\=bytes=42.5 1732000000\n"
        );
    }

    #[test]
    fn precision_scales_the_timestamp() {
        let cache = cache();
        let mut encoder = Encoder::new(Precision::Milliseconds, false);
        assert!(encode(&mut encoder, &metric("a", 1.0), &cache).ends_with(" 1732000000000\n"));
    }

    #[test]
    fn unknown_names_are_written_as_ids() {
        let cache = Cache::new();
        assert_eq!(
            encode(&mut seconds(), &metric("cpu", 1.0), &cache),
            "3,host=1 cpu=1 1732000000\n"
        );
    }

    #[test]
    fn non_finite_values_and_other_events_give_nothing() {
        let cache = cache();
        assert_eq!(encode(&mut seconds(), &metric("cpu", f64::NAN), &cache), "");
        assert_eq!(
            encode(&mut seconds(), &metric("cpu", f64::INFINITY), &cache),
            ""
        );
        let host = Event::named("host").unwrap().with("host_id", 1i64);
        assert_eq!(encode(&mut seconds(), &host, &cache), "");
    }

    #[test]
    fn values_print_as_display_prints_them() {
        for value in [
            0.0,
            -0.0,
            5.0,
            -7.0,
            42.5,
            1e15,
            9.007_199_254_740_993e15,
            1e21,
            0.1,
            -3.25e-7,
        ] {
            let mut out = Vec::new();
            push_float(value, &mut out);
            assert_eq!(String::from_utf8(out).unwrap(), format!("{value}"));
        }
    }

    #[test]
    fn a_renamed_service_is_written_with_its_new_name() {
        let cache = cache();
        let mut encoder = seconds();
        let first = encode(&mut encoder, &metric("cpu", 1.0), &cache);
        assert!(first.starts_with("Disk\\ /var\\,used,host="), "{first}");
        let renamed = Event::named("service")
            .unwrap()
            .with("host_id", 1i64)
            .with("service_id", 3i64)
            .with("description", "Memory");
        cache.update(&renamed);
        assert_eq!(
            encode(&mut encoder, &metric("cpu", 1.0), &cache),
            "Memory,host=srv\\ 01\\,eu cpu=1 1732000000\n"
        );
        // A status changes no name: the memo stays.
        let generation = cache.names_generation();
        let status = Event::named("service_status")
            .unwrap()
            .with("host_id", 1i64)
            .with("service_id", 3i64)
            .with("state", 2i64);
        cache.update(&status);
        assert_eq!(cache.names_generation(), generation);
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
        let mut encoder = Encoder::new(Precision::Seconds, true);
        assert_eq!(
            encode(&mut encoder, &status, &cache),
            "Disk\\ /var\\,used,host=srv\\ 01\\,eu used=80,free\\ space=20 1732000100\n"
        );
        assert_eq!(encode(&mut seconds(), &status, &cache), "");
    }
}
