//! The worker of a `lua` output. The script runs on an OS thread of its
//! own, so a script that blocks (a slow HTTP call, a busy loop) stalls only
//! its output: the thread drives the journal cursor with a single-threaded
//! tokio runtime, and talks to the supervisor through the command channel.
//!
//! Timing follows Centreon's failover loop (docs/lua-runtime.md §2.4): events
//! are handed to `write()` as they come; `flush()` is called as soon as the
//! queue runs dry after a burst, then about once a second while idle, and at
//! stop. A script that does not acknowledge gets at most
//! `event_queue_max_size` events; past that only `flush()` is called (§2.5),
//! at once and then every [`HELD_FLUSH`], and the status says so
//! (`held_back_since`).

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

use super::event::Shared;
use super::interrupt::Interrupt;
use super::runtime::{Script, ScriptEnv};
use super::sdk::{LogSink, Severity};
use super::LuaSettings;
use crate::cache::Cache;
use crate::event::Filter;
use crate::journal::{Cursor, Seq};
use crate::output::command::Command;
use crate::output::delivery::ErrorKind;
use crate::output::status::{
    backoff, FlushOutcome, FlushReason, FlushRecord, OutputState, OutputStatus, StatusWriter,
};
use crate::output::tail::{Stage, Tail};
use crate::output::{OutputSpec, Secrets};

/// Category `local` (9): Centreon never hands its events (a stop, a
/// central's own markers it may republish) to a script, whatever the
/// output's filters (docs/lua-runtime.md §1.1).
const LOCAL_CATEGORY: u16 = 9;

/// Events read from the journal at a time.
const READ_BATCH: usize = 1000;
/// Centreon calls `flush()` about once a second while idle.
pub const IDLE_FLUSH: Duration = Duration::from_secs(1);
/// While `write()` is paused at `event_queue_max_size`, `flush()` is the
/// script's only chance to send and acknowledge: calling it ten times as
/// often as when idle ends the pause within 0.1 s of the moment the script
/// would send (Centreon's libraries send from `flush()` once their queue
/// is old enough), for a call that costs microseconds when it does not.
pub const HELD_FLUSH: Duration = Duration::from_millis(100);
/// Flushes that keep returning false while events wait are reported in
/// `last_error` at once when the script logged an error since the last
/// acknowledgement, else after this long: Centreon's certified connectors
/// return false from `flush()` while their queues are younger than
/// `max_all_queues_age` (60 s by default), which is normal.
pub const STALL_REPORT_AFTER: Duration = Duration::from_secs(120);
/// A script that fails to load is tried again after 1 s, doubling up to
/// Centreon's `retry_interval` default of 15 s.
pub const LOAD_RETRY_BASE: Duration = Duration::from_secs(1);
pub const LOAD_RETRY_MAX: Duration = Duration::from_secs(15);

/// A log sink that writes to the service log, tagged with the output.
pub fn tracing_sink(output: &str) -> LogSink {
    let output = output.to_owned();
    Arc::new(move |severity, text| match severity {
        Severity::Info => tracing::info!(output = %output, "{text}"),
        Severity::Warning => tracing::warn!(output = %output, "{text}"),
        Severity::Error => tracing::error!(output = %output, "{text}"),
    })
}

/// A sink that takes the output's passwords out of every line first: a
/// script may log its `conf`, or raise an error holding a URL with its
/// credentials, and neither the service log nor the page may show them.
pub fn redacting(log: LogSink, secrets: Secrets) -> LogSink {
    if secrets.is_empty() {
        return log;
    }
    Arc::new(move |severity, text| log(severity, &secrets.redact(text)))
}

fn redacting_trace(
    trace: super::runtime::TraceSink,
    secrets: Secrets,
) -> super::runtime::TraceSink {
    if secrets.is_empty() {
        return trace;
    }
    Arc::new(move |text| trace(&secrets.redact(text)))
}

