//! Tools for the end-to-end benchmark (`scripts/bench-e2e`): a BBDO load
//! generator that plays a Centreon Broker sending metric events and
//! counting brokerstream's acknowledgements, and a blackhole HTTP
//! destination that answers 204 to everything.
//!
//! **Latency.** Metric event number `n` of a run carries `n` as its
//! `value`, which every output under test writes out (the influxdb line's
//! field value, the `value` key of a script's JSON). The load tool notes
//! when it wrote each event to the socket; the blackhole notes, for each
//! request, when its body had fully arrived and the first and last `n` it
//! holds. Both clocks are the machine's wall clock. Events of one request
//! are contiguous in `n` (one connection, one journal, one cursor): the
//! blackhole counts a request's records and the load tool checks that
//! count against `last - first + 1`, so a batch with holes or reordering
//! is reported rather than silently mis-timed.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{any, get};
use axum::{Json, Router};
use bytes::BytesMut;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use brokerstream::bbdo::frame::Deframer;
use brokerstream::bbdo::tls::TlsSettings;
use brokerstream::bbdo::{self, handshake, Version};
use brokerstream::event::{Event, Value};

/// Hosts and services the generated metrics belong to.
pub const HOSTS: u64 = 300;
pub const SERVICES: u64 = 1500;

/// What to send, and how.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    pub version: Version,
    /// Metric events to send (ignored when `duration` is set).
    pub events: u64,
    /// Send for this long instead of a fixed number of events.
    pub duration: Option<Duration>,
    /// Events per socket write.
    pub batch: usize,
    /// Events per second; `None` sends as fast as brokerstream reads.
    pub rate: Option<f64>,
    /// Send the hosts and services first, as an engine does at start, so
    /// that outputs write names rather than ids.
    pub names: bool,
    /// The blackhole's base URL (`http://127.0.0.1:PORT`): wait until it
    /// received every metric event and measure the latency.
    pub blackhole: Option<String>,
    /// List `TLS` in the welcome and run the session inside TLS, as a
    /// Centreon Broker with `tls: yes` does (anonymous without a key and
    /// certificate, certificate mode with them).
    pub tls: Option<TlsSettings>,
}

impl LoadOptions {
    pub fn new(version: Version, events: u64) -> LoadOptions {
        LoadOptions {
            version,
            events,
            duration: None,
            batch: 1000,
            rate: None,
            names: false,
            blackhole: None,
            tls: None,
        }
    }
}

/// What a load run did.
#[derive(Debug, Serialize)]
pub struct LoadReport {
    /// Metric events sent.
    pub events: u64,
    /// Host and service events sent before them.
    pub names: u64,
    pub acknowledged: u64,
    /// From the first metric event sent to the last acknowledgement.
    pub seconds: f64,
    pub events_per_second: f64,
    /// What the blackhole saw, when asked to look.
    pub delivery: Option<Delivery>,
    /// The TLS session's mode and version (`anonymous TLSv1.2`), when the
    /// run used TLS.
    pub tls: Option<String>,
}

