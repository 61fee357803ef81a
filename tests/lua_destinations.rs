//! `lua` outputs through the service against real destinations on
//! loopback: the guide's InfluxDB metrics connector against a real
//! `influxd`, and a centreon-stream-connectors-lib style connector against
//! an HTTP server that is down, then failing, then back.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};

use crate::common::*;
use crate::lua_modules::{query, start_influx, Influx};

fn install(dir: &Path, script: &str) -> String {
    let source: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/lua")
        .join(script);
    let scripts = dir.join("scripts");
    std::fs::create_dir_all(&scripts).unwrap();
    std::fs::copy(source, scripts.join(script)).unwrap();
    script.to_owned()
}

async fn create_lua(server: &Server, name: &str, path: &str, params: Value) {
    let response = server
        .post_json(
            "/api/v1/outputs",
            &json!({"name": name, "kind": "lua", "path": path, "parameters": params}),
        )
        .await;
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 201, "{body:#}");
}

/// `/query` with times in seconds since the epoch.
async fn influx_query(influx: &Arc<Influx>, db: &'static str, q: String) -> Value {
    let influx = Arc::clone(influx);
    tokio::task::spawn_blocking(move || {
        if db.is_empty() {
            return query(&influx, db, &q);
        }
        let response = reqwest::blocking::Client::new()
            .post(format!("{}/query", influx.base))
            .form(&[("db", db), ("q", q.as_str()), ("epoch", "s")])
            .send()
            .expect("query InfluxDB");
        assert_eq!(response.status().as_u16(), 200, "query {q}");
        serde_json::from_str(&response.text().expect("query body")).expect("JSON from /query")
    })
    .await
    .unwrap()
}

fn metric_at(
    host_id: i64,
    service_id: i64,
    metric_id: i64,
    name: &str,
    value: f64,
    ctime: i64,
) -> Value {
    json!({"_type": 196609, "host_id": host_id, "service_id": service_id,
           "metric_id": metric_id, "name": name, "value": value, "ctime": ctime})
}

/// The points of one measurement, by host tag: `(time, field → value)`.
/// A point: its time and its fields.
type Point = (i64, BTreeMap<String, f64>);

