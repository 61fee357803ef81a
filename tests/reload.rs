//! SIGHUP (`systemctl reload`) on the real binary: the configuration file
//! read again, its reloadable settings applied, an HTTP and a BBDO
//! connection kept across it, a broken file refused with its key.

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::*;

const CAPTURE: &[u8] = include_bytes!("data/cbd-21.10/capture-bbdo2.bin");

fn config(health: &str, log_level: &str, max_outputs: usize) -> String {
    format!(
        "log_level = \"{log_level}\"\n\n[http]\nkeep_alive_timeout_secs = 120\n\n\
         [limits]\nmax_outputs = {max_outputs}\n\n[health]\n{health}\n"
    )
}

async fn wait_log(log: &Path, text: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let all = std::fs::read_to_string(log).unwrap_or_default();
        if all.contains(text) {
            return all;
        }
        assert!(Instant::now() < deadline, "no `{text}` in the log:\n{all}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn hangup(p: &Process) {
    let pid = p.child.id().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    assert!(sent.success());
}

/// One request on a connection kept alive: the status line.
async fn healthz(stream: &mut TcpStream) -> String {
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut buffer = vec![0; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buffer))
        .await
        .expect("an answer in time")
        .expect("the connection is open");
    assert!(n > 0, "the server closed the connection");
    String::from_utf8_lossy(&buffer[..n])
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

async fn health_of(p: &Process, name: &str) -> (String, String) {
    let status = p.get_json(&format!("/api/v1/outputs/{name}/status")).await;
    let health = &status["health"];
    (
        health["state"].as_str().unwrap_or_default().to_owned(),
        health["reason"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test]
async fn sighup_applies_the_file_keeps_connections_and_refuses_a_broken_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("brokerstream.toml");
    std::fs::write(&file, config("no_progress_secs = 3600", "warn", 100)).unwrap();
    let (port, bbdo_port) = (free_port(), free_port());
    let log = dir.path().join("log");
    let p = Process::spawn_logging(
        &[
            "serve",
            "--config",
            file.to_str().unwrap(),
            "--data-dir",
            dir.path().join("data").to_str().unwrap(),
            "--http-addr",
            &format!("127.0.0.1:{port}"),
            "--bbdo-addr",
            &format!("127.0.0.1:{bbdo_port}"),
        ],
        &[],
        port,
        std::fs::File::create(&log).unwrap(),
    );
    p.wait_ready().await;
    // A disabled output whose events wait: its health is judged on the
    // [health] thresholds.
    let waiting = dir.path().join("waiting.ndjson");
    let mut body = file_output("waiting", &waiting, &[]);
    body["enabled"] = json!(false);
    body["start_at"] = json!("head");
    create_output(&p, &body).await;
    let delivered = dir.path().join("all.ndjson");
    let mut body = file_output("all", &delivered, &[]);
    body["parameters"][1]["value"] = json!("1");
    create_output(&p, &body).await;
    let response = p
        .post_events(format!("{}\n", host_status(1, 0, "OK")))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (state, reason) = health_of(&p, "waiting").await;
    assert_eq!(state, "ok", "{reason}");

    let mut http = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    assert!(healthz(&mut http).await.contains("200"));
    let mut bbdo = TcpStream::connect(("127.0.0.1", bbdo_port)).await.unwrap();
    bbdo.write_all(CAPTURE).await.unwrap();
    let mut welcome = vec![0; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), bbdo.read(&mut welcome))
        .await
        .expect("a welcome in time")
        .unwrap();
    assert!(n > 0, "the BBDO listener closed the connection");

    // `warn`: the start's info lines were not logged.
    let before = std::fs::read_to_string(&log).unwrap();
    assert!(!before.contains("brokerstream listening on"), "{before}");
    std::fs::write(
        &file,
        config("no_progress_secs = 1\nbuffer_age_factor = 0", "info", 5),
    )
    .unwrap();
    hangup(&p);
    let text = wait_log(&log, "applied log_level, [health]").await;
    assert!(
        text.contains("taking effect only at a restart") && text.contains("[limits]"),
        "{text}"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (state, reason) = health_of(&p, "waiting").await;
        if state == "degraded" && reason.contains("(more than 1 s)") {
            break;
        }
        assert!(Instant::now() < deadline, "{state}: {reason}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Both connections went through the reload.
    assert!(healthz(&mut http).await.contains("200"));
    let mut event = BytesMut::new();
    brokerstream::bbdo::encode(
        &brokerstream::event::Event::from_json(&host_status(424242, 0, "after the reload"))
            .unwrap(),
        &mut event,
    );
    bbdo.write_all(&event).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&delivered)
        .unwrap_or_default()
        .contains("424242")
    {
        assert!(
            Instant::now() < deadline,
            "the event sent after the reload did not arrive"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A broken file: the error with its key, and the running settings.
    std::fs::write(&file, config("error_ratio = -1", "info", 5)).unwrap();
    hangup(&p);
    let text = wait_log(&log, "the running configuration is kept").await;
    assert!(text.contains("health.error_ratio"), "{text}");
    let (state, reason) = health_of(&p, "waiting").await;
    assert_eq!(state, "degraded", "{reason}");
    assert!(reason.contains("(more than 1 s)"), "{reason}");
    assert!(healthz(&mut http).await.contains("200"));
    assert!(p.terminate().await.success());
}
