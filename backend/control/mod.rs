//! The control layer: every change to an output — REST, the browser form,
//! the detail page's buttons, `brokerstream import`, scripts an output runs —
//! goes through [`OutputAdmin`], which checks the limits, validates, stores,
//! places the cursor, applies the change to the running workers and writes
//! one audit entry, in that order, under its own lock. Callers only turn
//! their input into an [`OutputSpec`] (or an edit of the stored one) and
//! render the answer.

use std::sync::Arc;

use serde_json::{json, Map, Value};
use time::format_description::well_known::Rfc3339;

use crate::config::Limits;
use crate::journal::{Reposition, Seq, StartAt};
use crate::output::deadletter::{DeadLetterError, Page};
use crate::output::lua::scripts::{self, Existing, ScriptError};
use crate::output::lua::LuaSettings;
use crate::output::redeliver::{self, Redelivery, RedeliveryError};
use crate::output::{
    self, ControlError, FieldErrors, FlushError, FlushRecord, OutputSpec, OutputState, ParamType,
    Parameter, Supervisor,
};
use crate::store::{Store, StoreError, StoredOutput};

pub mod import;
#[cfg(test)]
mod tests;

/// Why a change was refused. The web layer maps each to the status code it
/// has always answered with.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    NotFound(String),
    /// An output (or other object) of this name exists already.
    #[error("{0}")]
    AlreadyExists(String),
    /// The object is in a state that refuses the action (disabled, not
    /// running, a script still in use).
    #[error("{0}")]
    Conflict(String),
    #[error("invalid fields")]
    Invalid(FieldErrors),
    /// `limits.max_outputs`: a limit no field names.
    #[error("{0}")]
    LimitReached(String),
    /// The action needs running workers and this admin has none (import).
    #[error("{0}")]
    NoWorkers(String),
    #[error("{0}")]
    Script(ScriptError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Duplicate(_) => AdminError::AlreadyExists(e.to_string()),
            StoreError::LastAdmin(_) => AdminError::Conflict(e.to_string()),
            StoreError::NotFound(_) | StoreError::Missing(_) => AdminError::NotFound(e.to_string()),
            StoreError::Database(_) | StoreError::Corrupt { .. } => {
                tracing::error!("{e}");
                AdminError::Internal(e.to_string())
            }
        }
    }
}

fn dead_letter_error(e: DeadLetterError) -> AdminError {
    match e {
        DeadLetterError::Replaying(_) => AdminError::Conflict(e.to_string()),
        DeadLetterError::Io(_) => {
            tracing::error!("{e}");
            AdminError::Internal(e.to_string())
        }
    }
}

impl From<FieldErrors> for AdminError {
    fn from(e: FieldErrors) -> Self {
        AdminError::Invalid(e)
    }
}

/// The detail page's and the API's run controls.
#[derive(Clone, Copy, Debug)]
pub enum Control {
    Pause,
    Resume,
    Restart,
}

/// The output's JSON as the API shows it and the audit log records it:
/// password parameters carry no value.
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

pub fn parameter_json(p: &Parameter) -> Value {
    match p.ty {
        ParamType::Password => json!({ "name": p.name, "type": "password" }),
        _ => json!({ "name": p.name, "type": p.ty, "value": p.value }),
    }
}

/// A parameter as a client sent it: `value` is `None` for a password
/// left empty.
#[derive(Clone, Debug, PartialEq)]
pub struct ParameterInput {
    pub name: String,
    pub ty: ParamType,
    pub value: Option<String>,
}

