//! Ingest throughput of the journal under each fsync policy, against a
//! memory-only baseline that does everything but the disk: encoding the
//! events, keeping them in a tail bounded as the journal's is, and handing
//! them to a reader that keeps up.
//!
//! Read the policies as ratios of the baseline in one run: the machines
//! this runs on are shared and noisy. Criterion measures one variant after
//! the other, so a change of load between them skews its ratios; after it,
//! a plain `cargo bench -p brokerstream-bench --bench journal` (no filter) also runs the variants
//! interleaved batch by batch, where load hits them alike, and prints those
//! ratios.
//!
//! `cargo bench -p brokerstream-bench --bench journal`

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use brokerstream::event::Event;
use brokerstream::ingest::simulator::Checks;
use brokerstream::journal::record::encode_event;
use brokerstream::journal::{Cursor, Entry, FsyncPolicy, Journal, JournalConfig, StartAt};
use criterion::{criterion_group, BatchSize, Criterion, Throughput};
use tokio::runtime::Runtime;

/// A batch as a BBDO peer or an NDJSON request brings it: statuses and
/// metrics of a hundred-odd checks.
fn batch(size: usize) -> Vec<Event> {
    let mut checks = Checks::default();
    let mut events = Vec::new();
    while events.len() < size {
        events.extend(checks.next_check());
    }
    events.truncate(size);
    events
}

const POLICIES: [(&str, FsyncPolicy); 3] = [
    ("fsync_never", FsyncPolicy::Never),
    ("fsync_interval_1000ms", FsyncPolicy::Interval(1000)),
    ("fsync_always", FsyncPolicy::Always),
];

/// The baseline. Its state must outlive criterion's samples (criterion
/// calls a bench closure once per sample): the tail is measured in its
/// steady state, full and freeing its oldest event for each new one, as the
/// journal's is.
struct MemoryOnly {
    memory_bytes: usize,
    tail: VecDeque<Arc<Entry>>,
    tail_costs: VecDeque<usize>,
    tail_bytes: usize,
    seq: u64,
}

impl MemoryOnly {
    fn new() -> Self {
        MemoryOnly {
            memory_bytes: JournalConfig::new("unused").memory_bytes,
            tail: VecDeque::new(),
            tail_costs: VecDeque::new(),
            tail_bytes: 0,
            seq: 0,
        }
    }

    fn append(&mut self, batch: Vec<Event>) -> usize {
        let size = batch.len();
        let mut payloads = Vec::with_capacity(batch.len() * 256);
        let mut ends = Vec::with_capacity(batch.len());
        for event in &batch {
            encode_event(event, &mut payloads);
            ends.push(payloads.len());
        }
        let now = SystemTime::now();
        let mut start = 0;
        for (event, end) in batch.into_iter().zip(ends) {
            self.seq += 1;
            let entry = Arc::new(Entry {
                seq: self.seq,
                received_at: now,
                event,
            });
            let cost = entry.memory_cost(end - start);
            start = end;
            self.tail_bytes += cost;
            self.tail_costs.push_back(cost);
            self.tail.push_back(entry);
        }
        while self.tail_bytes > self.memory_bytes {
            self.tail.pop_front();
            self.tail_bytes -= self.tail_costs.pop_front().unwrap_or(0);
        }
        // The reader that keeps up, as the journal's: it gets the batch from
        // memory.
        let read: Vec<Arc<Entry>> = self
            .tail
            .iter()
            .skip(self.tail.len().saturating_sub(size))
            .cloned()
            .collect();
        read.len() + payloads.len()
    }
}

/// A journal in a temporary directory with a reader that keeps up, as a
/// healthy output does: segments are released as it acknowledges.
struct Durable {
    journal: Arc<Journal>,
    cursor: Cursor,
    _dir: tempfile::TempDir,
}

