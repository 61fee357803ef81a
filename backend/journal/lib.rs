//! The journal: one append-only log of every ingested event, on disk, that
//! every output reads through its own persisted cursor.
//!
//! - **Appends** go to a writer thread that writes them to the active
//!   segment and, under the `always` policy, covers every record appended
//!   while the previous fsync ran with a single fsync (group commit).
//!   [`Journal::append`] resolves only once the records are as durable as
//!   the policy promises.
//! - **Readers** get recent events from a bounded in-memory tail, and older
//!   ones from the segment files, so memory stays bounded whatever the
//!   backlog.
//! - **Cursors** are persisted (`cursors.json`): created and removed at once,
//!   moved forward about once a second. After a crash a cursor may be up to
//!   a second behind, so a few events are delivered again: at least once,
//!   never lost.
//! - **Retention**: a segment is deleted once every cursor is past it, or
//!   when the byte or age limits force it, in which case what each output
//!   had not acknowledged is counted as lost for it.
//! - **Recovery** at open: a torn last record is cut, a corrupt record is
//!   skipped (the segment's original goes to `quarantine/`), and what was
//!   lost is counted and reported. Opening never fails on bad data.

mod cursors;
pub mod record;
mod recovery;
mod segment;

use brokerstream_common::sync::lock;
use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{self, BufReader, IoSlice, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use tokio::sync::{oneshot, watch};

use brokerstream_event::Event;
pub use recovery::{check, RecoveryReport};

/// The cursors' file in the journal directory, for a backup of it.
pub use cursors::FILE as CURSORS_FILE;

/// The segment files of a journal directory, oldest first: what a backup
/// copies (each one is append-only, and a torn last record is cut when
/// the copy is opened).
pub fn segment_files(dir: &Path) -> io::Result<Vec<PathBuf>> {
    Ok(segment::list(dir)?
        .into_iter()
        .map(|(_, path)| path)
        .collect())
}

/// Position of an event in the journal: strictly increasing from 1.
pub type Seq = u64;

/// One journaled event.
#[derive(Debug)]
pub struct Entry {
    pub seq: Seq,
    pub received_at: SystemTime,
    pub event: Event,
}

/// When appended records reach the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FsyncPolicy {
    /// Acknowledged after fsync: survives a crash of the process and of the
    /// machine. One fsync covers every record appended while the previous
    /// one ran.
    Always,
    /// Acknowledged once written (in the OS cache: survives a crash of the
    /// process), fsynced every so many milliseconds (a machine crash loses
    /// at most that).
    Interval(u64),
    /// Acknowledged once written; the OS writes when it likes.
    Never,
}

impl FsyncPolicy {
    /// `always`, `never`, or `interval` with the interval in milliseconds.
    pub fn parse(name: &str, interval_ms: u64) -> Result<FsyncPolicy, String> {
        match name {
            "always" => Ok(FsyncPolicy::Always),
            "interval" => Ok(FsyncPolicy::Interval(interval_ms.max(1))),
            "never" => Ok(FsyncPolicy::Never),
            other => Err(format!(
                "fsync policy `{other}` is not one of always, interval, never"
            )),
        }
    }
}

/// What happens when the journal reaches `max_bytes`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FullPolicy {
    /// Refuse new events (HTTP 503, no BBDO ack) until outputs catch up.
    Block,
    /// Delete the oldest segment, counting what each output loses.
    DropOldest,
}

#[derive(Clone, Debug)]
pub struct JournalConfig {
    pub dir: PathBuf,
    pub fsync: FsyncPolicy,
    pub full: FullPolicy,
    /// Bytes of segments kept at most.
    pub max_bytes: u64,
    /// Segments whose newest event is older are deleted.
    pub max_age: Option<Duration>,
    /// A segment is closed and a new one started past this size.
    pub segment_bytes: u64,
    /// Approximate memory used by the tail of recent events.
    pub memory_bytes: usize,
    /// Above this share of `max_bytes` held, the journal's health is
    /// `degraded`.
    pub fill_warning: f64,
}

impl JournalConfig {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        JournalConfig {
            dir: dir.into(),
            fsync: FsyncPolicy::Always,
            full: FullPolicy::Block,
            max_bytes: 1 << 30,
            max_age: Some(Duration::from_secs(7 * 24 * 3600)),
            segment_bytes: 64 << 20,
            memory_bytes: 64 << 20,
            fill_warning: 0.8,
        }
    }
}

#[derive(Clone, Debug, thiserror::Error, PartialEq)]
pub enum AppendError {
    #[error("the journal is full ({max_bytes} bytes held for outputs that have not caught up); retry later")]
    Full { max_bytes: u64 },
    #[error("the journal cannot write: {0}")]
    Io(String),
    #[error("the journal is closed")]
    Closed,
}

/// Where a new cursor starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartAt {
    /// Only events appended from now on.
    Head,
    /// The oldest event still held.
    Oldest,
}

/// Where to move a cursor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reposition {
    /// Replay from the oldest event still held.
    Oldest,
    /// Replay from the first event received at or after this time.
    Since(SystemTime),
    /// Skip everything not yet delivered.
    Head,
}

/// Segments [`Journal::recent`] reads at most, newest first.
const RECENT_SEGMENTS: usize = 2;

/// Every record of a segment file, in order, until its end or the first
/// one that cannot be read (a record being appended).
fn read_segment(path: &Path, mut each: impl FnMut(Entry)) {
    let Ok(file) = File::open(path) else {
        return;
    };
    let mut file = BufReader::with_capacity(256 * 1024, file);
    loop {
        let mut header = [0u8; record::HEADER_LEN];
        if file.read_exact(&mut header).is_err() {
            return;
        }
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        if len > record::MAX_PAYLOAD_LEN {
            return;
        }
        let mut bytes = header.to_vec();
        bytes.resize(record::HEADER_LEN + len, 0);
        if file.read_exact(&mut bytes[record::HEADER_LEN..]).is_err() {
            return;
        }
        let Ok(raw) = record::decode_record(&bytes) else {
            return;
        };
        let Ok(event) = record::decode_event(raw.payload) else {
            return;
        };
        each(Entry {
            seq: raw.seq,
            received_at: raw.received_at,
            event,
        });
    }
}

/// Record buffers kept for reuse: a few (producers rarely encode at the same
/// time) and none of an exceptional size, so that they hold 4 MiB at most.
const MAX_SPARE_BUFFERS: usize = 4;
const MAX_SPARE_BUFFER_BYTES: usize = 1 << 20;
/// Slots the memory tail keeps allocated when idle: a batch's worth.
const TAIL_SLOTS_KEPT: usize = 8192;

/// Runs once a batch is written (and synced when the policy says so), before
/// readers can see it, with its sealed records and where each ends.
pub type BeforePublish = Box<dyn FnOnce(&[u8], &[usize]) + Send>;

