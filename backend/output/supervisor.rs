//! Keeps one worker running per enabled output, and applies definition
//! changes live: the old worker flushes and stops, the new one resumes from
//! the same cursor.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::lua::LuaSettings;
use super::status::{age_secs, backoff, FlushRecord, OutputState, OutputStatus};
use super::tail::Tail;
use super::worker::{Command, Worker, RETRY_BASE, RETRY_MAX};
use super::{FieldErrors, OutputSpec, Secrets};
use crate::cache::Cache;
use crate::journal::{Journal, Reposition, Seq, StartAt};

pub struct Supervisor {
    journal: Arc<Journal>,
    cache: Arc<Cache>,
    stop_timeout: Duration,
    lua: Arc<LuaSettings>,
    /// `<data_dir>/deadletter`: what destinations refused for good.
    deadletter_dir: Arc<std::path::PathBuf>,
    outputs: tokio::sync::Mutex<HashMap<String, Supervised>>,
}

struct Supervised {
    spec: OutputSpec,
    status: Arc<Mutex<OutputStatus>>,
    /// Kept across edits and restarts, so a watching browser keeps watching.
    tail: Arc<Tail>,
    /// Paused by an operator: no worker, the cursor stays where it is.
    /// Not persisted: a service restart resumes every enabled output.
    paused: bool,
    /// None when the output is disabled or paused.
    running: Option<Running>,
}

struct Running {
    commands: mpsc::Sender<Command>,
    task: JoinHandle<()>,
}

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

impl Supervisor {
    pub fn new(journal: Arc<Journal>, cache: Arc<Cache>, stop_timeout: Duration) -> Arc<Self> {
        let data_dir = std::path::Path::new(crate::config::DEFAULT_DATA_DIR);
        let lua = LuaSettings::for_data_dir(data_dir);
        Supervisor::with_lua(journal, cache, stop_timeout, lua, data_dir)
    }

    /// A supervisor whose `lua` outputs run with these settings, keeping
    /// its dead-letter files under `data_dir`.
    pub fn with_lua(
        journal: Arc<Journal>,
        cache: Arc<Cache>,
        stop_timeout: Duration,
        lua: LuaSettings,
        data_dir: &std::path::Path,
    ) -> Arc<Self> {
        Arc::new(Supervisor {
            journal,
            cache,
            stop_timeout,
            lua: Arc::new(lua),
            deadletter_dir: Arc::new(data_dir.join("deadletter")),
            outputs: tokio::sync::Mutex::new(HashMap::new()),
        })
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
        let mut outputs = self.outputs.lock().await;
        let (status, tail, paused) = match outputs.remove(&spec.name) {
            Some(mut old) => {
                if let Some(running) = old.running.take() {
                    self.stop(&spec.name, running).await;
                }
                // An edit does not undo a pause; disabling does.
                (old.status, old.tail, old.paused && spec.enabled)
            }
            None => (
                Arc::new(Mutex::new(OutputStatus::new(
                    &spec.name,
                    OutputState::Starting,
                ))),
                Arc::new(Tail::default()),
                false,
            ),
        };
        let mut output = Supervised {
            spec,
            status,
            tail,
            paused,
            running: None,
        };
        output.running = self.start(&output);
        outputs.insert(output.spec.name.clone(), output);
    }

    /// Stops the worker, which flushes and keeps its cursor, until
    /// [`Supervisor::resume`]. Pausing a paused output changes nothing.
    pub async fn pause(&self, name: &str) -> Result<OutputState, ControlError> {
        let mut outputs = self.outputs.lock().await;
        let output = outputs
            .get_mut(name)
            .ok_or_else(|| ControlError::NotFound(name.to_owned()))?;
        if !output.spec.enabled {
            return Err(ControlError::Disabled(name.to_owned()));
        }
        output.paused = true;
        if let Some(running) = output.running.take() {
            self.stop(name, running).await;
        }
        lock(&output.status).state = OutputState::Paused;
        Ok(OutputState::Paused)
    }