/// Ingest to destination, as the blackhole saw it.
#[derive(Debug, Serialize)]
pub struct Delivery {
    /// Distinct metric events the blackhole received.
    pub delivered: u64,
    /// Events received more than once (a retried request).
    pub duplicates: u64,
    /// Requests whose record count did not match their first and last
    /// event: their events' latencies are not trustworthy.
    pub non_contiguous_requests: u64,
    pub requests: u64,
    /// From the first metric event sent to the arrival of the last one.
    pub seconds: f64,
    pub events_per_second: f64,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub latency_max_ms: f64,
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Metric event `n` as an engine's unified_sql sends it: its `value` is
/// `n` (what the latency measurement follows), and the metric, host and
/// service vary so that outputs do not see one point again and again.
#[cfg(test)]
fn metric(n: u64, version: Version) -> Event {
    let mut metrics = Metrics::new(version);
    metrics.set(n);
    metrics.event
}

/// One metric event rewritten in place for each `n`: the load tool must
/// cost little next to what it measures (looking fields up by name and
/// building a fresh event took about a CPU-second per million events).
struct Metrics {
    event: Event,
    time: usize,
    metric_id: usize,
    value: usize,
    host_id: usize,
    service_id: usize,
}

impl Metrics {
    fn new(version: Version) -> Metrics {
        let (name, time_key) = if version.uses_protobuf() {
            ("pb_metric", "time")
        } else {
            ("metric", "ctime")
        };
        let mut event = Event::named(name).expect("metric events are in the catalogue");
        event.set("name", Value::from("cpu.utilization.percentage"));
        event.set("interval", Value::Int(300));
        event.set("rrd_len", Value::Int(15_552_000));
        let def = event.def();
        let slot = |key| def.field_index(key).expect("metric events have this field");
        Metrics {
            time: slot(time_key),
            metric_id: slot("metric_id"),
            value: slot("value"),
            host_id: slot("host_id"),
            service_id: slot("service_id"),
            event,
        }
    }

