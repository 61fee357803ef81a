//! What every HTTP output shares: the parameters of the connection (TLS,
//! proxy, timeouts, gzip), the client, how a response is judged (accepted,
//! worth retrying, or refused for good), the dead-letter file for refused
//! events, and the sink that turns a batch of encoded events into requests.
//!
//! Each kind (`influxdb`, `http`, `splunk`…) brings only its encoder and
//! its request builder: a [`Service`].

pub mod tls;

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_ENCODING, CONTENT_TYPE};
use reqwest::{Client, Url};

use super::deadletter::DeadLetters;
use super::delivery::DeliveryError;
use super::schema::ParamSchema;
use super::sink::{BuildContext, SendReport, Sink};
use super::{OutputSpec, ParamType, Secrets};
use crate::cache::Cache;
use crate::event::Event;
use tls::TlsSettings;

/// How much of a response body the status keeps.
pub const BODY_EXCERPT: usize = 512;

/// An optional string parameter of the shared connection settings.
const fn string(
    name: &'static str,
    default: Option<&'static str>,
    help: &'static str,
) -> ParamSchema {
    super::schema::string_param(name, false, default, &[], help)
}

const fn switch(name: &'static str, default: &'static str, help: &'static str) -> ParamSchema {
    ParamSchema {
        name,
        ty: ParamType::Number,
        required: false,
        default: Some(default),
        help,
        secret: false,
        choices: &["0", "1"],
        min: Some(0.0),
    }
}

pub const fn secret(name: &'static str, help: &'static str) -> ParamSchema {
    ParamSchema {
        name,
        ty: ParamType::Password,
        required: false,
        default: None,
        help,
        secret: true,
        choices: &[],
        min: None,
    }
}

pub const VERIFY_PEER: ParamSchema = switch(
    "tls_verify_peer",
    "1",
    "1: the server's certificate must lead to a trusted root (the system's, or `tls_ca_file`). 0: any chain.",
);
pub const VERIFY_HOST: ParamSchema = switch(
    "tls_verify_host",
    "1",
    "1: the server's certificate must name the host. 0: any name.",
);
pub const CA_FILE: ParamSchema = string(
    "tls_ca_file",
    None,
    "PEM file of trusted roots, instead of the system's.",
);
pub const CLIENT_CERT: ParamSchema = string(
    "tls_client_cert",
    None,
    "PEM client certificate (its key may be in the same file).",
);
pub const CLIENT_KEY: ParamSchema =
    string("tls_client_key", None, "PEM key of the client certificate.");
pub const PROXY: ParamSchema = string(
    "proxy_address",
    None,
    "Proxy for every request: `http://host:port` (credentials go in proxy_username/proxy_password).",
);
pub const PROXY_USER: ParamSchema =
    string("proxy_username", None, "Proxy Basic authentication user.");
pub const PROXY_PASSWORD: ParamSchema =
    secret("proxy_password", "Proxy Basic authentication password.");
pub const TIMEOUT: ParamSchema = ParamSchema {
    name: "timeout",
    ty: ParamType::Number,
    required: false,
    default: Some("10"),
    help: "Seconds a request may take, answer included, before it is abandoned and retried.",
    secret: false,
    choices: &[],
    min: Some(0.001),
};
pub const GZIP: ParamSchema = switch(
    "gzip",
    "0",
    "1: compress request bodies (Content-Encoding: gzip).",
);
pub const BUFFER_BYTES: ParamSchema = ParamSchema {
    name: "max_buffer_bytes",
    ty: ParamType::Number,
    required: false,
    default: Some("5242880"),
    help: "Flush once the encoded batch reaches this many bytes.",
    secret: false,
    choices: &[],
    min: Some(1.0),
};