    pub async fn resume(&self, name: &str) -> Result<OutputState, ControlError> {
        let mut outputs = self.outputs.lock().await;
        let output = outputs
            .get_mut(name)
            .ok_or_else(|| ControlError::NotFound(name.to_owned()))?;
        if !output.spec.enabled {
            return Err(ControlError::Disabled(name.to_owned()));
        }
        output.paused = false;
        if output.running.is_none() {
            output.running = self.start(output);
        }
        let state = lock(&output.status).state;
        Ok(state)
    }

    /// Stops the worker (it flushes and commits its cursor) and starts a
    /// fresh one, which also ends a pause: the way out of a stuck script.
    pub async fn restart(&self, name: &str) -> Result<OutputState, ControlError> {
        let mut outputs = self.outputs.lock().await;
        let output = outputs
            .get_mut(name)
            .ok_or_else(|| ControlError::NotFound(name.to_owned()))?;
        if !output.spec.enabled {
            return Err(ControlError::Disabled(name.to_owned()));
        }
        if let Some(running) = output.running.take() {
            self.stop(name, running).await;
        }
        output.paused = false;
        output.running = self.start(output);
        let state = lock(&output.status).state;
        Ok(state)
    }

    /// Every output the supervisor knows, sorted.
    pub async fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.outputs.lock().await.keys().cloned().collect();
        names.sort();
        names
    }

    /// The live tail of an output.
    pub async fn tail(&self, name: &str) -> Option<Arc<Tail>> {
        let outputs = self.outputs.lock().await;
        outputs.get(name).map(|o| Arc::clone(&o.tail))
    }

    /// Starts the worker of an enabled output. A disabled output keeps its
    /// cursor: its events wait in the journal (within the retention limits).
    fn start(&self, output: &Supervised) -> Option<Running> {
        let status = &output.status;
        if !output.spec.enabled {
            lock(status).state = OutputState::Stopped;
            None
        } else if output.paused {
            lock(status).state = OutputState::Paused;
            None
        } else {
            lock(status).state = OutputState::Starting;
            Some(self.spawn(
                output.spec.clone(),
                Arc::clone(status),
                Arc::clone(&output.tail),
            ))
        }
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
        let mut outputs = self.outputs.lock().await;
        let output = outputs.get_mut(name)?;
        if let Some(running) = output.running.take() {
            self.stop(name, running).await;
        }
        let position = self.journal.reposition(name, to);
        output.running = self.start(output);
        position
    }

    /// Stops the worker of a deleted output and forgets it.
    pub async fn remove(&self, name: &str) {
        let removed = self.outputs.lock().await.remove(name);
        if let Some(Supervised {
            running: Some(running),
            ..
        }) = removed
        {
            self.stop(name, running).await;
        }
        self.journal.remove_cursor(name);
    }

    pub async fn flush(&self, name: &str) -> Result<FlushRecord, FlushError> {
        let (commands, secrets) = {
            let outputs = self.outputs.lock().await;
            let output = outputs
                .get(name)
                .ok_or_else(|| FlushError::NotFound(name.to_owned()))?;
            let running = output
                .running
                .as_ref()
                .ok_or_else(|| FlushError::NotRunning(name.to_owned()))?;
            (running.commands.clone(), Secrets::of(&output.spec))
        };
        let (reply, answer) = oneshot::channel();
        commands
            .send(Command::Flush(reply))
            .await
            .map_err(|_| FlushError::NotRunning(name.to_owned()))?;
        let mut record = answer
            .await
            .map_err(|_| FlushError::NotRunning(name.to_owned()))?;
        record.result = secrets.redact_owned(record.result);
        Ok(record)
    }

    pub fn cache(&self) -> &Arc<Cache> {
        &self.cache
    }

    /// The status of every output, sorted by name.
    pub async fn statuses(&self) -> Vec<OutputStatus> {
        let names: Vec<String> = self.outputs.lock().await.keys().cloned().collect();
        let mut all = Vec::with_capacity(names.len());
        for name in names {
            if let Some(status) = self.status(&name).await {
                all.push(status);
            }
        }
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    pub async fn status(&self, name: &str) -> Option<OutputStatus> {
        let (status, secrets) = {
            let outputs = self.outputs.lock().await;
            let output = outputs.get(name)?;
            (Arc::clone(&output.status), Secrets::of(&output.spec))
        };
        let mut status = lock(&status).clone();
        // Whatever a script raised or a destination answered may hold a
        // password; what leaves the supervisor never does.
        secrets.redact_status(&mut status);
        let backlog = self.journal.backlog(name);
        status.position = backlog.position;
        status.queue_depth = backlog.unacked;
        status.queue_bytes = backlog.unacked_bytes;
        status.lost = backlog.lost;
        status.oldest_pending_age_secs = backlog.oldest.map(age_secs);
        Some(status)
    }

    /// Stops every worker, each flushing what it holds.
    pub async fn shutdown(&self) {
        let drained: Vec<(String, Supervised)> = self.outputs.lock().await.drain().collect();
        let stops = drained.into_iter().filter_map(|(name, output)| {
            output
                .running
                .map(|running| async move { self.stop(&name, running).await })
        });
        futures::future::join_all(stops).await;
    }

    async fn stop(&self, name: &str, running: Running) {
        let Running { commands, mut task } = running;
        let _ = commands.send(Command::Stop).await;
        if tokio::time::timeout(self.stop_timeout, &mut task)
            .await
            .is_err()
        {
            tracing::warn!(
                output = name,
                "worker did not stop within {:?}; aborting it",
                self.stop_timeout
            );
            task.abort();
        }
    }

    fn spawn(
        &self,
        spec: OutputSpec,
        status: Arc<Mutex<OutputStatus>>,
        tail: Arc<Tail>,
    ) -> Running {
        let (commands, mut receiver) = mpsc::channel(16);
        let journal = Arc::clone(&self.journal);
        let cache = Arc::clone(&self.cache);
        let lua = Arc::clone(&self.lua);
        let deadletter_dir = Arc::clone(&self.deadletter_dir);
        // Created before answering the request that made the output, so that
        // the events posted right after are its own.
        let lua_cursor = (spec.kind == "lua").then(|| journal.cursor(&spec.name, StartAt::Head));
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
                super::lua::worker::run_traced(
                    spec,
                    cursor,
                    cache,
                    status,
                    receiver,
                    lua,
                    Some(log),
                    None,
                    tail,
                )
                .await;
                return;
            }
            let mut attempt = 0;
            loop {
                let cursor = journal.cursor(&spec.name, StartAt::Head);
                let worker = match Worker::new(
                    &spec,
                    cursor,
                    Arc::clone(&cache),
                    Arc::clone(&status),
                    Arc::clone(&tail),
                    &deadletter_dir,
                ) {
                    Ok(worker) => worker,
                    Err(error) => {
                        let error = Secrets::of(&spec).redact_owned(error);
                        tracing::error!(output = %spec.name, "cannot start: {error}");
                        {
                            let mut status = lock(&status);
                            status.state = OutputState::Failed;
                            status.last_error = Some(error);
                            status.last_error_at = Some(time::OffsetDateTime::now_utc());
                        }
                        // Nothing to run; still answer Stop.
                        while let Some(command) = receiver.recv().await {
                            if let Command::Stop = command {
                                break;
                            }
                        }
                        return;
                    }
                };
                match AssertUnwindSafe(worker.run(&mut receiver))
                    .catch_unwind()
                    .await
                {
                    Ok(()) => return,
                    Err(panic) => {
                        attempt += 1;
                        let message = panic
                            .downcast_ref::<String>()
                            .map(String::as_str)
                            .or_else(|| panic.downcast_ref::<&str>().copied())
                            .unwrap_or("unknown panic");
                        let delay = backoff(attempt, RETRY_BASE, RETRY_MAX);
                        tracing::error!(output = %spec.name, "worker crashed: {message}; restarting in {delay:?}");
                        lock(&status).record_error(format!("worker crashed: {message}"), delay);
                        tokio::time::sleep(delay).await;
                    }
                }
            }
        });
        Running { commands, task }
    }
}

fn lock(status: &Mutex<OutputStatus>) -> std::sync::MutexGuard<'_, OutputStatus> {
    status.lock().unwrap_or_else(|e| e.into_inner())
}