/// Events already encoded in the journal's record form, unsealed: what a
/// producer holding many events builds instead of a `Vec<Event>`, since a
/// decoded event takes several times its record in memory.
#[derive(Default)]
pub struct EncodedBatch {
    records: Vec<u8>,
    ends: Vec<usize>,
}

impl EncodedBatch {
    pub fn push(&mut self, event: &Event) {
        record::encode_unsealed(event, &mut self.records);
        self.ends.push(self.records.len());
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The events back (a record that does not decode is skipped: only a
    /// bug would write one).
    pub fn decode(&self) -> Vec<Event> {
        payloads(&self.records, &self.ends)
            .filter_map(|payload| record::decode_event(payload).ok())
            .collect()
    }

    /// Bytes the batch takes in the journal.
    pub fn bytes(&self) -> usize {
        self.records.len()
    }
}

/// The payload of each record of `records` (split at `ends`).
pub fn payloads<'a>(records: &'a [u8], ends: &'a [usize]) -> impl Iterator<Item = &'a [u8]> + 'a {
    let starts = std::iter::once(0).chain(ends.iter().copied());
    starts
        .zip(ends.iter().copied())
        .map(move |(start, end)| &records[start + record::HEADER_LEN..end])
}

/// The catalogue name of the event a record payload holds, read from its
/// first bytes without decoding the rest.
pub fn payload_type_name(payload: &[u8]) -> Option<&'static str> {
    let ty = u32::from_le_bytes(payload.get(..4)?.try_into().ok()?);
    brokerstream_event::catalogue::by_type(brokerstream_event::EventType(ty)).map(|def| def.name)
}

pub fn decode_payload(payload: &[u8]) -> Result<Event, record::RecordError> {
    record::decode_event(payload)
}

struct WriteRequest {
    /// The decoded events of the last `events.len()` records, for the
    /// memory tail; the `undecoded` records before them have none (an
    /// encoded batch decodes only what the tail can keep).
    events: Vec<Event>,
    undecoded: usize,
    before_publish: Option<BeforePublish>,
    /// The events' records, back to back, unsealed until the writer gives
    /// them their sequence numbers; `ends[i]` is where record i ends. These
    /// very bytes are written.
    records: Vec<u8>,
    ends: Vec<usize>,
    reply: oneshot::Sender<Result<Seq, AppendError>>,
}

pub struct Journal {
    config: JournalConfig,
    /// Held open and locked until [`Journal::close`]: two processes writing
    /// one journal would corrupt it.
    dir_lock: Mutex<Option<File>>,
    state: Mutex<State>,
    head: watch::Sender<Seq>,
    /// Set when recovery found the cursor file lost: a cursor created since
    /// then may be an output that existed, and starts at the oldest event.
    cursors_lost: bool,
    writer: Mutex<Option<mpsc::Sender<WriteRequest>>>,
    writer_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// The segment being appended to. Under `always`, only the writer
    /// thread writes (group commit needs one writer); under `interval` and
    /// `never`, producers write it themselves: a write to the page cache
    /// takes microseconds, while handing it to a thread costs two wake-ups,
    /// which on a busy machine wait for a core.
    active: Mutex<ActiveFile>,
    /// Buffers of published appends, for the next ones to encode into: a
    /// batch's records take about 160 KiB per thousand events, and a fresh
    /// allocation that size each time has the allocator hand memory back to
    /// the OS and fault it in again.
    spare_buffers: Mutex<Vec<(Vec<u8>, Vec<usize>)>>,
    closed: std::sync::atomic::AtomicBool,
    report: RecoveryReport,
}

struct ActiveFile {
    file: File,
    path: PathBuf,
    /// Written since the last fsync.
    unsynced: bool,
    /// Segments closed under `interval`/`never` and not yet fsynced: the
    /// next periodic fsync covers them, so that closing a segment does not
    /// stall the producer that filled it.
    retired: Vec<File>,
}

struct SegmentMeta {
    first_seq: Seq,
    /// The last event it holds; `first_seq - 1` while empty.
    last_seq: Seq,
    path: PathBuf,
    bytes: u64,
    newest: Option<SystemTime>,
    oldest: Option<SystemTime>,
}

struct State {
    /// Oldest first; the last one is the active segment.
    segments: VecDeque<SegmentMeta>,
    tail: VecDeque<Arc<Entry>>,
    /// What each entry of `tail` was counted for in `tail_bytes`.
    tail_costs: VecDeque<usize>,
    tail_bytes: usize,
    /// The last event appended and published to readers.
    head: Seq,
    total_bytes: u64,
    total_events: u64,
    cursors: HashMap<String, cursors::CursorState>,
    cursors_dirty: bool,
    /// Set when the full policy last acted (an append refused, or the
    /// oldest segment dropped for room); cleared when an append finds room
    /// without it.
    full_acting: bool,
    /// Appends refused because the journal was full.
    full_refusals: u64,
    /// Segments deleted by `drop_oldest` to make room.
    full_drops: u64,
}

/// Numbers about the journal as a whole.
#[derive(Clone, Debug, Serialize)]
pub struct JournalInfo {
    pub dir: PathBuf,
    pub fsync: FsyncPolicy,
    pub full_policy: FullPolicy,
    pub max_bytes: u64,
    pub max_age_secs: Option<u64>,
    pub segments: usize,
    pub bytes: u64,
    pub events: u64,
    pub head_seq: Seq,
    pub oldest_seq: Option<Seq>,
    pub memory_tail_events: usize,
    pub recovery: RecoveryReport,
    /// `bytes / max_bytes`.
    pub fill_ratio: f64,
    /// The share of `max_bytes` above which `health` is `degraded`.
    pub fill_warning: f64,
    /// How long ago the oldest event held was received.
    pub oldest_age_secs: Option<u64>,
    /// The outputs whose acknowledged position is in the oldest segment:
    /// the slowest ones, which keep it from being deleted. Most pending
    /// first.
    pub holding: Vec<Holding>,
    /// Appends refused because the journal was full (`block`).
    pub full_refusals: u64,
    /// Segments deleted to make room (`drop_oldest`).
    pub full_drops: u64,
    pub health: JournalHealth,
}

/// An output holding the oldest segment back.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Holding {
    pub name: String,
    /// Events appended that it has not acknowledged.
    pub unacked: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthState {
    Ok,
    Degraded,
    Failing,
}

impl HealthState {
    pub const ALL: [HealthState; 3] =
        [HealthState::Ok, HealthState::Degraded, HealthState::Failing];

