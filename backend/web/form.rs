//! The add and edit form of an output (`/outputs/new`, `/outputs/{name}/edit`).
//!
//! The form posts `multipart/form-data` (a script may be uploaded with it).
//! What it posts becomes an [`OutputSpec`] that goes through the same
//! validation and save path as the REST API ([`crate::control::OutputAdmin`]); on
//! error the page comes back with each message beside its field and what
//! was typed kept. Stored passwords are never sent to the browser: an
//! empty password field keeps the stored value, as the API does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use askama::Template;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use super::auth::Caller;
use super::drafts::Drafts;
use super::error::ApiError;
use super::html::render;
use super::pages::Me;
use super::Context;
use crate::control::{AdminError, ParameterInput};
use crate::event::CATEGORIES;
use crate::journal::StartAt;
use crate::output::kinds::{self, ParamSchema, BUFFER_AGE, BUFFER_SIZE, KINDS};
use crate::output::lua::scripts::{self, MAX_SCRIPT_BYTES};
use crate::output::{FieldErrors, OutputSpec, ParamType, Parameter};

/// Largest text field: far above any sane parameter, far below memory
/// trouble; more if `limits.max_parameter_value_bytes` allows more.
const MAX_FIELD_BYTES: usize = 64 * 1024;
/// Empty parameter rows a page offers, for browsers without scripts.
const EMPTY_ROWS: usize = 3;
/// Sample events the Test button runs.
const TEST_EVENTS: usize = 20;
/// How long a Test may run before the page answers without it.
const TEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Test output shown, at most.
const MAX_TEST_OUTPUT: usize = 64 * 1024;

/// Event types offered as checkboxes, besides whole categories: the ones
/// Centreon's stream connectors filter on most.
const COMMON_ELEMENTS: &[&str] = &[
    "neb:host_status",
    "neb:service_status",
    "neb:host",
    "neb:service",
    "neb:acknowledgement",
    "neb:downtime",
    "neb:HostStatus",
    "neb:ServiceStatus",
    "storage:metric",
    "storage:status",
    "bam:ba_status",
];

/// One row of a script output's parameter table, as typed.
#[derive(Clone, Debug, Default, PartialEq)]
struct PostedRow {
    name: String,
    ty: String,
    value: String,
}

/// What the form posted, as typed: the page comes back from this on any
/// error, a Test or a change of kind, so that nothing typed is lost.
#[derive(Default)]
struct Posted {
    name: String,
    kind: String,
    enabled: bool,
    path: String,
    upload: Option<(String, Vec<u8>)>,
    /// In their order, wholly empty rows left out.
    rows: Vec<PostedRow>,
    /// `p.<name>`: schema fields and the buffer settings, of every kind
    /// the form went through.
    fields: HashMap<String, String>,
    filters: Vec<String>,
    filter_other: String,
    action: String,
    /// The kind a kind button asked for.
    switch_kind: Option<String>,
    /// Which form this is, for the passwords kept on the server.
    draft: String,
}

impl Posted {
    /// A stored (or blank) definition as the form shows it. Passwords are
    /// left empty: a page never carries one.
    fn from_spec(spec: &OutputSpec) -> Posted {
        let kind = kinds::find(&spec.kind);
        let script = kind.is_some_and(|k| k.script);
        let is_buffer = |name: &str| name == BUFFER_SIZE.name || name == BUFFER_AGE.name;
        let mut posted = Posted {
            name: spec.name.clone(),
            kind: spec.kind.clone(),
            enabled: spec.enabled,
            path: spec.path.clone().unwrap_or_default(),
            ..Posted::default()
        };
        for p in &spec.parameters {
            let secret = p.ty == ParamType::Password
                || kind
                    .and_then(|k| k.schema(&p.name))
                    .is_some_and(|s| s.secret);
            let value = if secret {
                String::new()
            } else {
                p.value.clone()
            };
            if script && !is_buffer(&p.name) {
                posted.rows.push(PostedRow {
                    name: p.name.clone(),
                    ty: p.ty.as_str().to_owned(),
                    value,
                });
            } else {
                posted.fields.insert(p.name.clone(), value);
            }
        }
        let offered =
            |f: &str| CATEGORIES.iter().any(|c| c.name == f) || COMMON_ELEMENTS.contains(&f);
        posted.filters = spec
            .filters
            .iter()
            .filter(|f| offered(f))
            .cloned()
            .collect();
        posted.filter_other = spec
            .filters
            .iter()
            .filter(|f| !offered(f))
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        posted
    }

    fn is_script(&self) -> bool {
        kinds::find(&self.kind).is_some_and(|k| k.script)
    }

    /// Each password field of the current kind (`p.<name>`, `r.<name>` for
    /// a row) and what was typed into it.
    fn secrets(&self) -> Vec<(String, String)> {
        match kinds::find(&self.kind) {
            Some(kind) if kind.script => self
                .rows
                .iter()
                .filter(|r| r.ty == "password" && !r.name.is_empty())
                .map(|r| (format!("r.{}", r.name), r.value.clone()))
                .collect(),
            Some(kind) => kind
                .parameters
                .iter()
                .filter(|s| s.secret || s.ty == ParamType::Password)
                .map(|s| {
                    let typed = self.fields.get(s.name).cloned().unwrap_or_default();
                    (format!("p.{}", s.name), typed)
                })
                .collect(),
            None => Vec::new(),
        }
    }

