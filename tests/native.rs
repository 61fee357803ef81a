//! The native HTTP outputs end to end: events posted to brokerstream reach
//! a real InfluxDB, or a loopback HTTP server (axum) that records every
//! request and plays failures: 5xx, 429 and the answers of a misconfigured
//! output (401, 403, 404, TLS) are retried until delivered, the events
//! kept in the journal; a refusal of the events themselves (400, per-item
//! mapping errors) goes to the dead-letter file and is acknowledged;
//! timeouts and reset connections are retried.

use std::collections::VecDeque;
use std::io::Read as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;
use crate::lua_modules::start_influx;

#[derive(Clone, Debug)]
pub(crate) struct Recorded {
    /// The status it was answered with.
    pub(crate) answered: u16,
    pub(crate) method: String,
    pub(crate) uri: String,
    headers: HeaderMap,
    pub(crate) body: Vec<u8>,
}

impl Recorded {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub(crate) fn text(&self) -> String {
        String::from_utf8(self.body.clone()).unwrap()
    }
}

pub(crate) struct Reply {
    status: u16,
    body: &'static str,
    delay: Duration,
}

pub(crate) fn reply(status: u16, body: &'static str) -> Reply {
    Reply {
        status,
        body,
        delay: Duration::ZERO,
    }
}

#[derive(Clone, Default)]
struct Played {
    requests: Arc<Mutex<Vec<Recorded>>>,
    replies: Arc<Mutex<VecDeque<Reply>>>,
    /// The answer once the script is played out; 200 `{}` when none.
    fallback: Arc<Mutex<Option<(u16, &'static str)>>>,
}

/// A loopback HTTP server answering from a script of replies, then 200
/// (or what [`Destination::answer_with`] says).
pub(crate) struct Destination {
    pub(crate) url: String,
    played: Played,
}

impl Destination {
    pub(crate) async fn start(replies: Vec<Reply>) -> Destination {
        let played = Played {
            requests: Arc::default(),
            replies: Arc::new(Mutex::new(replies.into())),
            fallback: Arc::default(),
        };
        let router = axum::Router::new()
            .fallback(answer)
            .with_state(played.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Destination { url, played }
    }

    pub(crate) fn requests(&self) -> Vec<Recorded> {
        self.played.requests.lock().unwrap().clone()
    }

    /// What it answers from now on, once its script is played out.
    pub(crate) fn answer_with(&self, status: u16, body: &'static str) {
        *self.played.fallback.lock().unwrap() = Some((status, body));
    }
}

async fn answer(
    State(played): State<Played>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let next = played.replies.lock().unwrap().pop_front();
    let fallback = *played.fallback.lock().unwrap();
    let next = next.unwrap_or_else(|| {
        let (status, body) = fallback.unwrap_or((200, "{}"));
        reply(status, body)
    });
    played.requests.lock().unwrap().push(Recorded {
        answered: next.status,
        method: method.to_string(),
        uri: uri.to_string(),
        headers,
        body: body.to_vec(),
    });
    tokio::time::sleep(next.delay).await;
    (StatusCode::from_u16(next.status).unwrap(), next.body)
}

fn param(name: &str, value: &str) -> Value {
    let ty = if name.ends_with("password") || name.ends_with("token") || name.ends_with("api_key") {
        "password"
    } else if matches!(
        name,
        "max_buffer_size"
            | "max_buffer_age"
            | "timeout"
            | "gzip"
            | "http_server_port"
            | "influx_status_perfdata"
    ) || name.starts_with("tls_verify")
    {
        "number"
    } else {
        "string"
    };
    json!({"name": name, "type": ty, "value": value})
}

pub(crate) async fn create(
    server: &Server,
    name: &str,
    kind: &str,
    filters: &[&str],
    params: &[(&str, &str)],
) {
    let body = json!({
        "name": name,
        "kind": kind,
        "filters": {"category": filters},
        "parameters": params.iter().map(|(n, v)| param(n, v)).collect::<Vec<_>>(),
    });
    let response = server.post_json("/api/v1/outputs", &body).await;
    let status = response.status();
    let answer: Value = response.json().await.unwrap();
    assert_eq!(status, 201, "create {name}: {answer}");
}

pub(crate) fn names() -> Vec<Value> {
    vec![host(1, "srv-01"), service(1, 3, "Disk /var")]
}

pub(crate) fn metric_at(name: &str, value: f64, ctime: i64) -> Value {
    let mut m = metric(1, 3, name, value);
    m["ctime"] = json!(ctime);
    m
}

pub(crate) async fn wait_written(server: &Server, name: &str, written: u64) -> Value {
    server
        .wait_status(name, &format!("{written} events written"), |s| {
            s["counters"]["written"].as_u64() >= Some(written) && s["buffered"] == 0
        })
        .await
}

#[tokio::test]
async fn influxdb_points_are_queried_back_with_names_tags_and_times() {
    let influx = tokio::task::spawn_blocking(start_influx).await.unwrap();
    let client = reqwest::Client::new();
    let query = |q: &'static str| {
        let client = client.clone();
        let base = influx.base.clone();
        async move {
            let response = client
                .post(format!("{base}/query"))
                .form(&[("db", "centreon"), ("q", q), ("epoch", "s")])
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200, "{q}");
            response.json::<Value>().await.unwrap()
        }
    };
    query("CREATE DATABASE centreon").await;

    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let port = influx.base.rsplit(':').next().unwrap().to_owned();
    create(
        &server,
        "influx",
        "influxdb",
        &["storage", "neb:service_status"],
        &[
            ("http_server_address", "127.0.0.1"),
            ("http_server_port", &port),
            ("influx_database", "centreon"),
            ("influx_status_perfdata", "1"),
            ("max_buffer_size", "4"),
        ],
    )
    .await;
    let mut events = names();
    events.push(metric_at("used", 42.5, 1_732_000_000));
    events.push(metric_at("used", 43.0, 1_732_000_060));
    events.push(metric_at("free space", 7.25, 1_732_000_060));
    let mut status = service_status(1, 3, 0);
    status["perfdata"] = json!("load=1.5;2;3");
    status["last_check"] = json!(1_732_000_120);
    events.push(status);
    let (code, _) = server.post_events(&events).await;
    assert_eq!(code, 200);
    let status = wait_written(&server, "influx", 4).await;
    assert_eq!(status["last_response_code"], 204, "{status:#}");
    assert_eq!(status["counters"]["acknowledged"], 6);