/// Runs the output until it is told to stop; resolves once its thread has
/// flushed and closed the script, with the status writer it was given.
/// `None` when the thread could not hand it back. The script's log and its
/// calls go to `log` and `trace` when given (`run-script` prints them),
/// else to the service log.
#[allow(clippy::too_many_arguments)]
pub async fn run_traced(
    spec: OutputSpec,
    cursor: Cursor,
    cache: Arc<Cache>,
    status: StatusWriter,
    commands: mpsc::Receiver<Command>,
    settings: Arc<LuaSettings>,
    log: Option<LogSink>,
    trace: Option<super::runtime::TraceSink>,
    tail: Arc<Tail>,
    interrupt: Arc<Interrupt>,
) -> Option<StatusWriter> {
    let (done, finished) = oneshot::channel::<StatusWriter>();
    let name = spec.name.clone();
    // The thread owns the writer, and gives it back when it ends.
    let spawned = std::thread::Builder::new()
        .name(format!("lua:{name}"))
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .on_thread_park(crate::memory::collect_if_asked)
                .build();
            match runtime {
                Ok(runtime) => {
                    let log = log.unwrap_or_else(|| tracing_sink(&spec.name));
                    let page = Arc::clone(&tail);
                    let file_log: LogSink =
                        Arc::new(move |severity, text| page.log(severity.label(), text));
                    // One matcher for the three sinks (clones share it).
                    let secrets = Secrets::of(&spec);
                    let env = ScriptEnv {
                        cache,
                        settings,
                        log: redacting(log, secrets.clone()),
                        file_log: Some(redacting(file_log, secrets.clone())),
                        interrupt,
                        trace: trace.map(|trace| redacting_trace(trace, secrets)),
                    };
                    let mut thread = Thread {
                        spec,
                        env,
                        cursor,
                        status,
                        commands,
                        runtime,
                        tail,
                    };
                    // The script runs outside the runtime: only the waits
                    // are `block_on`, so the built-in HTTP modules (blocking
                    // reqwest, which refuses to run inside a runtime) work.
                    thread.run();
                    let _ = done.send(thread.status);
                }
                Err(e) => {
                    fail_for_good(&status, format!("cannot start: {e}"));
                    let _ = done.send(status);
                }
            }
        });
    match spawned {
        Ok(_) => finished.await.ok(),
        Err(e) => {
            // The closure, and the writer it would have received, are gone
            // with the failed spawn; the supervisor reopens the status.
            tracing::error!(output = %name, "cannot start a thread: {e}");
            None
        }
    }
}

/// `07:42:05`.
fn clock(at: OffsetDateTime) -> String {
    format!("{:02}:{:02}:{:02}", at.hour(), at.minute(), at.second())
}

fn fail_for_good(status: &StatusWriter, error: String) {
    tracing::error!("{error}");
    status.fail_for_good(error);
}

struct Thread {
    spec: OutputSpec,
    env: ScriptEnv,
    cursor: Cursor,
    status: StatusWriter,
    commands: mpsc::Receiver<Command>,
    runtime: tokio::runtime::Runtime,
    tail: Arc<Tail>,
}

impl Thread {
    fn run(&mut self) {
        let mut attempt = 0;
        loop {
            let loaded = self
                .env
                .settings
                .resolve_script(self.spec.path.as_deref().unwrap_or(""))
                .map_err(|e| format!("lua: no script to run: {e}"))
                .and_then(|path| Script::load(&path, &self.spec.parameters, &self.env));
            // A script that does not load waits for someone to mend it; a
            // session that had to be reloaded (memory, a crash) does not.
            let mut kind = None;
            let error = match loaded {
                Ok(script) => {
                    attempt = 0;
                    self.status.update(OutputStatus::record_success);
                    let filter = Filter::parse(&self.spec.filters).unwrap_or_default();
                    let mut session = Session {
                        script,
                        filter,
                        max_queue: self.env.settings.event_queue_max_size,
                        cursor: &mut self.cursor,
                        status: &self.status,
                        tail: &self.tail,
                        last_seq: None,
                        unacked: 0,
                        retrying: false,
                        acked_at: OffsetDateTime::now_utc(),
                        stall: None,
                    };
                    let commands = &mut self.commands;
                    let runtime = &self.runtime;
                    let ended = AssertUnwindSafe(|| session.run(commands, runtime));
                    // A panic is a bug, not a script error: start a new session.
                    match std::panic::catch_unwind(ended) {
                        Ok(None) => return,
                        Ok(Some(reload)) => reload,
                        Err(panic) => format!(
                            "lua worker crashed: {}",
                            panic
                                .downcast_ref::<String>()
                                .cloned()
                                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                                .unwrap_or_else(|| "unknown panic".to_owned())
                        ),
                    }
                }
                Err(message) => {
                    kind = Some(ErrorKind::Misconfigured);
                    message
                }
            };
            attempt += 1;
            let delay = backoff(attempt, LOAD_RETRY_BASE, LOAD_RETRY_MAX);
            (self.env.log)(Severity::Error, &error);
            self.status
                .update(|status| status.record_error(error.clone(), kind, delay));
            if !self.wait_retry(delay, &error) {
                self.status.set_state(OutputState::Stopped);
                return;
            }
        }
    }

