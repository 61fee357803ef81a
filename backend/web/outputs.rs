//! `/api/v1/outputs`: outputs as a REST resource, their parameters as a
//! sub-resource, their status and the flush action.
//!
//! Bodies are read as JSON values and checked field by field, so that a 422
//! names every bad field at once. Password values are write-only: never in a
//! response; a password parameter sent without a value keeps the stored one.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};
use time::format_description::well_known::Rfc3339;

use super::auth::Caller;
use super::error::ApiError;
use super::Context;
pub use crate::control::{output_json, Control};
use crate::control::{parameter_json, ParameterInput};
use crate::journal::{Reposition, StartAt};
use crate::output::{self, FieldErrors, OutputSpec, ParamType};

/// Keys a client may send back unchanged from a GET; they are ignored.
const READ_ONLY_KEYS: &[&str] = &["created_at", "updated_at"];

/// A request body that must be a JSON object (400 otherwise).
pub(super) fn parse_body(body: &Bytes) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::BadRequest(
            "the body must be a JSON object".into(),
        )),
        Err(e) => Err(ApiError::BadRequest(format!(
            "the body is not valid JSON: {e}"
        ))),
    }
}

/// Reads the fields of an output body into `spec`, leaving alone what the
/// body does not mention. `previous` supplies stored password values.
fn merge_body(
    spec: &mut OutputSpec,
    body: &Map<String, Value>,
    previous: Option<&OutputSpec>,
    errors: &mut FieldErrors,
) {
    for (key, value) in body {
        match key.as_str() {
            "name" => match value.as_str() {
                Some(name) if name == spec.name || spec.name.is_empty() => {
                    spec.name = name.to_owned()
                }
                Some(_) => errors.add(
                    "name",
                    "cannot be changed here; use POST /api/v1/outputs/{name}/rename",
                ),
                None => errors.add("name", "must be a string"),
            },
            "kind" => match value.as_str() {
                Some(kind) => spec.kind = kind.to_owned(),
                None => errors.add("kind", "must be a string"),
            },
            "path" => match value {
                Value::Null => spec.path = None,
                Value::String(path) => spec.path = Some(path.clone()),
                _ => errors.add("path", "must be a string"),
            },
            "enabled" => match value.as_bool() {
                Some(enabled) => spec.enabled = enabled,
                None => errors.add("enabled", "must be true or false"),
            },
            "filters" => match read_filters(value) {
                Ok(filters) => spec.filters = filters,
                Err(message) => errors.add("filters", message),
            },
            "parameters" => match value.as_array() {
                Some(items) => {
                    spec.parameters = items
                        .iter()
                        .enumerate()
                        .filter_map(|(i, item)| {
                            let input =
                                read_parameter(item, None, errors, &format!("parameters[{i}]"))?;
                            let at = format!("parameters.{}", input.name);
                            input
                                .resolve(previous)
                                .map_err(|message| errors.add(at, message))
                                .ok()
                        })
                        .collect();
                }
                None => errors.add("parameters", "must be an array of {name, type, value}"),
            },
            key if READ_ONLY_KEYS.contains(&key) => {}
            other => errors.add(other, "unknown field"),
        }
    }
}

/// Centreon's forms: `{"category": [...]}`, `{"category": "neb"}`, `"all"`.
fn read_filters(value: &Value) -> Result<Vec<String>, String> {
    let shape = "must be {\"category\": [names]} or \"all\"";
    match value {
        Value::Null => Ok(Vec::new()),
        Value::String(s) if s == "all" => Ok(Vec::new()),
        Value::Object(map) => {
            if let Some(other) = map.keys().find(|k| *k != "category") {
                return Err(format!("unknown key `{other}`; {shape}"));
            }
            match map.get("category") {
                None | Some(Value::Null) => Ok(Vec::new()),
                Some(Value::String(s)) => Ok(vec![s.clone()]),
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|i| {
                        i.as_str()
                            .map(str::to_owned)
                            .ok_or("category names must be strings".to_owned())
                    })
                    .collect(),
                Some(_) => Err(shape.into()),
            }
        }
        _ => Err(shape.into()),
    }
}

