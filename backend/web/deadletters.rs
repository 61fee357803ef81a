//! An output's dead letters over HTTP: the paged list (API and the detail
//! page's section), replay and discard (API and the page's forms).

use std::collections::HashMap;

use axum::extract::{Form, Path, Query, State};
use axum::response::Response;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::Caller;
use super::error::ApiError;
use super::flash::Flash;
use super::html::Confirm;
use super::Context;
use crate::control::AdminError;
use crate::output::deadletter::{Page, MAX_PAGE};
use crate::output::redeliver::Redelivery;

/// Letters per page unless `limit` says otherwise.
pub const DEFAULT_PAGE: usize = 50;

/// `offset` and `limit` of a query, checked: a bad value is a 400 naming
/// the parameter, never a silent default.
pub fn paging(query: &HashMap<String, String>) -> Result<(u64, usize), ApiError> {
    let number = |name: &str, max: u64| -> Result<Option<u64>, ApiError> {
        match query.get(name).map(|v| v.trim()) {
            None | Some("") => Ok(None),
            Some(text) => match text.parse::<u64>() {
                Ok(n) if n <= max => Ok(Some(n)),
                _ => Err(ApiError::BadRequest(format!(
                    "{name}: `{text}` is not a whole number from 0 to {max}"
                ))),
            },
        }
    };
    let offset = number("offset", u64::MAX)?.unwrap_or(0);
    let limit = match number("limit", MAX_PAGE as u64)? {
        Some(0) => return Err(ApiError::BadRequest("limit: must be at least 1".into())),
        Some(n) => n as usize,
        None => DEFAULT_PAGE,
    };
    Ok((offset, limit))
}

/// `GET /api/v1/outputs/{name}/deadletters?offset=&limit=`.
pub async fn list(
    State(ctx): State<Context>,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let (offset, limit) = paging(&query)?;
    let page = ctx.admin.dead_letters(&name, offset, limit).await?;
    Ok(Json(page_json(&name, &page, limit)))
}

fn page_json(name: &str, page: &Page, limit: usize) -> Value {
    json!({
        "output": name,
        "held": page.held,
        "replaying": page.replaying,
        "offset": page.offset,
        "limit": limit,
        "letters": page.letters,
    })
}

/// `POST /api/v1/outputs/{name}/deadletters/replay`.
pub async fn replay(
    State(ctx): State<Context>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Redelivery>, ApiError> {
    Ok(Json(
        ctx.admin.replay_dead_letters(&caller.name, &name).await?,
    ))
}

/// `DELETE /api/v1/outputs/{name}/deadletters`.
pub async fn discard(
    State(ctx): State<Context>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let discarded = ctx.admin.discard_dead_letters(&caller.name, &name).await?;
    Ok(Json(json!({ "discarded": discarded })))
}

#[derive(Deserialize)]
pub struct ActionForm {
    action: String,
    /// The discard form's checkbox: a discard cannot be undone, so it is
    /// confirmed on the page itself, with or without JavaScript.
    #[serde(default)]
    confirm: Confirm,
}

/// `POST /outputs/{name}/deadletters`: the detail page's replay and
/// discard buttons; back to the page, where a message says what was done.
pub async fn action(
    State(ctx): State<Context>,
    caller: Caller,
    Path(name): Path<String>,
    Form(form): Form<ActionForm>,
) -> Result<Response, ApiError> {
    let flash = match form.action.as_str() {
        "replay" => match ctx.admin.replay_dead_letters(&caller.name, &name).await {
            Ok(outcome) if outcome.error.is_none() && outcome.refused_again == 0 => {
                Flash::success(replay_notice(&outcome))
            }
            Ok(outcome) => Flash::error(replay_notice(&outcome)),
            Err(AdminError::NotFound(m)) => return Err(ApiError::NotFound(m)),
            Err(e) => Flash::error(format!("Cannot replay the dead letters: {e}")),
        },
        "discard" if !form.confirm.ticked() => Flash::error(
            "Nothing discarded: tick the box to confirm that the dead letters are deleted for good",
        ),
        "discard" => match ctx.admin.discard_dead_letters(&caller.name, &name).await {
            Ok(discarded) => Flash::success(format!("Discarded {discarded} dead letters")),
            Err(AdminError::NotFound(m)) => return Err(ApiError::NotFound(m)),
            Err(e) => Flash::error(format!("Cannot discard the dead letters: {e}")),
        },
        other => Flash::error(format!("Unknown action `{other}`")),
    };
    // To the top of the page, where the message is: the section's anchor
    // would scroll it out of sight.
    let location = format!("/outputs/{}", super::html::form_urlencode(&name));
    Ok(super::flash::redirect_with(&ctx, &caller, &location, flash))
}

fn replay_notice(outcome: &Redelivery) -> String {
    let mut text = format!(
        "Dead letters replayed: {} delivered, {} refused again, {} kept",
        outcome.delivered, outcome.refused_again, outcome.kept
    );
    if let Some(error) = &outcome.error {
        text.push_str(&format!(" (stopped: {error})"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn paging_has_defaults_and_refuses_what_it_cannot_read() {
        assert_eq!(paging(&query(&[])).unwrap(), (0, DEFAULT_PAGE));
        assert_eq!(
            paging(&query(&[("offset", "10"), ("limit", "500")])).unwrap(),
            (10, 500)
        );
        for bad in [
            ("limit", "0"),
            ("limit", "501"),
            ("limit", "-1"),
            ("offset", "x"),
            ("offset", "1.5"),
        ] {
            assert!(paging(&query(&[bad])).is_err(), "{bad:?}");
        }
    }
}
