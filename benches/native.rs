//! Metric events per second through the `influxdb` encoder: line protocol
//! with the host and service names looked up in the cache, as a native
//! output's worker does for every event it batches.
//!
//! `cargo bench --bench native`

use brokerstream::cache::Cache;
use brokerstream::event::Event;
use brokerstream::output::influxdb::encoder::{Encoder, Precision};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const HOSTS: i64 = 300;
const SERVICES: i64 = 10;

/// A platform of 300 hosts with 10 services each, and a metric per
/// service, as a 1000-event batch sees them.
fn setup() -> (std::sync::Arc<Cache>, Vec<Event>) {
    let cache = Cache::new();
    for h in 1..=HOSTS {
        let host = Event::named("host").expect("host");
        cache.update(&host.with("host_id", h).with("name", format!("srv-{h:03}")));
        for s in 1..=SERVICES {
            let service = Event::named("service").expect("service");
            cache.update(
                &service
                    .with("host_id", h)
                    .with("service_id", h * 100 + s)
                    .with("description", format!("Disk /var {s}")),
            );
        }
    }
    let events = (0..1000i64)
        .map(|i| {
            let h = i % HOSTS + 1;
            let s = i % SERVICES + 1;
            Event::named("metric")
                .expect("metric")
                .with("host_id", h)
                .with("service_id", h * 100 + s)
                .with("metric_id", i)
                .with("name", "used space")
                .with("value", i as f64 * 1.25)
                .with("ctime", 1_732_000_000 + i)
        })
        .collect();
    (cache, events)
}

fn encoder(c: &mut Criterion) {
    let (cache, events) = setup();
    let encoder = Encoder {
        precision: Precision::Seconds,
        status_perfdata: false,
    };
    let mut group = c.benchmark_group("influxdb");
    group.throughput(Throughput::Elements(events.len() as u64));
    let mut out = Vec::with_capacity(128 * 1024);
    group.bench_function("encode 1000 metric events", |b| {
        b.iter(|| {
            out.clear();
            for event in &events {
                encoder.encode(event, &cache, &mut out);
            }
            std::hint::black_box(out.len())
        })
    });
    group.finish();
}

criterion_group!(benches, encoder);
criterion_main!(benches);
