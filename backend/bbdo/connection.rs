//! One BBDO session with a peer, whichever side opened the TCP connection:
//! handshake, then read events, hand them to the [`EventSink`], and
//! acknowledge them once it holds them (docs/bbdo.md §9).
//!
//! Acknowledgement rules, as Centreon's input side: an `ack` (or protobuf
//! `Ack`) goes out once `ack_limit` events are unacknowledged, or when at
//! least one is and the last ack is more than 5 s old, and a final one
//! answers a `stop`. Only events the sink holds are counted, so a peer
//! keeps in its retention whatever brokerstream has not secured. Events
//! that cannot be decoded (unknown type, broken payload) are counted too
//! once every event before them is held: they were consumed, and sending
//! them again would not make them readable. Category 2 (protocol) messages
//! are handled here and counted nowhere, as Centreon does.
//!
//! Backpressure: when the sink refuses a batch (a full journal), the session
//! stops reading and retries the same batch after a pause, so a peer that
//! floods is slowed down by TCP rather than buffered without bound.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::compression::{self, Sniffed};
use super::frame::{Deframer, Notice, Packet};
use super::handshake::{self, Hello, Version};
use super::inputs::{ConnectionState, ConnectionStats};
use super::sink::{EventSink, Refusal};
use super::tls::{Tls, TlsSetting, Transport};
use super::DecodeError;
use crate::event::{Event, EventType};

/// Events handed to the sink at once, at most.
const BATCH_MAX: usize = 1000;
/// How long a last ack may take when a session ends on an error.
const FINAL_ACK_TIMEOUT: Duration = Duration::from_secs(1);
/// Decode errors logged per connection; later ones are only counted.
const DECODE_ERRORS_LOGGED: u64 = 20;
/// Bytes read from the socket at once.
const READ_CHUNK: usize = 64 * 1024;
/// Pauses between attempts while the sink is full.
const FULL_PAUSE_MIN: Duration = Duration::from_millis(50);
const FULL_PAUSE_MAX: Duration = Duration::from_secs(2);

/// How sessions behave; shared by every listener and connector.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// Acknowledge after this many events (Centreon's `ack_limit`).
    pub ack_limit: u32,
    /// Acknowledge pending events at least this often.
    pub ack_interval: Duration,
    /// Offer the `COMPRESSION` extension.
    pub compression: bool,
    /// Longest wait for the peer's welcome.
    pub handshake_timeout: Duration,
    /// How long a packet may take to arrive whole once its first byte
    /// came (a compressed chunk as well): a peer that trickles a byte now
    /// and then is closed as one that went silent is. A peer between
    /// events may stay silent for ever: Centreon sends nothing when idle.
    pub stall_timeout: Duration,
    /// Our name in protobuf `Welcome`.
    pub broker_name: String,
    /// Largest event accepted (`limits.max_bbdo_event_bytes`); a peer that
    /// sends a larger one is disconnected.
    pub max_event_bytes: usize,
    /// Offer `TLS` (`auto`, `yes`), with the context of our side: the
    /// server's for listeners, the client's for a connector. `None`: off.
    pub tls: Option<Tls>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            ack_limit: 1000,
            ack_interval: Duration::from_secs(5),
            compression: true,
            handshake_timeout: Duration::from_secs(5),
            stall_timeout: Duration::from_secs(60),
            broker_name: "brokerstream".into(),
            max_event_bytes: super::frame::MAX_EVENT_SIZE,
            tls: None,
        }
    }
}

