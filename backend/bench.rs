//! Tools for the end-to-end benchmark (`scripts/bench-e2e`): a BBDO load
//! generator that plays a Centreon Broker sending metric events and
//! counting brokerstream's acknowledgements, and a blackhole HTTP
//! destination that answers 204 to everything.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{any, get};
use axum::{Json, Router};
use bytes::BytesMut;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::bbdo::frame::Deframer;
use crate::bbdo::{self, handshake, Version};
use crate::event::{Event, Value};

/// What a load run did.
#[derive(Debug, Serialize)]
pub struct LoadReport {
    pub events: u64,
    pub acknowledged: u64,
    pub seconds: f64,
    pub events_per_second: f64,
}

/// One metric event as an engine's unified_sql sends it; `n` varies the
/// metric so that outputs do not see one point again and again.
fn metric(n: u64, version: Version) -> Event {
    let host = (n % 300) as i64 + 1;
    let service = (n % 1500) as i64 + 1;
    let name = if version.uses_protobuf() {
        "pb_metric"
    } else {
        "metric"
    };
    let mut event = Event::named(name).expect("metric events are in the catalogue");
    let time_key = if version.uses_protobuf() {
        "time"
    } else {
        "ctime"
    };
    for (key, value) in [
        (time_key, Value::Int(1_732_000_000 + (n / 1500) as i64)),
        ("metric_id", Value::Int((n % 4500) as i64 + 1)),
        ("name", Value::from("cpu.utilization.percentage")),
        ("value", Value::Float((n % 100) as f64 + 0.5)),
        ("host_id", Value::Int(host)),
        ("service_id", Value::Int(service)),
        ("interval", Value::Int(300)),
        ("rrd_len", Value::Int(15_552_000)),
    ] {
        event.set(key, value);
    }
    event
}

/// Sends `events` metric events over one BBDO connection in batches of
/// `batch`, and waits until brokerstream acknowledged all of them.
pub async fn load(
    addr: SocketAddr,
    version: Version,
    events: u64,
    batch: usize,
) -> anyhow::Result<LoadReport> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot connect to {addr}"))?;
    stream.set_nodelay(true)?;
    let (mut reader, mut writer) = stream.into_split();
    let mut hello = BytesMut::new();
    handshake::encode(version, &[], "brokerstream-load", &mut hello);
    writer.write_all(&hello).await?;

    let acks = tokio::spawn(async move {
        let mut buf = BytesMut::with_capacity(64 * 1024);
        let mut deframer = Deframer::new();
        let mut acknowledged = 0u64;
        loop {
            while let Some(packet) = deframer.next(&mut buf) {
                if packet.event_type == handshake::ACK || packet.event_type == handshake::PB_ACK {
                    let ack = bbdo::decode(packet.event_type, &packet.payload)?;
                    let n = ack
                        .get("acknowledged_events")
                        .and_then(Value::as_i64)
                        .unwrap_or(0);
                    acknowledged += n.max(0) as u64;
                    if acknowledged >= events {
                        return Ok::<u64, anyhow::Error>(acknowledged);
                    }
                }
            }
            if reader.read_buf(&mut buf).await? == 0 {
                anyhow::bail!(
                    "brokerstream closed the connection after {acknowledged} acknowledged events"
                );
            }
        }
    });

    let started = Instant::now();
    let batch = batch.max(1) as u64;
    let mut out = BytesMut::with_capacity(batch as usize * 128);
    let mut sent = 0;
    while sent < events {
        out.clear();
        let end = (sent + batch).min(events);
        for n in sent..end {
            bbdo::encode(&metric(n, version), &mut out);
        }
        writer.write_all(&out).await?;
        sent = end;
    }
    // Acks come every ack_limit events or every few seconds; a stop asks
    // for the last one at once.
    let mut stop = BytesMut::new();
    if version.uses_protobuf() {
        bbdo::encode(
            &Event::named("pb_stop").expect("in the catalogue"),
            &mut stop,
        );
    } else {
        bbdo::frame::encode(handshake::STOP, &[], &mut stop);
    }
    writer.write_all(&stop).await?;
    let acknowledged = tokio::time::timeout(Duration::from_secs(600), acks)
        .await
        .context("no acknowledgement of every event within 10 minutes")???;
    let seconds = started.elapsed().as_secs_f64();
    Ok(LoadReport {
        events,
        acknowledged,
        seconds,
        events_per_second: events as f64 / seconds,
    })
}

/// What the blackhole received.
#[derive(Debug, Default, Serialize)]
pub struct BlackholeStats {
    pub requests: AtomicU64,
    pub bytes: AtomicU64,
}

/// The blackhole's routes: `GET /stats` for its counters, and 204 to any
/// other request, whatever its method and path.
pub fn blackhole(stats: Arc<BlackholeStats>) -> Router {
    Router::new()
        .route(
            "/stats",
            get(|State(stats): State<Arc<BlackholeStats>>| async move {
                Json(serde_json::json!({
                    "requests": stats.requests.load(Ordering::Relaxed),
                    "bytes": stats.bytes.load(Ordering::Relaxed),
                }))
            }),
        )
        .fallback(any(
            |State(stats): State<Arc<BlackholeStats>>, body: Bytes| async move {
                stats.requests.fetch_add(1, Ordering::Relaxed);
                stats.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
                StatusCode::NO_CONTENT
            },
        ))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(stats)
}
