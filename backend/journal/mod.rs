//! The log every output reads from, through its own cursor.
//!
//! This is the bounded in-memory implementation: events live in memory until
//! every cursor has acknowledged them, and ingest is refused (`Full`) once
//! the bound is reached rather than growing memory. The durable, segmented
//! journal replaces this module behind the same [`Journal`] and [`Cursor`]
//! surface, so workers do not change.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use tokio::sync::watch;

use crate::event::Event;

/// Position of an event in the journal: strictly increasing from 1.
pub type Seq = u64;

/// One journaled event.
#[derive(Debug)]
pub struct Entry {
    pub seq: Seq,
    pub received_at: SystemTime,
    pub event: Event,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AppendError {
    #[error("the journal is full ({capacity} events waiting for slow outputs); retry later")]
    Full { capacity: usize },
}

/// Where a new cursor starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartAt {
    /// Only events appended from now on.
    Head,
    /// The oldest event still held.
    Oldest,
}

pub struct Journal {
    state: Mutex<State>,
    /// The last appended sequence number, for cursors waiting on new events.
    head: watch::Sender<Seq>,
}

struct State {
    capacity: usize,
    /// `entries[0].seq == first_seq` when non-empty.
    entries: VecDeque<Arc<Entry>>,
    first_seq: Seq,
    next_seq: Seq,
    cursors: HashMap<String, CursorState>,
}

#[derive(Clone, Copy, Debug)]
struct CursorState {
    /// Every event up to and including this one is acknowledged.
    acked: Seq,
    /// The next event handed out.
    next_read: Seq,
}