    let answer = query(r#"SELECT * FROM "Disk /var" ORDER BY time"#).await;
    let series = &answer["results"][0]["series"][0];
    assert_eq!(series["name"], "Disk /var", "{answer}");
    assert_eq!(
        series["columns"],
        json!(["time", "free space", "host", "load", "used"])
    );
    assert_eq!(
        series["values"],
        json!([
            [1_732_000_000, null, "srv-01", null, 42.5],
            [1_732_000_060, 7.25, "srv-01", null, 43],
            [1_732_000_120, null, "srv-01", 1.5, null],
        ]),
        "{answer}"
    );
    let tags = query(r#"SHOW TAG VALUES FROM "Disk /var" WITH KEY = "host""#).await;
    assert_eq!(
        tags["results"][0]["series"][0]["values"],
        json!([["host", "srv-01"]])
    );
    server.stop().await;
}

#[tokio::test]
async fn influxdb_refusal_goes_to_the_dead_letter_file() {
    let destination = Destination::start(vec![reply(
        400,
        r#"{"error":"unable to parse 'Disk': missing fields"}"#,
    )])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let port = destination.url.rsplit(':').next().unwrap().to_owned();
    create(
        &server,
        "influx-dl",
        "influxdb",
        &["storage"],
        &[
            ("http_server_address", "127.0.0.1"),
            ("http_server_port", &port),
            ("influx_database", "nope"),
            ("influx_user", "centreon"),
            ("influx_password", "s3cret"),
            ("max_buffer_size", "2"),
        ],
    )
    .await;
    let mut events = names();
    events.push(metric_at("used", 1.0, 1_732_000_000));
    events.push(metric_at("used", 2.0, 1_732_000_060));
    server.post_events(&events).await;
    let status = server
        .wait_status("influx-dl", "the batch dead-lettered", |s| {
            s["dead_lettered"] == 2
        })
        .await;
    assert_eq!(status["counters"]["acknowledged"], 4);
    // The flush is settled, not "ok": its history says what was refused,
    // and the refused events do not count as written.
    let status = server
        .wait_status("influx-dl", "the flush recorded", |s| {
            s["last_flush"]["result"]
                .as_str()
                .is_some_and(|r| r.contains("dead-lettered"))
        })
        .await;
    let result = status["last_flush"]["result"].as_str().unwrap();
    assert!(
        result.starts_with("2 of ")
            && result.contains("events refused and dead-lettered: HTTP 400"),
        "{result}"
    );
    assert_eq!(
        status["counters"]["written"].as_u64().unwrap() + 2,
        status["last_flush"]["events"].as_u64().unwrap(),
        "{status:#}"
    );
    assert_eq!(status["last_response_code"], 400);
    assert!(status["last_dead_letter_reason"]
        .as_str()
        .unwrap()
        .starts_with("HTTP 400: {\"error\":\"unable to parse"));
    assert!(!status.to_string().contains("s3cret"));
    let requests = destination.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].uri, "/write?db=nope&precision=s");
    // base64("centreon:s3cret")
    assert_eq!(
        requests[0].header("authorization"),
        Some("Basic Y2VudHJlb246czNjcmV0")
    );
    let lines = wait_lines(&dir.path().join("deadletter/influx-dl.ndjson"), 2).await;
    let first: Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(first["record"], "Disk\\ /var,host=srv-01 used=1 1732000000");
    assert!(first["reason"].as_str().unwrap().starts_with("HTTP 400"));
    server.stop().await;
}

const TEMPLATE: &str = r#"{{"host":"{cache.host.name}","service":"{cache.service.description}","metric":"{name}","value":{value}}}"#;

#[tokio::test]
async fn http_posts_a_templated_json_array_with_headers_and_bearer() {
    let destination = Destination::start(vec![]).await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let url = format!("{}/ingest?src=centreon", destination.url);
    create(
        &server,
        "web",
        "http",
        &["storage:metric"],
        &[
            ("http_url", &url),
            ("http_template", TEMPLATE),
            ("http_headers", "X-Source: brokerstream\nX-Tenant: a b"),
            ("http_token", "t0ken"),
            ("max_buffer_size", "2"),
        ],
    )
    .await;
    let mut events = names();
    events.push(metric_at("used", 42.5, 1_732_000_000));
    events.push(metric_at("free", 7.0, 1_732_000_000));
    server.post_events(&events).await;
    let status = wait_written(&server, "web", 2).await;
    assert_eq!(status["last_response_code"], 200);
    assert_eq!(status["last_response_body"], "{}");
    let requests = destination.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.uri, "/ingest?src=centreon");
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("authorization"), Some("Bearer t0ken"));
    assert_eq!(r.header("x-source"), Some("brokerstream"));
    assert_eq!(r.header("x-tenant"), Some("a b"));
    assert_eq!(
        r.text(),
        r#"[{"host":"srv-01","service":"Disk /var","metric":"used","value":42.5},{"host":"srv-01","service":"Disk /var","metric":"free","value":7.0}]"#
    );
    let output = server.get_json("/api/v1/outputs/web").await;
    assert!(!output.to_string().contains("t0ken"), "{output}");
    server.stop().await;
}