/// The form's sections every HTTP kind shares, after its own.
pub const BATCHING: super::schema::Section = super::schema::Section {
    title: "Batching",
    collapsed: true,
    names: &["max_buffer_bytes", "timeout", "gzip"],
};
pub const TLS: super::schema::Section = super::schema::Section {
    title: "TLS",
    collapsed: true,
    names: &[
        "tls_verify_peer",
        "tls_verify_host",
        "tls_ca_file",
        "tls_client_cert",
        "tls_client_key",
    ],
};
pub const PROXY_SECTION: super::schema::Section = super::schema::Section {
    title: "Proxy",
    collapsed: true,
    names: &["proxy_address", "proxy_username", "proxy_password"],
};

/// A parameter's value or its default, as text.
fn text<'a>(spec: &'a OutputSpec, name: &str) -> Option<&'a str> {
    spec.value(name).map(str::trim).filter(|v| !v.is_empty())
}

pub fn flag(spec: &OutputSpec, name: &str) -> bool {
    text(spec, name).and_then(|v| v.parse::<f64>().ok()) == Some(1.0)
}

/// The connection settings of an output.
#[derive(Clone)]
pub struct Connection {
    pub tls: TlsSettings,
    /// The proxy's address, and its user and password.
    pub proxy: Option<(String, Option<(String, String)>)>,
    pub timeout: Duration,
    pub gzip: bool,
}

/// Without the proxy password.
impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let proxy = self.proxy.as_ref().map(|(address, credentials)| {
            (
                address,
                credentials
                    .as_ref()
                    .map(|(user, _)| (user, super::REDACTED)),
            )
        });
        f.debug_struct("Connection")
            .field("tls", &self.tls)
            .field("proxy", &proxy)
            .field("timeout", &self.timeout)
            .field("gzip", &self.gzip)
            .finish()
    }
}

impl Connection {
    pub fn from_spec(spec: &OutputSpec) -> Result<Connection, String> {
        let timeout = text(spec, "timeout")
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v > 0.0)
            .unwrap_or(10.0)
            .min(86_400.0);
        let proxy = match text(spec, "proxy_address") {
            None => None,
            Some(address) => {
                let credentials = text(spec, "proxy_username").map(|user| {
                    let password = spec.value("proxy_password").unwrap_or("").to_owned();
                    (user.to_owned(), password)
                });
                Some((address.to_owned(), credentials))
            }
        };
        Ok(Connection {
            tls: TlsSettings {
                verify_peer: !matches!(text(spec, "tls_verify_peer"), Some("0")),
                verify_host: !matches!(text(spec, "tls_verify_host"), Some("0")),
                ca_file: text(spec, "tls_ca_file").map(PathBuf::from),
                client_cert: text(spec, "tls_client_cert").map(PathBuf::from),
                client_key: text(spec, "tls_client_key").map(PathBuf::from),
            },
            proxy,
            timeout: Duration::from_secs_f64(timeout),
            gzip: flag(spec, "gzip"),
        })
    }

    /// An async client. Environment proxies are ignored, as for the Lua
    /// modules: an output's route is part of its definition, not of the
    /// service's environment.
    pub fn client(&self) -> Result<Client, String> {
        let tls = tls::client_config(&self.tls).map_err(|e| match e {
            tls::TlsSetupError::CaFile(m) | tls::TlsSetupError::ClientCert(m) => m,
        })?;
        let mut builder = Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(self.timeout)
            .connect_timeout(self.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy();
        if let Some((address, credentials)) = &self.proxy {
            let mut proxy = reqwest::Proxy::all(address.as_str())
                .map_err(|e| format!("invalid proxy_address: {e}"))?;
            if let Some((user, password)) = credentials {
                proxy = proxy.basic_auth(user, password);
            }
            builder = builder.proxy(proxy);
        }
        builder
            .build()
            .map_err(|e| format!("cannot set up HTTP: {e}"))
    }
}

