//! The `splunk` output: HTTP Event Collector events
//! (`/services/collector/event`, the event's JSON form) or metrics
//! (`/services/collector`, one `metric_name:<name>` field per metric
//! event), authenticated with `Authorization: Splunk <token>`.

use reqwest::header::AUTHORIZATION;
use reqwest::Url;
use serde_json::{Map, Value as Json};

use super::http::{self, Reply, Request, Service, Verdict};
use futures::future::BoxFuture;

use super::schema::{
    string_param as string, Kind, ParamSchema, Section, TestReport, BUFFER_AGE, BUFFER_SIZE,
};
use super::sink::{BuildContext, Sink};
use super::{FieldErrors, OutputSpec, ParamType};
use crate::cache::Cache;
use crate::event::{Event, Value};

pub static KIND: Kind = Kind::batches(
    "splunk",
    "Sends events to Splunk's HTTP Event Collector (`/services/collector/event`), or metric events as Splunk metrics (`/services/collector`).",
    PARAMETERS,
    check,
    build,
)
.with_sections(&[
    Section {
        title: "Authentication",
        collapsed: false,
        names: &["splunk_token"],
    },
    http::BATCHING,
    http::TLS,
    http::PROXY_SECTION,
])
.with_test(test);

/// HEC's health endpoint, then the sample sent as the output sends it.
fn test<'a>(
    spec: &'a OutputSpec,
    events: &'a [Event],
    cache: &'a Cache,
) -> BoxFuture<'a, TestReport> {
    Box::pin(http::test(spec, Splunk::from_spec(spec), events, cache))
}

fn build(spec: &OutputSpec, context: &BuildContext) -> Result<Box<dyn Sink>, String> {
    http::sink(spec, context, Splunk::from_spec(spec)?)
}

pub const PARAMETERS: &[ParamSchema] = &[
    string(
        "http_server_url",
        true,
        None,
        &[],
        "The collector's base URL, such as `https://splunk.example:8088`.",
    ),
    ParamSchema {
        name: "splunk_token",
        ty: ParamType::Password,
        required: true,
        default: None,
        help: "The HEC token.",
        secret: true,
        choices: &[],
        min: None,
    },
    string(
        "splunk_mode",
        false,
        Some("events"),
        &["events", "metrics"],
        "`events`: every event, as JSON, to /services/collector/event. `metrics`: metric events as Splunk metrics to /services/collector.",
    ),
    string("splunk_index", false, None, &[], "The index; the token's default when empty."),
    string("splunk_sourcetype", false, Some("_json"), &[], "The sourcetype of events."),
    string("splunk_source", false, Some("brokerstream"), &[], "The source of events."),
    BUFFER_SIZE,
    BUFFER_AGE,
    http::BUFFER_BYTES,
    http::TIMEOUT,
    http::GZIP,
    http::VERIFY_PEER,
    http::VERIFY_HOST,
    http::CA_FILE,
    http::CLIENT_CERT,
    http::CLIENT_KEY,
    http::PROXY,
    http::PROXY_USER,
    http::PROXY_PASSWORD,
];

pub fn check(spec: &OutputSpec, errors: &mut FieldErrors) {
    if let Err(e) = Splunk::from_spec(spec) {
        errors.add("parameters.http_server_url", e);
    }
}

pub struct Splunk {
    url: Url,
    /// `/services/collector/health`, which the form's Test asks first.
    health: Url,
    metrics: bool,
    authorization: reqwest::header::HeaderValue,
    index: Option<String>,
    sourcetype: Option<String>,
    source: Option<String>,
}