/// Which side we are.
#[derive(Clone, Copy, Debug)]
pub enum Role {
    /// We accepted the connection: the peer speaks first.
    Accept,
    /// We dialled: we speak first, in this version.
    Connect(Version),
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("{0}")]
    Handshake(#[from] handshake::HandshakeError),
    #[error("no welcome from the peer within {0:?}; closing the connection")]
    HandshakeTimeout(Duration),
    #[error("the peer closed the connection during the handshake")]
    ClosedDuringHandshake,
    #[error("the peer closed the connection right after the handshake; it offered TLS, which is off here (bbdo tls = no): if the peer requires TLS (tls: yes), set tls here to auto or yes, or the peer's to auto or no")]
    TlsRequired,
    #[error("the peer started a TLS handshake; TLS is off here (bbdo tls = no), closing the connection (set tls to auto or yes on one side and the same on the other, or the peer's to no)")]
    TlsStarted,
    #[error("TLS: handshake failed: {0}; closing the connection")]
    TlsHandshake(String),
    #[error("TLS: no handshake within {0:?}; closing the connection")]
    TlsTimeout(Duration),
    #[error(
        "the peer closed the connection in the middle of an event ({0} bytes of it discarded)"
    )]
    ClosedMidEvent(usize),
    #[error("the peer did not finish a packet within {0:?} of its first byte, in the middle of an event (bbdo.stall_timeout_secs); closing the connection")]
    Stalled(Duration),
    #[error("the peer did not read what we sent (an acknowledgement or the handshake) within {0:?} (bbdo.stall_timeout_secs); closing the connection")]
    NotReading(Duration),
    #[error("the peer sent an event of type {event_type} larger than the {limit}-byte limit (limits.max_bbdo_event_bytes); closing the connection")]
    EventTooLarge { event_type: EventType, limit: usize },
    #[error("{0}; closing the connection")]
    Compression(#[from] compression::CompressionError),
    #[error("network error: {0}")]
    Io(#[from] std::io::Error),
    /// The service is stopping: not an error to report.
    #[error("stopping")]
    Stopping,
}

enum Wake {
    Read(std::io::Result<usize>),
    AckTimer,
    Stalled,
    Stop,
}

/// How the bytes after the handshake are read.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Plain,
    /// Compression was agreed: look at the first bytes to know.
    Sniffing,
    Compressed,
}

/// A session over any byte stream: a TCP connection, and whatever wraps
/// one (TLS).
pub struct Session<S = TcpStream> {
    stream: Transport<S>,
    peer: String,
    config: SessionConfig,
    sink: Arc<dyn EventSink>,
    stats: Arc<ConnectionStats>,
    stop: CancellationToken,
    /// Bytes as read from the socket.
    raw: BytesMut,
    /// Decompressed bytes, in compressed mode.
    plain: BytesMut,
    mode: Mode,
    deframer: Deframer,
    /// Ack format.
    version: Version,
    peer_offers_tls: bool,
    write_compressed: bool,
    /// Decoded events waiting for the sink, and their packets, to decode
    /// them again if it refuses the batch (it takes the events by value).
    batch: Vec<Event>,
    /// Every event read and not yet counted for acknowledgement, in order:
    /// the packet of a decoded event (one per `batch` entry), `None` for
    /// one that could not be decoded and is only waiting for the events
    /// before it to be held.
    pending: VecDeque<Option<Packet>>,
    /// Events held by the sink (or consumed) and not yet acknowledged.
    unacked: u64,
    last_ack: Instant,
    stopped_by_peer: bool,
    events_after_handshake: u64,
    unknown_logged: HashSet<EventType>,
    /// Compressed chunks inflated: progress, as packets are.
    chunks: u64,
    /// Since when the bytes buffered have not made a whole packet, and the
    /// progress count then: the stall deadline is measured from it, so
    /// that bytes trickling in do not push it back.
    unfinished_since: Option<(Instant, u64)>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    pub fn new(
        stream: S,
        config: SessionConfig,
        sink: Arc<dyn EventSink>,
        stats: Arc<ConnectionStats>,
        stop: CancellationToken,
    ) -> Self {
        let peer = stats.peer.clone();
        let deframer = Deframer::with_max_event(config.max_event_bytes);
        Session {
            stream: Transport::Plain(stream),
            peer,
            config,
            sink,
            stats,
            stop,
            raw: BytesMut::with_capacity(READ_CHUNK),
            plain: BytesMut::new(),
            mode: Mode::Plain,
            deframer,
            version: Version::V2,
            peer_offers_tls: false,
            write_compressed: false,
            batch: Vec::new(),
            pending: VecDeque::new(),
            unacked: 0,
            last_ack: Instant::now(),
            stopped_by_peer: false,
            events_after_handshake: 0,
            unknown_logged: HashSet::new(),
            chunks: 0,
            unfinished_since: None,
        }
    }

