//! `[limits]` and the BBDO allow-list: each limit refused with a clear
//! error naming it, next to the same request within the limit.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use brokerstream::bbdo::{self, compression, frame::Deframer, handshake, Version};
use brokerstream::config::{AllowList, BbdoConfig, Config, Limits};
use brokerstream::event::Event;
use bytes::BytesMut;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::*;

const WAIT: Duration = Duration::from_secs(20);
const MIB: usize = 1024 * 1024;

fn config(dir: &Path, limits: Limits) -> Config {
    Config {
        data_dir: dir.to_owned(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        bbdo: BbdoConfig::disabled(),
        limits,
        ..Config::default()
    }
}

async fn error_of(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status(), status);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json"),
        "{:?}",
        response.headers()
    );
    response.json().await.unwrap()
}

/// `n` host statuses of one line each, `size` bytes in all (give or take a
/// line's length).
fn ndjson_of_size(size: usize) -> String {
    let mut body = String::with_capacity(size + 200);
    let mut i = 0;
    while body.len() < size {
        i += 1;
        body.push_str(&host_status(i, 0, "OK").to_string());
        body.push('\n');
    }
    body
}

#[tokio::test]
async fn request_bodies_over_the_limit_get_a_json_413_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        max_body_bytes: 2 * MIB,
        ..Limits::default()
    };
    let server = Server::start_with(config(dir.path(), limits)).await;
    let post = |path: &str, body: Vec<u8>, content_type: &str| {
        server
            .client
            .post(server.url(path))
            .header("content-type", content_type.to_owned())
            .body(body)
            .send()
    };

    let within = ndjson_of_size(2 * MIB - 200);
    assert!(within.len() <= 2 * MIB);
    let response = post(
        "/api/v1/events",
        within.into_bytes(),
        "application/x-ndjson",
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 200);

    let over = ndjson_of_size(2 * MIB + 1);
    let answer = error_of(
        post("/api/v1/events", over.into_bytes(), "application/x-ndjson")
            .await
            .unwrap(),
        413,
    )
    .await;
    assert_eq!(
        answer["error"],
        "the request body is larger than the 2097152-byte limit (limits.max_body_bytes)"
    );

    // The output routes and the form share it.
    let mut big_output = json!({"name": "big", "kind": "file", "path": "x".repeat(2 * MIB)})
        .to_string()
        .into_bytes();
    big_output.truncate(2 * MIB + 10);
    let answer = error_of(
        post("/api/v1/outputs", big_output, "application/json")
            .await
            .unwrap(),
        413,
    )
    .await;
    assert!(answer["error"]
        .as_str()
        .unwrap()
        .contains("limits.max_body_bytes"));
    let boundary = "XyZ";
    let mut form = format!(
        "--{boundary}\r\ncontent-disposition: form-data; name=\"script_file\"; filename=\"big.lua\"\r\n\r\n"
    )
    .into_bytes();
    form.extend(std::iter::repeat_n(b'-', 2 * MIB));
    form.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let answer = error_of(
        post(
            "/outputs/new",
            form,
            &format!("multipart/form-data; boundary={boundary}"),
        )
        .await
        .unwrap(),
        413,
    )
    .await;
    assert!(answer["error"]
        .as_str()
        .unwrap()
        .contains("limits.max_body_bytes"));
    server.stop().await;
}

