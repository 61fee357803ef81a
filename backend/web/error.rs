//! One error type for every route, mapped to a status code and a JSON body
//! `{"error": "...", "fields": {"field": "why"}}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use crate::control::AdminError;
use crate::ingest::ndjson::LineError;
use crate::output::lua::scripts::ScriptError;
use crate::output::FieldErrors;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not JSON at all.
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// The body is JSON but some fields are wrong.
    #[error("invalid fields")]
    Invalid(FieldErrors),
    /// Some NDJSON lines are invalid; nothing was accepted.
    #[error("invalid events")]
    InvalidLines(Vec<LineError>),
    /// The request goes past a limit of `[limits]` that no field names (the
    /// number of outputs).
    #[error("{0}")]
    Unprocessable(String),
    /// The body is larger than `limits.max_body_bytes`.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The client took too long to send its request.
    #[error("{0}")]
    Timeout(String),
    /// Ingest is full; the client should retry after a while.
    #[error("{0}")]
    Unavailable(String),
    /// Logged in full with a reference; the client gets only the reference,
    /// since the text may name files, SQL or the destination's answer.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn invalid(field: &str, message: impl Into<String>) -> ApiError {
        let mut errors = FieldErrors::default();
        errors.add(field, message);
        ApiError::Invalid(errors)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Duplicate(_) | StoreError::LastAdmin(_) => {
                ApiError::Conflict(e.to_string())
            }
            StoreError::NotFound(_) | StoreError::Missing(_) => ApiError::NotFound(e.to_string()),
            StoreError::Database(_) | StoreError::Corrupt { .. } => {
                ApiError::Internal(e.to_string())
            }
        }
    }
}

impl From<AdminError> for ApiError {
    fn from(e: AdminError) -> Self {
        match e {
            AdminError::NotFound(m) => ApiError::NotFound(m),
            AdminError::AlreadyExists(m) | AdminError::Conflict(m) => ApiError::Conflict(m),
            AdminError::Invalid(errors) => ApiError::Invalid(errors),
            AdminError::LimitReached(m) => ApiError::Unprocessable(m),
            AdminError::NoWorkers(m) => ApiError::Unavailable(m),
            AdminError::Script(e) => match e {
                ScriptError::BadName(m) => ApiError::invalid("name", m),
                ScriptError::Exists(_) | ScriptError::NotAFile(_) => {
                    ApiError::Conflict(e.to_string())
                }
                ScriptError::NotFound(..) => ApiError::NotFound(e.to_string()),
                ScriptError::Syntax { .. } => ApiError::Unprocessable(e.to_string()),
                ScriptError::TooLarge | ScriptError::NoDirectory | ScriptError::Io(_) => {
                    tracing::error!("scripts: {e}");
                    ApiError::Internal(e.to_string())
                }
            },
            AdminError::Internal(m) => ApiError::Internal(m),
        }
    }
}

impl From<FieldErrors> for ApiError {
    fn from(e: FieldErrors) -> Self {
        ApiError::Invalid(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = match &self {
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, json!({ "error": m })),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, json!({ "error": m })),
            ApiError::Conflict(m) => (StatusCode::CONFLICT, json!({ "error": m })),
            ApiError::Invalid(errors) => {
                let mut fields = Map::new();
                for (field, message) in &errors.0 {
                    match fields.get_mut(field) {
                        Some(Value::String(existing)) => {
                            existing.push_str("; ");
                            existing.push_str(message);
                        }
                        _ => {
                            fields.insert(field.clone(), Value::String(message.clone()));
                        }
                    }
                }
                let summary = errors
                    .0
                    .iter()
                    .map(|(f, m)| format!("{f}: {m}"))
                    .collect::<Vec<_>>()
                    .join("; ");
                (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    json!({ "error": summary, "fields": fields }),
                )
            }
            ApiError::InvalidLines(lines) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({
                    "error": format!("{} invalid line(s); no event of this request was accepted", lines.len()),
                    "accepted": 0,
                    "lines": lines,
                }),
            ),
            ApiError::Unprocessable(m) => (StatusCode::UNPROCESSABLE_ENTITY, json!({ "error": m })),
            ApiError::PayloadTooLarge(m) => (StatusCode::PAYLOAD_TOO_LARGE, json!({ "error": m })),
            ApiError::Timeout(m) => (StatusCode::REQUEST_TIMEOUT, json!({ "error": m })),
            ApiError::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, json!({ "error": m })),
            ApiError::Internal(m) => {
                let reference = format!("{:016x}", rand::random::<u64>());
                tracing::error!(reference = %reference, "internal error: {m}");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({
                        "error": format!("internal error (reference {reference} in the service log)"),
                        "reference": reference,
                    }),
                )
            }
        };
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_internal_error_answers_a_reference_not_its_text() {
        let response = ApiError::Internal("no such table: outputs (/var/lib/x/db.sqlite)".into())
            .into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let body: Value = serde_json::from_slice(&body).unwrap();
        let reference = body["reference"].as_str().unwrap();
        assert_eq!(reference.len(), 16);
        let text = body["error"].as_str().unwrap();
        assert!(text.contains(reference), "{text}");
        assert!(
            !text.contains("outputs") && !text.contains("sqlite"),
            "{text}"
        );
    }
}
