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
use super::worker::{Command, Worker, RETRY_BASE, RETRY_MAX};
use super::{FieldErrors, OutputSpec};
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
    /// None when the output is disabled.
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
    #[error("output `{0}` is not running (disabled or stopping)")]
    NotRunning(String),
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
        let status = match outputs.remove(&spec.name) {
            Some(mut old) => {
                if let Some(running) = old.running.take() {
                    self.stop(&spec.name, running).await;
                }
                old.status
            }
            None => Arc::new(Mutex::new(OutputStatus::new(
                &spec.name,
                OutputState::Starting,
            ))),
        };
        let running = self.start(&spec, &status);
        outputs.insert(
            spec.name.clone(),
            Supervised {
                spec,
                status,
                running,
            },
        );
    }

    /// Starts the worker of an enabled output. A disabled output keeps its
    /// cursor: its events wait in the journal (within the retention limits).
    fn start(&self, spec: &OutputSpec, status: &Arc<Mutex<OutputStatus>>) -> Option<Running> {
        if spec.enabled {
            lock(status).state = OutputState::Starting;
            Some(self.spawn(spec.clone(), Arc::clone(status)))
        } else {
            lock(status).state = OutputState::Stopped;
            None
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
        output.running = self.start(&output.spec, &output.status);
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
        let commands = {
            let outputs = self.outputs.lock().await;
            let output = outputs
                .get(name)
                .ok_or_else(|| FlushError::NotFound(name.to_owned()))?;
            let running = output
                .running
                .as_ref()
                .ok_or_else(|| FlushError::NotRunning(name.to_owned()))?;
            running.commands.clone()
        };
        let (reply, answer) = oneshot::channel();
        commands
            .send(Command::Flush(reply))
            .await
            .map_err(|_| FlushError::NotRunning(name.to_owned()))?;
        answer
            .await
            .map_err(|_| FlushError::NotRunning(name.to_owned()))
    }

    pub async fn status(&self, name: &str) -> Option<OutputStatus> {
        let status = {
            let outputs = self.outputs.lock().await;
            Arc::clone(&outputs.get(name)?.status)
        };
        let mut status = lock(&status).clone();
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

    fn spawn(&self, spec: OutputSpec, status: Arc<Mutex<OutputStatus>>) -> Running {
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
                super::lua::worker::run(spec, cursor, cache, status, receiver, lua).await;
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
                    &deadletter_dir,
                ) {
                    Ok(worker) => worker,
                    Err(error) => {
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
