//! The end-to-end benchmark's tools work: the BBDO load generator is
//! acknowledged for everything it sends, the blackhole takes anything, and
//! the two together follow every event from the load tool to the
//! destination.

use std::future::IntoFuture;
use std::sync::Arc;

use brokerstream::bbdo::Version;
use brokerstream::bench::{self, BlackholeStats, LoadOptions};
use brokerstream::config::{BbdoConfig, Config};
use serde_json::{json, Value};

use crate::common::*;

/// A server with one BBDO listener on a free loopback port.
fn with_bbdo_listener(dir: &std::path::Path) -> Config {
    Config {
        data_dir: dir.to_owned(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        bbdo: BbdoConfig {
            listen: vec!["127.0.0.1:0".parse().unwrap()],
            ..BbdoConfig::disabled()
        },
        ..Config::default()
    }
}

#[tokio::test]
async fn the_load_tool_is_acknowledged_for_every_event_in_both_versions() {
    for (version, name) in [(Version::V2, "v2"), (Version::V3, "v3")] {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::start_with(with_bbdo_listener(dir.path())).await;
        let addr = server.app.as_ref().unwrap().bbdo_addrs[0];
        let path = dir.path().join(format!("{name}.log"));
        server
            .create_file_output(
                "metrics",
                &path,
                json!({"filters": {"category": ["storage"]}}),
            )
            .await;
        let options = LoadOptions {
            batch: 300,
            ..LoadOptions::new(version, 2500)
        };
        let report = bench::load(addr, &options).await.unwrap();
        assert_eq!(report.acknowledged, 2500, "{name}");
        assert!(report.events_per_second > 0.0);
        let lines = wait_lines(&path, 2500).await;
        let first: Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(first["name"], "cpu.utilization.percentage", "{name}");
        server.stop().await;
    }
}

#[tokio::test]
async fn the_blackhole_answers_204_and_counts() {
    let stats = Arc::new(BlackholeStats::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server =
        tokio::spawn(axum::serve(listener, bench::blackhole(Arc::clone(&stats))).into_future());
    let client = reqwest::Client::new();
    for path in ["/write?db=x", "/api/v2/write", "/anything"] {
        let response = client
            .post(format!("http://{addr}{path}"))
            .body("cpu value=1")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 204);
    }
    let counted: Value = client
        .get(format!("http://{addr}/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // "cpu value=1" carries event number 1 as the load tool's points do.
    assert_eq!(counted, json!({"requests": 3, "bytes": 33, "records": 3}));
    server.abort();
}

async fn start_blackhole() -> (String, tokio::task::JoinHandle<()>) {
    let stats = Arc::new(BlackholeStats::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, bench::blackhole(stats)).await;
    });
    (url, server)
}

#[tokio::test]
async fn every_event_is_followed_from_the_load_tool_to_the_blackhole() {
    let (hole, hole_server) = start_blackhole().await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(with_bbdo_listener(dir.path())).await;
    let addr = server.app.as_ref().unwrap().bbdo_addrs[0];
    let port = hole.rsplit(':').next().unwrap();
    let response = server
        .post_json(
            "/api/v1/outputs",
            &json!({
                "name": "influx", "kind": "influxdb", "filters": {"category": ["storage"]},
                "parameters": [
                    {"name": "http_server_address", "type": "string", "value": "127.0.0.1"},
                    {"name": "http_server_port", "type": "number", "value": port},
                    {"name": "influx_database", "type": "string", "value": "bench"},
                    {"name": "max_buffer_size", "type": "number", "value": "700"},
                    {"name": "max_buffer_age", "type": "number", "value": "0.2"}]
            }),
        )
        .await;
    assert_eq!(response.status(), 201);
    let options = LoadOptions {
        batch: 250,
        rate: Some(20_000.0),
        names: true,
        blackhole: Some(hole.clone()),
        ..LoadOptions::new(Version::V2, 3000)
    };
    let report = bench::load(addr, &options).await.unwrap();
    assert_eq!(report.names, 1800);
    assert_eq!(report.acknowledged, 4800);
    let delivery = report.delivery.expect("measured");
    assert_eq!(delivery.delivered, 3000);
    assert_eq!(delivery.non_contiguous_requests, 0);
    assert!(delivery.requests >= 5, "{delivery:?}");
    assert!(delivery.latency_p50_ms > 0.0, "{delivery:?}");
    assert!(delivery.latency_p50_ms <= delivery.latency_p99_ms);
    assert!(delivery.latency_p99_ms <= delivery.latency_max_ms);
    // The first request starts at the first metric event: the numbering
    // survived decoding, the journal and the influxdb encoder.
    let arrivals: Value = reqwest::get(format!("{hole}/arrivals"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(arrivals[0]["first"], 0);
    server.stop().await;
    hole_server.abort();
}

#[tokio::test]
async fn the_load_tool_fails_clearly_without_a_listener() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let error = bench::load(addr, &LoadOptions::new(Version::V2, 10))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("cannot connect"), "{error}");
}
