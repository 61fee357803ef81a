//! What an output is doing, as the status route and the UI show it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use time::OffsetDateTime;
use tokio::sync::watch;

use super::delivery::ErrorKind;

/// How many flushes an output remembers.
pub const FLUSH_HISTORY: usize = 50;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputState {
    /// Its worker is being set up.
    Starting,
    Running,
    /// The destination or the worker failed; it will try again at
    /// `next_retry_at`.
    Retrying,
    Paused,
    /// Disabled, or the service is stopping.
    Stopped,
    /// A failure that retrying cannot mend (an invalid stored definition).
    Failed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FlushReason {
    /// `max_buffer_size` events were buffered.
    Size,
    /// The oldest buffered event reached `max_buffer_age`.
    Age,
    /// Asked for through the API or the UI.
    Manual,
    /// The worker is stopping (service shutdown, edit, disable).
    Shutdown,
    /// A failed flush tried again.
    Retry,
    /// A Lua output's queue ran dry after a burst, or a second passed while
    /// idle: when Centreon calls a script's `flush()`.
    Idle,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FlushRecord {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub reason: FlushReason,
    /// Events written by this flush.
    pub events: usize,
    pub bytes: usize,
    pub duration_ms: f64,
    pub outcome: FlushOutcome,
    /// `ok`, or what went wrong, in words.
    pub result: String,
}

/// How a flush ended, for code to decide on; `result` says it in words.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FlushOutcome {
    /// Everything was delivered (a Lua `flush()` returned true, or there
    /// was none to call).
    Ok,
    /// The batch is settled, but the destination refused some events for
    /// good: they went to the dead-letter file.
    Refused,
    /// Nothing was settled: the events wait for the next attempt.
    Failed,
}

impl FlushRecord {
    pub fn ok(&self) -> bool {
        self.outcome == FlushOutcome::Ok
    }
}

/// A row of the flush history: one flush, or several consecutive ones that
/// wrote nothing and ended alike (same reason, same result), folded so that
/// a destination outage or an idle output does not push everything else
/// out. Serialized as the flush's fields plus `count` and `first_at`; `at`
/// is the newest.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FoldedFlush {
    #[serde(flatten)]
    pub record: FlushRecord,
    /// How many flushes this row stands for (1 unless folded).
    pub count: u64,
    /// When the first of them ran.
    #[serde(with = "time::serde::rfc3339")]
    pub first_at: OffsetDateTime,
}

impl FoldedFlush {
    fn folds(&self, record: &FlushRecord) -> bool {
        self.record.events == 0
            && record.events == 0
            && self.record.reason == record.reason
            && self.record.outcome == record.outcome
            && self.record.result == record.result
    }
}

impl std::ops::Deref for FoldedFlush {
    type Target = FlushRecord;
    fn deref(&self) -> &FlushRecord {
        &self.record
    }
}

