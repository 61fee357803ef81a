//! The `elasticsearch` output (Elasticsearch and OpenSearch): `_bulk`
//! NDJSON into an index or a data stream. The answer is read item by item:
//! items refused for a reason about the document itself (a mapping error)
//! go to the dead-letter file; items refused for want of room (429, 5xx)
//! or for the cluster's configuration (a missing index, a read-only block,
//! rights) are sent again, alone, and stay in the journal meanwhile.
//!
//! The `_bulk` API answers 200 with `"errors": true` when some items
//! failed, each item carrying its own `status` and `error`; "the success or
//! failure of an individual operation does not affect other operations in
//! the request" (Elasticsearch reference, Bulk API, response body). A
//! top-level 400 is a request it could not parse at all.

use reqwest::header::{HeaderValue, AUTHORIZATION};
use reqwest::Url;
use serde_json::{Map, Value as Json};

use super::http::{self, Items, Reply, Request, Service, Verdict};
use futures::future::BoxFuture;

use super::schema::{
    string_param as string, Kind, ParamSchema, Section, TestReport, BUFFER_AGE, BUFFER_SIZE,
};
use super::sink::{BuildContext, Sink};
use super::{FieldErrors, OutputSpec};
use crate::cache::Cache;
use crate::event::{Event, Value};

pub static KIND: Kind = Kind::batches(
    "elasticsearch",
    "Indexes events into Elasticsearch or OpenSearch with `_bulk`, into an index or a data stream; items refused for what they hold (a mapping error) go to the dead-letter file; the others are sent again alone.",
    PARAMETERS,
    check,
    build,
)
.with_sections(&[
    Section {
        title: "Authentication",
        collapsed: false,
        names: &["elastic_username", "elastic_password", "elastic_api_key"],
    },
    http::BATCHING,
    http::TLS,
    http::PROXY_SECTION,
])
.with_test(test);

/// `GET /` (the cluster's name and version), then the sample in one
/// `_bulk` into the index, each item's answer read.
fn test<'a>(
    spec: &'a OutputSpec,
    events: &'a [Event],
    cache: &'a Cache,
) -> BoxFuture<'a, TestReport> {
    Box::pin(http::test(spec, Elastic::from_spec(spec), events, cache))
}

fn build(spec: &OutputSpec, context: &BuildContext) -> Result<Box<dyn Sink>, String> {
    http::sink(spec, context, Elastic::from_spec(spec)?)
}

pub const PARAMETERS: &[ParamSchema] = &[
    string(
        "http_server_url",
        true,
        None,
        &[],
        "The cluster's URL, such as `https://elastic.example:9200`.",
    ),
    string("elastic_index", true, None, &[], "The index or data stream to write to."),
    string(
        "elastic_target",
        false,
        Some("index"),
        &["index", "data_stream"],
        "`index`: `index` actions. `data_stream`: `create` actions, each document with `@timestamp`.",
    ),
    string("elastic_username", false, None, &[], "Basic authentication user."),
    http::secret("elastic_password", "Basic authentication password."),
    http::secret("elastic_api_key", "API key (`Authorization: ApiKey …`), the base64 form Elasticsearch gives."),
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
    if spec.parameter("elastic_username").is_some() && spec.parameter("elastic_api_key").is_some() {
        errors.add(
            "parameters.elastic_api_key",
            "Basic (elastic_username) and API-key authentication exclude each other",
        );
    }
    if let Err(e) = Elastic::from_spec(spec) {
        errors.add("parameters.http_server_url", e);
    }
}

pub struct Elastic {
    url: Url,
    /// The action line of every document, with its newline.
    action: Vec<u8>,
    data_stream: bool,
    authorization: Option<HeaderValue>,
}