    /// Sleeps until the next attempt, answering commands. False when told
    /// to stop.
    fn wait_retry(&mut self, delay: Duration, error: &str) -> bool {
        let commands = &mut self.commands;
        self.runtime.block_on(async {
            let deadline = tokio::time::Instant::now() + delay;
            loop {
                tokio::select! {
                    command = commands.recv() => match command {
                        Some(Command::Flush(reply)) => {
                            let _ = reply.send(FlushRecord {
                                at: OffsetDateTime::now_utc(),
                                reason: FlushReason::Manual,
                                events: 0,
                                bytes: 0,
                                duration_ms: 0.0,
                                outcome: FlushOutcome::Failed,
                                result: format!("the script is not running: {error}"),
                            });
                        }
                        Some(Command::Stop) | None => return false,
                    },
                    _ = tokio::time::sleep_until(deadline) => return true,
                }
            }
        })
    }
}

struct Session<'a> {
    script: Script,
    filter: Filter,
    max_queue: usize,
    cursor: &'a mut Cursor,
    status: &'a StatusWriter,
    tail: &'a Tail,
    /// The last event read and not acknowledged.
    last_seq: Option<Seq>,
    /// Events read (handed to the script or not) and not acknowledged.
    unacked: u64,
    /// The last `flush()` left events unacknowledged: the next ones are
    /// retries of the same events, and say so in the status.
    retrying: bool,
    /// When something was last acknowledged (or the session started).
    acked_at: OffsetDateTime,
    /// Flushes returning false while events wait, since the first of them.
    stall: Option<Stall>,
}

/// Consecutive flushes that returned false with events waiting:
/// a destination that is down, as Centreon's connectors report it.
struct Stall {
    since: OffsetDateTime,
    flushes: u64,
    /// What this put in `last_error`, to be cleared when events are
    /// acknowledged again (unless something else replaced it).
    reported: Option<String>,
}

