//! BBDO over real TCP on loopback: the cbd 21.10 capture decoded and
//! replayed, BBDO 3 sessions, brokerstream dialling a broker, bad input.

use brokerstream::bbdo::{self, frame::Deframer};
use bytes::BytesMut;
use serde_json::Value;

const CAPTURE: &[u8] = include_bytes!("data/cbd-21.10/capture-bbdo2.bin");
const API_V1: &str = include_str!("data/cbd-21.10/events-api-v1.jsonl");

fn capture_packets() -> Vec<bbdo::Packet> {
    let mut buf = BytesMut::from(CAPTURE);
    let mut deframer = Deframer::new();
    let packets: Vec<_> = std::iter::from_fn(|| deframer.next(&mut buf)).collect();
    assert!(buf.is_empty(), "{} bytes left over", buf.len());
    assert_eq!(deframer.crc_errors, 0);
    packets
}

#[test]
fn golden_capture_decodes_to_the_lua_api_v1_events_and_back() {
    let packets = capture_packets();
    assert_eq!(packets.len(), 955);
    assert_eq!(packets[0].event_type.0, 131073, "version_response first");
    assert_eq!(packets[954].event_type.0, 131075, "stop last");
    let lines: Vec<&str> = API_V1.lines().collect();
    assert_eq!(lines.len(), 953);
    for (i, (packet, line)) in packets[1..954].iter().zip(&lines).enumerate() {
        assert_eq!((packet.source, packet.destination), (21, 0));
        let event = bbdo::decode(packet.event_type, &packet.payload)
            .unwrap_or_else(|e| panic!("event {}: {e}", i + 1));
        let expected: Value = serde_json::from_str(line).unwrap();
        let mut got = event.to_json();
        if got["_type"] == 65538 && got["service_id"] == 0 && expected.get("service_id").is_none() {
            // The one known difference (docs/bbdo.md §1.5): in 21.10,
            // comment.service_id was nil on zero; since then (and in the
            // catalogue) a host comment shows service_id 0.
            got.as_object_mut().unwrap().remove("service_id");
        }
        assert_eq!(got, expected, "event {}", i + 1);
        assert_eq!(
            bbdo::encode_payload(&event),
            &packet.payload[..],
            "event {} re-encoded",
            i + 1
        );
    }
}

// ---- over TCP

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use brokerstream::bbdo::compression;
use brokerstream::bbdo::handshake::{self, Hello, Version};
use brokerstream::config::{BbdoConfig, Config};
use brokerstream::event::Event;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::*;

const WAIT: Duration = Duration::from_secs(20);

