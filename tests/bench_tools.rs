//! The end-to-end benchmark's tools work: the BBDO load generator is
//! acknowledged for everything it sends, and the blackhole takes anything.

use std::future::IntoFuture;
use std::sync::Arc;

use brokerstream::bbdo::Version;
use brokerstream::bench::{self, BlackholeStats};
use brokerstream::config::{BbdoConfig, Config};
use serde_json::{json, Value};

use crate::common::*;

#[tokio::test]
async fn the_load_tool_is_acknowledged_for_every_event_in_both_versions() {
    for (version, name) in [(Version::V2, "v2"), (Version::V3, "v3")] {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            data_dir: dir.path().to_owned(),
            http_addr: "127.0.0.1:0".parse().unwrap(),
            bbdo: BbdoConfig {
                listen: vec!["127.0.0.1:0".parse().unwrap()],
                ..BbdoConfig::disabled()
            },
            ..Config::default()
        };
        let server = Server::start_with(config).await;
        let addr = server.app.as_ref().unwrap().bbdo_addrs[0];
        let path = dir.path().join(format!("{name}.log"));
        server
            .create_file_output(
                "metrics",
                &path,
                json!({"filters": {"category": ["storage"]}}),
            )
            .await;
        let report = bench::load(addr, version, 2500, 300).await.unwrap();
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
    assert_eq!(counted, json!({"requests": 3, "bytes": 33}));
    server.abort();
}
