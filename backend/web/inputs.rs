//! `GET /api/v1/inputs`: every source of events with its counters and rate
//! (`sources`: the HTTP route, each BBDO listener and connector, the
//! simulator), then the BBDO listeners and connectors in detail, each of
//! their connections with its peer, negotiated version and extensions,
//! counters and last error.

use axum::extract::State;
use axum::Json;
use serde::Serialize;

use super::Context;
use crate::bbdo::inputs::{ConnectorSnapshot, ListenerSnapshot};
use crate::ingest::SourceSnapshot;

#[derive(Serialize)]
pub struct InputsBody {
    sources: Vec<SourceWithRate>,
    listeners: Vec<ListenerSnapshot>,
    connectors: Vec<ConnectorSnapshot>,
}

#[derive(Serialize)]
struct SourceWithRate {
    #[serde(flatten)]
    source: SourceSnapshot,
    /// Events accepted per second over the last sampling interval (2 s);
    /// 0 until two samples exist.
    events_per_second: f64,
}

pub async fn list(State(ctx): State<Context>) -> Json<InputsBody> {
    let sources = ctx
        .ingest
        .sources()
        .into_iter()
        .map(|source| SourceWithRate {
            events_per_second: ctx
                .rates
                .per_second(&source.series())
                .last()
                .copied()
                .unwrap_or(0.0),
            source,
        })
        .collect();
    let bbdo = ctx.inputs.snapshot();
    Json(InputsBody {
        sources,
        listeners: bbdo.listeners,
        connectors: bbdo.connectors,
    })
}