#[tokio::test]
async fn an_ndjson_line_over_the_limit_refuses_the_request_whole() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        max_ndjson_line_bytes: 1000,
        ..Limits::default()
    };
    let server = Server::start_with(config(dir.path(), limits)).await;
    let path = dir.path().join("all.log");
    server.create_file_output("all", &path, json!({})).await;

    let long = host_status(2, 2, &"x".repeat(1000));
    let (code, answer) = server
        .post_events(&[host_status(1, 0, "OK"), long, host_status(3, 0, "OK")])
        .await;
    assert_eq!(code, 422, "{answer}");
    assert_eq!(answer["accepted"], 0);
    let line = &answer["lines"][0];
    assert_eq!(line["line"], 2, "{answer}");
    let message = line["message"].as_str().unwrap();
    assert!(
        message.contains("longer than the 1000-byte limit (limits.max_ndjson_line_bytes)"),
        "{message}"
    );
    assert_eq!(answer["lines"].as_array().unwrap().len(), 1);

    // Just under the limit, the same request goes through.
    let fits = host_status(2, 2, &"x".repeat(900));
    assert!(fits.to_string().len() <= 1000);
    let (code, answer) = server
        .post_events(&[host_status(1, 0, "OK"), fits, host_status(3, 0, "OK")])
        .await;
    assert_eq!((code, answer), (200, json!({"accepted": 3})));
    let lines = wait_lines(&path, 3).await;
    assert_eq!(lines.len(), 3, "the refused request left nothing behind");
    server.stop().await;
}

fn file_output_body(name: &str, dir: &Path) -> Value {
    json!({
        "name": name,
        "kind": "file",
        "parameters": [{"name": "path", "type": "string", "value": dir.join(name).to_str().unwrap()}],
    })
}

#[tokio::test]
async fn outputs_beyond_the_limit_are_refused_with_a_clear_422() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        max_outputs: 2,
        ..Limits::default()
    };
    let server = Server::start_with(config(dir.path(), limits)).await;
    for name in ["one", "two"] {
        let response = server
            .post_json("/api/v1/outputs", &file_output_body(name, dir.path()))
            .await;
        assert_eq!(response.status(), 201);
    }
    let response = server
        .post_json("/api/v1/outputs", &file_output_body("three", dir.path()))
        .await;
    let answer = error_of(response, 422).await;
    assert_eq!(
        answer["error"],
        "cannot create another output: 2 exist and limits.max_outputs is 2; delete one first"
    );
    assert_eq!(
        server.get("/api/v1/outputs/three").await.status(),
        404,
        "not created"
    );
    // Editing an existing output at the limit is fine.
    let response = server
        .send_json(
            reqwest::Method::PATCH,
            "/api/v1/outputs/two",
            &json!({"enabled": false}),
        )
        .await;
    assert_eq!(response.status(), 200);
    // Deleting one makes room.
    let response = server
        .client
        .delete(server.url("/api/v1/outputs/one"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let response = server
        .post_json("/api/v1/outputs", &file_output_body("three", dir.path()))
        .await;
    assert_eq!(response.status(), 201);
    server.stop().await;
}

#[tokio::test]
async fn parameters_past_their_limits_are_refused_per_field() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        max_parameters: 3,
        max_parameter_name_bytes: 16,
        max_parameter_value_bytes: 100,
        ..Limits::default()
    };
    let server = Server::start_with(config(dir.path(), limits)).await;
    let path = dir.path().join("p.log");
    let path = path.to_str().unwrap();
    let with = |parameters: Value| json!({"name": "p", "kind": "lua", "path": "x.lua", "parameters": parameters});
    let param = |name: &str, value: &str| json!({"name": name, "type": "string", "value": value});

    let too_many = with(json!([
        param("a", "1"),
        param("b", "2"),
        param("c", "3"),
        param("d", "4")
    ]));
    let answer = error_of(server.post_json("/api/v1/outputs", &too_many).await, 422).await;
    assert_eq!(
        answer["fields"]["parameters"],
        "4 parameters, more than the 3 an output may have (limits.max_parameters)"
    );

    let long_name = "n".repeat(17);
    let long_value = "v".repeat(101);
    let answer = error_of(
        server
            .post_json(
                "/api/v1/outputs",
                &with(json!([
                    param("ok", "1"),
                    param(&long_name, "2"),
                    param("long", &long_value)
                ])),
            )
            .await,
        422,
    )
    .await;
    assert_eq!(
        answer["fields"]["parameters[1].name"],
        "is 17 bytes, longer than the 16-byte limit (limits.max_parameter_name_bytes)",
        "{answer:#}"
    );
    assert_eq!(
        answer["fields"]["parameters.long"],
        "the value is 101 bytes, longer than the 100-byte limit (limits.max_parameter_value_bytes)"
    );
    assert_eq!(answer["fields"].as_object().unwrap().len(), 2, "{answer:#}");

    // At the limits exactly: a file output with three parameters.
    let at_limits = json!({
        "name": "p",
        "kind": "file",
        "parameters": [
            param("path", path),
            param("format", "template"),
            param("template", &"t".repeat(100)),
        ],
    });
    let response = server.post_json("/api/v1/outputs", &at_limits).await;
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());

    // The parameters sub-resource is held to the same limits.
    let response = server
        .send_json(
            reqwest::Method::PUT,
            "/api/v1/outputs/p/parameters/template",
            &json!({"type": "string", "value": long_value}),
        )
        .await;
    let answer = error_of(response, 422).await;
    assert!(answer["fields"]["parameters.template"]
        .as_str()
        .unwrap()
        .contains("limits.max_parameter_value_bytes"));
    let response = server
        .send_json(
            reqwest::Method::PUT,
            "/api/v1/outputs/p/parameters/max_buffer_size",
            &json!({"type": "number", "value": "1"}),
        )
        .await;
    let answer = error_of(response, 422).await;
    assert!(answer["fields"]["parameters"]
        .as_str()
        .unwrap()
        .contains("limits.max_parameters"));
    server.stop().await;
}

