//! `GET /api/v1/inputs`: the BBDO listeners and connectors, each of their
//! connections with its peer, negotiated version and extensions, counters
//! and last error.

use axum::extract::State;
use axum::Json;
use serde_json::Value;

use super::Context;

pub async fn list(State(ctx): State<Context>) -> Json<Value> {
    Json(ctx.inputs.snapshot())
}
