//! Keeps one worker running per enabled output, and applies definition
//! changes live: the old worker flushes and stops, the new one resumes from
//! the same cursor.

use crate::sync::lock;
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::command::Command;
use super::deadletter::DeadLetters;
use super::health::{self, Health, HealthSettings, HealthState};
use super::lua::interrupt::Interrupt;
use super::lua::LuaSettings;
use super::status::{
    age_secs, backoff, FlushRecord, OutputState, OutputStatus, StatusReader, StatusWriter,
};
use super::tail::Tail;
use super::worker::{Worker, RETRY_BASE, RETRY_MAX};
use super::{FieldErrors, OutputSpec, Secrets};
use crate::cache::Cache;
use crate::journal::{Journal, Reposition, Seq, StartAt};

pub struct Supervisor {
    journal: Arc<Journal>,
    cache: Arc<Cache>,
    stop_timeout: Duration,
    lua: Arc<LuaSettings>,
    /// `<data_dir>/deadletter`: what destinations refused for good.
    dead_letters: Arc<DeadLetters>,
    /// Replaced by a reload of the configuration (`set_health`).
    health: Mutex<HealthSettings>,
    /// Locking rule: this map's lock is held only to find, add or remove a
    /// slot, never across an `.await`. Starting and stopping an output's
    /// worker happens under that output's own `control` lock, which may be
    /// held while a worker stops (up to `stop_timeout`); readers never take
    /// it: they read the slot's `view`, whose lock is held only to copy it.
    outputs: Mutex<HashMap<String, Arc<Slot>>>,
}

/// One output, as the supervisor keeps it.
struct Slot {
    /// Kept across edits and restarts, so a watching browser keeps watching.
    tail: Arc<Tail>,
    view: Mutex<View>,
    control: tokio::sync::Mutex<Control>,
    /// Changed by whoever reads the status (the health watch among them),
    /// held only to judge.
    health: Mutex<HealthTrack>,
}

/// What the health is judged on over time.
struct HealthTrack {
    /// `counters.acknowledged` when last seen.
    acknowledged: u64,
    /// When events were last acknowledged, or nothing was waiting.
    progress_at: std::time::Instant,
    health: Health,
}

/// What readers (status, flush) need, changed only under `control`.
#[derive(Clone)]
struct View {
    status: StatusReader,
    secrets: Arc<Secrets>,
    /// How long events may wait unacknowledged before the health says so.
    threshold: Duration,
    /// The running worker's commands; `None` while none runs.
    commands: Option<mpsc::Sender<Command>>,
}

struct Control {
    spec: OutputSpec,
    /// Paused by an operator: no worker, the cursor stays where it is.
    /// Not persisted: a service restart resumes every enabled output.
    paused: bool,
    /// Removed from the map: nothing may start here any more.
    removed: bool,
    /// Held while no worker runs; the running worker has it otherwise.
    writer: Option<StatusWriter>,
    /// None when the output is disabled or paused.
    running: Option<Running>,
}

struct Running {
    commands: mpsc::Sender<Command>,
    /// Gives the status writer back when the worker ends.
    task: JoinHandle<Option<StatusWriter>>,
    /// A Lua output's hold on a script that does not return.
    interrupt: Option<Arc<Interrupt>>,
}

/// How often every output's health is judged, so that a change is logged
/// even when no one reads the status.
const HEALTH_WATCH: Duration = Duration::from_secs(1);

/// How long a stopping Lua worker may take to come back to its command loop
/// on its own (finishing a `write()` or its final `flush()`) before the
/// script is interrupted.
const STOP_GRACE: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FlushError {
    #[error("no output named `{0}`")]
    NotFound(String),
    #[error("output `{0}` is not running (disabled, paused or stopping)")]
    NotRunning(String),
}

/// Why an operator's pause, resume or restart was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ControlError {
    #[error("no output named `{0}`")]
    NotFound(String),
    #[error("output `{0}` is disabled; enable it first")]
    Disabled(String),
}