    /// Runs the session to its end: `Ok` when the peer closed cleanly or we
    /// are stopping, an error (to log) otherwise.
    pub async fn run(mut self, role: Role) -> Result<(), SessionError> {
        let result = self.run_inner(role).await;
        if let Err(e) = &result {
            self.stats.error(e.to_string());
            // Whatever the sink holds need not be sent again: say so
            // before closing, if the peer still listens.
            let _ = tokio::time::timeout(FINAL_ACK_TIMEOUT, self.send_ack()).await;
        }
        // Over TLS this sends close_notify, as Centreon's bye does, so the
        // peer sees an orderly end rather than a truncated TLS stream.
        if matches!(self.stream, Transport::Tls(_)) {
            let _ = tokio::time::timeout(FINAL_ACK_TIMEOUT, self.stream.shutdown()).await;
        }
        self.stats.closed();
        result
    }

    async fn run_inner(&mut self, role: Role) -> Result<(), SessionError> {
        match self.run_until_stopped(role).await {
            Err(SessionError::Stopping) => Ok(()),
            other => other,
        }
    }

    async fn run_until_stopped(&mut self, role: Role) -> Result<(), SessionError> {
        let Some(()) = self.handshake(role).await? else {
            return Ok(());
        };
        self.last_ack = Instant::now();
        loop {
            self.drain().await?;
            if self.stop.is_cancelled() {
                let _ = tokio::time::timeout(FINAL_ACK_TIMEOUT, self.send_ack()).await;
                return Ok(());
            }
            self.maybe_ack().await?;
            let stall_at = self.stall_deadline();
            let mid_event = stall_at.is_some();
            let stall_at = stall_at.unwrap_or_else(Instant::now);
            let ack_due = self.last_ack + self.config.ack_interval;
            let pending = self.unacked > 0;
            let stall = self.config.stall_timeout;
            let wake = {
                let stream = &mut self.stream;
                let raw = &mut self.raw;
                raw.reserve(READ_CHUNK);
                tokio::select! {
                    r = stream.read_buf(raw) => Wake::Read(r),
                    _ = tokio::time::sleep_until(ack_due), if pending => Wake::AckTimer,
                    _ = tokio::time::sleep_until(stall_at), if mid_event => Wake::Stalled,
                    _ = self.stop.cancelled() => Wake::Stop,
                }
            };
            match wake {
                Wake::AckTimer => continue,
                Wake::Stalled => return Err(SessionError::Stalled(stall)),
                Wake::Stop => {
                    // Acknowledge what is held before going.
                    let _ = tokio::time::timeout(FINAL_ACK_TIMEOUT, self.send_ack()).await;
                    return Ok(());
                }
                Wake::Read(Ok(0)) => return self.closed_by_peer().await,
                Wake::Read(Ok(_)) => self.after_read()?,
                Wake::Read(Err(e)) => return Err(e.into()),
            }
        }
    }

    /// Whole packets (and compressed chunks) read so far.
    fn progress(&self) -> u64 {
        self.deframer.packets + self.chunks
    }

    /// When the session gives up on the packet it is in the middle of;
    /// `None` between events. The clock starts when the first bytes that do
    /// not make a whole packet yet were read (about when the last packet
    /// was finished, or when the first byte after a silence came) and only
    /// a finished packet restarts it.
    fn stall_deadline(&mut self) -> Option<Instant> {
        if !self.mid_event() {
            self.unfinished_since = None;
            return None;
        }
        let progress = self.progress();
        let since = match self.unfinished_since {
            Some((since, at)) if at == progress => since,
            _ => {
                let now = Instant::now();
                self.unfinished_since = Some((now, progress));
                now
            }
        };
        Some(since + self.config.stall_timeout)
    }