// ---- BBDO

fn bbdo_config(dir: &Path, max_event: usize, allow: &[&str]) -> Config {
    let mut bbdo = BbdoConfig::disabled();
    bbdo.listen = vec!["127.0.0.1:0".parse().unwrap()];
    bbdo.allow = AllowList::parse(allow).unwrap();
    Config {
        data_dir: dir.to_owned(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        bbdo,
        limits: Limits {
            max_bbdo_event_bytes: max_event,
            ..Limits::default()
        },
        ..Config::default()
    }
}

async fn start_bbdo(dir: &Path, max_event: usize, allow: &[&str]) -> (Server, SocketAddr) {
    let server = Server::start_with(bbdo_config(dir, max_event, allow)).await;
    let addr = server.app.as_ref().unwrap().bbdo_addrs[0];
    (server, addr)
}

fn host_status_v2(host_id: i64, output: &str) -> Event {
    Event::from_json(&json!({"_type": 65550, "host_id": host_id, "output": output})).unwrap()
}

fn encode_all(events: &[Event]) -> BytesMut {
    let mut out = BytesMut::new();
    for e in events {
        bbdo::encode(e, &mut out);
    }
    out
}

/// The broker's side: sends, and reads what brokerstream answers.
struct Peer {
    stream: TcpStream,
    raw: BytesMut,
    deframer: Deframer,
}

impl Peer {
    async fn open(addr: SocketAddr, extensions: &[&str]) -> Peer {
        let mut peer = Peer {
            stream: TcpStream::connect(addr).await.unwrap(),
            raw: BytesMut::new(),
            deframer: Deframer::new(),
        };
        let mut hello = BytesMut::new();
        handshake::encode(Version::V2, extensions, "test-broker", &mut hello);
        peer.stream.write_all(&hello).await.unwrap();
        let welcome = peer.next_packet().await.expect("a welcome");
        handshake::parse(&welcome).unwrap();
        peer
    }

    /// The next packet, `None` once brokerstream closed the connection.
    async fn next_packet(&mut self) -> Option<bbdo::Packet> {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(p) = self.deframer.next(&mut self.raw) {
                return Some(p);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let read = tokio::time::timeout(left, self.stream.read_buf(&mut self.raw))
                .await
                .expect("brokerstream answers in time");
            if !matches!(read, Ok(n) if n > 0) {
                return None;
            }
        }
    }

    /// Sums acks until brokerstream closes the connection.
    async fn acks_until_closed(&mut self) -> u64 {
        let mut acked = 0;
        while let Some(packet) = self.next_packet().await {
            assert_eq!(packet.event_type, handshake::ACK);
            let ack = bbdo::decode(packet.event_type, &packet.payload).unwrap();
            acked += ack.get("acknowledged_events").unwrap().as_i64().unwrap() as u64;
        }
        acked
    }
}

/// The last connection of the first listener once it is closed.
async fn closed_connection(server: &Server) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let inputs = server.get_json("/api/v1/inputs").await;
        let last = inputs["listeners"][0]["connections"]
            .as_array()
            .and_then(|c| c.last().cloned())
            .unwrap_or(Value::Null);
        if last["state"] == "closed" {
            return last;
        }
        assert!(
            Instant::now() < deadline,
            "no closed connection: {inputs:#}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn file_output(server: &Server, path: &Path) {
    server
        .create_file_output(
            "bbdo",
            path,
            json!({"parameters": [
                {"name": "path", "type": "string", "value": path.to_str().unwrap()},
                {"name": "max_buffer_age", "type": "number", "value": "0.05"},
            ]}),
        )
        .await;
}

#[tokio::test]
async fn a_bbdo_event_over_the_limit_closes_the_connection_and_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let (server, addr) = start_bbdo(dir.path(), 256 * 1024, &[]).await;
    let path = dir.path().join("bbdo.log");
    file_output(&server, &path).await;

    let mut peer = Peer::open(addr, &[]).await;
    // Within the limit, split over packets: taken.
    let events = [
        host_status_v2(1, "small"),
        host_status_v2(2, &"y".repeat(200_000)),
        host_status_v2(3, &"z".repeat(300_000)),
        host_status_v2(4, "never read"),
    ];
    // brokerstream may close before it read everything: the write may fail.
    let _ = peer.stream.write_all(&encode_all(&events)).await;
    // What came before the oversized event is held and acknowledged, then
    // the connection closes.
    assert_eq!(peer.acks_until_closed().await, 2);
    let conn = closed_connection(&server).await;
    assert_eq!(conn["errors"]["oversized_events"], 1, "{conn:#}");
    assert_eq!(conn["events_ingested"], 2);
    let message = conn["last_error"]["message"].as_str().unwrap();
    assert!(
        message.contains("larger than the 262144-byte limit (limits.max_bbdo_event_bytes)"),
        "{message}"
    );
    let lines = wait_lines(&path, 2).await;
    assert_eq!(lines.len(), 2);
    assert!(lines[1].contains(&"y".repeat(200_000)));
    server.stop().await;
}

