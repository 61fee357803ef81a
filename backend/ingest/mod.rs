//! Ingest: every source hands its decoded events here: BBDO peers
//! (`bbdo::connection`, behind listeners and connectors), `POST
//! /api/v1/events` (`web::events`, parsing with [`ndjson`]) and the
//! [`simulator`]. The cache learns from them, then the journal takes them;
//! an event is acknowledged to its producer (a BBDO `ack`, the HTTP answer)
//! only once the journal holds it (docs/architecture.md §1). There is no
//! replay-file source yet: `run-script` reads its file without ingest.

pub mod ndjson;
pub mod simulator;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::cache::Cache;
use crate::event::Event;
use crate::journal::{AppendError, Journal, Seq};

pub struct Ingest {
    journal: Arc<Journal>,
    cache: Arc<Cache>,
    accepted: AtomicU64,
    refused: AtomicU64,
}

impl Ingest {
    pub fn new(journal: Arc<Journal>, cache: Arc<Cache>) -> Arc<Self> {
        Arc::new(Ingest {
            journal,
            cache,
            accepted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        })
    }

    /// Takes a batch whole, or refuses it whole when the journal is full.
    /// Resolves once the journal holds the batch as its durability policy
    /// promises: only then may the producer be told the events are safe.
    pub async fn ingest(&self, events: Vec<Event>) -> Result<Seq, AppendError> {
        let n = events.len() as u64;
        for event in &events {
            self.cache.update(event);
        }
        match self.journal.append(events).await {
            Ok(seq) => {
                self.accepted.fetch_add(n, Ordering::Relaxed);
                Ok(seq)
            }
            Err(e) => {
                self.refused.fetch_add(n, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    /// Events accepted and refused since start.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.accepted.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed),
        )
    }
}
