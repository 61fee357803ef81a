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

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnectionState {
    Handshake,
    Running,
    /// The sink refused events (a full journal): reading is paused.
    Paused,
    Closed,
}

impl ConnectionState {
    /// As the JSON and the metrics spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionState::Handshake => "handshake",
            ConnectionState::Running => "running",
            ConnectionState::Paused => "paused",
            ConnectionState::Closed => "closed",
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct LastError {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub message: String,
}

/// What a connection agreed with its peer, and where it stands.
#[derive(Clone, Debug, Serialize)]
pub struct Negotiated {
    pub state: ConnectionState,
    pub version: Option<String>,
    /// Extensions both sides listed.
    pub extensions: Vec<String>,
    /// Extensions the peer offered.
    pub peer_extensions: Vec<String>,
    /// The peer's data really is compressed (a 21.10 broker agrees on
    /// COMPRESSION and sends plain BBDO).
    pub compressed: bool,
    pub poller_id: Option<i64>,
    pub poller_name: Option<String>,
    pub broker_name: Option<String>,
    /// `none`, `anonymous` or `certificate`: what the session runs on.
    pub tls: &'static str,
    /// `TLSv1.2`, `TLSv1.3` once TLS started.
    pub tls_version: Option<String>,
    pub tls_cipher: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_event_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub closed_at: Option<OffsetDateTime>,
    pub last_error: Option<LastError>,
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

/// [`TlsCounters`] at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TlsErrors {
    pub offered_while_off: u64,
    pub refused_by_peer: u64,
    pub handshake_failures: u64,
}

impl TlsCounters {
    fn snapshot(&self) -> TlsErrors {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        TlsErrors {
            offered_while_off: get(&self.offered_while_off),
            refused_by_peer: get(&self.refused_by_peer),
            handshake_failures: get(&self.handshake_failures),
        }
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

    pub fn snapshot(&self) -> ConnectionSnapshot {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ConnectionSnapshot {
            peer: self.peer.clone(),
            opened_at: self.opened_at,
            events_received: get(&self.received),
            events_ingested: get(&self.ingested),
            events_acknowledged: get(&self.acknowledged),
            errors: ConnectionErrors {
                crc: get(&self.crc_errors),
                bytes_skipped: get(&self.bytes_skipped),
                unknown_events: get(&self.unknown_events),
                decode: get(&self.decode_errors),
                oversized_events: get(&self.oversized_events),
                ingest_refusals: get(&self.ingest_refusals),
            },
            negotiated: lock(&self.negotiated).clone(),
        }
    }
}

/// One connection at one moment, as `GET /api/v1/inputs` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct ConnectionSnapshot {
    pub peer: String,
    #[serde(with = "time::serde::rfc3339")]
    pub opened_at: OffsetDateTime,
    pub events_received: u64,
    /// Events the sink (the journal) took.
    pub events_ingested: u64,
    pub events_acknowledged: u64,
    pub errors: ConnectionErrors,
    #[serde(flatten)]
    pub negotiated: Negotiated,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ConnectionErrors {
    pub crc: u64,
    pub bytes_skipped: u64,
    pub unknown_events: u64,
    pub decode: u64,
    pub oversized_events: u64,
    /// Times the sink refused a batch (a full journal): reading paused.
    pub ingest_refusals: u64,
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

    fn snapshot(&self) -> Vec<ConnectionSnapshot> {
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

/// The last peer a listener turned away, and when.
#[derive(Clone, Debug, Serialize)]
pub struct Refused {
    pub peer: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
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

impl ConnectorState {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectorState::Connecting => "connecting",
            ConnectorState::Connected => "connected",
            ConnectorState::Retrying => "retrying",
            ConnectorState::Stopped => "stopped",
        }
    }
}

/// Where a connector stands in its dialling.
#[derive(Clone, Debug, Serialize)]
pub struct ConnectorProgress {
    pub state: ConnectorState,
    pub attempts: u64,
    pub last_error: Option<LastError>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub next_retry_at: Option<OffsetDateTime>,
}

#[derive(Debug)]
pub struct ConnectorStats {
    pub address: String,
    pub version: String,
    inner: Mutex<ConnectorProgress>,
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
            inner: Mutex::new(ConnectorProgress {
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

    /// Every listener and connector now (`GET /api/v1/inputs`).
    pub fn snapshot(&self) -> InputsSnapshot {
        let listeners = lock(&self.listeners)
            .iter()
            .map(|l| ListenerSnapshot {
                kind: "listener",
                address: l.address,
                allow: l.allow.clone(),
                connections_accepted: l.accepted.load(Ordering::Relaxed),
                connections_refused: l.refused.load(Ordering::Relaxed),
                last_refused: lock(&l.last_refused).clone(),
                max_connections: l.max_connections,
                connections_over_limit: l.over_limit.load(Ordering::Relaxed),
                last_over_limit: lock(&l.last_over_limit).clone(),
                tls: l.tls.clone(),
                tls_errors: l.tls_counters.snapshot(),
                connections: l.connections.snapshot(),
            })
            .collect();
        let connectors = lock(&self.connectors)
            .iter()
            .map(|c| ConnectorSnapshot {
                kind: "connector",
                address: c.address.clone(),
                version: c.version.clone(),
                tls: c.tls.clone(),
                tls_errors: c.tls_counters.snapshot(),
                connections: c.connections.snapshot(),
                progress: lock(&c.inner).clone(),
            })
            .collect();
        InputsSnapshot {
            listeners,
            connectors,
        }
    }
}

/// The BBDO inputs at one moment.
#[derive(Clone, Debug, Serialize)]
pub struct InputsSnapshot {
    pub listeners: Vec<ListenerSnapshot>,
    pub connectors: Vec<ConnectorSnapshot>,
}

/// What listeners and connectors both have.
pub struct InputView<'a> {
    /// `listener` or `connector`.
    pub kind: &'static str,
    /// Listened on, or dialled.
    pub address: String,
    pub tls_errors: &'a TlsErrors,
    pub connections: &'a [ConnectionSnapshot],
}

impl InputsSnapshot {
    /// Every listener, then every connector.
    pub fn inputs(&self) -> impl Iterator<Item = InputView<'_>> {
        let listeners = self.listeners.iter().map(|l| InputView {
            kind: l.kind,
            address: l.address.to_string(),
            tls_errors: &l.tls_errors,
            connections: &l.connections,
        });
        let connectors = self.connectors.iter().map(|c| InputView {
            kind: c.kind,
            address: c.address.clone(),
            tls_errors: &c.tls_errors,
            connections: &c.connections,
        });
        listeners.chain(connectors)
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct ListenerSnapshot {
    /// `listener`, so that an entry says what it is on its own.
    pub kind: &'static str,
    pub address: SocketAddr,
    /// Empty: every peer is allowed.
    pub allow: Vec<String>,
    pub connections_accepted: u64,
    pub connections_refused: u64,
    pub last_refused: Option<Refused>,
    pub max_connections: usize,
    pub connections_over_limit: u64,
    pub last_over_limit: Option<Refused>,
    pub tls: TlsShown,
    pub tls_errors: TlsErrors,
    /// Open ones, and the last closed ones.
    pub connections: Vec<ConnectionSnapshot>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ConnectorSnapshot {
    /// `connector`.
    pub kind: &'static str,
    /// `host:port`, as configured.
    pub address: String,
    pub version: String,
    pub tls: TlsShown,
    pub tls_errors: TlsErrors,
    pub connections: Vec<ConnectionSnapshot>,
    #[serde(flatten)]
    pub progress: ConnectorProgress,
}
