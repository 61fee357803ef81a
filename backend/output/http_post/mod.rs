//! The `http` output: a POST of a JSON array or NDJSON per batch, each
//! event's body built from a template or its JSON form.
//!
//! A generic destination says nothing beyond its status code, read by the
//! default [`http::judge`]: 2xx delivered; 400 and 422 (the request's
//! content cannot be processed, RFC 9110) → dead letter; any other answer
//! (3xx, 401, 403, 404, 405, 407, 413, other 4xx, 429, 5xx) → retried, the
//! events kept.

use reqwest::header::{HeaderName, HeaderValue, AUTHORIZATION};
use reqwest::Url;

use super::http::{self, Request, Service};
use futures::future::BoxFuture;

use super::schema::{
    string_param as string, Kind, ParamSchema, Section, TestReport, BUFFER_AGE, BUFFER_SIZE,
};
use super::sink::{BuildContext, Sink};
use super::{FieldErrors, OutputSpec, Template};
use crate::cache::Cache;
use crate::event::Event;

pub static KIND: Kind = Kind::batches(
    "http",
    "POSTs each batch to a URL as a JSON array or NDJSON, each event's body from a template or its JSON form; custom headers, Basic or Bearer authentication.",
    PARAMETERS,
    check,
    build,
)
.with_sections(&[
    Section {
        title: "Authentication",
        collapsed: false,
        names: &["http_user", "http_password", "http_token"],
    },
    http::BATCHING,
    http::TLS,
    http::PROXY_SECTION,
])
.with_test(test);

/// A generic destination has no health request: one POST of the sample,
/// as the output would send it.
fn test<'a>(
    spec: &'a OutputSpec,
    events: &'a [Event],
    cache: &'a Cache,
) -> BoxFuture<'a, TestReport> {
    Box::pin(http::test(spec, Post::from_spec(spec), events, cache))
}

fn build(spec: &OutputSpec, context: &BuildContext) -> Result<Box<dyn Sink>, String> {
    http::sink(spec, context, Post::from_spec(spec)?)
}

pub const PARAMETERS: &[ParamSchema] = &[
    string("http_url", true, None, &[], "The URL to POST batches to (`http://` or `https://`)."),
    string(
        "http_format",
        false,
        Some("json"),
        &["json", "ndjson"],
        "`json`: a JSON array of the batch's events. `ndjson`: one event per line.",
    ),
    string(
        "http_template",
        false,
        None,
        &[],
        "Each event's body, with `{field}` placeholders and cache names such as `{cache.host.name}`; the event's JSON form when empty.",
    ),
    string(
        "http_headers",
        false,
        None,
        &[],
        "Extra headers, one `Name: value` per line. Not secret: put credentials in http_password or http_token.",
    ),
    string("http_user", false, None, &[], "Basic authentication user."),
    http::secret("http_password", "Basic authentication password."),
    http::secret("http_token", "Bearer token (`Authorization: Bearer …`)."),
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
    if let Some(t) = spec.parameter("http_template") {
        if let Err(e) = Template::parse(&t.value) {
            errors.add("parameters.http_template", e);
        }
    }
    if spec.parameter("http_user").is_some() && spec.parameter("http_token").is_some() {
        errors.add(
            "parameters.http_token",
            "Basic (http_user) and Bearer (http_token) authentication exclude each other",
        );
    }
    if let Some(h) = spec.parameter("http_headers") {
        if let Err(e) = parse_headers(&h.value) {
            errors.add("parameters.http_headers", e);
        }
    }
    if errors.is_empty() {
        if let Err(e) = Post::from_spec(spec) {
            errors.add("parameters.http_url", e);
        }
    }
}

/// `Name: value` lines; blank lines are skipped.
pub fn parse_headers(text: &str) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
    let mut headers = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("line {}: expected `Name: value`", i + 1))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| format!("line {}: `{}` is not a header name", i + 1, name.trim()))?;
        let value = HeaderValue::from_str(value.trim()).map_err(|_| {
            format!(
                "line {}: the value holds a character a header cannot",
                i + 1
            )
        })?;
        headers.push((name, value));
    }
    Ok(headers)
}