/// Reads `{name, type, value}` (or `{type, value}` when the name comes from
/// the URL). A number may be given as a JSON number or as text; a password
/// may come without a value (the control layer keeps the stored one).
fn read_parameter(
    item: &Value,
    name_from_url: Option<&str>,
    errors: &mut FieldErrors,
    at: &str,
) -> Option<ParameterInput> {
    let Some(object) = item.as_object() else {
        errors.add(at, "must be an object {name, type, value}");
        return None;
    };
    let name = match (name_from_url, object.get("name")) {
        (Some(url), None) => url.to_owned(),
        (Some(url), Some(Value::String(n))) if n == url => url.to_owned(),
        (Some(_), Some(_)) => {
            errors.add(format!("{at}.name"), "must match the name in the URL");
            return None;
        }
        (None, Some(Value::String(n))) if !n.trim().is_empty() => n.clone(),
        (None, _) => {
            errors.add(
                format!("{at}.name"),
                "is required and must be a non-empty string",
            );
            return None;
        }
    };
    let at = format!("parameters.{name}");
    if let Some(other) = object
        .keys()
        .find(|k| !matches!(k.as_str(), "name" | "type" | "value"))
    {
        errors.add(&at, format!("unknown key `{other}`"));
        return None;
    }
    let ty = match object.get("type") {
        None => ParamType::String,
        Some(Value::String(t)) if t.is_empty() => ParamType::String,
        Some(Value::String(t)) => match ParamType::parse(t) {
            Some(ty) => ty,
            None => {
                errors.add(
                    &at,
                    format!("type `{t}` is not one of string, number, password"),
                );
                return None;
            }
        },
        Some(_) => {
            errors.add(&at, "type must be a string");
            return None;
        }
    };
    let value = match object.get("value") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) if ty == ParamType::Number => Some(n.to_string()),
        None | Some(Value::Null) if ty == ParamType::Password => None,
        None | Some(Value::Null) => {
            errors.add(&at, "a value is required");
            return None;
        }
        Some(_) => {
            errors.add(
                &at,
                "the value must be a string (or a number for type number)",
            );
            return None;
        }
    };
    if let (ParamType::Number, Some(value)) = (ty, &value) {
        if let Err(message) = output::kinds::parse_number(value) {
            errors.add(&at, message);
            return None;
        }
    }
    Some(ParameterInput { name, ty, value })
}

pub async fn list(State(ctx): State<Context>) -> Result<Json<Value>, ApiError> {
    let outputs = ctx.store.list_outputs().await?;
    Ok(Json(outputs.iter().map(output_json).collect()))
}

pub async fn create(
    State(ctx): State<Context>,
    caller: Caller,
    body: Bytes,
) -> Result<Response, ApiError> {
    let mut body = parse_body(&body)?;
    let mut spec = OutputSpec::blank("");
    let mut errors = FieldErrors::default();
    // Where a new output starts reading: not part of its definition.
    let start = match body.remove("start_at") {
        None => StartAt::Head,
        Some(Value::String(s)) if s == "head" => StartAt::Head,
        Some(Value::String(s)) if s == "oldest" => StartAt::Oldest,
        Some(_) => {
            errors.add("start_at", "must be \"head\" (default) or \"oldest\"");
            StartAt::Head
        }
    };
    merge_body(&mut spec, &body, None, &mut errors);
    require(&body, &["name", "kind"], &mut errors);
    let stored = ctx.admin.create(&caller.name, spec, errors, start).await?;
    let location = format!("/api/v1/outputs/{}", stored.spec.name);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(output_json(&stored)),
    )
        .into_response())
}

fn require(body: &Map<String, Value>, keys: &[&str], errors: &mut FieldErrors) {
    for key in keys {
        if !body.contains_key(*key) && !errors.0.iter().any(|(f, _)| f == key) {
            errors.add(*key, "is required");
        }
    }
}

pub async fn get(
    State(ctx): State<Context>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(output_json(&ctx.store.get_output(&name).await?)))
}

