//! Outputs: what an administrator defines (name, kind, filters,
//! parameters) and its validation, the kinds brokerstream can run with
//! their parameter schemas ([`kinds`]), and the supervisor that keeps one
//! worker running per enabled output: the native worker (`worker`, with
//! the HTTP kinds' shared machinery in [`http`]) or the Lua runtime
//! ([`lua`]). See docs/architecture.md §2.7 and, to add a kind, §4.1.

mod command;
pub mod deadletter;
pub mod delivery;
pub mod elasticsearch;
mod file;
pub mod health;
pub mod http;
pub mod http_post;
pub mod influxdb;
pub mod kinds;
pub mod lua;
pub mod perfdata;
pub mod redeliver;
mod schema;
pub mod sink;
pub mod splunk;
pub mod status;
mod supervisor;
pub mod tail;
mod template;
mod worker;

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::event::Filter;

pub use file::FileSink;
pub use status::{FlushReason, FlushRecord, OutputState, OutputStatus};
pub use supervisor::{ControlError, FlushError, RenameError, Supervisor};
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
#[derive(Clone, PartialEq)]
pub struct Parameter {
    pub name: String,
    pub ty: ParamType,
    pub value: String,
}

/// A password's value is left out, so that a `{:?}` of a parameter, an
/// output or anything holding one (a log line, a panic) cannot show it.
impl fmt::Debug for Parameter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = f.debug_struct("Parameter");
        out.field("name", &self.name).field("ty", &self.ty);
        match self.ty {
            ParamType::Password => out.field("value", &format_args!("[redacted]")),
            _ => out.field("value", &self.value),
        };
        out.finish()
    }
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

    /// Whether its kind runs a script (with its own runtime) rather than
    /// batches handed to a sink.
    pub fn runs_script(&self) -> bool {
        kinds::find(&self.kind).is_some_and(|kind| kind.script)
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

/// The password values of an output, to take out of any text that could
/// carry one into a log, a status or a page: what a script logs or raises,
/// what a destination answers.
#[derive(Clone, Debug, Default)]
pub struct Secrets(Vec<RedactedValue>, Option<Arc<Matcher>>);

/// Every value at once: a password gives a dozen forms (encoded, in Basic
/// pairs with each other parameter), and scripts log for every event, so
/// one pass over a line beats a search per form.
struct Matcher(aho_corasick::AhoCorasick);

impl fmt::Debug for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Matcher")
    }
}

/// A value kept for redaction; its `Debug` does not show it.
#[derive(Clone)]
struct RedactedValue(String);

impl fmt::Debug for RedactedValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// What stands for a password value in a text.
pub const REDACTED: &str = "[redacted]";

impl Secrets {
    pub fn of(spec: &OutputSpec) -> Secrets {
        Secrets::of_parameters(&spec.parameters)
    }