    fn mid_event(&self) -> bool {
        let buf = if self.mode == Mode::Compressed {
            &self.plain
        } else {
            &self.raw
        };
        !self.raw.is_empty() || self.deframer.mid_event(buf)
    }

    async fn closed_by_peer(&mut self) -> Result<(), SessionError> {
        let _ = tokio::time::timeout(FINAL_ACK_TIMEOUT, self.send_ack()).await;
        if self.stopped_by_peer {
            return Ok(());
        }
        if self.events_after_handshake == 0 && self.peer_offers_tls && self.raw.is_empty() {
            return Err(SessionError::TlsRequired);
        }
        let left = self.raw.len() + self.plain.len();
        if self.mid_event() {
            return Err(SessionError::ClosedMidEvent(left));
        }
        Ok(())
    }

    /// Reads until one packet is whole, for the handshake.
    async fn read_packet(&mut self) -> Result<Packet, SessionError> {
        loop {
            let packet = self.deframer.next(&mut self.raw);
            self.notices()?;
            if let Some(p) = packet {
                return Ok(p);
            }
            self.raw.reserve(READ_CHUNK);
            if self.stream.read_buf(&mut self.raw).await? == 0 {
                return Err(SessionError::ClosedDuringHandshake);
            }
        }
    }

    /// `None` when asked to stop before the handshake finished.
    async fn handshake(&mut self, role: Role) -> Result<Option<()>, SessionError> {
        // TLS first, as Centreon lists (and applies) it.
        let mut ours: Vec<&str> = Vec::new();
        if self.config.tls.is_some() {
            ours.push(handshake::TLS);
        }
        if self.config.compression {
            ours.push(handshake::COMPRESSION);
        }
        let name = self.config.broker_name.clone();
        if let Role::Connect(version) = role {
            let mut out = BytesMut::new();
            handshake::encode(version, &ours, &name, &mut out);
            self.write_out(&out).await?;
        }
        let timeout = self.config.handshake_timeout;
        let stop = self.stop.clone();
        let packet = tokio::select! {
            r = tokio::time::timeout(timeout, self.read_packet()) => match r {
                Ok(p) => p?,
                Err(_) => return Err(SessionError::HandshakeTimeout(timeout)),
            },
            _ = stop.cancelled() => return Ok(None),
        };
        let hello = handshake::parse(&packet)?;
        let version = match role {
            Role::Accept => {
                let answer = handshake::answer_version(hello.version)?;
                let mut out = BytesMut::new();
                handshake::encode(answer, &ours, &name, &mut out);
                self.write_out(&out).await?;
                answer
            }
            Role::Connect(version) => {
                handshake::check_version(version, hello.version)?;
                version
            }
        };
        self.version = version;
        let peer_tls = hello.offers(handshake::TLS);
        let counters = Arc::clone(&self.stats.tls_counters);
        let tls = self.config.tls.clone();
        match (&tls, peer_tls) {
            (Some(tls), true) => match self.start_tls(tls).await? {
                Some(()) => {}
                None => return Ok(None),
            },
            (Some(tls), false) if tls.setting == TlsSetting::Yes => {
                counters.refused_by_peer.fetch_add(1, Ordering::Relaxed);
                let m = format!(
                    "TLS is mandatory here (tls = yes) but peer {} does not list it: continuing in clear, as Centreon does",
                    self.peer
                );
                tracing::error!("BBDO: {m}");
                self.stats.error(m);
            }
            (None, true) => {
                counters.offered_while_off.fetch_add(1, Ordering::Relaxed);
                self.peer_offers_tls = true;
                tracing::info!(
                    "BBDO peer {} offers TLS, which is off here (tls = no): continuing in clear",
                    self.peer
                );
            }
            _ => {}
        }
        let agreed: Vec<String> = ours
            .iter()
            .filter(|e| hello.offers(e))
            .map(|e| e.to_string())
            .collect();
        if agreed.iter().any(|e| e == handshake::COMPRESSION) {
            self.mode = Mode::Sniffing;
        }
        tracing::info!(
            "BBDO peer {} connected: version {} (peer {}), extensions [{}]{}",
            self.peer,
            version,
            hello.version,
            agreed.join(" "),
            describe(&hello)
        );
        self.stats.negotiated(version.to_string(), agreed, &hello);
        // Bytes already read after the welcome belong to the stream.
        self.after_read()?;
        Ok(Some(()))
    }