/// What became of a request.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    Accepted,
    /// The events stay in the journal and the same request is made again
    /// with backoff: a network or TLS error, a timeout, 5xx or 429 (the
    /// destination may take it later), and every answer that says the
    /// output or the destination is misconfigured (401, 403, 404, 405, 407,
    /// 413, a redirect…): once the configuration is mended, the events are
    /// delivered. Never dead-lettered.
    Retry(DeliveryError),
    /// The destination refused *these events* (malformed line protocol, a
    /// document it cannot take): sending them again would be refused again,
    /// so they go to the dead-letter file and are acknowledged.
    Refused(String),
}

/// The default reading of an answer, for destinations that say nothing
/// more than the status code (the `http` kind; the others refine it in
/// [`Service::judge`]). Only 400 (Bad Request) and 422 (Unprocessable
/// Content), the codes RFC 9110 §15.5.1 and §15.5.21 give to a request
/// whose content the server cannot process, are taken as a refusal of the
/// events; every other answer is retried and keeps them.
pub fn judge(status: u16, excerpt: &str) -> Verdict {
    match status {
        200..=299 => Verdict::Accepted,
        400 | 422 => refused(status, excerpt),
        _ => retry(status, excerpt),
    }
}

/// A refusal of the events, as the dead-letter file and the status give it.
pub fn refused(status: u16, excerpt: &str) -> Verdict {
    Verdict::Refused(format!("HTTP {status}: {excerpt}"))
}

/// A retry, with what the status code says about the configuration.
pub fn retry(status: u16, excerpt: &str) -> Verdict {
    let hint = status_hint(status);
    let message = format!(
        "HTTP {status}{hint}: {excerpt}; the events stay in the journal and are sent again"
    );
    Verdict::Retry(match status {
        408 | 429 | 500..=599 => DeliveryError::Unavailable(message),
        _ => DeliveryError::Misconfigured(message),
    })
}

/// What a status code says about the configuration, for the operator.
fn status_hint(status: u16) -> &'static str {
    match status {
        401 => " (authentication refused: check the credentials)",
        403 => " (permission denied: check the credentials' rights)",
        404 => " (not found: check the URL, database, bucket or index)",
        405 => " (method not allowed: check the URL)",
        407 => " (the proxy refused its credentials)",
        413 => " (the batch is too large for the destination: lower max_buffer_size or max_buffer_bytes)",
        300..=399 => " (a redirect, which is not followed: check the URL)",
        429 | 500..=599 => "",
        _ => " (not a refusal of the events)",
    }
}

/// A request to make, as a kind's request builder describes it.
pub struct Request {
    /// POST for a batch; a kind's health check may GET.
    pub method: reqwest::Method,
    pub url: Url,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// An answer: status and body.
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

/// What a kind brings: how an event is encoded, how a batch of encoded
/// events becomes a request, and how the answer is read.
pub trait Service: Send + Sync {
    /// Appends the record of one event to `out`; nothing when the event has
    /// nothing for this destination. `&mut`: an encoder may remember what
    /// it worked out for earlier events (names).
    fn encode(&mut self, event: &Event, cache: &Cache, out: &mut Vec<u8>);

    /// Whether each record `encode` writes ends with a newline (line
    /// protocol, NDJSON), which the dead-letter file leaves out.
    fn records_end_with_newline(&self) -> bool;

    /// The request carrying these records (each one as `encode` wrote it).
    fn request(&self, records: &[&[u8]]) -> Result<Request, String>;

    /// Which records of an accepted request were refused after all, with
    /// the reason, and which must be sent again. Most services answer for
    /// the whole request, hence the default.
    fn items(&self, _reply: &Reply, _records: usize) -> Items {
        Items::default()
    }

    /// What the answer means for the whole request. `excerpt` is the
    /// start of the body, redacted. The default reads the status code only.
    fn judge(&self, reply: &Reply, excerpt: &str) -> Verdict {
        judge(reply.status, excerpt)
    }