/// PUT replaces the whole definition: what the body leaves out takes its
/// default (enabled, every event, no parameters).
pub async fn replace(
    State(ctx): State<Context>,
    caller: Caller,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let body = parse_body(&body)?;
    let stored = ctx
        .admin
        .update(&caller.name, &name, |previous, errors| {
            let mut spec = OutputSpec::blank(&name);
            merge_body(&mut spec, &body, Some(previous), errors);
            require(&body, &["kind"], errors);
            spec
        })
        .await?;
    Ok(Json(output_json(&stored)))
}

/// PATCH changes only the fields the body names; `parameters`, when given,
/// is the new list (the parameters sub-resource changes one at a time).
pub async fn patch(
    State(ctx): State<Context>,
    caller: Caller,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let body = parse_body(&body)?;
    let stored = ctx
        .admin
        .update(&caller.name, &name, |previous, errors| {
            let mut spec = previous.clone();
            merge_body(&mut spec, &body, Some(previous), errors);
            spec
        })
        .await?;
    Ok(Json(output_json(&stored)))
}

pub async fn delete(
    State(ctx): State<Context>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    ctx.admin.delete(&caller.name, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The `name` of a `{"name": "..."}` body (rename, clone).
fn new_name(body: &Bytes) -> Result<String, ApiError> {
    let body = parse_body(body)?;
    if let Some(other) = body.keys().find(|k| *k != "name") {
        return Err(ApiError::invalid(other, "unknown field"));
    }
    match body.get("name") {
        Some(Value::String(name)) => Ok(name.clone()),
        Some(_) => Err(ApiError::invalid("name", "must be a string")),
        None => Err(ApiError::invalid("name", "is required")),
    }
}

/// `POST /api/v1/outputs/{name}/rename` with `{"name": "new"}`: the output
/// under its new name, its cursor, dead letters and history kept.
pub async fn rename(
    State(ctx): State<Context>,
    caller: Caller,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let to = new_name(&body)?;
    let stored = ctx.admin.rename(&caller.name, &name, &to).await?;
    ctx.rates.rename(&name, &to);
    let location = format!("/api/v1/outputs/{}", stored.spec.name);
    Ok(([(header::LOCATION, location)], Json(output_json(&stored))).into_response())
}

/// `POST /api/v1/outputs/{name}/clone` with `{"name": "copy"}`: a new,
/// disabled output with the same definition (passwords copied on the
/// server, never shown).
pub async fn clone(
    State(ctx): State<Context>,
    caller: Caller,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let to = new_name(&body)?;
    let stored = ctx.admin.clone_output(&caller.name, &name, &to).await?;
    let location = format!("/api/v1/outputs/{}", stored.spec.name);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(output_json(&stored)),
    )
        .into_response())
}

pub async fn list_parameters(
    State(ctx): State<Context>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let stored = ctx.store.get_output(&name).await?;
    Ok(Json(
        stored.spec.parameters.iter().map(parameter_json).collect(),
    ))
}

pub async fn put_parameter(
    State(ctx): State<Context>,
    caller: Caller,
    Path((name, param)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body = Value::Object(parse_body(&body)?);
    let mut errors = FieldErrors::default();
    let input = read_parameter(
        &body,
        Some(&param),
        &mut errors,
        &format!("parameters.{param}"),
    );
    errors.into_result()?;
    let Some(input) = input else {
        return Err(ApiError::invalid(
            &format!("parameters.{param}"),
            "invalid parameter",
        ));
    };
    let (parameter, created) = ctx.admin.set_parameter(&caller.name, &name, input).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(parameter_json(&parameter))).into_response())
}