#[tokio::test]
async fn http_ndjson_of_the_event_json_form_gzipped_with_basic_auth() {
    let destination = Destination::start(vec![]).await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    create(
        &server,
        "nd",
        "http",
        &["storage:metric"],
        &[
            ("http_url", &destination.url),
            ("http_format", "ndjson"),
            ("http_user", "u"),
            ("http_password", "p"),
            ("gzip", "1"),
            ("max_buffer_size", "1"),
        ],
    )
    .await;
    server
        .post_events(&[metric_at("used", 1.5, 1_732_000_000)])
        .await;
    wait_written(&server, "nd", 1).await;
    let r = &destination.requests()[0];
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(r.header("content-type"), Some("application/x-ndjson"));
    assert_eq!(r.header("authorization"), Some("Basic dTpw"));
    let mut text = String::new();
    flate2::read::GzDecoder::new(&r.body[..])
        .read_to_string(&mut text)
        .unwrap();
    let event: Value = serde_json::from_str(text.strip_suffix('\n').unwrap()).unwrap();
    assert_eq!(event["name"], "used");
    assert_eq!(event["value"], 1.5);
    assert_eq!(event["ctime"], 1_732_000_000);
    server.stop().await;
}

/// A 500 and a 429 are retried with the same body until accepted; only
/// then are the events acknowledged.
#[tokio::test]
async fn http_5xx_and_429_are_retried_then_acknowledged() {
    let destination = Destination::start(vec![reply(500, "down"), reply(429, "slow down")]).await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    create(
        &server,
        "flaky",
        "http",
        &["storage:metric"],
        &[("http_url", &destination.url), ("max_buffer_size", "2")],
    )
    .await;
    let mut events = names();
    events.push(metric_at("a", 1.0, 1_732_000_000));
    events.push(metric_at("b", 2.0, 1_732_000_000));
    server.post_events(&events).await;
    let status = server
        .wait_status("flaky", "a first failure", |s| {
            s["counters"]["failed"].as_u64() >= Some(1)
        })
        .await;
    if status["counters"]["written"] == 0 {
        // Not acknowledged while the destination refuses: only the two
        // filtered events are.
        assert_eq!(status["counters"]["acknowledged"], 2, "{status:#}");
        assert_eq!(status["state"], "retrying");
        // The destination's own trouble: waiting mends it.
        assert_eq!(status["last_error_kind"], "unavailable", "{status:#}");
    }
    let status = wait_written(&server, "flaky", 2).await;
    assert_eq!(status["counters"]["acknowledged"], 4);
    assert_eq!(status["counters"]["failed"], 2);
    assert_eq!(status["state"], "running");
    let requests = destination.requests();
    assert_eq!(requests.len(), 3);
    assert_eq!(requests[0].body, requests[1].body);
    assert_eq!(requests[1].body, requests[2].body);
    assert_eq!(status["dead_lettered"], 0);
    server.stop().await;
}

