//! `POST /api/v1/events`: NDJSON ingest.

use axum::body::Bytes;
use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use super::error::ApiError;
use super::Context;
use crate::ingest::ndjson;

/// Takes the whole request or none of it (see [`ndjson`]); answers once the
/// journal holds every event.
pub async fn ingest(State(ctx): State<Context>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let events = ndjson::parse_with_limit(&body, ctx.limits.max_ndjson_line_bytes)
        .map_err(ApiError::InvalidLines)?;
    let accepted = events.len();
    if accepted > 0 {
        ctx.ingest
            .ingest(events)
            .await
            .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    }
    Ok(Json(json!({ "accepted": accepted })))
}