    pub fn as_str(self) -> &'static str {
        match self {
            HealthState::Ok => "ok",
            HealthState::Degraded => "degraded",
            HealthState::Failing => "failing",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct JournalHealth {
    pub state: HealthState,
    pub reason: String,
}

/// The journal's health: `failing` while the full policy acts (ingest
/// refused under `block`, events dropped under `drop_oldest`), `degraded`
/// above `warning` of the size limit, `ok` otherwise.
pub fn journal_health(
    fill_ratio: f64,
    warning: f64,
    full_acting: bool,
    policy: FullPolicy,
) -> JournalHealth {
    let percent = fill_ratio * 100.0;
    if full_acting {
        let reason = match policy {
            FullPolicy::Block => {
                format!("the journal is full ({percent:.0} %): new events are refused (block)")
            }
            FullPolicy::DropOldest => format!(
                "the journal is full ({percent:.0} %): the oldest events are dropped, or new ones \
                 refused while only the active segment is left (drop_oldest)"
            ),
        };
        return JournalHealth {
            state: HealthState::Failing,
            reason,
        };
    }
    if fill_ratio > warning {
        return JournalHealth {
            state: HealthState::Degraded,
            reason: format!(
                "the journal is {percent:.0} % full (warning above {:.0} %)",
                warning * 100.0
            ),
        };
    }
    JournalHealth {
        state: HealthState::Ok,
        reason: format!("the journal is {percent:.0} % full"),
    }
}

/// What a cursor knows of its backlog.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Backlog {
    /// The last event acknowledged.
    pub position: Seq,
    /// Events appended and not yet acknowledged by this cursor.
    pub unacked: u64,
    /// Their size on disk (estimated from the average record size).
    pub unacked_bytes: u64,
    /// When the oldest of them was received.
    #[serde(skip)]
    pub oldest: Option<SystemTime>,
    /// Events deleted before this cursor acknowledged them (retention limits,
    /// corruption).
    pub lost: u64,
}

fn io_error(context: &str, path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{context} {}: {e}", path.display()))
}

impl Journal {
    /// Opens (creating, recovering or repairing as needed) the journal in
    /// `config.dir`. Bad data is repaired and reported, never fatal; only an
    /// unusable directory is an error.
    pub fn open(config: JournalConfig) -> io::Result<Arc<Journal>> {
        let dir_lock = lock_dir(&config.dir)?;
        let recovered = recovery::recover(&config)?;
        let report = recovered.report.clone();
        let mut segments: VecDeque<SegmentMeta> = recovered.segments.into();
        if segments.is_empty() {
            let first = recovered.next_seq;
            let path = config.dir.join(segment::file_name(first));
            File::create(&path).map_err(|e| io_error("cannot create segment", &path, e))?;
            segment::sync_dir(&config.dir)?;
            segments.push_back(SegmentMeta {
                first_seq: first,
                last_seq: first - 1,
                path,
                bytes: 0,
                newest: None,
                oldest: None,
            });
        }
        let active = segments.back().map(|s| s.path.clone()).unwrap_or_default();
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(&active)
            .map_err(|e| io_error("cannot open segment", &active, e))?;
        let head = recovered.next_seq - 1;
        let (head_tx, _) = watch::channel(head);
        let total_bytes = segments.iter().map(|s| s.bytes).sum();
        let total_events = segments.iter().map(|s| s.last_seq + 1 - s.first_seq).sum();
        let journal = Arc::new(Journal {
            state: Mutex::new(State {
                segments,
                tail: VecDeque::new(),
                tail_costs: VecDeque::new(),
                tail_bytes: 0,
                head,
                total_bytes,
                total_events,
                cursors: recovered.cursors,
                cursors_dirty: true,
                full_acting: false,
                full_refusals: 0,
                full_drops: 0,
            }),
            head: head_tx,
            cursors_lost: recovered.cursors_lost,
            writer: Mutex::new(None),
            writer_thread: Mutex::new(None),
            active: Mutex::new(ActiveFile {
                file,
                path: active,
                unsynced: false,
                retired: Vec::new(),
            }),
            spare_buffers: Mutex::new(Vec::new()),
            closed: std::sync::atomic::AtomicBool::new(false),
            report,
            config,
            dir_lock: Mutex::new(Some(dir_lock)),
        });
        journal.save_cursors()?;
        let (tx, rx) = mpsc::channel();
        let writer_journal = Arc::clone(&journal);
        let thread = std::thread::Builder::new()
            .name("journal-writer".into())
            .spawn(move || writer_journal.writer_loop(rx))?;
        *lock(&journal.writer) = Some(tx);
        *lock(&journal.writer_thread) = Some(thread);
        Ok(journal)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// True while the writer thread runs (appends can succeed).
    pub fn is_writable(&self) -> bool {
        lock(&self.writer_thread)
            .as_ref()
            .is_some_and(|thread| !thread.is_finished())
    }

    pub fn config(&self) -> &JournalConfig {
        &self.config
    }

    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.report
    }

    /// Appends a batch: all of it or, when it cannot be held, none of it.
    /// Resolves with the sequence number of the last event once the batch
    /// is as durable as the fsync policy promises.
    pub async fn append(&self, events: Vec<Event>) -> Result<Seq, AppendError> {
        if events.is_empty() {
            return Ok(self.lock().head);
        }
        // Encoding happens here, on the caller's task and outside any lock,
        // so that the writer only seals and writes.
        let (mut records, mut ends) = lock(&self.spare_buffers).pop().unwrap_or_default();
        records.reserve(events.len() * 256);
        ends.reserve(events.len());
        for event in &events {
            record::encode_unsealed(event, &mut records);
            ends.push(records.len());
        }
        let (reply, answer) = oneshot::channel();
        let request = WriteRequest {
            events,
            undecoded: 0,
            before_publish: None,
            records,
            ends,
            reply,
        };
        self.submit(request, answer).await
    }

    /// Appends a batch encoded beforehand, all of it or none, as
    /// [`Journal::append`]. `before_publish` runs only once the batch is
    /// written, before any reader sees it: a producer can make what depends
    /// on the batch (the cache) learn from it then, and never from a batch
    /// that was refused.
    ///
    /// The memory tail gets decoded events for the newest records of the
    /// batch only, as many as `memory_bytes` keeps: the older ones would be
    /// evicted from it by the same append anyway, and readers that need
    /// them read the segment.
    pub async fn append_encoded(
        &self,
        batch: EncodedBatch,
        before_publish: Option<BeforePublish>,
    ) -> Result<Seq, AppendError> {
        if batch.is_empty() {
            return Ok(self.lock().head);
        }
        let EncodedBatch { records, ends } = batch;
        let mut events = Vec::new();
        let mut kept = 0usize;
        let mut end_index = ends.len();
        while end_index > 0 {
            let start = if end_index > 1 {
                ends[end_index - 2]
            } else {
                0
            };
            let payload = &records[start + record::HEADER_LEN..ends[end_index - 1]];
            let Ok(event) = record::decode_event(payload) else {
                break;
            };
            let cost = entry_cost(&event, payload.len());
            if kept + cost > self.config.memory_bytes {
                break;
            }
            kept += cost;
            events.push(event);
            end_index -= 1;
        }
        events.reverse();
        let (reply, answer) = oneshot::channel();
        let request = WriteRequest {
            undecoded: ends.len() - events.len(),
            events,
            before_publish,
            records,
            ends,
            reply,
        };
        self.submit(request, answer).await
    }