#[tokio::test]
async fn http_4xx_goes_to_the_dead_letter_file_and_is_acknowledged() {
    let destination = Destination::start(vec![reply(400, "bad payload")]).await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    create(
        &server,
        "strict",
        "http",
        &["storage:metric"],
        &[("http_url", &destination.url), ("max_buffer_size", "2")],
    )
    .await;
    let mut events = names();
    events.push(metric_at("a", 1.0, 1_732_000_000));
    events.push(metric_at("b", 2.0, 1_732_000_000));
    events.push(metric_at("c", 3.0, 1_732_000_000));
    events.push(metric_at("d", 4.0, 1_732_000_000));
    server.post_events(&events).await;
    // Two delivered; the two refused are dead-lettered, not written.
    let status = wait_written(&server, "strict", 2).await;
    assert_eq!(status["counters"]["written"], 2);
    assert!(
        status["flushes"].as_array().unwrap().iter().any(
            |f| f["result"] == "2 of 2 events refused and dead-lettered: HTTP 400: bad payload"
        ),
        "{status:#}"
    );
    assert_eq!(status["dead_lettered"], 2);
    assert_eq!(status["last_dead_letter_reason"], "HTTP 400: bad payload");
    assert_eq!(status["counters"]["acknowledged"], 6);
    assert_eq!(status["last_response_code"], 200);
    assert_eq!(destination.requests().len(), 2);
    let lines = wait_lines(&dir.path().join("deadletter/strict.ndjson"), 2).await;
    assert_eq!(lines.len(), 2);
    let first: Value = serde_json::from_str(&lines[0]).unwrap();
    let record: Value = serde_json::from_str(first["record"].as_str().unwrap()).unwrap();
    assert_eq!(record["name"], "a");
    assert_eq!(first["reason"], "HTTP 400: bad payload");
    let metrics = server.get("/metrics").await.text().await.unwrap();
    for line in [
        "brokerstream_output_dead_lettered_events_total{output=\"strict\"} 2",
        "brokerstream_output_last_response_code{output=\"strict\"} 200",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no `{line}` in {metrics}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn http_slow_answer_times_out_and_is_retried() {
    let destination = Destination::start(vec![Reply {
        status: 200,
        body: "late",
        delay: Duration::from_secs(3),
    }])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    create(
        &server,
        "slow",
        "http",
        &["storage:metric"],
        &[
            ("http_url", &destination.url),
            ("timeout", "0.3"),
            ("max_buffer_size", "1"),
        ],
    )
    .await;
    server
        .post_events(&[metric_at("a", 1.0, 1_732_000_000)])
        .await;
    let status = server
        .wait_status("slow", "a timeout", |s| s["counters"]["failed"] == 1)
        .await;
    assert!(
        status["last_error"].as_str().unwrap().contains("timed out"),
        "{status:#}"
    );
    let status = wait_written(&server, "slow", 1).await;
    assert_eq!(status["counters"]["acknowledged"], 1);
    assert!(destination.requests().len() >= 2);
    server.stop().await;
}

/// The first connection is closed without an answer; the retry on a new
/// connection is answered.
#[tokio::test]
async fn http_reset_connection_is_retried() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let bodies = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = Arc::clone(&bodies);
    tokio::spawn(async move {
        let mut connections = 0;
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            connections += 1;
            let request = read_request(&mut stream).await;
            seen.lock().unwrap().push(request);
            if connections == 1 {
                drop(stream);
                continue;
            }
            let _ = stream
                .write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n")
                .await;
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    create(
        &server,
        "reset",
        "http",
        &["storage:metric"],
        &[("http_url", &url), ("max_buffer_size", "1")],
    )
    .await;
    server
        .post_events(&[metric_at("a", 1.0, 1_732_000_000)])
        .await;
    let status = wait_written(&server, "reset", 1).await;
    assert_eq!(status["counters"]["failed"], 1);
    assert_eq!(status["last_response_code"], 204);
    let bodies = bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 2);
    assert_eq!(bodies[0], bodies[1]);
    assert!(bodies[1].contains(r#""name":"a""#), "{}", bodies[1]);
    server.stop().await;
}

/// Reads one request (headers and a `content-length` body) as text.
async fn read_request(stream: &mut tokio::net::TcpStream) -> String {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            break;
        }
        data.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&data).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if data.len() >= end + 4 + length {
                return text[end + 4..].to_owned();
            }
        }
    }
    String::from_utf8_lossy(&data).to_string()
}

#[tokio::test]
async fn splunk_hec_metrics_and_events_byte_for_byte() {
    let destination = Destination::start(vec![]).await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    create(
        &server,
        "splunk-m",
        "splunk",
        &["storage:metric"],
        &[
            ("http_server_url", &destination.url),
            ("splunk_token", "hec-token"),
            ("splunk_mode", "metrics"),
            ("splunk_index", "centreon"),
            ("max_buffer_size", "2"),
        ],
    )
    .await;
    create(
        &server,
        "splunk-e",
        "splunk",
        &["neb:host_status"],
        &[
            ("http_server_url", &destination.url),
            ("splunk_token", "hec-token"),
            ("max_buffer_size", "1"),
        ],
    )
    .await;
    let mut events = names();
    events.push(metric_at("used", 42.5, 1_732_000_000));
    events.push(metric_at("free", 7.0, 1_732_000_060));
    events.push(host_status(1, 1, "DOWN"));
    server.post_events(&events).await;
    wait_written(&server, "splunk-m", 2).await;
    wait_written(&server, "splunk-e", 1).await;
    let requests = destination.requests();
    assert_eq!(requests.len(), 2);
    let metrics = requests
        .iter()
        .find(|r| r.uri == "/services/collector")
        .expect("a metrics request");
    assert_eq!(metrics.header("authorization"), Some("Splunk hec-token"));
    assert_eq!(
        metrics.text(),
        concat!(
            r#"{"time":1732000000,"host":"srv-01","index":"centreon","source":"brokerstream","event":"metric","fields":{"metric_name:used":42.5,"service":"Disk /var"}}"#,
            "\n",
            r#"{"time":1732000060,"host":"srv-01","index":"centreon","source":"brokerstream","event":"metric","fields":{"metric_name:free":7.0,"service":"Disk /var"}}"#,
            "\n"
        )
    );
    let event = requests
        .iter()
        .find(|r| r.uri == "/services/collector/event")
        .expect("an event request");
    let body: Value = serde_json::from_str(event.text().trim_end()).unwrap();
    assert_eq!(body["time"], 1_732_000_000);
    assert_eq!(body["host"], "srv-01");
    assert_eq!(body["sourcetype"], "_json");
    assert_eq!(body["event"]["output"], "DOWN");
    assert_eq!(body["event"]["state"], 1);
    server.stop().await;
}