pub async fn delete_parameter(
    State(ctx): State<Context>,
    caller: Caller,
    Path((name, param)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    ctx.admin
        .delete_parameter(&caller.name, &name, &param)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn status(
    State(ctx): State<Context>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let status = ctx
        .supervisor
        .status(&name)
        .await
        .ok_or_else(|| ApiError::NotFound(format!("no output named `{name}`")))?;
    serde_json::to_value(status)
        .map(Json)
        .map_err(|e| ApiError::Internal(e.to_string()))
}

/// `GET /outputs/{name}/logs`: the script's last `broker_log` lines, oldest
/// first, levels kept: those sent to Centreon's logger and those the script
/// writes to its own file (`set_parameters`), which an operator could
/// otherwise read only with a shell on the server.
pub async fn logs(
    State(ctx): State<Context>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let tail = ctx
        .supervisor
        .tail(&name)
        .await
        .ok_or_else(|| ApiError::NotFound(format!("no output named `{name}`")))?;
    Ok(Json(json!({
        "lines": tail.logs(),
        "kept": crate::output::tail::LOG_LINES,
    })))
}

/// `GET /outputs/{name}/rates`: events received and delivered per second,
/// over the last two minutes (every 2 s) and the last hour (every minute),
/// oldest first: the detail page's sparklines and hour chart.
pub async fn rates(
    State(ctx): State<Context>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    if ctx.supervisor.status(&name).await.is_none() {
        return Err(ApiError::NotFound(format!("no output named `{name}`")));
    }
    Ok(Json(json!({
        "output": name,
        "recent": ctx.rates.recent(&name),
        "hour": ctx.rates.hour(&name),
    })))
}

/// `POST /outputs/{name}/replay` with `{"from": "oldest"}` or
/// `{"since": "<RFC 3339 time>"}`: delivers again what the journal still
/// holds from there.
pub async fn replay(
    State(ctx): State<Context>,
    caller: Caller,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let body = parse_body(&body)?;
    let to = match (body.get("from"), body.get("since")) {
        (Some(Value::String(from)), None) if from == "oldest" => Reposition::Oldest,
        (None, Some(Value::String(since))) => {
            let time = time::OffsetDateTime::parse(since, &Rfc3339)
                .map_err(|e| ApiError::invalid("since", format!("not an RFC 3339 time: {e}")))?;
            Reposition::Since(time.into())
        }
        _ => {
            return Err(ApiError::invalid(
                "from",
                "give {\"from\": \"oldest\"} or {\"since\": \"<RFC 3339 time>\"}",
            ))
        }
    };
    reposition(&ctx, &caller, &name, to).await
}

/// `POST /outputs/{name}/skip`: drops this output's backlog, resuming at
/// the newest event.
pub async fn skip(
    State(ctx): State<Context>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    reposition(&ctx, &caller, &name, Reposition::Head).await
}

async fn reposition(
    ctx: &Context,
    caller: &Caller,
    name: &str,
    to: Reposition,
) -> Result<Json<Value>, ApiError> {
    let position = ctx.admin.reposition(&caller.name, name, to).await?;
    Ok(Json(json!({ "position": position })))
}

/// `POST /outputs/{name}/pause|resume|restart`: answers with the state
/// the output is in afterwards.
pub async fn pause(
    State(ctx): State<Context>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    control(&ctx, &caller, &name, Control::Pause).await
}

pub async fn resume(
    State(ctx): State<Context>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    control(&ctx, &caller, &name, Control::Resume).await
}

pub async fn restart(
    State(ctx): State<Context>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    control(&ctx, &caller, &name, Control::Restart).await
}

async fn control(
    ctx: &Context,
    caller: &Caller,
    name: &str,
    what: Control,
) -> Result<Json<Value>, ApiError> {
    let state = ctx.admin.control(&caller.name, name, what).await?;
    Ok(Json(json!({ "state": state })))
}

pub async fn flush(
    State(ctx): State<Context>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let record = ctx.admin.flush(&caller.name, &name).await?;
    serde_json::to_value(record)
        .map(Json)
        .map_err(|e| ApiError::Internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_may_come_without_a_value_and_nothing_else_may() {
        let mut errors = FieldErrors::default();
        let kept = read_parameter(
            &json!({"name": "secret", "type": "password"}),
            None,
            &mut errors,
            "parameters[0]",
        );
        assert!(errors.is_empty());
        assert_eq!(kept.map(|p| p.value), Some(None));
        let missing = read_parameter(
            &json!({"name": "other", "type": "string"}),
            None,
            &mut errors,
            "parameters[0]",
        );
        assert!(missing.is_none());
        assert_eq!(errors.0[0].0, "parameters.other");
    }
}
