//! The durable journal through the real service: crashes, outages,
//! corruption, a full disk, replay.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use reqwest::Method;
use serde_json::{json, Value};

use crate::common::*;

fn metric_line(id: i64) -> String {
    format!(
        "{}\n",
        json!({"_type": 196609, "metric_id": id, "host_id": 1, "service_id": 1, "name": "m", "value": 1.0, "ctime": 1732000000})
    )
}

/// Posts numbered events until the service stops answering; returns the
/// ids whose request was acknowledged (200).
async fn post_until_gone(
    client: reqwest::Client,
    base: String,
    mut next: i64,
    seed: u64,
) -> (Vec<i64>, i64) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut acked = Vec::new();
    loop {
        let n = rng.gen_range(1..=20);
        let body: String = (next..next + n).map(metric_line).collect();
        match client
            .post(format!("{base}/api/v1/events"))
            .body(body)
            .send()
            .await
        {
            Ok(r) if r.status() == 200 => acked.extend(next..next + n),
            Ok(r) if r.status() == 503 => {}
            Ok(r) => panic!("unexpected answer {}", r.status()),
            Err(_) => return (acked, next + n),
        }
        next += n;
    }
}

/// The same over a BBDO 2 connection, as a Centreon Broker sends: events
/// go out in batches and brokerstream's cumulative acks say how many of the
/// first ones it holds. Returns the acknowledged ids.
async fn bbdo_until_gone(addr: std::net::SocketAddr, mut next: i64, seed: u64) -> (Vec<i64>, i64) {
    use brokerstream::bbdo::{self, frame::Deframer, handshake, Version};
    use bytes::BytesMut;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let Ok(stream) = tokio::net::TcpStream::connect(addr).await else {
        return (Vec::new(), next);
    };
    let (mut reader, mut writer) = stream.into_split();
    let mut hello = BytesMut::new();
    handshake::encode(Version::V2, &[], "kill-loop", &mut hello);
    if writer.write_all(&hello).await.is_err() {
        return (Vec::new(), next);
    }
    let acked = Arc::new(AtomicU64::new(0));
    let gone = Arc::new(AtomicBool::new(false));
    let acks = {
        let (acked, gone) = (Arc::clone(&acked), Arc::clone(&gone));
        tokio::spawn(async move {
            let mut buf = BytesMut::new();
            let mut deframer = Deframer::new();
            loop {
                while let Some(packet) = deframer.next(&mut buf) {
                    if packet.event_type == handshake::ACK {
                        let ack = bbdo::decode(packet.event_type, &packet.payload).unwrap();
                        let n = ack.get("acknowledged_events").unwrap().as_i64().unwrap();
                        acked.fetch_add(n as u64, Ordering::SeqCst);
                    }
                }
                match reader.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            gone.store(true, Ordering::SeqCst);
        })
    };
    let mut sent = Vec::new();
    while !gone.load(Ordering::SeqCst) {
        let n = rng.gen_range(1..=40);
        let mut out = BytesMut::new();
        for id in next..next + n {
            let event = brokerstream::event::Event::from_json(&json!({
                "_type": 196609, "metric_id": id, "host_id": 1, "service_id": 1,
                "name": "m", "value": 1.0, "ctime": 1732000000
            }))
            .unwrap();
            bbdo::encode(&event, &mut out);
        }
        if writer.write_all(&out).await.is_err() {
            break;
        }
        sent.extend(next..next + n);
        next += n;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let _ = acks.await;
    let count = (acked.load(Ordering::SeqCst) as usize).min(sent.len());
    sent.truncate(count);
    (sent, next)
}

fn count_ids(path: &Path) -> (BTreeMap<i64, u32>, usize) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut counts = BTreeMap::new();
    let mut torn = 0;
    for line in text.lines() {
        match serde_json::from_str::<Value>(line)
            .ok()
            .and_then(|v| v["metric_id"].as_i64())
        {
            Some(id) => *counts.entry(id).or_insert(0) += 1,
            None => torn += 1,
        }
    }
    (counts, torn)
}

fn quiet_env() -> [(&'static str, &'static str); 1] {
    [("BROKERSTREAM_LOG", "error")]
}

#[tokio::test]
async fn kill9_loop_loses_no_acknowledged_event() {
    let iterations: usize = std::env::var("BROKERSTREAM_KILL_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let seed: u64 = std::env::var("BROKERSTREAM_KILL_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!(
        "kill -9 loop: {iterations} iterations, seed {seed} (BROKERSTREAM_KILL_SEED to replay)"
    );
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = dir.path().join("out.log");
    let port = free_port();
    let bbdo_port = free_port();
    let bbdo_addr: std::net::SocketAddr = format!("127.0.0.1:{bbdo_port}").parse().unwrap();
    let config = dir.path().join("brokerstream.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\nhttp_addr = \"127.0.0.1:{port}\"\n\n[bbdo]\nack_limit = 10\n",
            data.to_str().unwrap()
        ),
    )
    .unwrap();
    let bbdo_flag = bbdo_addr.to_string();
    let args = [
        "serve",
        "--config",
        config.to_str().unwrap(),
        "--bbdo-addr",
        &bbdo_flag,
    ];
    let mut acked: Vec<i64> = Vec::new();
    let mut next = 1;
    // BBDO events are numbered apart from the HTTP ones.
    let mut next_bbdo = 1_000_000_000;
    let mut starts_by_policy = [0; 3];
    for iteration in 0..iterations {
        // Every fsync policy promises that an acknowledged event survives
        // the death of the process; each start runs one of them, on the
        // journal the previous one left.
        let policy = rng.gen_range(0..3);
        starts_by_policy[policy] += 1;
        let fsync = ["always", "interval", "never"][policy];
        let env = [("BROKERSTREAM_LOG", "error"), ("BROKERSTREAM_FSYNC", fsync)];
        let p = Process::spawn(&args, &env, port);
        p.wait_ready().await;
        if iteration == 0 {
            let mut output = file_output("sink", &out, &[]);
            output["parameters"][1]["value"] = json!("7");
            output["parameters"][2]["value"] = json!("0.02");
            create_output(&p, &output).await;
        }
        let poster = tokio::spawn(post_until_gone(
            p.client.clone(),
            p.base.clone(),
            next,
            rng.gen(),
        ));
        let broker = tokio::spawn(bbdo_until_gone(bbdo_addr, next_bbdo, rng.gen()));
        tokio::time::sleep(Duration::from_millis(rng.gen_range(10..200))).await;
        p.kill9();
        let (ids, after) = poster.await.unwrap();
        acked.extend(ids);
        next = after;
        let (ids, after) = broker.await.unwrap();
        acked.extend(ids);
        next_bbdo = after;
    }
    // A last start delivers the backlog; then a clean stop.
    let p = Process::spawn(&args, &quiet_env(), port);
    p.wait_ready().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = p.get_json("/api/v1/outputs/sink/status").await;
        if status["queue_depth"] == 0 && status["buffered"] == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "backlog never drained: {status:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(p.terminate().await.success());

    let (counts, torn) = count_ids(&out);
    let missing: Vec<i64> = acked
        .iter()
        .copied()
        .filter(|id| !counts.contains_key(id))
        .collect();
    let duplicates: u32 = counts.values().map(|c| c - 1).sum();
    eprintln!(
        "kill -9 loop: starts under always/interval/never: {starts_by_policy:?}; {} events acknowledged, {} delivered, {} duplicates, {} missing, {} torn lines",
        acked.len(),
        counts.len(),
        duplicates,
        missing.len(),
        torn
    );
    assert!(
        acked.len() > iterations,
        "the loop acknowledged too little to prove anything"
    );
    assert!(
        acked.iter().any(|id| *id >= 1_000_000_000),
        "no BBDO event was acknowledged"
    );
    assert!(missing.is_empty(), "acknowledged events lost: {missing:?}");
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    let bad: Vec<&str> = text
        .lines()
        .filter(|l| {
            serde_json::from_str::<Value>(l)
                .ok()
                .and_then(|v| v["metric_id"].as_i64())
                .is_none()
        })
        .collect();
    assert_eq!(torn, 0, "torn lines in the output: {bad:?}");
}

#[tokio::test]
async fn an_outage_backlog_survives_a_restart_and_drains_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let config = || brokerstream::config::Config {
        data_dir: dir.path().join("data"),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        journal: brokerstream::config::JournalSettings {
            // Everything behind the head is read back from disk.
            memory_bytes: 1,
            segment_bytes: 8192,
            ..Default::default()
        },
        bbdo: brokerstream::config::BbdoConfig::disabled(),
        ..Default::default()
    };
    let server = Server::start_with(config()).await;
    let parent = dir.path().join("down");
    let path = parent.join("out.log");
    server.create_file_output("late", &path, json!({})).await;
    for chunk in 0..10 {
        let body: String = (chunk * 50 + 1..=chunk * 50 + 50)
            .map(metric_line)
            .collect();
        let response = server
            .client
            .post(server.url("/api/v1/events"))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    server
        .wait_status("late", "backlog", |s| s["queue_depth"] == 500)
        .await;
    let journal = server.get_json("/api/v1/journal").await;
    assert!(journal["segments"].as_u64().unwrap() > 2, "{journal}");
    assert_eq!(journal["events"], 500);
    server.stop().await;

    let server = Server::start_with(config()).await;
    let status = server
        .wait_status("late", "retrying", |s| s["state"] == "retrying")
        .await;
    assert_eq!(status["queue_depth"], 500);
    std::fs::create_dir(&parent).unwrap();
    let (counts, _) = {
        wait_lines(&path, 500).await;
        count_ids(&path)
    };
    let lines = std::fs::read_to_string(&path).unwrap();
    let order: Vec<i64> = lines
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["metric_id"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(order, (1..=500).collect::<Vec<_>>());
    assert_eq!(counts.len(), 500);
    server
        .wait_status("late", "drained", |s| s["queue_depth"] == 0)
        .await;
    // Every segment but the active one is gone once delivered.
    assert_eq!(server.get_json("/api/v1/journal").await["segments"], 1);
    server.stop().await;
}

#[tokio::test]
async fn a_disabled_output_keeps_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let path = dir.path().join("off.log");
    server
        .create_file_output("off", &path, json!({"enabled": false}))
        .await;
    assert_eq!(
        server
            .post_events(&[host_status(1, 0, "a"), host_status(2, 0, "b")])
            .await
            .0,
        200
    );
    assert_eq!(server.status("off").await["queue_depth"], 2);
    let response = server
        .send_json(
            Method::PATCH,
            "/api/v1/outputs/off",
            &json!({"enabled": true}),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(wait_lines(&path, 2).await.len(), 2);
    server.stop().await;
}

#[tokio::test]
async fn edits_during_ingest_lose_and_repeat_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let path = dir.path().join("edited.log");
    server.create_file_output("edited", &path, json!({})).await;
    for chunk in 0..30 {
        let body: String = (chunk * 10 + 1..=chunk * 10 + 10)
            .map(metric_line)
            .collect();
        let response = server
            .client
            .post(server.url("/api/v1/events"))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        if chunk % 5 == 0 {
            let size = json!({"type": "number", "value": (chunk + 2).to_string()});
            let response = server
                .send_json(
                    Method::PUT,
                    "/api/v1/outputs/edited/parameters/max_buffer_size",
                    &size,
                )
                .await;
            assert!(response.status().is_success());
        }
    }
    server
        .wait_status("edited", "drained", |s| s["queue_depth"] == 0)
        .await;
    let response = server
        .client
        .post(server.url("/api/v1/outputs/edited/flush"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (counts, torn) = count_ids(&path);
    assert_eq!(torn, 0);
    assert_eq!(
        counts.keys().copied().collect::<Vec<_>>(),
        (1..=300).collect::<Vec<_>>()
    );
    assert!(
        counts.values().all(|c| *c == 1),
        "no duplicates across worker swaps"
    );
    server.stop().await;
}

#[tokio::test]
async fn replay_and_skip() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let path = dir.path().join("replayed.log");
    server
        .create_file_output("replayed", &path, json!({}))
        .await;
    let body: String = (1..=3).map(metric_line).collect();
    server
        .client
        .post(server.url("/api/v1/events"))
        .body(body)
        .send()
        .await
        .unwrap();
    wait_lines(&path, 3).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let middle = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let body: String = (4..=5).map(metric_line).collect();
    server
        .client
        .post(server.url("/api/v1/events"))
        .body(body)
        .send()
        .await
        .unwrap();
    wait_lines(&path, 5).await;

    let response = server
        .post_json("/api/v1/outputs/replayed/replay", &json!({"since": middle}))
        .await;
    assert_eq!(response.status(), 200);
    let lines = wait_lines(&path, 7).await;
    assert!(
        lines[5].contains("\"metric_id\":4") && lines[6].contains("\"metric_id\":5"),
        "{lines:?}"
    );
    let response = server
        .post_json(
            "/api/v1/outputs/replayed/replay",
            &json!({"from": "oldest"}),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(wait_lines(&path, 12).await.len(), 12);
    // The audit log says what was asked, in the API's own terms.
    let audit = server.get_json("/api/v1/audit").await;
    let replays: Vec<&Value> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "output.replay")
        .map(|e| &e["detail"])
        .collect();
    assert_eq!(replays.len(), 2, "{audit:#}");
    let since = replays
        .iter()
        .find_map(|d| d["since"].as_str())
        .expect("a replay since a time");
    assert_eq!(
        time::OffsetDateTime::parse(since, &time::format_description::well_known::Rfc3339).unwrap(),
        time::OffsetDateTime::parse(&middle, &time::format_description::well_known::Rfc3339)
            .unwrap(),
        "{audit:#}"
    );
    assert!(replays.iter().any(|d| d["from"] == "oldest"), "{audit:#}");

    // Skip: a stuck output drops its backlog on request.
    let stuck = dir.path().join("none").join("x.log");
    server.create_file_output("stuck", &stuck, json!({})).await;
    server
        .client
        .post(server.url("/api/v1/events"))
        .body(metric_line(6))
        .send()
        .await
        .unwrap();
    server
        .wait_status("stuck", "backlog", |s| s["queue_depth"] == 1)
        .await;
    let response = server
        .client
        .post(server.url("/api/v1/outputs/stuck/skip"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["position"], 6);
    assert_eq!(server.status("stuck").await["queue_depth"], 0);

    // Errors.
    let response = server
        .post_json("/api/v1/outputs/ghost/replay", &json!({"from": "oldest"}))
        .await;
    assert_eq!(response.status(), 404);
    for body in [
        json!({}),
        json!({"from": "yesterday"}),
        json!({"since": "noon"}),
    ] {
        let response = server
            .post_json("/api/v1/outputs/replayed/replay", &body)
            .await;
        assert_eq!(response.status(), 422, "{body}");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_new_output_can_start_at_the_oldest_event() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    // Something must hold events for a late output to find them.
    server
        .create_file_output("holder", &dir.path().join("none").join("h.log"), json!({}))
        .await;
    let body: String = (1..=4).map(metric_line).collect();
    server
        .client
        .post(server.url("/api/v1/events"))
        .body(body)
        .send()
        .await
        .unwrap();
    let (late, head) = (dir.path().join("late.log"), dir.path().join("head.log"));
    server
        .create_file_output("late", &late, json!({"start_at": "oldest"}))
        .await;
    server.create_file_output("head", &head, json!({})).await;
    assert_eq!(wait_lines(&late, 4).await.len(), 4);
    server
        .client
        .post(server.url("/api/v1/events"))
        .body(metric_line(5))
        .send()
        .await
        .unwrap();
    assert_eq!(wait_lines(&head, 1).await.len(), 1);
    assert_eq!(wait_lines(&late, 5).await.len(), 5);
    let response = server
        .post_json(
            "/api/v1/outputs",
            &json!({"name": "bad", "kind": "file", "start_at": "yesterday",
            "parameters": [{"name": "path", "type": "string", "value": "/tmp/x"}]}),
        )
        .await;
    assert_eq!(response.status(), 422);
    server.stop().await;
}

fn cli(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_brokerstream"))
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test]
async fn corruption_is_reported_by_check_repaired_at_start_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let args = ["serve", "--http-addr", &addr, "--data-dir", data_arg];
    let p = Process::spawn(&args, &quiet_env(), port);
    p.wait_ready().await;
    let stuck = dir.path().join("none").join("x.log");
    create_output(&p, &file_output("stuck", &stuck, &[])).await;
    let body: String = (1..=10).map(metric_line).collect();
    let response = p.post_events(body).await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(p.terminate().await.success());

    let check = cli(&["journal", "check", "--data-dir", data_arg]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(String::from_utf8_lossy(&check.stdout).contains("no problem found"));

    // Flip one bit in the middle of the segment.
    let journal_dir = data.join("journal");
    let segment = std::fs::read_dir(&journal_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "seg"))
        .unwrap();
    let mut bytes = std::fs::read(&segment).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x04;
    std::fs::write(&segment, &bytes).unwrap();

    let check = cli(&["journal", "check", "--data-dir", data_arg]);
    let report = String::from_utf8_lossy(&check.stdout);
    assert_eq!(check.status.code(), Some(2), "{report}");
    assert!(report.contains("events lost: 1"), "{report}");

    let p = Process::spawn(&args, &quiet_env(), port);
    p.wait_ready().await;
    let journal = p.get_json("/api/v1/journal").await;
    assert_eq!(journal["recovery"]["events_lost"], 1, "{journal:#}");
    assert_eq!(
        journal["recovery"]["quarantined"].as_array().unwrap().len(),
        1
    );
    let status = p.get_json("/api/v1/outputs/stuck/status").await;
    assert_eq!(status["lost"], 1);
    // The lag counts journal positions: the lost event's position stays in
    // it until the output reads past it.
    assert_eq!(status["queue_depth"], 10);
    let response = p.post_events(metric_line(11)).await.unwrap();
    assert_eq!(response.status(), 200, "ingest goes on");
    assert!(p.terminate().await.success());
    assert!(journal_dir.join("quarantine").read_dir().unwrap().count() >= 1);
    let check = cli(&["journal", "check", "--data-dir", data_arg]);
    assert!(
        check.status.success(),
        "repaired: {}",
        String::from_utf8_lossy(&check.stdout)
    );
}

#[tokio::test]
async fn a_full_disk_refuses_events_and_loses_none() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let out = dir.path().join("ids.txt");
    // Every file of the process is limited to 256 KiB: the journal's
    // segment reaches it first (the output writes short lines).
    let mut command = Command::new("prlimit");
    command
        .args([
            "--fsize=262144",
            env!("CARGO_BIN_EXE_brokerstream"),
            "serve",
            "--http-addr",
            &addr,
        ])
        .args(["--data-dir", data.to_str().unwrap()])
        .env("BROKERSTREAM_LOG", "error")
        .env("BROKERSTREAM_BBDO_ADDR", "none")
        .env("BROKERSTREAM_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .stdout(std::process::Stdio::null());
    let p = Process {
        child: command.spawn().expect("prlimit runs"),
        base: format!("http://127.0.0.1:{port}"),
        client: admin_client(),
    };
    p.wait_ready().await;
    let mut output = file_output("ids", &out, &[]);
    output["parameters"] = json!([
        {"name": "path", "type": "string", "value": out.to_str().unwrap()},
        {"name": "format", "type": "string", "value": "template"},
        {"name": "template", "type": "string", "value": "{metric_id}"},
        {"name": "max_buffer_age", "type": "number", "value": "0.05"},
    ]);
    create_output(&p, &output).await;
    let mut acked = Vec::new();
    let mut refusal = None;
    for chunk in 0..200 {
        let ids: Vec<i64> = (chunk * 100 + 1..=chunk * 100 + 100).collect();
        let body: String = ids.iter().copied().map(metric_line).collect();
        let response = p.post_events(body).await.unwrap();
        match response.status().as_u16() {
            200 => acked.extend(ids),
            503 => {
                refusal = Some(response.json::<Value>().await.unwrap());
                break;
            }
            other => panic!("unexpected {other}"),
        }
    }
    let refusal = refusal.expect("the file-size limit was reached");
    assert!(
        refusal["error"].as_str().unwrap().contains("cannot write"),
        "{refusal}"
    );
    assert_eq!(
        p.get(&format!("{}/healthz", p.base)).await,
        200,
        "still alive"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        if text.lines().count() >= acked.len() {
            let delivered: Vec<i64> = text.lines().map(|l| l.parse().unwrap()).collect();
            assert_eq!(delivered, acked, "every acknowledged event, in order");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "acknowledged events not delivered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    p.kill9();
    // Without the limit, the journal is consistent and takes events again.
    let p = Process::spawn(
        &[
            "serve",
            "--http-addr",
            &addr,
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &quiet_env(),
        port,
    );
    p.wait_ready().await;
    let journal = p.get_json("/api/v1/journal").await;
    assert_eq!(journal["recovery"]["events_lost"], 0, "{journal:#}");
    let response = p.post_events(metric_line(999_999)).await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(p.terminate().await.success());
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc")
}

#[tokio::test]
async fn memory_stays_flat_while_an_outage_backlog_grows_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("brokerstream.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\nhttp_addr = \"127.0.0.1:{port}\"\n\n[journal]\nmemory_bytes = 1048576\nsegment_bytes = 4194304\n\n[bbdo]\nlisten = []\n",
            dir.path().join("data").to_str().unwrap()
        ),
    )
    .unwrap();
    let p = Process::spawn(
        &["serve", "--config", config.to_str().unwrap()],
        &quiet_env(),
        port,
    );
    p.wait_ready().await;
    let down = dir.path().join("down").join("out.log");
    create_output(&p, &file_output("down", &down, &[])).await;
    let output = "x".repeat(1000);
    let mut id = 0;
    let mut post_round = || {
        let body: String = (0..2000)
            .map(|_| {
                id += 1;
                format!("{}\n", host_status(id, 0, &output))
            })
            .collect();
        p.post_events(body)
    };
    for _ in 0..4 {
        assert_eq!(post_round().await.unwrap().status(), 200);
    }
    let warm = rss_kib(p.child.id());
    for _ in 0..16 {
        assert_eq!(post_round().await.unwrap().status(), 200);
    }
    let after = rss_kib(p.child.id());
    let status = p.get_json("/api/v1/outputs/down/status").await;
    assert_eq!(status["queue_depth"], 40_000);
    let journal = p.get_json("/api/v1/journal").await;
    let on_disk = journal["bytes"].as_u64().unwrap();
    eprintln!(
        "outage backlog: {} events, {} MiB on disk; RSS {} MiB after 8000 events, {} MiB after 40000",
        status["queue_depth"],
        on_disk >> 20,
        warm >> 10,
        after >> 10
    );
    assert!(
        on_disk > 32 << 20,
        "the backlog is on disk: {on_disk} bytes"
    );
    // 32000 more events of over 1 KiB each: held in memory they would add
    // far more than this.
    assert!(
        after.saturating_sub(warm) < 24 << 10,
        "memory grew from {warm} KiB to {after} KiB with the backlog"
    );
    assert!(p.terminate().await.success());
}