#[tokio::test]
async fn native_kinds_validate_their_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let body = json!({
        "name": "bad",
        "kind": "influxdb",
        "parameters": [param("http_server_address", "127.0.0.1"), param("influx_api", "v2")],
    });
    let response = server.post_json("/api/v1/outputs", &body).await;
    assert_eq!(response.status(), 422);
    let answer: Value = response.json().await.unwrap();
    assert!(
        answer["fields"]["parameters.influx_token"].is_string(),
        "{answer}"
    );
    let body = json!({
        "name": "bad",
        "kind": "http",
        "parameters": [param("http_url", "ftp://x"), param("http_headers", "nocolon")],
    });
    let response = server.post_json("/api/v1/outputs", &body).await;
    assert_eq!(response.status(), 422);
    let kinds = server.get_json("/api/v1/kinds").await;
    let text = kinds.to_string();
    for kind in ["influxdb", "http", "splunk"] {
        assert!(text.contains(&format!("\"name\":\"{kind}\"")), "{kind}");
    }
    server.stop().await;
}

/// A `_bulk` answer with one item taken, one mapping error and one
/// rejection: the mapping error goes to the dead-letter file, only the
/// rejected item is sent again, and the batch is acknowledged once it is
/// taken.
#[tokio::test]
async fn elasticsearch_partial_bulk_failure_retries_only_failed_items() {
    let destination = Destination::start(vec![
        reply(
            200,
            r#"{"took":3,"errors":true,"items":[{"index":{"status":201}},{"index":{"status":400,"error":{"type":"mapper_parsing_exception","reason":"failed to parse field [value]"}}},{"index":{"status":429,"error":{"type":"es_rejected_execution_exception","reason":"queue full"}}}]}"#,
        ),
        reply(200, r#"{"took":1,"errors":false,"items":[{"index":{"status":201}}]}"#),
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    create(
        &server,
        "elastic",
        "elasticsearch",
        &["storage:metric"],
        &[
            ("http_server_url", &destination.url),
            ("elastic_index", "centreon-metrics"),
            ("elastic_api_key", "a2V5OnNlY3JldA=="),
            ("max_buffer_size", "3"),
        ],
    )
    .await;
    let mut events = names();
    events.push(metric_at("a", 1.0, 1_732_000_000));
    events.push(metric_at("b", 2.0, 1_732_000_000));
    events.push(metric_at("c", 3.0, 1_732_000_000));
    server.post_events(&events).await;
    let status = wait_written(&server, "elastic", 3).await;
    assert_eq!(status["counters"]["acknowledged"], 5);
    assert_eq!(status["counters"]["failed"], 1);
    assert_eq!(status["dead_lettered"], 1);
    assert_eq!(
        status["last_dead_letter_reason"],
        "item 400 mapper_parsing_exception: failed to parse field [value]"
    );
    let requests = destination.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].uri, "/_bulk");
    assert_eq!(
        requests[0].header("authorization"),
        Some("ApiKey a2V5OnNlY3JldA==")
    );
    assert_eq!(
        requests[0].header("content-type"),
        Some("application/x-ndjson")
    );
    let lines: Vec<Value> = requests[0]
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 6);
    assert_eq!(lines[0], json!({"index": {"_index": "centreon-metrics"}}));
    assert_eq!(lines[1]["name"], "a");
    assert_eq!(lines[1]["host_name"], "srv-01");
    assert_eq!(lines[1]["service_description"], "Disk /var");
    let again: Vec<Value> = requests[1]
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(again.len(), 2);
    assert_eq!(again[0], lines[4]);
    assert_eq!(again[1], lines[5]);
    let dead = wait_lines(&dir.path().join("deadletter/elastic.ndjson"), 1).await;
    let dead: Value = serde_json::from_str(&dead[0]).unwrap();
    assert!(
        dead["record"].as_str().unwrap().contains(r#""name":"b""#),
        "{dead}"
    );
    server.stop().await;
}

/// A blocking HTTPS server on loopback with a self-signed certificate for
/// `names`, answering 204 to every request.
fn https_server(names: &[&str]) -> (String, String) {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let certified = rcgen::generate_simple_self_signed(names).unwrap();
    let cert_pem = certified.cert.pem();
    let chain = vec![CertificateDer::from(certified.cert.der().to_vec())];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der()));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    let config = Arc::new(config);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "https://127.0.0.1:{}/",
        listener.local_addr().unwrap().port()
    );
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let config = Arc::clone(&config);
            std::thread::spawn(move || {
                use std::io::Write as _;
                let Ok(connection) = rustls::ServerConnection::new(config) else {
                    return;
                };
                let mut tls = rustls::StreamOwned::new(connection, stream);
                let mut data = Vec::new();
                let mut buf = [0u8; 4096];
                while let Ok(n) = tls.read(&mut buf) {
                    if n == 0 {
                        return;
                    }
                    data.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&data);
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text[..end]
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse::<usize>().ok())?
                            })
                            .unwrap_or(0);
                        if data.len() >= end + 4 + length {
                            let _ = tls
                                .write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n");
                            let _ = tls.flush();
                            tls.conn.send_close_notify();
                            let _ = tls.flush();
                            return;
                        }
                    }
                }
            });
        }
    });
    (url, cert_pem)
}

