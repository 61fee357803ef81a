//! `GET /metrics` in Prometheus' text exposition format (version 0.0.4).
//! Written by hand: a dozen families do not need a metrics registry, and
//! every value already lives in the status the API serves.

use std::fmt::Write as _;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::Context;
use crate::journal::HealthState as JournalHealthState;
use crate::output::status::FLUSH_BUCKETS;
use crate::output::OutputState;

const STATES: [OutputState; 6] = [
    OutputState::Starting,
    OutputState::Running,
    OutputState::Retrying,
    OutputState::Paused,
    OutputState::Stopped,
    OutputState::Failed,
];

/// Reads one number of an output's status.
type OutputValue = fn(&crate::output::OutputStatus) -> f64;

/// Prometheus label values escape `\`, `"` and line breaks.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

pub async fn metrics(State(ctx): State<Context>) -> impl IntoResponse {
    let mut out = String::with_capacity(8192);

    let (accepted, refused) = ctx.ingest.counts();
    family(
        &mut out,
        "brokerstream_ingest_events_total",
        "counter",
        "Events offered to the journal, by result.",
    );
    let _ = writeln!(
        out,
        "brokerstream_ingest_events_total{{result=\"accepted\"}} {accepted}"
    );
    let _ = writeln!(
        out,
        "brokerstream_ingest_events_total{{result=\"refused\"}} {refused}"
    );

    let journal = ctx.journal.info();
    family(
        &mut out,
        "brokerstream_journal_bytes",
        "gauge",
        "Bytes of journal segments on disk.",
    );
    let _ = writeln!(out, "brokerstream_journal_bytes {}", journal.bytes);
    family(
        &mut out,
        "brokerstream_journal_max_bytes",
        "gauge",
        "The journal's size limit.",
    );
    let _ = writeln!(out, "brokerstream_journal_max_bytes {}", journal.max_bytes);
    family(
        &mut out,
        "brokerstream_journal_events",
        "gauge",
        "Events held in the journal.",
    );
    let _ = writeln!(out, "brokerstream_journal_events {}", journal.events);
    family(
        &mut out,
        "brokerstream_journal_segments",
        "gauge",
        "Journal segment files.",
    );
    let _ = writeln!(out, "brokerstream_journal_segments {}", journal.segments);
    family(
        &mut out,
        "brokerstream_journal_head_sequence",
        "counter",
        "Sequence number of the newest event.",
    );
    let _ = writeln!(
        out,
        "brokerstream_journal_head_sequence {}",
        journal.head_seq
    );
    family(
        &mut out,
        "brokerstream_journal_memory_tail_events",
        "gauge",
        "Recent events also held in memory.",
    );
    let _ = writeln!(
        out,
        "brokerstream_journal_memory_tail_events {}",
        journal.memory_tail_events
    );
    family(
        &mut out,
        "brokerstream_journal_recovery_lost_events",
        "gauge",
        "Events the last start found lost (corruption, missing segments).",
    );
    let _ = writeln!(
        out,
        "brokerstream_journal_recovery_lost_events {}",
        journal.recovery.events_lost
    );

    family(
        &mut out,
        "brokerstream_journal_fill_ratio",
        "gauge",
        "Journal bytes over its size limit (journal.max_bytes).",
    );
    let _ = writeln!(
        out,
        "brokerstream_journal_fill_ratio {}",
        journal.fill_ratio
    );
    family(
        &mut out,
        "brokerstream_journal_oldest_event_age_seconds",
        "gauge",
        "How long ago the oldest event held was received (0: none held).",
    );
    let _ = writeln!(
        out,
        "brokerstream_journal_oldest_event_age_seconds {}",
        journal.oldest_age_secs.unwrap_or(0)
    );
    family(
        &mut out,
        "brokerstream_journal_full_refusals_total",
        "counter",
        "Appends refused because the journal was full (full_policy = block).",
    );
    let _ = writeln!(
        out,
        "brokerstream_journal_full_refusals_total {}",
        journal.full_refusals
    );
    family(
        &mut out,
        "brokerstream_journal_full_drops_total",
        "counter",
        "Segments deleted to make room (full_policy = drop_oldest).",
    );
    let _ = writeln!(
        out,
        "brokerstream_journal_full_drops_total {}",
        journal.full_drops
    );
    family(
        &mut out,
        "brokerstream_journal_health",
        "gauge",
        "1 for the health the journal is in (ok, degraded above its fill warning, failing while the full policy acts).",
    );
    for state in JournalHealthState::ALL {
        let _ = writeln!(
            out,
            "brokerstream_journal_health{{state=\"{}\"}} {}",
            state.as_str(),
            u8::from(journal.health.state == state)
        );
    }

    let (instances, hosts, services) = ctx.supervisor.cache().counts();
    family(
        &mut out,
        "brokerstream_cache_objects",
        "gauge",
        "Objects in the broker cache.",
    );
    let _ = writeln!(
        out,
        "brokerstream_cache_objects{{kind=\"instance\"}} {instances}"
    );
    let _ = writeln!(out, "brokerstream_cache_objects{{kind=\"host\"}} {hosts}");
    let _ = writeln!(
        out,
        "brokerstream_cache_objects{{kind=\"service\"}} {services}"
    );

    let statuses = ctx.supervisor.statuses().await;
    family(
        &mut out,
        "brokerstream_output_state",
        "gauge",
        "1 for the state each output is in.",
    );
    for s in &statuses {
        for state in STATES {
            let name = serde_json::to_value(state).ok();
            let name = name.as_ref().and_then(|v| v.as_str()).unwrap_or("");
            let _ = writeln!(
                out,
                "brokerstream_output_state{{output=\"{}\",state=\"{name}\"}} {}",
                label(&s.name),
                u8::from(s.state == state)
            );
        }
    }
    family(
        &mut out,
        "brokerstream_output_health",
        "gauge",
        "1 for the health each output is in (ok, degraded, stalled, failing).",
    );
    for s in &statuses {
        let current = s.health.as_ref().map(|h| h.state);
        for state in crate::output::health::HealthState::ALL {
            let _ = writeln!(
                out,
                "brokerstream_output_health{{output=\"{}\",state=\"{}\"}} {}",
                label(&s.name),
                state.as_str(),
                u8::from(current == Some(state))
            );
        }
    }
    family(
        &mut out,
        "brokerstream_output_events_total",
        "counter",
        "Events of each output, by stage.",
    );
    for s in &statuses {
        let c = &s.counters;
        for (stage, value) in [
            ("received", c.received),
            ("filtered_out", c.filtered_out),
            ("written", c.written),
            ("acknowledged", c.acknowledged),
        ] {
            let _ = writeln!(
                out,
                "brokerstream_output_events_total{{output=\"{}\",stage=\"{stage}\"}} {value}",
                label(&s.name)
            );
        }
    }
    let gauges: [(&str, &str, &str, OutputValue); 10] = [
        (
            "brokerstream_output_failed_flushes_total",
            "counter",
            "Failed flush attempts.",
            |s| s.counters.failed as f64,
        ),
        (
            "brokerstream_output_queue_events",
            "gauge",
            "Events not yet acknowledged by the output (its cursor lag).",
            |s| s.queue_depth as f64,
        ),
        (
            "brokerstream_output_queue_bytes",
            "gauge",
            "Journal bytes not yet acknowledged by the output.",
            |s| s.queue_bytes as f64,
        ),
        (
            "brokerstream_output_oldest_pending_age_seconds",
            "gauge",
            "Age of the oldest event not yet acknowledged.",
            |s| s.oldest_pending_age_secs.unwrap_or(0.0),
        ),
        (
            "brokerstream_output_lost_events_total",
            "counter",
            "Events deleted by retention limits or corruption before the output acknowledged them.",
            |s| s.lost as f64,
        ),
        (
            "brokerstream_output_dead_lettered_events_total",
            "counter",
            "Events an HTTP destination refused for good, written to the dead-letter file.",
            |s| s.dead_lettered as f64,
        ),
        (
            "brokerstream_output_dead_letters",
            "gauge",
            "Dead letters held in the output's file now, until replayed or discarded (NaN: the file cannot be read).",
            |s| s.dead_letters_held.map_or(f64::NAN, |n| n as f64),
        ),
        (
            "brokerstream_output_last_response_code",
            "gauge",
            "HTTP status of the destination's last answer (0: none yet).",
            |s| s.last_response_code.map_or(0.0, f64::from),
        ),
        (
            "brokerstream_output_buffered_events",
            "gauge",
            "Events in the output's current batch.",
            |s| s.buffered as f64,
        ),
        (
            "brokerstream_output_held_back",
            "gauge",
            "1 while a lua output's write() is paused at lua.event_queue_max_size unacknowledged events.",
            |s| f64::from(u8::from(s.held_back_since.is_some())),
        ),
    ];
    for (name, kind, help, value) in gauges {
        family(&mut out, name, kind, help);
        for s in &statuses {
            let _ = writeln!(out, "{name}{{output=\"{}\"}} {}", label(&s.name), value(s));
        }
    }
    family(
        &mut out,
        "brokerstream_output_flush_duration_seconds",
        "histogram",
        "Duration of the output's flushes.",
    );
    for s in &statuses {
        let h = &s.flush_durations;
        let output = label(&s.name);
        for (bound, count) in FLUSH_BUCKETS.iter().zip(h.counts) {
            let _ = writeln!(
                out,
                "brokerstream_output_flush_duration_seconds_bucket{{output=\"{output}\",le=\"{bound}\"}} {count}"
            );
        }
        let _ = writeln!(
            out,
            "brokerstream_output_flush_duration_seconds_bucket{{output=\"{output}\",le=\"+Inf\"}} {}",
            h.count
        );
        let _ = writeln!(
            out,
            "brokerstream_output_flush_duration_seconds_sum{{output=\"{output}\"}} {}",
            h.sum
        );
        let _ = writeln!(
            out,
            "brokerstream_output_flush_duration_seconds_count{{output=\"{output}\"}} {}",
            h.count
        );
    }

    family(
        &mut out,
        "brokerstream_source_events_total",
        "counter",
        "Events each source offered to the journal, by result: the HTTP route, each BBDO listener and connector, the simulator.",
    );
    for source in ctx.ingest.sources() {
        let kind = source.kind.as_str();
        let name = label(&source.name);
        for (result, n) in [
            ("accepted", source.events_accepted),
            ("refused", source.events_refused),
        ] {
            let _ = writeln!(
                out,
                "brokerstream_source_events_total{{kind=\"{kind}\",source=\"{name}\",result=\"{result}\"}} {n}"
            );
        }
    }

    let inputs = ctx.inputs.snapshot();
    family(
        &mut out,
        "brokerstream_bbdo_connections",
        "gauge",
        "BBDO connections of each listener and connector, by state.",
    );
    for input in inputs.inputs() {
        let address = label(&input.address);
        let mut by_state = std::collections::BTreeMap::new();
        for c in input.connections {
            *by_state.entry(c.negotiated.state).or_insert(0u64) += 1;
        }
        for (state, n) in by_state {
            let _ = writeln!(
                out,
                "brokerstream_bbdo_connections{{input=\"{address}\",state=\"{}\"}} {n}",
                state.as_str()
            );
        }
    }
    family(
        &mut out,
        "brokerstream_bbdo_refused_connections_total",
        "counter",
        "Connections a BBDO listener closed at once: the peer is not in bbdo.allow.",
    );
    for listener in &inputs.listeners {
        let _ = writeln!(
            out,
            "brokerstream_bbdo_refused_connections_total{{input=\"{}\"}} {}",
            listener.address, listener.connections_refused
        );
    }

    family(
        &mut out,
        "brokerstream_bbdo_over_limit_connections_total",
        "counter",
        "Connections a BBDO listener closed at once: it held bbdo.max_connections sessions.",
    );
    for listener in &inputs.listeners {
        let _ = writeln!(
            out,
            "brokerstream_bbdo_over_limit_connections_total{{input=\"{}\"}} {}",
            listener.address, listener.connections_over_limit
        );
    }

    family(
        &mut out,
        "brokerstream_bbdo_tls_errors_total",
        "counter",
        "BBDO TLS troubles of each listener and connector: offered_while_off (the peer lists TLS, off here), refused_by_peer (tls = yes here, the peer does not list it), handshake_failures.",
    );
    for input in inputs.inputs() {
        let address = label(&input.address);
        let errors = input.tls_errors;
        for (reason, n) in [
            ("offered_while_off", errors.offered_while_off),
            ("refused_by_peer", errors.refused_by_peer),
            ("handshake_failures", errors.handshake_failures),
        ] {
            let _ = writeln!(
                out,
                "brokerstream_bbdo_tls_errors_total{{input=\"{address}\",reason=\"{reason}\"}} {n}"
            );
        }
    }

    http_server(&mut out, &ctx.http_stats);

    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
}