impl Session<'_> {
    /// Runs until told to stop (`None`), or until the script's state must be
    /// closed and loaded again (why).
    fn run(
        &mut self,
        commands: &mut mpsc::Receiver<Command>,
        runtime: &tokio::runtime::Runtime,
    ) -> Option<String> {
        // Whatever an earlier session read without acknowledging comes again
        // (Centreon's nack_events when a stream is opened).
        self.cursor.rewind();
        let mut read_since_flush = false;
        let mut next_idle_flush = Instant::now() + IDLE_FLUSH;
        loop {
            match commands.try_recv() {
                Ok(command) => {
                    if self.command(command) {
                        return None;
                    }
                    continue;
                }
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    self.stop();
                    return None;
                }
                Err(mpsc::error::TryRecvError::Empty) => {}
            }
            let room = self.room();
            if room > 0 {
                let entries = self.cursor.read(room);
                if !entries.is_empty() {
                    self.hand(entries);
                    if let Some(why) = self.script.over_memory_limit() {
                        return Some(why);
                    }
                    read_since_flush = true;
                    continue;
                }
            }
            let now = Instant::now();
            if read_since_flush || now >= next_idle_flush {
                self.flush(FlushReason::Idle);
                if let Some(why) = self.script.over_memory_limit() {
                    return Some(why);
                }
                read_since_flush = false;
                let held = self.held_back();
                next_idle_flush = Instant::now() + if held { HELD_FLUSH } else { IDLE_FLUSH };
            }
            let can_read = self.room() > 0;
            let cursor = &mut *self.cursor;
            let woken = runtime.block_on(async {
                tokio::select! {
                    biased;
                    command = commands.recv() => Some(command),
                    _ = cursor.wait(), if can_read => None,
                    _ = tokio::time::sleep_until(next_idle_flush.into()) => None,
                }
            });
            let ended = match woken {
                Some(Some(command)) => self.command(command),
                Some(None) => {
                    self.stop();
                    true
                }
                None => false,
            };
            if ended {
                return None;
            }
        }
    }

    /// How many more events the script may be handed (docs/lua-runtime.md
    /// §2.5).
    fn room(&self) -> usize {
        if self.max_queue == 0 {
            return READ_BATCH;
        }
        let pending = usize::try_from(self.script.pending()).unwrap_or(usize::MAX);
        self.max_queue.saturating_sub(pending).min(READ_BATCH)
    }

    /// Whether `write()` is paused at `event_queue_max_size` (a flush just
    /// ran, so the pending count is current); published in the status.
    fn held_back(&self) -> bool {
        let held = self.max_queue > 0 && self.room() == 0;
        let since = self.status.current().held_back_since;
        if held != since.is_some() {
            self.status.update(|status| {
                status.held_back_since = held.then(OffsetDateTime::now_utc);
            });
        }
        held
    }

    /// True when the session must end.
    fn command(&mut self, command: Command) -> bool {
        match command {
            Command::Flush(reply) => {
                let record = self.flush(FlushReason::Manual);
                let _ = reply.send(record);
                false
            }
            Command::Stop => {
                self.stop();
                true
            }
        }
    }

    fn stop(&mut self) {
        self.flush(FlushReason::Shutdown);
        self.status.update(|status| {
            status.state = OutputState::Stopped;
            status.held_back_since = None;
        });
    }

    fn ack_all(&mut self) -> u64 {
        if let Some(seq) = self.last_seq {
            self.cursor.ack(seq);
        }
        self.acked_at = OffsetDateTime::now_utc();
        std::mem::take(&mut self.unacked)
    }

    /// Events were acknowledged: a stall is over, and its report goes.
    fn unstalled(&mut self, status: &mut OutputStatus) {
        if let Some(Stall {
            reported: Some(report),
            ..
        }) = self.stall.take()
        {
            if status.last_error.as_ref() == Some(&report) {
                status.last_error = None;
                status.last_error_at = None;
            }
        }
    }

    /// One more flush returned `result` (`flush() returned false`) while
    /// events wait: says so in `last_error` once it looks like an outage.
    fn stalled(&mut self, status: &mut OutputStatus, at: OffsetDateTime, result: &str) {
        let stall = self.stall.get_or_insert(Stall {
            since: at,
            flushes: 0,
            reported: None,
        });
        stall.flushes += 1;
        // The script's own account, as Centreon's connectors log it
        // (`[sc_flush:flush_payload]: … [CURL-EASY][COULDNT_CONNECT] …`).
        let logged = self
            .tail
            .logs()
            .into_iter()
            .rev()
            .find(|l| l.level == Severity::Error.label() && l.at >= self.acked_at)
            .map(|l| l.text);
        let long = (at - stall.since).unsigned_abs() >= STALL_REPORT_AFTER;
        if logged.is_none() && !long {
            return;
        }
        // Another error came after the last report: keep it.
        if stall.reported.is_some() && status.last_error != stall.reported {
            return;
        }
        let mut report = format!(
            "{result} {} {} since {} UTC; {} events pending",
            stall.flushes,
            if stall.flushes == 1 { "time" } else { "times" },
            clock(stall.since),
            self.unacked
        );
        if let Some(line) = logged {
            report.push_str("; last error logged: ");
            report.push_str(&line);
        }
        status.last_error = Some(report.clone());
        status.last_error_kind = None;
        status.last_error_at = Some(at);
        stall.reported = Some(report);
    }

    fn hand(&mut self, entries: Vec<Arc<crate::journal::Entry>>) {
        let (mut received, mut filtered, mut written, mut acked, mut failed) = (0, 0, 0, 0, 0);
        let mut last_error = None;
        let watching = self.tail.watching();
        for entry in entries {
            received += 1;
            self.unacked += 1;
            self.last_seq = Some(entry.seq);
            if watching.stage(Stage::Received) {
                self.tail.publish(Stage::Received, entry.seq, &entry.event);
            }
            let ty = entry.event.event_type();
            if !self.filter.accepts(ty) || ty.category() == LOCAL_CATEGORY {
                // Centreon never shows these to the script; they are released
                // with the next acknowledgement, or now if nothing waits.
                filtered += 1;
                if self.script.pending() == 0 {
                    acked += self.ack_all();
                }
                continue;
            }
            if watching.stage(Stage::Passed) {
                self.tail.publish(Stage::Passed, entry.seq, &entry.event);
            }
            let seq = entry.seq;
            let kept = watching.stage(Stage::Sent).then(|| Arc::clone(&entry));
            let outcome = self.script.write(&Shared::Entry(entry));
            if outcome.filtered {
                filtered += 1;
            }
            if outcome.written {
                written += 1;
                if let Some(entry) = kept {
                    self.tail.publish(Stage::Sent, seq, &entry.event);
                }
            }
            if let Some(error) = outcome.error {
                failed += 1;
                last_error = Some(error);
            }
            if outcome.acked > 0 {
                acked += self.ack_all();
            }
        }
        let buffered = usize::try_from(self.script.pending()).unwrap_or(usize::MAX);
        let writer = self.status;
        writer.update(|status| {
            status.counters.received += received;
            status.counters.filtered_out += filtered;
            status.counters.written += written;
            status.counters.acknowledged += acked;
            status.counters.failed += failed;
            status.buffered = buffered;
            if acked > 0 {
                self.unstalled(status);
            }
            if let Some(error) = last_error {
                status.last_error = Some(error);
                status.last_error_kind = None;
                status.last_error_at = Some(OffsetDateTime::now_utc());
            }
        });
    }

    fn flush(&mut self, reason: FlushReason) -> FlushRecord {
        let at = OffsetDateTime::now_utc();
        let started = Instant::now();
        let outcome = self.script.flush();
        let events = if outcome.acked > 0 { self.ack_all() } else { 0 };
        let failed = outcome.error.is_some()
            || (outcome.called && outcome.returned.as_deref() != Some("true"));
        let result = match (&outcome.error, outcome.called, &outcome.returned) {
            (Some(error), _, _) => error.clone(),
            // `flush()` is optional (Centreon calls it only when defined):
            // nothing failed, and nothing is recorded.
            (None, false, _) => "the script has no flush() function".to_owned(),
            (None, true, Some(r)) if r == "true" => "ok".to_owned(),
            (None, true, r) => format!("flush() returned {}", r.as_deref().unwrap_or("nothing")),
        };
        let mut record = FlushRecord {
            at,
            reason,
            events: usize::try_from(events).unwrap_or(usize::MAX),
            bytes: 0,
            duration_ms: started.elapsed().as_secs_f64() * 1000.0,
            outcome: if failed {
                FlushOutcome::Failed
            } else {
                FlushOutcome::Ok
            },
            result,
        };
        // A flush that leaves events waiting is shown, as a retry when the
        // one before it failed too: a destination outage is visible in
        // `flushes` while it lasts. An idle flush with nothing waiting is not.
        let waiting = outcome.acked == 0 && self.unacked > 0;
        if self.retrying && reason != FlushReason::Manual && reason != FlushReason::Shutdown {
            record.reason = FlushReason::Retry;
        }
        self.retrying = waiting;
        let buffered = usize::try_from(self.script.pending()).unwrap_or(usize::MAX);
        let writer = self.status;
        writer.update(|status| {
            status.counters.acknowledged += events;
            status.buffered = buffered;
            if events > 0 {
                self.unstalled(status);
            }
            if let Some(error) = outcome.error {
                status.counters.failed += 1;
                status.last_error = Some(error);
                status.last_error_kind = None;
                status.last_error_at = Some(at);
            } else if outcome.called && waiting && !record.ok() {
                self.stalled(status, at, &record.result);
            }
            if outcome.called && (events > 0 || waiting || reason == FlushReason::Manual) {
                status.record_flush(record.clone());
            }
        });
        record
    }
}
