//! The Scripts pages: every script of the script directories, and one
//! script of the first (writable) directory shown with line numbers,
//! edited in a plain form, replaced by an upload or deleted. Every change
//! goes through [`crate::control::OutputAdmin`], which checks that Lua can
//! compile the text, restarts the outputs that run it and audits it.
//!
//! Roles follow the scripts API: a viewer lists them; only an admin reads
//! a script's text (it may hold credentials) or changes it.

use std::path::PathBuf;

use askama::Template;
use axum::extract::{Form, Multipart, Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use super::auth::Caller;
use super::error::ApiError;
use super::flash::{redirect_with, Flash};
use super::html::{form_urlencode, render, ConfirmForm};
use super::pages::{full_time, Me};
use super::Context;
use crate::control::AdminError;
use crate::output::lua::scripts::{self, ScriptError, ScriptFile, MAX_SCRIPT_BYTES};
use crate::output::lua::LuaSettings;
use crate::output::OutputSpec;

pub struct ScriptRow {
    pub name: String,
    pub dir: String,
    pub size: u64,
    pub modified: String,
    pub used_by: Vec<String>,
    /// In the first directory: the one the pages read and write.
    pub editable: bool,
}

#[derive(Template)]
#[template(path = "scripts.html")]
struct ScriptList {
    me: Me,
    rows: Vec<ScriptRow>,
    first_dir: String,
}

/// `2026-12-04 21:30:05`, the page's column saying it is UTC.
fn shown_time(file: &ScriptFile) -> String {
    file.modified
        .map(|at| {
            full_time(at)
                .replace('T', " ")
                .trim_end_matches('Z')
                .to_owned()
        })
        .unwrap_or_else(|| "unknown".into())
}

/// The outputs running each script: those whose `path` resolves to the
/// same file, so a name, a full path or a link all count.
fn rows(settings: &LuaSettings, specs: &[OutputSpec]) -> Vec<ScriptRow> {
    let running: Vec<(String, PathBuf)> = specs
        .iter()
        .filter(|s| s.runs_script())
        .filter_map(|s| {
            let path = s.path.as_deref()?;
            Some((s.name.clone(), settings.resolve_script(path).ok()?))
        })
        .collect();
    let first = settings.script_dirs.first();
    scripts::list(settings)
        .into_iter()
        .map(|file| {
            let resolved = settings.resolve_script(&file.path).ok();
            let used_by = running
                .iter()
                .filter(|(_, path)| Some(path) == resolved.as_ref())
                .map(|(name, _)| name.clone())
                .collect();
            ScriptRow {
                modified: shown_time(&file),
                editable: Some(&file.dir) == first,
                dir: file.dir.display().to_string(),
                size: file.size,
                used_by,
                name: file.name,
            }
        })
        .collect()
}

async fn script_rows(ctx: &Context) -> Result<Vec<ScriptRow>, ApiError> {
    let specs: Vec<OutputSpec> = ctx
        .store
        .list_outputs()
        .await?
        .into_iter()
        .map(|o| o.spec)
        .collect();
    let settings = ctx.supervisor.lua_settings().clone();
    tokio::task::spawn_blocking(move || rows(&settings, &specs))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))
}

/// `GET /scripts`.
pub async fn list_page(
    State(ctx): State<Context>,
    caller: Caller,
) -> Result<Html<String>, ApiError> {
    let rows = script_rows(&ctx).await?;
    render(&ScriptList {
        me: Me::with_flash(&ctx, &caller),
        rows,
        first_dir: ctx
            .supervisor
            .lua_settings()
            .script_dirs
            .first()
            .map(|d| d.display().to_string())
            .unwrap_or_default(),
    })
}

pub struct Line {
    pub number: usize,
    pub text: String,
}

/// Lua's refusal of the text in the editor.
pub struct SyntaxShown {
    pub message: String,
    pub line: Option<u32>,
    /// The text of that line, as typed.
    pub excerpt: String,
}

#[derive(Template)]
#[template(path = "script.html")]
struct ScriptPage {
    me: Me,
    name: String,
    row: ScriptRow,
    lines: Vec<Line>,
    /// What the editor holds: the file, or the text refused.
    text: String,
    /// The file is not UTF-8: a textarea would change it, so only an
    /// upload replaces it.
    binary: bool,
    /// The file's digest when the page was made: a save from a page older
    /// than the file is refused rather than undoing another change.
    digest: String,
    error: Option<SyntaxShown>,
    /// The save was refused because the file changed meanwhile.
    conflict: bool,
}