/// Why a rename was refused.
#[derive(Debug, thiserror::Error)]
pub enum RenameError {
    #[error("no output named `{0}`")]
    NotFound(String),
    #[error("an output named `{0}` exists already")]
    Exists(String),
    #[error(transparent)]
    DeadLetters(#[from] super::deadletter::DeadLetterError),
}

impl Supervisor {
    /// A supervisor whose `lua` outputs run with these settings, keeping
    /// its dead-letter files under `data_dir`. Its health watch runs on
    /// the current tokio runtime until the supervisor is dropped.
    pub fn with_lua(
        journal: Arc<Journal>,
        cache: Arc<Cache>,
        stop_timeout: Duration,
        lua: LuaSettings,
        data_dir: &std::path::Path,
        health: HealthSettings,
    ) -> Arc<Self> {
        let supervisor = Arc::new(Supervisor {
            journal,
            cache,
            stop_timeout,
            lua: Arc::new(lua),
            dead_letters: DeadLetters::new(data_dir.join("deadletter")),
            health: Mutex::new(health),
            outputs: Mutex::new(HashMap::new()),
        });
        let watched = Arc::downgrade(&supervisor);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(HEALTH_WATCH);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(supervisor) = watched.upgrade() else {
                    return;
                };
                // Judging logs each change: alerts without anyone polling.
                supervisor.statuses().await;
            }
        });
        supervisor
    }

    /// Every output's dead letters.
    pub fn dead_letters(&self) -> &Arc<DeadLetters> {
        &self.dead_letters
    }

    pub fn lua_settings(&self) -> &LuaSettings {
        &self.lua
    }

    /// Validates a definition, including what depends on this service's
    /// settings (a `lua` script must be inside a script directory).
    pub fn validate(&self, spec: &OutputSpec, errors: &mut FieldErrors) {
        super::validate(spec, errors);
        super::lua::check_spec(&self.lua, spec, errors);
    }

    /// Starts, restarts or stops the worker of `spec` to match it.
    pub async fn apply(&self, spec: OutputSpec) {
        loop {
            let slot = self.slot_or_new(&spec);
            let mut control = slot.control.lock().await;
            if control.removed {
                // Removed between the lookup and the lock: take a new slot.
                continue;
            }
            self.stop_worker(&slot, &mut control).await;
            // An edit does not undo a pause; disabling does.
            control.paused = control.paused && spec.enabled;
            let threshold = self.threshold(&spec);
            set_view(&slot, |view| {
                view.secrets = Arc::new(Secrets::of(&spec));
                view.threshold = threshold;
            });
            control.spec = spec;
            self.start(&slot, &mut control);
            return;
        }
    }

    fn slot(&self, name: &str) -> Option<Arc<Slot>> {
        lock(&self.outputs).get(name).cloned()
    }

    fn threshold(&self, spec: &OutputSpec) -> Duration {
        lock(&self.health).threshold(spec, spec.runs_script())
    }

    /// New `[health]` settings (a configuration reload): each output's
    /// threshold is computed again from them, its worker left running.
    pub async fn set_health(&self, settings: HealthSettings) {
        *lock(&self.health) = settings;
        let slots: Vec<Arc<Slot>> = lock(&self.outputs).values().cloned().collect();
        for slot in slots {
            let control = slot.control.lock().await;
            let threshold = self.threshold(&control.spec);
            set_view(&slot, |view| view.threshold = threshold);
        }
    }

    fn slot_or_new(&self, spec: &OutputSpec) -> Arc<Slot> {
        let threshold = self.threshold(spec);
        let mut outputs = lock(&self.outputs);
        let slot = outputs.entry(spec.name.clone()).or_insert_with(|| {
            let (writer, status) = StatusWriter::new(&spec.name, OutputState::Starting);
            Arc::new(Slot {
                tail: Arc::new(Tail::default()),
                view: Mutex::new(View {
                    status,
                    secrets: Arc::new(Secrets::of(spec)),
                    threshold,
                    commands: None,
                }),
                health: Mutex::new(HealthTrack {
                    acknowledged: 0,
                    progress_at: std::time::Instant::now(),
                    health: Health {
                        state: HealthState::Ok,
                        reason: "starting".to_owned(),
                        since: time::OffsetDateTime::now_utc(),
                    },
                }),
                control: tokio::sync::Mutex::new(Control {
                    spec: spec.clone(),
                    paused: false,
                    removed: false,
                    writer: Some(writer),
                    running: None,
                }),
            })
        });
        Arc::clone(slot)
    }

    /// Stops the worker, which flushes and keeps its cursor, until
    /// [`Supervisor::resume`]. Pausing a paused output changes nothing.
    pub async fn pause(&self, name: &str) -> Result<OutputState, ControlError> {
        let slot = self.existing_slot(name)?;
        let mut control = slot.control.lock().await;
        check_enabled(name, &control)?;
        control.paused = true;
        self.stop_worker(&slot, &mut control).await;
        if let Some(writer) = &control.writer {
            writer.set_state(OutputState::Paused);
        }
        Ok(OutputState::Paused)
    }

    pub async fn resume(&self, name: &str) -> Result<OutputState, ControlError> {
        let slot = self.existing_slot(name)?;
        let mut control = slot.control.lock().await;
        check_enabled(name, &control)?;
        control.paused = false;
        if control.running.is_none() {
            self.start(&slot, &mut control);
        }
        Ok(state_of(&slot))
    }

    /// Stops the worker (it flushes and commits its cursor) and starts a
    /// fresh one, which also ends a pause: the way out of a stuck script.
    pub async fn restart(&self, name: &str) -> Result<OutputState, ControlError> {
        let slot = self.existing_slot(name)?;
        let mut control = slot.control.lock().await;
        check_enabled(name, &control)?;
        self.stop_worker(&slot, &mut control).await;
        control.paused = false;
        self.start(&slot, &mut control);
        Ok(state_of(&slot))
    }

    fn existing_slot(&self, name: &str) -> Result<Arc<Slot>, ControlError> {
        self.slot(name)
            .ok_or_else(|| ControlError::NotFound(name.to_owned()))
    }

    /// Every output the supervisor knows, sorted.
    pub async fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = lock(&self.outputs).keys().cloned().collect();
        names.sort();
        names
    }

    /// The live tail of an output.
    pub async fn tail(&self, name: &str) -> Option<Arc<Tail>> {
        self.slot(name).map(|slot| Arc::clone(&slot.tail))
    }

    /// Starts the worker of an enabled output. A disabled output keeps its
    /// cursor: its events wait in the journal (within the retention limits).
    fn start(&self, slot: &Slot, control: &mut Control) {
        let Some(writer) = control.writer.take() else {
            // A worker still holds it: stop_worker comes first.
            return;
        };
        if !control.spec.enabled || control.paused {
            writer.set_state(if control.paused {
                OutputState::Paused
            } else {
                OutputState::Stopped
            });
            control.writer = Some(writer);
            return;
        }
        writer.set_state(OutputState::Starting);
        let running = self.spawn(control.spec.clone(), writer, Arc::clone(&slot.tail));
        set_view(slot, |view| view.commands = Some(running.commands.clone()));
        control.running = Some(running);
    }

    /// Creates the cursor of a new output where asked (before its first
    /// start, which otherwise starts it at the head).
    pub fn create_cursor(&self, name: &str, start: StartAt) {
        self.journal.cursor(name, start);
    }

    /// Moves an output's cursor (replay, skip): its worker flushes and stops,
    /// the cursor moves, a new worker starts from there. Returns the new
    /// position, `None` for an unknown output.
    pub async fn reposition(&self, name: &str, to: Reposition) -> Option<Seq> {
        let slot = self.slot(name)?;
        let mut control = slot.control.lock().await;
        if control.removed {
            return None;
        }
        self.stop_worker(&slot, &mut control).await;
        let position = self.journal.reposition(name, to);
        self.start(&slot, &mut control);
        position
    }

    /// The first step of a rename: a cursor for the new name at the old
    /// one's acknowledged position (see [`Journal::copy_cursor`]).
    pub fn copy_cursor(&self, from: &str, to: &str) -> bool {
        self.journal.copy_cursor(from, to)
    }

    /// Forgets a cursor made by [`Supervisor::copy_cursor`] for a rename
    /// that did not happen.
    pub fn drop_cursor(&self, name: &str) {
        self.journal.remove_cursor(name);
    }

    /// At start, once every stored output is applied: removes the cursors
    /// of outputs that do not exist (see [`Journal::retain_cursors`]).
    pub fn forget_other_cursors(&self, outputs: &[String]) {
        for name in self.journal.retain_cursors(outputs) {
            tracing::warn!(
                cursor = %name,
                "removed a journal cursor that belongs to no output (left by an interrupted rename or delete)"
            );
        }
    }

    /// Gives an output a new name, keeping what is kept by name: its
    /// journal cursor (nothing skipped, nothing read twice beyond what was
    /// not acknowledged), its dead letters, its status with the flush
    /// history, and its live tail. The worker flushes and stops, and a new
    /// one starts under the new name (unless disabled or paused).
    pub async fn rename(&self, from: &str, to: &str) -> Result<(), RenameError> {
        let slot = {
            let outputs = lock(&self.outputs);
            if outputs.contains_key(to) {
                return Err(RenameError::Exists(to.to_owned()));
            }
            outputs.get(from).cloned()
        };
        let Some(slot) = slot else {
            // Not running here (an import): only what is kept on disk moves.
            self.dead_letters.rename(from, to)?;
            self.journal.rename_cursor(from, to);
            return Ok(());
        };
        let mut control = slot.control.lock().await;
        if control.removed {
            return Err(RenameError::NotFound(from.to_owned()));
        }
        self.stop_worker(&slot, &mut control).await;
        if let Err(e) = self.dead_letters.rename(from, to) {
            self.start(&slot, &mut control);
            return Err(e.into());
        }
        self.journal.rename_cursor(from, to);
        {
            let mut outputs = lock(&self.outputs);
            outputs.remove(from);
            outputs.insert(to.to_owned(), Arc::clone(&slot));
        }
        control.spec.name = to.to_owned();
        if let Some(writer) = &control.writer {
            writer.update(|status| status.name = to.to_owned());
        }
        self.start(&slot, &mut control);
        Ok(())
    }

    /// Stops the worker of a deleted output and forgets it.
    pub async fn remove(&self, name: &str) {
        let removed = lock(&self.outputs).remove(name);
        if let Some(slot) = removed {
            let mut control = slot.control.lock().await;
            control.removed = true;
            self.stop_worker(&slot, &mut control).await;
        }
        self.journal.remove_cursor(name);
    }

    pub async fn flush(&self, name: &str) -> Result<FlushRecord, FlushError> {
        let slot = self
            .slot(name)
            .ok_or_else(|| FlushError::NotFound(name.to_owned()))?;
        let view = lock(&slot.view).clone();
        let commands = view
            .commands
            .ok_or_else(|| FlushError::NotRunning(name.to_owned()))?;
        let (reply, answer) = oneshot::channel();
        commands
            .send(Command::Flush(reply))
            .await
            .map_err(|_| FlushError::NotRunning(name.to_owned()))?;
        let mut record = answer
            .await
            .map_err(|_| FlushError::NotRunning(name.to_owned()))?;
        record.result = view.secrets.redact_owned(record.result);
        Ok(record)
    }

    pub fn cache(&self) -> &Arc<Cache> {
        &self.cache
    }

    /// The status of every output, sorted by name.
    pub async fn statuses(&self) -> Vec<OutputStatus> {
        let slots: Vec<(String, Arc<Slot>)> = lock(&self.outputs)
            .iter()
            .map(|(name, slot)| (name.clone(), Arc::clone(slot)))
            .collect();
        let mut all: Vec<OutputStatus> = slots
            .iter()
            .map(|(name, slot)| self.status_of(name, slot))
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// The status of an output, as its worker last published it: never
    /// waits for a worker, even one that is stopping.
    pub async fn status(&self, name: &str) -> Option<OutputStatus> {
        let slot = self.slot(name)?;
        Some(self.status_of(name, &slot))
    }

    fn status_of(&self, name: &str, slot: &Slot) -> OutputStatus {
        let view = lock(&slot.view).clone();
        let mut status = OutputStatus::clone(&view.status.snapshot());
        // Whatever a script raised or a destination answered may hold a
        // password; what leaves the supervisor never does.
        view.secrets.redact_status(&mut status);
        let backlog = self.journal.backlog(name);
        status.position = backlog.position;
        status.queue_depth = backlog.unacked;
        status.queue_bytes = backlog.unacked_bytes;
        status.lost = backlog.lost;
        status.oldest_pending_age_secs = backlog.oldest.map(age_secs);
        status.dead_letters_held = self.dead_letters.held(name).ok();
        status.health = Some(judge_health(
            name,
            slot,
            &status,
            view.threshold,
            lock(&self.health).error_ratio,
        ));
        status
    }

    /// Stops every worker, each flushing what it holds.
    pub async fn shutdown(&self) {
        let drained: Vec<Arc<Slot>> = lock(&self.outputs).drain().map(|(_, slot)| slot).collect();
        let stops = drained.into_iter().map(|slot| async move {
            let mut control = slot.control.lock().await;
            control.removed = true;
            self.stop_worker(&slot, &mut control).await;
        });
        futures::future::join_all(stops).await;
    }

    /// Stops the running worker, if any, and takes the status writer back
    /// (or reopens the status when the worker could not give it back).
    async fn stop_worker(&self, slot: &Slot, control: &mut Control) {
        let Some(running) = control.running.take() else {
            return;
        };
        set_view(slot, |view| view.commands = None);
        let name = control.spec.name.as_str();
        let Running {
            commands,
            mut task,
            interrupt,
        } = running;
        let _ = commands.send(Command::Stop).await;
        let mut ended = None;
        if let Some(interrupt) = interrupt {
            match tokio::time::timeout(STOP_GRACE, &mut task).await {
                Ok(result) => ended = Some(result),
                Err(_) => {
                    tracing::warn!(
                        output = name,
                        "the script did not return within {STOP_GRACE:?}; interrupting it"
                    );
                    interrupt.stop();
                }
            }
        }
        let ended = match ended {
            Some(result) => Some(result),
            None => match tokio::time::timeout(self.stop_timeout, &mut task).await {
                Ok(result) => Some(result),
                Err(_) => {
                    tracing::warn!(
                        output = name,
                        "worker did not stop within {:?}; aborting it",
                        self.stop_timeout
                    );
                    task.abort();
                    None
                }
            },
        };
        let writer = match ended {
            Some(Ok(Some(writer))) => writer,
            // Abandoned, or it panicked: whatever it still writes goes to a
            // status no one reads any more.
            _ => {
                let (writer, reader) = lock(&slot.view).status.reopen();
                set_view(slot, |view| view.status = reader);
                writer
            }
        };
        writer.update(|status| {
            if status.state != OutputState::Failed {
                status.state = OutputState::Stopped;
            }
        });
        control.writer = Some(writer);
    }

    fn spawn(&self, spec: OutputSpec, status: StatusWriter, tail: Arc<Tail>) -> Running {
        let (commands, mut receiver) = mpsc::channel(16);
        let journal = Arc::clone(&self.journal);
        let cache = Arc::clone(&self.cache);
        let lua = Arc::clone(&self.lua);
        let dead_letters = Arc::clone(&self.dead_letters);
        // Created before answering the request that made the output, so that
        // the events posted right after are its own.
        let lua_cursor = spec
            .runs_script()
            .then(|| journal.cursor(&spec.name, StartAt::Head));
        let interrupt = lua_cursor.is_some().then(Interrupt::new);
        let script_interrupt = interrupt.clone();
        let task = tokio::spawn(async move {
            if let Some(cursor) = lua_cursor {
                // A script runs on a thread of its own, which keeps its own
                // retry loop (Centreon's failover loop).
                // The script's log goes to the service log and to the page.
                let service_log = super::lua::worker::tracing_sink(&spec.name);
                let page_tail = Arc::clone(&tail);
                let log: super::lua::sdk::LogSink = Arc::new(move |severity, text| {
                    page_tail.log(severity.label(), text);
                    service_log(severity, text);
                });
                return super::lua::worker::run_traced(
                    spec,
                    cursor,
                    cache,
                    status,
                    receiver,
                    lua,
                    Some(log),
                    None,
                    tail,
                    script_interrupt.unwrap_or_else(Interrupt::new),
                )
                .await;
            }
            let mut attempt = 0;
            loop {
                let cursor = journal.cursor(&spec.name, StartAt::Head);
                let worker = match Worker::new(
                    &spec,
                    cursor,
                    Arc::clone(&cache),
                    &status,
                    Arc::clone(&tail),
                    &dead_letters,
                ) {
                    Ok(worker) => worker,
                    Err(error) => {
                        let error = Secrets::of(&spec).redact_owned(error);
                        tracing::error!(output = %spec.name, "cannot start: {error}");
                        status.fail_for_good(error);
                        // Nothing to run; still answer Stop.
                        while let Some(command) = receiver.recv().await {
                            if let Command::Stop = command {
                                break;
                            }
                        }
                        return Some(status);
                    }
                };
                match AssertUnwindSafe(worker.run(&mut receiver))
                    .catch_unwind()
                    .await
                {
                    Ok(()) => return Some(status),
                    Err(panic) => {
                        attempt += 1;
                        let message = panic
                            .downcast_ref::<String>()
                            .map(String::as_str)
                            .or_else(|| panic.downcast_ref::<&str>().copied())
                            .unwrap_or("unknown panic");
                        let delay = backoff(attempt, RETRY_BASE, RETRY_MAX);
                        tracing::error!(output = %spec.name, "worker crashed: {message}; restarting in {delay:?}");
                        status.update(|s| {
                            s.record_error(format!("worker crashed: {message}"), None, delay)
                        });
                        tokio::time::sleep(delay).await;
                    }
                }
            }
        });
        Running {
            commands,
            task,
            interrupt,
        }
    }
}

