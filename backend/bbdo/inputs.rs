//! What `GET /api/v1/inputs` shows: every listener and connector, and each
//! of their connections with its peer, negotiated version and extensions,
//! counters and last error. Connections write their counters here as they
//! go; the route takes a snapshot.

use crate::sync::lock;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use time::OffsetDateTime;

/// Closed connections each listener or connector still shows.
pub const CLOSED_KEPT: usize = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnectionState {
    Handshake,
    Running,
    /// Ingest refused events (journal full): reading is paused.
    Paused,
    Closed,
}

#[derive(Clone, Debug, Serialize)]
pub struct LastError {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub message: String,
}

#[derive(Clone, Debug, Serialize)]
struct Negotiated {
    state: ConnectionState,
    version: Option<String>,
    /// Extensions both sides listed.
    extensions: Vec<String>,
    /// Extensions the peer offered.
    peer_extensions: Vec<String>,
    /// The peer's data really is compressed (a 21.10 broker agrees on
    /// COMPRESSION and sends plain BBDO).
    compressed: bool,
    poller_id: Option<i64>,
    poller_name: Option<String>,
    broker_name: Option<String>,
    /// `none`, `anonymous` or `certificate`: what the session runs on.
    tls: &'static str,
    /// `TLSv1.2`, `TLSv1.3` once TLS started.
    tls_version: Option<String>,
    tls_cipher: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    last_event_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    closed_at: Option<OffsetDateTime>,
    last_error: Option<LastError>,
}

/// TLS troubles of a listener or connector, over all its connections
/// (closed ones are forgotten, these counts are not).
#[derive(Debug, Default)]
pub struct TlsCounters {
    /// The peer listed TLS and ours is off (`tls = no`).
    pub offered_while_off: AtomicU64,
    /// Ours is `yes` and the peer did not list TLS: it went on in clear.
    pub refused_by_peer: AtomicU64,
    /// Both listed TLS and the TLS handshake failed.
    pub handshake_failures: AtomicU64,
}

impl TlsCounters {
    fn snapshot(&self) -> serde_json::Value {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        serde_json::json!({
            "offered_while_off": get(&self.offered_while_off),
            "refused_by_peer": get(&self.refused_by_peer),
            "handshake_failures": get(&self.handshake_failures),
        })
    }
}

/// One BBDO connection's live counters.
#[derive(Debug)]
pub struct ConnectionStats {
    pub peer: String,
    /// Its listener's or connector's.
    pub tls_counters: Arc<TlsCounters>,
    pub opened_at: OffsetDateTime,
    negotiated: Mutex<Negotiated>,
    /// Events read (control messages excluded).
    pub received: AtomicU64,
    /// Events the journal took.
    pub ingested: AtomicU64,
    /// Events acknowledged to the peer.
    pub acknowledged: AtomicU64,
    pub crc_errors: AtomicU64,
    pub bytes_skipped: AtomicU64,
    /// Events of a type the catalogue does not know.
    pub unknown_events: AtomicU64,
    /// Events whose payload does not decode.
    pub decode_errors: AtomicU64,
    /// Events dropped for their size.
    pub oversized_events: AtomicU64,
    /// Times ingest refused a batch (journal full).
    pub ingest_refusals: AtomicU64,
}

impl ConnectionStats {
    pub fn new(peer: String) -> Arc<Self> {
        Self::with_counters(peer, Arc::default())
    }

    fn with_counters(peer: String, tls_counters: Arc<TlsCounters>) -> Arc<Self> {
        Arc::new(ConnectionStats {
            peer,
            tls_counters,
            opened_at: OffsetDateTime::now_utc(),
            negotiated: Mutex::new(Negotiated {
                state: ConnectionState::Handshake,
                version: None,
                extensions: Vec::new(),
                peer_extensions: Vec::new(),
                compressed: false,
                poller_id: None,
                poller_name: None,
                broker_name: None,
                tls: "none",
                tls_version: None,
                tls_cipher: None,
                last_event_at: None,
                closed_at: None,
                last_error: None,
            }),
            received: AtomicU64::new(0),
            ingested: AtomicU64::new(0),
            acknowledged: AtomicU64::new(0),
            crc_errors: AtomicU64::new(0),
            bytes_skipped: AtomicU64::new(0),
            unknown_events: AtomicU64::new(0),
            decode_errors: AtomicU64::new(0),
            oversized_events: AtomicU64::new(0),
            ingest_refusals: AtomicU64::new(0),
        })
    }

    pub fn negotiated(
        &self,
        version: String,
        extensions: Vec<String>,
        hello: &super::handshake::Hello,
    ) {
        let mut n = lock(&self.negotiated);
        n.state = ConnectionState::Running;
        n.version = Some(version);
        n.extensions = extensions;
        n.peer_extensions = hello.extensions.clone();
        n.poller_id = hello.poller_id;
        n.poller_name = hello.poller_name.clone();
        n.broker_name = hello.broker_name.clone();
    }