    /// The request the form's Test makes first, which changes nothing
    /// (InfluxDB's `/ping`, Elasticsearch's `GET /`…); `None`: the Test
    /// goes straight to sending the sample.
    fn health(&self) -> Option<Request> {
        None
    }
}

/// Per-record verdicts inside an accepted answer (`_bulk`).
#[derive(Debug, Default, PartialEq)]
pub struct Items {
    /// Indexes of records to send again, and why.
    pub retry: Vec<(usize, String)>,
    /// Indexes of records refused for good, and why.
    pub refused: Vec<(usize, String)>,
}

/// An HTTP output's half of the worker: keeps where each event's record
/// starts in the batch, sends the records still owed, and settles each one
/// as delivered, dead-lettered or to be sent again.
pub struct HttpSink {
    service: Box<dyn Service>,
    client: Client,
    gzip: bool,
    output: String,
    dead_letters: Arc<DeadLetters>,
    /// What the last exchange left for the status, until the worker takes
    /// it: the sink does not write the status itself.
    report: SendReport,
    /// End offset of each event's record in the batch bytes.
    ends: Vec<usize>,
    /// Records still owed, by index: all of them until a partial answer
    /// settles some.
    owed: Option<Vec<usize>>,
    /// A destination may echo a credential in its answer (a URL, a header):
    /// taken out of what is kept, logged and dead-lettered.
    secrets: Secrets,
}

impl HttpSink {
    pub fn new(
        spec: &OutputSpec,
        service: Box<dyn Service>,
        dead_letters: &Arc<DeadLetters>,
    ) -> Result<HttpSink, String> {
        let connection = Connection::from_spec(spec)?;
        Ok(HttpSink {
            service,
            client: connection.client()?,
            gzip: connection.gzip,
            output: spec.name.clone(),
            dead_letters: Arc::clone(dead_letters),
            report: SendReport::default(),
            ends: Vec::new(),
            owed: None,
            secrets: Secrets::of(spec),
        })
    }

    fn record<'a>(&self, bytes: &'a [u8], index: usize) -> &'a [u8] {
        let start = if index == 0 { 0 } else { self.ends[index - 1] };
        bytes.get(start..self.ends[index]).unwrap_or_default()
    }

    fn dead_letter(&mut self, records: &[&[u8]], reason: &str) -> Result<(), DeliveryError> {
        let reason = self.secrets.redact(reason);
        let reason = reason.as_ref();
        self.dead_letters
            .append(&self.output, records, reason)
            .map_err(|e| DeliveryError::Unavailable(e.to_string()))?;
        tracing::warn!(
            records = records.len(),
            file = %self.dead_letters.path(&self.output).display(),
            "events refused by the destination went to the dead-letter file: {reason}"
        );
        self.report.dead_lettered += records.len() as u64;
        self.report.dead_letter_reason = Some(reason.to_owned());
        Ok(())
    }

    /// Sends what is owed of the batch. `Ok` means every record is settled
    /// (delivered or dead-lettered) and the batch may be acknowledged;
    /// `Err` keeps what is still owed for the retry.
    async fn deliver(&mut self, bytes: &[u8]) -> Result<(), DeliveryError> {
        let owed: Vec<usize> = match &self.owed {
            Some(owed) => owed.clone(),
            None => (0..self.ends.len()).collect(),
        };
        if owed.is_empty() {
            return Ok(());
        }
        let records: Vec<&[u8]> = owed.iter().map(|&i| self.record(bytes, i)).collect();
        // A request that cannot be made from this definition (a header
        // value it cannot hold) will not be made later either.
        let request = self
            .service
            .request(&records)
            .map_err(DeliveryError::Misconfigured)?;
        let reply = self.exchange(request).await?;
        let excerpt = self.secrets.excerpt(&reply.body, BODY_EXCERPT);
        self.report.response = Some((reply.status, excerpt.clone()));
        match self.service.judge(&reply, &excerpt) {
            Verdict::Retry(error) => Err(error),
            Verdict::Refused(reason) => {
                self.dead_letter(&records, &reason)?;
                self.owed = Some(Vec::new());
                Ok(())
            }
            Verdict::Accepted => {
                let items = self.service.items(&reply, records.len());
                if !items.refused.is_empty() {
                    let refused: Vec<&[u8]> = items
                        .refused
                        .iter()
                        .filter_map(|(i, _)| records.get(*i).copied())
                        .collect();
                    // One reason per call keeps the file readable; each
                    // item's own reason is what an operator needs.
                    for ((_, reason), record) in items.refused.iter().zip(&refused) {
                        self.dead_letter(std::slice::from_ref(record), reason)?;
                    }
                }
                if items.retry.is_empty() {
                    self.owed = Some(Vec::new());
                    return Ok(());
                }
                let again: Vec<usize> = items
                    .retry
                    .iter()
                    .filter_map(|(i, _)| owed.get(*i).copied())
                    .collect();
                let first = items.retry[0].1.clone();
                let count = again.len();
                self.owed = Some(again);
                // Per-item retries are the destination's own load (429,
                // a shard not ready), never a definition problem.
                Err(DeliveryError::Unavailable(format!(
                    "{count} of {} records to send again: {first}",
                    records.len()
                )))
            }
        }
    }

    async fn exchange(&self, request: Request) -> Result<Reply, DeliveryError> {
        exchange(&self.client, self.gzip, request).await
    }
}