impl Durable {
    fn open(fsync: FsyncPolicy) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let journal = Journal::open(JournalConfig {
            fsync,
            max_bytes: u64::MAX,
            ..JournalConfig::new(dir.path())
        })
        .expect("journal");
        let cursor = journal.cursor("bench", StartAt::Head);
        Durable {
            journal,
            cursor,
            _dir: dir,
        }
    }

    fn append(&mut self, runtime: &Runtime, batch: Vec<Event>) -> usize {
        let size = batch.len();
        let seq = runtime
            .block_on(self.journal.append(batch))
            .expect("append");
        let read = self.cursor.read(size);
        self.cursor.ack(seq);
        read.len()
    }
}

impl Drop for Durable {
    fn drop(&mut self) {
        self.journal.close();
    }
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
}

fn ingest(c: &mut Criterion) {
    // 100: an HTTP request; 1000: what a BBDO peer sends between acks.
    for size in [100, 1000] {
        ingest_batches(c, size);
    }
}

fn ingest_batches(c: &mut Criterion, size: usize) {
    let events = batch(size);
    let runtime = runtime();
    let mut group = c.benchmark_group(format!("journal_append_{size}"));
    group.throughput(Throughput::Elements(events.len() as u64));

    let mut memory_only = MemoryOnly::new();
    group.bench_function("memory_only", |b| {
        b.iter_batched(
            || events.clone(),
            |batch| memory_only.append(batch),
            BatchSize::SmallInput,
        )
    });

    for (name, fsync) in POLICIES {
        let mut durable = Durable::open(fsync);
        group.bench_function(name, |b| {
            b.iter_batched(
                || events.clone(),
                |batch| durable.append(&runtime, batch),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

/// Every variant appends one batch in turn, each timed alone, for about
/// `duration`; prints each variant's throughput and its ratio to the
/// baseline.
fn interleaved(size: usize, duration: Duration) {
    let events = batch(size);
    let runtime = runtime();
    let mut memory_only = MemoryOnly::new();
    let mut durables: Vec<(&str, Durable)> = POLICIES
        .iter()
        .map(|&(name, fsync)| (name, Durable::open(fsync)))
        .collect();
    let mut memory_time = Duration::ZERO;
    let mut durable_times = vec![Duration::ZERO; durables.len()];
    // Untimed rounds first, so that every tail is full, as in criterion's
    // warm-up.
    let warm_up = 200;
    let mut rounds = 0u64;
    let started = Instant::now();
    while rounds < warm_up || started.elapsed() < duration {
        let timed = rounds >= warm_up;
        let batch = events.clone();
        let begun = Instant::now();
        std::hint::black_box(memory_only.append(batch));
        if timed {
            memory_time += begun.elapsed();
        }
        for ((_, durable), time) in durables.iter_mut().zip(&mut durable_times) {
            let batch = events.clone();
            let begun = Instant::now();
            std::hint::black_box(durable.append(&runtime, batch));
            if timed {
                *time += begun.elapsed();
            }
        }
        rounds += 1;
    }
    let timed_events = ((rounds - warm_up) * size as u64) as f64;
    let baseline = timed_events / memory_time.as_secs_f64();
    println!(
        "journal_append_{size}, interleaved batch by batch ({} batches each):",
        rounds - warm_up
    );
    println!("  {:24}{:>8.3} M events/s", "memory_only", baseline / 1e6);
    for ((name, _), time) in durables.iter().zip(durable_times) {
        let throughput = timed_events / time.as_secs_f64();
        println!(
            "  {name:24}{:>8.3} M events/s {:>6.1}% of memory_only",
            throughput / 1e6,
            100.0 * throughput / baseline
        );
    }
}

criterion_group!(benches, ingest);

fn main() {
    benches();
    // Only for a plain run: a filter, --list, --test or --profile-time asks
    // for criterion alone.
    if std::env::args().skip(1).all(|arg| arg == "--bench") {
        for size in [100, 1000] {
            interleaved(size, Duration::from_secs(10));
        }
    }
    Criterion::default().configure_from_args().final_summary();
}
