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
use super::error::ApiError;
use super::html::render;
use super::pages::Me;
use super::Context;
use crate::control::{AdminError, ParameterInput};
use crate::event::CATEGORIES;
use crate::journal::StartAt;
use crate::output::kinds::{self, ParamSchema, BUFFER_AGE, BUFFER_SIZE, KINDS};
use crate::output::{FieldErrors, OutputSpec, ParamType, Parameter};

use crate::output::lua::scripts::{self, MAX_SCRIPT_BYTES};
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

/// What the form posted, as typed.
#[derive(Default)]
struct Posted {
    name: String,
    kind: String,
    enabled: bool,
    path: String,
    upload: Option<(String, Vec<u8>)>,
    row_names: Vec<String>,
    row_types: Vec<String>,
    row_values: Vec<String>,
    /// `p.<name>`: schema fields and the buffer settings.
    fields: HashMap<String, String>,
    filters: Vec<String>,
    filter_other: String,
    action: String,
}

struct Row {
    name: String,
    ty: String,
    value: String,
    /// A password whose value is stored and not shown.
    stored: bool,
}

struct Field {
    name: &'static str,
    ty: &'static str,
    help: &'static str,
    default: &'static str,
    required: bool,
    secret: bool,
    /// Each choice and whether it is the value.
    choices: Vec<(&'static str, bool)>,
    value: String,
    stored: bool,
}

struct Check {
    name: String,
    checked: bool,
}

struct ScriptChoice {
    path: String,
    selected: bool,
}

#[derive(Template)]
#[template(path = "form.html")]
struct FormPage {
    me: Me,
    editing: bool,
    action_url: String,
    name: String,
    kind: String,
    kinds: Vec<(&'static str, &'static str)>,
    enabled: bool,
    is_script: bool,
    scripts: Vec<ScriptChoice>,
    script_dir: String,
    rows: Vec<Row>,
    fields: Vec<Field>,
    buffer: Vec<Field>,
    categories: Vec<Check>,
    elements: Vec<Check>,
    filter_other: String,
    errors: Vec<(String, String)>,
    test_output: Option<String>,
    max_script_kib: usize,
}

impl FormPage {
    /// The message for a field, or empty. Several messages are joined.
    fn err(&self, field: &str) -> String {
        self.errors
            .iter()
            .filter(|(f, _)| f == field || (field == "filters" && f.starts_with("filters")))
            .map(|(_, m)| m.as_str())
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn param_err(&self, name: &str) -> String {
        self.err(&format!("parameters.{name}"))
    }

    /// Errors no field shows, for the summary to show instead.
    fn has_error(&self, field: &str) -> bool {
        !self.err(field).is_empty()
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
    render(&page(
        &ctx,
        &caller,
        &spec,
        None,
        false,
        FieldErrors::default(),
        None,
    ))
}

pub async fn edit_form(
    State(ctx): State<Context>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Html<String>, ApiError> {
    let stored = ctx.store.get_output(&name).await?;
    render(&page(
        &ctx,
        &caller,
        &stored.spec,
        Some(&stored.spec),
        true,
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
    let mut uploaded = None;
    if let Some((file_name, bytes)) = posted.upload.take() {
        match save_script(&ctx, &caller.name, &file_name, bytes).await {
            Ok(saved) => uploaded = Some(saved),
            Err(message) => reading.add("script_file", message),
        }
    }
    let mut errors = FieldErrors(reading.0.clone());
    let mut spec = to_spec(&posted, previous.as_ref(), &mut errors);
    if let Some(path) = &uploaded {
        spec.path = Some(path.clone());
    }
    let editing_flag = editing.is_some();
    let render = |errors, output| {
        typed_page(&page(
            &ctx,
            &caller,
            &spec,
            previous.as_ref(),
            editing_flag,
            errors,
            output,
        ))
    };
    if posted.action == "test" {
        ctx.admin.validate(&spec, &mut errors);
        let output = if errors.is_empty() {
            // The script's log, its errors and what it returned are shown
            // to whoever opened the form: a stored password it prints must
            // not come out this way.
            let text = run_test(&ctx, &spec).await;
            Some(crate::output::Secrets::of(&spec).redact_owned(text))
        } else {
            None
        };
        return Ok(render(errors, output)?.into_response());
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
                    let mut spec = to_spec(&posted, Some(stored), errors);
                    if let Some(path) = uploaded {
                        spec.path = Some(path);
                    }
                    spec
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
    Ok((status, render(errors, None)?).into_response())
}

fn typed_page(page: &FormPage) -> Result<Html<String>, ApiError> {
    render(page)
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
            "param_name" => posted.row_names.push(value.trim().to_owned()),
            "param_type" => posted.row_types.push(value),
            "param_value" => posted.row_values.push(value),
            "filter" => posted.filters.push(value),
            "filter_other" => posted.filter_other = value,
            "action" => posted.action = value,
            other => {
                if let Some(name) = other.strip_prefix("p.") {
                    posted.fields.insert(name.to_owned(), value);
                }
                // Other keys (a button's name…) carry nothing to keep.
            }
        }
    }
    Ok(posted)
}

/// The definition the form describes. Reading errors (a row's type) go to
/// `errors`; the rest is left to validation.
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
        for (i, name) in posted.row_names.iter().enumerate() {
            let ty = posted.row_types.get(i).map(String::as_str).unwrap_or("");
            let value = posted.row_values.get(i).cloned().unwrap_or_default();
            if name.is_empty() {
                if !value.is_empty() {
                    errors.add(format!("parameters[{i}].name"), "a value needs a name");
                }
                continue;
            }
            let Some(ty) = ParamType::parse(ty) else {
                errors.add(
                    format!("parameters.{name}"),
                    "type must be string, number or password",
                );
                continue;
            };
            if ty == ParamType::Password && value.is_empty() {
                match kept(name, ty) {
                    Ok(parameter) => spec.parameters.push(parameter),
                    Err(message) => errors.add(format!("parameters.{name}"), message),
                }
                continue;
            }
            spec.parameters.push(Parameter {
                name: name.clone(),
                ty,
                value,
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

fn sample_events() -> Vec<crate::event::Event> {
    let mut events = crate::ingest::simulator::startup_events();
    let mut checks = crate::ingest::simulator::Checks::default();
    // The simulator starts with the platform's definitions; keep a few and
    // then status and metric events, which is what outputs mostly get.
    events.truncate(TEST_EVENTS / 2);
    while events.len() < TEST_EVENTS {
        events.extend(checks.next_check());
    }
    events.truncate(TEST_EVENTS);
    events
}

/// Runs the output on sample events without saving it: a `lua` script
/// through `run-script`'s code, a native kind through its encoder.
async fn run_test(ctx: &Context, spec: &OutputSpec) -> String {
    let events = sample_events();
    if spec.runs_script() {
        let settings = ctx.supervisor.lua_settings().clone();
        let script = match settings.resolve_script(spec.path.as_deref().unwrap_or("")) {
            Ok(script) => script,
            Err(e) => return format!("cannot run the script: {e}"),
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
                crate::output::lua::run_script::Source::Simulate(TEST_EVENTS),
                settings,
                None,
                print,
            )
        });
        let outcome = match tokio::time::timeout(TEST_TIMEOUT, ran).await {
            Ok(Ok(Ok(()))) => String::new(),
            Ok(Ok(Err(e))) => format!("error: {e:#}\n"),
            Ok(Err(e)) => format!("error: the test crashed: {e}\n"),
            Err(_) => format!("error: the script ran longer than {TEST_TIMEOUT:?}\n"),
        };
        let mut text = crate::sync::lock(&lines).clone();
        text.push_str(&outcome);
        text
    } else {
        let cache = crate::cache::Cache::new();
        for event in &events {
            cache.update(event);
        }
        match crate::output::preview(spec, &events, &cache) {
            Ok(text) if text.is_empty() => {
                format!("None of the {TEST_EVENTS} sample events passes the filters.")
            }
            Ok(mut text) => {
                text.truncate(MAX_TEST_OUTPUT);
                text
            }
            Err(e) => format!("error: {e}"),
        }
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

fn field(schema: &ParamSchema, spec: &OutputSpec) -> Field {
    let set = spec.parameter(schema.name);
    let secret = schema.secret || schema.ty == ParamType::Password;
    Field {
        name: schema.name,
        ty: schema.ty.as_str(),
        help: schema.help,
        default: schema.default.unwrap_or(""),
        required: schema.required,
        secret,
        choices: schema
            .choices
            .iter()
            .map(|c| (*c, set.is_some_and(|p| p.value == *c)))
            .collect(),
        value: match set {
            Some(_) if secret => String::new(),
            Some(p) => p.value.clone(),
            None => String::new(),
        },
        stored: secret && set.is_some(),
    }
}

/// The page for `spec` (what was typed, or what is stored). `previous` is
/// the stored definition, to tell which passwords are stored.
fn page(
    ctx: &Context,
    caller: &Caller,
    spec: &OutputSpec,
    previous: Option<&OutputSpec>,
    editing: bool,
    errors: FieldErrors,
    test_output: Option<String>,
) -> FormPage {
    let kind = kinds::find(&spec.kind);
    let is_script = kind.is_some_and(|k| k.script);
    let is_buffer = |name: &str| name == BUFFER_SIZE.name || name == BUFFER_AGE.name;
    let mut rows: Vec<Row> = Vec::new();
    let mut fields = Vec::new();
    let mut buffer = Vec::new();
    if is_script {
        for p in spec.parameters.iter().filter(|p| !is_buffer(&p.name)) {
            let password = p.ty == ParamType::Password;
            rows.push(Row {
                name: p.name.clone(),
                ty: p.ty.as_str().to_owned(),
                value: if password {
                    String::new()
                } else {
                    p.value.clone()
                },
                stored: password
                    && previous
                        .and_then(|prev| prev.parameter(&p.name))
                        .is_some_and(|prev| prev.ty == ParamType::Password),
            });
        }
        buffer = [&BUFFER_SIZE, &BUFFER_AGE]
            .into_iter()
            .map(|s| field(s, spec))
            .collect();
    } else if let Some(kind) = kind {
        for schema in kind.parameters {
            if is_buffer(schema.name) {
                buffer.push(field(schema, spec));
            } else {
                fields.push(field(schema, spec));
            }
        }
    }
    for _ in 0..EMPTY_ROWS {
        rows.push(Row {
            name: String::new(),
            ty: "string".into(),
            value: String::new(),
            stored: false,
        });
    }
    let checked = |name: &str| spec.filters.iter().any(|f| f == name);
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
    let filter_other = spec
        .filters
        .iter()
        .filter(|f| {
            !CATEGORIES.iter().any(|c| c.name == f.as_str())
                && !COMMON_ELEMENTS.contains(&f.as_str())
        })
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    FormPage {
        me: Me::from(caller),
        editing,
        action_url: if editing {
            format!("/outputs/{}/edit", spec.name)
        } else {
            "/outputs/new".to_owned()
        },
        name: spec.name.clone(),
        kind: spec.kind.clone(),
        kinds: KINDS.iter().map(|k| (k.name, k.description)).collect(),
        enabled: spec.enabled,
        is_script,
        scripts: script_choices(ctx, spec.path.as_deref().unwrap_or("")),
        script_dir: ctx
            .supervisor
            .lua_settings()
            .script_dirs
            .first()
            .map(|d| d.display().to_string())
            .unwrap_or_default(),
        rows,
        fields,
        buffer,
        categories,
        elements,
        filter_other,
        errors: errors.0,
        test_output,
        max_script_kib: MAX_SCRIPT_BYTES / 1024,
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
            row_names: vec!["url".into(), "token".into(), "".into()],
            row_types: vec!["string".into(), "password".into(), "string".into()],
            row_values: vec!["http://x".into(), "".into(), "".into()],
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
}