/// Makes the request (compressed if `gzip`) and reads the whole answer.
async fn exchange(client: &Client, gzip: bool, request: Request) -> Result<Reply, DeliveryError> {
    let mut headers = request.headers;
    let body = if gzip {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let body = encoder
            .write_all(&request.body)
            .and_then(|_| encoder.finish())
            .map_err(|e| DeliveryError::Unavailable(format!("cannot compress: {e}")))?;
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        body
    } else {
        request.body
    };
    let response = client
        .request(request.method, request.url)
        .headers(headers)
        .body(body)
        .send()
        .await
        .map_err(|e| describe(&e))?;
    let status = response.status().as_u16();
    let body = response.bytes().await.map_err(|e| describe(&e))?;
    Ok(Reply {
        status,
        body: body.to_vec(),
    })
}

impl Sink for HttpSink {
    fn encode(&mut self, event: &Event, cache: &Cache, out: &mut Vec<u8>) {
        let before = out.len();
        self.service.encode(event, cache, out);
        if out.len() > before {
            self.ends.push(out.len());
        }
    }

    /// The dead-letter file keeps a record without its final newline; the
    /// kinds whose records end with one get it back.
    fn push_encoded(&mut self, record: &[u8], out: &mut Vec<u8>) -> bool {
        out.extend_from_slice(record);
        if self.service.records_end_with_newline() && !record.ends_with(b"\n") {
            out.push(b'\n');
        }
        self.ends.push(out.len());
        true
    }

    /// Nothing to open: a destination that is down shows at the first
    /// flush, and is retried like any failed flush.
    fn check(&mut self) -> BoxFuture<'_, Result<(), DeliveryError>> {
        Box::pin(std::future::ready(Ok(())))
    }

    fn send<'a>(&'a mut self, batch: &'a [u8]) -> BoxFuture<'a, Result<(), DeliveryError>> {
        Box::pin(self.deliver(batch))
    }

    fn take_report(&mut self) -> SendReport {
        std::mem::take(&mut self.report)
    }

    /// Forgets the batch once the worker acknowledged it.
    fn reset(&mut self) {
        self.ends.clear();
        self.owed = None;
    }
}

/// The sink of an HTTP kind: `service` encodes and builds the requests,
/// the sink sends them and settles each record.
pub fn sink(
    spec: &OutputSpec,
    context: &BuildContext,
    service: impl Service + 'static,
) -> Result<Box<dyn Sink>, String> {
    Ok(Box::new(HttpSink::new(
        spec,
        Box::new(service),
        context.dead_letters,
    )?))
}

