//! The live tail of an output: what its worker received, what passed its
//! filter, what it sent, and the script's `broker_log` lines.
//!
//! Workers publish into bounded broadcast channels and never wait: a
//! subscriber that falls behind loses the oldest events (and is told how
//! many), so a slow browser can never slow the pipeline. Workers ask
//! [`Tail::watching`] once per batch read, so with nobody listening an
//! event costs nothing more.

use std::collections::VecDeque;
use std::sync::Mutex;

use serde::Serialize;
use time::OffsetDateTime;
use tokio::sync::broadcast;

use crate::event::Event;

/// Events a subscriber may lag behind before it loses some.
pub const TAIL_CAPACITY: usize = 256;
/// `broker_log` lines kept per output.
pub const LOG_LINES: usize = 200;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// Read from the journal.
    Received,
    /// Accepted by the output's filters.
    Passed,
    /// Handed to the destination (a native batch that was flushed, or a
    /// Lua script's `write()`).
    Sent,
}

impl Stage {
    pub const ALL: [Stage; 3] = [Stage::Received, Stage::Passed, Stage::Sent];

    pub fn parse(s: &str) -> Option<Stage> {
        match s {
            "received" => Some(Stage::Received),
            "passed" => Some(Stage::Passed),
            "sent" => Some(Stage::Sent),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Received => "received",
            Stage::Passed => "passed",
            Stage::Sent => "sent",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The stages someone watched when a batch was read.
#[derive(Clone, Copy, Debug, Default)]
pub struct Watching([bool; 3]);

impl Watching {
    pub fn stage(self, stage: Stage) -> bool {
        self.0[stage.index()]
    }
}

/// One event as the tail shows it, encoded once for every subscriber.
#[derive(Clone, Debug, Serialize)]
pub struct TailEvent {
    pub seq: u64,
    pub stage: Stage,
    /// The event in its JSON form (the form a Lua script sees).
    pub event: serde_json::Value,
}

#[derive(Clone, Debug, Serialize)]
pub struct LogLine {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub level: &'static str,
    pub text: String,
}

pub struct Tail {
    stages: [broadcast::Sender<std::sync::Arc<TailEvent>>; 3],
    logs: Mutex<VecDeque<LogLine>>,
}

impl Default for Tail {
    fn default() -> Self {
        Tail {
            stages: std::array::from_fn(|_| broadcast::channel(TAIL_CAPACITY).0),
            logs: Mutex::new(VecDeque::new()),
        }
    }
}

impl Tail {
    /// True when someone watches `stage`: callers skip building what they
    /// would publish otherwise.
    pub fn watched(&self, stage: Stage) -> bool {
        self.stages[stage.index()].receiver_count() > 0
    }

    /// Which stages are watched, in [`Stage::ALL`] order; asked once per batch.
    pub fn watching(&self) -> Watching {
        Watching(Stage::ALL.map(|stage| self.watched(stage)))
    }

    /// Never blocks: the channel overwrites what slow subscribers have not read.
    pub fn publish(&self, stage: Stage, seq: u64, event: &Event) {
        let sender = &self.stages[stage.index()];
        if sender.receiver_count() == 0 {
            return;
        }
        let _ = sender.send(std::sync::Arc::new(TailEvent {
            seq,
            stage,
            event: event.to_json(),
        }));
    }

    pub fn subscribe(&self, stage: Stage) -> broadcast::Receiver<std::sync::Arc<TailEvent>> {
        self.stages[stage.index()].subscribe()
    }

    pub fn log(&self, level: &'static str, text: &str) {
        let mut logs = crate::sync::lock(&self.logs);
        if logs.len() == LOG_LINES {
            logs.pop_front();
        }
        logs.push_back(LogLine {
            at: OffsetDateTime::now_utc(),
            level,
            text: text.to_owned(),
        });
    }

    /// Oldest first.
    pub fn logs(&self) -> Vec<LogLine> {
        crate::sync::lock(&self.logs).iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slow_subscriber_loses_events_and_is_told_how_many() {
        let tail = Tail::default();
        let event = Event::named("host_status").unwrap();
        // Nobody listens: nothing is kept.
        tail.publish(Stage::Received, 1, &event);
        let mut receiver = tail.subscribe(Stage::Received);
        assert!(tail.watched(Stage::Received));
        assert!(!tail.watched(Stage::Sent));
        for seq in 0..(TAIL_CAPACITY as u64 + 10) {
            tail.publish(Stage::Received, seq, &event);
        }
        match receiver.try_recv() {
            Err(broadcast::error::TryRecvError::Lagged(n)) => assert_eq!(n, 10),
            other => panic!("expected a lag, got {other:?}"),
        }
        assert_eq!(receiver.try_recv().unwrap().seq, 10);
    }

    #[test]
    fn logs_are_bounded() {
        let tail = Tail::default();
        for i in 0..(LOG_LINES + 3) {
            tail.log("INFO", &i.to_string());
        }
        let logs = tail.logs();
        assert_eq!(logs.len(), LOG_LINES);
        assert_eq!(logs[0].text, "3");
    }
}