impl Journal {
    pub fn new(capacity: usize) -> Arc<Self> {
        let (head, _) = watch::channel(0);
        Arc::new(Journal {
            state: Mutex::new(State {
                capacity: capacity.max(1),
                entries: VecDeque::new(),
                first_seq: 1,
                next_seq: 1,
                cursors: HashMap::new(),
            }),
            head,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock leaves consistent data (every
        // mutation is a single assignment or push), so poisoning is ignored.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends a batch: all of it or, when it does not fit, none of it.
    /// Returns the sequence number of the last event.
    pub fn append(&self, events: Vec<Event>) -> Result<Seq, AppendError> {
        let received_at = SystemTime::now();
        let last = {
            let mut state = self.lock();
            state.trim();
            if state.entries.len() + events.len() > state.capacity {
                return Err(AppendError::Full {
                    capacity: state.capacity,
                });
            }
            for event in events {
                let seq = state.next_seq;
                state.next_seq += 1;
                state.entries.push_back(Arc::new(Entry {
                    seq,
                    received_at,
                    event,
                }));
            }
            if state.cursors.is_empty() {
                // Nobody to deliver to: nothing to keep.
                state.trim();
            }
            state.next_seq - 1
        };
        self.head.send_replace(last);
        Ok(last)
    }

    /// The cursor of this name, created at `start` if it does not exist.
    pub fn cursor(self: &Arc<Self>, name: &str, start: StartAt) -> Cursor {
        let mut state = self.lock();
        if !state.cursors.contains_key(name) {
            let acked = match start {
                StartAt::Head => state.next_seq - 1,
                StartAt::Oldest => state.first_seq - 1,
            };
            state.cursors.insert(
                name.to_owned(),
                CursorState {
                    acked,
                    next_read: acked + 1,
                },
            );
        }
        Cursor {
            journal: Arc::clone(self),
            name: name.to_owned(),
            head: self.head.subscribe(),
        }
    }

    /// Forgets a cursor (its output was deleted); its unacknowledged events
    /// are released.
    pub fn remove_cursor(&self, name: &str) {
        let mut state = self.lock();
        state.cursors.remove(name);
        state.trim();
    }

    /// The backlog of the cursor of this name (empty if there is none).
    pub fn backlog(&self, name: &str) -> Backlog {
        let state = self.lock();
        let Some(cursor) = state.cursors.get(name) else {
            return Backlog::default();
        };
        Backlog {
            unacked: (state.next_seq - 1).saturating_sub(cursor.acked),
            oldest: state.entry(cursor.acked + 1).map(|e| e.received_at),
        }
    }

    /// Events held, for status and metrics.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl State {
    /// Drops the events every cursor has acknowledged.
    fn trim(&mut self) {
        let keep_after = self
            .cursors
            .values()
            .map(|c| c.acked)
            .min()
            .unwrap_or(self.next_seq - 1);
        while self.first_seq <= keep_after && !self.entries.is_empty() {
            self.entries.pop_front();
            self.first_seq += 1;
        }
        if self.entries.is_empty() {
            self.first_seq = self.next_seq;
        }
    }

    fn entry(&self, seq: Seq) -> Option<&Arc<Entry>> {
        let offset = seq.checked_sub(self.first_seq)?;
        self.entries.get(usize::try_from(offset).ok()?)
    }
}

/// An output's reading position. Reading hands events out in order;
/// acknowledging releases them. Unacknowledged events are handed out again
/// after [`Cursor::rewind`], which a worker calls when it starts.
pub struct Cursor {
    journal: Arc<Journal>,
    name: String,
    head: watch::Receiver<Seq>,
}

/// What a cursor knows of its backlog.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Backlog {
    /// Events appended and not yet acknowledged by this cursor.
    pub unacked: u64,
    /// When the oldest of them was received.
    pub oldest: Option<SystemTime>,
}

impl Cursor {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Up to `max` events after the last one read, without waiting.
    pub fn read(&mut self, max: usize) -> Vec<Arc<Entry>> {
        let mut state = self.journal.lock();
        let Some(mut cursor) = state.cursors.get(&self.name).copied() else {
            return Vec::new();
        };
        // Events dropped under us (cannot happen while the cursor is held in
        // this implementation) would be skipped rather than waited for.
        cursor.next_read = cursor.next_read.max(state.first_seq);
        let mut out = Vec::new();
        while out.len() < max {
            match state.entry(cursor.next_read) {
                Some(entry) => {
                    out.push(Arc::clone(entry));
                    cursor.next_read += 1;
                }
                None => break,
            }
        }
        state.cursors.insert(self.name.clone(), cursor);
        out
    }

    /// Waits until an event is available past the last one read.
    pub async fn wait(&mut self) {
        loop {
            let next_read = {
                let state = self.journal.lock();
                match state.cursors.get(&self.name) {
                    Some(c) => c.next_read,
                    None => return,
                }
            };
            if *self.head.borrow_and_update() >= next_read {
                return;
            }
            if self.head.changed().await.is_err() {
                return;
            }
        }
    }

    /// Acknowledges every event up to and including `seq`.
    pub fn ack(&self, seq: Seq) {
        let mut state = self.journal.lock();
        if let Some(cursor) = state.cursors.get_mut(&self.name) {
            cursor.acked = cursor.acked.max(seq.min(cursor.next_read - 1));
        }
        state.trim();
    }

    /// Hands the unacknowledged events out again from the oldest.
    pub fn rewind(&self) {
        let mut state = self.journal.lock();
        if let Some(cursor) = state.cursors.get_mut(&self.name) {
            cursor.next_read = cursor.acked + 1;
        }
    }

    pub fn backlog(&self) -> Backlog {
        self.journal.backlog(&self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::catalogue::EVENTS;

    fn events(n: usize) -> Vec<Event> {
        (0..n).map(|_| Event::new(&EVENTS[0])).collect()
    }

    #[test]
    fn events_stay_until_every_cursor_acks() {
        let journal = Journal::new(100);
        let mut a = journal.cursor("a", StartAt::Head);
        let mut b = journal.cursor("b", StartAt::Head);
        journal.append(events(3)).unwrap();
        let read = a.read(10);
        assert_eq!(read.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
        a.ack(3);
        assert_eq!(journal.len(), 3, "b has not acknowledged");
        assert_eq!(b.read(2).len(), 2);
        b.ack(2);
        assert_eq!(journal.len(), 1);
        assert_eq!(b.backlog().unacked, 1);
    }

    #[test]
    fn rewind_redelivers_unacked_events() {
        let journal = Journal::new(100);
        let mut a = journal.cursor("a", StartAt::Head);
        journal.append(events(4)).unwrap();
        assert_eq!(a.read(10).len(), 4);
        a.ack(1);
        a.rewind();
        assert_eq!(a.read(10).first().map(|e| e.seq), Some(2));
    }

    #[test]
    fn ack_never_passes_what_was_read() {
        let journal = Journal::new(100);
        let mut a = journal.cursor("a", StartAt::Head);
        journal.append(events(4)).unwrap();
        a.read(1);
        a.ack(4);
        assert_eq!(a.backlog().unacked, 3);
    }

    #[test]
    fn a_full_journal_refuses_the_whole_batch() {
        let journal = Journal::new(5);
        let _a = journal.cursor("a", StartAt::Head);
        journal.append(events(4)).unwrap();
        assert_eq!(
            journal.append(events(2)),
            Err(AppendError::Full { capacity: 5 })
        );
        assert_eq!(journal.len(), 4);
    }

    #[test]
    fn start_at_oldest_sees_held_events() {
        let journal = Journal::new(100);
        let _a = journal.cursor("a", StartAt::Head);
        journal.append(events(2)).unwrap();
        let mut late = journal.cursor("late", StartAt::Oldest);
        let mut head = journal.cursor("head", StartAt::Head);
        assert_eq!(late.read(10).len(), 2);
        assert!(head.read(10).is_empty());
    }

    #[tokio::test]
    async fn wait_wakes_on_append() {
        let journal = Journal::new(100);
        let mut a = journal.cursor("a", StartAt::Head);
        let j = Arc::clone(&journal);
        let waiter = tokio::spawn(async move {
            a.wait().await;
            a.read(10).len()
        });
        tokio::task::yield_now().await;
        j.append(events(1)).unwrap();
        assert_eq!(waiter.await.unwrap(), 1);
    }
}