/// `tls_verify_peer` and `tls_verify_host` are separate switches, as in
/// libcurl: a self-signed certificate passes with its CA file or with the
/// peer check off; a certificate for another name passes only with the
/// host check off.
#[tokio::test]
async fn tls_peer_and_host_verification_switches() {
    let (right, right_pem) = https_server(&["127.0.0.1"]);
    let (wrong, wrong_pem) = https_server(&["other.example"]);
    let dir = tempfile::tempdir().unwrap();
    let right_ca = dir.path().join("right.pem");
    let wrong_ca = dir.path().join("wrong.pem");
    std::fs::write(&right_ca, right_pem).unwrap();
    std::fs::write(&wrong_ca, wrong_pem).unwrap();
    let (right_ca, wrong_ca) = (
        right_ca.to_str().unwrap().to_owned(),
        wrong_ca.to_str().unwrap().to_owned(),
    );
    let server = Server::start(dir.path()).await;
    // (name, url, CA file, verify_peer, verify_host, delivered)
    let cases = [
        ("untrusted", &right, None, "1", "1", false),
        ("ca-file", &right, Some(&right_ca), "1", "1", true),
        ("no-peer-check", &right, None, "0", "1", true),
        ("wrong-name", &wrong, Some(&wrong_ca), "1", "1", false),
        (
            "wrong-name-no-host-check",
            &wrong,
            Some(&wrong_ca),
            "1",
            "0",
            true,
        ),
        ("wrong-name-no-peer-check", &wrong, None, "0", "1", false),
        ("no-checks", &wrong, None, "0", "0", true),
    ];
    for (name, url, ca, peer, host, _) in &cases {
        let mut params = vec![
            ("http_url", url.as_str()),
            ("tls_verify_peer", *peer),
            ("tls_verify_host", *host),
            ("max_buffer_size", "1"),
        ];
        if let Some(ca) = ca {
            params.push(("tls_ca_file", ca.as_str()));
        }
        create(&server, name, "http", &["storage:metric"], &params).await;
    }
    server
        .post_events(&[metric_at("a", 1.0, 1_732_000_000)])
        .await;
    for (name, _, _, _, _, delivered) in &cases {
        if *delivered {
            let status = wait_written(&server, name, 1).await;
            assert_eq!(status["last_response_code"], 204, "{name}");
        } else {
            let status = server
                .wait_status(name, "a TLS failure", |s| {
                    s["counters"]["failed"].as_u64() >= Some(1)
                })
                .await;
            assert_eq!(status["counters"]["written"], 0, "{name}");
            let error = status["last_error"].as_str().unwrap();
            assert!(error.contains("certificate"), "{name}: {error}");
        }
    }
    server.stop().await;
}

/// Through a proxy with Basic authentication: the loopback server plays
/// the proxy and sees the absolute URL and the proxy credentials; the
/// target's name is never resolved.
#[tokio::test]
async fn http_goes_through_an_authenticated_proxy() {
    let proxy = Destination::start(vec![]).await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    create(
        &server,
        "proxied",
        "http",
        &["storage:metric"],
        &[
            ("http_url", "http://collector.invalid/in"),
            ("proxy_address", &proxy.url),
            ("proxy_username", "px"),
            ("proxy_password", "py"),
            ("max_buffer_size", "1"),
        ],
    )
    .await;
    server
        .post_events(&[metric_at("a", 1.0, 1_732_000_000)])
        .await;
    let status = wait_written(&server, "proxied", 1).await;
    assert!(!status.to_string().contains("py\""), "{status}");
    let requests = proxy.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].uri, "http://collector.invalid/in");
    // base64("px:py")
    assert_eq!(
        requests[0].header("proxy-authorization"),
        Some("Basic cHg6cHk=")
    );
    server.stop().await;
}

/// Five metric events named `mark-0`…`mark-4`, to count at the destination.
fn marked() -> Vec<Value> {
    (0..5)
        .map(|i| metric_at(&format!("mark-{i}"), i as f64, 1_732_000_000 + i))
        .collect()
}

/// How many `mark-` events the destination accepted (answered 2xx).
fn accepted_marks(destination: &Destination) -> usize {
    destination
        .requests()
        .iter()
        .filter(|r| (200..300).contains(&r.answered))
        .map(|r| r.text().matches("mark-").count())
        .sum()
}

/// While a batch fails for the output's configuration: retried, shown,
/// nothing dead-lettered, nothing acknowledged.
fn assert_kept(status: &Value, dir: &std::path::Path, name: &str, error: &str) {
    assert_eq!(status["state"], "retrying", "{name}: {status:#}");
    let last_error = status["last_error"].as_str().unwrap_or_default();
    assert!(last_error.contains(error), "{name}: {last_error}");
    assert_eq!(status["dead_lettered"], 0, "{name}: {status:#}");
    assert_eq!(status["counters"]["acknowledged"], 0, "{name}: {status:#}");
    assert_eq!(status["counters"]["written"], 0, "{name}: {status:#}");
    let flush = status["last_flush"]["result"].as_str().unwrap_or_default();
    assert!(flush != "ok" && flush.contains(error), "{name}: {flush}");
    let dead = dir.join(format!("deadletter/{name}.ndjson"));
    assert!(!dead.exists(), "{name}: {}", dead.display());
}

