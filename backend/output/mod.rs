//! Outputs: what an administrator defines (name, kind, filters,
//! parameters), the kinds brokerstream can run with their parameter schemas,
//! and the supervisor that keeps one worker running per enabled output.

pub mod elasticsearch;
mod file;
pub mod http;
pub mod http_post;
pub mod influxdb;
pub mod kinds;
pub mod lua;
pub mod splunk;
pub mod status;
mod supervisor;
pub mod tail;
mod template;
mod worker;

use std::collections::HashSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::event::Filter;

pub use file::FileSink;
pub use status::{FlushReason, FlushRecord, OutputState, OutputStatus};
pub use supervisor::{ControlError, FlushError, Supervisor};
pub use template::Template;

/// Centreon's `lua_parameter` types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    String,
    Number,
    Password,
}

impl ParamType {
    pub fn as_str(self) -> &'static str {
        match self {
            ParamType::String => "string",
            ParamType::Number => "number",
            ParamType::Password => "password",
        }
    }

    pub fn parse(s: &str) -> Option<ParamType> {
        match s {
            "string" => Some(ParamType::String),
            "number" => Some(ParamType::Number),
            "password" => Some(ParamType::Password),
            _ => None,
        }
    }
}

impl fmt::Display for ParamType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One parameter, its value kept as text as Centreon keeps it.
#[derive(Clone, Debug, PartialEq)]
pub struct Parameter {
    pub name: String,
    pub ty: ParamType,
    pub value: String,
}

/// An output as stored and as the supervisor runs it.
#[derive(Clone, Debug, PartialEq)]
pub struct OutputSpec {
    pub name: String,
    pub kind: String,
    /// The script of a `lua` output.
    pub path: Option<String>,
    pub enabled: bool,
    /// Centreon filter names (`neb`, `storage:metric`…); empty = everything.
    pub filters: Vec<String>,
    pub parameters: Vec<Parameter>,
}

impl OutputSpec {
    /// What a definition is before a request fills it: enabled, accepting
    /// every event, without kind or parameters.
    pub fn blank(name: &str) -> Self {
        OutputSpec {
            name: name.to_owned(),
            kind: String::new(),
            path: None,
            enabled: true,
            filters: Vec::new(),
            parameters: Vec::new(),
        }
    }

    pub fn parameter(&self, name: &str) -> Option<&Parameter> {
        self.parameters.iter().find(|p| p.name == name)
    }

    /// The value of a parameter, or its kind's default when it is not set.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.parameter(name).map(|p| p.value.as_str()).or_else(|| {
            kinds::find(&self.kind)
                .and_then(|kind| kind.schema(name))
                .and_then(|schema| schema.default)
        })
    }
}

/// Validation errors, one message per field, in the order found. Field
/// names are the JSON paths of the REST body (`name`, `filters.category[1]`,
/// `parameters.path`).
#[derive(Debug, Default, PartialEq)]
pub struct FieldErrors(pub Vec<(String, String)>);

impl FieldErrors {
    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push((field.into(), message.into()));
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn into_result(self) -> Result<(), FieldErrors> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self)
        }
    }
}

pub const MAX_NAME_LEN: usize = 64;

/// Output names appear in URLs and file names: letters, digits, `-`, `_`,
/// `.`, not starting with a dot.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!("must be at most {MAX_NAME_LEN} characters"));
    }
    if name.starts_with('.') {
        return Err("must not start with a dot".into());
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err("may hold only letters, digits, '-', '_' and '.'".into());
    }
    Ok(())
}

/// Checks a whole output against its kind's schema, adding to `errors`
/// only for fields that have none yet (so a field reported while reading
/// the request is not reported twice).
pub fn validate(spec: &OutputSpec, errors: &mut FieldErrors) {
    let mut found = FieldErrors::default();
    validate_into(spec, &mut found);
    for (field, message) in found.0 {
        if !errors.0.iter().any(|(f, _)| *f == field) {
            errors.add(field, message);
        }
    }
}

fn validate_into(spec: &OutputSpec, errors: &mut FieldErrors) {
    if let Err(message) = check_name(&spec.name) {
        errors.add("name", message);
    }
    for (i, name) in spec.filters.iter().enumerate() {
        if let Err(e) = Filter::parse(std::slice::from_ref(name)) {
            errors.add(format!("filters.category[{i}]"), e.to_string());
        }
    }
    let mut seen = HashSet::new();
    for p in &spec.parameters {
        if !seen.insert(p.name.as_str()) {
            errors.add(format!("parameters.{}", p.name), "is given more than once");
        }
    }
    match kinds::find(&spec.kind) {
        None => errors.add("kind", kinds::unknown_kind_message(&spec.kind)),
        Some(kind) => kind.validate(spec, errors),
    }
}

