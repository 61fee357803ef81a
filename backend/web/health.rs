//! `GET /healthz` (the process answers) and `GET /readyz` (it can do its
//! job: the database answers, the journal writes, the BBDO listeners are
//! bound), with each output's state in the body for the curious.
//!
//! An output that is retrying does not make the service unready: the
//! service is doing its job, holding that output's events in the journal.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Map, Value};

use super::auth::MaybeCaller;
use super::Context;

pub async fn healthz() -> &'static str {
    "ok"
}

/// Anonymous probes (a load balancer, Kubernetes) get the checks; a
/// signed-in caller also gets each output's state and last error, which
/// may name hosts and paths.
pub async fn readyz(
    State(ctx): State<Context>,
    MaybeCaller(caller): MaybeCaller,
) -> (StatusCode, Json<Value>) {
    let store = match ctx.store.ping().await {
        Ok(()) => json!({"ok": true}),
        Err(e) => json!({"ok": false, "error": e.to_string()}),
    };
    let journal = if ctx.journal.is_writable() {
        json!({"ok": true})
    } else {
        json!({"ok": false, "error": "the journal writer is not running"})
    };
    let inputs = ctx.inputs.snapshot();
    let listeners: Vec<String> = inputs
        .listeners
        .iter()
        .map(|l| l.address.to_string())
        .collect();
    let ready = store["ok"] == true && journal["ok"] == true;
    let mut body = json!({
        "ready": ready,
        "checks": {
            "store": store,
            "journal": journal,
            "bbdo_listeners": {"ok": true, "bound": listeners},
        },
    });
    // Probes come every few seconds: the statuses are gathered only for
    // a caller who may read them.
    if caller.is_some() {
        let mut outputs = Map::new();
        for status in ctx.supervisor.statuses().await {
            outputs.insert(
                status.name.clone(),
                json!({
                    "state": status.state,
                    "health": status.health,
                    "last_error": status.last_error,
                }),
            );
        }
        body["outputs"] = Value::Object(outputs);
    }
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body))
}