fn points(answer: &Value) -> BTreeMap<String, Vec<Point>> {
    let mut by_host = BTreeMap::new();
    let Some(series) = answer["results"][0]["series"].as_array() else {
        return by_host;
    };
    for s in series {
        let host = s["tags"]["host"].as_str().unwrap_or_default().to_owned();
        let columns: Vec<&str> = s["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        let rows: &mut Vec<_> = by_host.entry(host).or_default();
        for row in s["values"].as_array().unwrap() {
            let row = row.as_array().unwrap();
            let mut fields = BTreeMap::new();
            for (column, value) in columns.iter().zip(row).skip(1) {
                if let Some(x) = value.as_f64() {
                    fields.insert((*column).to_owned(), x);
                }
            }
            rows.push((row[0].as_i64().unwrap(), fields));
        }
    }
    by_host
}

/// The guide's third example (queue, line protocol from the cache's names,
/// POST with socket.http and an ltn12 source, acknowledge on 204), run by
/// the service against a real InfluxDB, read back with `/query`.
#[tokio::test]
async fn the_guide_s_influxdb_connector_writes_metrics_to_a_real_influxdb() {
    let influx = Arc::new(tokio::task::spawn_blocking(start_influx).await.unwrap());
    influx_query(&influx, "", "CREATE DATABASE \"metrics\"".to_owned()).await;
    let port: u16 = influx.base.rsplit(':').next().unwrap().parse().unwrap();

    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let script = install(dir.path(), "influxdb_metrics.lua");
    let params = |db: &str| {
        json!([
            {"name": "http_server_address", "type": "string", "value": "127.0.0.1"},
            {"name": "http_server_port", "type": "number", "value": port},
            {"name": "influx_database", "type": "string", "value": db},
            {"name": "max_buffer_size", "type": "number", "value": "3"},
            {"name": "max_buffer_age", "type": "number", "value": "5"},
        ])
    };
    create_lua(&server, "influx", &script, params("metrics")).await;
    // InfluxDB answers 404 for a database that does not exist: nothing
    // is acknowledged, and the flushes say so.
    create_lua(&server, "influx-missing-db", &script, params("missing")).await;

    let (code, answer) = server
        .post_events(&[
            host(1, "srv-01"),
            host(2, "srv 02"),
            service(1, 10, "cpu"),
            service(2, 20, "disk /"),
            metric_at(1, 10, 100, "user", 1.5, 1732000000),
            metric_at(1, 10, 101, "system", 0.25, 1732000000),
            metric_at(1, 10, 100, "user", 3.0, 1732000060),
            metric_at(2, 20, 200, "used", 42.0, 1732000000),
            metric_at(2, 20, 201, "free", 1e9, 1732000000),
        ])
        .await;
    assert_eq!(code, 200, "{answer}");

    let deadline = Instant::now() + Duration::from_secs(30);
    let (cpu, disk) = loop {
        let cpu = points(
            &influx_query(
                &influx,
                "metrics",
                "SELECT * FROM \"cpu\" GROUP BY host".to_owned(),
            )
            .await,
        );
        let disk = points(
            &influx_query(
                &influx,
                "metrics",
                "SELECT * FROM \"disk /\" GROUP BY host".to_owned(),
            )
            .await,
        );
        let cpu_rows = cpu.values().map(Vec::len).sum::<usize>();
        let disk_rows = disk.values().map(Vec::len).sum::<usize>();
        if cpu_rows == 2 && disk_rows == 1 {
            break (cpu, disk);
        }
        if Instant::now() >= deadline {
            let status = server.status("influx").await;
            panic!("points did not arrive: cpu {cpu:?}, disk {disk:?}; status {status:#}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let fields = |pairs: &[(&str, f64)]| -> BTreeMap<String, f64> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    };
    assert_eq!(
        cpu["srv-01"],
        vec![
            (1732000000, fields(&[("system", 0.25), ("user", 1.5)])),
            (1732000060, fields(&[("user", 3.0)])),
        ]
    );
    assert_eq!(
        disk["srv 02"],
        vec![(1732000000, fields(&[("free", 1e9), ("used", 42.0)]))]
    );

    let status = server
        .wait_status("influx", "everything acknowledged", |s| {
            s["counters"]["acknowledged"] == 9 && s["queue_depth"] == 0
        })
        .await;
    assert_eq!(status["counters"]["written"], 5, "{status:#}");
    assert_eq!(status["counters"]["filtered_out"], 4, "{status:#}");
    assert_eq!(status["counters"]["failed"], 0, "{status:#}");

    let status = server
        .wait_status("influx-missing-db", "a refused flush retried", |s| {
            s["flushes"].as_array().is_some_and(|f| {
                f.iter()
                    .any(|f| f["reason"] == "retry" && f["result"] == "flush() returned false")
            })
        })
        .await;
    assert_eq!(status["counters"]["acknowledged"], 0, "{status:#}");
    assert_ne!(status["queue_depth"], 0, "{status:#}");
    server.stop().await;
}

/// What the loopback destination saw.
#[derive(Default)]
struct Destination {
    /// The HTTP status it answers with.
    answer: u16,
    /// Requests answered with something else than 200.
    refused: usize,
    /// The outputs of the events it accepted, in order (duplicates kept).
    accepted: Vec<String>,
}

async fn ingest(State(dest): State<Arc<Mutex<Destination>>>, body: String) -> StatusCode {
    let mut dest = dest.lock().unwrap();
    if dest.answer != 200 {
        dest.refused += 1;
        return StatusCode::from_u16(dest.answer).unwrap();
    }
    let batch: Value = serde_json::from_str(&body).unwrap();
    for event in batch["events"].as_array().unwrap() {
        dest.accepted
            .push(event["output"].as_str().unwrap().to_owned());
    }
    StatusCode::OK
}

fn status_event(service_id: i64, n: usize) -> Value {
    json!({"category": 1, "element": 24, "host_id": 1, "service_id": service_id,
           "state": 2, "output": format!("event-{n}")})
}

async fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A sclib-style connector (JSON batches POSTed with cURL, acknowledged on
/// 200) through an outage: the destination is first down (connection
/// refused), then answers 500, then recovers. Every event posted arrives
/// at least once; duplicates are counted and reported.
#[tokio::test]
async fn a_lib_style_connector_delivers_everything_after_an_outage() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let script = install(dir.path(), "lib_style_http.lua");
    create_lua(
        &server,
        "lib-http",
        &script,
        json!([
            {"name": "http_server_url", "type": "string",
             "value": format!("http://127.0.0.1:{port}/ingest")},
            {"name": "max_buffer_size", "type": "number", "value": "4"},
            {"name": "connection_timeout", "type": "number", "value": "1"},
        ]),
    )
    .await;

    // Down: nothing listens on the port.
    let mut events = vec![host(1, "srv-01")];
    events.extend((0..10).map(|n| status_event(n as i64 + 1, n)));
    let (code, _) = server.post_events(&events).await;
    assert_eq!(code, 200);
    server
        .wait_status("lib-http", "a retried flush while down", |s| {
            s["flushes"]
                .as_array()
                .is_some_and(|f| f.iter().any(|f| f["reason"] == "retry"))
        })
        .await;

    // Up, but failing: 500 to everything.
    let dest = Arc::new(Mutex::new(Destination {
        answer: 500,
        ..Destination::default()
    }));
    let app = Router::new()
        .route("/ingest", post(ingest))
        .with_state(Arc::clone(&dest));
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let http = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    let more: Vec<Value> = (10..17).map(|n| status_event(n as i64 + 1, n)).collect();
    let (code, _) = server.post_events(&more).await;
    assert_eq!(code, 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    while dest.lock().unwrap().refused < 2 {
        if Instant::now() >= deadline {
            let status = server.status("lib-http").await;
            panic!("timed out waiting for two refused batches; status {status:#}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = server.status("lib-http").await;
    assert_eq!(status["counters"]["acknowledged"], 0, "{status:#}");

    // Back.
    dest.lock().unwrap().answer = 200;
    let expected: Vec<String> = (0..17).map(|n| format!("event-{n}")).collect();
    wait_for("every event at the destination", || {
        let dest = dest.lock().unwrap();
        expected.iter().all(|e| dest.accepted.contains(e))
    })
    .await;
    let status = server
        .wait_status("lib-http", "everything acknowledged", |s| {
            s["queue_depth"] == 0 && s["counters"]["acknowledged"] == 18
        })
        .await;
    let (refused, accepted) = {
        let dest = dest.lock().unwrap();
        (dest.refused, dest.accepted.clone())
    };
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for e in &accepted {
        *counts.entry(e.as_str()).or_default() += 1;
    }
    let duplicates: Vec<(&str, usize)> = counts.into_iter().filter(|(_, n)| *n > 1).collect();
    eprintln!(
        "lib-style outage: {} events posted, {} accepted by the destination, {} batches refused, duplicates: {duplicates:?}",
        expected.len(),
        accepted.len(),
        refused
    );
    assert!(
        accepted.iter().all(|e| expected.contains(e)),
        "unexpected events: {accepted:?}"
    );
    let flushes = status["flushes"].as_array().unwrap();
    assert!(
        flushes
            .iter()
            .any(|f| f["reason"] == "retry" && f["events"] == 0),
        "the failed attempts are in the status: {status:#}"
    );
    assert!(
        flushes
            .iter()
            .any(|f| f["events"].as_u64().unwrap_or(0) > 0),
        "{status:#}"
    );
    assert_eq!(status["counters"]["written"], 17, "{status:#}");
    server.stop().await;
    let _ = stop.send(());
    http.await.unwrap();
}