/// What a native output would write for `events`, after its filters: the
/// web form's Test button shows it. Only kinds that encode lines have one.
pub fn preview(
    spec: &OutputSpec,
    events: &[crate::event::Event],
    cache: &crate::cache::Cache,
) -> Result<String, String> {
    let filter = Filter::parse(&spec.filters).map_err(|e| e.to_string())?;
    let accepted = events.iter().filter(|e| filter.accepts(e.event_type()));
    let mut out = Vec::new();
    if let Some(mut service) = http_service(spec)? {
        // What the batch's body would carry, one record per event, before
        // the kind wraps it (a JSON array, gzip).
        for event in accepted {
            let before = out.len();
            service.encode(event, cache, &mut out);
            if out.len() > before && out.last() != Some(&b'\n') {
                out.push(b'\n');
            }
        }
        return Ok(String::from_utf8_lossy(&out).into_owned());
    }
    let format = match spec.kind.as_str() {
        "file" => file::LineFormat::from_spec(spec)?,
        other => return Err(format!("kind `{other}` has no preview")),
    };
    for event in accepted {
        format.encode(event, cache, &mut out);
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// The service of an HTTP kind, `None` for the other kinds.
pub(crate) fn http_service(spec: &OutputSpec) -> Result<Option<Box<dyn http::Service>>, String> {
    Ok(Some(match spec.kind.as_str() {
        "influxdb" => Box::new(influxdb::Influx::from_spec(spec)?),
        "http" => Box::new(http_post::Post::from_spec(spec)?),
        "splunk" => Box::new(splunk::Splunk::from_spec(spec)?),
        "elasticsearch" => Box::new(elasticsearch::Elastic::from_spec(spec)?),
        _ => return Ok(None),
    }))
}

/// The batching settings every output has, from its parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchSettings {
    /// Flush when this many events are buffered.
    pub max_size: usize,
    /// Flush when the oldest buffered event is this old.
    pub max_age: std::time::Duration,
    /// Flush when the encoded batch is this large (`max_buffer_bytes`, for
    /// the kinds that declare it), so one request stays within what a
    /// destination takes.
    pub max_bytes: usize,
}

impl BatchSettings {
    /// Used only if a kind declared no default, which the kinds' tests rule out.
    const FALLBACK_MAX_SIZE: f64 = 1000.0;
    const FALLBACK_MAX_AGE_SECS: f64 = 5.0;
    const FALLBACK_MAX_BYTES: f64 = 64.0 * 1024.0 * 1024.0;

    pub fn from_spec(spec: &OutputSpec) -> BatchSettings {
        let number = |name| spec.value(name).and_then(|v| v.trim().parse::<f64>().ok());
        BatchSettings {
            max_size: number("max_buffer_size")
                .unwrap_or(Self::FALLBACK_MAX_SIZE)
                .clamp(1.0, 10_000_000.0) as usize,
            max_age: std::time::Duration::from_secs_f64(
                number("max_buffer_age")
                    .unwrap_or(Self::FALLBACK_MAX_AGE_SECS)
                    .clamp(0.001, 86_400.0),
            ),
            max_bytes: number("max_buffer_bytes")
                .unwrap_or(Self::FALLBACK_MAX_BYTES)
                .clamp(1.0, 1024.0 * 1024.0 * 1024.0) as usize,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;

    fn spec(kind: &str, parameters: &[(&str, &str)]) -> OutputSpec {
        OutputSpec {
            parameters: parameters
                .iter()
                .map(|(name, value)| Parameter {
                    name: (*name).to_owned(),
                    ty: ParamType::String,
                    value: (*value).to_owned(),
                })
                .collect(),
            kind: kind.to_owned(),
            ..OutputSpec::blank("preview")
        }
    }

    #[test]
    fn preview_shows_what_an_http_kind_would_send() {
        let cache = crate::cache::Cache::new();
        cache.update(
            &Event::named("host")
                .unwrap()
                .with("host_id", 1)
                .with("name", "srv-01"),
        );
        cache.update(
            &Event::named("service")
                .unwrap()
                .with("host_id", 1)
                .with("service_id", 2)
                .with("description", "Cpu"),
        );
        let metric = Event::named("metric")
            .unwrap()
            .with("host_id", 1)
            .with("service_id", 2)
            .with("metric_id", 3)
            .with("name", "load")
            .with("value", 0.5)
            .with("ctime", 1732000000i64);
        let influx = spec(
            "influxdb",
            &[
                ("http_server_address", "127.0.0.1"),
                ("influx_database", "db"),
            ],
        );
        let text = preview(&influx, std::slice::from_ref(&metric), &cache).unwrap();
        assert!(
            text.starts_with("Cpu,host=srv-01 load=0.5 1732000000"),
            "{text}"
        );
        let file = spec("file", &[("path", "/tmp/x")]);
        assert!(preview(&file, &[metric], &cache)
            .unwrap()
            .contains("\"_type\":196609"));
    }
}