#[derive(Clone, Copy, PartialEq)]
enum Format {
    JsonArray,
    Ndjson,
}

pub struct Post {
    url: Url,
    format: Format,
    template: Option<Template>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Post {
    pub fn from_spec(spec: &OutputSpec) -> Result<Post, String> {
        let text = spec.value("http_url").map(str::trim).unwrap_or("");
        let url = Url::parse(text).map_err(|e| format!("is not a URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err("is not an http:// or https:// URL".to_owned());
        }
        let format = match spec.value("http_format") {
            Some("ndjson") => Format::Ndjson,
            _ => Format::JsonArray,
        };
        let template = match spec.value("http_template").filter(|t| !t.is_empty()) {
            Some(t) => Some(Template::parse(t)?),
            None => None,
        };
        let mut headers = parse_headers(spec.value("http_headers").unwrap_or(""))?;
        if let Some(token) = spec.value("http_token").filter(|t| !t.is_empty()) {
            headers.push((
                AUTHORIZATION,
                http::secret_header(&format!("Bearer {token}"))?,
            ));
        } else if let Some(user) = spec.value("http_user").filter(|u| !u.is_empty()) {
            let password = spec.value("http_password").unwrap_or("");
            headers.push((AUTHORIZATION, http::basic_auth(user, password)?));
        }
        Ok(Post {
            url,
            format,
            template,
            headers,
        })
    }
}

impl Service for Post {
    fn encode(&mut self, event: &Event, cache: &Cache, out: &mut Vec<u8>) {
        match &self.template {
            Some(template) => {
                let mut text = String::new();
                template.render(event, cache, &mut text);
                out.extend_from_slice(text.as_bytes());
            }
            None => {
                // Writing into a Vec cannot fail.
                let _ = serde_json::to_writer(&mut *out, event);
            }
        }
    }

    /// The request builder puts the separators between records.
    fn records_end_with_newline(&self) -> bool {
        false
    }

    fn request(&self, records: &[&[u8]]) -> Result<Request, String> {
        let size: usize = records.iter().map(|r| r.len() + 1).sum::<usize>() + 2;
        let mut body = Vec::with_capacity(size);
        let content_type = match self.format {
            Format::JsonArray => {
                body.push(b'[');
                for (i, record) in records.iter().enumerate() {
                    if i > 0 {
                        body.push(b',');
                    }
                    body.extend_from_slice(record);
                }
                body.push(b']');
                "application/json"
            }
            Format::Ndjson => {
                for record in records {
                    body.extend_from_slice(record);
                    body.push(b'\n');
                }
                "application/x-ndjson"
            }
        };
        Ok(Request {
            method: reqwest::Method::POST,
            url: self.url.clone(),
            headers: http::headers(content_type, &self.headers),
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_read_line_by_line() {
        let headers = parse_headers("X-A: 1\n\n X-B :two words \n").unwrap();
        assert_eq!(headers.len(), 2);
        assert_eq!(headers[0].0.as_str(), "x-a");
        assert_eq!(headers[1].1.to_str().unwrap(), "two words");
        assert!(parse_headers("no colon").is_err());
        assert!(parse_headers("bad name: x").is_err());
    }

    fn post(format: Format) -> Post {
        Post {
            url: Url::parse("http://127.0.0.1/x").unwrap(),
            format,
            template: None,
            headers: Vec::new(),
        }
    }

    #[test]
    fn bodies_are_json_arrays_or_ndjson() {
        let records: [&[u8]; 2] = [b"{\"a\":1}", b"{\"b\":2}"];
        let body = post(Format::JsonArray).request(&records).unwrap().body;
        assert_eq!(body, b"[{\"a\":1},{\"b\":2}]");
        let body = post(Format::Ndjson).request(&records).unwrap().body;
        assert_eq!(body, b"{\"a\":1}\n{\"b\":2}\n");
    }
}