#[tokio::test]
async fn compressed_chunks_cannot_inflate_past_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let (server, addr) = start_bbdo(dir.path(), 256 * 1024, &[]).await;
    let path = dir.path().join("bbdo.log");
    file_output(&server, &path).await;
    let limit = compression::chunk_limit(256 * 1024);

    // A compressed event, then a chunk announcing more than the limit: a
    // zlib bomb of zeros, small on the wire.
    let mut peer = Peer::open(addr, &["COMPRESSION"]).await;
    let mut chunks = BytesMut::new();
    compression::compress(&encode_all(&[host_status_v2(1, "zipped")]), &mut chunks);
    let mut bomb = BytesMut::new();
    compression::compress(&vec![0; limit + 1], &mut bomb);
    assert!(bomb.len() < 64 * 1024);
    chunks.extend_from_slice(&bomb);
    let _ = peer.stream.write_all(&chunks).await;
    let conn = closed_connection(&server).await;
    assert_eq!(conn["errors"]["oversized_events"], 1, "{conn:#}");
    assert_eq!(conn["events_ingested"], 1);
    let message = conn["last_error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!(
            "compressed chunk of {} bytes is larger than the {limit}-byte limit",
            limit + 1
        )),
        "{message}"
    );
    wait_lines(&path, 1).await;

    // A chunk that lies: announces 100 bytes and inflates to megabytes.
    let mut peer = Peer::open(addr, &["COMPRESSION"]).await;
    let mut liar = BytesMut::new();
    compression::compress(&vec![0; 8 * MIB], &mut liar);
    liar[4..8].copy_from_slice(&100u32.to_be_bytes());
    let _ = peer.stream.write_all(&liar).await;
    assert_eq!(peer.acks_until_closed().await, 0);
    let conn = closed_connection(&server).await;
    let message = conn["last_error"]["message"].as_str().unwrap();
    assert!(
        message.contains("corrupted compressed chunk: 100 bytes announced, more found"),
        "{message}"
    );
    server.stop().await;
}