impl ParameterInput {
    /// Stored passwords are never sent to a client, so a client cannot send
    /// one back: a password without a value keeps the one stored under that
    /// name, if the stored one is a password too. The one place that rule
    /// is written; `Err` (the message for `parameters.<name>`) when there is
    /// none to keep.
    pub fn resolve(self, previous: Option<&OutputSpec>) -> Result<Parameter, String> {
        let value = match self.value {
            Some(value) => value,
            None => previous
                .and_then(|p| p.parameter(&self.name))
                .filter(|p| p.ty == ParamType::Password)
                .map(|p| p.value.clone())
                .ok_or_else(|| "a value is required (no stored password to keep)".to_owned())?,
        };
        Ok(Parameter {
            name: self.name,
            ty: self.ty,
            value,
        })
    }
}

pub struct OutputAdmin {
    store: Store,
    limits: Limits,
    lua: LuaSettings,
    /// The running workers changes are applied to. `None` for
    /// `brokerstream import`, which runs while the service may be stopped:
    /// the store is changed and a service picks it up at its next start;
    /// actions on a running output (pause, flush…) are refused then.
    workers: Option<Arc<Supervisor>>,
    /// Held for the whole of each change, so that the store, the cursors
    /// and the running workers see changes in the same order.
    lock: tokio::sync::Mutex<()>,
}

impl OutputAdmin {
    /// The service's admin: changes reach the running workers.
    pub fn new(store: Store, limits: Limits, workers: Arc<Supervisor>) -> Self {
        let lua = workers.lua_settings().clone();
        OutputAdmin {
            store,
            limits,
            lua,
            workers: Some(workers),
            lock: tokio::sync::Mutex::new(()),
        }
    }