fn bbdo_config(dir: &Path, ack_limit: u32) -> Config {
    let mut bbdo = BbdoConfig::disabled();
    bbdo.listen = vec!["127.0.0.1:0".parse().unwrap()];
    bbdo.session.ack_limit = ack_limit;
    Config {
        data_dir: dir.to_owned(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        bbdo,
        ..Config::default()
    }
}

async fn start(dir: &Path, ack_limit: u32) -> (Server, SocketAddr) {
    let server = Server::start_with(bbdo_config(dir, ack_limit)).await;
    let addr = server.app.as_ref().unwrap().bbdo_addrs[0];
    (server, addr)
}

/// A file output flushing often, taking every event.
async fn file_output(server: &Server, name: &str, path: &Path) {
    server
        .create_file_output(
            name,
            path,
            json!({"parameters": [
                {"name": "path", "type": "string", "value": path.to_str().unwrap()},
                {"name": "max_buffer_size", "type": "number", "value": "1000"},
                {"name": "max_buffer_age", "type": "number", "value": "0.05"},
            ]}),
        )
        .await;
}

fn event(json: Value) -> Event {
    Event::from_json(&json).unwrap()
}

fn encode_all(events: &[Event]) -> BytesMut {
    let mut out = BytesMut::new();
    for e in events {
        bbdo::encode(e, &mut out);
    }
    out
}

fn stop_packet(protobuf: bool) -> BytesMut {
    let mut out = BytesMut::new();
    if protobuf {
        bbdo::encode(
            &Event::named("pb_stop").unwrap().with("poller_id", 1),
            &mut out,
        );
    } else {
        bbdo::frame::encode(handshake::STOP, &[], &mut out);
    }
    out
}

/// A Centreon Broker as seen from brokerstream: the test side of a BBDO
/// connection.
struct Peer {
    stream: TcpStream,
    raw: BytesMut,
    plain: BytesMut,
    /// brokerstream's data is compressed.
    compressed: bool,
    deframer: Deframer,
}

impl Peer {
    async fn connect(addr: SocketAddr) -> Peer {
        Peer::from(TcpStream::connect(addr).await.unwrap())
    }

    fn from(stream: TcpStream) -> Peer {
        Peer {
            stream,
            raw: BytesMut::new(),
            plain: BytesMut::new(),
            compressed: false,
            deframer: Deframer::new(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    async fn send_hello(&mut self, version: Version, extensions: &[&str]) {
        let mut out = BytesMut::new();
        handshake::encode(version, extensions, "test-broker", &mut out);
        self.send(&out).await;
    }

    /// The next packet from brokerstream; `None` once it closed.
    async fn next_packet(&mut self) -> Option<bbdo::Packet> {
        let deadline = Instant::now() + WAIT;
        loop {
            if self.compressed {
                compression::decompress(&mut self.raw, &mut self.plain).unwrap();
                if let Some(p) = self.deframer.next(&mut self.plain) {
                    return Some(p);
                }
            } else if let Some(p) = self.deframer.next(&mut self.raw) {
                return Some(p);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let read = tokio::time::timeout(left, self.stream.read_buf(&mut self.raw))
                .await
                .expect("brokerstream answers in time");
            match read {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    async fn read_hello(&mut self) -> Hello {
        let packet = self.next_packet().await.expect("a welcome");
        handshake::parse(&packet).unwrap()
    }

    /// Reads acknowledgements until they add up to `total`; returns each.
    async fn acks_until(&mut self, total: u64) -> Vec<u64> {
        let mut acks = Vec::new();
        while acks.iter().sum::<u64>() < total {
            acks.push(self.next_ack().await);
        }
        assert_eq!(acks.iter().sum::<u64>(), total, "acks {acks:?}");
        acks
    }

    async fn next_ack(&mut self) -> u64 {
        let packet = self.next_packet().await.expect("an ack, not a close");
        assert!(
            packet.event_type == handshake::ACK || packet.event_type == handshake::PB_ACK,
            "expected an ack, got {}",
            packet.event_type
        );
        let ack = bbdo::decode(packet.event_type, &packet.payload).unwrap();
        ack.get("acknowledged_events").unwrap().as_i64().unwrap() as u64
    }

    /// True once brokerstream closed the connection, after acks if any;
    /// false if it sent something else.
    async fn closed(&mut self) -> bool {
        while let Some(packet) = self.next_packet().await {
            if packet.event_type != handshake::ACK && packet.event_type != handshake::PB_ACK {
                return false;
            }
        }
        true
    }
}

async fn inputs(server: &Server) -> Value {
    server.get_json("/api/v1/inputs").await
}

/// Waits until the first listener's last connection satisfies `ready`.
async fn wait_connection(server: &Server, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let all = inputs(server).await;
        let last = all["listeners"][0]["connections"]
            .as_array()
            .and_then(|c| c.last().cloned())
            .unwrap_or(Value::Null);
        if ready(&last) {
            return last;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {all:#}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn json_lines(lines: &[String]) -> Vec<Value> {
    lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn the_capture_replayed_over_tcp_reaches_a_file_output_and_is_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let (server, addr) = start(dir.path(), 100).await;
    let path = dir.path().join("all.log");
    file_output(&server, "all", &path).await;

    let mut peer = Peer::connect(addr).await;
    peer.send(CAPTURE).await;
    let hello = peer.read_hello().await;
    assert_eq!(hello.version, Version::V2);
    assert!(!hello.protobuf);
    let acks = peer.acks_until(953).await;
    assert!(
        acks.len() >= 2,
        "ack_limit 100 gives several acks: {acks:?}"
    );
    assert!(acks[..acks.len() - 1].iter().all(|&n| n >= 100), "{acks:?}");
    // A second stop is still answered, with nothing left to acknowledge.
    peer.send(&stop_packet(false)).await;
    assert_eq!(peer.next_ack().await, 0);

    let lines = json_lines(&wait_lines(&path, 953).await);
    for (i, (got, line)) in lines.iter().zip(API_V1.lines()).enumerate() {
        let mut got = got.clone();
        let expected: Value = serde_json::from_str(line).unwrap();
        if got["_type"] == 65538 && expected.get("service_id").is_none() {
            got.as_object_mut().unwrap().remove("service_id");
        }
        assert_eq!(got, expected, "line {}", i + 1);
    }
    let conn = wait_connection(&server, "all acknowledged", |c| {
        c["events_acknowledged"] == 953
    })
    .await;
    assert_eq!(conn["version"], "2.0.0");
    assert_eq!(conn["events_received"], 953);
    assert_eq!(conn["events_ingested"], 953);
    assert_eq!(conn["errors"]["crc"], 0);
    assert!(conn["last_event_at"].is_string());
    drop(peer);
    wait_connection(&server, "closed", |c| c["state"] == "closed").await;
    server.stop().await;
}

fn service_status_pb(host_id: i64, service_id: i64, state: i64) -> Event {
    event(
        json!({"_type": 65565, "host_id": host_id, "service_id": service_id,
        "state": state, "output": format!("state {state}"), "last_check": 1732000000,
        "latency": 0.25, "checked": true}),
    )
}

fn metric_pb(host_id: i64, service_id: i64, value: f64) -> Event {
    event(
        json!({"_type": 196617, "host_id": host_id, "service_id": service_id,
        "metric_id": 12, "name": "cpu", "value": value, "time": 1732000000, "value_type": 0}),
    )
}

#[tokio::test]
async fn a_bbdo3_session_delivers_protobuf_events() {
    let dir = tempfile::tempdir().unwrap();
    let (server, addr) = start(dir.path(), 1000).await;
    let path = dir.path().join("pb.log");
    file_output(&server, "pb", &path).await;

    let mut peer = Peer::connect(addr).await;
    peer.send_hello(Version::V3, &[]).await;
    let hello = peer.read_hello().await;
    assert!(hello.protobuf, "answered with Welcome");
    assert_eq!(hello.version, Version::V3);
    let mut events = Vec::new();
    for i in 1..=10 {
        events.push(service_status_pb(i, 100 + i, i % 4));
        events.push(metric_pb(i, 100 + i, i as f64 + 0.5));
    }
    // A legacy event on the same connection.
    events.push(event(
        json!({"_type": 65548, "host_id": 3, "name": "legacy"}),
    ));
    peer.send(&encode_all(&events)).await;
    peer.send(&stop_packet(true)).await;
    assert_eq!(peer.acks_until(21).await, [21], "one final ack");

    let lines = json_lines(&wait_lines(&path, 21).await);
    for (line, event) in lines.iter().zip(&events) {
        // What travelled: proto3 fields absent from the wire take their
        // defaults.
        let sent = bbdo::decode(event.event_type(), &bbdo::encode_payload(event)).unwrap();
        assert_eq!(line, &sent.to_json());
    }
    assert_eq!(lines[0]["long_output"], "");
    assert_eq!(lines[0]["output"], "state 1");
    assert_eq!(lines[1]["value"], json!(1.5));
    let conn = wait_connection(&server, "acked", |c| c["events_acknowledged"] == 21).await;
    assert_eq!(conn["version"], "3.0.1");
    assert_eq!(conn["broker_name"], "test-broker");
    server.stop().await;
}

/// The nested BBDO 3 messages of tests/pb_views.rs, written by its own
/// protobuf writer, through a real session to a file output.
#[tokio::test]
async fn nested_bbdo3_messages_reach_a_file_output_with_their_field_names() {
    let dir = tempfile::tempdir().unwrap();
    let (server, addr) = start(dir.path(), 1000).await;
    let path = dir.path().join("nested.log");
    file_output(&server, "nested", &path).await;

    // Category 2 (remove_poller) is the protocol's own: a session does not
    // hand it on.
    let samples: Vec<_> = crate::pb_views::samples()
        .into_iter()
        .filter(|s| s.event_type.category() != 2)
        .collect();
    let mut peer = Peer::connect(addr).await;
    peer.send_hello(Version::V3, &[]).await;
    peer.read_hello().await;
    let mut wire = BytesMut::new();
    for sample in &samples {
        bbdo::frame::encode(sample.event_type, &sample.payload, &mut wire);
    }
    peer.send(&wire).await;
    peer.send(&stop_packet(true)).await;
    assert_eq!(
        peer.acks_until(samples.len() as u64).await,
        [samples.len() as u64]
    );

    let lines = json_lines(&wait_lines(&path, samples.len()).await);
    for (line, sample) in lines.iter().zip(&samples) {
        for (key, expected) in sample.json.as_object().unwrap() {
            assert_eq!(&line[key], expected, "{key} in {line}");
        }
    }
    // Comment: the header Centreon never sets.
    assert_eq!(lines[5]["header"], json!({"conf_version": 0}));
    server.stop().await;
}

/// A Centreon Broker output in listen mode, for brokerstream to dial.
async fn broker_listener() -> (tokio::net::TcpListener, SocketAddr) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

async fn accept(listener: &tokio::net::TcpListener) -> Peer {
    let (stream, _) = tokio::time::timeout(WAIT, listener.accept())
        .await
        .expect("brokerstream dials in time")
        .unwrap();
    Peer::from(stream)
}

#[tokio::test]
async fn brokerstream_dials_a_listening_broker_and_dials_again_after_a_close() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, broker_addr) = broker_listener().await;
    let mut config = bbdo_config(dir.path(), 1000);
    config.bbdo.listen.clear();
    config.bbdo.connectors = vec![brokerstream::bbdo::connector::ConnectorConfig {
        address: broker_addr.to_string(),
        version: Version::V3,
        tls: Default::default(),
    }];
    let server = Server::start_with(config).await;
    let path = dir.path().join("dialled.log");
    file_output(&server, "dialled", &path).await;

    for round in 0..2i64 {
        let mut peer = accept(&broker).await;
        // The connecting side speaks first.
        let hello = peer.read_hello().await;
        assert_eq!(hello.version, Version::V3);
        assert!(hello.protobuf);
        assert!(hello.offers("COMPRESSION"));
        peer.send_hello(Version::V3, &[]).await;
        let events: Vec<Event> = (1..=5).map(|i| metric_pb(round, i, i as f64)).collect();
        peer.send(&encode_all(&events)).await;
        peer.send(&stop_packet(true)).await;
        assert_eq!(peer.acks_until(5).await, [5]);
        // The broker goes away; brokerstream must come back.
        drop(peer);
    }
    let lines = json_lines(&wait_lines(&path, 10).await);
    assert_eq!(lines[9]["service_id"], 5);
    assert_eq!(lines[9]["host_id"], 1);

    let all = inputs(&server).await;
    let connector = &all["connectors"][0];
    assert_eq!(connector["address"], broker_addr.to_string());
    assert!(connector["attempts"].as_u64().unwrap() >= 2, "{all:#}");
    let connections = connector["connections"].as_array().unwrap();
    assert!(connections.len() >= 2, "{all:#}");
    assert_eq!(connections[0]["events_acknowledged"], 5);
    assert_eq!(connections[0]["state"], "closed");
    server.stop().await;
}

#[tokio::test]
async fn the_connecting_side_refuses_a_peer_of_another_major_version() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, broker_addr) = broker_listener().await;
    let mut config = bbdo_config(dir.path(), 1000);
    config.bbdo.listen.clear();
    config.bbdo.connectors = vec![brokerstream::bbdo::connector::ConnectorConfig {
        address: broker_addr.to_string(),
        version: Version::V3,
        tls: Default::default(),
    }];
    let server = Server::start_with(config).await;
    let mut peer = accept(&broker).await;
    peer.read_hello().await;
    peer.send_hello(Version::V2, &[]).await;
    assert!(peer.closed().await, "brokerstream closes the connection");
    let deadline = Instant::now() + WAIT;
    loop {
        let all = inputs(&server).await;
        let error = all["connectors"][0]["connections"][0]["last_error"]["message"].clone();
        if let Some(message) = error.as_str() {
            assert!(
                message.contains("peer is using protocol version 2.0.0 whereas we're using protocol version 3.0.1"),
                "{message}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "{all:#}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.stop().await;
}

// ---- bad input

fn host_status_v2(host_id: i64, output: &str) -> Event {
    event(
        json!({"_type": 65550, "host_id": host_id, "state": 0, "output": output,
        "last_check": 1732000000, "check_interval": 5.0}),
    )
}

/// A BBDO 2 session opened: hello sent and answered.
async fn open_v2(addr: SocketAddr, extensions: &[&str]) -> (Peer, Hello) {
    let mut peer = Peer::connect(addr).await;
    peer.send_hello(Version::V2, extensions).await;
    let hello = peer.read_hello().await;
    (peer, hello)
}

fn host_ids(lines: &[Value]) -> Vec<i64> {
    lines
        .iter()
        .map(|l| l["host_id"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn a_bad_crc_in_the_middle_is_skipped_counted_and_later_events_arrive() {
    let dir = tempfile::tempdir().unwrap();
    let (server, addr) = start(dir.path(), 1000).await;
    let path = dir.path().join("crc.log");
    file_output(&server, "crc", &path).await;
    let (mut peer, _) = open_v2(addr, &[]).await;
    let mut bytes = encode_all(&[host_status_v2(1, "one")]);
    let corrupt_at = bytes.len();
    bytes.extend_from_slice(&encode_all(&[host_status_v2(2, "two")]));
    bytes[corrupt_at + 5] ^= 0x40; // the type of the second event
    bytes.extend_from_slice(&encode_all(&[host_status_v2(3, "three")]));
    peer.send(&bytes).await;
    peer.send(&stop_packet(false)).await;
    // The corrupted event is lost to resynchronisation: 2 acknowledged.
    assert_eq!(peer.acks_until(2).await, [2]);
    let lines = json_lines(&wait_lines(&path, 2).await);
    assert_eq!(host_ids(&lines), [1, 3]);
    let conn = inputs(&server).await["listeners"][0]["connections"][0].clone();
    // One corrupt header, however many bytes it took to find the next.
    assert_eq!(conn["errors"]["crc"], 1, "{conn:#}");
    assert!(
        conn["errors"]["bytes_skipped"].as_u64().unwrap() >= 16,
        "{conn:#}"
    );
    assert!(conn["last_error"]["message"]
        .as_str()
        .unwrap()
        .contains("invalid CRC"));
    assert_eq!(conn["state"], "running");
    server.stop().await;
}

#[tokio::test]
async fn a_connection_closed_mid_event_keeps_the_whole_events_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let (server, addr) = start(dir.path(), 1000).await;
    let path = dir.path().join("cut.log");
    file_output(&server, "cut", &path).await;
    let (mut peer, _) = open_v2(addr, &[]).await;
    let mut bytes = encode_all(&[host_status_v2(1, "whole")]);
    let second = encode_all(&[host_status_v2(2, "cut short")]);
    bytes.extend_from_slice(&second[..second.len() - 10]);
    peer.send(&bytes).await;
    drop(peer);
    assert_eq!(host_ids(&json_lines(&wait_lines(&path, 1).await)), [1]);
    let conn = wait_connection(&server, "closed", |c| c["state"] == "closed").await;
    assert!(
        conn["last_error"]["message"]
            .as_str()
            .unwrap()
            .contains("closed the connection in the middle of an event"),
        "{conn:#}"
    );
    assert_eq!(conn["events_received"], 1);
    server.stop().await;
}

#[tokio::test]
async fn unknown_events_and_unparsable_fields_are_dropped_counted_and_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let (server, addr) = start(dir.path(), 1000).await;
    let path = dir.path().join("odd.log");
    file_output(&server, "odd", &path).await;
    let (mut peer, _) = open_v2(addr, &[]).await;
    let mut bytes = encode_all(&[host_status_v2(1, "before")]);
    // An event type no Centreon version has.
    bbdo::frame::encode(
        brokerstream::event::EventType::new(1, 999),
        b"whatever",
        &mut bytes,
    );
    // A double that is not a number (same length, so the header holds).
    let mut payload = bbdo::encode_payload(&host_status_v2(2, "bad double"));
    let at = payload.windows(9).position(|w| w == b"5.000000\0").unwrap();
    payload[at..at + 8].copy_from_slice(b"5.0x0000");
    bbdo::frame::encode(
        brokerstream::event::EventType::new(1, 14),
        &payload,
        &mut bytes,
    );
    // A payload cut short: the fields run out.
    bbdo::frame::encode(
        brokerstream::event::EventType::new(1, 14),
        &payload[..10],
        &mut bytes,
    );
    bytes.extend_from_slice(&encode_all(&[host_status_v2(3, "after")]));
    peer.send(&bytes).await;
    peer.send(&stop_packet(false)).await;
    // Every event read is acknowledged, the dropped ones included.
    assert_eq!(peer.acks_until(5).await, [5]);
    let lines = json_lines(&wait_lines(&path, 2).await);
    assert_eq!(host_ids(&lines), [1, 3]);
    let conn = inputs(&server).await["listeners"][0]["connections"][0].clone();
    assert_eq!(conn["errors"]["unknown_events"], 1, "{conn:#}");
    assert_eq!(conn["errors"]["decode"], 2, "{conn:#}");
    assert_eq!(conn["events_received"], 5);
    assert_eq!(conn["events_ingested"], 2);
    assert_eq!(conn["events_acknowledged"], 5);
    assert_eq!(conn["state"], "running");
    server.stop().await;
}

#[tokio::test]
async fn a_peer_of_another_major_version_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let (server, addr) = start(dir.path(), 1000).await;
    let mut peer = Peer::connect(addr).await;
    peer.send_hello(Version::new(4, 0, 0), &[]).await;
    assert!(peer.closed().await, "closed without an answer");
    let conn = wait_connection(&server, "closed", |c| c["state"] == "closed").await;
    let message = conn["last_error"]["message"].as_str().unwrap();
    assert!(
        message.contains("protocol version 4.0.0") && message.contains("closing the connection"),
        "{message}"
    );
    // The listener still takes the next peer.
    let (_peer, hello) = open_v2(addr, &[]).await;
    assert_eq!(hello.version, Version::V2);
    server.stop().await;
}

#[tokio::test]
async fn compression_really_applied_and_agreed_but_not_applied_as_cbd_21_10_does() {
    let dir = tempfile::tempdir().unwrap();
    let (server, addr) = start(dir.path(), 1000).await;
    let path = dir.path().join("zlib.log");
    file_output(&server, "zlib", &path).await;

    // A peer that compresses what it sends, in two chunks.
    let (mut peer, hello) = open_v2(addr, &["COMPRESSION"]).await;
    assert!(hello.offers("COMPRESSION"));
    let mut chunks = BytesMut::new();
    compression::compress(&encode_all(&[host_status_v2(1, "zipped")]), &mut chunks);
    let mut tail = encode_all(&[host_status_v2(2, "zipped too")]);
    tail.extend_from_slice(&stop_packet(false));
    compression::compress(&tail, &mut chunks);
    peer.send(&chunks).await;
    // Acks come back compressed to a peer that compresses.
    peer.compressed = true;
    assert_eq!(peer.acks_until(2).await, [2]);
    let conn = wait_connection(&server, "acked", |c| c["events_acknowledged"] == 2).await;
    assert_eq!(conn["compressed"], true);
    assert_eq!(conn["extensions"], json!(["COMPRESSION"]));

    // A 21.10 broker: agrees on COMPRESSION, then sends plain BBDO.
    let (mut peer, _) = open_v2(addr, &["COMPRESSION"]).await;
    let mut plain = encode_all(&[host_status_v2(3, "plain")]);
    plain.extend_from_slice(&stop_packet(false));
    peer.send(&plain).await;
    assert_eq!(peer.acks_until(1).await, [1], "plain acks");
    let lines = json_lines(&wait_lines(&path, 3).await);
    assert_eq!(host_ids(&lines), [1, 2, 3]);
    assert_eq!(lines[1]["output"], "zipped too");
    let conn = wait_connection(&server, "acked", |c| c["events_acknowledged"] == 1).await;
    assert_eq!(conn["compressed"], false);
    server.stop().await;
}

#[tokio::test]
async fn events_larger_than_a_packet_are_split_and_joined() {
    let dir = tempfile::tempdir().unwrap();
    let (server, addr) = start(dir.path(), 1000).await;
    let path = dir.path().join("big.log");
    file_output(&server, "big", &path).await;
    let (mut peer, _) = open_v2(addr, &[]).await;
    let big = "x".repeat(200_000);
    let events = [
        host_status_v2(1, &big),
        host_status_v2(2, "small"),
        event(json!({"_type": 65565, "host_id": 3, "output": big})),
    ];
    let bytes = encode_all(&events);
    assert!(bytes.len() > 2 * 200_000);
    peer.send(&bytes).await;
    peer.send(&stop_packet(false)).await;
    assert_eq!(peer.acks_until(3).await, [3]);
    let lines = json_lines(&wait_lines(&path, 3).await);
    assert_eq!(host_ids(&lines), [1, 2, 3]);
    assert_eq!(lines[0]["output"].as_str().unwrap().len(), 200_000);
    assert_eq!(lines[2]["output"].as_str().unwrap().len(), 200_000);
    server.stop().await;
}

#[tokio::test]
async fn silent_peers_and_peers_requiring_tls_are_closed_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = bbdo_config(dir.path(), 1000);
    config.bbdo.session.handshake_timeout = Duration::from_millis(500);
    let server = Server::start_with(config).await;
    let addr = server.app.as_ref().unwrap().bbdo_addrs[0];

    let mut silent = Peer::connect(addr).await;
    assert!(silent.closed().await);
    let conn = wait_connection(&server, "closed", |c| c["state"] == "closed").await;
    assert!(conn["last_error"]["message"]
        .as_str()
        .unwrap()
        .contains("no welcome from the peer"));

    // Offers TLS while it is off here, and (requiring it) closes once it
    // sees we do not list it.
    let (peer, hello) = open_v2(addr, &["TLS", "COMPRESSION"]).await;
    assert!(!hello.offers("TLS"));
    drop(peer);
    let conn = wait_connection(&server, "closed", |c| {
        c["state"] == "closed" && c["last_error"].is_object()
    })
    .await;
    assert!(conn["last_error"]["message"]
        .as_str()
        .unwrap()
        .contains("TLS, which is off here (bbdo tls = no)"));

    // Starts a TLS handshake anyway.
    let (mut peer, _) = open_v2(addr, &["TLS"]).await;
    peer.send(&[0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00]).await;
    assert!(peer.closed().await);
    let conn = wait_connection(&server, "closed", |c| {
        c["state"] == "closed" && c["last_error"].is_object()
    })
    .await;
    assert!(conn["last_error"]["message"]
        .as_str()
        .unwrap()
        .contains("started a TLS handshake"));
    server.stop().await;
}

#[tokio::test]
async fn a_full_journal_pauses_reading_and_acks_wait_for_room() {
    let dir = tempfile::tempdir().unwrap();
    // Every event held is acknowledged at once.
    let mut config = bbdo_config(dir.path(), 1);
    let events: Vec<Event> = (1..=100).map(|i| host_status_v2(i, "OK")).collect();
    // Room in the journal for exactly the first 30 events, as they are
    // once decoded from the wire.
    config.journal.max_bytes = events[..30]
        .iter()
        .map(|event| {
            let wire = bbdo::encode_payload(event);
            let decoded = bbdo::decode(event.event_type(), &wire).unwrap();
            let mut payload = Vec::new();
            brokerstream::journal::record::encode_event(&decoded, &mut payload);
            (payload.len() + brokerstream::journal::record::HEADER_LEN) as u64
        })
        .sum();
    let server = Server::start_with(config).await;
    let addr = server.app.as_ref().unwrap().bbdo_addrs[0];
    // An output that cannot write keeps every event in the journal.
    let blocked = dir.path().join("missing-dir").join("out.log");
    file_output(&server, "stuck", &blocked).await;
    let (mut peer, _) = open_v2(addr, &[]).await;
    peer.send(&encode_all(&events)).await;
    // Only what the journal holds is acknowledged.
    assert_eq!(peer.acks_until(30).await.iter().sum::<u64>(), 30);
    let conn = wait_connection(&server, "paused", |c| c["state"] == "paused").await;
    assert!(conn["errors"]["ingest_refusals"].as_u64().unwrap() > 0);
    assert_eq!(conn["events_acknowledged"], 30);
    // The listener's own counters say the same.
    let listener = inputs(&server).await["sources"][1].clone();
    assert_eq!(listener["kind"], "bbdo_listener");
    assert_eq!(listener["events_accepted"], 30);
    assert!(
        listener["events_refused"].as_u64().unwrap() > 0,
        "{listener}"
    );

    // The output goes away: the journal has room, the rest comes in.
    let response = server
        .client
        .delete(server.url("/api/v1/outputs/stuck"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    peer.acks_until(70).await;
    peer.send(&stop_packet(false)).await;
    assert_eq!(peer.next_ack().await, 0);
    let conn = wait_connection(&server, "running", |c| c["state"] == "running").await;
    assert_eq!(conn["events_ingested"], 100);
    server.stop().await;
}

#[tokio::test]
async fn pending_events_are_acknowledged_on_a_timer_below_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = bbdo_config(dir.path(), 1000);
    config.bbdo.session.ack_interval = Duration::from_millis(50);
    let server = Server::start_with(config).await;
    let addr = server.app.as_ref().unwrap().bbdo_addrs[0];
    let (mut peer, _) = open_v2(addr, &[]).await;
    peer.send(&encode_all(&[
        host_status_v2(1, "a"),
        host_status_v2(2, "b"),
    ]))
    .await;
    // No stop: the timer alone sends the ack.
    assert_eq!(peer.acks_until(2).await, [2]);
    peer.send(&encode_all(&[host_status_v2(3, "c")])).await;
    assert_eq!(peer.acks_until(1).await, [1]);
    // The overview shows the open connection with what it acknowledged.
    let page = server.get("/").await.text().await.unwrap();
    let row = page
        .split("<tr class=\"bbdo\">")
        .nth(1)
        .unwrap_or_else(|| panic!("no BBDO row in the overview: {page}"));
    assert!(row.contains("<td class=\"num\">3</td>"), "{row}");
    // It sits under its listener's row, which counts the same 3 events.
    let listener = page
        .split("<tr class=\"source\">")
        .find(|r| r.contains(&format!("BBDO listener <code>{addr}</code>")))
        .unwrap_or_else(|| panic!("no listener row in the overview: {page}"));
    assert!(listener.contains("<tr class=\"bbdo\">"), "{listener}");
    server.stop().await;
}

#[tokio::test]
async fn a_peer_that_stalls_in_the_middle_of_an_event_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = bbdo_config(dir.path(), 1000);
    config.bbdo.session.stall_timeout = Duration::from_millis(100);
    let server = Server::start_with(config).await;
    let addr = server.app.as_ref().unwrap().bbdo_addrs[0];
    let (mut peer, _) = open_v2(addr, &[]).await;
    let whole = encode_all(&[host_status_v2(1, "whole")]);
    let half = encode_all(&[host_status_v2(2, "half")]);
    peer.send(&whole).await;
    peer.send(&half[..20]).await;
    // Silence between events is fine; in the middle of one it is not. What
    // the journal holds is acknowledged before the close.
    assert_eq!(peer.next_ack().await, 1);
    assert!(peer.closed().await);
    let conn = wait_connection(&server, "closed", |c| c["state"] == "closed").await;
    let message = conn["last_error"]["message"].as_str().unwrap();
    assert!(message.contains("in the middle of an event"), "{message}");
    assert_eq!(conn["events_received"], 1);
    server.stop().await;
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The real binary: `--bbdo-addr` picks the listener address.
#[tokio::test]
async fn the_binary_listens_for_bbdo_where_the_flag_says() {
    let dir = tempfile::tempdir().unwrap();
    let (http, bbdo_port) = (free_port(), free_port());
    let bbdo_addr: SocketAddr = format!("127.0.0.1:{bbdo_port}").parse().unwrap();
    let _child = KillOnDrop(
        std::process::Command::new(env!("CARGO_BIN_EXE_brokerstream"))
            .args(["serve", "--bbdo-addr", &bbdo_addr.to_string()])
            .env("BROKERSTREAM_HTTP_ADDR", format!("127.0.0.1:{http}"))
            .env("BROKERSTREAM_DATA_DIR", dir.path())
            .env("BROKERSTREAM_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + WAIT;
    let stream = loop {
        match TcpStream::connect(bbdo_addr).await {
            Ok(s) => break s,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("no BBDO listener on {bbdo_addr}: {e}"),
        }
    };
    let mut peer = Peer::from(stream);
    peer.send(CAPTURE).await;
    assert_eq!(peer.read_hello().await.version, Version::V2);
    assert_eq!(peer.acks_until(953).await, [953]);
    let all: Value = admin_client()
        .get(format!("http://127.0.0.1:{http}/api/v1/inputs"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(all["listeners"][0]["address"], bbdo_addr.to_string());
}

/// Stops the process even when an assertion fails first.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn a_connector_retries_until_the_broker_listens() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let broker_addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut config = bbdo_config(dir.path(), 1000);
    config.bbdo.listen.clear();
    config.bbdo.connectors = vec![brokerstream::bbdo::connector::ConnectorConfig {
        address: broker_addr.to_string(),
        version: Version::V2,
        tls: Default::default(),
    }];
    let server = Server::start_with(config).await;
    // Nothing listens yet: the connector says so and waits.
    let deadline = Instant::now() + WAIT;
    loop {
        let all = inputs(&server).await;
        let c = &all["connectors"][0];
        if c["state"] == "retrying" {
            assert!(c["last_error"]["message"]
                .as_str()
                .unwrap()
                .contains("cannot connect"));
            assert!(c["next_retry_at"].is_string());
            break;
        }
        assert!(Instant::now() < deadline, "{all:#}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let broker = tokio::net::TcpListener::bind(broker_addr).await.unwrap();
    let mut peer = accept(&broker).await;
    let hello = peer.read_hello().await;
    assert_eq!(hello.version, Version::V2);
    assert!(!hello.protobuf, "2.0.0 speaks version_response");
    peer.send_hello(Version::V2, &[]).await;
    peer.send(&encode_all(&[host_status_v2(1, "late")])).await;
    peer.send(&stop_packet(false)).await;
    assert_eq!(peer.acks_until(1).await, [1], "legacy ack");
    server.stop().await;
}

#[tokio::test]
async fn a_flood_of_garbage_is_skipped_and_the_connection_survives() {
    let dir = tempfile::tempdir().unwrap();
    let (server, addr) = start(dir.path(), 1000).await;
    let path = dir.path().join("flood.log");
    file_output(&server, "flood", &path).await;
    let (mut peer, _) = open_v2(addr, &[]).await;
    const GARBAGE: usize = 256 * 1024;
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut stream: Vec<u8> = (0..GARBAGE)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect();
    stream.extend_from_slice(&encode_all(&[host_status_v2(7, "after the flood")]));
    // Random bytes may hold a header whose CRC happens to match, which
    // would swallow what follows (in Centreon too): make sure none does.
    for i in 0..GARBAGE {
        while bbdo::frame::header_is_valid(&stream[i..]) == Some(true) {
            stream[i] ^= 0x01;
        }
    }
    peer.send(&stream).await;
    peer.send(&stop_packet(false)).await;
    assert_eq!(peer.acks_until(1).await, [1]);
    assert_eq!(host_ids(&json_lines(&wait_lines(&path, 1).await)), [7]);
    let conn = inputs(&server).await["listeners"][0]["connections"][0].clone();
    assert_eq!(conn["errors"]["bytes_skipped"], GARBAGE);
    assert_eq!(conn["state"], "running");
    server.stop().await;
}

/// The source named `kind` in `GET /api/v1/inputs`.
fn source<'a>(inputs: &'a Value, kind: &str) -> &'a Value {
    inputs["sources"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["kind"] == kind))
        .unwrap_or_else(|| panic!("no {kind} source in {inputs}"))
}

#[tokio::test]
async fn every_source_is_listed_before_it_sends_and_counts_only_its_own_events() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = bbdo_config(dir.path(), 1);
    config.simulate = 5;
    let server = Server::start_with(config).await;
    let addr = server.app.as_ref().unwrap().bbdo_addrs[0];

    // Before any broker connects, the listener is there, with nothing.
    let before = inputs(&server).await;
    let kinds: Vec<&str> = before["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["http", "bbdo_listener", "simulator"], "{before}");
    let listener = source(&before, "bbdo_listener");
    assert_eq!(listener["name"], addr.to_string());
    assert_eq!(listener["events_accepted"], 0);
    let overview = Session::admin(&server).await.page("/").await.1;
    assert!(overview.contains("BBDO listener"), "{overview}");
    assert!(overview.contains("no broker connected"), "{overview}");

    let (status, _) = server
        .post_events(&[
            host_status(1, 0, "a"),
            host_status(2, 0, "b"),
            host_status(3, 0, "c"),
        ])
        .await;
    assert_eq!(status, 200);
    let (mut peer, _) = open_v2(addr, &[]).await;
    let events: Vec<Event> = (1..=5).map(|i| host_status_v2(i, "OK")).collect();
    peer.send(&encode_all(&events)).await;
    peer.acks_until(5).await;

    let after = inputs(&server).await;
    assert_eq!(source(&after, "http")["events_accepted"], 3, "{after}");
    assert_eq!(
        source(&after, "bbdo_listener")["events_accepted"],
        5,
        "{after}"
    );
    // The simulator's start-up events are its own, counted nowhere else.
    let simulated = source(&after, "simulator")["events_accepted"]
        .as_u64()
        .unwrap();
    assert!(simulated > 1000, "{after}");
    let overview = Session::admin(&server).await.page("/").await.1;
    assert!(overview.contains("1 broker connected"), "{overview}");
    server.stop().await;
}
