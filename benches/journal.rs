//! Ingest throughput of the journal under each fsync policy, against a
//! memory-only baseline that does everything but the disk: encoding the
//! events, keeping them in a tail bounded as the journal's is, and handing
//! them to a reader that keeps up.
//! Read the policies as ratios of the baseline in one run: the machines
//! this runs on are shared and noisy.
//!
//! `cargo bench --bench journal`

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::SystemTime;

use brokerstream::event::Event;
use brokerstream::ingest::simulator::Checks;
use brokerstream::journal::record::encode_event;
use brokerstream::journal::{Entry, FsyncPolicy, Journal, JournalConfig, StartAt};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

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

fn ingest(c: &mut Criterion) {
    // 100: an HTTP request; 1000: what a BBDO peer sends between acks.
    for size in [100, 1000] {
        ingest_batches(c, size);
    }
}

fn ingest_batches(c: &mut Criterion, size: usize) {
    let events = batch(size);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group(format!("journal_append_{size}"));
    group.throughput(Throughput::Elements(events.len() as u64));

    // The baseline's state lives outside the closure, which criterion
    // calls once per sample: the tail must be in its steady state (full,
    // freeing its oldest event for each new one) as the journal's is, not
    // start empty each sample and free nothing while timed.
    let memory_bytes = JournalConfig::new("unused").memory_bytes;
    let mut tail: VecDeque<Arc<Entry>> = VecDeque::new();
    let mut tail_costs: VecDeque<usize> = VecDeque::new();
    let mut tail_bytes = 0;
    let mut seq = 0;
    group.bench_function("memory_only", |b| {
        b.iter_batched(
            || events.clone(),
            |batch| {
                let mut payloads = Vec::with_capacity(batch.len() * 256);
                let mut ends = Vec::with_capacity(batch.len());
                for event in &batch {
                    encode_event(event, &mut payloads);
                    ends.push(payloads.len());
                }
                let now = SystemTime::now();
                let mut start = 0;
                for (event, end) in batch.into_iter().zip(ends) {
                    seq += 1;
                    let entry = Arc::new(Entry {
                        seq,
                        received_at: now,
                        event,
                    });
                    let cost = entry.memory_cost(end - start);
                    start = end;
                    tail_bytes += cost;
                    tail_costs.push_back(cost);
                    tail.push_back(entry);
                }
                while tail_bytes > memory_bytes {
                    tail.pop_front();
                    tail_bytes -= tail_costs.pop_front().unwrap_or(0);
                }
                // The reader that keeps up, as below: it gets the batch from
                // memory.
                let read: Vec<Arc<Entry>> = tail
                    .iter()
                    .skip(tail.len().saturating_sub(size))
                    .cloned()
                    .collect();
                read.len() + payloads.len()
            },
            BatchSize::SmallInput,
        )
    });

    for (name, fsync) in [
        ("fsync_never", FsyncPolicy::Never),
        ("fsync_interval_1000ms", FsyncPolicy::Interval(1000)),
        ("fsync_always", FsyncPolicy::Always),
    ] {
        let dir = tempfile::tempdir().expect("temporary directory");
        let journal = Journal::open(JournalConfig {
            fsync,
            max_bytes: u64::MAX,
            ..JournalConfig::new(dir.path())
        })
        .expect("journal");
        // A reader that keeps up, as a healthy output does: segments are
        // released as it acknowledges.
        let mut cursor = journal.cursor("bench", StartAt::Head);
        group.bench_function(name, |b| {
            b.iter_batched(
                || events.clone(),
                |batch| {
                    let seq = runtime.block_on(journal.append(batch)).expect("append");
                    let read = cursor.read(size);
                    cursor.ack(seq);
                    read.len()
                },
                BatchSize::SmallInput,
            )
        });
        journal.close();
    }
    group.finish();
}

criterion_group!(benches, ingest);
criterion_main!(benches);