    /// An admin over the store alone (see [`OutputAdmin::workers`]).
    pub fn offline(store: Store, limits: Limits, lua: LuaSettings) -> Self {
        OutputAdmin {
            store,
            limits,
            lua,
            workers: None,
            lock: tokio::sync::Mutex::new(()),
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The `[lua]` settings outputs are checked against (`brokerstream
    /// import` compares Centreon's `bbdo_version` with them).
    pub fn lua_settings(&self) -> &LuaSettings {
        &self.lua
    }

    /// Everything a definition is checked against, without storing it (the
    /// form's Test button).
    pub fn validate(&self, spec: &OutputSpec, errors: &mut FieldErrors) {
        match &self.workers {
            Some(workers) => workers.validate(spec, errors),
            None => {
                output::validate(spec, errors);
                output::lua::check_spec(&self.lua, spec, errors);
            }
        }
    }

    /// Creates an output. `errors` are those the caller found reading its
    /// input, reported together with the validation's.
    pub async fn create(
        &self,
        actor: &str,
        spec: OutputSpec,
        errors: FieldErrors,
        start: StartAt,
    ) -> Result<StoredOutput, AdminError> {
        let _lock = self.lock.lock().await;
        self.save(actor, spec, errors, Some(start)).await
    }

    /// Changes an output: `edit` builds the new definition from the stored
    /// one, read under the lock so that no other change slips between.
    /// Errors it adds are reported with the validation's.
    pub async fn update(
        &self,
        actor: &str,
        name: &str,
        edit: impl FnOnce(&OutputSpec, &mut FieldErrors) -> OutputSpec,
    ) -> Result<StoredOutput, AdminError> {
        let _lock = self.lock.lock().await;
        let previous = self.store.get_output(name).await?.spec;
        let mut errors = FieldErrors::default();
        let spec = edit(&previous, &mut errors);
        self.save(actor, spec, errors, None).await
    }

    /// Replaces the whole definition.
    pub async fn replace(
        &self,
        actor: &str,
        name: &str,
        spec: OutputSpec,
    ) -> Result<StoredOutput, AdminError> {
        self.update(actor, name, |_, _| spec).await
    }

    /// Sets one parameter; `true` when it is new.
    pub async fn set_parameter(
        &self,
        actor: &str,
        name: &str,
        input: ParameterInput,
    ) -> Result<(Parameter, bool), AdminError> {
        let mut set = None;
        self.update(actor, name, |previous, errors| {
            let mut spec = previous.clone();
            let at = format!("parameters.{}", input.name);
            match input.resolve(Some(previous)) {
                Ok(parameter) => {
                    match spec
                        .parameters
                        .iter_mut()
                        .find(|p| p.name == parameter.name)
                    {
                        Some(existing) => {
                            *existing = parameter.clone();
                            set = Some((parameter, false));
                        }
                        None => {
                            spec.parameters.push(parameter.clone());
                            set = Some((parameter, true));
                        }
                    }
                }
                Err(message) => errors.add(at, message),
            }
            spec
        })
        .await?;
        set.ok_or_else(|| AdminError::Internal("the parameter was not set".into()))
    }

    pub async fn delete_parameter(
        &self,
        actor: &str,
        name: &str,
        param: &str,
    ) -> Result<(), AdminError> {
        let _lock = self.lock.lock().await;
        let mut spec = self.store.get_output(name).await?.spec;
        let before = spec.parameters.len();
        spec.parameters.retain(|p| p.name != param);
        if spec.parameters.len() == before {
            return Err(AdminError::NotFound(format!(
                "output `{name}` has no parameter `{param}`"
            )));
        }
        self.save(actor, spec, FieldErrors::default(), None)
            .await
            .map(drop)
    }

    pub async fn delete(&self, actor: &str, name: &str) -> Result<(), AdminError> {
        let _lock = self.lock.lock().await;
        self.store.get_output(name).await?;
        // Before the store: a delete during a replay is refused whole, and
        // an output later given this name starts with no dead letters.
        let set_aside = match &self.workers {
            Some(workers) => workers
                .dead_letters()
                .set_aside(name)
                .map_err(dead_letter_error)?,
            None => None,
        };
        self.store.delete_output(name).await?;
        if let Some(workers) = &self.workers {
            workers.remove(name).await;
        }
        let details = match &set_aside {
            Some(path) => json!({"dead_letters_kept_in": path.display().to_string()}),
            None => json!({}),
        };
        self.audit(actor, "output.delete", name, details).await;
        Ok(())
    }

    /// Gives an output a new name. What is kept by name goes with it: the
    /// journal cursor (no event skipped or sent twice), the dead letters,
    /// the status and flush history, the live tail and script log, the
    /// sealed passwords (sealed again under the new name). The audit log
    /// keeps the entries made under the old name, as history.
    pub async fn rename(
        &self,
        actor: &str,
        from: &str,
        to: &str,
    ) -> Result<StoredOutput, AdminError> {
        let _lock = self.lock.lock().await;
        self.store.get_output(from).await?;
        let mut errors = FieldErrors::default();
        if let Err(message) = output::check_name(to) {
            errors.add("name", message);
        } else if to == from {
            errors.add("name", "is the output's name already");
        }
        if !errors.is_empty() {
            return Err(errors.into());
        }
        match self.store.get_output(to).await {
            Ok(_) => {
                return Err(AdminError::AlreadyExists(format!(
                    "an output named `{to}` already exists; choose another name"
                )))
            }
            Err(StoreError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        // A cursor for the new name exists before the store holds that
        // name: a crash between the steps leaves a spare cursor (removed at
        // the next start), never an output without its place in the journal
        // (which would start at the newest event, skipping its backlog).
        if let Some(workers) = &self.workers {
            workers.copy_cursor(from, to);
        }
        if let Err(e) = self.store.rename_output(from, to).await {
            if let Some(workers) = &self.workers {
                workers.drop_cursor(to);
            }
            return Err(e.into());
        }
        if let Some(workers) = &self.workers {
            // Moves the cursor again, from where the worker left it.
            if let Err(e) = workers.rename(from, to).await {
                // The workers kept the old name: so does the store.
                if let Err(undo) = self.store.rename_output(to, from).await {
                    tracing::error!("cannot undo the rename of `{from}` to `{to}`: {undo}");
                }
                workers.drop_cursor(to);
                return Err(AdminError::Conflict(format!("cannot rename `{from}`: {e}")));
            }
        }
        tracing::info!(output = to, "renamed from `{from}`");
        self.audit(actor, "output.rename", to, json!({"from": from, "to": to}))
            .await;
        Ok(self.store.get_output(to).await?)
    }

    /// A new output named `to` with the kind, script, parameters and
    /// filters of `from`. Password values are copied on the server (the
    /// store seals them again under the new name); no client ever sees
    /// them. The copy starts disabled, so that it sends nothing to the
    /// same destination until its definition is checked; its cursor starts
    /// at the journal's head now, so enabling it delivers what arrived
    /// since the copy was made.
    pub async fn clone_output(
        &self,
        actor: &str,
        from: &str,
        to: &str,
    ) -> Result<StoredOutput, AdminError> {
        let _lock = self.lock.lock().await;
        let mut spec = self.store.get_output(from).await?.spec;
        spec.name = to.to_owned();
        spec.enabled = false;
        let mut errors = FieldErrors::default();
        if let Err(message) = output::check_name(to) {
            // Reported alone: the rest was valid under the old name.
            errors.add("name", message);
            return Err(errors.into());
        }
        self.save_as(actor, spec, errors, Some(StartAt::Head), Some(from))
            .await
    }

    /// Enables or disables an output; `false` in the answer when it was so
    /// already (nothing is changed or audited then). Disabling stops the
    /// worker and keeps the cursor: the journal keeps the backlog, within
    /// its retention limits. Disabling is never refused for a definition
    /// that no longer validates (a script since removed): that is when an
    /// operator needs it most.
    pub async fn set_enabled(
        &self,
        actor: &str,
        name: &str,
        enabled: bool,
    ) -> Result<(StoredOutput, bool), AdminError> {
        let _lock = self.lock.lock().await;
        let stored = self.store.get_output(name).await?;
        if stored.spec.enabled == enabled {
            return Ok((stored, false));
        }
        let mut spec = stored.spec;
        spec.enabled = enabled;
        if enabled {
            let mut errors = FieldErrors::default();
            self.validate(&spec, &mut errors);
            if !errors.is_empty() {
                return Err(errors.into());
            }
        }
        self.store.update_output(&spec).await?;
        if let Some(workers) = &self.workers {
            workers.apply(spec.clone()).await;
        }
        let action = if enabled {
            "output.enable"
        } else {
            "output.disable"
        };
        tracing::info!(output = name, "{action} by request");
        self.audit(actor, action, name, json!({})).await;
        Ok((self.store.get_output(name).await?, true))
    }

    /// Moves an output's cursor; the position it now reads from.
    pub async fn reposition(
        &self,
        actor: &str,
        name: &str,
        to: Reposition,
    ) -> Result<Seq, AdminError> {
        let _lock = self.lock.lock().await;
        let position = self
            .running()?
            .reposition(name, to)
            .await
            .ok_or_else(|| AdminError::NotFound(format!("no output named `{name}`")))?;
        let (action, detail) = match to {
            Reposition::Head => ("output.skip", json!({"position": position})),
            Reposition::Oldest => (
                "output.replay",
                json!({"from": "oldest", "position": position}),
            ),
            // The time asked for, as the API and the form take it; not the
            // Rust form of a SystemTime.
            Reposition::Since(at) => (
                "output.replay",
                json!({
                    "since": time::OffsetDateTime::from(at).format(&Rfc3339).unwrap_or_default(),
                    "position": position,
                }),
            ),
        };
        tracing::info!(output = name, position, "cursor moved: {action} {detail}");
        self.audit(actor, action, name, detail).await;
        Ok(position)
    }

    pub async fn pause(&self, actor: &str, name: &str) -> Result<OutputState, AdminError> {
        self.control(actor, name, Control::Pause).await
    }

    pub async fn resume(&self, actor: &str, name: &str) -> Result<OutputState, AdminError> {
        self.control(actor, name, Control::Resume).await
    }

    pub async fn restart(&self, actor: &str, name: &str) -> Result<OutputState, AdminError> {
        self.control(actor, name, Control::Restart).await
    }

    /// The state the output is in afterwards.
    pub async fn control(
        &self,
        actor: &str,
        name: &str,
        what: Control,
    ) -> Result<OutputState, AdminError> {
        // Taken so that an edit never races a pause into a running worker.
        let _lock = self.lock.lock().await;
        let workers = self.running()?;
        let state = match what {
            Control::Pause => workers.pause(name).await,
            Control::Resume => workers.resume(name).await,
            Control::Restart => workers.restart(name).await,
        }
        .map_err(|e| match e {
            ControlError::NotFound(_) => AdminError::NotFound(e.to_string()),
            ControlError::Disabled(_) => AdminError::Conflict(e.to_string()),
        })?;
        tracing::info!(output = name, "{what:?} by request");
        let action = match what {
            Control::Pause => "output.pause",
            Control::Resume => "output.resume",
            Control::Restart => "output.restart",
        };
        self.audit(actor, action, name, json!({"state": state}))
            .await;
        Ok(state)
    }

    /// Flushes an output now. Not under the lock: a flush changes no
    /// definition, and a slow destination must not hold every edit back.
    pub async fn flush(&self, actor: &str, name: &str) -> Result<FlushRecord, AdminError> {
        let record = self.running()?.flush(name).await.map_err(|e| match e {
            FlushError::NotFound(_) => AdminError::NotFound(e.to_string()),
            FlushError::NotRunning(_) => AdminError::Conflict(e.to_string()),
        })?;
        self.audit(
            actor,
            "output.flush",
            name,
            json!({"events": record.events, "result": record.result}),
        )
        .await;
        Ok(record)
    }

    /// A page of an output's dead letters, `limit` at most
    /// [`crate::output::deadletter::MAX_PAGE`].
    pub async fn dead_letters(
        &self,
        name: &str,
        offset: u64,
        limit: usize,
    ) -> Result<Page, AdminError> {
        self.store.get_output(name).await?;
        let letters = Arc::clone(self.running()?.dead_letters());
        let name = name.to_owned();
        tokio::task::spawn_blocking(move || letters.page(&name, offset, limit))
            .await
            .map_err(|e| AdminError::Internal(e.to_string()))?
            .map_err(dead_letter_error)
    }

    /// Sends an output's dead letters again through its current
    /// definition. Not under the lock, like a flush: a slow destination
    /// must not hold every edit back.
    pub async fn replay_dead_letters(
        &self,
        actor: &str,
        name: &str,
    ) -> Result<Redelivery, AdminError> {
        let spec = self.store.get_output(name).await?.spec;
        let letters = Arc::clone(self.running()?.dead_letters());
        // A task of its own, so that a client going away does not stop the
        // replay halfway (it would put back what it had not sent, but the
        // audit entry would be missing).
        let outcome = tokio::spawn(async move { redeliver::replay(&letters, &spec).await })
            .await
            .map_err(|e| AdminError::Internal(format!("the replay stopped: {e}")))?
            .map_err(|e| match e {
                RedeliveryError::Store(e) => dead_letter_error(e),
                RedeliveryError::Unsupported(m) => AdminError::Conflict(m),
            })?;
        self.audit(
            actor,
            "output.deadletters.replay",
            name,
            serde_json::to_value(&outcome).unwrap_or_default(),
        )
        .await;
        Ok(outcome)
    }

    /// Deletes an output's dead letters; how many there were.
    pub async fn discard_dead_letters(&self, actor: &str, name: &str) -> Result<u64, AdminError> {
        self.store.get_output(name).await?;
        let letters = Arc::clone(self.running()?.dead_letters());
        let output = name.to_owned();
        let discarded = tokio::task::spawn_blocking(move || letters.discard(&output))
            .await
            .map_err(|e| AdminError::Internal(e.to_string()))?
            .map_err(dead_letter_error)?;
        tracing::warn!(
            output = name,
            discarded,
            "dead letters discarded by request"
        );
        self.audit(
            actor,
            "output.deadletters.discard",
            name,
            json!({"discarded": discarded}),
        )
        .await;
        Ok(discarded)
    }

    /// Writes a script of the first script directory, creating it or
    /// replacing the one there (the audit entry says which); outputs
    /// running a replaced one restart on the new text, as an edit of their
    /// definition would. Text Lua cannot compile is refused before
    /// anything is written. `(replaced, outputs reloaded)`.
    pub async fn put_script(
        &self,
        actor: &str,
        name: &str,
        bytes: Vec<u8>,
    ) -> Result<(bool, Vec<String>), AdminError> {
        self.write_script(actor, name, bytes, Existing::Replace)
            .await
    }

    /// Adds a script that must not exist yet (the output form's upload:
    /// a running output may use a script of that name). Checked and
    /// audited as [`OutputAdmin::put_script`].
    pub async fn add_script(
        &self,
        actor: &str,
        name: &str,
        bytes: Vec<u8>,
    ) -> Result<(), AdminError> {
        self.write_script(actor, name, bytes, Existing::Keep)
            .await
            .map(drop)
    }

    async fn write_script(
        &self,
        actor: &str,
        name: &str,
        bytes: Vec<u8>,
        existing: Existing,
    ) -> Result<(bool, Vec<String>), AdminError> {
        let _lock = self.lock.lock().await;
        let settings = self.lua.clone();
        let written = {
            let name = name.to_owned();
            tokio::task::spawn_blocking(move || {
                scripts::check_syntax(&settings, &name, &bytes)?;
                scripts::write(&settings, &name, &bytes, existing)
            })
            .await
            .unwrap_or_else(|e| Err(ScriptError::Io(e.to_string())))
        };
        let replaced = written.map_err(AdminError::Script)?;
        let mut reloaded = Vec::new();
        if replaced {
            for output in self.store.list_outputs().await? {
                if scripts::runs(&self.lua, &output.spec, name) {
                    reloaded.push(output.spec.name.clone());
                    if let Some(workers) = &self.workers {
                        workers.apply(output.spec).await;
                    }
                }
            }
        }
        tracing::info!(script = %name, replaced, reloaded = ?reloaded, "script saved");
        self.audit(
            actor,
            "script.put",
            name,
            json!({"replaced": replaced, "reloaded": reloaded}),
        )
        .await;
        Ok((replaced, reloaded))
    }

    /// Removes a script of the first directory, unless an output runs it.
    /// Under the lock, so that no output starts using it between the check
    /// and the removal.
    pub async fn delete_script(&self, actor: &str, name: &str) -> Result<(), AdminError> {
        let _lock = self.lock.lock().await;
        let users: Vec<String> = self
            .store
            .list_outputs()
            .await?
            .iter()
            .filter(|o| scripts::runs(&self.lua, &o.spec, name))
            .map(|o| o.spec.name.clone())
            .collect();
        if !users.is_empty() {
            return Err(AdminError::Conflict(format!(
                "script `{name}` is used by output(s) {}; change or delete them first",
                users.join(", ")
            )));
        }
        scripts::remove(&self.lua, name).map_err(AdminError::Script)?;
        tracing::info!(script = %name, "script deleted");
        self.audit(actor, "script.delete", name, json!({})).await;
        Ok(())
    }

    fn running(&self) -> Result<&Arc<Supervisor>, AdminError> {
        self.workers.as_ref().ok_or_else(|| {
            AdminError::NoWorkers("the service's outputs are not running here".into())
        })
    }

    /// Limits, validation, `max_outputs`, store, cursor, apply, audit, in
    /// that order. The caller holds the lock.
    async fn save(
        &self,
        actor: &str,
        spec: OutputSpec,
        errors: FieldErrors,
        creating: Option<StartAt>,
    ) -> Result<StoredOutput, AdminError> {
        self.save_as(actor, spec, errors, creating, None).await
    }

    /// [`OutputAdmin::save`], for a copy of `cloned_from` when given (the
    /// audit entry says so).
    async fn save_as(
        &self,
        actor: &str,
        spec: OutputSpec,
        mut errors: FieldErrors,
        creating: Option<StartAt>,
        cloned_from: Option<&str>,
    ) -> Result<StoredOutput, AdminError> {
        let mut over = FieldErrors::default();
        check_limits(&spec, &self.limits, &mut over);
        if !over.is_empty() {
            // Nothing else is checked on a definition past the limits: its
            // errors would repeat the oversized names and values.
            errors.0.extend(over.0);
            return Err(errors.into());
        }
        self.validate(&spec, &mut errors);
        if !errors.is_empty() {
            return Err(errors.into());
        }
        if let Some(start) = creating {
            let count = self.store.count_outputs().await?;
            let max = self.limits.max_outputs;
            if count >= max {
                return Err(AdminError::LimitReached(format!(
                    "cannot create another output: {count} exist and limits.max_outputs is {max}; delete one first"
                )));
            }
            self.store.create_output(&spec).await?;
            if let Some(workers) = &self.workers {
                workers.create_cursor(&spec.name, start);
            }
        } else {
            self.store.update_output(&spec).await?;
        }
        if let Some(workers) = &self.workers {
            workers.apply(spec.clone()).await;
        }
        let stored = self.store.get_output(&spec.name).await?;
        let action = match (creating, cloned_from) {
            (Some(_), Some(_)) => "output.clone",
            (Some(_), None) => "output.create",
            (None, _) => "output.update",
        };
        // The same shape whoever made the change; output_json leaves
        // password values out, so the audit log never holds one.
        let mut detail = output_json(&stored);
        if let (Some(from), Value::Object(map)) = (cloned_from, &mut detail) {
            map.insert("cloned_from".into(), from.into());
        }
        self.audit(actor, action, &spec.name, detail).await;
        Ok(stored)
    }

    /// A change that was made stays made: an audit log that cannot be
    /// written is reported in the service log, not to the caller.
    async fn audit(&self, actor: &str, action: &str, target: &str, detail: Value) {
        if let Err(e) = self.store.audit(actor, action, target, &detail).await {
            tracing::error!(
                "cannot record `{action}` on `{target}` by `{actor}` in the audit log: {e}"
            );
        }
    }
}

/// Checks the sizes `[limits]` allows an output's parameters: how many,
/// and how long each name and value. Each error names the limit.
fn check_limits(spec: &OutputSpec, limits: &Limits, errors: &mut FieldErrors) {
    let count = spec.parameters.len();
    if count > limits.max_parameters {
        errors.add(
            "parameters",
            format!(
                "{count} parameters, more than the {} an output may have (limits.max_parameters)",
                limits.max_parameters
            ),
        );
    }
    for (i, p) in spec.parameters.iter().enumerate() {
        if p.name.len() > limits.max_parameter_name_bytes {
            // Not keyed by the name: it is the thing too long to repeat.
            errors.add(
                format!("parameters[{i}].name"),
                format!(
                    "is {} bytes, longer than the {}-byte limit (limits.max_parameter_name_bytes)",
                    p.name.len(),
                    limits.max_parameter_name_bytes
                ),
            );
        } else if p.value.len() > limits.max_parameter_value_bytes {
            errors.add(
                format!("parameters.{}", p.name),
                format!(
                    "the value is {} bytes, longer than the {}-byte limit (limits.max_parameter_value_bytes)",
                    p.value.len(),
                    limits.max_parameter_value_bytes
                ),
            );
        }
    }
}