    /// TLS runs, as agreed.
    pub fn set_tls(&self, tls: &super::tls::Negotiated) {
        let mut n = lock(&self.negotiated);
        n.tls = tls.mode.as_str();
        n.tls_version = Some(tls.version.clone());
        n.tls_cipher = Some(tls.cipher.clone());
    }

    pub fn set_compressed(&self) {
        lock(&self.negotiated).compressed = true;
    }

    pub fn set_state(&self, state: ConnectionState) {
        let mut n = lock(&self.negotiated);
        if n.state != ConnectionState::Closed {
            n.state = state;
        }
    }

    pub fn state(&self) -> ConnectionState {
        lock(&self.negotiated).state
    }

    /// Events arrived just now (counted in `received` as they come).
    pub fn event_seen(&self) {
        lock(&self.negotiated).last_event_at = Some(OffsetDateTime::now_utc());
    }

    pub fn error(&self, message: impl Into<String>) {
        lock(&self.negotiated).last_error = Some(LastError {
            at: OffsetDateTime::now_utc(),
            message: message.into(),
        });
    }

    pub fn closed(&self) {
        let mut n = lock(&self.negotiated);
        n.state = ConnectionState::Closed;
        n.closed_at = Some(OffsetDateTime::now_utc());
    }

    pub fn snapshot(&self) -> serde_json::Value {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let n = lock(&self.negotiated).clone();
        let mut v = serde_json::json!({
            "peer": self.peer,
            "opened_at": self.opened_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
            "events_received": get(&self.received),
            "events_ingested": get(&self.ingested),
            "events_acknowledged": get(&self.acknowledged),
            "errors": {
                "crc": get(&self.crc_errors),
                "bytes_skipped": get(&self.bytes_skipped),
                "unknown_events": get(&self.unknown_events),
                "decode": get(&self.decode_errors),
                "oversized_events": get(&self.oversized_events),
                "ingest_refusals": get(&self.ingest_refusals),
            },
        });
        if let (Some(obj), Ok(serde_json::Value::Object(extra))) =
            (v.as_object_mut(), serde_json::to_value(&n))
        {
            obj.extend(extra);
        }
        v
    }
}

/// The connections of a listener or connector: open ones, and the last
/// [`CLOSED_KEPT`] closed ones.
#[derive(Debug, Default)]
struct Connections(Mutex<VecDeque<Arc<ConnectionStats>>>);

impl Connections {
    fn add(&self, c: Arc<ConnectionStats>) {
        let mut list = lock(&self.0);
        list.push_back(c);
        let closed = list
            .iter()
            .filter(|c| c.state() == ConnectionState::Closed)
            .count();
        let mut excess = closed.saturating_sub(CLOSED_KEPT);
        list.retain(|c| {
            if excess > 0 && c.state() == ConnectionState::Closed {
                excess -= 1;
                false
            } else {
                true
            }
        });
    }

    fn snapshot(&self) -> Vec<serde_json::Value> {
        lock(&self.0).iter().map(|c| c.snapshot()).collect()
    }
}

#[derive(Debug)]
pub struct ListenerStats {
    pub address: SocketAddr,
    /// The allow-list, as shown; empty = every peer.
    allow: Vec<String>,
    pub accepted: AtomicU64,
    /// Connections closed at once because the peer is not allowed.
    pub refused: AtomicU64,
    last_refused: Mutex<Option<Refused>>,
    /// `bbdo.max_connections`.
    pub max_connections: usize,
    /// Connections closed at once because the listener held
    /// `max_connections` sessions.
    pub over_limit: AtomicU64,
    last_over_limit: Mutex<Option<Refused>>,
    /// `no`, `auto` or `yes`, and the mode when not `no`.
    tls: TlsShown,
    pub tls_counters: Arc<TlsCounters>,
    connections: Connections,
}

/// How an input is configured for TLS, as shown.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TlsShown {
    pub setting: &'static str,
    /// `anonymous` or `certificate`; absent when TLS is off.
    pub mode: Option<&'static str>,
}

impl TlsShown {
    pub fn of(tls: Option<&super::tls::Tls>) -> TlsShown {
        match tls {
            Some(t) => TlsShown {
                setting: t.setting.as_str(),
                mode: Some(t.mode.as_str()),
            },
            None => TlsShown {
                setting: "no",
                mode: None,
            },
        }
    }
}

#[derive(Clone, Debug, Serialize)]
struct Refused {
    peer: String,
    #[serde(with = "time::serde::rfc3339")]
    at: OffsetDateTime,
}

impl ListenerStats {
    /// A peer outside the allow-list was turned away.
    pub fn refused(&self, peer: SocketAddr) {
        self.refused.fetch_add(1, Ordering::Relaxed);
        *lock(&self.last_refused) = Some(Refused {
            peer: peer.to_string(),
            at: OffsetDateTime::now_utc(),
        });
    }

    /// A peer was turned away: the listener was full.
    pub fn over_limit(&self, peer: SocketAddr) {
        self.over_limit.fetch_add(1, Ordering::Relaxed);
        *lock(&self.last_over_limit) = Some(Refused {
            peer: peer.to_string(),
            at: OffsetDateTime::now_utc(),
        });
    }

