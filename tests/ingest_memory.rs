//! NDJSON ingest of large bodies: what a body costs in memory, and that it
//! is still taken whole or not at all.

use std::fmt::Write as _;

use serde_json::Value;

use crate::common::Process;

/// About `bytes` of valid NDJSON: service statuses and metrics in turn.
fn large_body(bytes: usize) -> String {
    let mut body = String::with_capacity(bytes + 256);
    let mut i = 0u64;
    while body.len() < bytes {
        let (host, service) = (i % 300 + 1, i % 1500 + 1);
        if i.is_multiple_of(2) {
            let _ = writeln!(
                body,
                r#"{{"category":1,"element":24,"host_id":{host},"service_id":{service},"state":{},"output":"OK - load average {i}"}}"#,
                i % 3
            );
        } else {
            let _ = writeln!(
                body,
                r#"{{"_type":196609,"host_id":{host},"service_id":{service},"metric_id":{},"name":"cpu_load_{}","value":{}.5,"ctime":1732000000}}"#,
                i % 5000,
                i % 7,
                i
            );
        }
        i += 1;
    }
    body
}

fn peak_rss_kib(process: &Process) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", process.child.id()))
        .expect("the service's /proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a VmHWM line")
}

async fn journal_events(process: &Process) -> u64 {
    process.get_json("/api/v1/journal").await["events"]
        .as_u64()
        .expect("journal events")
}

#[tokio::test]
async fn a_31_mib_body_costs_a_fraction_of_what_its_decoded_events_would() {
    let dir = tempfile::tempdir().unwrap();
    let process = Process::serve_with_config(dir.path(), "", &[]).await;
    let body = large_body(31 << 20);
    let lines = body.lines().count() as u64;
    let response = process.post_events(body).await.unwrap();
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["accepted"], lines, "{answer}");
    assert_eq!(journal_events(&process).await, lines);
    // Measured on a release build: 320 MiB when the body's events were
    // decoded and collected before the append, 127 MiB encoded as parsed
    // (the default 64 MiB memory tail included).
    let peak = peak_rss_kib(&process);
    assert!(peak < 200 << 10, "peak RSS {} MiB", peak >> 10);
}

#[tokio::test]
async fn a_large_body_with_one_bad_line_near_its_end_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let process = Process::serve_with_config(dir.path(), "", &[]).await;
    let mut body = large_body(8 << 20);
    let lines = body.lines().count();
    body.push_str("{\"_type\":196609,\"metric_id\":\n");
    body.push_str("{\"_type\":196609,\"metric_id\":1,\"value\":1.5}\n");
    let response = process.post_events(body).await.unwrap();
    assert_eq!(response.status(), 422);
    let answer: Value = response.json().await.unwrap();
    let text = answer.to_string();
    assert!(
        text.contains(&format!("\"line\":{}", lines + 1)),
        "{answer:#}"
    );
    assert!(text.contains("1 invalid line(s)"), "{answer:#}");
    assert_eq!(journal_events(&process).await, 0);
    // The service still takes a good body afterwards.
    let response = process.post_events(large_body(1 << 20)).await.unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_large_body_refused_for_a_full_journal_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // A journal too small for the body: the body must not go in in part.
    let process =
        Process::serve_with_config(dir.path(), "[journal]\nmax_bytes = 4194304\n", &[]).await;
    let response = process.post_events(large_body(8 << 20)).await.unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(journal_events(&process).await, 0);
    let small = large_body(1 << 10);
    let lines = small.lines().count() as u64;
    let response = process.post_events(small).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(journal_events(&process).await, lines);
}
