//! Metric events per second through the `influxdb` encoder: line protocol
//! with the host and service names looked up in the cache, as a native
//! output's worker does for every event it batches.
//!
//! End to end, the same events also go through an `influxdb` output's
//! HTTP sink to a loopback server that answers 204 to everything: encoding,
//! one POST per 1000-event batch, and reading the answer.
//!
//! `cargo bench -p brokerstream-bench --bench native`

use brokerstream::cache::Cache;
use brokerstream::event::Event;
use brokerstream::output::http::HttpSink;
use brokerstream::output::influxdb::encoder::{Encoder, Precision};
use brokerstream::output::influxdb::Influx;
use brokerstream::output::sink::Sink as _;
use brokerstream::output::{OutputSpec, ParamType, Parameter};
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
    let mut encoder = Encoder::new(Precision::Seconds, false);
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

/// A loopback HTTP server that takes every request and answers 204.
async fn blackhole() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("address");
    let router = axum::Router::new()
        .fallback(|_body: axum::body::Bytes| async { axum::http::StatusCode::NO_CONTENT });
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    addr
}

fn end_to_end(c: &mut Criterion) {
    let (cache, events) = setup();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let addr = runtime.block_on(blackhole());
    let mut spec = OutputSpec::blank("bench");
    spec.kind = "influxdb".into();
    let param = |name: &str, ty, value: String| Parameter {
        name: name.into(),
        ty,
        value,
    };
    spec.parameters = vec![
        param("http_server_address", ParamType::String, "127.0.0.1".into()),
        param(
            "http_server_port",
            ParamType::Number,
            addr.port().to_string(),
        ),
        param("influx_database", ParamType::String, "bench".into()),
    ];
    let dir = tempfile::tempdir().expect("temporary directory");
    let service = Influx::from_spec(&spec).expect("influx settings");
    let letters = brokerstream::output::deadletter::DeadLetters::new(dir.path().to_owned());
    let mut sink = runtime
        .block_on(async { HttpSink::new(&spec, Box::new(service), &letters).expect("sink") });
    let mut group = c.benchmark_group("influxdb");
    group.throughput(Throughput::Elements(events.len() as u64));
    let mut out = Vec::with_capacity(128 * 1024);
    group.bench_function("encode and POST 1000 metric events to loopback", |b| {
        b.iter(|| {
            out.clear();
            for event in &events {
                sink.encode(event, &cache, &mut out);
            }
            runtime.block_on(sink.send(&out)).expect("accepted");
            sink.reset();
        })
    });
    group.finish();
}

criterion_group!(benches, encoder, end_to_end);
criterion_main!(benches);