    /// Turns the connection into TLS, right after the welcomes; `None`
    /// when asked to stop meanwhile. A failure is counted and ends this
    /// session only: nothing was read yet, so nothing is lost.
    async fn start_tls(&mut self, tls: &Tls) -> Result<Option<()>, SessionError> {
        let Transport::Plain(stream) = std::mem::replace(&mut self.stream, Transport::Gone) else {
            return Err(SessionError::TlsHandshake("TLS started twice".into()));
        };
        // The peer's first TLS bytes may have come with its welcome.
        let already = self.raw.split();
        let timeout = self.config.handshake_timeout;
        let stop = self.stop.clone();
        let result = tokio::select! {
            r = tokio::time::timeout(timeout, tls.handshake(stream, already)) => r,
            _ = stop.cancelled() => return Ok(None),
        };
        let error = match result {
            Ok(Ok((stream, negotiated))) => {
                tracing::info!(
                    "BBDO peer {}: TLS started ({} mode, {}, {})",
                    self.peer,
                    negotiated.mode.as_str(),
                    negotiated.version,
                    negotiated.cipher
                );
                self.stats.set_tls(&negotiated);
                self.stream = Transport::Tls(Box::new(stream));
                return Ok(Some(()));
            }
            Ok(Err(reason)) => SessionError::TlsHandshake(reason),
            Err(_) => SessionError::TlsTimeout(timeout),
        };
        self.stats
            .tls_counters
            .handshake_failures
            .fetch_add(1, Ordering::Relaxed);
        Err(error)
    }

    /// Moves freshly read bytes to where packets are parsed from.
    fn after_read(&mut self) -> Result<(), SessionError> {
        if self.mode == Mode::Sniffing {
            if self.peer_offers_tls
                && self.raw.len() >= 3
                && self.raw[0] == 0x16
                && self.raw[1] == 3
            {
                return Err(SessionError::TlsStarted);
            }
            match compression::sniff(&self.raw) {
                Sniffed::NeedMore => return Ok(()),
                Sniffed::Plain => self.mode = Mode::Plain,
                Sniffed::Compressed => {
                    tracing::info!("BBDO peer {} sends compressed data", self.peer);
                    self.mode = Mode::Compressed;
                    self.write_compressed = true;
                    self.stats.set_compressed();
                }
            }
        } else if self.mode == Mode::Plain
            && self.peer_offers_tls
            && self.events_after_handshake == 0
            && self.raw.len() >= 3
            && self.raw[0] == 0x16
            && self.raw[1] == 3
        {
            return Err(SessionError::TlsStarted);
        }
        Ok(())
    }

    fn next_packet(&mut self) -> Result<Option<Packet>, SessionError> {
        let packet = match self.mode {
            Mode::Plain => self.deframer.next(&mut self.raw),
            Mode::Compressed => loop {
                if let Some(packet) = self.deframer.next(&mut self.plain) {
                    break Some(packet);
                }
                // One chunk at a time, as packets are taken: many small
                // chunks that each inflate to the limit never pile up.
                let limit = compression::chunk_limit(self.config.max_event_bytes);
                match compression::decompress_chunk(&mut self.raw, &mut self.plain, limit) {
                    Ok(true) => {
                        self.chunks += 1;
                        continue;
                    }
                    Ok(false) => break None,
                    Err(e) => {
                        if matches!(e, compression::CompressionError::TooLarge { .. }) {
                            self.stats.oversized_events.fetch_add(1, Ordering::Relaxed);
                        }
                        return Err(e.into());
                    }
                }
            },
            Mode::Sniffing => None,
        };
        if self.deframer.has_notices() {
            self.notices()?;
        }
        Ok(packet)
    }