    /// Fills the password fields left empty with what an earlier try of
    /// this form typed.
    fn fill_secrets(&mut self, kept: &HashMap<String, String>) {
        for (field, value) in kept {
            if let Some(name) = field.strip_prefix("r.") {
                for row in self.rows.iter_mut() {
                    if row.name == name && row.ty == "password" && row.value.is_empty() {
                        row.value = value.clone();
                    }
                }
            } else if let Some(name) = field.strip_prefix("p.") {
                let slot = self.fields.entry(name.to_owned()).or_default();
                if slot.trim().is_empty() {
                    *slot = value.clone();
                }
            }
        }
    }

    /// Moves to another kind: what was typed under a name the new kind
    /// also has goes with it (a script's `http_server_address` row and
    /// InfluxDB's field of that name); the rest stays in the page, unseen,
    /// for a move back.
    fn switch_to(&mut self, kind: &str) {
        let Some(new) = kinds::find(kind) else {
            return;
        };
        let was_script = self.is_script();
        self.kind = kind.to_owned();
        if was_script && !new.script {
            for row in &self.rows {
                if new.schema(&row.name).is_some() && !row.value.is_empty() {
                    let slot = self.fields.entry(row.name.clone()).or_default();
                    if slot.is_empty() {
                        *slot = row.value.clone();
                    }
                }
            }
        }
    }
}

struct Row {
    /// 1-based, as the messages count rows.
    number: usize,
    name: String,
    ty: String,
    value: String,
    /// A password that is kept (stored, or typed in an earlier try) and
    /// not shown.
    kept: Option<&'static str>,
    errors: String,
}

