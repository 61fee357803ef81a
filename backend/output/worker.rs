//! The worker of a native output (every kind but `lua`, whose worker is
//! `lua::worker`): reads its cursor, filters, encodes into a batch,
//! flushes by size, byte size, age, request or shutdown, and acknowledges
//! what the destination accepted. A failed flush keeps its batch and is
//! retried with backoff; events arriving meanwhile wait in the journal.
//! Where a new kind plugs in: docs/architecture.md §4.1.

use std::sync::Arc;
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio::time::sleep_until;

use super::command::Command;
use super::deadletter::DeadLetters;
use super::delivery::DeliveryError;
use super::kinds;
use super::sink::{BuildContext, Sink};
use super::status::{
    backoff, FlushOutcome, FlushReason, FlushRecord, OutputState, OutputStatus, StatusWriter,
};
use super::tail::{Stage, Tail};
use super::{BatchSettings, OutputSpec, Secrets};
use crate::cache::Cache;
use crate::event::Filter;
use crate::journal::{Cursor, Entry, Seq};

pub const RETRY_BASE: Duration = Duration::from_millis(250);
pub const RETRY_MAX: Duration = Duration::from_secs(30);

pub struct Worker<'a> {
    name: String,
    filter: Filter,
    settings: BatchSettings,
    sink: Box<dyn Sink>,
    cursor: Cursor,
    cache: Arc<Cache>,
    /// Borrowed from the task that runs the worker, so that it outlives a
    /// worker that panics; this worker is its only user while it runs.
    status: &'a StatusWriter,
    tail: Arc<Tail>,
    batch: Batch,
    /// When the failed batch is tried again; nothing new is read until then.
    retry_at: Option<Instant>,
    /// Taken out of every error before it is logged or shown.
    secrets: Secrets,
}

#[derive(Default)]
struct Batch {
    bytes: Vec<u8>,
    /// Events encoded into `bytes`.
    events: usize,
    /// Events read (encoded or filtered out) and not yet acknowledged.
    unacked: u64,
    /// The last event read.
    last_seq: Option<Seq>,
    started: Option<Instant>,
    /// The events of the batch, kept only while someone watches the `sent`
    /// tail (and at most [`SENT_TAIL_MAX`] of them).
    tail: Vec<Arc<Entry>>,
}

/// A batch keeps at most this many events for the `sent` tail: the tail
/// samples anyway, and a big batch must not double its memory.
const SENT_TAIL_MAX: usize = 1000;

