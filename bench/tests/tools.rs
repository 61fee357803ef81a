//! The end-to-end benchmark's tools work: the BBDO load generator is
//! acknowledged for everything it sends, the blackhole takes anything, and
//! the two together follow every event from the load tool to the
//! destination.

use std::future::IntoFuture;
use std::sync::Arc;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use brokerstream::app::{self, App};
use brokerstream::bbdo::tls::{TlsSetting, TlsSettings};
use brokerstream::bbdo::Version;
use brokerstream::config::{BbdoConfig, Config, Redacted};
use brokerstream_bench::{self as bench, BlackholeStats, LoadOptions};
use serde_json::{json, Value};

const ADMIN_PASSWORD: &str = "admin-password-for-bench-tests";

/// brokerstream in this process, with its HTTP API and one BBDO listener
/// on free loopback ports: what the load tool and the blackhole measure.
struct Service {
    app: App,
    client: reqwest::Client,
}

impl Service {
    async fn start(dir: &Path) -> Service {
        Service::start_with_tls(dir, TlsSettings::default()).await
    }

    async fn start_with_tls(dir: &Path, tls: TlsSettings) -> Service {
        let config = Config {
            data_dir: dir.to_owned(),
            http_addr: "127.0.0.1:0".parse().unwrap(),
            admin_password: Some(Redacted(ADMIN_PASSWORD.into())),
            bbdo: BbdoConfig {
                listen: vec!["127.0.0.1:0".parse().unwrap()],
                tls,
                ..BbdoConfig::disabled()
            },
            ..Config::default()
        };
        Service {
            app: app::start(config).await.expect("service starts"),
            client: reqwest::Client::new(),
        }
    }

    fn bbdo_addr(&self) -> SocketAddr {
        self.app.bbdo_addrs[0]
    }

    async fn create_output(&self, body: &Value) {
        let response = self
            .client
            .post(format!("http://{}/api/v1/outputs", self.app.http_addr))
            .basic_auth("admin", Some(ADMIN_PASSWORD))
            .json(body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let answer = response.text().await.unwrap();
        assert_eq!(status, 201, "create output: {answer}");
    }

    async fn create_file_output(&self, path: &Path, filters: Value) {
        self.create_output(&json!({
            "name": "file", "kind": "file", "filters": filters,
            "parameters": [
                {"name": "path", "type": "string", "value": path.to_str().unwrap()},
                {"name": "max_buffer_size", "type": "number", "value": "1"}]
        }))
        .await;
    }

    async fn stop(self) {
        self.app.shutdown().await;
    }
}

/// Waits until `path` holds at least `lines` lines, and returns them.
async fn wait_lines(path: &Path, lines: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let found: Vec<String> = text.lines().map(str::to_owned).collect();
        if found.len() >= lines {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {lines} lines in {}; found {}",
            path.display(),
            found.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_load_tool_is_acknowledged_for_every_event_in_both_versions() {
    for (version, name) in [(Version::V2, "v2"), (Version::V3, "v3")] {
        let dir = tempfile::tempdir().unwrap();
        let server = Service::start(dir.path()).await;
        let addr = server.bbdo_addr();
        let path = dir.path().join(format!("{name}.log"));
        server
            .create_file_output(&path, json!({"category": ["storage"]}))
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
    let server = Service::start(dir.path()).await;
    let addr = server.bbdo_addr();
    let port = hole.rsplit(':').next().unwrap();
    server
        .create_output(&json!({
                "name": "influx", "kind": "influxdb", "filters": {"category": ["storage"]},
                "parameters": [
                    {"name": "http_server_address", "type": "string", "value": "127.0.0.1"},
                    {"name": "http_server_port", "type": "number", "value": port},
                    {"name": "influx_database", "type": "string", "value": "bench"},
                    {"name": "max_buffer_size", "type": "number", "value": "700"},
                    {"name": "max_buffer_age", "type": "number", "value": "0.2"}]
        }))
        .await;
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
    // A port that was free a moment ago: nothing listens there.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let error = bench::load(addr, &LoadOptions::new(Version::V2, 10))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("cannot connect"), "{error}");
}

#[tokio::test]
async fn the_load_tool_speaks_anonymous_tls_to_a_listener_that_offers_it() {
    let anonymous = TlsSettings {
        tls: TlsSetting::Yes,
        ..TlsSettings::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let server = Service::start_with_tls(
        dir.path(),
        TlsSettings {
            tls: TlsSetting::Auto,
            ..TlsSettings::default()
        },
    )
    .await;
    let path = dir.path().join("tls.log");
    server
        .create_file_output(&path, json!({"category": ["storage"]}))
        .await;
    let options = LoadOptions {
        batch: 200,
        tls: Some(anonymous.clone()),
        ..LoadOptions::new(Version::V3, 1500)
    };
    let report = bench::load(server.bbdo_addr(), &options).await.unwrap();
    assert_eq!(report.acknowledged, 1500);
    assert_eq!(report.tls.as_deref(), Some("anonymous TLSv1.2"));
    assert_eq!(wait_lines(&path, 1500).await.len(), 1500);
    server.stop().await;

    // A listener without TLS: the tool says what to set, sends nothing.
    let dir = tempfile::tempdir().unwrap();
    let server = Service::start(dir.path()).await;
    let options = LoadOptions {
        tls: Some(anonymous),
        ..LoadOptions::new(Version::V2, 10)
    };
    let error = bench::load(server.bbdo_addr(), &options).await.unwrap_err();
    assert!(error.to_string().contains("does not list TLS"), "{error}");
    server.stop().await;
}