    /// Handles every whole packet buffered, then hands the batch over.
    async fn drain(&mut self) -> Result<(), SessionError> {
        let before = self.events_after_handshake;
        loop {
            let packet = match self.next_packet() {
                Ok(Some(packet)) => packet,
                Ok(None) => break,
                Err(e) => {
                    // The events before the bad part are good: have the
                    // sink take them, so the last ack covers them.
                    self.flush().await?;
                    return Err(e);
                }
            };
            self.on_packet(packet).await?;
            if self.pending.len() >= BATCH_MAX {
                self.flush().await?;
                self.maybe_ack().await?;
            }
        }
        self.notices()?;
        if self.events_after_handshake > before {
            // Once per read rather than per event: it takes a lock.
            self.stats.event_seen();
        }
        self.flush().await?;
        Ok(())
    }

    /// Logs and counts what the deframer noticed; an oversized event ends
    /// the session.
    fn notices(&mut self) -> Result<(), SessionError> {
        let stats = &self.stats;
        let mut fatal = None;
        stats
            .crc_errors
            .store(self.deframer.crc_errors, Ordering::Relaxed);
        stats
            .bytes_skipped
            .store(self.deframer.bytes_skipped, Ordering::Relaxed);
        for notice in self.deframer.take_notices() {
            match notice {
                Notice::BadCrc => {
                    let m = format!(
                        "peer {} is sending corrupted data: invalid CRC; dropping bytes to resynchronise",
                        self.peer
                    );
                    tracing::warn!("BBDO: {m}");
                    stats.error(m);
                }
                Notice::Resynchronised { skipped } => tracing::warn!(
                    "BBDO: peer {}: resynchronised after dropping {skipped} bytes",
                    self.peer
                ),
                Notice::Oversized { event_type, limit } => {
                    // The deframer held none of it. Closing, rather than
                    // dropping it and going on, keeps it in the peer's
                    // retention until an operator raises the limit; the
                    // session's end logs why.
                    stats.oversized_events.fetch_add(1, Ordering::Relaxed);
                    fatal.get_or_insert(SessionError::EventTooLarge { event_type, limit });
                }
                // What a Centreon writer sends for a protobuf event of an
                // exact multiple of 0xFFFF bytes (docs/bbdo.md §5.4): normal,
                // so not a warning.
                Notice::Interrupted { event_type } => tracing::debug!(
                    "BBDO: peer {}: split event {event_type} had no closing packet; handed on whole",
                    self.peer
                ),
            }
        }
        fatal.map_or(Ok(()), Err)
    }

    async fn on_packet(&mut self, packet: Packet) -> Result<(), SessionError> {
        let ty = packet.event_type;
        if ty.category() == 2 {
            match ty {
                handshake::STOP | handshake::PB_STOP => {
                    tracing::info!("BBDO peer {} is stopping", self.peer);
                    self.flush().await?;
                    self.stopped_by_peer = true;
                    // Answered even when nothing is pending: the peer waits
                    // for it.
                    self.send_ack_always().await?;
                }
                handshake::ACK | handshake::PB_ACK => {}
                _ => tracing::debug!("BBDO peer {}: protocol message {ty} ignored", self.peer),
            }
            return Ok(());
        }
        self.events_after_handshake += 1;
        self.stats.received.fetch_add(1, Ordering::Relaxed);
        match super::decode(ty, &packet.payload) {
            Ok(event) => {
                self.batch.push(event);
                self.pending.push_back(Some(packet));
            }
            Err(e @ DecodeError::UnknownType(_)) => {
                self.pending.push_back(None);
                self.stats.unknown_events.fetch_add(1, Ordering::Relaxed);
                let m = format!("cannot unserialize event: {e}; event ignored");
                // A newer broker may send a type we lack all the time: one
                // line per type is enough, the counter tells the rest.
                if self.unknown_logged.insert(ty) {
                    tracing::warn!("BBDO: peer {}: {m} (logged once per type)", self.peer);
                }
                self.stats.error(m);
            }
            Err(e) => {
                self.pending.push_back(None);
                let n = self.stats.decode_errors.fetch_add(1, Ordering::Relaxed);
                let m = format!("cannot decode event: {e}; event dropped");
                if n < DECODE_ERRORS_LOGGED {
                    tracing::warn!("BBDO: peer {}: {m}", self.peer);
                } else if n == DECODE_ERRORS_LOGGED {
                    tracing::warn!(
                        "BBDO: peer {}: more events do not decode; see the decode counter of GET /api/v1/inputs",
                        self.peer
                    );
                }
                self.stats.error(m);
            }
        }
        Ok(())
    }