fn value(spec: &OutputSpec, name: &str) -> Option<String> {
    spec.value(name)
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

impl Splunk {
    pub fn from_spec(spec: &OutputSpec) -> Result<Splunk, String> {
        let base = value(spec, "http_server_url").unwrap_or_default();
        let metrics = spec.value("splunk_mode") == Some("metrics");
        let path = if metrics {
            "services/collector"
        } else {
            "services/collector/event"
        };
        let mut url = Url::parse(&base).map_err(|e| format!("is not a URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err("is not an http:// or https:// URL".to_owned());
        }
        if !url.path().ends_with('/') {
            let with_slash = format!("{}/", url.path());
            url.set_path(&with_slash);
        }
        let health = url
            .join("services/collector/health")
            .map_err(|e| format!("does not make a collector URL: {e}"))?;
        let url = url
            .join(path)
            .map_err(|e| format!("does not make a collector URL: {e}"))?;
        let token = spec.value("splunk_token").unwrap_or("");
        Ok(Splunk {
            url,
            health,
            metrics,
            authorization: http::secret_header(&format!("Splunk {token}"))?,
            index: value(spec, "splunk_index"),
            sourcetype: value(spec, "splunk_sourcetype"),
            source: value(spec, "splunk_source"),
        })
    }

    fn envelope(&self, time: Option<i64>, host: Option<String>) -> Map<String, Json> {
        let mut object = Map::new();
        if let Some(t) = time {
            object.insert("time".into(), t.into());
        }
        if let Some(h) = host {
            object.insert("host".into(), h.into());
        }
        if let Some(i) = &self.index {
            object.insert("index".into(), i.clone().into());
        }
        if let Some(s) = &self.source {
            object.insert("source".into(), s.clone().into());
        }
        object
    }
}

fn int(event: &Event, key: &str) -> Option<i64> {
    event.get(key).and_then(Value::as_i64)
}

impl Service for Splunk {
    fn encode(&mut self, event: &Event, cache: &Cache, out: &mut Vec<u8>) {
        let host = int(event, "host_id").and_then(|id| cache.host_name(id));
        let record = if self.metrics {
            let name = event.def().name;
            if name != "metric" && name != "pb_metric" {
                return;
            }
            let (Some(metric), Some(value)) = (
                event.get("name").and_then(Value::as_str),
                event.get("value").and_then(Value::as_f64),
            ) else {
                return;
            };
            if !value.is_finite() {
                return;
            }
            let time = int(event, "ctime").or_else(|| int(event, "time"));
            let mut object = self.envelope(time, host);
            object.insert("event".into(), "metric".into());
            let mut fields = Map::new();
            fields.insert(format!("metric_name:{metric}"), value.into());
            if let (Some(h), Some(s)) = (int(event, "host_id"), int(event, "service_id")) {
                if let Some(d) = cache.service_description(h, s) {
                    fields.insert("service".into(), d.into());
                }
            }
            object.insert("fields".into(), fields.into());
            Json::Object(object)
        } else {
            let time = int(event, "ctime")
                .or_else(|| int(event, "last_check"))
                .or_else(|| int(event, "time"));
            let mut object = self.envelope(time, host);
            if let Some(s) = &self.sourcetype {
                object.insert("sourcetype".into(), s.clone().into());
            }
            let body = serde_json::to_value(event).unwrap_or(Json::Null);
            object.insert("event".into(), body);
            Json::Object(object)
        };
        let _ = serde_json::to_writer(&mut *out, &record);
        out.push(b'\n');
    }

    /// HEC takes events one after another; each ends a line.
    fn records_end_with_newline(&self) -> bool {
        true
    }

    fn request(&self, records: &[&[u8]]) -> Result<Request, String> {
        let mut headers = http::headers("application/json", &[]);
        headers.insert(AUTHORIZATION, self.authorization.clone());
        Ok(Request {
            method: reqwest::Method::POST,
            url: self.url.clone(),
            headers,
            body: records.concat(),
        })
    }

    fn health(&self) -> Option<Request> {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(AUTHORIZATION, self.authorization.clone());
        Some(Request {
            method: reqwest::Method::GET,
            url: self.health.clone(),
            headers,
            body: Vec::new(),
        })
    }

    fn judge(&self, reply: &Reply, excerpt: &str) -> Verdict {
        judge(reply.status, &reply.body, excerpt)
    }
}

/// HEC answers `{"text": …, "code": N}`; the code tells a refusal of the
/// events from a configuration problem, which share the status 400 (Splunk
/// docs, "Troubleshoot HTTP Event Collector", HEC status codes):
/// 1 token disabled (403), 2 token required (401), 3 invalid authorization
/// (401), 4 invalid token (403), 5 no data (400), 6 invalid data format
/// (400), 7 incorrect index (400), 8 internal error (500), 9 server busy
/// (503), 10 data channel missing (400), 11 invalid data channel (400),
/// 12 event field required (400), 13 event field blank (400), 14 ACK
/// disabled (400), 15 error in handling indexed fields (400), 16 query
/// string authorization not enabled (400), 18–23 HEC unhealthy (503).
///
/// Refused (dead letter): 400 with codes 5, 6, 12, 13, 15 (what the events
/// hold), or a 400/422 without a code. Everything else that is not 2xx is
/// retried: codes 1–4 (the token), 7 (the token may not write to that
/// index), 10, 11, 14, 16 (the collector's settings), 8, 9 and 503.
pub fn judge(status: u16, body: &[u8], excerpt: &str) -> Verdict {
    if status != 400 {
        return http::judge(status, excerpt);
    }
    let code = serde_json::from_slice::<Json>(body)
        .ok()
        .and_then(|answer| answer.get("code").and_then(Json::as_u64));
    match code {
        None | Some(5 | 6 | 12 | 13 | 15) => http::refused(status, excerpt),
        Some(_) => http::retry(status, excerpt),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::Parameter;

    fn spec(mode: &str) -> OutputSpec {
        let mut spec = OutputSpec::blank("s");
        spec.kind = "splunk".into();
        spec.parameters = vec![
            Parameter {
                name: "http_server_url".into(),
                ty: ParamType::String,
                value: "https://splunk.example:8088".into(),
            },
            Parameter {
                name: "splunk_token".into(),
                ty: ParamType::Password,
                value: "abc".into(),
            },
            Parameter {
                name: "splunk_mode".into(),
                ty: ParamType::String,
                value: mode.into(),
            },
        ];
        spec
    }

    #[test]
    fn metrics_carry_metric_name_fields() {
        let cache = Cache::new();
        cache.update(
            &Event::named("host")
                .unwrap()
                .with("host_id", 1i64)
                .with("name", "srv"),
        );
        let mut splunk = Splunk::from_spec(&spec("metrics")).unwrap();
        assert_eq!(
            splunk.url.as_str(),
            "https://splunk.example:8088/services/collector"
        );
        let metric = Event::named("metric")
            .unwrap()
            .with("host_id", 1i64)
            .with("service_id", 3i64)
            .with("name", "cpu")
            .with("value", 4.5)
            .with("ctime", 1_732_000_000i64);
        let mut out = Vec::new();
        splunk.encode(&metric, &cache, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"time\":1732000000,\"host\":\"srv\",\"source\":\"brokerstream\",\"event\":\"metric\",\"fields\":{\"metric_name:cpu\":4.5}}\n"
        );
    }

    #[test]
    fn hec_codes_tell_refused_events_from_configuration() {
        let judged = |status, body: &str| judge(status, body.as_bytes(), body);
        assert_eq!(
            judged(200, r#"{"text":"Success","code":0}"#),
            Verdict::Accepted
        );
        for (status, body) in [
            (
                400,
                r#"{"text":"Invalid data format","code":6,"invalid-event-number":0}"#,
            ),
            (400, r#"{"text":"Event field is required","code":12}"#),
            (400, "<html>bad request</html>"),
        ] {
            assert!(
                matches!(judged(status, body), Verdict::Refused(_)),
                "{body}"
            );
        }
        for (status, body) in [
            (
                400,
                r#"{"text":"Incorrect index","code":7,"invalid-event-number":1}"#,
            ),
            (401, r#"{"text":"Invalid authorization","code":3}"#),
            (403, r#"{"text":"Invalid token","code":4}"#),
            (403, r#"{"text":"Token disabled","code":1}"#),
            (503, r#"{"text":"Server is busy","code":9}"#),
        ] {
            let Verdict::Retry(error) = judged(status, body) else {
                panic!("{body} is not retried");
            };
            let error = error.to_string();
            assert!(error.starts_with(&format!("HTTP {status}")), "{error}");
        }
    }

    #[test]
    fn events_go_to_the_event_endpoint_with_the_token() {
        let splunk = Splunk::from_spec(&spec("events")).unwrap();
        assert_eq!(
            splunk.url.as_str(),
            "https://splunk.example:8088/services/collector/event"
        );
        assert_eq!(splunk.authorization.to_str().unwrap(), "Splunk abc");
        assert!(splunk.authorization.is_sensitive());
    }
}