// ---- BBDO allow-list

/// True when brokerstream closed the connection without a byte of answer.
async fn refused(addr: SocketAddr) -> bool {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut hello = BytesMut::new();
    handshake::encode(Version::V2, &[], "test-broker", &mut hello);
    // The close may come first: a failed write is a refusal as well.
    let _ = stream.write_all(&hello).await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(WAIT, stream.read_to_end(&mut answer))
        .await
        .expect("brokerstream closes the connection in time");
    match read {
        Ok(_) => answer.is_empty(),
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    }
}

#[tokio::test]
async fn a_peer_outside_the_allow_list_is_closed_at_once_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let (server, addr) = start_bbdo(dir.path(), 256 * 1024, &["10.0.0.0/8", "::1"]).await;
    assert!(refused(addr).await);
    assert!(refused(addr).await);
    let listener = server.get_json("/api/v1/inputs").await["listeners"][0].clone();
    assert_eq!(listener["connections_refused"], 2, "{listener:#}");
    assert_eq!(listener["connections_accepted"], 0);
    assert_eq!(listener["connections"], json!([]));
    assert_eq!(listener["allow"], json!(["10.0.0.0/8", "::1/128"]));
    assert!(listener["last_refused"]["peer"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    let metrics = server.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(&format!(
            "brokerstream_bbdo_refused_connections_total{{input=\"{addr}\"}} 2"
        )),
        "{metrics}"
    );
    server.stop().await;

    // The same peer, allowed.
    let dir = tempfile::tempdir().unwrap();
    let (server, addr) = start_bbdo(dir.path(), 256 * 1024, &["10.0.0.0/8", "127.0.0.0/8"]).await;
    let mut peer = Peer::open(addr, &[]).await;
    let mut stop = encode_all(&[host_status_v2(1, "allowed")]);
    bbdo::frame::encode(handshake::STOP, &[], &mut stop);
    peer.stream.write_all(&stop).await.unwrap();
    let ack = peer.next_packet().await.expect("an ack");
    assert_eq!(ack.event_type, handshake::ACK);
    let ack = bbdo::decode(ack.event_type, &ack.payload).unwrap();
    assert_eq!(ack.get("acknowledged_events").unwrap().as_i64(), Some(1));
    let listener = server.get_json("/api/v1/inputs").await["listeners"][0].clone();
    assert_eq!(listener["connections_refused"], 0);
    assert_eq!(listener["connections_accepted"], 1);
    server.stop().await;
}

#[tokio::test]
async fn the_allow_list_flag_of_the_binary_and_its_errors() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let bbdo_port = free_port();
    let bbdo_addr = format!("127.0.0.1:{bbdo_port}");
    let p = Process::spawn(
        &[
            "serve",
            "--http-addr",
            &format!("127.0.0.1:{port}"),
            "--bbdo-addr",
            &bbdo_addr,
            "--bbdo-allow",
            "192.0.2.0/24, ::1",
        ],
        &[("BROKERSTREAM_DATA_DIR", dir.path().to_str().unwrap())],
        port,
    );
    p.wait_ready().await;
    assert!(refused(bbdo_addr.parse().unwrap()).await);
    let inputs = p.get_json("/api/v1/inputs").await;
    assert_eq!(inputs["listeners"][0]["connections_refused"], 1);
    assert!(p.terminate().await.success());

    for (args, env, expected) in [
        (
            vec!["--bbdo-allow", "10.0.0.0/8,nope"],
            vec![],
            "`nope` is not an IP address or network",
        ),
        (
            vec![],
            vec![("BROKERSTREAM_BBDO_ALLOW", "10.0.0.300")],
            "`10.0.0.300` is not an IP address or network",
        ),
    ] {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_brokerstream"));
        command
            .args(["serve", "--bbdo-addr", "none", "--http-addr", "127.0.0.1:0"])
            .args(&args)
            .env("BROKERSTREAM_DATA_DIR", dir.path());
        for (k, v) in env {
            command.env(k, v);
        }
        let output = command.output().unwrap();
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{stderr}");
    }

    let config = dir.path().join("bad.toml");
    std::fs::write(
        &config,
        "[bbdo]\nlisten = []\nallow = [\"10.0.0.0/8\", \"*\"]\n",
    )
    .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_brokerstream"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .env("BROKERSTREAM_DATA_DIR", dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("bbdo.allow: `*` is not an IP address or network"),
        "{stderr}"
    );
}