/// The HTTP server's connections and what its limits closed.
fn http_server(out: &mut String, stats: &crate::web::server::HttpStats) {
    use std::sync::atomic::Ordering::Relaxed;
    family(
        out,
        "brokerstream_http_open_connections",
        "gauge",
        "HTTP connections open, TLS handshakes included.",
    );
    let _ = writeln!(
        out,
        "brokerstream_http_open_connections {}",
        stats.open.load(Relaxed)
    );
    for (name, help, value) in [
        (
            "brokerstream_http_refused_connections_total",
            "HTTP connections closed at once: http.max_connections and the reserved slots were all taken.",
            &stats.refused_connections,
        ),
        (
            "brokerstream_http_reserved_connections_total",
            "HTTP connections accepted past http.max_connections, on a reserved slot.",
            &stats.reserved_connections,
        ),
        (
            "brokerstream_http_reserve_refused_requests_total",
            "Requests a reserved HTTP connection answered 503: neither a health check nor from http.reserve_allow.",
            &stats.reserve_refused_requests,
        ),
    ] {
        family(out, name, "counter", help);
        let _ = writeln!(out, "{name} {}", value.load(Relaxed));
    }
    family(
        out,
        "brokerstream_http_timeouts_total",
        "counter",
        "HTTP connections closed by a timeout of [http], by which.",
    );
    for (which, value) in [
        ("header", &stats.header_timeouts),
        ("body", &stats.body_timeouts),
        ("keep_alive", &stats.idle_closed),
    ] {
        let _ = writeln!(
            out,
            "brokerstream_http_timeouts_total{{timeout=\"{which}\"}} {}",
            value.load(Relaxed)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
