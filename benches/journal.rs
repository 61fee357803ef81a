//! Ingest throughput of the journal under each fsync policy, against a
//! memory-only baseline that does everything but the disk (encoding the
//! events and keeping them in memory, as the journal does for its tail).
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

    group.bench_function("memory_only", |b| {
        let mut tail: VecDeque<Arc<Entry>> = VecDeque::new();
        let mut seq = 0;
        b.iter_batched(
            || events.clone(),
            |batch| {
                let mut payloads = Vec::with_capacity(batch.len() * 256);
                for event in &batch {
                    encode_event(event, &mut payloads);
                }
                let now = SystemTime::now();
                for event in batch {
                    seq += 1;
                    tail.push_back(Arc::new(Entry {
                        seq,
                        received_at: now,
                        event,
                    }));
                    if tail.len() > 100_000 {
                        tail.pop_front();
                    }
                }
                payloads.len()
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
