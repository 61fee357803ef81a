//! What operators scrape: `/metrics`, `/healthz`, `/readyz`, JSON logs.

use std::collections::HashMap;
use std::io::BufRead;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::common::*;

/// `name{labels}` → value, for every sample line; checks the format too.
fn samples(text: &str) -> HashMap<String, f64> {
    let mut samples = HashMap::new();
    let mut typed = std::collections::HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let name = parts.next().unwrap().to_owned();
            let kind = parts.next().unwrap();
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            typed.insert(name);
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value: {line}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value: {line}"));
        let name = series.split('{').next().unwrap();
        let family = name
            .strip_suffix("_bucket")
            .or_else(|| name.strip_suffix("_sum"))
            .or_else(|| name.strip_suffix("_count"))
            .filter(|f| typed.contains(*f))
            .unwrap_or(name);
        assert!(
            typed.contains(family),
            "sample before its TYPE line: {line}"
        );
        samples.insert(series.to_owned(), value);
    }
    samples
}

#[tokio::test]
async fn metrics_count_what_outputs_did() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let path = dir.path().join("m.log");
    server
        .create_file_output("m", &path, json!({"filters": {"category": ["neb"]}}))
        .await;
    server
        .create_file_output("stuck", &dir.path().join("none").join("x"), json!({}))
        .await;
    let (code, _) = server
        .post_events(&[
            host(1, "srv-01"),
            host_status(1, 0, "OK"),
            metric(1, 1, "cpu", 1.0),
        ])
        .await;
    assert_eq!(code, 200);
    wait_lines(&path, 2).await;
    server
        .wait_status("m", "acknowledged", |s| s["counters"]["acknowledged"] == 3)
        .await;
    server
        .wait_status("stuck", "a failed retry", |s| {
            s["counters"]["failed"].as_u64().unwrap_or(0) >= 1
        })
        .await;

    let response = server.get("/metrics").await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let m = samples(&response.text().await.unwrap());
    let get = |series: &str| {
        *m.get(series)
            .unwrap_or_else(|| panic!("no {series} in {m:#?}"))
    };
    assert_eq!(
        get("brokerstream_ingest_events_total{result=\"accepted\"}"),
        3.0
    );
    assert_eq!(
        get("brokerstream_output_events_total{output=\"m\",stage=\"written\"}"),
        2.0
    );
    assert_eq!(
        get("brokerstream_output_events_total{output=\"m\",stage=\"filtered_out\"}"),
        1.0
    );
    assert_eq!(
        get("brokerstream_output_state{output=\"m\",state=\"running\"}"),
        1.0
    );
    assert_eq!(
        get("brokerstream_output_state{output=\"stuck\",state=\"retrying\"}"),
        1.0
    );
    assert_eq!(
        get("brokerstream_output_queue_events{output=\"stuck\"}"),
        3.0
    );
    assert!(get("brokerstream_output_queue_bytes{output=\"stuck\"}") > 0.0);
    assert!(get("brokerstream_output_failed_flushes_total{output=\"stuck\"}") >= 1.0);
    assert!(get("brokerstream_output_flush_duration_seconds_count{output=\"m\"}") >= 1.0);
    assert_eq!(
        get("brokerstream_output_flush_duration_seconds_bucket{output=\"m\",le=\"+Inf\"}"),
        get("brokerstream_output_flush_duration_seconds_count{output=\"m\"}")
    );
    assert_eq!(
        get("brokerstream_output_dead_lettered_events_total{output=\"m\"}"),
        0.0
    );
    assert_eq!(
        get("brokerstream_output_last_response_code{output=\"m\"}"),
        0.0
    );
    assert_eq!(get("brokerstream_journal_events"), 3.0);
    assert!(get("brokerstream_journal_bytes") > 0.0);
    assert_eq!(get("brokerstream_cache_objects{kind=\"host\"}"), 1.0);
    server.stop().await;
}

#[tokio::test]
async fn health_and_readiness() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    server
        .create_file_output("r", &dir.path().join("none").join("r.log"), json!({}))
        .await;
    let response = server.get("/healthz").await;
    assert_eq!(response.status(), 200);
    let response = server.get("/readyz").await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["ready"], true);
    assert_eq!(body["checks"]["store"]["ok"], true);
    assert_eq!(body["checks"]["journal"]["ok"], true);
    // A retrying output is detail, not unreadiness.
    server
        .wait_status("r", "retrying", |s| s["state"] == "retrying")
        .await;
    let body: Value = server.get("/readyz").await.json().await.unwrap();
    assert_eq!(body["ready"], true);
    assert_eq!(body["outputs"]["r"]["state"], "retrying");
    assert!(body["outputs"]["r"]["last_error"]
        .as_str()
        .unwrap()
        .contains("cannot open"));
    server.stop().await;
}

#[tokio::test]
async fn json_logs_are_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_brokerstream"))
        .args(["serve", "--log-format", "json", "--bbdo-addr", "none"])
        .args(["--http-addr", &format!("127.0.0.1:{port}")])
        .args(["--data-dir", dir.path().to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = std::io::BufReader::new(stdout).lines();
    // Every line up to the one saying where it listens is a JSON object
    // (the first start also says it created the secret key).
    for _ in 0..20 {
        let text = lines.next().expect("a log line").unwrap();
        let line: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        assert_eq!(line["level"], "INFO", "{line}");
        let message = line["fields"]["message"].as_str().unwrap().to_owned();
        if message.contains("listening") {
            let _ = child.kill();
            let _ = child.wait();
            return;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("no line said where the service listens");
}
