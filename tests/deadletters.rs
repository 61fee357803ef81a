//! Dead letters end to end against a real InfluxDB 1.x: points it refuses
//! for what they hold (a field type conflict, a 400 partial write) are
//! listed page by page, replayed while the conflict remains (refused
//! again), while the destination is unreachable (kept as they were), once
//! the conflict is gone (delivered, and queried back), and discarded; over
//! the API, `/metrics` and the detail page's forms.

use std::sync::Arc;

use reqwest::Method;
use serde_json::{json, Value};

use crate::common::*;
use crate::lua_modules::{query, start_influx, Influx};
use crate::native::{create, metric_at, names};

async fn influx_query(influx: &Arc<Influx>, q: &str) -> Value {
    let influx = Arc::clone(influx);
    let q = q.to_owned();
    tokio::task::spawn_blocking(move || query(&influx, "centreon", &q))
        .await
        .unwrap()
}

/// Makes `used` an integer field of `measurement` (escaped as line
/// protocol), so that the output's float points conflict with it.
async fn make_used_an_integer(influx: &Arc<Influx>, measurement: &str) {
    let response = reqwest::Client::new()
        .post(format!("{}/write?db=centreon&precision=s", influx.base))
        .body(format!("{measurement},host=srv-01 used=1i 1731990000\n"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
}

async fn letters(server: &Server, query: &str) -> Value {
    server
        .get_json(&format!("/api/v1/outputs/influx/deadletters{query}"))
        .await
}

async fn replay(server: &Server) -> Value {
    let response = server
        .client
        .post(server.url("/api/v1/outputs/influx/deadletters/replay"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

fn gauge(metrics: &str) -> Option<String> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("brokerstream_output_dead_letters{output=\"influx\"} "))
        .map(str::to_owned)
}

async fn set_port(server: &Server, port: &str) {
    let response = server
        .send_json(
            Method::PUT,
            "/api/v1/outputs/influx/parameters/http_server_port",
            &json!({"type": "number", "value": port}),
        )
        .await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
}

async fn refused_points(server: &Server, first_ctime: i64) {
    let mut events = names();
    for i in 0..3 {
        events.push(metric_at("used", 40.5 + i as f64, first_ctime + 60 * i));
    }
    assert_eq!(server.post_events(&events).await.0, 200);
}

#[tokio::test]
async fn dead_letters_are_listed_replayed_and_discarded() {
    let influx = Arc::new(tokio::task::spawn_blocking(start_influx).await.unwrap());
    influx_query(&influx, "CREATE DATABASE centreon").await;
    make_used_an_integer(&influx, "Disk\\ /var").await;
    let port = influx.base.rsplit(':').next().unwrap().to_owned();

    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    create(
        &server,
        "influx",
        "influxdb",
        &["storage:metric"],
        &[
            ("http_server_address", "127.0.0.1"),
            ("http_server_port", &port),
            ("influx_database", "centreon"),
            ("max_buffer_size", "3"),
        ],
    )
    .await;
    refused_points(&server, 1_732_000_000).await;
    let status = server
        .wait_status("influx", "3 dead-lettered", |s| {
            s["dead_lettered"] == 3 && s["counters"]["acknowledged"] == 5
        })
        .await;
    assert_eq!(status["dead_letters_held"], 3, "{status:#}");

    // The list, page by page, each with its reason and the record as sent.
    let all = letters(&server, "").await;
    assert_eq!(all["held"], 3, "{all:#}");
    assert_eq!(all["limit"], 50);
    let list = all["letters"].as_array().unwrap();
    assert_eq!(list.len(), 3);
    assert_eq!(
        list[0]["record"],
        "Disk\\ /var,host=srv-01 used=40.5 1732000000"
    );
    assert_eq!(
        list[2]["record"],
        "Disk\\ /var,host=srv-01 used=42.5 1732000120"
    );
    let reason = list[0]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("HTTP 400") && reason.contains("field type conflict"),
        "{reason}"
    );
    assert!(list[0]["at"].as_str().unwrap().ends_with('Z'));
    let page = letters(&server, "?offset=1&limit=1").await;
    assert_eq!(page["held"], 3);
    assert_eq!(page["letters"].as_array().unwrap().len(), 1);
    assert_eq!(page["letters"][0]["line"], 1);
    assert_eq!(page["letters"][0]["record"], list[1]["record"]);
    assert_eq!(
        letters(&server, "?offset=3").await["letters"],
        json!([]),
        "past the end: an empty page"
    );
    for bad in ["?limit=0", "?limit=501", "?limit=ten", "?offset=-1"] {
        let response = server
            .get(&format!("/api/v1/outputs/influx/deadletters{bad}"))
            .await;
        assert_eq!(response.status(), 400, "{bad}");
        let body: Value = response.json().await.unwrap();
        assert!(
            body.to_string().contains("whole number") || body.to_string().contains("at least 1"),
            "{bad}: {body}"
        );
    }
    let missing = server.get("/api/v1/outputs/nope/deadletters").await;
    assert_eq!(missing.status(), 404);
    let metrics = server.get("/metrics").await.text().await.unwrap();
    assert_eq!(gauge(&metrics).as_deref(), Some("3"), "{metrics}");

    // Replayed while the conflict remains: refused again, with the new
    // reason, still held.
    let outcome = replay(&server).await;
    assert_eq!(
        outcome,
        json!({"delivered": 0, "refused_again": 3, "kept": 0}),
        "{outcome}"
    );
    assert_eq!(letters(&server, "").await["held"], 3);

    // Replayed while the destination cannot be reached (the output now
    // points at a closed port): every letter kept as it was, in order.
    let closed = free_port().to_string();
    set_port(&server, &closed).await;
    let before = letters(&server, "").await["letters"].clone();
    let outcome = replay(&server).await;
    assert_eq!(outcome["delivered"], 0, "{outcome}");
    assert_eq!(outcome["kept"], 3, "{outcome}");
    assert!(
        outcome["error"]
            .as_str()
            .unwrap()
            .contains("cannot connect"),
        "{outcome}"
    );
    assert_eq!(letters(&server, "").await["letters"], before);
    set_port(&server, &port).await;

    // The conflict gone, the replay delivers them: InfluxDB has the points.
    influx_query(&influx, "DROP MEASUREMENT \"Disk /var\"").await;
    let outcome = replay(&server).await;
    assert_eq!(
        outcome,
        json!({"delivered": 3, "refused_again": 0, "kept": 0}),
        "{outcome}"
    );
    let answer = influx_query(&influx, "SELECT used FROM \"Disk /var\" ORDER BY time").await;
    let values: Vec<f64> = answer["results"][0]["series"][0]["values"]
        .as_array()
        .unwrap_or_else(|| panic!("no points: {answer}"))
        .iter()
        .map(|row| row[1].as_f64().unwrap())
        .collect();
    assert_eq!(values, [40.5, 41.5, 42.5], "{answer}");
    assert_eq!(letters(&server, "").await["held"], 0);
    let metrics = server.get("/metrics").await.text().await.unwrap();
    assert_eq!(gauge(&metrics).as_deref(), Some("0"));

    // Refused again later, then discarded: the page's form wants the box
    // ticked, the API does not ask.
    make_used_an_integer(&influx, "Disk\\ /home").await;
    let mut events = vec![host(1, "srv-01"), service(1, 4, "Disk /home")];
    for i in 0..3 {
        let mut m = metric(1, 4, "used", 1.5 + i as f64);
        m["ctime"] = json!(1_732_100_000 + i);
        events.push(m);
    }
    assert_eq!(server.post_events(&events).await.0, 200);
    server
        .wait_status("influx", "3 more dead-lettered", |s| {
            s["dead_letters_held"] == 3
        })
        .await;
    let session = Session::admin(&server).await;
    let unconfirmed = session
        .act("/outputs/influx/deadletters", &[("action", "discard")])
        .await;
    assert!(
        unconfirmed.text.starts_with("Nothing discarded"),
        "{unconfirmed:?}"
    );
    assert_eq!(unconfirmed.class, "notice-error");
    assert_eq!(letters(&server, "").await["held"], 3);
    let page = server.get("/outputs/influx").await.text().await.unwrap();
    assert!(page.contains("id=\"deadletters-list\""), "{page}");
    assert!(page.contains("field type conflict"));
    let discarded = server
        .send_json(
            Method::DELETE,
            "/api/v1/outputs/influx/deadletters",
            &json!({}),
        )
        .await;
    assert_eq!(discarded.status(), 200);
    assert_eq!(
        discarded.json::<Value>().await.unwrap(),
        json!({"discarded": 3})
    );
    assert_eq!(letters(&server, "").await["held"], 0);
    assert!(!dir.path().join("deadletter/influx.ndjson").exists());

    // Deleted while it holds letters: they are set aside, and an output
    // created again under the name starts without them.
    make_used_an_integer(&influx, "Disk\\ /tmp").await;
    let mut events = vec![service(1, 5, "Disk /tmp")];
    let mut m = metric(1, 5, "used", 7.5);
    m["ctime"] = json!(1_732_200_000);
    events.push(m);
    assert_eq!(server.post_events(&events).await.0, 200);
    server
        .wait_status("influx", "1 dead-lettered", |s| s["dead_letters_held"] == 1)
        .await;
    let deleted = server
        .send_json(Method::DELETE, "/api/v1/outputs/influx", &json!({}))
        .await;
    assert!(deleted.status().is_success(), "{}", deleted.status());
    let aside: Vec<_> = std::fs::read_dir(dir.path().join("deadletter"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("influx.deleted-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    create(
        &server,
        "influx",
        "influxdb",
        &["storage:metric"],
        &[
            ("http_server_address", "127.0.0.1"),
            ("http_server_port", &port),
            ("influx_database", "centreon"),
            ("max_buffer_size", "3"),
        ],
    )
    .await;
    assert_eq!(letters(&server, "").await["held"], 0);

    // Every replay and the discard are in the audit log.
    let audit = server.get_json("/api/v1/audit").await;
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["target"] == "influx")
        .filter_map(|e| e["action"].as_str())
        .filter(|a| a.starts_with("output.deadletters"))
        .collect();
    assert_eq!(
        actions
            .iter()
            .filter(|a| **a == "output.deadletters.replay")
            .count(),
        3,
        "{audit:#}"
    );
    assert_eq!(
        actions
            .iter()
            .filter(|a| **a == "output.deadletters.discard")
            .count(),
        1,
        "{audit:#}"
    );
    server.stop().await;
}
