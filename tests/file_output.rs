//! Events posted over HTTP reach file outputs: filtered, templated, flushed
//! by size, age and request, through edits, restarts and an unwritable
//! destination.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::common::*;

fn types_of(lines: &[String]) -> Vec<i64> {
    lines
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["_type"]
                .as_i64()
                .unwrap()
        })
        .collect()
}

fn mixed_events() -> Vec<Value> {
    vec![
        host(1, "srv-01"),
        host_status(1, 0, "OK - up"),
        service_status(1, 10, 2),
        metric(1, 10, "cpu", 42.5),
        host_status(1, 1, "DOWN"),
    ]
}

#[tokio::test]
async fn events_reach_files_filtered_by_category_and_element() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let (all, storage, statuses) = (
        dir.path().join("all.log"),
        dir.path().join("storage.log"),
        dir.path().join("hs.log"),
    );
    server.create_file_output("all", &all, json!({})).await;
    server
        .create_file_output(
            "storage",
            &storage,
            json!({"filters": {"category": ["storage"]}}),
        )
        .await;
    server
        .create_file_output(
            "statuses",
            &statuses,
            json!({"filters": {"category": ["neb:host_status", "neb:service_status"]}}),
        )
        .await;

    let (code, answer) = server.post_events(&mixed_events()).await;
    assert_eq!((code, answer), (200, json!({"accepted": 5})));

    let lines = wait_lines(&all, 5).await;
    assert_eq!(types_of(&lines), [65548, 65550, 65560, 196609, 65550]);
    // The JSON form: integers stay integers, doubles are floats, nil fields absent.
    let metric_line: Value = serde_json::from_str(&lines[3]).unwrap();
    assert_eq!(metric_line["value"], json!(42.5));
    assert_eq!(metric_line["category"], 3);
    assert_eq!(metric_line["element"], 1);
    assert_eq!(types_of(&wait_lines(&storage, 1).await), [196609]);
    assert_eq!(
        types_of(&wait_lines(&statuses, 3).await),
        [65550, 65560, 65550]
    );

    let status = server
        .wait_status("storage", "acknowledged", |s| {
            s["counters"]["acknowledged"] == 5
        })
        .await;
    assert_eq!(status["state"], "running");
    assert_eq!(status["counters"]["received"], 5);
    assert_eq!(status["counters"]["filtered_out"], 4);
    assert_eq!(status["counters"]["written"], 1);
    assert_eq!(status["counters"]["failed"], 0);
    assert_eq!(status["queue_depth"], 0);
    assert_eq!(status["last_flush"]["reason"], "size");
    assert_eq!(status["last_flush"]["result"], "ok");
    assert_eq!(status["last_flush"]["events"], 1);
    server.stop().await;
}

#[tokio::test]
async fn template_lines_use_cache_names() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let path = dir.path().join("hosts.txt");
    server
        .create_file_output(
            "classic",
            &path,
            json!({
                "filters": {"category": ["neb:host_status", "neb:service_status"]},
                "parameters": [
                    {"name": "path", "type": "string", "value": path.to_str().unwrap()},
                    {"name": "format", "type": "string", "value": "template"},
                    {"name": "template", "type": "string", "value": "HOST:{cache.host.name};{host_id};{state};{cache.service.description};{output}"},
                    {"name": "max_buffer_size", "type": "number", "value": "1"},
                ],
            }),
        )
        .await;
    let (code, _) = server
        .post_events(&[
            host(7, "srv-07"),
            service(7, 70, "Cpu"),
            host_status(7, 1, "CRITICAL - down\nsecond line"),
            service_status(7, 70, 0),
            host_status(8, 0, "unknown host"),
        ])
        .await;
    assert_eq!(code, 200);
    let lines = wait_lines(&path, 3).await;
    assert_eq!(
        lines,
        [
            "HOST:srv-07;7;1;;CRITICAL - down\\nsecond line",
            "HOST:srv-07;7;0;Cpu;OK",
            "HOST:;8;0;;unknown host",
        ]
    );
    server.stop().await;
}