    async fn submit(
        &self,
        request: WriteRequest,
        answer: oneshot::Receiver<Result<Seq, AppendError>>,
    ) -> Result<Seq, AppendError> {
        if self.closed.load(std::sync::atomic::Ordering::Acquire) {
            return Err(AppendError::Closed);
        }
        if self.config.fsync != FsyncPolicy::Always {
            self.write_now(request);
            return answer.await.map_err(|_| AppendError::Closed)?;
        }
        {
            let writer = lock(&self.writer);
            let sender = writer.as_ref().ok_or(AppendError::Closed)?;
            sender.send(request).map_err(|_| AppendError::Closed)?;
        }
        answer.await.map_err(|_| AppendError::Closed)?
    }

    /// Writes one request from the producer's own thread (`interval` and
    /// `never`); the answer is ready when this returns.
    fn write_now(&self, request: WriteRequest) {
        let mut active = lock(&self.active);
        self.write_group(vec![request], &mut active);
        active.unsynced = true;
    }

    /// Stops the writer after it has written and synced what it holds, and
    /// saves the cursors. Appends fail afterwards.
    pub fn close(&self) {
        self.closed
            .store(true, std::sync::atomic::Ordering::Release);
        drop(lock(&self.writer).take());
        if let Some(thread) = lock(&self.writer_thread).take() {
            let _ = thread.join();
        }
        if let Err(e) = self.save_cursors() {
            tracing::error!("cannot save journal cursors: {e}");
        }
        drop(lock(&self.dir_lock).take());
    }

    /// The cursor of this name, created at `start` if it does not exist.
    pub fn cursor(self: &Arc<Self>, name: &str, start: StartAt) -> Cursor {
        let created = {
            let mut state = self.lock();
            if state.cursors.contains_key(name) {
                false
            } else {
                let start = if self.cursors_lost {
                    StartAt::Oldest
                } else {
                    start
                };
                let acked = match start {
                    StartAt::Head => state.head,
                    StartAt::Oldest => state.oldest_seq().map_or(state.head, |s| s - 1),
                };
                state
                    .cursors
                    .insert(name.to_owned(), cursors::CursorState::at(acked));
                state.cursors_dirty = true;
                true
            }
        };
        if created {
            // A cursor must exist on disk before any event is acknowledged
            // to a producer on its behalf: otherwise a crash would restart
            // it at the head, past events it never saw.
            if let Err(e) = self.save_cursors() {
                tracing::error!("cannot save journal cursors: {e}");
            }
        }
        Cursor {
            journal: Arc::clone(self),
            name: name.to_owned(),
            head: self.head.subscribe(),
            reader: None,
        }
    }

    /// Forgets a cursor (its output was deleted); its events are released.
    pub fn remove_cursor(&self, name: &str) {
        let removed = {
            let mut state = self.lock();
            let removed = state.cursors.remove(name).is_some();
            state.cursors_dirty |= removed;
            let released = self.trim(&mut state);
            drop(state);
            drop(released);
            removed
        };
        if removed {
            if let Err(e) = self.save_cursors() {
                tracing::error!("cannot save journal cursors: {e}");
            }
        }
    }

    /// Makes `to` a cursor at `from`'s acknowledged position, keeping
    /// `from`: the first step of a rename, so that a crash before the new
    /// name is stored elsewhere leaves no name without its place (a spare
    /// cursor at worst, which [`Journal::retain_cursors`] removes).
    /// `false` when there is no cursor named `from`.
    pub fn copy_cursor(&self, from: &str, to: &str) -> bool {
        let copied = {
            let mut state = self.lock();
            let Some(cursor) = state.cursors.get(from).copied() else {
                return false;
            };
            state
                .cursors
                .insert(to.to_owned(), cursors::CursorState::at(cursor.acked));
            state.cursors_dirty = true;
            true
        };
        if copied {
            if let Err(e) = self.save_cursors() {
                tracing::error!("cannot save journal cursors: {e}");
            }
        }
        copied
    }

    /// Removes every cursor whose name is not in `names` (the outputs that
    /// exist), releasing the events they held: what a crash between the
    /// steps of a rename or a delete may leave behind. The names removed.
    pub fn retain_cursors(&self, names: &[String]) -> Vec<String> {
        let removed: Vec<String> = {
            let state = self.lock();
            state
                .cursors
                .keys()
                .filter(|name| !names.contains(name))
                .cloned()
                .collect()
        };
        for name in &removed {
            self.remove_cursor(name);
        }
        removed
    }

    /// Moves a cursor to another name (its output was renamed), keeping its
    /// position and its count of lost events, so that nothing is skipped or
    /// read twice. The caller stops the cursor's reader first. A cursor
    /// already under `to` belongs to no output (the caller checked) and is
    /// replaced. `false` when there is no cursor named `from`.
    pub fn rename_cursor(&self, from: &str, to: &str) -> bool {
        let renamed = {
            let mut state = self.lock();
            let Some(mut cursor) = state.cursors.remove(from) else {
                return false;
            };
            // Whatever was handed out and not acknowledged is read again by
            // the next reader, as after a restart.
            cursor.next_read = cursor.acked + 1;
            state.cursors.insert(to.to_owned(), cursor);
            state.cursors_dirty = true;
            let released = self.trim(&mut state);
            drop(state);
            drop(released);
            true
        };
        if renamed {
            if let Err(e) = self.save_cursors() {
                tracing::error!("cannot save journal cursors: {e}");
            }
        }
        renamed
    }

    /// Moves a cursor. The caller stops the cursor's reader first (the
    /// supervisor restarts the output's worker around this).
    pub fn reposition(&self, name: &str, to: Reposition) -> Option<Seq> {
        let position = {
            let state = self.lock();
            state.cursors.get(name)?;
            match to {
                Reposition::Head => state.head,
                Reposition::Oldest => state.oldest_seq().map_or(state.head, |s| s - 1),
                Reposition::Since(time) => self
                    .first_seq_since(&state, time)
                    .map_or(state.head, |s| s - 1),
            }
        };
        let mut state = self.lock();
        let cursor = state.cursors.get_mut(name)?;
        cursor.acked = position;
        cursor.next_read = position + 1;
        state.cursors_dirty = true;
        let released = self.trim(&mut state);
        drop(state);
        drop(released);
        let _ = self.save_cursors();
        Some(position)
    }

    /// The first event received at or after `time`, from the segments
    /// (every published event is on disk).
    fn first_seq_since(&self, state: &State, time: SystemTime) -> Option<Seq> {
        for segment in state
            .segments
            .iter()
            .filter(|s| s.newest.is_some_and(|n| n >= time))
        {
            let scan = match segment::scan(&segment.path) {
                Ok(scan) => scan,
                Err(e) => {
                    tracing::error!("cannot read {}: {e}", segment.path.display());
                    continue;
                }
            };
            let found = scan
                .records
                .iter()
                .find(|(seq, _, _, at)| *at >= time && *seq <= state.head);
            if let Some((seq, ..)) = found {
                return Some(*seq);
            }
        }
        None
    }