struct Field {
    name: &'static str,
    ty: &'static str,
    /// The help text as HTML: `code` in backticks shown as code.
    help: String,
    default: &'static str,
    required: bool,
    secret: bool,
    /// Each choice and whether it is the value.
    choices: Vec<(&'static str, bool)>,
    value: String,
    kept: Option<&'static str>,
    error: String,
}

/// A group of fields; a collapsed one is folded unless it holds a value
/// or an error.
struct FieldSection {
    title: &'static str,
    collapsed: bool,
    open: bool,
    fields: Vec<Field>,
}

struct Check {
    name: String,
    checked: bool,
}

struct ScriptChoice {
    path: String,
    selected: bool,
}

/// What a Test found, for the page.
struct TestView {
    passed: bool,
    headline: String,
    steps: Vec<(bool, String)>,
    side_effects: Vec<String>,
    /// A script's log, or what a kind without a destination would write.
    log: String,
}

#[derive(Template)]
#[template(path = "form.html")]
struct FormPage {
    me: Me,
    editing: bool,
    action_url: String,
    draft: String,
    name: String,
    kind: String,
    kind_help: String,
    kinds: Vec<(&'static str, String)>,
    enabled: bool,
    is_script: bool,
    scripts: Vec<ScriptChoice>,
    script_dir: String,
    /// The script path typed under a script kind, kept while another kind
    /// is shown.
    path: String,
    rows: Vec<Row>,
    sections: Vec<FieldSection>,
    buffer: Vec<Field>,
    /// Values typed under another kind, kept unseen for a move back.
    carried: Vec<(String, String)>,
    carried_rows: Vec<PostedRow>,
    categories: Vec<Check>,
    elements: Vec<Check>,
    filter_other: String,
    /// Each error's label (where it is) and message.
    errors: Vec<(String, String)>,
    /// Errors by field (`name`, `path`, `parameters.<name>`…).
    by_field: Vec<(String, String)>,
    test: Option<TestView>,
    max_script_kib: usize,
}

impl FormPage {
    /// The message for a field, or empty. Several messages are joined.
    fn err(&self, field: &str) -> String {
        self.by_field
            .iter()
            .filter(|(f, _)| f == field || (field == "filters" && f.starts_with("filters")))
            .map(|(_, m)| m.as_str())
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn has_error(&self, field: &str) -> bool {
        !self.err(field).is_empty()
    }
}

/// Help text as HTML: escaped, with each `backticked` part as code.
fn help_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    for (i, part) in text.split('`').enumerate() {
        let escaped = askama::filters::escape(part, askama::filters::Html)
            .map(|e| e.to_string())
            .unwrap_or_default();
        // Odd parts sit between two backticks; an unpaired last one is
        // shown as typed.
        if i % 2 == 1 && text.split('`').count() > i + 1 {
            out.push_str("<code>");
            out.push_str(&escaped);
            out.push_str("</code>");
        } else {
            if i % 2 == 1 {
                out.push('`');
            }
            out.push_str(&escaped);
        }
    }
    out
}

/// Where an error is, as the summary names it: a parameter by its name,
/// a row by its 1-based number.
fn label(field: &str) -> String {
    if let Some(name) = field.strip_prefix("parameters.") {
        format!("parameter {name}")
    } else if let Some(rest) = field.strip_prefix("parameters[") {
        format!("parameter row {}", rest.trim_end_matches(']'))
    } else if field.starts_with("filters") {
        "filters".to_owned()
    } else if field == "script_file" {
        "uploaded script".to_owned()
    } else {
        field.to_owned()
    }
}

#[derive(Deserialize)]
pub struct NewQuery {
    kind: Option<String>,
}

pub async fn new_form(
    State(ctx): State<Context>,
    caller: Caller,
    Query(query): Query<NewQuery>,
) -> Result<Html<String>, ApiError> {
    let kind = query
        .kind
        .filter(|k| kinds::find(k).is_some())
        .unwrap_or_else(|| "file".to_owned());
    let spec = OutputSpec {
        kind,
        ..OutputSpec::blank("")
    };
    let view = View::new(&ctx, &caller, None, false);
    render(&view.page(&Posted::from_spec(&spec), FieldErrors::default(), None))
}

pub async fn edit_form(
    State(ctx): State<Context>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Html<String>, ApiError> {
    let stored = ctx.store.get_output(&name).await?;
    let view = View::new(&ctx, &caller, Some(&stored.spec), true);
    render(&view.page(
        &Posted::from_spec(&stored.spec),
        FieldErrors::default(),
        None,
    ))
}

pub async fn create(
    State(ctx): State<Context>,
    caller: Caller,
    multipart: Multipart,
) -> Result<Response, ApiError> {
    submit(ctx, caller, None, multipart).await
}

pub async fn update(
    State(ctx): State<Context>,
    caller: Caller,
    Path(name): Path<String>,
    multipart: Multipart,
) -> Result<Response, ApiError> {
    submit(ctx, caller, Some(name), multipart).await
}

async fn submit(
    ctx: Context,
    caller: Caller,
    editing: Option<String>,
    multipart: Multipart,
) -> Result<Response, ApiError> {
    let previous = match &editing {
        Some(name) => Some(ctx.store.get_output(name).await?.spec),
        None => None,
    };
    // What reading the post found wrong (the spec is built again under the
    // admin's lock on an edit, so its errors are kept apart).
    let mut reading = FieldErrors::default();
    let mut posted = read_multipart(multipart, &ctx.limits, &mut reading).await?;
    if let Some(name) = &editing {
        // The name is the output's identity; the form shows it read-only.
        posted.name = name.clone();
    }
    if posted.draft.is_empty() || posted.draft.len() > 64 {
        posted.draft = Drafts::new_id();
    }
    let kept = ctx.drafts.merge(&caller, &posted.draft, &posted.secrets());
    posted.fill_secrets(&kept);
    let mut uploaded = None;
    if let Some((file_name, bytes)) = posted.upload.take() {
        match save_script(&ctx, &caller.name, &file_name, bytes).await {
            Ok(saved) => {
                // Chosen in the list from now on, so that a later try runs it.
                posted.path = saved.clone();
                uploaded = Some(saved);
            }
            Err(message) => reading.add("script_file", message),
        }
    }
    let view = View::new(&ctx, &caller, previous.as_ref(), editing.is_some());
    if let Some(kind) = posted.switch_kind.take() {
        if editing.is_none() && kinds::find(&kind).is_some() {
            posted.switch_to(&kind);
        }
        let mut errors = FieldErrors::default();
        errors
            .0
            .extend(reading.0.into_iter().filter(|(f, _)| f == "script_file"));
        let page = view.page(&posted, errors, None);
        return Ok(render(&page)?.into_response());
    }
    let mut errors = FieldErrors(reading.0.clone());
    let spec = to_spec(&posted, previous.as_ref(), &mut errors);
    if posted.action == "test" {
        ctx.admin.validate(&spec, &mut errors);
        let test = if errors.is_empty() {
            let mut test = run_test(&ctx, &spec).await;
            if let Some(saved) = &uploaded {
                test.side_effects.push(format!(
                    "The uploaded script was saved as `{saved}` in the script directory (it is chosen in the list above)."
                ));
            }
            test.side_effects
                .push("The output itself was not saved.".to_owned());
            Some(redact_test(&spec, test))
        } else {
            None
        };
        return Ok(render(&view.page(&posted, errors, test))?.into_response());
    }
    let result = match &editing {
        None => {
            ctx.admin
                .create(&caller.name, spec.clone(), errors, StartAt::Head)
                .await
        }
        // Built again from the definition as stored under the admin's lock,
        // so that a kept password is the one stored now.
        Some(name) => {
            ctx.admin
                .update(&caller.name, name, |stored, errors| {
                    errors.0.extend(reading.0);
                    to_spec(&posted, Some(stored), errors)
                })
                .await
        }
    };
    // Refusals show on the form again, each where the reader looks for it.
    let one = |field: &str, message: String| {
        let mut errors = FieldErrors::default();
        errors.add(field, message);
        errors
    };
    let (status, errors) = match result {
        Ok(stored) => {
            ctx.drafts.forget(&caller, &posted.draft);
            let location = format!("/outputs/{}", stored.spec.name);
            let flash = super::flash::Flash::success(format!("Saved `{}`", stored.spec.name));
            return Ok(super::flash::redirect_with(&ctx, &caller, &location, flash));
        }
        Err(AdminError::Invalid(errors)) => (StatusCode::UNPROCESSABLE_ENTITY, errors),
        Err(AdminError::AlreadyExists(message) | AdminError::Conflict(message)) => {
            (StatusCode::CONFLICT, one("name", message))
        }
        // A limit no field shows (the number of outputs): the summary does.
        Err(AdminError::LimitReached(message)) => {
            (StatusCode::UNPROCESSABLE_ENTITY, one("outputs", message))
        }
        Err(other) => return Err(other.into()),
    };
    Ok((status, render(&view.page(&posted, errors, None))?).into_response())
}

/// A script's log, its errors and a destination's answers are shown to
/// whoever opened the form: a password they echo must not come out.
fn redact_test(spec: &OutputSpec, mut test: TestView) -> TestView {
    let secrets = crate::output::Secrets::of(spec);
    test.headline = secrets.redact_owned(test.headline);
    test.log = secrets.redact_owned(test.log);
    for (_, step) in test.steps.iter_mut() {
        *step = secrets.redact_owned(std::mem::take(step));
    }
    for effect in test.side_effects.iter_mut() {
        *effect = secrets.redact_owned(std::mem::take(effect));
    }
    test
}

async fn read_multipart(
    mut multipart: Multipart,
    limits: &crate::config::Limits,
    errors: &mut FieldErrors,
) -> Result<Posted, ApiError> {
    let max_field = MAX_FIELD_BYTES.max(limits.max_parameter_value_bytes);
    let bad = |e: axum::extract::multipart::MultipartError| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(super::body_limit_message(limits.max_body_bytes))
        } else {
            ApiError::BadRequest(format!("the form could not be read: {e}"))
        }
    };
    let mut posted = Posted::default();
    let mut names = Vec::new();
    let mut types = Vec::new();
    let mut values = Vec::new();
    while let Some(mut field) = multipart.next_field().await.map_err(bad)? {
        let key = field.name().unwrap_or_default().to_owned();
        if key == "script_file" {
            let file_name = field.file_name().unwrap_or_default().to_owned();
            let mut bytes = Vec::new();
            let mut too_big = false;
            while let Some(chunk) = field.chunk().await.map_err(bad)? {
                if bytes.len() + chunk.len() > MAX_SCRIPT_BYTES {
                    too_big = true;
                    // Keep reading, so the rest of the form is still parsed.
                    continue;
                }
                bytes.extend_from_slice(&chunk);
            }
            if too_big {
                errors.add(
                    "script_file",
                    format!("is larger than {} KiB", MAX_SCRIPT_BYTES / 1024),
                );
            } else if !file_name.is_empty() {
                posted.upload = Some((file_name, bytes));
            }
            continue;
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(bad)? {
            if bytes.len() + chunk.len() > max_field {
                return Err(ApiError::BadRequest(format!(
                    "form field `{key}` is larger than {max_field} bytes"
                )));
            }
            bytes.extend_from_slice(&chunk);
        }
        let Ok(value) = String::from_utf8(bytes) else {
            errors.add(key, "is not valid UTF-8 text");
            continue;
        };
        match key.as_str() {
            "name" => posted.name = value.trim().to_owned(),
            "kind" => posted.kind = value,
            "enabled" => posted.enabled = true,
            "path" => posted.path = value,
            "param_name" => names.push(value.trim().to_owned()),
            "param_type" => types.push(value),
            "param_value" => values.push(value),
            "filter" => posted.filters.push(value),
            "filter_other" => posted.filter_other = value,
            "action" => posted.action = value,
            "switch_kind" => posted.switch_kind = Some(value),
            "draft" => posted.draft = value,
            other => {
                if let Some(name) = other.strip_prefix("p.") {
                    posted.fields.insert(name.to_owned(), value);
                }
                // Other keys (a button's name…) carry nothing to keep.
            }
        }
    }
    // A browser sends each row's three cells in order, so the n-th of each
    // is one row; spare empty rows carry nothing.
    let rows = names.len().max(types.len()).max(values.len());
    for i in 0..rows {
        let row = PostedRow {
            name: names.get(i).cloned().unwrap_or_default(),
            ty: types.get(i).cloned().unwrap_or_else(|| "string".to_owned()),
            value: values.get(i).cloned().unwrap_or_default(),
        };
        if !row.name.is_empty() || !row.value.is_empty() {
            posted.rows.push(row);
        }
    }
    Ok(posted)
}

/// The definition the form describes. Reading errors (a row's type, a
/// value without a name) go to `errors`, a row by its 1-based number;
/// the rest is left to validation.
fn to_spec(posted: &Posted, previous: Option<&OutputSpec>, errors: &mut FieldErrors) -> OutputSpec {
    let mut spec = OutputSpec::blank(&posted.name);
    spec.kind = posted.kind.clone();
    spec.enabled = posted.enabled;
    let mut filters: Vec<String> = posted.filters.clone();
    filters.extend(
        posted
            .filter_other
            .split([',', ' ', '\n'])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
    );
    filters.dedup();
    spec.filters = filters;
    // An empty password field keeps the stored value (the control layer's
    // rule): the page never shows it.
    let kept = |name: &str, ty: ParamType| {
        ParameterInput {
            name: name.to_owned(),
            ty,
            value: None,
        }
        .resolve(previous)
    };
    let kind = kinds::find(&posted.kind);
    if kind.is_some_and(|k| k.script) {
        if !posted.path.trim().is_empty() {
            spec.path = Some(posted.path.trim().to_owned());
        }
        for (i, row) in posted.rows.iter().enumerate() {
            if row.name.is_empty() {
                errors.add(format!("parameters[{}]", i + 1), "a value needs a name");
                continue;
            }
            let Some(ty) = ParamType::parse(&row.ty) else {
                errors.add(
                    format!("parameters.{}", row.name),
                    "type must be string, number or password",
                );
                continue;
            };
            if ty == ParamType::Password && row.value.is_empty() {
                match kept(&row.name, ty) {
                    Ok(parameter) => spec.parameters.push(parameter),
                    Err(message) => errors.add(format!("parameters.{}", row.name), message),
                }
                continue;
            }
            spec.parameters.push(Parameter {
                name: row.name.clone(),
                ty,
                value: row.value.clone(),
            });
        }
        for schema in [&BUFFER_SIZE, &BUFFER_AGE] {
            if let Some(value) = posted.fields.get(schema.name).map(|v| v.trim()) {
                if !value.is_empty() {
                    spec.parameters.push(Parameter {
                        name: schema.name.to_owned(),
                        ty: ParamType::Number,
                        value: value.to_owned(),
                    });
                }
            }
        }
    } else if let Some(kind) = kind {
        for schema in kind.parameters {
            let value = posted
                .fields
                .get(schema.name)
                .map(|v| v.trim().to_owned())
                .unwrap_or_default();
            let value = if value.is_empty() {
                // Empty: the default applies, or the stored secret is kept.
                match (schema.secret || schema.ty == ParamType::Password)
                    .then(|| kept(schema.name, schema.ty).ok())
                    .flatten()
                {
                    Some(stored) => stored.value,
                    None => continue,
                }
            } else {
                value
            };
            spec.parameters.push(Parameter {
                name: schema.name.to_owned(),
                ty: schema.ty,
                value,
            });
        }
    }
    spec
}

/// Saves an uploaded script into the first script directory, under its
/// own name made safe, through the control layer (checked and audited).
/// Never overwrites: a running output may use it. Text Lua cannot compile
/// is refused, as the scripts API and page do.
async fn save_script(
    ctx: &Context,
    actor: &str,
    file_name: &str,
    bytes: Vec<u8>,
) -> Result<String, String> {
    let name = safe_script_name(file_name)?;
    match ctx.admin.add_script(actor, &name, bytes).await {
        Ok(()) => Ok(name),
        Err(AdminError::Script(scripts::ScriptError::Exists(_))) => Err(format!(
            "a script named `{name}` exists already; choose it in the list, replace it on its Scripts page (/scripts/{name}), or rename the file"
        )),
        Err(AdminError::Script(e)) => Err(e.to_string()),
        Err(e) => {
            tracing::error!(script = %name, "cannot save an uploaded script: {e}");
            Err("the script could not be saved; the service's log says why".to_owned())
        }
    }
}

/// The last component of what the browser sent (some send a whole path,
/// `C:\Users\me\x.lua`), if it is a plain `something.lua` name.
pub fn safe_script_name(file_name: &str) -> Result<String, String> {
    let base = file_name.rsplit(['/', '\\']).next().unwrap_or_default();
    scripts::check_name(base)?;
    Ok(base.to_owned())
}

/// Where the sample events came from, said on the result.
enum Sample {
    Journal,
    Simulator,
}

/// The events a Test runs: the newest ones in the journal that pass the
/// output's filters, with the service's cache (which knows their names);
/// when the journal holds none, the simulator's status and metric events
/// that pass them, after the definitions that name their hosts and
/// services, with a cache of their own.
fn sample_events(
    ctx: &Context,
    spec: &OutputSpec,
) -> (Vec<crate::event::Event>, Arc<crate::cache::Cache>, Sample) {
    let filter = crate::event::Filter::parse(&spec.filters).unwrap_or_else(|_| {
        // Validation refused such filters before a Test runs.
        crate::event::Filter::all()
    });
    let passes = |e: &crate::event::Event| filter.accepts(e.event_type());
    let recent: Vec<crate::event::Event> = ctx
        .journal
        .recent(TEST_EVENTS, passes)
        .into_iter()
        .map(|entry| entry.event.clone())
        .collect();
    if !recent.is_empty() {
        return (recent, Arc::clone(ctx.supervisor.cache()), Sample::Journal);
    }
    let cache = crate::cache::Cache::new();
    let definitions = crate::ingest::simulator::startup_events();
    let mut events: Vec<crate::event::Event> =
        definitions.iter().filter(|e| passes(e)).cloned().collect();
    // Definitions teach the cache the names; outputs mostly get statuses
    // and metrics, so most of the sample is those.
    events.truncate(TEST_EVENTS / 4);
    for event in &definitions {
        cache.update(event);
    }
    let mut checks = crate::ingest::simulator::Checks::default();
    // Bounded: a filter that takes no simulated check must not spin.
    for _ in 0..TEST_EVENTS * 20 {
        if events.len() >= TEST_EVENTS {
            break;
        }
        for event in checks.next_check() {
            cache.update(&event);
            if passes(&event) && events.len() < TEST_EVENTS {
                events.push(event);
            }
        }
    }
    (events, cache, Sample::Simulator)
}

/// Runs the Test of `spec` without saving it: a script through
/// `run-script`'s code in the sandbox, a kind with a Test of its own
/// against its destination, any other kind through its encoder.
async fn run_test(ctx: &Context, spec: &OutputSpec) -> TestView {
    let (events, cache, sample) = sample_events(ctx, spec);
    let origin = match sample {
        Sample::Journal => format!(
            "{} recent event{} from the journal that pass{} the output's filters",
            events.len(),
            if events.len() == 1 { "" } else { "s" },
            if events.len() == 1 { "es" } else { "" }
        ),
        Sample::Simulator => format!(
            "the journal holds no recent event that passes the output's filters: {} simulated event{} that do{}",
            events.len(),
            if events.len() == 1 { "" } else { "s" },
            if events.len() == 1 { "es" } else { "" }
        ),
    };
    if events.is_empty() {
        return TestView {
            passed: false,
            headline: "Nothing to test with".to_owned(),
            steps: vec![(
                false,
                "no event in the journal or from the simulator passes the output's filters"
                    .to_owned(),
            )],
            side_effects: vec!["Nothing was run or sent.".to_owned()],
            log: String::new(),
        };
    }
    if spec.runs_script() {
        return lua_test(ctx, spec, events, cache, origin).await;
    }
    let Some(kind) = kinds::find(&spec.kind) else {
        return TestView {
            passed: false,
            headline: "Unknown kind".to_owned(),
            steps: Vec::new(),
            side_effects: Vec::new(),
            log: String::new(),
        };
    };
    match kind.test() {
        Some(test) => {
            let report = match tokio::time::timeout(TEST_TIMEOUT, test(spec, &events, &cache)).await
            {
                Ok(report) => report,
                Err(_) => {
                    let mut report = crate::output::kinds::TestReport::default();
                    report.failed(format!(
                        "the destination did not answer within {TEST_TIMEOUT:?}"
                    ));
                    report
                }
            };
            let passed = report.passed();
            let mut steps = vec![(true, format!("sample: {origin}"))];
            steps.extend(report.steps);
            let mut side_effects = report.side_effects;
            if side_effects.is_empty() {
                side_effects.push("Nothing was written to the destination.".to_owned());
            }
            TestView {
                passed,
                headline: if passed {
                    "The destination answered and took the sample".to_owned()
                } else {
                    "The test failed".to_owned()
                },
                steps,
                side_effects,
                log: String::new(),
            }
        }
        None => {
            let (passed, log) = match crate::output::preview(spec, &events, &cache) {
                Ok(text) if text.is_empty() => (
                    false,
                    format!("None of the {} sample events makes a record.", events.len()),
                ),
                Ok(mut text) => {
                    truncate_at_char(&mut text, MAX_TEST_OUTPUT);
                    (true, text)
                }
                Err(e) => (false, format!("error: {e}")),
            };
            TestView {
                passed,
                headline: if passed {
                    "What the output would write".to_owned()
                } else {
                    "The test failed".to_owned()
                },
                steps: vec![(true, format!("sample: {origin}"))],
                side_effects: vec![
                    "Nothing was written: this kind's Test only shows the records.".to_owned(),
                ],
                log,
            }
        }
    }
}

fn truncate_at_char(text: &mut String, max: usize) {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
}

/// A script's Test: its `init()`, then its `filter()`, `write()` and
/// `flush()` on the sample, in the sandbox, with a scratch journal and
/// status (the running outputs are not touched).
async fn lua_test(
    ctx: &Context,
    spec: &OutputSpec,
    events: Vec<crate::event::Event>,
    cache: Arc<crate::cache::Cache>,
    origin: String,
) -> TestView {
    let mut settings = ctx.supervisor.lua_settings().clone();
    // Whatever the service's setting: a Test runs a script the person at the
    // form may have just uploaded.
    settings.sandbox = true;
    let failed = |message: String| TestView {
        passed: false,
        headline: "The script could not run".to_owned(),
        steps: vec![(false, message)],
        side_effects: vec!["Nothing was run.".to_owned()],
        log: String::new(),
    };
    let script = match settings.resolve_script(spec.path.as_deref().unwrap_or("")) {
        Ok(script) => script,
        Err(e) => return failed(format!("cannot run the script: {e}")),
    };
    let lines = Arc::new(Mutex::new(String::new()));
    let sink = Arc::clone(&lines);
    let print: crate::output::lua::run_script::Printer = Arc::new(move |line: &str| {
        let mut out = crate::sync::lock(&sink);
        if out.len() < MAX_TEST_OUTPUT {
            out.push_str(line);
            out.push('\n');
        }
    });
    let parameters = spec.parameters.clone();
    let ran = tokio::task::spawn_blocking(move || {
        crate::output::lua::run_script::run_with(
            &script,
            parameters,
            crate::output::lua::run_script::Source::Events(events, cache),
            settings,
            None,
            print,
        )
    });
    let outcome = match tokio::time::timeout(TEST_TIMEOUT, ran).await {
        Ok(Ok(Ok(()))) => Ok(()),
        Ok(Ok(Err(e))) => Err(format!("{e:#}")),
        Ok(Err(e)) => Err(format!("the test crashed: {e}")),
        Err(_) => Err(format!("the script ran longer than {TEST_TIMEOUT:?}")),
    };
    let log = crate::sync::lock(&lines).clone();
    let summary = log
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("summary: "))
        .map(str::to_owned);
    let mut steps = vec![(true, format!("sample: {origin}"))];
    let passed = outcome.is_ok();
    match outcome {
        Ok(()) => {
            steps.push((true, "init() ran".to_owned()));
            if let Some(summary) = summary {
                steps.push((true, summary));
            }
        }
        Err(e) => steps.push((false, e)),
    }
    TestView {
        passed,
        headline: if passed {
            "The script ran on the sample".to_owned()
        } else {
            "The script failed".to_owned()
        },
        steps,
        side_effects: vec![
            "The script ran in the sandbox (no os.execute, io.popen, debug library or C modules; the service's data directory out of reach), on a copy of the events, with its own queue: no running output was affected.".to_owned(),
            "What init(), write() and flush() did outside was done for real: requests they made reached their destination, files they wrote were written.".to_owned(),
        ],
        log,
    }
}

/// Script files offered in the list: those of every script directory that
/// an output can run, named as `path` takes them.
fn script_choices(ctx: &Context, current: &str) -> Vec<ScriptChoice> {
    let mut found: Vec<String> = scripts::list(ctx.supervisor.lua_settings())
        .into_iter()
        .map(|s| s.path)
        .collect();
    found.sort();
    if !current.is_empty() && !found.iter().any(|p| p == current) {
        found.insert(0, current.to_owned());
    }
    found
        .into_iter()
        .map(|path| ScriptChoice {
            selected: path == current,
            path,
        })
        .collect()
}

/// What every page of one request shares.
struct View<'a> {
    ctx: &'a Context,
    caller: &'a Caller,
    /// The stored definition, to tell which passwords are stored.
    previous: Option<&'a OutputSpec>,
    editing: bool,
}