/// A reqwest error with its causes, without the URL's query (which may hold
/// a database user name) — reqwest prints the URL it failed on. A
/// certificate that is not trusted, a name that does not resolve and a URL
/// reqwest cannot use wait for an operator; a refused connection or a
/// timeout, for the destination.
fn describe(error: &reqwest::Error) -> DeliveryError {
    let what = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let mut text = what.to_owned();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    let lower = text.to_ascii_lowercase();
    let misconfigured = error.is_builder()
        || error.is_redirect()
        || [
            "certificate",
            "unknown issuer",
            "dns error",
            "failed to lookup address",
            "invalid dns name",
        ]
        .iter()
        .any(|clue| lower.contains(clue));
    if misconfigured {
        DeliveryError::Misconfigured(text)
    } else {
        DeliveryError::Unavailable(text)
    }
}

/// A URL as the Test shows it: without credentials or query, which may
/// hold a database user name.
fn shown(url: &Url) -> String {
    let mut url = url.clone();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.set_query(None);
    url.to_string()
}

/// The form's Test of an HTTP kind: the kind's health request, if it has
/// one, then one request carrying the sample events' records, each answer
/// read as the running output would read it. Nothing is dead-lettered: a
/// refusal is reported, not kept.
pub async fn test(
    spec: &OutputSpec,
    service: Result<impl Service, String>,
    events: &[Event],
    cache: &Cache,
) -> super::schema::TestReport {
    let mut report = super::schema::TestReport::default();
    let secrets = Secrets::of(spec);
    let mut service = match service {
        Ok(service) => service,
        Err(e) => {
            report.failed(format!("the settings do not make a request: {e}"));
            return report;
        }
    };
    let connection = match Connection::from_spec(spec) {
        Ok(connection) => connection,
        Err(e) => {
            report.failed(e);
            return report;
        }
    };
    let client = match connection.client() {
        Ok(client) => client,
        Err(e) => {
            report.failed(e);
            return report;
        }
    };
    let answer = |reply: &Reply| {
        let excerpt = secrets.excerpt(&reply.body, BODY_EXCERPT);
        if excerpt.trim().is_empty() {
            format!("HTTP {}", reply.status)
        } else {
            format!("HTTP {}: {}", reply.status, excerpt.trim())
        }
    };
    if let Some(health) = service.health() {
        let what = format!("{} {}", health.method, shown(&health.url));
        match exchange(&client, false, health).await {
            Ok(reply) if (200..300).contains(&reply.status) => {
                report.ok(format!("{what} answered {}", answer(&reply)));
            }
            Ok(reply) => {
                report.failed(format!(
                    "{what} answered {}{}",
                    answer(&reply),
                    status_hint(reply.status)
                ));
                return report;
            }
            Err(e) => {
                report.failed(format!("{what}: {}", secrets.redact(&e.to_string())));
                return report;
            }
        }
    }
    let mut batch = Vec::new();
    let mut ends = Vec::new();
    for event in events {
        service.encode(event, cache, &mut batch);
        if batch.len() > ends.last().copied().unwrap_or(0) {
            ends.push(batch.len());
        }
    }
    if ends.is_empty() {
        report.failed(format!(
            "none of the {} sample events makes a record for this output: nothing was sent",
            events.len()
        ));
        return report;
    }
    let records: Vec<&[u8]> = ends
        .iter()
        .enumerate()
        .map(|(i, &end)| {
            let start = if i == 0 { 0 } else { ends[i - 1] };
            &batch[start..end]
        })
        .collect();
    let request = match service.request(&records) {
        Ok(request) => request,
        Err(e) => {
            report.failed(format!("the request cannot be made: {e}"));
            return report;
        }
    };
    let what = format!(
        "{} {} with {} record{} from {} sample event{}",
        request.method,
        shown(&request.url),
        records.len(),
        if records.len() == 1 { "" } else { "s" },
        events.len(),
        if events.len() == 1 { "" } else { "s" },
    );
    match exchange(&client, connection.gzip, request).await {
        Err(e) => report.failed(format!("{what}: {}", secrets.redact(&e.to_string()))),
        Ok(reply) => {
            let excerpt = secrets.excerpt(&reply.body, BODY_EXCERPT);
            match service.judge(&reply, &excerpt) {
                Verdict::Accepted => {
                    let items = service.items(&reply, records.len());
                    let taken = records
                        .len()
                        .saturating_sub(items.refused.len() + items.retry.len());
                    if items.refused.is_empty() && items.retry.is_empty() {
                        report.ok(format!("{what}: accepted, {}", answer(&reply)));
                    } else {
                        let first = items
                            .refused
                            .iter()
                            .chain(&items.retry)
                            .map(|(_, why)| why.as_str())
                            .next()
                            .unwrap_or("");
                        report.failed(format!(
                            "{what}: {taken} accepted, {} refused, {} to send again; the first: {}",
                            items.refused.len(),
                            items.retry.len(),
                            secrets.redact(first)
                        ));
                    }
                    if taken > 0 {
                        report.side_effects.push(format!(
                            "{taken} record{} written to the destination.",
                            if taken == 1 { " was" } else { "s were" }
                        ));
                    }
                }
                Verdict::Refused(reason) => report.failed(format!(
                    "{what}: refused, {}; a running output would dead-letter these events",
                    secrets.redact(&reason)
                )),
                // A running output would keep the events and try again; the
                // Test says what the answer means instead.
                Verdict::Retry(_) => report.failed(format!(
                    "{what}: answered {}{}",
                    answer(&reply),
                    status_hint(reply.status)
                )),
            }
        }
    }
    report
}

