//! The sources of events, each with its own counters: `POST
//! /api/v1/events`, every BBDO listener and connector, the simulator.
//! A source hands its events to its [`Feed`], which ingests them and
//! counts them as that source's, so that the inputs panel can say where
//! events come from (a total over every source said "HTTP ingest" for
//! 150,000 events a broker sent).
//!
//! A source that runs on its own (everything but the HTTP route, which
//! the web server drives) implements [`Source`], and the service starts
//! and stops them all alike.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::Ingest;
use crate::bbdo::sink::{Accepting, EventSink, Refusal};
use crate::event::Event;
use crate::journal::{AppendError, EncodedBatch, Seq};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// `POST /api/v1/events`.
    Http,
    /// A Centreon Broker connects here.
    BbdoListener,
    /// brokerstream dials a Centreon Broker.
    BbdoConnector,
    /// The built-in simulator (`--simulate`).
    Simulator,
}

impl SourceKind {
    /// As the JSON and the metrics spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Http => "http",
            SourceKind::BbdoListener => "bbdo_listener",
            SourceKind::BbdoConnector => "bbdo_connector",
            SourceKind::Simulator => "simulator",
        }
    }

    /// As the inputs panel labels it.
    pub fn label(self) -> &'static str {
        match self {
            SourceKind::Http => "HTTP",
            SourceKind::BbdoListener => "BBDO listener",
            SourceKind::BbdoConnector => "BBDO connector",
            SourceKind::Simulator => "Simulator",
        }
    }
}

/// A source's counters since the service started.
#[derive(Debug)]
pub(super) struct Counters {
    kind: SourceKind,
    name: String,
    accepted: AtomicU64,
    refused: AtomicU64,
}

/// What `GET /api/v1/inputs` and the pages show of a source.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SourceSnapshot {
    pub kind: SourceKind,
    /// The route, the address listened on or dialled, or the rate.
    pub name: String,
    /// Events the journal took from this source.
    pub events_accepted: u64,
    /// Events refused (a full journal): HTTP answered 503, a BBDO session
    /// paused and offered them again, the simulator waited.
    pub events_refused: u64,
}

impl SourceSnapshot {
    /// The key under which the pages sample this source's rate.
    pub fn series(&self) -> String {
        series_key(self.kind, &self.name)
    }
}

/// Rate series of sources are kept apart from the outputs' by a prefix no
/// output name can have (names are checked to be printable).
pub fn series_key(kind: SourceKind, name: &str) -> String {
    format!("\u{0}{}\u{0}{name}", kind.as_str())
}

/// Whether a rate series is a source's rather than an output's.
pub fn is_source_series(key: &str) -> bool {
    key.starts_with('\u{0}')
}

/// Ingest, as one source sees it: what goes through here is counted as
/// that source's.
pub struct Feed {
    ingest: Arc<Ingest>,
    counters: Arc<Counters>,
}

impl Feed {
    pub(super) fn new(ingest: Arc<Ingest>, kind: SourceKind, name: String) -> Arc<Feed> {
        let counters = Arc::new(Counters {
            kind,
            name,
            accepted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        });
        ingest.register(Arc::clone(&counters));
        Arc::new(Feed { ingest, counters })
    }

    /// [`Ingest::ingest`], counted for this source.
    pub async fn ingest(&self, events: Vec<Event>) -> Result<Seq, AppendError> {
        let n = events.len() as u64;
        let appended = self.ingest.ingest(events).await;
        self.tally(n, appended)
    }

    /// [`Ingest::ingest_encoded`], counted for this source.
    pub async fn ingest_encoded(&self, batch: EncodedBatch) -> Result<Seq, AppendError> {
        let n = batch.len() as u64;
        let appended = self.ingest.ingest_encoded(batch).await;
        self.tally(n, appended)
    }

    fn tally(&self, n: u64, appended: Result<Seq, AppendError>) -> Result<Seq, AppendError> {
        let counter = match appended {
            Ok(_) => &self.counters.accepted,
            Err(_) => &self.counters.refused,
        };
        counter.fetch_add(n, Ordering::Relaxed);
        appended
    }
}

impl EventSink for Feed {
    fn accept(&self, events: Vec<Event>) -> Accepting<'_> {
        Box::pin(async move {
            match self.ingest(events).await {
                Ok(_) => Ok(()),
                Err(AppendError::Closed) => Err(Refusal::Closed),
                // Full, or the disk failed: either may pass, and the broker
                // keeps the events meanwhile.
                Err(e) => Err(Refusal::Later(e.to_string())),
            }
        })
    }
}

pub(super) fn snapshot(counters: &[Arc<Counters>]) -> Vec<SourceSnapshot> {
    counters
        .iter()
        .map(|c| SourceSnapshot {
            kind: c.kind,
            name: c.name.clone(),
            events_accepted: c.accepted.load(Ordering::Relaxed),
            events_refused: c.refused.load(Ordering::Relaxed),
        })
        .collect()
}

pub type Running = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// A source that runs by itself until the service stops it.
pub trait Source: Send + 'static {
    fn kind(&self) -> SourceKind;
    /// As [`SourceSnapshot::name`].
    fn name(&self) -> String;
    /// Reads until `stop`, handing every event to `feed`; returns once
    /// what it was given is acknowledged where the protocol has acks.
    fn run(self: Box<Self>, feed: Arc<Feed>, stop: CancellationToken) -> Running;
}