const STORED: &str = "(stored, unchanged)";
const TYPED: &str = "(as typed before, not shown)";

impl<'a> View<'a> {
    fn new(
        ctx: &'a Context,
        caller: &'a Caller,
        previous: Option<&'a OutputSpec>,
        editing: bool,
    ) -> View<'a> {
        View {
            ctx,
            caller,
            previous,
            editing,
        }
    }

    /// What an empty password field stands for, if anything.
    fn kept(&self, name: &str, typed: &str) -> Option<&'static str> {
        if !typed.is_empty() {
            Some(TYPED)
        } else if self
            .previous
            .and_then(|p| p.parameter(name))
            .is_some_and(|p| p.ty == ParamType::Password)
        {
            Some(STORED)
        } else {
            None
        }
    }

    fn field(
        &self,
        schema: &'static ParamSchema,
        posted: &Posted,
        errors: &[(String, String)],
    ) -> Field {
        let secret = schema.secret || schema.ty == ParamType::Password;
        let value = posted.fields.get(schema.name).cloned().unwrap_or_default();
        let field_key = format!("parameters.{}", schema.name);
        Field {
            name: schema.name,
            ty: schema.ty.as_str(),
            help: help_html(schema.help),
            default: schema.default.unwrap_or(""),
            required: schema.required,
            secret,
            choices: schema.choices.iter().map(|c| (*c, value == *c)).collect(),
            kept: if secret {
                self.kept(schema.name, &value)
            } else {
                None
            },
            value: if secret { String::new() } else { value },
            error: errors
                .iter()
                .filter(|(f, _)| *f == field_key)
                .map(|(_, m)| m.as_str())
                .collect::<Vec<_>>()
                .join("; "),
        }
    }

    /// The page for what was typed (or what is stored).
    fn page(&self, posted: &Posted, errors: FieldErrors, test: Option<TestView>) -> FormPage {
        let ctx = self.ctx;
        let errors = errors.0;
        let kind = kinds::find(&posted.kind);
        let is_script = kind.is_some_and(|k| k.script);
        let is_buffer = |name: &str| name == BUFFER_SIZE.name || name == BUFFER_AGE.name;
        let mut rows: Vec<Row> = Vec::new();
        let mut sections = Vec::new();
        let mut buffer = Vec::new();
        let mut shown: Vec<&str> = Vec::new();
        if is_script {
            for (i, r) in posted.rows.iter().enumerate() {
                let password = r.ty == "password";
                let number = i + 1;
                let mine = |f: &str| {
                    f == format!("parameters[{number}]")
                        || (!r.name.is_empty() && f == format!("parameters.{}", r.name))
                };
                rows.push(Row {
                    number,
                    name: r.name.clone(),
                    ty: r.ty.clone(),
                    value: if password {
                        String::new()
                    } else {
                        r.value.clone()
                    },
                    kept: if password && !r.name.is_empty() {
                        self.kept(&r.name, &r.value)
                    } else {
                        None
                    },
                    errors: errors
                        .iter()
                        .filter(|(f, _)| mine(f))
                        .map(|(_, m)| m.as_str())
                        .collect::<Vec<_>>()
                        .join("; "),
                });
            }
            for schema in [&BUFFER_SIZE, &BUFFER_AGE] {
                buffer.push(self.field(schema, posted, &errors));
                shown.push(schema.name);
            }
        } else if let Some(kind) = kind {
            let in_section = |name: &str| kind.sections.iter().any(|s| s.names.contains(&name));
            let mut main = FieldSection {
                title: if kind.sections.is_empty() {
                    "Parameters"
                } else {
                    "Connection"
                },
                collapsed: false,
                open: true,
                fields: Vec::new(),
            };
            for schema in kind.parameters {
                shown.push(schema.name);
                if is_buffer(schema.name) {
                    buffer.push(self.field(schema, posted, &errors));
                } else if !in_section(schema.name) {
                    main.fields.push(self.field(schema, posted, &errors));
                }
            }
            sections.push(main);
            for section in kind.sections {
                let fields: Vec<Field> = section
                    .names
                    .iter()
                    .filter_map(|name| kind.schema(name))
                    .map(|schema| self.field(schema, posted, &errors))
                    .collect();
                if fields.is_empty() {
                    continue;
                }
                let open = !section.collapsed
                    || fields.iter().any(|f| {
                        !f.value.is_empty() || f.kept == Some(TYPED) || !f.error.is_empty()
                    });
                sections.push(FieldSection {
                    title: section.title,
                    collapsed: section.collapsed,
                    open,
                    fields,
                });
            }
        }
        if is_script {
            for number in rows.len() + 1..=rows.len() + EMPTY_ROWS {
                rows.push(Row {
                    number,
                    name: String::new(),
                    ty: "string".into(),
                    value: String::new(),
                    kept: None,
                    errors: String::new(),
                });
            }
        }
        // What another kind's fields hold stays in the page, unseen, for
        // a move back; never a password (the server keeps those).
        let secret_elsewhere = |name: &str| {
            KINDS
                .iter()
                .filter_map(|k| k.schema(name))
                .any(|s| s.secret || s.ty == ParamType::Password)
        };
        let mut carried: Vec<(String, String)> = posted
            .fields
            .iter()
            .filter(|(name, value)| {
                !shown.contains(&name.as_str()) && !value.is_empty() && !secret_elsewhere(name)
            })
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect();
        carried.sort();
        let carried_rows = if is_script {
            Vec::new()
        } else {
            posted
                .rows
                .iter()
                .map(|r| PostedRow {
                    value: if r.ty == "password" {
                        String::new()
                    } else {
                        r.value.clone()
                    },
                    ..r.clone()
                })
                .collect()
        };
        let checked = |name: &str| posted.filters.iter().any(|f| f == name);
        let categories: Vec<Check> = CATEGORIES
            .iter()
            .map(|c| Check {
                name: c.name.to_owned(),
                checked: checked(c.name),
            })
            .collect();
        let elements: Vec<Check> = COMMON_ELEMENTS
            .iter()
            .map(|e| Check {
                name: (*e).to_owned(),
                checked: checked(e),
            })
            .collect();
        let labelled = errors.iter().map(|(f, m)| (label(f), m.clone())).collect();
        FormPage {
            me: Me::from(self.caller),
            editing: self.editing,
            action_url: if self.editing {
                format!("/outputs/{}/edit", posted.name)
            } else {
                "/outputs/new".to_owned()
            },
            draft: if posted.draft.is_empty() {
                Drafts::new_id()
            } else {
                posted.draft.clone()
            },
            name: posted.name.clone(),
            kind: posted.kind.clone(),
            kind_help: kind.map(|k| help_html(k.description)).unwrap_or_default(),
            kinds: KINDS
                .iter()
                .map(|k| (k.name, k.description.replace('`', "")))
                .collect(),
            enabled: posted.enabled,
            is_script,
            scripts: script_choices(ctx, posted.path.trim()),
            script_dir: ctx
                .supervisor
                .lua_settings()
                .script_dirs
                .first()
                .map(|d| d.display().to_string())
                .unwrap_or_default(),
            path: posted.path.clone(),
            rows,
            sections,
            buffer,
            carried,
            carried_rows,
            categories,
            elements,
            filter_other: posted.filter_other.clone(),
            errors: labelled,
            by_field: errors,
            test,
            max_script_kib: MAX_SCRIPT_BYTES / 1024,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_offered_events_are_known_filter_names() {
        for name in COMMON_ELEMENTS {
            assert!(
                crate::event::Filter::parse(&[(*name).to_owned()]).is_ok(),
                "{name}"
            );
        }
    }

    #[test]
    fn uploaded_names_are_made_safe_or_refused() {
        assert_eq!(safe_script_name("influx.lua").unwrap(), "influx.lua");
        assert_eq!(
            safe_script_name("C:\\Users\\me\\influx-v2.lua").unwrap(),
            "influx-v2.lua"
        );
        assert_eq!(safe_script_name("../../etc/x.lua").unwrap(), "x.lua");
        assert!(safe_script_name(".hidden.lua").is_err());
        assert!(safe_script_name("script.sh").is_err());
        assert!(safe_script_name("a b.lua").is_err());
        assert!(safe_script_name(".lua").is_err());
        assert!(safe_script_name("").is_err());
    }

    #[test]
    fn a_lua_form_becomes_a_spec() {
        let posted = Posted {
            name: "influx".into(),
            kind: "lua".into(),
            enabled: true,
            path: "influx.lua".into(),
            rows: vec![
                PostedRow {
                    name: "url".into(),
                    ty: "string".into(),
                    value: "http://x".into(),
                },
                PostedRow {
                    name: "token".into(),
                    ty: "password".into(),
                    value: "".into(),
                },
            ],
            fields: HashMap::from([("max_buffer_size".to_owned(), "50".to_owned())]),
            filters: vec!["neb".into()],
            filter_other: "storage:metric".into(),
            ..Posted::default()
        };
        let previous = OutputSpec {
            parameters: vec![Parameter {
                name: "token".into(),
                ty: ParamType::Password,
                value: "s3cret".into(),
            }],
            ..OutputSpec::blank("influx")
        };
        let mut errors = FieldErrors::default();
        let spec = to_spec(&posted, Some(&previous), &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(spec.path.as_deref(), Some("influx.lua"));
        assert_eq!(spec.filters, vec!["neb", "storage:metric"]);
        let values: Vec<(&str, &str)> = spec
            .parameters
            .iter()
            .map(|p| (p.name.as_str(), p.value.as_str()))
            .collect();
        assert_eq!(
            values,
            vec![
                ("url", "http://x"),
                ("token", "s3cret"),
                ("max_buffer_size", "50")
            ]
        );
        // Without a stored one, an empty password is an error on its row.
        let mut errors = FieldErrors::default();
        to_spec(&posted, None, &mut errors);
        assert_eq!(errors.0[0].0, "parameters.token");
    }

    #[test]
    fn a_row_without_a_name_is_named_by_its_number_from_one() {
        let row = |name: &str, ty: &str, value: &str| PostedRow {
            name: name.into(),
            ty: ty.into(),
            value: value.into(),
        };
        let posted = Posted {
            name: "x".into(),
            kind: "lua".into(),
            rows: vec![
                row("url", "string", "http://x"),
                row("count", "bogus", "1"),
                row("", "string", "orphan"),
            ],
            ..Posted::default()
        };
        let mut errors = FieldErrors::default();
        let spec = to_spec(&posted, None, &mut errors);
        let fields: Vec<&str> = errors.0.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(fields, ["parameters.count", "parameters[3]"]);
        assert_eq!(label("parameters[3]"), "parameter row 3");
        assert_eq!(label("parameters.count"), "parameter count");
        assert_eq!(spec.parameters.len(), 1);
    }

    #[test]
    fn a_kind_switch_takes_along_what_the_new_kind_also_has() {
        let mut posted = Posted {
            name: "x".into(),
            kind: "lua".into(),
            path: "influx.lua".into(),
            rows: vec![PostedRow {
                name: "http_server_address".into(),
                ty: "string".into(),
                value: "127.0.0.1".into(),
            }],
            ..Posted::default()
        };
        posted.switch_to("influxdb");
        assert_eq!(posted.kind, "influxdb");
        assert_eq!(posted.fields["http_server_address"], "127.0.0.1");
        // The rest is still there for a move back.
        assert_eq!(posted.path, "influx.lua");
        assert_eq!(posted.rows.len(), 1);
        posted.switch_to("no-such-kind");
        assert_eq!(posted.kind, "influxdb");
    }

    #[test]
    fn help_text_shows_backticked_parts_as_code_and_escapes_the_rest() {
        assert_eq!(
            help_html("`http` or `https` <b>"),
            "<code>http</code> or <code>https</code> &#60;b&#62;"
        );
        assert_eq!(help_html("one ` alone"), "one ` alone");
        for kind in KINDS {
            for p in kind.parameters {
                assert!(
                    !help_html(p.help).contains('`'),
                    "{}: {}",
                    kind.name,
                    p.help
                );
            }
        }
    }
}