    /// Hands the batch to the sink, waiting while it is full.
    async fn flush(&mut self) -> Result<(), SessionError> {
        let mut pause = FULL_PAUSE_MIN;
        let mut warned = false;
        // A refused batch is retried in halves down to one event, so that
        // a journal smaller than a batch still takes it piece by piece, and
        // what it took is acknowledged while the rest waits.
        let mut chunk = self.batch.len().max(1);
        loop {
            self.count_held(0);
            if self.batch.is_empty() {
                break;
            }
            let take = chunk.min(self.batch.len());
            let rest = self.batch.split_off(take);
            let events = std::mem::replace(&mut self.batch, rest);
            match self.sink.accept(events).await {
                Ok(_) => {
                    self.stats
                        .ingested
                        .fetch_add(take as u64, Ordering::Relaxed);
                    self.count_held(take);
                    chunk = chunk.saturating_mul(2);
                    if warned {
                        warned = false;
                        tracing::info!(
                            "BBDO peer {}: events are taken again, reading on",
                            self.peer
                        );
                        self.stats.set_state(ConnectionState::Running);
                    }
                    if !self.batch.is_empty() {
                        self.maybe_ack().await?;
                    }
                }
                Err(Refusal::Closed) => return Err(SessionError::Stopping),
                Err(Refusal::Later(error)) => {
                    // The sink took the events: decode them again from the
                    // same bytes, which decoded once already.
                    let mut again: Vec<Event> = self
                        .pending
                        .iter()
                        .flatten()
                        .take(take)
                        .filter_map(|p| super::decode(p.event_type, &p.payload).ok())
                        .collect();
                    again.append(&mut self.batch);
                    self.batch = again;
                    self.stats.ingest_refusals.fetch_add(1, Ordering::Relaxed);
                    if chunk > 1 {
                        chunk = chunk.div_ceil(2);
                        continue;
                    }
                    if !warned {
                        warned = true;
                        let m = format!("{error}; pausing reads until events are taken again");
                        tracing::warn!("BBDO peer {}: {m}", self.peer);
                        self.stats.error(m);
                        self.stats.set_state(ConnectionState::Paused);
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = self.stop.cancelled() => return Err(SessionError::Stopping),
                    }
                    // We were not reading: the peer's packet clock starts
                    // again once we do.
                    self.unfinished_since = None;
                    pause = (pause * 2).min(FULL_PAUSE_MAX);
                }
            }
        }
        Ok(())
    }

    /// Counts for acknowledgement the first `held` decoded events of
    /// `pending`, which the sink now holds, and the undecodable ones
    /// before and right after them.
    fn count_held(&mut self, mut held: usize) {
        while let Some(front) = self.pending.front() {
            match front {
                Some(_) if held == 0 => break,
                Some(_) => held -= 1,
                None => {}
            }
            self.pending.pop_front();
            self.unacked += 1;
        }
    }

    async fn maybe_ack(&mut self) -> Result<(), SessionError> {
        let due = self.unacked >= u64::from(self.config.ack_limit.max(1))
            || (self.unacked > 0 && self.last_ack.elapsed() >= self.config.ack_interval);
        if due {
            self.send_ack().await?;
        }
        Ok(())
    }

    /// Writes to the peer, within the stall timeout: a peer that sends
    /// but never reads would otherwise hold the connection (and its
    /// unacknowledged events' place) for ever once the socket's buffers
    /// are full.
    async fn write_out(&mut self, bytes: &[u8]) -> Result<(), SessionError> {
        let timeout = self.config.stall_timeout;
        match tokio::time::timeout(timeout, self.stream.write_all(bytes)).await {
            Ok(written) => Ok(written?),
            Err(_) => Err(SessionError::NotReading(timeout)),
        }
    }

