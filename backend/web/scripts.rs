//! `/api/v1/scripts`: the Lua scripts of the script directories, for
//! automation. Listing covers every directory; reading, writing and
//! removing act on the first one (where uploads go), by plain `name.lua`
//! names only.
//!
//! Roles: `GET /scripts` is `viewer`; `GET /scripts/{name}` (a script may
//! hold credentials), `PUT` and `DELETE` (they change what runs) are
//! `admin`.

use super::auth::Caller;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::StreamExt;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;

use super::error::ApiError;
use super::Context;
use crate::control::AdminError;
use crate::output::lua::scripts::{self, ScriptError, ScriptFile, MAX_SCRIPT_BYTES};

/// A body this much over the limit is not read to its end: the connection
/// is closed on it instead.
const DRAIN_LIMIT: usize = 8 * MAX_SCRIPT_BYTES;

fn script_json(script: &ScriptFile) -> Value {
    json!({
        "name": script.name,
        "path": script.path,
        "dir": script.dir.display().to_string(),
        "size": script.size,
        "modified": script.modified.and_then(|t| t.format(&Rfc3339).ok()),
    })
}

fn too_large() -> Response {
    (
        StatusCode::PAYLOAD_TOO_LARGE,
        Json(json!({
            "error": format!("the script is larger than {} KiB", MAX_SCRIPT_BYTES / 1024),
            "limit_bytes": MAX_SCRIPT_BYTES,
        })),
    )
        .into_response()
}

fn script_error(e: ScriptError) -> Response {
    match e {
        ScriptError::BadName(message) => ApiError::invalid("name", message).into_response(),
        ScriptError::TooLarge => too_large(),
        ScriptError::Exists(_) | ScriptError::NotAFile(_) => {
            ApiError::Conflict(e.to_string()).into_response()
        }
        ScriptError::NotFound(..) => ApiError::NotFound(e.to_string()).into_response(),
        ScriptError::Syntax { ref message, line } => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({ "error": e.to_string(), "lua_error": message, "line": line })),
        )
            .into_response(),
        ScriptError::NoDirectory | ScriptError::Io(_) => {
            tracing::error!("scripts: {e}");
            ApiError::Internal(e.to_string()).into_response()
        }
    }
}

/// `GET /api/v1/scripts`: name, `path` (as an output names it), directory,
/// size and modification time of every script an output can run.
pub async fn list(State(ctx): State<Context>) -> Json<Value> {
    let settings = ctx.supervisor.lua_settings().clone();
    let found = tokio::task::spawn_blocking(move || scripts::list(&settings))
        .await
        .unwrap_or_default();
    Json(found.iter().map(script_json).collect())
}

/// `GET /api/v1/scripts/{name}`: the script's text.
pub async fn get(State(ctx): State<Context>, Path(name): Path<String>) -> Response {
    if let Err(message) = scripts::check_name(&name) {
        return ApiError::invalid("name", message).into_response();
    }
    let settings = ctx.supervisor.lua_settings();
    // What an output would run under this name, inside the directories.
    let text = settings
        .resolve_script(&name)
        .ok()
        .and_then(|path| std::fs::read(path).ok());
    match text {
        Some(text) => ([(header::CONTENT_TYPE, "text/x-lua; charset=utf-8")], text).into_response(),
        None => ApiError::NotFound(format!("no script named `{name}`")).into_response(),
    }
}

/// Reads a body of at most [`MAX_SCRIPT_BYTES`]; `None` when larger.
async fn read_limited(body: Body) -> Result<Option<Vec<u8>>, ApiError> {
    let mut stream = body.into_data_stream();
    let mut bytes = Vec::new();
    let mut seen = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::BadRequest(format!("the body could not be read: {e}")))?;
        seen += chunk.len();
        if seen > MAX_SCRIPT_BYTES {
            // Read on a little, so that a client still sending gets the
            // answer rather than a reset connection.
            if seen > DRAIN_LIMIT {
                break;
            }
            continue;
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok((seen <= MAX_SCRIPT_BYTES).then_some(bytes))
}

/// `PUT /api/v1/scripts/{name}` with the script as the raw body: creates
/// (201) or replaces (200) it in the first script directory, atomically.
/// Outputs running a replaced script restart on the new text, as an edit
/// of their definition would. A script Lua cannot compile is refused (422,
/// with Lua's message and its line) and nothing is written.
pub async fn put(
    State(ctx): State<Context>,
    caller: Caller,
    Path(name): Path<String>,
    body: Body,
) -> Response {
    if let Err(message) = scripts::check_name(&name) {
        return ApiError::invalid("name", message).into_response();
    }
    let bytes = match read_limited(body).await {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return too_large(),
        Err(e) => return e.into_response(),
    };
    let (replaced, reloaded) = match ctx.admin.put_script(&caller.name, &name, bytes).await {
        Ok(done) => done,
        Err(AdminError::Script(e)) => return script_error(e),
        Err(e) => return ApiError::from(e).into_response(),
    };
    let script = scripts::list(ctx.supervisor.lua_settings())
        .into_iter()
        .find(|s| s.path == name);
    let mut body = script
        .as_ref()
        .map(script_json)
        .unwrap_or_else(|| json!({ "name": name }));
    body["reloaded"] = json!(reloaded);
    if replaced {
        (StatusCode::OK, Json(body)).into_response()
    } else {
        (
            StatusCode::CREATED,
            [(header::LOCATION, format!("/api/v1/scripts/{name}"))],
            Json(body),
        )
            .into_response()
    }
}

/// `DELETE /api/v1/scripts/{name}`: removes a script of the first
/// directory, unless an output runs it (409, naming them).
pub async fn delete(
    State(ctx): State<Context>,
    caller: Caller,
    Path(name): Path<String>,
) -> Response {
    if let Err(message) = scripts::check_name(&name) {
        return ApiError::invalid("name", message).into_response();
    }
    match ctx.admin.delete_script(&caller.name, &name).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(AdminError::Script(e)) => script_error(e),
        Err(e) => ApiError::from(e).into_response(),
    }
}