impl Elastic {
    pub fn from_spec(spec: &OutputSpec) -> Result<Elastic, String> {
        let base = spec.value("http_server_url").map(str::trim).unwrap_or("");
        let mut url = Url::parse(base).map_err(|e| format!("is not a URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err("is not an http:// or https:// URL".to_owned());
        }
        if !url.path().ends_with('/') {
            let with_slash = format!("{}/", url.path());
            url.set_path(&with_slash);
        }
        let url = url.join("_bulk").map_err(|e| e.to_string())?;
        let index = spec.value("elastic_index").map(str::trim).unwrap_or("");
        if index.is_empty() {
            return Err("elastic_index must not be empty".into());
        }
        let data_stream = spec.value("elastic_target") == Some("data_stream");
        let verb = if data_stream { "create" } else { "index" };
        let mut action = serde_json::to_vec(&serde_json::json!({ verb: {"_index": index} }))
            .map_err(|e| e.to_string())?;
        action.push(b'\n');
        let authorization =
            if let Some(key) = spec.value("elastic_api_key").filter(|k| !k.is_empty()) {
                Some(http::secret_header(&format!("ApiKey {key}"))?)
            } else if let Some(user) = spec.value("elastic_username").filter(|u| !u.is_empty()) {
                Some(http::basic_auth(
                    user,
                    spec.value("elastic_password").unwrap_or(""),
                )?)
            } else {
                None
            };
        Ok(Elastic {
            url,
            action,
            data_stream,
            authorization,
        })
    }
}

impl Service for Elastic {
    fn encode(&mut self, event: &Event, cache: &Cache, out: &mut Vec<u8>) {
        let Ok(Json::Object(mut doc)) = serde_json::to_value(event) else {
            return;
        };
        let int = |key| event.get(key).and_then(Value::as_i64);
        if let Some(h) = int("host_id") {
            if let Some(name) = cache.host_name(h) {
                doc.insert("host_name".into(), name.into());
            }
            if let Some(d) = int("service_id").and_then(|s| cache.service_description(h, s)) {
                doc.insert("service_description".into(), d.into());
            }
        }
        if self.data_stream {
            let time = int("ctime")
                .or_else(|| int("last_check"))
                .or_else(|| int("time"))
                .unwrap_or(0);
            let mut ordered = Map::new();
            ordered.insert("@timestamp".into(), (time * 1000).into());
            ordered.extend(doc);
            doc = ordered;
        }
        out.extend_from_slice(&self.action);
        let _ = serde_json::to_writer(&mut *out, &doc);
        out.push(b'\n');
    }

    /// The action line and the document, each ending a line of the `_bulk` NDJSON.
    fn records_end_with_newline(&self) -> bool {
        true
    }

    fn request(&self, records: &[&[u8]]) -> Result<Request, String> {
        let mut headers = http::headers("application/x-ndjson", &[]);
        if let Some(auth) = &self.authorization {
            headers.insert(AUTHORIZATION, auth.clone());
        }
        Ok(Request {
            url: self.url.clone(),
            headers,
            method: reqwest::Method::POST,
            body: records.concat(),
        })
    }

    fn health(&self) -> Option<Request> {
        // The `_bulk` URL is the base URL's `_bulk`: its base is `.`.
        let url = self.url.join(".").ok()?;
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(auth) = &self.authorization {
            headers.insert(AUTHORIZATION, auth.clone());
        }
        Some(Request {
            method: reqwest::Method::GET,
            url,
            headers,
            body: Vec::new(),
        })
    }

    fn items(&self, reply: &Reply, records: usize) -> Items {
        bulk_items(&reply.body, records)
    }

