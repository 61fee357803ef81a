//! Server-rendered pages.

use askama::Template;
use axum::extract::State;
use axum::response::Html;

use super::error::ApiError;
use super::Context;
use crate::output::OutputState;

struct OutputRow {
    name: String,
    kind: String,
    state: String,
    last_error: String,
    received: u64,
    written: u64,
    queue_depth: u64,
    last_flush: String,
}

#[derive(Template)]
#[template(path = "overview.html")]
struct Overview {
    outputs: Vec<OutputRow>,
    accepted: u64,
    refused: u64,
}

pub async fn overview(State(ctx): State<Context>) -> Result<Html<String>, ApiError> {
    let mut outputs = Vec::new();
    for stored in ctx.store.list_outputs().await? {
        let status = ctx.supervisor.status(&stored.spec.name).await;
        let row = match status {
            Some(s) => OutputRow {
                name: stored.spec.name.clone(),
                kind: stored.spec.kind.clone(),
                state: serde_json::to_value(s.state)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                last_error: s.last_error.clone().unwrap_or_default(),
                received: s.counters.received,
                written: s.counters.written,
                queue_depth: s.queue_depth,
                last_flush: s
                    .last_flush
                    .map(|f| format!("{} ({} events, {})", f.at, f.events, f.result))
                    .unwrap_or_else(|| "never".into()),
            },
            None => OutputRow {
                name: stored.spec.name.clone(),
                kind: stored.spec.kind.clone(),
                state: format!("{:?}", OutputState::Stopped).to_lowercase(),
                last_error: String::new(),
                received: 0,
                written: 0,
                queue_depth: 0,
                last_flush: "never".into(),
            },
        };
        outputs.push(row);
    }
    let (accepted, refused) = ctx.ingest.counts();
    let page = Overview {
        outputs,
        accepted,
        refused,
    };
    page.render()
        .map(Html)
        .map_err(|e| ApiError::Internal(e.to_string()))
}
