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

use super::auth::{audit, Caller};
use super::error::ApiError;
use super::Context;
use crate::journal::{Reposition, StartAt};
use crate::output::{self, FieldErrors, OutputSpec, ParamType, Parameter};
use crate::store::StoredOutput;

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

pub fn output_json(stored: &StoredOutput) -> Value {
    let spec = &stored.spec;
    let mut object = Map::new();
    object.insert("name".into(), spec.name.clone().into());
    object.insert("kind".into(), spec.kind.clone().into());
    if let Some(path) = &spec.path {
        object.insert("path".into(), path.clone().into());
    }
    object.insert("enabled".into(), spec.enabled.into());
    object.insert("filters".into(), json!({ "category": spec.filters }));
    object.insert(
        "parameters".into(),
        spec.parameters.iter().map(parameter_json).collect(),
    );
    let time = |t: time::OffsetDateTime| t.format(&Rfc3339).unwrap_or_default();
    object.insert("created_at".into(), time(stored.created_at).into());
    object.insert("updated_at".into(), time(stored.updated_at).into());
    Value::Object(object)
}

fn parameter_json(p: &Parameter) -> Value {
    match p.ty {
        ParamType::Password => json!({ "name": p.name, "type": "password" }),
        _ => json!({ "name": p.name, "type": p.ty, "value": p.value }),
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
                Some(_) => errors.add("name", "cannot be changed; create a new output instead"),
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
                            read_parameter(
                                item,
                                None,
                                previous,
                                errors,
                                &format!("parameters[{i}]"),
                            )
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
/// the URL). A number may be given as a JSON number or as text.
fn read_parameter(
    item: &Value,
    name_from_url: Option<&str>,
    previous: Option<&OutputSpec>,
    errors: &mut FieldErrors,
    at: &str,
) -> Option<Parameter> {
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
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) if ty == ParamType::Number => n.to_string(),
        None | Some(Value::Null) if ty == ParamType::Password => {
            match previous
                .and_then(|p| p.parameter(&name))
                .filter(|p| p.ty == ParamType::Password)
            {
                Some(stored) => stored.value.clone(),
                None => {
                    errors.add(&at, "a value is required (no stored password to keep)");
                    return None;
                }
            }
        }
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
    if ty == ParamType::Number {
        if let Err(message) = output::kinds::parse_number(&value) {
            errors.add(&at, message);
            return None;
        }
    }
    Some(Parameter { name, ty, value })
}

/// Validates (adding to the errors found while reading the request), stores
/// and applies a definition, in that order. Callers hold the write lock, so
/// that the store and the running workers see changes in the same order.
pub(super) async fn save(
    ctx: &Context,
    caller: &Caller,
    spec: OutputSpec,
    mut errors: FieldErrors,
    creating: Option<StartAt>,
) -> Result<StoredOutput, ApiError> {
    let mut over = FieldErrors::default();
    output::check_limits(&spec, &ctx.limits, &mut over);
    if !over.is_empty() {
        // Nothing else is checked on a definition past the limits: its
        // errors would repeat the oversized names and values.
        errors.0.extend(over.0);
        return Err(errors.into());
    }
    ctx.supervisor.validate(&spec, &mut errors);
    errors.into_result()?;
    if creating.is_some() {
        let count = ctx.store.count_outputs().await?;
        let max = ctx.limits.max_outputs;
        if count >= max {
            return Err(ApiError::Unprocessable(format!(
                "cannot create another output: {count} exist and limits.max_outputs is {max}; delete one first"
            )));
        }
    }
    if let Some(start) = creating {
        ctx.store.create_output(&spec).await?;
        ctx.supervisor.create_cursor(&spec.name, start);
    } else {
        ctx.store.update_output(&spec).await?;
    }
    ctx.supervisor.apply(spec.clone()).await;
    let stored = ctx.store.get_output(&spec.name).await?;
    let action = if creating.is_some() {
        "output.create"
    } else {
        "output.update"
    };
    // output_json leaves password values out: the audit log never holds one.
    audit(ctx, &caller.name, action, &spec.name, output_json(&stored)).await;
    Ok(stored)
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
    let _write = ctx.writes.lock().await;
    let stored = save(&ctx, &caller, spec, errors, Some(start)).await?;
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
    let _write = ctx.writes.lock().await;
    let previous = ctx.store.get_output(&name).await?.spec;
    let mut spec = OutputSpec::blank(&name);
    let mut errors = FieldErrors::default();
    merge_body(&mut spec, &body, Some(&previous), &mut errors);
    require(&body, &["kind"], &mut errors);
    Ok(Json(output_json(
        &save(&ctx, &caller, spec, errors, None).await?,
    )))
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
    let _write = ctx.writes.lock().await;
    let previous = ctx.store.get_output(&name).await?.spec;
    let mut spec = previous.clone();
    let mut errors = FieldErrors::default();
    merge_body(&mut spec, &body, Some(&previous), &mut errors);
    Ok(Json(output_json(
        &save(&ctx, &caller, spec, errors, None).await?,
    )))
}

pub async fn delete(
    State(ctx): State<Context>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let _write = ctx.writes.lock().await;
    ctx.store.delete_output(&name).await?;
    ctx.supervisor.remove(&name).await;
    audit(&ctx, &caller.name, "output.delete", &name, json!({})).await;
    Ok(StatusCode::NO_CONTENT)
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
    let _write = ctx.writes.lock().await;
    let previous = ctx.store.get_output(&name).await?.spec;
    let mut errors = FieldErrors::default();
    let parameter = read_parameter(
        &body,
        Some(&param),
        Some(&previous),
        &mut errors,
        &format!("parameters.{param}"),
    );
    errors.into_result()?;
    let Some(parameter) = parameter else {
        return Err(ApiError::invalid(
            &format!("parameters.{param}"),
            "invalid parameter",
        ));
    };
    let mut spec = previous;
    let created = match spec.parameters.iter_mut().find(|p| p.name == param) {
        Some(existing) => {
            *existing = parameter.clone();
            false
        }
        None => {
            spec.parameters.push(parameter.clone());
            true
        }
    };
    save(&ctx, &caller, spec, FieldErrors::default(), None).await?;
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
    let _write = ctx.writes.lock().await;
    let mut spec = ctx.store.get_output(&name).await?.spec;
    let before = spec.parameters.len();
    spec.parameters.retain(|p| p.name != param);
    if spec.parameters.len() == before {
        return Err(ApiError::NotFound(format!(
            "output `{name}` has no parameter `{param}`"
        )));
    }
    save(&ctx, &caller, spec, FieldErrors::default(), None).await?;
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

/// Moves an output's cursor, for the API and the detail page's button.
pub async fn reposition(
    ctx: &Context,
    caller: &Caller,
    name: &str,
    to: Reposition,
) -> Result<Json<Value>, ApiError> {
    let _write = ctx.writes.lock().await;
    let position = ctx
        .supervisor
        .reposition(name, to)
        .await
        .ok_or_else(|| ApiError::NotFound(format!("no output named `{name}`")))?;
    tracing::info!(output = name, position, "cursor moved: {to:?}");
    let (action, detail) = match to {
        Reposition::Head => ("output.skip", json!({"position": position})),
        other => (
            "output.replay",
            json!({"from": format!("{other:?}"), "position": position}),
        ),
    };
    audit(ctx, &caller.name, action, name, detail).await;
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

#[derive(Clone, Copy, Debug)]
pub enum Control {
    Pause,
    Resume,
    Restart,
}

pub async fn control(
    ctx: &Context,
    caller: &Caller,
    name: &str,
    what: Control,
) -> Result<Json<Value>, ApiError> {
    use crate::output::ControlError;
    // Taken so that an edit never races a pause into a running worker.
    let _write = ctx.writes.lock().await;
    let state = match what {
        Control::Pause => ctx.supervisor.pause(name).await,
        Control::Resume => ctx.supervisor.resume(name).await,
        Control::Restart => ctx.supervisor.restart(name).await,
    }
    .map_err(|e| match e {
        ControlError::NotFound(_) => ApiError::NotFound(e.to_string()),
        ControlError::Disabled(_) => ApiError::Conflict(e.to_string()),
    })?;
    tracing::info!(output = name, "{what:?} by request");
    let action = match what {
        Control::Pause => "output.pause",
        Control::Resume => "output.resume",
        Control::Restart => "output.restart",
    };
    audit(ctx, &caller.name, action, name, json!({"state": state})).await;
    Ok(Json(json!({ "state": state })))
}

/// Flushes an output now, for the API and the detail page's button.
pub async fn flush_output(
    ctx: &Context,
    caller: &Caller,
    name: &str,
) -> Result<output::status::FlushRecord, ApiError> {
    use crate::output::FlushError;
    let record = ctx.supervisor.flush(name).await.map_err(|e| match e {
        FlushError::NotFound(_) => ApiError::NotFound(e.to_string()),
        FlushError::NotRunning(_) => ApiError::Conflict(e.to_string()),
    })?;
    audit(
        ctx,
        &caller.name,
        "output.flush",
        name,
        json!({"events": record.events, "result": record.result}),
    )
    .await;
    Ok(record)
}

pub async fn flush(
    State(ctx): State<Context>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let record = flush_output(&ctx, &caller, &name).await?;
    serde_json::to_value(record)
        .map(Json)
        .map_err(|e| ApiError::Internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_with_password() -> OutputSpec {
        OutputSpec {
            name: "o".into(),
            kind: "file".into(),
            path: None,
            enabled: true,
            filters: Vec::new(),
            parameters: vec![Parameter {
                name: "secret".into(),
                ty: ParamType::Password,
                value: "hunter2".into(),
            }],
        }
    }

    #[test]
    fn password_values_are_never_rendered() {
        let stored = StoredOutput {
            spec: spec_with_password(),
            created_at: time::OffsetDateTime::UNIX_EPOCH,
            updated_at: time::OffsetDateTime::UNIX_EPOCH,
        };
        let json = output_json(&stored).to_string();
        assert!(!json.contains("hunter2"), "{json}");
        assert!(
            json.contains(r#"{"name":"secret","type":"password"}"#),
            "{json}"
        );
    }

    #[test]
    fn a_password_without_value_keeps_the_stored_one() {
        let previous = spec_with_password();
        let mut errors = FieldErrors::default();
        let kept = read_parameter(
            &json!({"name": "secret", "type": "password"}),
            None,
            Some(&previous),
            &mut errors,
            "parameters[0]",
        );
        assert!(errors.is_empty());
        assert_eq!(kept.map(|p| p.value), Some("hunter2".to_owned()));
        // Without a stored one it is an error, naming the parameter.
        let missing = read_parameter(
            &json!({"name": "other", "type": "password"}),
            None,
            Some(&previous),
            &mut errors,
            "parameters[0]",
        );
        assert!(missing.is_none());
        assert_eq!(errors.0[0].0, "parameters.other");
    }
}