#[tokio::test]
async fn ndjson_refuses_nul_and_duplicate_keys_and_takes_a_byte_order_mark() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(config(dir.path(), Limits::default())).await;
    let post = |body: Vec<u8>| {
        server
            .client
            .post(server.url("/api/v1/events"))
            .header("content-type", "application/x-ndjson")
            .body(body)
            .send()
    };
    let good = host_status(1, 0, "OK").to_string();
    let nul = format!(
        "{good}\n{}\n",
        r#"{"_type": 65550, "host_id": 2, "output": "a\u0000b"}"#
    );
    let answer = error_of(post(nul.into_bytes()).await.unwrap(), 422).await;
    assert_eq!(answer["accepted"], 0);
    assert_eq!(answer["lines"][0]["line"], 2, "{answer}");
    assert!(
        answer["lines"][0]["message"]
            .as_str()
            .unwrap()
            .contains("\\u0000 (NUL)"),
        "{answer}"
    );
    let twice = format!("{}\n", r#"{"_type": 65550, "host_id": 2, "host_id": 3}"#);
    let answer = error_of(post(twice.into_bytes()).await.unwrap(), 422).await;
    assert_eq!(answer["lines"][0]["line"], 1, "{answer}");
    assert_eq!(
        answer["lines"][0]["message"], "duplicate key `host_id`",
        "{answer}"
    );
    let mut bom = b"\xEF\xBB\xBF".to_vec();
    bom.extend_from_slice(format!("{good}\n{good}\n").as_bytes());
    let response = post(bom).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"accepted": 2})
    );
    server.stop().await;
}

fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .expect("VmHWM")
        * 1024
}

#[tokio::test]
async fn large_ndjson_bodies_are_read_one_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let process = Process::serve_with_config(
        dir.path(),
        "[limits]\nmax_concurrent_ingest = 1\n",
        &[
            ("BROKERSTREAM_FSYNC", "never"),
            ("BROKERSTREAM_LOG", "warn"),
        ],
    )
    .await;
    let pid = process.child.id();
    let body = ndjson_of_size(6 * MIB);
    let idle = peak_rss(pid);
    let response = process.post_events(body.clone()).await.unwrap();
    assert_eq!(response.status(), 200);
    let one = peak_rss(pid);
    // Four at once: each holds its events until the journal has them all
    // (a request is taken whole), so without a bound four cost four times
    // one. With one permit, they are read one after the other and reuse
    // the same memory.
    let answers =
        futures::future::join_all((0..4).map(|_| process.post_events(body.clone()))).await;
    for answer in answers {
        assert_eq!(answer.unwrap().status(), 200);
    }
    let four = peak_rss(pid);
    let cost = one.saturating_sub(idle);
    eprintln!(
        "peak RSS: idle {} MiB, one 6 MiB body {} MiB, four at once {} MiB",
        idle >> 20,
        one >> 20,
        four >> 20
    );
    assert!(
        four < one + cost / 2,
        "four bodies at once peaked at {} MiB, one at {} MiB (idle {} MiB)",
        four >> 20,
        one >> 20,
        idle >> 20
    );
    process.terminate().await;
}