    pub fn connection(&self, peer: String) -> Arc<ConnectionStats> {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        let c = ConnectionStats::with_counters(peer, Arc::clone(&self.tls_counters));
        self.connections.add(Arc::clone(&c));
        c
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnectorState {
    Connecting,
    Connected,
    /// Waiting before the next attempt.
    Retrying,
    Stopped,
}

#[derive(Clone, Debug, Serialize)]
struct ConnectorInner {
    state: ConnectorState,
    attempts: u64,
    last_error: Option<LastError>,
    #[serde(with = "time::serde::rfc3339::option")]
    next_retry_at: Option<OffsetDateTime>,
}

#[derive(Debug)]
pub struct ConnectorStats {
    pub address: String,
    pub version: String,
    inner: Mutex<ConnectorInner>,
    tls: TlsShown,
    pub tls_counters: Arc<TlsCounters>,
    connections: Connections,
}

impl ConnectorStats {
    pub fn connection(&self, peer: String) -> Arc<ConnectionStats> {
        let c = ConnectionStats::with_counters(peer, Arc::clone(&self.tls_counters));
        self.connections.add(Arc::clone(&c));
        c
    }

    pub fn set_state(&self, state: ConnectorState) {
        let mut inner = lock(&self.inner);
        inner.state = state;
        if state != ConnectorState::Retrying {
            inner.next_retry_at = None;
        }
    }

    pub fn attempt(&self) {
        let mut inner = lock(&self.inner);
        inner.attempts += 1;
        inner.state = ConnectorState::Connecting;
    }

    pub fn failed(&self, message: String, retry_in: std::time::Duration) {
        let mut inner = lock(&self.inner);
        inner.state = ConnectorState::Retrying;
        inner.last_error = Some(LastError {
            at: OffsetDateTime::now_utc(),
            message,
        });
        inner.next_retry_at = Some(OffsetDateTime::now_utc() + retry_in);
    }
}

/// Every BBDO input of the service.
#[derive(Debug, Default)]
pub struct Inputs {
    listeners: Mutex<Vec<Arc<ListenerStats>>>,
    connectors: Mutex<Vec<Arc<ConnectorStats>>>,
}

impl Inputs {
    pub fn new() -> Arc<Self> {
        Arc::new(Inputs::default())
    }

    pub fn listener(
        &self,
        address: SocketAddr,
        allow: Vec<String>,
        max_connections: usize,
        tls: TlsShown,
    ) -> Arc<ListenerStats> {
        let l = Arc::new(ListenerStats {
            address,
            allow,
            accepted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            last_refused: Mutex::new(None),
            max_connections,
            over_limit: AtomicU64::new(0),
            last_over_limit: Mutex::new(None),
            tls,
            tls_counters: Arc::default(),
            connections: Connections::default(),
        });
        lock(&self.listeners).push(Arc::clone(&l));
        l
    }

    pub fn connector(
        &self,
        address: String,
        version: String,
        tls: TlsShown,
    ) -> Arc<ConnectorStats> {
        let c = Arc::new(ConnectorStats {
            address,
            version,
            inner: Mutex::new(ConnectorInner {
                state: ConnectorState::Connecting,
                attempts: 0,
                last_error: None,
                next_retry_at: None,
            }),
            tls,
            tls_counters: Arc::default(),
            connections: Connections::default(),
        });
        lock(&self.connectors).push(Arc::clone(&c));
        c
    }

    /// The JSON of `GET /api/v1/inputs`.
    pub fn snapshot(&self) -> serde_json::Value {
        let listeners: Vec<_> = lock(&self.listeners)
            .iter()
            .map(|l| {
                serde_json::json!({
                    "kind": "listener",
                    "address": l.address.to_string(),
                    "allow": l.allow,
                    "connections_accepted": l.accepted.load(Ordering::Relaxed),
                    "connections_refused": l.refused.load(Ordering::Relaxed),
                    "last_refused": *lock(&l.last_refused),
                    "max_connections": l.max_connections,
                    "connections_over_limit": l.over_limit.load(Ordering::Relaxed),
                    "last_over_limit": *lock(&l.last_over_limit),
                    "tls": l.tls,
                    "tls_errors": l.tls_counters.snapshot(),
                    "connections": l.connections.snapshot(),
                })
            })
            .collect();
        let connectors: Vec<_> = lock(&self.connectors)
            .iter()
            .map(|c| {
                let mut v = serde_json::json!({
                    "kind": "connector",
                    "address": c.address,
                    "version": c.version,
                    "tls": c.tls,
                    "tls_errors": c.tls_counters.snapshot(),
                    "connections": c.connections.snapshot(),
                });
                if let (Some(obj), Ok(serde_json::Value::Object(extra))) =
                    (v.as_object_mut(), serde_json::to_value(&*lock(&c.inner)))
                {
                    obj.extend(extra);
                }
                v
            })
            .collect();
        serde_json::json!({ "listeners": listeners, "connectors": connectors })
    }
}