#[tokio::test]
async fn flushes_by_size_age_and_request() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let params = |path: &std::path::Path, size: &str, age: &str| {
        json!({"parameters": [
            {"name": "path", "type": "string", "value": path.to_str().unwrap()},
            {"name": "max_buffer_size", "type": "number", "value": size},
            {"name": "max_buffer_age", "type": "number", "value": age},
        ]})
    };
    let (by_size, by_age, manual) = (
        dir.path().join("size.log"),
        dir.path().join("age.log"),
        dir.path().join("manual.log"),
    );
    server
        .create_file_output("by-size", &by_size, params(&by_size, "2", "3600"))
        .await;
    server
        .create_file_output("by-age", &by_age, params(&by_age, "1000", "0.2"))
        .await;
    server
        .create_file_output("manual", &manual, params(&manual, "1000", "3600"))
        .await;

    let events: Vec<Value> = (1..=5).map(|i| host_status(i, 0, "OK")).collect();
    assert_eq!(server.post_events(&events).await.0, 200);

    // Size: two batches of two; the fifth event waits for its batch.
    wait_lines(&by_size, 4).await;
    let status = server
        .wait_status("by-size", "two flushes", |s| {
            s["flushes"].as_array().unwrap().len() == 2
        })
        .await;
    assert_eq!(status["buffered"], 1);
    assert_eq!(status["queue_depth"], 1);
    assert!(status["flushes"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["reason"] == "size" && f["events"] == 2));

    // Age: one flush of everything.
    wait_lines(&by_age, 5).await;
    let status = server
        .wait_status("by-age", "age flush", |s| {
            s["last_flush"]["reason"] == "age"
        })
        .await;
    assert_eq!(status["last_flush"]["events"], 5);

    // Request: nothing is written until the flush is asked for.
    server
        .wait_status("manual", "buffered", |s| s["buffered"] == 5)
        .await;
    assert!(std::fs::read_to_string(&manual)
        .unwrap_or_default()
        .is_empty());
    let response = server
        .client
        .post(server.url("/api/v1/outputs/manual/flush"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let record: Value = response.json().await.unwrap();
    assert_eq!(record["reason"], "manual");
    assert_eq!(record["events"], 5);
    assert_eq!(record["result"], "ok");
    assert_eq!(wait_lines(&manual, 5).await.len(), 5);
    let status = server.status("manual").await;
    assert_eq!(status["last_flush"]["reason"], "manual");
    assert_eq!(status["queue_depth"], 0);
    assert_eq!(status["counters"]["acknowledged"], 5);
    server.stop().await;
}

#[tokio::test]
async fn an_edit_applies_live() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let path = dir.path().join("live.log");
    server
        .create_file_output("live", &path, json!({"filters": {"category": ["storage"]}}))
        .await;
    assert_eq!(server.post_events(&mixed_events()).await.0, 200);
    assert_eq!(types_of(&wait_lines(&path, 1).await), [196609]);

    let response = server
        .send_json(
            Method::PATCH,
            "/api/v1/outputs/live",
            &json!({"filters": {"category": ["neb:host_status"]}}),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(server.post_events(&mixed_events()).await.0, 200);
    let lines = wait_lines(&path, 3).await;
    assert_eq!(types_of(&lines), [196609, 65550, 65550]);

    // A new path applies too, with the template format.
    let other = dir.path().join("other.log");
    let response = server
        .send_json(
            Method::PUT,
            "/api/v1/outputs/live/parameters/path",
            &json!({"type": "string", "value": other.to_str().unwrap()}),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(server.post_events(&[host_status(3, 2, "x")]).await.0, 200);
    assert_eq!(types_of(&wait_lines(&other, 1).await), [65550]);
    assert_eq!(
        wait_lines(&path, 3).await.len(),
        3,
        "the old file got nothing more"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_restart_keeps_outputs_and_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kept.log");
    let server = Server::start(dir.path()).await;
    server
        .create_file_output(
            "kept",
            &path,
            json!({"filters": {"category": ["neb:host_status", "storage"]}}),
        )
        .await;
    server
        .create_file_output(
            "off",
            &dir.path().join("off.log"),
            json!({"enabled": false}),
        )
        .await;
    let before = server.get_json("/api/v1/outputs").await;
    server.stop().await;

    let server = Server::start(dir.path()).await;
    assert_eq!(server.get_json("/api/v1/outputs").await, before);
    assert_eq!(server.status("off").await["state"], "stopped");
    assert_eq!(server.post_events(&mixed_events()).await.0, 200);
    assert_eq!(
        types_of(&wait_lines(&path, 3).await),
        [65550, 196609, 65550]
    );
    server.stop().await;
}

#[tokio::test]
async fn an_unwritable_file_retries_and_recovers_without_loss() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let parent = dir.path().join("not-yet");
    let path = parent.join("out.log");
    server.create_file_output("late", &path, json!({})).await;

    let status = server
        .wait_status("late", "retrying", |s| s["state"] == "retrying")
        .await;
    let error = status["last_error"].as_str().unwrap();
    assert!(
        error.contains("cannot open") && error.contains("not-yet"),
        "{error}"
    );
    assert!(status["last_error_at"].is_string());
    assert!(status["next_retry_at"].is_string());
    assert!(status["attempts"].as_u64().unwrap() >= 1);

    // Events posted while it cannot write wait for it.
    let events: Vec<Value> = (1..=20).map(|i| host_status(i, 0, "OK")).collect();
    for chunk in events.chunks(5) {
        assert_eq!(server.post_events(chunk).await.0, 200);
    }
    let status = server
        .wait_status("late", "backlog", |s| s["queue_depth"] == 20)
        .await;
    assert!(status["oldest_pending_age_secs"].as_f64().is_some());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        server.status("late").await["state"],
        "retrying",
        "still failing"
    );

    std::fs::create_dir(&parent).unwrap();
    let lines = wait_lines(&path, 20).await;
    let ids: Vec<i64> = lines
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["host_id"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(
        ids,
        (1..=20).collect::<Vec<_>>(),
        "every event, once, in order"
    );
    let status = server
        .wait_status("late", "recovered", |s| {
            s["state"] == "running" && s["queue_depth"] == 0
        })
        .await;
    assert_eq!(status["attempts"], 0);
    assert_eq!(status["next_retry_at"], Value::Null);
    assert_eq!(status["counters"]["written"], 20);
    server.stop().await;
}