    pub fn backlog(&self, name: &str) -> Backlog {
        let state = self.lock();
        let Some(cursor) = state.cursors.get(name) else {
            return Backlog::default();
        };
        let unacked = state.head.saturating_sub(cursor.acked);
        let average = state
            .total_bytes
            .checked_div(state.total_events)
            .unwrap_or(0);
        let oldest = if unacked == 0 {
            None
        } else {
            let next = cursor.acked + 1;
            match state.tail.front() {
                Some(first) if first.seq <= next => state
                    .tail
                    .get((next - first.seq) as usize)
                    .map(|e| e.received_at),
                _ => state
                    .segments
                    .iter()
                    .find(|s| s.last_seq >= next && s.last_seq >= s.first_seq)
                    .and_then(|s| s.oldest),
            }
        };
        Backlog {
            position: cursor.acked,
            unacked,
            unacked_bytes: unacked * average,
            oldest,
            lost: cursor.lost,
        }
    }

    /// For when the service is idle: drops the record buffers kept for the
    /// next appends (up to 4 MiB), and the memory tail's slots beyond a
    /// batch's worth (a burst grows them to hundreds of thousands). A burst
    /// rebuilds both in a few appends; doing this while events flow would
    /// reallocate them over and over.
    pub fn release_idle_memory(&self) {
        lock(&self.spare_buffers).clear();
        let mut state = self.lock();
        state.tail.shrink_to(TAIL_SLOTS_KEPT);
        state.tail_costs.shrink_to(TAIL_SLOTS_KEPT);
    }

    /// The newest events held that `keep` accepts, up to `max`, oldest
    /// first: from the memory tail, then from the newest segments on disk
    /// (events every output acknowledged leave the tail, but the active
    /// segment keeps them). No cursor moves. The output form's Test
    /// samples real traffic this way; a record it cannot read ends the
    /// search, as a sample needs no completeness.
    pub fn recent(&self, max: usize, keep: impl Fn(&Event) -> bool) -> Vec<Arc<Entry>> {
        let (mut found, tail_start, segments) = {
            let state = self.lock();
            let found: Vec<Arc<Entry>> = state
                .tail
                .iter()
                .rev()
                .filter(|e| keep(&e.event))
                .take(max)
                .cloned()
                .collect();
            let tail_start = state.tail.front().map_or(state.head + 1, |e| e.seq);
            let segments: Vec<PathBuf> = state
                .segments
                .iter()
                .rev()
                .filter(|s| s.last_seq >= s.first_seq && s.first_seq < tail_start)
                .take(RECENT_SEGMENTS)
                .map(|s| s.path.clone())
                .collect();
            (found, tail_start, segments)
        };
        for path in segments {
            if found.len() >= max {
                break;
            }
            // One segment's matches, oldest first; the newest are wanted.
            let mut matches = VecDeque::new();
            let wanted = max - found.len();
            read_segment(&path, |entry| {
                if entry.seq < tail_start && keep(&entry.event) {
                    if matches.len() == wanted {
                        matches.pop_front();
                    }
                    matches.push_back(Arc::new(entry));
                }
            });
            found.extend(matches.into_iter().rev());
        }
        found.sort_by_key(|e| e.seq);
        found.dedup_by_key(|e| e.seq);
        found
    }

    pub fn info(&self) -> JournalInfo {
        let state = self.lock();
        let fill_ratio = if self.config.max_bytes == 0 {
            0.0
        } else {
            state.total_bytes as f64 / self.config.max_bytes as f64
        };
        let oldest_segment = state.segments.iter().find(|s| s.last_seq >= s.first_seq);
        let oldest_age_secs = oldest_segment.and_then(|s| s.oldest).map(|at| {
            SystemTime::now()
                .duration_since(at)
                .unwrap_or_default()
                .as_secs()
        });
        let mut holding: Vec<Holding> = oldest_segment
            .map(|segment| {
                state
                    .cursors
                    .iter()
                    .filter(|(_, c)| c.acked < segment.last_seq)
                    .map(|(name, c)| Holding {
                        name: name.clone(),
                        unacked: state.head.saturating_sub(c.acked),
                    })
                    .collect()
            })
            .unwrap_or_default();
        holding.sort_by(|a, b| b.unacked.cmp(&a.unacked).then(a.name.cmp(&b.name)));
        // Once outputs caught up below the warning, a refusal is history.
        let full_acting = state.full_acting && fill_ratio > self.config.fill_warning;
        JournalInfo {
            dir: self.config.dir.clone(),
            fsync: self.config.fsync,
            full_policy: self.config.full,
            max_bytes: self.config.max_bytes,
            max_age_secs: self.config.max_age.map(|d| d.as_secs()),
            segments: state.segments.len(),
            bytes: state.total_bytes,
            events: state.total_events,
            head_seq: state.head,
            oldest_seq: state.oldest_seq(),
            memory_tail_events: state.tail.len(),
            recovery: self.report.clone(),
            fill_ratio,
            fill_warning: self.config.fill_warning,
            oldest_age_secs,
            holding,
            full_refusals: state.full_refusals,
            full_drops: state.full_drops,
            health: journal_health(
                fill_ratio,
                self.config.fill_warning,
                full_acting,
                self.config.full,
            ),
        }
    }

    fn save_cursors(&self) -> io::Result<()> {
        let snapshot = {
            let mut state = self.lock();
            if !state.cursors_dirty {
                return Ok(());
            }
            state.cursors_dirty = false;
            cursors::Snapshot {
                head: state.head,
                cursors: state.cursors.clone(),
            }
        };
        cursors::save(&self.config.dir, &snapshot)
    }

    /// Deletes the segments every cursor has acknowledged (never the active
    /// one), and takes those events out of the memory tail: a cursor never
    /// reads behind its acknowledged position without a rewind or replay,
    /// which read the disk anyway, so they would only hold memory (64 MiB at
    /// rest after a burst, by default). With no cursor at all, nothing is
    /// waiting for any event. The caller drops what this returns after
    /// releasing the lock: freeing a batch's thousands of events under it
    /// would stall the producers.
    #[must_use = "drop the released events after releasing the lock"]
    fn trim(&self, state: &mut State) -> Vec<Arc<Entry>> {
        let min_acked = state
            .cursors
            .values()
            .map(|c| c.acked)
            .min()
            .unwrap_or(state.head);
        while state.segments.len() > 1 && state.segments[0].last_seq <= min_acked {
            self.delete_oldest(state, "acknowledged by every output");
        }
        state.release_through(min_acked)
    }