    /// 2xx: read item by item. A 400 that still carries `items` (a proxy or
    /// a compatible store answering the whole request with the worst item's
    /// code) is read item by item too; any other 400 is a malformed
    /// request, refused. 401, 403 (security exception, cluster block), 404
    /// (no such index, auto-creation off), 413 (over
    /// `http.max_content_length`): configuration, retried. 429 and 5xx:
    /// retried.
    fn judge(&self, reply: &Reply, excerpt: &str) -> Verdict {
        if reply.status == 400 && has_items(&reply.body) {
            return Verdict::Accepted;
        }
        http::judge(reply.status, excerpt)
    }
}

fn has_items(body: &[u8]) -> bool {
    serde_json::from_slice::<Json>(body)
        .ok()
        .is_some_and(|answer| answer.get("items").is_some_and(Json::is_array))
}

/// Whether an item refused with this status and error type was refused for
/// what the document holds (dead letter), rather than for the cluster's
/// state or configuration (sent again): 400 (`mapper_parsing_exception`,
/// `document_parsing_exception`, `illegal_argument_exception`…), 409 (a
/// version conflict: the document exists) and 422, except a closed index
/// (`index_closed_exception` is a 400 about the index, not the document).
fn item_refused(status: u64, kind: &str) -> bool {
    matches!(status, 400 | 409 | 422) && kind != "index_closed_exception"
}

/// Reads a `_bulk` answer. Without `"errors": true` every item was taken.
/// An answer that does not parse, or has fewer items than records, leaves
/// the unaccounted records to be sent again: at least once, never lost.
pub fn bulk_items(body: &[u8], records: usize) -> Items {
    let mut items = Items::default();
    let Ok(answer) = serde_json::from_slice::<Json>(body) else {
        items.retry = (0..records)
            .map(|i| (i, "the _bulk answer is not JSON".to_owned()))
            .collect();
        return items;
    };
    if answer.get("errors") == Some(&Json::Bool(false)) {
        return items;
    }
    let list = answer
        .get("items")
        .and_then(Json::as_array)
        .cloned()
        .unwrap_or_default();
    for i in 0..records {
        let Some(item) = list
            .get(i)
            .and_then(Json::as_object)
            .and_then(|o| o.values().next())
        else {
            items
                .retry
                .push((i, "missing from the _bulk answer".to_owned()));
            continue;
        };
        let status = item.get("status").and_then(Json::as_u64).unwrap_or(0);
        if (200..300).contains(&status) {
            continue;
        }
        let error = item.get("error");
        let kind = error
            .and_then(|e| e.get("type"))
            .and_then(Json::as_str)
            .unwrap_or("");
        let reason = error
            .and_then(|e| e.get("reason"))
            .and_then(Json::as_str)
            .unwrap_or("");
        let text = format!("item {status} {kind}: {reason}");
        if item_refused(status, kind) {
            items.refused.push((i, text));
        } else {
            items.retry.push((i, text));
        }
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::ParamType;
    use crate::output::Parameter;

    #[test]
    fn data_streams_get_create_actions_and_timestamps() {
        let mut spec = OutputSpec::blank("e");
        spec.kind = "elasticsearch".into();
        let param = |name: &str, ty, value: &str| Parameter {
            name: name.into(),
            ty,
            value: value.into(),
        };
        spec.parameters = vec![
            param(
                "http_server_url",
                ParamType::String,
                "http://127.0.0.1:9200/es",
            ),
            param("elastic_index", ParamType::String, "metrics-centreon"),
            param("elastic_target", ParamType::String, "data_stream"),
            param("elastic_username", ParamType::String, "u"),
            param("elastic_password", ParamType::Password, "p"),
        ];
        let mut elastic = Elastic::from_spec(&spec).unwrap();
        assert_eq!(elastic.url.as_str(), "http://127.0.0.1:9200/es/_bulk");
        let auth = elastic.authorization.as_ref().unwrap();
        assert_eq!(auth.to_str().unwrap(), "Basic dTpw");
        let metric = Event::named("metric")
            .unwrap()
            .with("name", "cpu")
            .with("value", 1.5)
            .with("ctime", 1_732_000_000i64);
        let mut out = Vec::new();
        elastic.encode(&metric, &Cache::new(), &mut out);
        let text = String::from_utf8(out).unwrap();
        let mut lines = text.lines();
        assert_eq!(
            lines.next(),
            Some(r#"{"create":{"_index":"metrics-centreon"}}"#)
        );
        let doc: Json = serde_json::from_str(lines.next().unwrap()).unwrap();
        assert_eq!(doc["@timestamp"], 1_732_000_000_000i64);
        assert_eq!(doc["name"], "cpu");
        assert!(text.starts_with(r#"{"create""#) && text.contains(r#"{"@timestamp":"#));
    }

    #[test]
    fn bulk_answers_are_read_item_by_item() {
        let body = br#"{"took":3,"errors":true,"items":[
            {"index":{"status":201}},
            {"index":{"status":400,"error":{"type":"mapper_parsing_exception","reason":"failed to parse field [value]"}}},
            {"index":{"status":429,"error":{"type":"es_rejected_execution_exception","reason":"queue full"}}}
        ]}"#;
        let items = bulk_items(body, 4);
        let config = br#"{"errors":true,"items":[
            {"index":{"status":404,"error":{"type":"index_not_found_exception","reason":"no such index [x]"}}},
            {"index":{"status":403,"error":{"type":"cluster_block_exception","reason":"index [x] blocked by: [FORBIDDEN/8/index write (api)]"}}},
            {"index":{"status":401,"error":{"type":"security_exception","reason":"unable to authenticate"}}},
            {"index":{"status":400,"error":{"type":"index_closed_exception","reason":"closed"}}},
            {"create":{"status":409,"error":{"type":"version_conflict_engine_exception","reason":"exists"}}}
        ]}"#;
        let config = bulk_items(config, 5);
        let retry: Vec<usize> = config.retry.iter().map(|(i, _)| *i).collect();
        assert_eq!(retry, [0, 1, 2, 3]);
        assert_eq!(config.refused.len(), 1);
        assert_eq!(config.refused[0].0, 4);
        assert_eq!(
            items.refused,
            [(
                1,
                "item 400 mapper_parsing_exception: failed to parse field [value]".to_owned()
            )]
        );
        let retry: Vec<usize> = items.retry.iter().map(|(i, _)| *i).collect();
        assert_eq!(retry, [2, 3]);
        assert_eq!(
            bulk_items(br#"{"errors":false,"items":[]}"#, 3),
            Items::default()
        );
        assert_eq!(bulk_items(b"<html>", 2).retry.len(), 2);
    }
}
