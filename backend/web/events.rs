//! `POST /api/v1/events`: NDJSON ingest.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::header;
use axum::Json;
use futures::StreamExt;
use serde_json::{json, Value};

use super::error::ApiError;
use super::Context;
use crate::ingest::ndjson;

/// A body up to this size is read without waiting for one of the
/// `limits.max_concurrent_ingest` permits: producers posting small batches
/// never queue behind a large one.
pub const SMALL_INGEST_BODY: usize = 256 * 1024;

/// How long the rest of a large body may take to arrive once it holds a
/// permit: a client trickling its body must not keep the others waiting.
pub const LARGE_BODY_DEADLINE: Duration = Duration::from_secs(120);

/// Takes the whole request or none of it (see [`ndjson`]); answers once the
/// journal holds every event.
///
/// The body is parsed line by line as it arrives: what is held of it is
/// the line being read (at most `limits.max_ndjson_line_bytes`), not the
/// body. The events are held in their journal record form (about the size
/// of their JSON) until the journal takes them all (a request is taken
/// whole or not at all), which is what bounds the number of large bodies
/// read at once. Decoded, they would take many times that.
pub async fn ingest(State(ctx): State<Context>, request: Request) -> Result<Json<Value>, ApiError> {
    let limit = ctx.limits.max_body_bytes;
    let too_large = || ApiError::PayloadTooLarge(super::body_limit_message(limit));
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let mut permit = None;
    let mut deadline = None;
    if declared.is_some_and(|n| n > SMALL_INGEST_BODY as u64) {
        permit = Some(acquire(&ctx).await?);
        deadline = Some(tokio::time::Instant::now() + LARGE_BODY_DEADLINE);
    }
    let mut parser = ndjson::Parser::encoding(ctx.limits.max_ndjson_line_bytes);
    let mut body = request.into_body().into_data_stream();
    let mut read = 0usize;
    loop {
        let next = match deadline {
            None => body.next().await,
            Some(at) => tokio::time::timeout_at(at, body.next())
                .await
                .map_err(|_| {
                    ApiError::Timeout(format!(
                        "the request body took longer than {} s to arrive",
                        LARGE_BODY_DEADLINE.as_secs()
                    ))
                })?,
        };
        let Some(chunk) = next else { break };
        let chunk = chunk
            .map_err(|e| ApiError::BadRequest(format!("cannot read the request body: {e}")))?;
        read += chunk.len();
        if read > limit {
            return Err(too_large());
        }
        if permit.is_none() && read > SMALL_INGEST_BODY {
            permit = Some(acquire(&ctx).await?);
            deadline = Some(tokio::time::Instant::now() + LARGE_BODY_DEADLINE);
        }
        parser.feed(&chunk);
    }
    let batch = parser.finish_encoded().map_err(ApiError::InvalidLines)?;
    let accepted = batch.len();
    if accepted > 0 {
        ctx.http_events
            .ingest_encoded(batch)
            .await
            .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    }
    drop(permit);
    Ok(Json(json!({ "accepted": accepted })))
}

async fn acquire(ctx: &Context) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
    ctx.ingest_bodies
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| ApiError::Unavailable("the service is stopping".into()))
}
