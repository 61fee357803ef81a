//! The decoding and encoding hot paths: BBDO frames, BBDO 2 and BBDO 3
//! events, the JSON form outputs write, and an event as the Lua table a
//! script's write() gets. Throughput is in events.
//!
//! `cargo bench -p brokerstream-bench --bench codec`

use brokerstream::bbdo::{self, frame::Deframer, Packet};
use brokerstream::event::Event;
use brokerstream::ingest::simulator::Checks;
use brokerstream::output::lua::event::to_table;
use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const CAPTURE: &[u8] = include_bytes!("../../tests/data/cbd-21.10/capture-bbdo2.bin");

fn packets() -> Vec<Packet> {
    let mut buf = BytesMut::from(CAPTURE);
    let mut deframer = Deframer::new();
    std::iter::from_fn(|| deframer.next(&mut buf)).collect()
}

/// Status and metric events as an engine produces them, in BBDO 3 form.
fn protobuf_events() -> Vec<Event> {
    let mut checks = Checks::default();
    let mut out = Vec::new();
    while out.len() < 1000 {
        for event in checks.next_check() {
            let name = match event.def().name {
                "host_status" => "HostStatus",
                "service_status" => "ServiceStatus",
                "metric" => "pb_metric",
                _ => continue,
            };
            let mut pb = Event::named(name).expect("catalogue event");
            for (key, value) in event.visible_fields() {
                pb.set(key, value.clone());
            }
            out.push(pb);
        }
    }
    out
}

fn bench(c: &mut Criterion) {
    let packets = packets();
    let events_in_capture = packets.len() as u64;

    let mut group = c.benchmark_group("bbdo");
    group.throughput(Throughput::Elements(events_in_capture));
    group.bench_function("frame_decode_capture", |b| {
        b.iter(|| {
            let mut buf = BytesMut::from(CAPTURE);
            let mut deframer = Deframer::new();
            std::iter::from_fn(|| deframer.next(&mut buf)).count()
        })
    });
    group.bench_function("bbdo2_event_decode_capture", |b| {
        b.iter(|| {
            packets
                .iter()
                .filter_map(|p| bbdo::decode(p.event_type, &p.payload).ok())
                .count()
        })
    });
    let pb: Vec<(brokerstream::event::EventType, Vec<u8>)> = protobuf_events()
        .iter()
        .map(|e| (e.event_type(), bbdo::encode_payload(e)))
        .collect();
    let decodable = pb
        .iter()
        .filter(|(ty, payload)| bbdo::decode(*ty, payload).is_ok())
        .count();
    assert_eq!(decodable, pb.len(), "every protobuf event decodes");
    group.throughput(Throughput::Elements(pb.len() as u64));
    group.bench_function("bbdo3_event_decode", |b| {
        b.iter(|| {
            pb.iter()
                .filter_map(|(ty, payload)| bbdo::decode(*ty, payload).ok())
                .count()
        })
    });
    group.finish();

    let events: Vec<Event> = packets
        .iter()
        .filter_map(|p| bbdo::decode(p.event_type, &p.payload).ok())
        .collect();
    let mut group = c.benchmark_group("json");
    group.throughput(Throughput::Elements(events.len() as u64));
    group.bench_function("event_to_json_line", |b| {
        let mut out = Vec::with_capacity(1 << 20);
        b.iter(|| {
            out.clear();
            for event in &events {
                serde_json::to_writer(&mut out, event).expect("writing to a Vec");
                out.push(b'\n');
            }
            out.len()
        })
    });
    group.finish();

    // What a Lua script's write() receives in API v1: a table per event.
    let lua = mlua::Lua::new();
    let mut group = c.benchmark_group("lua");
    group.throughput(Throughput::Elements(events.len() as u64));
    group.bench_function("event_to_lua_table", |b| {
        b.iter(|| {
            events
                .iter()
                .filter_map(|event| to_table(&lua, event).ok())
                .count()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