/// A wrong password, a token without rights, a database, bucket, index or
/// URL that does not exist: the answer is about the output's configuration,
/// not about the events. Every native HTTP kind keeps the events in the
/// journal (`retrying`, the answer in `last_error`, nothing dead-lettered
/// or acknowledged) and delivers all of them once the destination takes
/// them.
#[tokio::test]
async fn config_errors_keep_the_events_until_the_destination_takes_them() {
    // (kind, what the destination answers once it takes the batch)
    let kinds = [
        ("influxdb", 204, ""),
        ("http", 200, "{}"),
        ("splunk", 200, r#"{"text":"Success","code":0}"#),
        (
            "elasticsearch",
            200,
            r#"{"took":1,"errors":false,"items":[]}"#,
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let mut outputs = Vec::new();
    for code in [401u16, 403, 404] {
        for (kind, ok, ok_body) in kinds {
            let destination = Destination::start(vec![]).await;
            destination.answer_with(code, r#"{"error":"refused by its configuration"}"#);
            let port = destination.url.rsplit(':').next().unwrap().to_owned();
            let url = destination.url.clone();
            let mut params: Vec<(&str, &str)> = match kind {
                "influxdb" => vec![
                    ("http_server_address", "127.0.0.1"),
                    ("http_server_port", &port),
                    ("influx_database", "centreon"),
                    ("influx_user", "centreon"),
                    ("influx_password", "wrong"),
                ],
                "http" => vec![("http_url", &url)],
                "splunk" => vec![("http_server_url", &url), ("splunk_token", "t0k")],
                _ => vec![("http_server_url", &url), ("elastic_index", "centreon")],
            };
            params.push(("max_buffer_size", "5"));
            let name = format!("{kind}-{code}");
            create(&server, &name, kind, &["storage:metric"], &params).await;
            outputs.push((name, code, destination, ok, ok_body));
        }
    }
    server.post_events(&marked()).await;
    for (name, code, destination, _, _) in &outputs {
        let status = server
            .wait_status(name, "a batch retried", |s| {
                s["counters"]["failed"].as_u64() >= Some(2)
            })
            .await;
        assert_kept(&status, dir.path(), name, &format!("HTTP {code}"));
        assert_eq!(status["last_response_code"], *code, "{name}");
        assert_eq!(status["last_error_kind"], "misconfigured", "{name}");
        // Someone has to act: the health says so at once, with the answer.
        assert_eq!(status["health"]["state"], "failing", "{name}: {status:#}");
        let reason = status["health"]["reason"].as_str().unwrap();
        assert!(
            reason.starts_with(&format!("HTTP {code}")),
            "{name}: {reason}"
        );
        assert!(reason.contains("events pending"), "{name}: {reason}");
        let requests = destination.requests();
        assert!(requests.len() >= 2, "{name}");
        assert_eq!(requests[0].body, requests[1].body, "{name}");
    }
    // The configuration is mended on the destination's side.
    for (_, _, destination, ok, ok_body) in &outputs {
        destination.answer_with(*ok, ok_body);
    }
    for (name, _, destination, ok, _) in &outputs {
        let status = wait_written(&server, name, 5).await;
        assert_eq!(status["counters"]["acknowledged"], 5, "{name}: {status:#}");
        assert_eq!(status["dead_lettered"], 0, "{name}");
        assert_eq!(status["state"], "running", "{name}");
        assert_eq!(status["last_response_code"], *ok, "{name}");
        assert_eq!(accepted_marks(destination), 5, "{name}");
        assert_eq!(status["health"]["state"], "ok", "{name}: {status:#}");
    }
    assert!(!dir.path().join("deadletter").exists());
    server.stop().await;
}

/// A certificate the output does not trust is a configuration problem
/// too: the events wait in the journal and go once the CA file is given.
#[tokio::test]
async fn tls_verification_failure_keeps_the_events() {
    let (url, pem) = https_server(&["127.0.0.1"]);
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, pem).unwrap();
    let server = Server::start(dir.path()).await;
    create(
        &server,
        "untrusted",
        "http",
        &["storage:metric"],
        &[("http_url", &url), ("max_buffer_size", "1")],
    )
    .await;
    server
        .post_events(&[metric_at("a", 1.0, 1_732_000_000)])
        .await;
    let status = server
        .wait_status("untrusted", "a TLS failure retried", |s| {
            s["counters"]["failed"].as_u64() >= Some(2)
        })
        .await;
    assert_kept(&status, dir.path(), "untrusted", "certificate");
    assert_eq!(status["last_error_kind"], "misconfigured", "{status:#}");
    let response = server
        .send_json(
            reqwest::Method::PUT,
            "/api/v1/outputs/untrusted/parameters/tls_ca_file",
            &json!({"type": "string", "value": ca.to_str().unwrap()}),
        )
        .await;
    assert!(response.status().is_success(), "{}", response.status());
    let status = wait_written(&server, "untrusted", 1).await;
    assert_eq!(status["last_response_code"], 204);
    assert_eq!(status["counters"]["acknowledged"], 1, "{status:#}");
    assert_eq!(status["dead_lettered"], 0);
    assert!(!dir.path().join("deadletter").exists());
    server.stop().await;
}

/// Items refused for what the document holds (a mapping error) go to the
/// dead-letter file, alone; items refused for the cluster's state (no such
/// index, a write block) are sent again; the others are delivered. The same
/// whether the answer is the usual 200 with `"errors": true` or a 400 that
/// carries the items.
#[tokio::test]
async fn elasticsearch_dead_letters_exactly_the_refused_items() {
    const ITEMS: &str = r#"{"took":3,"errors":true,"items":[
        {"index":{"status":201}},
        {"index":{"status":400,"error":{"type":"mapper_parsing_exception","reason":"failed to parse field [value]"}}},
        {"index":{"status":404,"error":{"type":"index_not_found_exception","reason":"no such index [centreon]"}}},
        {"index":{"status":403,"error":{"type":"cluster_block_exception","reason":"index [centreon] blocked by: [TOO_MANY_REQUESTS/12/disk usage exceeded flood-stage watermark]"}}},
        {"index":{"status":201}}]}"#;
    const AGAIN: &str =
        r#"{"took":1,"errors":false,"items":[{"index":{"status":201}},{"index":{"status":201}}]}"#;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let mut outputs = Vec::new();
    for top in [200u16, 400] {
        let destination = Destination::start(vec![reply(top, ITEMS), reply(200, AGAIN)]).await;
        let name = format!("elastic-{top}");
        create(
            &server,
            &name,
            "elasticsearch",
            &["storage:metric"],
            &[
                ("http_server_url", &destination.url),
                ("elastic_index", "centreon"),
                ("max_buffer_size", "5"),
            ],
        )
        .await;
        outputs.push((name, destination));
    }
    server.post_events(&marked()).await;
    for (name, destination) in &outputs {
        let status = wait_written(&server, name, 5).await;
        assert_eq!(status["dead_lettered"], 1, "{name}: {status:#}");
        assert_eq!(status["counters"]["acknowledged"], 5, "{name}");
        assert_eq!(status["counters"]["failed"], 1, "{name}");
        assert_eq!(
            status["last_dead_letter_reason"],
            "item 400 mapper_parsing_exception: failed to parse field [value]"
        );
        let dead = wait_lines(&dir.path().join(format!("deadletter/{name}.ndjson")), 1).await;
        assert_eq!(dead.len(), 1, "{name}: {dead:?}");
        let dead: Value = serde_json::from_str(&dead[0]).unwrap();
        assert!(
            dead["record"]
                .as_str()
                .unwrap()
                .contains(r#""name":"mark-1""#),
            "{dead}"
        );
        let requests = destination.requests();
        assert_eq!(requests.len(), 2, "{name}");
        let again = requests[1].text();
        assert!(again.contains(r#""name":"mark-2""#) && again.contains(r#""name":"mark-3""#));
        assert_eq!(again.matches("mark-").count(), 2, "{again}");
        // Each event but the refused one reached the index exactly once.
        let first = requests[0].text();
        for i in [0, 4] {
            assert!(first.contains(&format!(r#""name":"mark-{i}""#)));
        }
    }
    server.stop().await;
}

/// Splunk answers 400 both for events it cannot read and for a token that
/// may not write to the index: the HEC code tells them apart. Code 7
/// (incorrect index) keeps the events until the index is allowed; code 6
/// (invalid data format) dead-letters the batch.
#[tokio::test]
async fn splunk_incorrect_index_is_retried_and_invalid_data_dead_lettered() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let index = Destination::start(vec![]).await;
    index.answer_with(
        400,
        r#"{"text":"Incorrect index","code":7,"invalid-event-number":0}"#,
    );
    let data = Destination::start(vec![reply(
        400,
        r#"{"text":"Invalid data format","code":6,"invalid-event-number":0}"#,
    )])
    .await;
    for (name, destination) in [("hec-index", &index), ("hec-data", &data)] {
        create(
            &server,
            name,
            "splunk",
            &["storage:metric"],
            &[
                ("http_server_url", &destination.url),
                ("splunk_token", "t0k"),
                ("max_buffer_size", "5"),
            ],
        )
        .await;
    }
    server.post_events(&marked()).await;
    let status = server
        .wait_status("hec-index", "a batch retried", |s| {
            s["counters"]["failed"].as_u64() >= Some(2)
        })
        .await;
    assert_kept(&status, dir.path(), "hec-index", "HTTP 400");
    assert!(status["last_error"]
        .as_str()
        .unwrap()
        .contains("Incorrect index"));
    index.answer_with(200, r#"{"text":"Success","code":0}"#);
    let status = wait_written(&server, "hec-index", 5).await;
    assert_eq!(status["counters"]["acknowledged"], 5);
    assert_eq!(status["dead_lettered"], 0);
    assert_eq!(accepted_marks(&index), 5);

    let status = server
        .wait_status("hec-data", "the batch dead-lettered", |s| {
            s["dead_lettered"] == 5
        })
        .await;
    assert_eq!(status["counters"]["acknowledged"], 5);
    assert!(status["last_dead_letter_reason"]
        .as_str()
        .unwrap()
        .starts_with("HTTP 400: {\"text\":\"Invalid data format\""));
    let lines = wait_lines(&dir.path().join("deadletter/hec-data.ndjson"), 5).await;
    assert_eq!(lines.len(), 5);
    server.stop().await;
}

/// A destination that refuses one request in two, on and off, delivers
/// everything in the end: the output is `degraded` with the failures'
/// count and the last error, not `ok`.
#[tokio::test]
async fn flushes_failing_often_make_the_output_degraded() {
    let replies = (0..4)
        .flat_map(|_| [reply(503, "busy"), reply(204, "")])
        .collect();
    let destination = Destination::start(replies).await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    create(
        &server,
        "flaky",
        "http",
        &["storage:metric"],
        &[("http_url", &destination.url), ("max_buffer_size", "2")],
    )
    .await;
    for round in 0..4 {
        let events = [
            metric_at("a", 1.0, 1_732_000_000 + round),
            metric_at("b", 2.0, 1_732_000_000 + round),
        ];
        server.post_events(&events).await;
        wait_written(&server, "flaky", 2 * (round as u64 + 1)).await;
    }
    let status = server
        .wait_status("flaky", "degraded by its failures", |s| {
            s["health"]["state"] == "degraded"
        })
        .await;
    let reason = status["health"]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("4 of the last 8 flushes failed within 60 s, on and off")
            && reason.contains("HTTP 503"),
        "{reason}"
    );
    assert_eq!(status["counters"]["acknowledged"], 8);
    assert_eq!(status["dead_lettered"], 0);
    server.stop().await;
}