fn digest(bytes: &[u8]) -> String {
    crate::auth::crypto::sha256(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn not_found(name: &str) -> ApiError {
    ApiError::NotFound(format!(
        "no script named `{name}` in the first script directory"
    ))
}

/// The page of script `name`, the editor holding `edited` when given (a
/// refused save), with Lua's `error` beside it.
async fn script_page(
    ctx: &Context,
    caller: &Caller,
    name: &str,
    edited: Option<String>,
    error: Option<SyntaxShown>,
) -> Result<ScriptPage, ApiError> {
    scripts::check_name(name).map_err(|_| not_found(name))?;
    let row = script_rows(ctx)
        .await?
        .into_iter()
        .find(|r| r.editable && r.name == name)
        .ok_or_else(|| not_found(name))?;
    let settings = ctx.supervisor.lua_settings().clone();
    let owned = name.to_owned();
    let bytes = tokio::task::spawn_blocking(move || {
        let path = settings.resolve_script(&owned).ok()?;
        std::fs::read(path).ok()
    })
    .await
    .ok()
    .flatten()
    .ok_or_else(|| not_found(name))?;
    let digest = digest(&bytes);
    let (text, binary) = match String::from_utf8(bytes) {
        Ok(text) => (text, false),
        Err(e) => (String::from_utf8_lossy(e.as_bytes()).into_owned(), true),
    };
    let lines = text
        .lines()
        .enumerate()
        .map(|(i, line)| Line {
            number: i + 1,
            text: line.to_owned(),
        })
        .collect();
    Ok(ScriptPage {
        me: Me::with_flash(ctx, caller),
        name: name.to_owned(),
        row,
        lines,
        text: edited.unwrap_or(text),
        binary,
        digest,
        error,
        conflict: false,
    })
}

/// `GET /scripts/{name}`.
pub async fn script(
    State(ctx): State<Context>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Html<String>, ApiError> {
    render(&script_page(&ctx, &caller, &name, None, None).await?)
}

fn script_url(name: &str) -> String {
    format!("/scripts/{}", form_urlencode(name))
}

/// What saving did, for the flash: the restart of the outputs running it
/// is said, since their state changes with it.
fn saved_message(name: &str, reloaded: &[String]) -> String {
    if reloaded.is_empty() {
        format!("Saved {name}. No output runs it, so none was restarted.")
    } else {
        format!(
            "Saved {name}. The outputs running it restarted on the new text: {}.",
            reloaded.join(", ")
        )
    }
}

/// Saves `bytes` as script `name`: back to its page with a message, or the
/// page again with Lua's error beside the editor, which keeps `shown`.
async fn save(
    ctx: &Context,
    caller: &Caller,
    name: &str,
    bytes: Vec<u8>,
    shown: Option<String>,
) -> Result<Response, ApiError> {
    // Only a script that exists is edited here: a name typed in the URL
    // does not create one.
    let exists = scripts::check_name(name).is_ok()
        && ctx
            .supervisor
            .lua_settings()
            .script_dirs
            .first()
            .is_some_and(|dir| dir.join(name).is_file());
    if !exists {
        return Err(not_found(name));
    }
    match ctx.admin.put_script(&caller.name, name, bytes).await {
        Ok((_, reloaded)) => Ok(redirect_with(
            ctx,
            caller,
            &script_url(name),
            Flash::success(saved_message(name, &reloaded)),
        )),
        Err(AdminError::Script(ScriptError::Syntax { message, line })) => {
            let excerpt = line
                .zip(shown.as_deref())
                .and_then(|(n, text)| text.lines().nth((n as usize).checked_sub(1)?))
                .map(|l| l.trim().to_owned())
                .unwrap_or_default();
            let error = SyntaxShown {
                message,
                line,
                excerpt,
            };
            let page = script_page(ctx, caller, name, shown, Some(error)).await?;
            Ok((StatusCode::UNPROCESSABLE_ENTITY, render(&page)?).into_response())
        }
        Err(e) => Ok(redirect_with(
            ctx,
            caller,
            &script_url(name),
            refusal("Not saved", e),
        )),
    }
}

/// A refusal as the page tells it, internals left to the service log.
fn refusal(what: &str, e: AdminError) -> Flash {
    match e {
        AdminError::Internal(_) | AdminError::Script(ScriptError::Io(_)) => {
            tracing::error!("scripts page: {e}");
            Flash::error(format!(
                "{what}: an internal error occurred; the service log has the details"
            ))
        }
        other => Flash::error(format!("{what}: {other}")),
    }
}

#[derive(Deserialize)]
pub struct EditForm {
    #[serde(default)]
    text: String,
    /// The digest of the file the editor started from.
    #[serde(default)]
    base: String,
}

/// `POST /scripts/{name}`: the editor's text.
pub async fn edit(
    State(ctx): State<Context>,
    caller: Caller,
    Path(name): Path<String>,
    Form(form): Form<EditForm>,
) -> Result<Response, ApiError> {
    // Browsers send a textarea's lines ended by CRLF whatever the file
    // had; Lua scripts are LF files, and a diff against the old one should
    // show only what was changed.
    let text = form.text.replace("\r\n", "\n");
    // The check and the write are not one step, so two saves racing still
    // race; this catches the common case of a page left open.
    let mut page = script_page(&ctx, &caller, &name, Some(text.clone()), None).await?;
    if !form.base.is_empty() && form.base != page.digest {
        page.conflict = true;
        return Ok((StatusCode::CONFLICT, render(&page)?).into_response());
    }
    save(&ctx, &caller, &name, text.clone().into_bytes(), Some(text)).await
}

/// `POST /scripts/{name}/upload`: a file replacing the script, whatever
/// the file's own name.
pub async fn upload(
    State(ctx): State<Context>,
    caller: Caller,
    Path(name): Path<String>,
    mut multipart: Multipart,
) -> Result<Response, ApiError> {
    let bad = |e: axum::extract::multipart::MultipartError| {
        ApiError::BadRequest(format!("the form could not be read: {e}"))
    };
    let mut file = None;
    while let Some(mut field) = multipart.next_field().await.map_err(bad)? {
        if field.name() != Some("script_file") {
            continue;
        }
        let mut bytes = Vec::new();
        let mut too_big = false;
        while let Some(chunk) = field.chunk().await.map_err(bad)? {
            if bytes.len() + chunk.len() > MAX_SCRIPT_BYTES {
                too_big = true;
                break;
            }
            bytes.extend_from_slice(&chunk);
        }
        if too_big {
            return Ok(redirect_with(
                &ctx,
                &caller,
                &script_url(&name),
                Flash::error(format!("Not saved: {}", ScriptError::TooLarge)),
            ));
        }
        file = Some(bytes);
        break;
    }
    let Some(bytes) = file.filter(|b| !b.is_empty()) else {
        return Ok(redirect_with(
            &ctx,
            &caller,
            &script_url(&name),
            Flash::error("Not saved: choose a non-empty file to upload"),
        ));
    };
    // A refused upload is shown in the editor, to be fixed there.
    let shown = String::from_utf8(bytes.clone()).ok();
    save(&ctx, &caller, &name, bytes, shown).await
}

/// `POST /scripts/{name}/delete`, with its box ticked; refused while an
/// output runs the script.
pub async fn delete(
    State(ctx): State<Context>,
    caller: Caller,
    Path(name): Path<String>,
    Form(form): Form<ConfirmForm>,
) -> Result<Response, ApiError> {
    if !form.confirm.ticked() {
        return Ok(redirect_with(
            &ctx,
            &caller,
            &script_url(&name),
            Flash::error("Not deleted: tick the box to confirm"),
        ));
    }
    Ok(match ctx.admin.delete_script(&caller.name, &name).await {
        Ok(()) => redirect_with(
            &ctx,
            &caller,
            "/scripts",
            Flash::success(format!("Deleted {name}.")),
        ),
        Err(AdminError::Script(ScriptError::NotFound(..) | ScriptError::BadName(_))) => {
            return Err(not_found(&name))
        }
        Err(e) => redirect_with(&ctx, &caller, &script_url(&name), refusal("Not deleted", e)),
    })
}