    async fn send_ack(&mut self) -> Result<(), SessionError> {
        if self.unacked > 0 {
            self.send_ack_always().await?;
        }
        Ok(())
    }

    async fn send_ack_always(&mut self) -> Result<(), SessionError> {
        let count = self.unacked.min(u64::from(u32::MAX)) as u32;
        let mut packets = BytesMut::new();
        handshake::encode_ack(self.version, count, &mut packets);
        let out = if self.write_compressed {
            let mut chunk = BytesMut::new();
            compression::compress(&packets, &mut chunk);
            chunk
        } else {
            packets
        };
        self.write_out(&out).await?;
        self.unacked -= u64::from(count);
        self.last_ack = Instant::now();
        self.stats
            .acknowledged
            .fetch_add(u64::from(count), Ordering::Relaxed);
        Ok(())
    }
}

fn describe(hello: &Hello) -> String {
    let mut s = String::new();
    if let Some(name) = &hello.broker_name {
        if !name.is_empty() {
            s.push_str(&format!(", broker {name}"));
        }
    }
    if let Some(name) = &hello.poller_name {
        if !name.is_empty() {
            s.push_str(&format!(", poller {name}"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::Accepting;

    /// Takes every batch at once, as a journal with room does.
    struct TakeAll;

    impl EventSink for TakeAll {
        fn accept(&self, _events: Vec<Event>) -> Accepting<'_> {
            Box::pin(async { Ok(()) })
        }
    }

    /// A peer that sends events and never reads what we send: over TCP the
    /// kernel buffers megabytes of acks first, so the pipe here holds 64
    /// bytes, and the session must give up after the stall timeout rather
    /// than wait for ever.
    #[tokio::test]
    async fn a_peer_that_never_reads_its_acks_is_closed() {
        let (ours, mut theirs) = tokio::io::duplex(64);
        let config = SessionConfig {
            ack_limit: 1,
            compression: false,
            stall_timeout: Duration::from_millis(200),
            ..SessionConfig::default()
        };
        let stats = ConnectionStats::new("peer".into());
        let session = Session::new(
            ours,
            config,
            Arc::new(TakeAll),
            Arc::clone(&stats),
            CancellationToken::new(),
        );
        let run = tokio::spawn(session.run(Role::Accept));
        let mut hello = BytesMut::new();
        handshake::encode(Version::V2, &[], "peer", &mut hello);
        theirs.write_all(&hello).await.unwrap();
        // Read the answer to the hello, then nothing more.
        let mut answer = [0u8; 256];
        let _ = tokio::time::timeout(Duration::from_millis(200), theirs.read(&mut answer)).await;
        let started = Instant::now();
        let mut id = 0;
        while !run.is_finished() {
            id += 1;
            let event = Event::from_json(&serde_json::json!({
                "_type": 65550, "host_id": id, "state": 0, "output": "x",
                "last_check": 1_732_000_000, "check_interval": 5.0,
            }))
            .unwrap();
            let mut out = BytesMut::new();
            super::super::encode(&event, &mut out);
            // Bounded: a session stuck on its own write stops reading, and
            // this write would wait for ever too.
            let write = tokio::time::timeout(Duration::from_secs(10), theirs.write_all(&out));
            match write.await {
                Ok(Ok(())) => {}
                // The session closed its end.
                Ok(Err(_)) => break,
                Err(_) => panic!("the session neither reads nor closes"),
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            assert!(started.elapsed() < Duration::from_secs(10), "still open");
        }
        let result = run.await.unwrap();
        assert!(
            matches!(result, Err(SessionError::NotReading(t)) if t == Duration::from_millis(200)),
            "{result:?}"
        );
        // A few events were taken and acknowledged before the pipe filled.
        assert!(stats.acknowledged.load(Ordering::Relaxed) >= 1);
    }
}