impl<'a> Worker<'a> {
    /// Builds the worker of an output. Fails only on a definition that
    /// validation should have refused (an output stored by an older version).
    pub fn new(
        spec: &OutputSpec,
        mut cursor: Cursor,
        cache: Arc<Cache>,
        status: &'a StatusWriter,
        tail: Arc<Tail>,
        dead_letters: &Arc<DeadLetters>,
    ) -> Result<Worker<'a>, String> {
        let filter = Filter::parse(&spec.filters).map_err(|e| e.to_string())?;
        let build = kinds::builder(&spec.kind)
            .ok_or_else(|| format!("kind `{}` cannot run in this version", spec.kind))?;
        let sink = build(spec, &BuildContext { dead_letters })?;
        // Whatever the previous worker read without acknowledging comes again.
        cursor.rewind();
        Ok(Worker {
            name: spec.name.clone(),
            filter,
            settings: BatchSettings::from_spec(spec),
            sink,
            cursor,
            cache,
            status,
            tail,
            batch: Batch::default(),
            retry_at: None,
            secrets: Secrets::of(spec),
        })
    }

    pub async fn run(mut self, commands: &mut mpsc::Receiver<Command>) {
        match self.sink.check().await {
            Ok(()) => self.status.update(OutputStatus::record_success),
            Err(error) => self.fail(error),
        }
        loop {
            if self.retry_at.is_none() {
                self.read_available();
            }
            if self.retry_at.is_none() && self.full() {
                self.flush(FlushReason::Size).await;
                continue;
            }
            let age_deadline = self
                .batch
                .started
                .filter(|_| self.retry_at.is_none())
                .map(|t| t + self.settings.max_age);
            let can_read = self.retry_at.is_none() && !self.full();
            tokio::select! {
                biased;
                command = commands.recv() => match command {
                    Some(Command::Flush(reply)) => {
                        let record = self.flush(FlushReason::Manual).await;
                        let _ = reply.send(record);
                    }
                    Some(Command::Stop) | None => {
                        self.flush(FlushReason::Shutdown).await;
                        self.status.set_state(OutputState::Stopped);
                        return;
                    }
                },
                _ = sleep_until_opt(self.retry_at) => {
                    self.flush(FlushReason::Retry).await;
                }
                _ = sleep_until_opt(age_deadline) => {
                    self.flush(FlushReason::Age).await;
                }
                _ = self.cursor.wait(), if can_read => {}
            }
        }
    }

    fn full(&self) -> bool {
        self.batch.events >= self.settings.max_size
            || self.batch.bytes.len() >= self.settings.max_bytes
    }

    /// Moves what the cursor has into the batch, up to `max_size` events.
    fn read_available(&mut self) {
        let room = self.settings.max_size.saturating_sub(self.batch.events);
        if room == 0 || self.full() {
            return;
        }
        let entries = self.cursor.read(room);
        if entries.is_empty() {
            return;
        }
        let (mut received, mut filtered) = (0, 0);
        let watching = self.tail.watching();
        for entry in &entries {
            received += 1;
            self.batch.unacked += 1;
            self.batch.last_seq = Some(entry.seq);
            if watching.stage(Stage::Received) {
                self.tail.publish(Stage::Received, entry.seq, &entry.event);
            }
            if self.filter.accepts(entry.event.event_type()) {
                if watching.stage(Stage::Passed) {
                    self.tail.publish(Stage::Passed, entry.seq, &entry.event);
                }
                if watching.stage(Stage::Sent) && self.batch.tail.len() < SENT_TAIL_MAX {
                    self.batch.tail.push(Arc::clone(entry));
                }
                self.sink
                    .encode(&entry.event, &self.cache, &mut self.batch.bytes);
                self.batch.events += 1;
                self.batch.started.get_or_insert_with(Instant::now);
            } else {
                filtered += 1;
            }
        }
        // Filtered events with nothing buffered before them need no flush:
        // acknowledge them now so they do not hold the journal.
        let acked = if self.batch.events == 0 {
            self.ack()
        } else {
            0
        };
        let buffered = self.batch.events;
        self.status.update(|status| {
            status.counters.received += received;
            status.counters.filtered_out += filtered;
            status.counters.acknowledged += acked;
            status.buffered = buffered;
        });
    }

    fn ack(&mut self) -> u64 {
        let acked = self.batch.unacked;
        if let Some(seq) = self.batch.last_seq {
            self.cursor.ack(seq);
        }
        self.batch.unacked = 0;
        acked
    }

    fn fail(&mut self, error: DeliveryError) {
        let error = error.map_message(|m| self.secrets.redact_owned(m));
        let attempt = self.status.current().attempts + 1;
        let delay = backoff(attempt, RETRY_BASE, RETRY_MAX);
        tracing::warn!(output = %self.name, attempt, retry_in_ms = delay.as_millis() as u64, "{error}");
        self.status
            .update(|status| status.record_error(error.to_string(), Some(error.kind()), delay));
        self.retry_at = Some(Instant::now() + delay);
    }

    /// Sends the batch. On success the batch is acknowledged; on failure it
    /// is kept for the retry.
    async fn flush(&mut self, reason: FlushReason) -> FlushRecord {
        let at = OffsetDateTime::now_utc();
        let started = Instant::now();
        let events = self.batch.events;
        let bytes = self.batch.bytes.len();
        let result = if events == 0 {
            self.sink.check().await
        } else {
            self.sink.send(&self.batch.bytes).await
        };
        let result = result.map_err(|e| e.map_message(|m| self.secrets.redact_owned(m)));
        let report = self.sink.take_report();
        // Events the destination refused went to the dead-letter file: the
        // batch is settled, but it is not "ok", and they were not written.
        let dead = report.dead_lettered;
        let (outcome, text) = match &result {
            Ok(()) if dead > 0 => (
                FlushOutcome::Refused,
                format!(
                    "{dead} of {events} events refused and dead-lettered: {}",
                    report.dead_letter_reason.as_deref().unwrap_or_default()
                ),
            ),
            Ok(()) => (FlushOutcome::Ok, "ok".to_owned()),
            Err(e) => (FlushOutcome::Failed, e.to_string()),
        };
        let record = FlushRecord {
            at,
            reason,
            events,
            bytes,
            duration_ms: started.elapsed().as_secs_f64() * 1000.0,
            outcome,
            result: text,
        };
        self.status.update(|status| {
            if let Some((code, body)) = report.response {
                status.last_response_code = Some(code);
                status.last_response_body = Some(body);
            }
            if dead > 0 {
                status.dead_lettered += dead;
                status.last_dead_letter_reason = report.dead_letter_reason;
            }
        });
        match result {
            Ok(()) => {
                let acked = self.ack();
                self.sink.reset();
                self.batch.bytes.clear();
                for entry in self.batch.tail.drain(..) {
                    self.tail.publish(Stage::Sent, entry.seq, &entry.event);
                }
                self.batch.events = 0;
                self.batch.started = None;
                self.retry_at = None;
                self.status.update(|status| {
                    status.counters.written += (events as u64).saturating_sub(dead);
                    status.counters.acknowledged += acked;
                    status.buffered = 0;
                    status.record_success();
                    if events > 0 || reason == FlushReason::Manual {
                        status.record_flush(record.clone());
                    }
                });
            }
            Err(error) => {
                self.status.update(|status| {
                    status.counters.failed += 1;
                    if events > 0 || reason == FlushReason::Manual {
                        status.record_flush(record.clone());
                    }
                });
                self.fail(error);
            }
        }
        record
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(at) => sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