    pub fn of_parameters(parameters: &[Parameter]) -> Secrets {
        let mut values: Vec<String> = Vec::new();
        for p in parameters {
            if p.ty != ParamType::Password || p.value.is_empty() {
                continue;
            }
            values.push(p.value.clone());
            // As a script puts it in a URL (`broker.url_encode`, cURL's escape).
            let encoded = lua::sdk::url_encode(p.value.as_bytes());
            if encoded != p.value {
                values.push(encoded);
            }
            // As HTTP Basic sends it, `base64(user:password)`, with any
            // other parameter as the user (a destination that echoes the
            // request's headers shows it), and alone.
            values.push(crate::encoding::base64_encode(p.value.as_bytes()));
            for user in parameters.iter().filter(|u| {
                u.ty == ParamType::String && !u.value.is_empty() && u.value.len() <= 256
            }) {
                let pair = format!("{}:{}", user.value, p.value);
                values.push(crate::encoding::base64_encode(pair.as_bytes()));
            }
        }
        // The longest first, so that a password containing another is
        // replaced whole.
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        values.dedup();
        // Leftmost-longest: a password containing another is replaced
        // whole, as the order above does for a search per value.
        let matcher = if values.is_empty() {
            None
        } else {
            aho_corasick::AhoCorasick::builder()
                .match_kind(aho_corasick::MatchKind::LeftmostLongest)
                .build(&values)
                .ok()
                .map(|m| Arc::new(Matcher(m)))
        };
        Secrets(values.into_iter().map(RedactedValue).collect(), matcher)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `text` with every password value replaced by [`REDACTED`].
    pub fn redact<'a>(&self, text: &'a str) -> std::borrow::Cow<'a, str> {
        match self.1.as_deref() {
            Some(Matcher(m)) if m.is_match(text) => {
                let mut out = String::with_capacity(text.len());
                m.replace_all_with(text, &mut out, |_, _, out| {
                    out.push_str(REDACTED);
                    true
                });
                std::borrow::Cow::Owned(out)
            }
            _ => std::borrow::Cow::Borrowed(text),
        }
    }

    /// The first `max` bytes of `body` as text, redacted: redacted before
    /// it is cut, so that a password across the cut leaves no half behind.
    pub fn excerpt(&self, body: &[u8], max: usize) -> String {
        let longest = self.0.first().map_or(0, |RedactedValue(v)| v.len());
        let head = &body[..body.len().min(max.saturating_add(longest))];
        let redacted = self.redact_owned(String::from_utf8_lossy(head).into_owned());
        let mut end = redacted.len().min(max);
        while !redacted.is_char_boundary(end) {
            end -= 1;
        }
        redacted[..end].to_owned()
    }

    pub fn redact_owned(&self, text: String) -> String {
        match self.redact(&text) {
            std::borrow::Cow::Borrowed(_) => text,
            std::borrow::Cow::Owned(redacted) => redacted,
        }
    }

    /// Redacts every text of a status: errors, answers, flush results.
    pub fn redact_status(&self, status: &mut OutputStatus) {
        if self.is_empty() {
            return;
        }
        let texts = [
            status.last_error.as_mut(),
            status.last_response_body.as_mut(),
            status.last_dead_letter_reason.as_mut(),
            status.last_flush.as_mut().map(|f| &mut f.result),
        ];
        for text in texts.into_iter().flatten() {
            *text = self.redact_owned(std::mem::take(text));
        }
        for flush in &mut status.flushes {
            flush.result = self.redact_owned(std::mem::take(&mut flush.result));
        }
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
/// web form's Test button shows it, one record per line, before the kind
/// wraps a batch (a JSON array, gzip). Script kinds have none.
pub fn preview(
    spec: &OutputSpec,
    events: &[crate::event::Event],
    cache: &crate::cache::Cache,
) -> Result<String, String> {
    let filter = Filter::parse(&spec.filters).map_err(|e| e.to_string())?;
    let build =
        kinds::builder(&spec.kind).ok_or_else(|| format!("kind `{}` has no preview", spec.kind))?;
    // Nothing is sent, so nothing is dead-lettered: the directory is
    // never created.
    let mut sink = build(
        spec,
        &sink::BuildContext {
            dead_letters: &deadletter::DeadLetters::new("/nonexistent".into()),
        },
    )?;
    let mut out = Vec::new();
    for event in events.iter().filter(|e| filter.accepts(e.event_type())) {
        let before = out.len();
        sink.encode(event, cache, &mut out);
        if out.len() > before && out.last() != Some(&b'\n') {
            out.push(b'\n');
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
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

    fn with_password(value: &str) -> OutputSpec {
        let mut spec = spec("http", &[("http_url", "http://127.0.0.1:1/")]);
        spec.parameters.push(Parameter {
            name: "http_password".into(),
            ty: ParamType::Password,
            value: value.into(),
        });
        spec
    }

    #[test]
    fn debug_output_never_shows_a_password() {
        let spec = with_password("hunter2-debug");
        let shown = format!("{spec:?} {:#?}", spec.parameters);
        assert!(!shown.contains("hunter2-debug"), "{shown}");
        assert!(shown.contains("[redacted]"), "{shown}");
        // Other values are still shown: they are what a log needs.
        assert!(shown.contains("http://127.0.0.1:1/"), "{shown}");
        let connection = http::Connection {
            proxy: Some((
                "http://127.0.0.1:3128".into(),
                Some(("me".into(), "hunter2-proxy".into())),
            )),
            ..http::Connection::from_spec(&spec).unwrap()
        };
        let shown = format!("{connection:?}");
        assert!(!shown.contains("hunter2-proxy"), "{shown}");
        assert!(shown.contains("\"me\""), "{shown}");
    }

    #[test]
    fn secrets_are_redacted_before_a_text_is_cut_and_in_their_base64_forms() {
        let mut output = spec("http", &[("user", "centreon")]);
        output.parameters.push(Parameter {
            name: "token".into(),
            ty: ParamType::Password,
            value: "Zk8-very-secret-token".into(),
        });
        let secrets = Secrets::of(&output);
        // A destination echoing the token across the excerpt's end.
        let body = format!("{}{}", "x".repeat(495), "Zk8-very-secret-token and more");
        let cut = secrets.excerpt(body.as_bytes(), 512);
        assert!(!cut.contains("Zk8"), "{cut}");
        assert!(cut.len() <= 512);
        assert!(cut.starts_with(&"x".repeat(495)));
        // Echoed Basic credentials, and the token alone in base64.
        let basic = crate::encoding::base64_encode(b"centreon:Zk8-very-secret-token");
        let alone = crate::encoding::base64_encode(b"Zk8-very-secret-token");
        assert_eq!(
            secrets.redact(&format!("Authorization: Basic {basic}; X-Token: {alone}")),
            "Authorization: Basic [redacted]; X-Token: [redacted]"
        );
    }

    #[test]
    fn secrets_are_taken_out_of_texts_and_statuses() {
        let mut output = with_password("pass");
        output.parameters.push(Parameter {
            name: "token".into(),
            ty: ParamType::Password,
            value: "password-long".into(),
        });
        // An empty password is nothing to hide (and would match everywhere).
        output.parameters.push(Parameter {
            name: "empty".into(),
            ty: ParamType::Password,
            value: String::new(),
        });
        let secrets = Secrets::of(&output);
        assert_eq!(
            secrets.redact("GET /?p=password-long&q=pass failed"),
            "GET /?p=[redacted]&q=[redacted] failed",
            "the longer value first, whole"
        );
        assert!(matches!(
            secrets.redact("nothing here"),
            std::borrow::Cow::Borrowed(_)
        ));
        assert!(!format!("{secrets:?}").contains("pass"));
        // Also as a URL carries it.
        let mut encoded = spec("http", &[]);
        encoded.parameters.push(Parameter {
            name: "p".into(),
            ty: ParamType::Password,
            value: "a b&c".into(),
        });
        assert_eq!(
            Secrets::of(&encoded).redact("?p=a%20b%26c or a b&c"),
            "?p=[redacted] or [redacted]"
        );
        let mut status = OutputStatus::new("o", OutputState::Retrying);
        status.last_error = Some("cannot connect to u:pass@host".into());
        status.last_response_body = Some("echo pass".into());
        status.last_dead_letter_reason = Some("HTTP 401: pass".into());
        let record = FlushRecord {
            at: time::OffsetDateTime::UNIX_EPOCH,
            reason: FlushReason::Manual,
            events: 0,
            bytes: 0,
            duration_ms: 0.0,
            outcome: status::FlushOutcome::Failed,
            result: "refused pass".into(),
        };
        status.record_flush(record);
        secrets.redact_status(&mut status);
        let text = serde_json::to_string(&status).unwrap();
        assert!(!text.contains("pass"), "{text}");
        assert_eq!(text.matches("[redacted]").count(), 5, "{text}");
        assert!(Secrets::of(&spec("file", &[("path", "/x")])).is_empty());
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