/// The output's health now, logging a change at warning level (back to
/// `ok` at info level).
fn judge_health(
    name: &str,
    slot: &Slot,
    status: &OutputStatus,
    threshold: Duration,
    error_ratio: f64,
) -> Health {
    let mut track = lock(&slot.health);
    let now = std::time::Instant::now();
    if status.counters.acknowledged != track.acknowledged || status.queue_depth == 0 {
        track.acknowledged = status.counters.acknowledged;
        track.progress_at = now;
    }
    let at = time::OffsetDateTime::now_utc();
    let (state, reason) = health::judge(&health::Judged {
        status,
        waiting_for: now.duration_since(track.progress_at),
        threshold,
        refused_at: health::last_refusal(status),
        error_ratio,
        now: at,
    });
    if state != track.health.state {
        if state == HealthState::Ok {
            tracing::info!(output = name, health = state.as_str(), "{reason}");
        } else {
            tracing::warn!(output = name, health = state.as_str(), "{reason}");
        }
        track.health = Health {
            state,
            reason,
            since: at,
        };
    } else {
        track.health.reason = reason;
    }
    track.health.clone()
}

fn check_enabled(name: &str, control: &Control) -> Result<(), ControlError> {
    if control.removed {
        return Err(ControlError::NotFound(name.to_owned()));
    }
    if !control.spec.enabled {
        return Err(ControlError::Disabled(name.to_owned()));
    }
    Ok(())
}

fn state_of(slot: &Slot) -> OutputState {
    lock(&slot.view).status.snapshot().state
}

fn set_view(slot: &Slot, change: impl FnOnce(&mut View)) {
    change(&mut lock(&slot.view));
}