impl std::ops::DerefMut for FoldedFlush {
    fn deref_mut(&mut self) -> &mut FlushRecord {
        &mut self.record
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Counters {
    /// Events read from the journal.
    pub received: u64,
    /// Of those, rejected by the output's filters.
    pub filtered_out: u64,
    /// Events written to the destination.
    pub written: u64,
    /// Events acknowledged (written or filtered out), releasing them.
    pub acknowledged: u64,
    /// Failed flush attempts.
    pub failed: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OutputStatus {
    pub name: String,
    pub state: OutputState,
    pub last_error: Option<String>,
    /// What kind of failure `last_error` is, when a sink or the runtime
    /// could tell: `unavailable` (the destination may take it later) or
    /// `misconfigured` (someone has to act).
    pub last_error_kind: Option<ErrorKind>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_error_at: Option<OffsetDateTime>,
    /// Consecutive failed attempts; 0 once an attempt succeeds.
    pub attempts: u32,
    #[serde(with = "time::serde::rfc3339::option")]
    pub next_retry_at: Option<OffsetDateTime>,
    pub counters: Counters,
    /// The journal position of the last event acknowledged.
    pub position: u64,
    /// Events not yet acknowledged by this output.
    pub queue_depth: u64,
    /// Their size in the journal (estimated from the average record).
    pub queue_bytes: u64,
    /// Events the journal deleted before this output acknowledged them
    /// (retention limits, corruption): never silent.
    pub lost: u64,
    /// Age of the oldest of them.
    pub oldest_pending_age_secs: Option<f64>,
    /// Events buffered in the current batch.
    pub buffered: usize,
    /// `lua` outputs: since when `write()` is paused because the script
    /// holds `lua.event_queue_max_size` events without acknowledging them
    /// (only `flush()` is called meanwhile); `None` while it is not.
    #[serde(with = "time::serde::rfc3339::option")]
    pub held_back_since: Option<OffsetDateTime>,
    pub last_flush: Option<FlushRecord>,
    /// Most recent first; identical consecutive empty flushes folded.
    pub flushes: VecDeque<FoldedFlush>,
    /// HTTP outputs: the status code of the last answer.
    pub last_response_code: Option<u16>,
    /// HTTP outputs: the start of the last answer's body.
    pub last_response_body: Option<String>,
    /// Events the destination refused for good, written to the output's
    /// dead-letter file and acknowledged.
    pub dead_lettered: u64,
    pub last_dead_letter_reason: Option<String>,
    /// Dead letters in the output's file now (a replay's unsettled ones
    /// included), filled in by the supervisor; `None` while the file
    /// cannot be read.
    pub dead_letters_held: Option<u64>,
    /// Judged by the supervisor when the status is read (see
    /// [`super::health`]); `None` only inside a worker.
    pub health: Option<Health>,
    /// Every recorded flush's duration, for `/metrics`.
    #[serde(skip)]
    pub flush_durations: Histogram,
}

/// How an output is doing, as [`super::health`] judges it from the rest
/// of the status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthState {
    Ok,
    Degraded,
    Stalled,
    Failing,
}

impl HealthState {
    pub const ALL: [HealthState; 4] = [
        HealthState::Ok,
        HealthState::Degraded,
        HealthState::Stalled,
        HealthState::Failing,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            HealthState::Ok => "ok",
            HealthState::Degraded => "degraded",
            HealthState::Stalled => "stalled",
            HealthState::Failing => "failing",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Health {
    pub state: HealthState,
    /// Why, in words.
    pub reason: String,
    /// Since when the output has been in this state (as this service has
    /// seen it since it started).
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
}

/// Upper bounds, in seconds, of the flush duration histogram's buckets.
pub const FLUSH_BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A Prometheus-style histogram: cumulative counts per bucket bound.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Histogram {
    /// `counts[i]`: observations at most `FLUSH_BUCKETS[i]`.
    pub counts: [u64; FLUSH_BUCKETS.len()],
    pub count: u64,
    pub sum: f64,
}

impl Histogram {
    pub fn observe(&mut self, value: f64) {
        for (bound, count) in FLUSH_BUCKETS.iter().zip(self.counts.iter_mut()) {
            if value <= *bound {
                *count += 1;
            }
        }
        self.count += 1;
        self.sum += value;
    }
}

impl OutputStatus {
    pub fn new(name: &str, state: OutputState) -> Self {
        OutputStatus {
            name: name.to_owned(),
            state,
            last_error: None,
            last_error_kind: None,
            last_error_at: None,
            attempts: 0,
            next_retry_at: None,
            counters: Counters::default(),
            position: 0,
            queue_depth: 0,
            queue_bytes: 0,
            lost: 0,
            oldest_pending_age_secs: None,
            buffered: 0,
            last_flush: None,
            flushes: VecDeque::new(),
            flush_durations: Histogram::default(),
            last_response_code: None,
            last_response_body: None,
            dead_lettered: 0,
            last_dead_letter_reason: None,
            dead_letters_held: None,
            held_back_since: None,
            health: None,
        }
    }

    pub fn record_flush(&mut self, record: FlushRecord) {
        self.flush_durations.observe(record.duration_ms / 1000.0);
        self.last_flush = Some(record.clone());
        if let Some(newest) = self.flushes.front_mut() {
            if newest.folds(&record) {
                newest.count += 1;
                newest.record = record;
                return;
            }
        }
        if self.flushes.len() == FLUSH_HISTORY {
            self.flushes.pop_back();
        }
        self.flushes.push_front(FoldedFlush {
            first_at: record.at,
            record,
            count: 1,
        });
    }

    pub fn record_error(&mut self, error: String, kind: Option<ErrorKind>, retry_in: Duration) {
        let now = OffsetDateTime::now_utc();
        self.state = OutputState::Retrying;
        self.last_error = Some(error);
        self.last_error_kind = kind;
        self.last_error_at = Some(now);
        self.attempts += 1;
        self.next_retry_at = Some(now + retry_in);
    }

    pub fn record_success(&mut self) {
        self.state = OutputState::Running;
        self.attempts = 0;
        self.next_retry_at = None;
    }
}

/// The one handle that changes an output's status; readers get snapshots
/// through a [`StatusReader`] and never wait for the writer.
///
/// Ownership rule: exactly one `StatusWriter` of an output is live at a
/// time. The supervisor holds it while no worker runs and moves it into the
/// worker it starts; the worker hands it back when it ends. A worker that
/// had to be abandoned keeps its writer, and the supervisor opens a new
/// channel from the last snapshot ([`StatusReader::reopen`]), so whatever
/// the abandoned one still writes reaches no one.
pub struct StatusWriter {
    sender: watch::Sender<Arc<OutputStatus>>,
}

/// Reads an output's status as its writer last published it. Cheap to
/// clone; reading takes a lock only for as long as cloning an `Arc`.
#[derive(Clone)]
pub struct StatusReader {
    receiver: watch::Receiver<Arc<OutputStatus>>,
}

impl StatusWriter {
    pub fn new(name: &str, state: OutputState) -> (StatusWriter, StatusReader) {
        StatusWriter::starting_from(OutputStatus::new(name, state))
    }

    fn starting_from(status: OutputStatus) -> (StatusWriter, StatusReader) {
        let (sender, receiver) = watch::channel(Arc::new(status));
        (StatusWriter { sender }, StatusReader { receiver })
    }

    /// Changes the status and publishes the result. The status is copied
    /// only when a reader still holds the previous snapshot.
    pub fn update<R>(&self, change: impl FnOnce(&mut OutputStatus) -> R) -> R {
        let mut result = None;
        self.sender
            .send_modify(|status| result = Some(change(Arc::make_mut(status))));
        result.expect("send_modify runs its closure once")
    }

    /// What the writer published last.
    pub fn current(&self) -> Arc<OutputStatus> {
        Arc::clone(&self.sender.borrow())
    }

    pub fn set_state(&self, state: OutputState) {
        self.update(|status| status.state = state);
    }

    /// A failure that retrying cannot mend: the output stays `failed`
    /// until its definition changes or it is restarted.
    pub fn fail_for_good(&self, error: String) {
        self.update(|status| {
            status.state = OutputState::Failed;
            status.last_error = Some(error);
            status.last_error_kind = Some(ErrorKind::Misconfigured);
            status.last_error_at = Some(OffsetDateTime::now_utc());
        });
    }
}

impl StatusReader {
    pub fn snapshot(&self) -> Arc<OutputStatus> {
        Arc::clone(&self.receiver.borrow())
    }

    /// A new writer and reader starting from the last snapshot, for when
    /// the writer is lost with an abandoned worker.
    pub fn reopen(&self) -> (StatusWriter, StatusReader) {
        StatusWriter::starting_from(OutputStatus::clone(&self.snapshot()))
    }
}

pub fn age_secs(since: SystemTime) -> f64 {
    SystemTime::now()
        .duration_since(since)
        .unwrap_or_default()
        .as_secs_f64()
}

/// Exponential backoff with full jitter: a random delay between half and
/// all of `base * 2^(attempt-1)`, capped at `max`, so workers that failed
/// together do not retry together.
pub fn backoff(attempt: u32, base: Duration, max: Duration) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
    let ceiling = exp.min(max);
    let jitter: f64 = rand::random::<f64>() * 0.5 + 0.5;
    ceiling.mul_f64(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(30);
        for _ in 0..100 {
            let first = backoff(1, base, max);
            assert!(first >= base / 2 && first <= base);
            let fifth = backoff(5, base, max);
            assert!(fifth >= Duration::from_millis(800) && fifth <= Duration::from_millis(1600));
            assert!(backoff(40, base, max) <= max);
        }
    }

    #[test]
    fn flush_history_is_bounded() {
        let mut status = OutputStatus::new("o", OutputState::Running);
        for i in 0..(FLUSH_HISTORY + 5) {
            status.record_flush(FlushRecord {
                at: OffsetDateTime::now_utc(),
                reason: FlushReason::Size,
                events: i,
                bytes: 0,
                duration_ms: 0.0,
                outcome: FlushOutcome::Ok,
                result: "ok".into(),
            });
        }
        assert_eq!(status.flushes.len(), FLUSH_HISTORY);
        assert_eq!(status.flushes[0].events, FLUSH_HISTORY + 4);
    }

    fn empty(at: i64, reason: FlushReason, result: &str) -> FlushRecord {
        FlushRecord {
            at: OffsetDateTime::from_unix_timestamp(at).unwrap(),
            reason,
            events: 0,
            bytes: 0,
            duration_ms: 1.0,
            outcome: if result == "ok" {
                FlushOutcome::Ok
            } else {
                FlushOutcome::Failed
            },
            result: result.into(),
        }
    }

    #[test]
    fn identical_empty_flushes_fold_into_one_row() {
        let mut status = OutputStatus::new("o", OutputState::Running);
        let mut wrote = empty(1, FlushReason::Size, "ok");
        wrote.events = 3;
        status.record_flush(wrote.clone());
        status.record_flush(wrote);
        for at in 10..40 {
            status.record_flush(empty(at, FlushReason::Retry, "flush() returned false"));
        }
        status.record_flush(empty(50, FlushReason::Manual, "flush() returned false"));
        let rows: Vec<_> = status.flushes.iter().map(|f| (f.count, f.reason)).collect();
        assert_eq!(
            rows,
            [
                (1, FlushReason::Manual),
                (30, FlushReason::Retry),
                (1, FlushReason::Size),
                (1, FlushReason::Size)
            ]
        );
        let folded = &status.flushes[1];
        assert_eq!(folded.first_at.unix_timestamp(), 10);
        assert_eq!(folded.at.unix_timestamp(), 39);
        assert_eq!(status.flush_durations.count, 33);
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["flushes"][1]["count"], 30);
        assert_eq!(json["flushes"][1]["result"], "flush() returned false");
        assert_eq!(json["flushes"][1]["first_at"], "1970-01-01T00:00:10Z");
        assert_eq!(json["flushes"][1]["at"], "1970-01-01T00:00:39Z");
    }
}