/// `Content-Type` and the extra headers of a request.
pub fn headers(content_type: &'static str, extra: &[(HeaderName, HeaderValue)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    map.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    for (name, value) in extra {
        map.append(name.clone(), value.clone());
    }
    map
}

/// A header value that is a secret: marked so that no debug output shows it.
pub fn secret_header(value: &str) -> Result<HeaderValue, String> {
    let mut value = HeaderValue::from_str(value)
        .map_err(|_| "a credential holds a character a header cannot".to_owned())?;
    value.set_sensitive(true);
    Ok(value)
}

/// `Basic base64(user:password)`.
pub fn basic_auth(user: &str, password: &str) -> Result<HeaderValue, String> {
    let token = crate::encoding::base64_encode(format!("{user}:{password}").as_bytes());
    secret_header(&format!("Basic {token}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_judged_by_status() {
        assert_eq!(judge(204, ""), Verdict::Accepted);
        assert!(matches!(judge(500, "x"), Verdict::Retry(_)));
        assert!(matches!(judge(503, "x"), Verdict::Retry(_)));
        assert!(matches!(
            judge(429, "x"),
            Verdict::Retry(DeliveryError::Unavailable(_))
        ));
        assert_eq!(judge(400, "x"), Verdict::Refused("HTTP 400: x".into()));
        assert!(matches!(judge(422, "x"), Verdict::Refused(_)));
        // Configuration problems keep the events.
        for status in [301, 401, 403, 404, 405, 407, 409, 413, 415] {
            let Verdict::Retry(error) = judge(status, "x") else {
                panic!("{status} is not retried");
            };
            assert!(matches!(error, DeliveryError::Misconfigured(_)), "{status}");
            let error = error.to_string();
            assert!(error.starts_with(&format!("HTTP {status}")), "{error}");
            assert!(error.contains("stay in the journal"), "{error}");
        }
    }

    #[test]
    fn excerpts_cut_at_a_character() {
        let body = "é".repeat(BODY_EXCERPT);
        let cut = Secrets::default().excerpt(body.as_bytes(), BODY_EXCERPT);
        assert!(cut.len() <= BODY_EXCERPT);
        assert!(cut.chars().all(|c| c == 'é'));
    }
}