    /// Deletes the oldest segment, counting what cursors had not
    /// acknowledged in it as lost for them.
    fn delete_oldest(&self, state: &mut State, why: &str) {
        let Some(segment) = state.segments.pop_front() else {
            return;
        };
        let mut lost_total = 0;
        for (name, cursor) in state.cursors.iter_mut() {
            if cursor.acked < segment.last_seq {
                let lost = segment.last_seq - cursor.acked.max(segment.first_seq - 1);
                cursor.lost += lost;
                lost_total += lost;
                tracing::warn!(output = %name, lost, "journal segment deleted before this output acknowledged it: {why}");
                cursor.acked = segment.last_seq;
                cursor.next_read = cursor.next_read.max(segment.last_seq + 1);
            }
        }
        if lost_total > 0 {
            state.cursors_dirty = true;
        }
        state.total_bytes -= segment.bytes;
        state.total_events -= segment.last_seq + 1 - segment.first_seq;
        while state
            .tail
            .front()
            .is_some_and(|e| e.seq <= segment.last_seq)
        {
            state.pop_tail();
        }
        if let Err(e) = std::fs::remove_file(&segment.path) {
            tracing::error!(
                "cannot delete journal segment {}: {e}",
                segment.path.display()
            );
        }
    }

    /// The writer thread: under `always`, writes groups of appends with one
    /// fsync each; under every policy, fsyncs on the interval, expires old
    /// segments and saves the cursors about once a second.
    fn writer_loop(self: Arc<Self>, requests: mpsc::Receiver<WriteRequest>) {
        let mut last_sync = Instant::now();
        let mut last_save = Instant::now();
        loop {
            let wait = match self.config.fsync {
                FsyncPolicy::Interval(ms) => Duration::from_millis(ms)
                    .saturating_sub(last_sync.elapsed())
                    .min(Duration::from_secs(1)),
                _ => Duration::from_secs(1),
            };
            match requests.recv_timeout(wait) {
                Ok(first) => {
                    let mut group = vec![first];
                    while group.len() < 1024 {
                        match requests.try_recv() {
                            Ok(request) => group.push(request),
                            Err(_) => break,
                        }
                    }
                    let mut active = lock(&self.active);
                    self.write_group(group, &mut active);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    brokerstream_common::memory::collect_if_asked()
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            if let FsyncPolicy::Interval(ms) = self.config.fsync {
                if last_sync.elapsed() >= Duration::from_millis(ms) {
                    self.sync_active();
                    last_sync = Instant::now();
                }
            }
            if last_save.elapsed() >= Duration::from_secs(1) {
                self.expire();
                if let Err(e) = self.save_cursors() {
                    tracing::error!("cannot save journal cursors: {e}");
                }
                last_save = Instant::now();
            }
        }
        self.sync_active();
    }

    /// Fsyncs what producers wrote since the last time, without holding the
    /// active segment while the disk works.
    fn sync_active(&self) {
        let (file, retired) = {
            let mut active = lock(&self.active);
            if !active.unsynced {
                return;
            }
            active.unsynced = false;
            (active.file.try_clone(), std::mem::take(&mut active.retired))
        };
        for file in retired {
            if let Err(e) = file.sync_data() {
                tracing::error!("journal fsync failed: {e}");
            }
        }
        if let Err(e) = file.and_then(|f| f.sync_data()) {
            tracing::error!("journal fsync failed: {e}");
        }
    }

    /// Deletes segments past the age limit.
    fn expire(&self) {
        let Some(max_age) = self.config.max_age else {
            return;
        };
        let Some(limit) = SystemTime::now().checked_sub(max_age) else {
            return;
        };
        let mut state = self.lock();
        while state.segments.len() > 1 && state.segments[0].newest.is_some_and(|n| n < limit) {
            self.delete_oldest(&mut state, "older than the age limit");
        }
        let released = self.trim(&mut state);
        drop(state);
        drop(released);
    }

    /// Writes a group of requests, syncs once if the policy says so, then
    /// publishes the events to readers and answers the producers.
    fn write_group(&self, group: Vec<WriteRequest>, active: &mut ActiveFile) {
        let now = SystemTime::now();
        self.release_active_if_needed(&group, active);
        let always = self.config.fsync == FsyncPolicy::Always;
        let ActiveFile {
            file,
            path,
            retired,
            ..
        } = active;
        let (mut next_seq, mut active_bytes) = {
            let state = self.lock();
            (state.head + 1, state.segments.back().map_or(0, |s| s.bytes))
        };
        let received_millis = record::unix_millis(now);
        // Where the records of `pending` start in the active segment, to cut
        // a failed write.
        let mut pending_start = active_bytes;
        let mut pending: Vec<(WriteRequest, Seq, u64)> = Vec::with_capacity(group.len());
        let mut pending_bytes = 0u64;
        let mut broken: Option<AppendError> = None;
        for mut request in group {
            if let Some(error) = &broken {
                let _ = request.reply.send(Err(error.clone()));
                continue;
            }
            let needed = request.records.len() as u64;
            if let Err(e) = self.make_room(needed + pending_bytes) {
                let _ = request.reply.send(Err(e));
                continue;
            }
            if active_bytes > 0 && active_bytes + needed > self.config.segment_bytes {
                // Close the full segment: what it holds is written (and under
                // `always` synced) and published before the next one starts.
                let closed = write_out(file, &pending, pending_start).and_then(|()| {
                    if always {
                        file.sync_data()
                            .map_err(|e| AppendError::Io(format!("fsync failed: {e}")))
                    } else {
                        Ok(())
                    }
                });
                if let Err(error) = closed {
                    fail_all(std::mem::take(&mut pending), &error);
                    let _ = request.reply.send(Err(error.clone()));
                    broken = Some(error);
                    continue;
                }
                self.publish(std::mem::take(&mut pending), now);
                pending_bytes = 0;
                match self.rotate(next_seq) {
                    Ok((new_file, new_path)) => {
                        let old = std::mem::replace(file, new_file);
                        if !always {
                            retired.push(old);
                        }
                        *path = new_path;
                        active_bytes = 0;
                        pending_start = 0;
                    }
                    Err(e) => {
                        tracing::error!("cannot start a new journal segment: {e}");
                        let error = AppendError::Io(e.to_string());
                        let _ = request.reply.send(Err(error.clone()));
                        broken = Some(error);
                        continue;
                    }
                }
            }
            let first = next_seq;
            let mut start = 0;
            for &end in &request.ends {
                record::seal_record(&mut request.records[start..end], next_seq, received_millis);
                start = end;
                next_seq += 1;
            }
            active_bytes += needed;
            pending_bytes += needed;
            pending.push((request, first, needed));
        }
        if pending.is_empty() {
            return;
        }
        if let Err(error) = write_out(file, &pending, pending_start) {
            fail_all(pending, &error);
            return;
        }
        if self.config.fsync == FsyncPolicy::Always {
            if let Err(e) = file.sync_data() {
                // After a failed fsync the kernel may have dropped the pages:
                // nothing of the group can be promised.
                let _ = file.set_len(pending_start);
                tracing::error!("journal fsync failed: {e}");
                fail_all(pending, &AppendError::Io(format!("fsync failed: {e}")));
                return;
            }
        }
        self.publish(pending, now);
    }

    /// When the group would not fit and every output has acknowledged the
    /// whole active segment, starts a new one so that the old one can go:
    /// the active segment is otherwise never deleted. Only then, so that
    /// outputs that keep up do not cause a new file per write.
    fn release_active_if_needed(&self, group: &[WriteRequest], active: &mut ActiveFile) {
        let needed: u64 = group.iter().map(|r| r.records.len() as u64).sum();
        let next_seq = {
            let state = self.lock();
            let Some(active) = state.segments.back() else {
                return;
            };
            let released = active.last_seq >= active.first_seq
                && state.cursors.values().all(|c| c.acked >= active.last_seq);
            if !released || state.total_bytes + needed <= self.config.max_bytes {
                return;
            }
            state.head + 1
        };
        // No fsync: every output has what the old segment holds, and it is
        // deleted right away.
        match self.rotate(next_seq) {
            Ok((new_file, new_path)) => {
                active.file = new_file;
                active.path = new_path;
                let mut state = self.lock();
                let released = self.trim(&mut state);
                drop(state);
                drop(released);
            }
            Err(e) => tracing::error!("cannot start a new journal segment: {e}"),
        }
    }

    /// Makes room for `needed` more bytes under `max_bytes`.
    fn make_room(&self, needed: u64) -> Result<(), AppendError> {
        let mut state = self.lock();
        // Acknowledgements release their events themselves, so there is
        // next to nothing here to free under the lock.
        let _released = self.trim(&mut state);
        let mut acted = false;
        while state.total_bytes + needed > self.config.max_bytes {
            match self.config.full {
                FullPolicy::DropOldest if state.segments.len() > 1 => {
                    self.delete_oldest(
                        &mut state,
                        "the journal reached its size limit (drop_oldest)",
                    );
                    state.full_drops += 1;
                    acted = true;
                }
                FullPolicy::Block | FullPolicy::DropOldest => {
                    state.full_acting = true;
                    state.full_refusals += 1;
                    return Err(AppendError::Full {
                        max_bytes: self.config.max_bytes,
                    });
                }
            }
        }
        state.full_acting = acted;
        Ok(())
    }

    fn rotate(&self, first_seq: Seq) -> io::Result<(File, PathBuf)> {
        let path = self.config.dir.join(segment::file_name(first_seq));
        let new = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        segment::sync_dir(&self.config.dir)?;
        self.lock().segments.push_back(SegmentMeta {
            first_seq,
            last_seq: first_seq - 1,
            path: path.clone(),
            bytes: 0,
            newest: None,
            oldest: None,
        });
        Ok((new, path))
    }

    fn publish(&self, written: Vec<(WriteRequest, Seq, u64)>, now: SystemTime) {
        if written.is_empty() {
            return;
        }
        let mut written = written;
        for (request, ..) in &mut written {
            if let Some(hook) = request.before_publish.take() {
                hook(&request.records, &request.ends);
            }
        }
        let mut replies = Vec::with_capacity(written.len());
        let mut spare = Vec::new();
        let (head, released) = {
            let mut state = self.lock();
            let mut released = Vec::new();
            for (request, first, bytes) in written {
                let WriteRequest {
                    events,
                    undecoded,
                    mut records,
                    mut ends,
                    reply,
                    ..
                } = request;
                let count = (undecoded + events.len()) as u64;
                let last = first + count - 1;
                if let Some(active) = state.segments.back_mut() {
                    active.last_seq = last;
                    active.bytes += bytes;
                    active.newest = Some(now);
                    active.oldest.get_or_insert(now);
                }
                state.total_bytes += bytes;
                state.total_events += count;
                if undecoded > 0 {
                    // The tail must stay a contiguous run of seqs; what the
                    // batch's newest records cost pushes every older entry
                    // out of it anyway (see `append_encoded`).
                    while let Some(entry) = state.pop_tail() {
                        released.push(entry);
                    }
                }
                let mut start = if undecoded > 0 {
                    ends[undecoded - 1]
                } else {
                    0
                };
                for ((i, event), end) in events.into_iter().enumerate().zip(&ends[undecoded..]) {
                    let entry = Arc::new(Entry {
                        seq: first + (undecoded + i) as u64,
                        received_at: now,
                        event,
                    });
                    let cost = entry.memory_cost(end - start - record::HEADER_LEN);
                    start = *end;
                    state.tail_bytes += cost;
                    state.tail_costs.push_back(cost);
                    state.tail.push_back(entry);
                }
                state.head = last;
                replies.push((reply, last));
                if records.capacity() <= MAX_SPARE_BUFFER_BYTES {
                    records.clear();
                    ends.clear();
                    spare.push((records, ends));
                }
            }
            released.append(&mut self.trim(&mut state));
            while state.tail_bytes > self.config.memory_bytes {
                match state.pop_tail() {
                    Some(entry) => released.push(entry),
                    None => break,
                }
            }
            (state.head, released)
        };
        drop(released);
        self.head.send_replace(head);
        for (reply, last) in replies {
            let _ = reply.send(Ok(last));
        }
        let mut spare_buffers = lock(&self.spare_buffers);
        for buffers in spare {
            if spare_buffers.len() < MAX_SPARE_BUFFERS {
                spare_buffers.push(buffers);
            }
        }
    }
}

/// Writes the records of `pending` at the end of the active segment, with
/// as few system calls as the kernel allows and no copy; a failed or partial
/// write is cut off again, so the segment stays a clean run of records.
fn write_out(
    file: &mut File,
    pending: &[(WriteRequest, Seq, u64)],
    start_len: u64,
) -> Result<(), AppendError> {
    let mut slices: Vec<IoSlice<'_>> = pending
        .iter()
        .map(|(request, ..)| IoSlice::new(&request.records))
        .filter(|slice| !slice.is_empty())
        .collect();
    let mut remaining = &mut slices[..];
    while !remaining.is_empty() {
        match file.write_vectored(remaining) {
            Ok(0) => {
                return Err(cut_failed_write(
                    file,
                    start_len,
                    io::ErrorKind::WriteZero.into(),
                ))
            }
            Ok(written) => IoSlice::advance_slices(&mut remaining, written),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(cut_failed_write(file, start_len, e)),
        }
    }
    Ok(())
}

fn cut_failed_write(file: &mut File, start_len: u64, e: io::Error) -> AppendError {
    let _ = file.set_len(start_len);
    let _ = file.seek(SeekFrom::End(0));
    tracing::error!("journal write failed: {e}");
    AppendError::Io(e.to_string())
}

/// Takes the journal directory's lock file, or says who holds it.
pub fn lock_dir(dir: &Path) -> io::Result<File> {
    std::fs::create_dir_all(dir).map_err(|e| io_error("cannot create", dir, e))?;
    let path = dir.join("LOCK");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| io_error("cannot open", &path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(io::Error::new(
            io::ErrorKind::WouldBlock,
            format!(
                "the journal in {} is in use by another brokerstream process",
                dir.display()
            ),
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(io_error("cannot lock", &path, e)),
    }
}

fn fail_all(written: Vec<(WriteRequest, Seq, u64)>, error: &AppendError) {
    for (request, ..) in written {
        let _ = request.reply.send(Err(error.clone()));
    }
}

impl Entry {
    /// What the entry costs in memory, roughly: the struct, a slot per
    /// field and its strings, estimated from the size of its encoded payload
    /// (which the strings dominate) rather than by walking the event again.
    /// Public so that the benchmark's memory-only baseline bounds its tail
    /// exactly as the journal does.
    pub fn memory_cost(&self, payload_len: usize) -> usize {
        entry_cost(&self.event, payload_len)
    }
}

fn entry_cost(event: &Event, payload_len: usize) -> usize {
    std::mem::size_of::<Entry>() + event.values().len() * 32 + payload_len
}

impl State {
    /// Takes the events up to `seq` out of the memory tail.
    fn release_through(&mut self, seq: Seq) -> Vec<Arc<Entry>> {
        let count = self.tail.partition_point(|e| e.seq <= seq);
        if count == 0 {
            return Vec::new();
        }
        let freed: usize = self.tail_costs.drain(..count).sum();
        self.tail_bytes -= freed;
        self.tail.drain(..count).collect()
    }

    fn pop_tail(&mut self) -> Option<Arc<Entry>> {
        let entry = self.tail.pop_front()?;
        self.tail_bytes -= self.tail_costs.pop_front().unwrap_or(0);
        Some(entry)
    }

    fn oldest_seq(&self) -> Option<Seq> {
        self.segments
            .iter()
            .find(|s| s.last_seq >= s.first_seq)
            .map(|s| s.first_seq)
    }
}

/// An output's reading position. Reading hands events out in order;
/// acknowledging releases them. Unacknowledged events are handed out again
/// after [`Cursor::rewind`], which a worker calls when it starts.
pub struct Cursor {
    journal: Arc<Journal>,
    name: String,
    head: watch::Receiver<Seq>,
    /// Open on the segment being read, for events no longer in memory.
    reader: Option<DiskReader>,
}

struct DiskReader {
    file: BufReader<File>,
    /// The sequence number after the last record read (0 before any).
    next_seq: Seq,
}

impl Cursor {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Up to `max` events after the last one read, without waiting. Events
    /// still in memory come from there; older ones are read from disk.
    pub fn read(&mut self, max: usize) -> Vec<Arc<Entry>> {
        let mut out = Vec::new();
        let (mut next, head) = {
            let mut state = self.journal.lock();
            let oldest = state.oldest_seq();
            let head = state.head;
            let Some(cursor) = state.cursors.get_mut(&self.name) else {
                return out;
            };
            if let Some(oldest) = oldest {
                // What was deleted under this cursor is counted as lost.
                cursor.next_read = cursor.next_read.max(oldest);
            }
            let next = cursor.next_read;
            if let Some(first) = state.tail.front().map(|e| e.seq) {
                if next >= first {
                    let skip = (next - first) as usize;
                    out.extend(state.tail.iter().skip(skip).take(max).cloned());
                    if let (Some(last), Some(cursor)) =
                        (out.last(), state.cursors.get_mut(&self.name))
                    {
                        cursor.next_read = last.seq + 1;
                    }
                    return out;
                }
            }
            (next, head)
        };
        // Behind the memory tail: read the segments.
        while out.len() < max && next <= head {
            match self.read_disk(next, head) {
                Ok(Some(entry)) => {
                    next = entry.seq + 1;
                    out.push(Arc::new(entry));
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::error!(output = %self.name, "cannot read journal event {next}: {e}; skipping it");
                    self.reader = None;
                    next += 1;
                }
            }
        }
        let mut state = self.journal.lock();
        if let Some(cursor) = state.cursors.get_mut(&self.name) {
            cursor.next_read = next;
        }
        out
    }

    /// The event `seq` from disk (or the next one held, if `seq` is gone).
    fn read_disk(&mut self, seq: Seq, head: Seq) -> io::Result<Option<Entry>> {
        let mut reopened = false;
        loop {
            if self.reader.as_ref().is_none_or(|r| r.next_seq > seq) {
                if reopened {
                    return Ok(None);
                }
                self.reader = self.open_reader(seq)?;
                reopened = true;
            }
            let Some(reader) = self.reader.as_mut() else {
                return Ok(None);
            };
            if reader.next_seq > head {
                return Ok(None);
            }
            let mut header = [0u8; record::HEADER_LEN];
            if let Err(e) = reader.file.read_exact(&mut header) {
                self.reader = None;
                if e.kind() == io::ErrorKind::UnexpectedEof {
                    // The end of this segment: the next one holds `seq`.
                    continue;
                }
                return Err(e);
            }
            let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
            if len > record::MAX_PAYLOAD_LEN {
                self.reader = None;
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "corrupt record length",
                ));
            }
            let mut bytes = header.to_vec();
            bytes.resize(record::HEADER_LEN + len, 0);
            reader.file.read_exact(&mut bytes[record::HEADER_LEN..])?;
            let raw = record::decode_record(&bytes)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            reader.next_seq = raw.seq + 1;
            if raw.seq < seq {
                continue;
            }
            let event = record::decode_event(raw.payload)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            return Ok(Some(Entry {
                seq: raw.seq,
                received_at: raw.received_at,
                event,
            }));
        }
    }

    /// Opens the segment that holds `seq` (or the first after it).
    fn open_reader(&self, seq: Seq) -> io::Result<Option<DiskReader>> {
        let path = {
            let state = self.journal.lock();
            match state
                .segments
                .iter()
                .find(|s| s.last_seq >= seq && s.last_seq >= s.first_seq)
            {
                Some(s) => s.path.clone(),
                None => return Ok(None),
            }
        };
        Ok(Some(DiskReader {
            file: BufReader::with_capacity(256 * 1024, File::open(&path)?),
            next_seq: 0,
        }))
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
            let acked = cursor
                .acked
                .max(seq.min(cursor.next_read.saturating_sub(1)));
            if acked != cursor.acked {
                cursor.acked = acked;
                state.cursors_dirty = true;
            }
        }
        let released = self.journal.trim(&mut state);
        drop(state);
        drop(released);
    }

    /// Hands the unacknowledged events out again from the oldest.
    pub fn rewind(&mut self) {
        let mut state = self.journal.lock();
        if let Some(cursor) = state.cursors.get_mut(&self.name) {
            cursor.next_read = cursor.acked + 1;
        }
        self.reader = None;
    }

    pub fn backlog(&self) -> Backlog {
        self.journal.backlog(&self.name)
    }
}

#[cfg(test)]
mod tests;