    fn set(&mut self, n: u64) {
        let values = self.event.values_mut();
        values[self.time] = Some(Value::Int(1_732_000_000 + (n / SERVICES) as i64));
        values[self.metric_id] = Some(Value::Int((n % 4500) as i64 + 1));
        values[self.value] = Some(Value::Float(n as f64));
        values[self.host_id] = Some(Value::Int((n % HOSTS) as i64 + 1));
        values[self.service_id] = Some(Value::Int((n % SERVICES) as i64 + 1));
    }
}

/// The hosts and services of the metrics, with names; service `s` is on
/// host `(s - 1) % HOSTS + 1`, as metric `n` says.
fn names(version: Version) -> Vec<Event> {
    let (host, service) = if version.uses_protobuf() {
        ("Host", "Service")
    } else {
        ("host", "service")
    };
    let mut events = Vec::new();
    for h in 1..=HOSTS {
        let mut event = Event::named(host).expect("in the catalogue");
        event.set("host_id", Value::Int(h as i64));
        event.set("name", Value::from(format!("srv-{h:03}")));
        event.set("enabled", Value::Bool(true));
        events.push(event);
    }
    for s in 1..=SERVICES {
        let mut event = Event::named(service).expect("in the catalogue");
        event.set("host_id", Value::Int(((s - 1) % HOSTS + 1) as i64));
        event.set("service_id", Value::Int(s as i64));
        event.set("description", Value::from(format!("cpu-{s:04}")));
        event.set("enabled", Value::Bool(true));
        events.push(event);
    }
    events
}

/// Sends metric events over one BBDO connection as `options` say, and
/// waits until brokerstream acknowledged all of them (and, with a
/// blackhole, until it received them).
pub async fn load(addr: SocketAddr, options: &LoadOptions) -> anyhow::Result<LoadReport> {
    let version = options.version;
    let mut stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot connect to {addr}"))?;
    stream.set_nodelay(true)?;
    let tls = match &options.tls {
        Some(settings) => bbdo::tls::client(settings)?,
        None => None,
    };
    let extensions: &[&str] = if tls.is_some() {
        &[handshake::TLS]
    } else {
        &[]
    };
    let mut hello = BytesMut::new();
    handshake::encode(version, extensions, "brokerstream-load", &mut hello);
    stream.write_all(&hello).await?;
    let Some(tls) = tls else {
        let (reader, writer) = stream.into_split();
        return drive(reader, writer, options, None).await;
    };
    // TLS starts right after both welcomes: read brokerstream's, which
    // must list TLS too, then hand what came after it to the handshake.
    let mut buf = BytesMut::with_capacity(4096);
    let mut deframer = Deframer::new();
    let welcome = loop {
        if let Some(packet) = deframer.next(&mut buf) {
            break packet;
        }
        if stream.read_buf(&mut buf).await? == 0 {
            anyhow::bail!("brokerstream closed the connection before its welcome");
        }
    };
    let peer = handshake::parse(&welcome)?;
    anyhow::ensure!(
        peer.offers(handshake::TLS),
        "brokerstream's BBDO listener does not list TLS: set [bbdo] tls = \"auto\" or \"yes\""
    );
    let (session, negotiated) = tls
        .handshake(stream, buf)
        .await
        .map_err(|e| anyhow::anyhow!("TLS handshake with {addr}: {e}"))?;
    let shown = format!("{} {}", negotiated.mode.as_str(), negotiated.version);
    // One TLS session, read by the acknowledgement task and written by
    // this one: tokio's split shares it under a lock, a cost that belongs
    // to the TLS row's figures as a sender's own would.
    let (reader, writer) = tokio::io::split(session);
    drive(reader, writer, options, Some(shown)).await
}

/// The run itself, over the connection's two halves, clear or TLS.
async fn drive<R, W>(
    mut reader: R,
    mut writer: W,
    options: &LoadOptions,
    tls: Option<String>,
) -> anyhow::Result<LoadReport>
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
    W: tokio::io::AsyncWrite + Unpin,
{
    let version = options.version;

    let acknowledged = Arc::new(AtomicU64::new(0));
    let acks = {
        let acknowledged = Arc::clone(&acknowledged);
        tokio::spawn(async move {
            let mut buf = BytesMut::with_capacity(64 * 1024);
            let mut deframer = Deframer::new();
            loop {
                while let Some(packet) = deframer.next(&mut buf) {
                    if packet.event_type == handshake::ACK || packet.event_type == handshake::PB_ACK
                    {
                        let ack = bbdo::decode(packet.event_type, &packet.payload)?;
                        let n = ack
                            .get("acknowledged_events")
                            .and_then(Value::as_i64)
                            .unwrap_or(0);
                        acknowledged.fetch_add(n.max(0) as u64, Ordering::Relaxed);
                    }
                }
                if reader.read_buf(&mut buf).await? == 0 {
                    anyhow::bail!(
                        "brokerstream closed the connection after {} acknowledged events",
                        acknowledged.load(Ordering::Relaxed)
                    );
                }
            }
        })
    };

    let mut out = BytesMut::new();
    let mut name_count = 0;
    if options.names {
        for event in names(version) {
            bbdo::encode(&event, &mut out);
            name_count += 1;
        }
        writer.write_all(&out).await?;
    }

    let started = Instant::now();
    let started_ns = now_ns();
    let deadline = options.duration.map(|d| started + d);
    let batch = options.batch.max(1) as u64;
    let measuring = options.blackhole.is_some();
    // (first event, last event, wall-clock ns when written), per write.
    let mut sends: Vec<(u64, u64, u64)> = Vec::new();
    let mut sent = 0;
    let mut metrics = Metrics::new(version);
    loop {
        let end = match deadline {
            Some(deadline) if Instant::now() >= deadline => break,
            Some(_) => sent + batch,
            None if sent >= options.events => break,
            None => (sent + batch).min(options.events),
        };
        if let Some(rate) = options.rate.filter(|r| *r > 0.0) {
            let due = started + Duration::from_secs_f64(sent as f64 / rate);
            tokio::time::sleep_until(due.into()).await;
        }
        out.clear();
        for n in sent..end {
            metrics.set(n);
            bbdo::encode(&metrics.event, &mut out);
        }
        if measuring {
            sends.push((sent, end - 1, now_ns()));
        }
        writer.write_all(&out).await?;
        sent = end;
    }
    let events = sent;
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
    let expected = events + name_count;
    let waited = Instant::now();
    while acknowledged.load(Ordering::Relaxed) < expected {
        if acks.is_finished() {
            return match acks.await? {
                Err(e) => Err(e),
                Ok(()) => anyhow::bail!("the acknowledgement reader ended"),
            };
        }
        if waited.elapsed() > Duration::from_secs(600) {
            anyhow::bail!(
                "{} of {expected} events acknowledged after 10 minutes",
                acknowledged.load(Ordering::Relaxed)
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    acks.abort();
    let delivery = match &options.blackhole {
        Some(url) => Some(delivery(url, events, started_ns, &sends).await?),
        None => None,
    };
    Ok(LoadReport {
        events,
        names: name_count,
        acknowledged: acknowledged.load(Ordering::Relaxed),
        seconds,
        events_per_second: events as f64 / seconds,
        delivery,
        tls,
    })
}

/// Waits until the blackhole received events `0..events`, then matches
/// its arrivals with the send times.
async fn delivery(
    url: &str,
    events: u64,
    started_ns: u64,
    sends: &[(u64, u64, u64)],
) -> anyhow::Result<Delivery> {
    let client = reqwest::Client::new();
    let url = url.trim_end_matches('/');
    let mut last_progress = (Instant::now(), 0);
    loop {
        let stats: serde_json::Value = get_json(&client, &format!("{url}/stats")).await?;
        let records = stats["records"].as_u64().unwrap_or(0);
        if records >= events {
            break;
        }
        if records != last_progress.1 {
            last_progress = (Instant::now(), records);
        } else if last_progress.0.elapsed() > Duration::from_secs(120) {
            anyhow::bail!("the blackhole received {records} of {events} events, and nothing more for 2 minutes");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let arrivals: Vec<Arrival> = get_json(&client, &format!("{url}/arrivals")).await?;
    Ok(match_arrivals(events, started_ns, sends, &arrivals))
}

async fn get_json<T: serde::de::DeserializeOwned>(
    client: &reqwest::Client,
    url: &str,
) -> anyhow::Result<T> {
    let body = client
        .get(url)
        .send()
        .await?
        .error_for_status()?
        .bytes()
        .await?;
    serde_json::from_slice(&body).with_context(|| format!("{url} did not answer JSON"))
}

/// Each event's latency is its request's arrival minus its write; an
/// event that arrived twice counts at its first arrival.
pub fn match_arrivals(
    events: u64,
    started_ns: u64,
    sends: &[(u64, u64, u64)],
    arrivals: &[Arrival],
) -> Delivery {
    let mut first_arrival = vec![u64::MAX; events as usize];
    let mut duplicates = 0;
    let mut non_contiguous = 0;
    for arrival in arrivals {
        if arrival.last < arrival.first || arrival.records != arrival.last - arrival.first + 1 {
            non_contiguous += 1;
        }
        let end = arrival.last.min(events.saturating_sub(1));
        for n in arrival.first..=end {
            let slot = &mut first_arrival[n as usize];
            if *slot != u64::MAX {
                duplicates += 1;
            }
            *slot = (*slot).min(arrival.at_ns);
        }
    }
    let mut latencies = Vec::with_capacity(events as usize);
    for &(first, last, sent_at) in sends {
        for n in first..=last.min(events.saturating_sub(1)) {
            let at = first_arrival[n as usize];
            if at != u64::MAX {
                latencies.push(at.saturating_sub(sent_at));
            }
        }
    }
    let delivered = first_arrival.iter().filter(|&&a| a != u64::MAX).count() as u64;
    let last_arrival = first_arrival
        .iter()
        .copied()
        .filter(|&a| a != u64::MAX)
        .max()
        .unwrap_or(started_ns);
    let seconds = last_arrival.saturating_sub(started_ns) as f64 / 1e9;
    latencies.sort_unstable();
    let percentile = |p: f64| -> f64 {
        if latencies.is_empty() {
            return f64::NAN;
        }
        let index = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[index] as f64 / 1e6
    };
    Delivery {
        delivered,
        duplicates,
        non_contiguous_requests: non_contiguous,
        requests: arrivals.len() as u64,
        seconds,
        events_per_second: if seconds > 0.0 {
            delivered as f64 / seconds
        } else {
            0.0
        },
        latency_p50_ms: percentile(0.50),
        latency_p99_ms: percentile(0.99),
        latency_max_ms: percentile(1.0),
    }
}

/// One request the blackhole received: when its body had arrived, and
/// the load tool's event numbers it carried.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Arrival {
    pub at_ns: u64,
    pub first: u64,
    pub last: u64,
    pub records: u64,
}

/// What the blackhole received.
#[derive(Debug, Default)]
pub struct BlackholeStats {
    pub requests: AtomicU64,
    pub bytes: AtomicU64,
    /// Records that carried a load-tool event number.
    pub records: AtomicU64,
    pub arrivals: Mutex<Vec<Arrival>>,
}

/// The event numbers of a request body: the first, the last, and how many
/// records carry one. Line protocol (one point per line, the number is the
/// field value) or JSON (the number is each `"value":`).
pub fn body_events(body: &[u8]) -> Option<(u64, u64, u64)> {
    let start = body.iter().position(|b| !b.is_ascii_whitespace())?;
    if matches!(body[start], b'[' | b'{') {
        const KEY: &[u8] = b"\"value\":";
        let finder = memchr::memmem::Finder::new(KEY);
        let first = finder.find(body)?;
        let last = memchr::memmem::rfind(body, KEY)?;
        let records = finder.find_iter(body).count() as u64;
        let number = |at: usize| json_number(&body[at + KEY.len()..]);
        Some((number(first)?, number(last)?, records))
    } else {
        let mut lines = body
            .split(|&b| b == b'\n')
            .filter(|l| !l.iter().all(u8::is_ascii_whitespace));
        let first = line_value(lines.next()?)?;
        let last = body
            .split(|&b| b == b'\n')
            .rev()
            .find(|l| !l.iter().all(u8::is_ascii_whitespace))
            .and_then(line_value)?;
        let records = memchr::memchr_iter(b'\n', body.trim_ascii_end()).count() as u64 + 1;
        Some((first, last, records))
    }
}

/// `measurement,tags field=VALUE [time]`: the value of the last field.
fn line_value(line: &[u8]) -> Option<u64> {
    let line = line.trim_ascii();
    let space = memchr::memrchr(b' ', line)?;
    let fields = if line[space..].contains(&b'=') {
        line
    } else {
        &line[..space]
    };
    let value = &fields[memchr::memrchr(b'=', fields)? + 1..];
    let value = std::str::from_utf8(value).ok()?.trim_end_matches('i');
    value.parse::<f64>().ok().map(|v| v as u64)
}

fn json_number(text: &[u8]) -> Option<u64> {
    let text = text.trim_ascii_start();
    let end = text
        .iter()
        .position(|b| !matches!(b, b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-'))
        .unwrap_or(text.len());
    std::str::from_utf8(&text[..end])
        .ok()?
        .parse::<f64>()
        .ok()
        .map(|v| v as u64)
}

/// The blackhole's routes: `GET /stats` for its counters, `GET /arrivals`
/// for what each request carried (`DELETE /arrivals` forgets them and
/// resets the counters, between runs), and 204 to any other request,
/// whatever its method and path.
pub fn blackhole(stats: Arc<BlackholeStats>) -> Router {
    Router::new()
        .route(
            "/stats",
            get(|State(stats): State<Arc<BlackholeStats>>| async move {
                Json(serde_json::json!({
                    "requests": stats.requests.load(Ordering::Relaxed),
                    "bytes": stats.bytes.load(Ordering::Relaxed),
                    "records": stats.records.load(Ordering::Relaxed),
                }))
            }),
        )
        .route(
            "/arrivals",
            get(|State(stats): State<Arc<BlackholeStats>>| async move {
                let arrivals = brokerstream::sync::lock(&stats.arrivals);
                Json(arrivals.clone())
            })
            .delete(|State(stats): State<Arc<BlackholeStats>>| async move {
                brokerstream::sync::lock(&stats.arrivals).clear();
                stats.requests.store(0, Ordering::Relaxed);
                stats.bytes.store(0, Ordering::Relaxed);
                stats.records.store(0, Ordering::Relaxed);
                StatusCode::NO_CONTENT
            }),
        )
        .fallback(any(
            |State(stats): State<Arc<BlackholeStats>>, body: Bytes| async move {
                let at_ns = now_ns();
                stats.requests.fetch_add(1, Ordering::Relaxed);
                stats.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
                if let Some((first, last, records)) = body_events(&body) {
                    brokerstream::sync::lock(&stats.arrivals).push(Arrival {
                        at_ns,
                        first,
                        last,
                        records,
                    });
                    stats.records.fetch_add(records, Ordering::Relaxed);
                }
                StatusCode::NO_CONTENT
            },
        ))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_numbers_come_from_line_protocol_and_json() {
        let lines = b"cpu-0001,host=srv-001 cpu.utilization.percentage=7 1732000000\n\
                      cpu-0002,host=srv-002 cpu.utilization.percentage=8 1732000000\n\
                      a\\ b,host=x y=9.0 1732000000\n";
        assert_eq!(body_events(lines), Some((7, 9, 3)));
        assert_eq!(body_events(b"cpu value=4\ncpu value=5"), Some((4, 5, 2)));
        let json = br#"[{"metric":"cpu","value":12.0},{"metric":"cpu","value": 13},{"value":14}]"#;
        assert_eq!(body_events(json), Some((12, 14, 3)));
        assert_eq!(body_events(b"not a point"), None);
        assert_eq!(body_events(b"[]"), None);
        assert_eq!(body_events(b""), None);
    }

    #[test]
    fn metric_events_carry_their_number_in_both_versions() {
        for version in [Version::V2, Version::V3] {
            let event = metric(4501, version);
            assert_eq!(event.get("value"), Some(&Value::Float(4501.0)));
            assert_eq!(event.get("metric_id"), Some(&Value::Int(2)));
            assert_eq!(event.get("host_id"), Some(&Value::Int(2)));
            assert_eq!(event.get("service_id"), Some(&Value::Int(2)));
            // The wire form decodes back to the same event.
            let payload = bbdo::encode_payload(&event);
            let decoded = bbdo::decode(event.event_type(), &payload).unwrap();
            assert_eq!(decoded.get("value"), event.get("value"));
            assert_eq!(decoded.get("name"), event.get("name"));
        }
    }

    #[test]
    fn latencies_follow_each_event_to_its_first_arrival() {
        let sends = [(0, 1, 1_000), (2, 3, 2_000)];
        let arrival = |at_ns, first, last, records| Arrival {
            at_ns,
            first,
            last,
            records,
        };
        // Events 0-2 arrive at 3 ms and again (a retry) at 9 ms; 3 at 5 ms.
        let arrivals = [
            arrival(3_000_000, 0, 2, 3),
            arrival(9_000_000, 0, 2, 3),
            arrival(5_000_000, 3, 3, 1),
        ];
        let d = match_arrivals(4, 0, &sends, &arrivals);
        assert_eq!(
            (d.delivered, d.duplicates, d.non_contiguous_requests),
            (4, 3, 0)
        );
        assert_eq!(d.latency_p50_ms, 2.999);
        assert_eq!(d.latency_max_ms, 4.998);
        assert_eq!(d.seconds, 0.005);
        // A request whose count does not match its span is flagged.
        let d = match_arrivals(4, 0, &sends, &[arrival(3_000_000, 0, 3, 2)]);
        assert_eq!(d.non_contiguous_requests, 1);
        // Events that never arrived are not delivered.
        let d = match_arrivals(4, 0, &sends, &[arrival(3_000_000, 0, 1, 2)]);
        assert_eq!(d.delivered, 2);
    }
}
