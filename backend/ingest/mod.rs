//! Ingest: every source hands its decoded events here, each through its
//! own [`Feed`] ([`sources`]): BBDO peers (the `bbdo` crate's sessions,
//! behind the listeners and connectors of [`bbdo_sources`]), `POST
//! /api/v1/events` (`web::events`, parsing with [`ndjson`]) and the
//! [`simulator`]. The cache learns from them, then the journal takes them;
//! an event is acknowledged to its producer (a BBDO `ack`, the HTTP answer)
//! only once the journal holds it (docs/architecture.md §1). There is no
//! replay-file source yet: `run-script` reads its file without ingest.

pub mod bbdo_sources;
pub mod ndjson;
pub mod simulator;
pub mod sources;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub use sources::{Feed, Source, SourceKind, SourceSnapshot};

use crate::cache::Cache;
use crate::event::Event;
use crate::journal::{self, AppendError, EncodedBatch, Journal, Seq};

pub struct Ingest {
    journal: Arc<Journal>,
    cache: Arc<Cache>,
    accepted: AtomicU64,
    refused: AtomicU64,
    /// Every source's counters, in the order the sources were made.
    sources: Mutex<Vec<Arc<sources::Counters>>>,
}

impl Ingest {
    pub fn new(journal: Arc<Journal>, cache: Arc<Cache>) -> Arc<Self> {
        Arc::new(Ingest {
            journal,
            cache,
            accepted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            sources: Mutex::new(Vec::new()),
        })
    }

    /// A new source's way in: what it ingests is counted as its own too.
    pub fn feed(self: &Arc<Self>, kind: SourceKind, name: String) -> Arc<Feed> {
        Feed::new(Arc::clone(self), kind, name)
    }

    fn register(&self, counters: Arc<sources::Counters>) {
        crate::sync::lock(&self.sources).push(counters);
    }

    /// Every source, with its counters, in the order they were made.
    pub fn sources(&self) -> Vec<SourceSnapshot> {
        sources::snapshot(&crate::sync::lock(&self.sources))
    }

    /// Takes a batch whole, or refuses it whole when the journal is full.
    /// Resolves once the journal holds the batch as its durability policy
    /// promises: only then may the producer be told the events are safe.
    async fn ingest(&self, events: Vec<Event>) -> Result<Seq, AppendError> {
        let n = events.len() as u64;
        for event in &events {
            self.cache.update(event);
        }
        let appended = self.journal.append(events).await;
        self.tally(n, appended)
    }

    /// [`Ingest::ingest`] for events already in the journal's record form.
    /// The cache learns from them once the journal has written them and
    /// before any output can read them, so a refused batch (journal full)
    /// leaves the cache as it was, and an output finds the names a batch
    /// brings when it reads the batch's statuses.
    async fn ingest_encoded(&self, batch: EncodedBatch) -> Result<Seq, AppendError> {
        let n = batch.len() as u64;
        let cache = self.cache.clone();
        let learn: journal::BeforePublish = Box::new(move |records, ends| {
            for payload in journal::payloads(records, ends) {
                // Metrics, the bulk of large bodies, teach the cache nothing:
                // they are not decoded again.
                if !journal::payload_type_name(payload).is_some_and(Cache::learns_from) {
                    continue;
                }
                if let Ok(event) = journal::decode_payload(payload) {
                    cache.update(&event);
                }
            }
        });
        let appended = self.journal.append_encoded(batch, Some(learn)).await;
        self.tally(n, appended)
    }

    /// Counts `n` events as accepted or refused, by how their append ended.
    fn tally(&self, n: u64, appended: Result<Seq, AppendError>) -> Result<Seq, AppendError> {
        let counter = match appended {
            Ok(_) => &self.accepted,
            Err(_) => &self.refused,
        };
        counter.fetch_add(n, Ordering::Relaxed);
        appended
    }

    /// Events accepted and refused since start.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.accepted.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed),
        )
    }
}
