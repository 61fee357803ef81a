//! `GET /api/v1/outputs/{name}/tail?stage=received&rate=20`: the live tail
//! as server-sent events.
//!
//! Each client gets at most `rate` events per second; the others are
//! skipped and counted, as are those the client lost by falling behind the
//! output's broadcast channel. The worker never waits for a client. Every
//! message carries the running `skipped` count, and a `stats` message
//! every second keeps it current when nothing is shown.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures::Stream;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::broadcast;
use tokio::time::Instant;

use super::error::ApiError;
use super::Context;
use crate::output::tail::{Stage, TailEvent};

pub const DEFAULT_RATE: u32 = 20;
pub const MAX_RATE: u32 = 500;

#[derive(Deserialize)]
pub struct TailQuery {
    stage: Option<String>,
    rate: Option<u32>,
}

struct Client {
    receiver: broadcast::Receiver<Arc<TailEvent>>,
    rate: u32,
    window_start: Instant,
    in_window: u32,
    skipped: u64,
    stats_tick: tokio::time::Interval,
    closing: tokio_util::sync::CancellationToken,
}

impl Client {
    /// The next message to send: an event within the rate, or the periodic
    /// count. None when the output is gone.
    async fn next(&mut self) -> Option<SseEvent> {
        loop {
            tokio::select! {
                _ = self.closing.cancelled() => return None,
                received = self.receiver.recv() => match received {
                    Ok(event) => {
                        let now = Instant::now();
                        if now.duration_since(self.window_start) >= Duration::from_secs(1) {
                            self.window_start = now;
                            self.in_window = 0;
                        }
                        if self.in_window >= self.rate {
                            self.skipped += 1;
                            continue;
                        }
                        self.in_window += 1;
                        let data = json!({
                            "seq": event.seq,
                            "stage": event.stage,
                            "event": event.event,
                            "skipped": self.skipped,
                        });
                        return Some(SseEvent::default().event("tail").data(data.to_string()));
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => self.skipped += n,
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
                _ = self.stats_tick.tick() => {
                    let data = json!({ "skipped": self.skipped });
                    return Some(SseEvent::default().event("stats").data(data.to_string()));
                }
            }
        }
    }
}

pub async fn stream(
    State(ctx): State<Context>,
    Path(name): Path<String>,
    Query(query): Query<TailQuery>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let stage = match query.stage.as_deref() {
        None => Stage::Received,
        Some(s) => Stage::parse(s)
            .ok_or_else(|| ApiError::invalid("stage", "must be one of received, passed, sent"))?,
    };
    let rate = query.rate.unwrap_or(DEFAULT_RATE);
    if rate == 0 || rate > MAX_RATE {
        return Err(ApiError::invalid(
            "rate",
            format!("must be between 1 and {MAX_RATE} events per second"),
        ));
    }
    let tail = ctx
        .supervisor
        .tail(&name)
        .await
        .ok_or_else(|| ApiError::NotFound(format!("no output named `{name}`")))?;
    let client = Client {
        receiver: tail.subscribe(stage),
        rate,
        window_start: Instant::now(),
        in_window: 0,
        skipped: 0,
        stats_tick: tokio::time::interval(Duration::from_secs(1)),
        closing: ctx.closing.clone(),
    };
    // The tail outlives edits of the output; the client holds it so the
    // channel stays open as long as the browser watches.
    let stream = futures::stream::unfold((client, tail), |(mut client, tail)| async move {
        let event = client.next().await?;
        Some((Ok(event), (client, tail)))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
