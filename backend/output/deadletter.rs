//! Dead letters: the records a destination refused for what they hold (a
//! malformed point, a document its mapping rejects), kept once they leave
//! the journal so that an operator can read them, send them again once the
//! destination takes them, or discard them.
//!
//! One file per output, `<data_dir>/deadletter/<output>.ndjson`, one JSON
//! line per record: `{"at", "reason", "record"}`, `record` being the record
//! as the kind encoded it for the destination (its final newline left out,
//! so that the file reads as one line per record; the kind puts it back on
//! replay). The format is the one earlier versions wrote, so their files
//! can be listed and replayed too.
//!
//! A replay moves the file aside to `<output>.replaying.ndjson` and sends
//! its records again; what the destination still refuses is dead-lettered
//! again (with the new reason), what it could not take now goes back to
//! the main file with its original time and reason. The moved file is
//! removed only once every one of its lines is settled, so a crash during a
//! replay loses nothing: the next access puts the moved file back, and its
//! records are sent again by the next replay (at least once, possibly
//! twice for those delivered just before the crash).
//!
//! Locking rule: each output has one state mutex. It is held for every
//! change of that output's files (an append, moving the file aside,
//! putting lines back, a discard), so that no append lands in a file being
//! moved or removed; it is never held across an `.await`. Reading a page
//! takes it only to learn the count: the lines are read from the file as
//! it is when opened, and a line being appended meanwhile is not yet
//! counted.

use crate::sync::lock;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The longest page [`DeadLetters::page`] returns.
pub const MAX_PAGE: usize = 500;

pub struct DeadLetters {
    dir: PathBuf,
    outputs: Mutex<HashMap<String, Arc<Mutex<FileState>>>>,
}

#[derive(Default)]
struct FileState {
    /// Lines in the main file, once counted.
    held: Option<u64>,
    /// While a replay runs: lines of the moved file not yet settled.
    replaying: Option<u64>,
}

/// One dead letter, as the API and the page list it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Letter {
    /// Its line in the file, from 0: what `offset` counts.
    pub line: u64,
    /// When it was refused (RFC 3339, UTC).
    pub at: String,
    pub reason: String,
    /// The record as it was sent. For a line that is not a dead letter
    /// (a write cut short by a crash, an edit by hand), the line itself.
    pub record: String,
    /// The line could not be read as a dead letter; a replay keeps it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub unreadable: bool,
}

#[derive(Deserialize)]
struct Line {
    at: String,
    reason: String,
    record: String,
}

/// A page of an output's dead letters.
#[derive(Debug, Serialize)]
pub struct Page {
    /// Lines in the file, all pages together.
    pub held: u64,
    /// Records of a replay in progress, not yet settled (not in `held`).
    pub replaying: u64,
    pub offset: u64,
    pub letters: Vec<Letter>,
}

#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    #[error("a replay of `{0}`'s dead letters is already running")]
    Replaying(String),
    #[error("{0}")]
    Io(String),
}

impl DeadLetters {
    pub fn new(dir: PathBuf) -> Arc<DeadLetters> {
        Arc::new(DeadLetters {
            dir,
            outputs: Mutex::new(HashMap::new()),
        })
    }

    /// The output's file.
    pub fn path(&self, output: &str) -> PathBuf {
        self.dir.join(format!("{output}.ndjson"))
    }

    fn replay_path(&self, output: &str) -> PathBuf {
        self.dir.join(format!("{output}.replaying.ndjson"))
    }

    /// The output's state. The first access of an output in this process
    /// mends what a crash may have left, before anyone else may lock it: a
    /// replay's moved file is put back, and a line cut short is ended so
    /// that the next append starts a line of its own.
    fn state(&self, output: &str) -> Result<Arc<Mutex<FileState>>, DeadLetterError> {
        let mut outputs = lock(&self.outputs);
        if let Some(state) = outputs.get(output) {
            return Ok(Arc::clone(state));
        }
        let state = Arc::new(Mutex::new(FileState::default()));
        let guard = lock(&state);
        outputs.insert(output.to_owned(), Arc::clone(&state));
        drop(outputs);
        if let Err(e) = self.mend(output) {
            drop(guard);
            // Forgotten, so that the next access tries again.
            lock(&self.outputs).remove(output);
            return Err(self.io_error(output, e));
        }
        drop(guard);
        Ok(state)
    }

    fn mend(&self, output: &str) -> std::io::Result<()> {
        let main = self.path(output);
        end_torn_line(&main)?;
        let moved = self.replay_path(output);
        if moved.exists() {
            end_torn_line(&moved)?;
            let mut from = File::open(&moved)?;
            let mut to = open_append(&main)?;
            std::io::copy(&mut from, &mut to)?;
            to.sync_data()?;
            std::fs::remove_file(&moved)?;
            tracing::warn!(
                file = %main.display(),
                "the dead letters of an interrupted replay were put back"
            );
        }
        Ok(())
    }

    fn io_error(&self, output: &str, error: std::io::Error) -> DeadLetterError {
        DeadLetterError::Io(format!(
            "dead-letter file {}: {error}",
            self.path(output).display()
        ))
    }

    /// Appends records with their reason, and syncs: the events are
    /// acknowledged right after, so this file is all that is left of them.
    /// Blocking file calls: refusals are rare and small, and the worker
    /// waits for them anyway before acknowledging.
    pub fn append(
        &self,
        output: &str,
        records: &[&[u8]],
        reason: &str,
    ) -> Result<(), DeadLetterError> {
        let at = OffsetDateTime::now_utc()
            .format(&Rfc3339)
            .unwrap_or_default();
        let mut text = Vec::new();
        for record in records {
            let record = String::from_utf8_lossy(record);
            let line = serde_json::json!({
                "at": at,
                "reason": reason,
                "record": record.trim_end_matches('\n'),
            });
            // Writing into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut text, &line);
            text.push(b'\n');
        }
        let state = self.state(output)?;
        let mut state = lock(&state);
        self.write_lines(output, &text)
            .map_err(|e| self.io_error(output, e))?;
        if let Some(held) = &mut state.held {
            *held += records.len() as u64;
        }
        Ok(())
    }

    /// Appends whole lines to the main file and syncs. The caller holds
    /// the output's state lock.
    fn write_lines(&self, output: &str, lines: &[u8]) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let mut file = open_append(&self.path(output))?;
        file.write_all(lines)?;
        file.sync_data()
    }

    /// Dead letters held for the output, a replay's unsettled ones
    /// included. Counted from the file at the first call, then kept.
    pub fn held(&self, output: &str) -> Result<u64, DeadLetterError> {
        let state = self.state(output)?;
        let mut state = lock(&state);
        let held = self.count(output, &mut state)?;
        Ok(held + state.replaying.unwrap_or(0))
    }

    fn count(&self, output: &str, state: &mut FileState) -> Result<u64, DeadLetterError> {
        if let Some(held) = state.held {
            return Ok(held);
        }
        let held = count_lines(&self.path(output)).map_err(|e| self.io_error(output, e))?;
        state.held = Some(held);
        Ok(held)
    }

    /// Lines `offset..offset + limit` of the main file, `limit` at most
    /// [`MAX_PAGE`]. Reads the file up to the page: meant for a blocking
    /// thread.
    pub fn page(&self, output: &str, offset: u64, limit: usize) -> Result<Page, DeadLetterError> {
        let (held, replaying) = {
            let state = self.state(output)?;
            let mut state = lock(&state);
            (
                self.count(output, &mut state)?,
                state.replaying.unwrap_or(0),
            )
        };
        let limit = limit.min(MAX_PAGE);
        let mut letters = Vec::new();
        let file = open_existing(&self.path(output)).map_err(|e| self.io_error(output, e))?;
        if let Some(file) = file {
            let mut lines = LineReader::new(file);
            let mut number = 0u64;
            while letters.len() < limit {
                let Some(line) = lines.next_line().map_err(|e| self.io_error(output, e))? else {
                    break;
                };
                if number >= offset {
                    letters.push(letter(number, &line));
                }
                number += 1;
            }
        }
        Ok(Page {
            held,
            replaying,
            offset,
            letters,
        })
    }

    /// Removes every dead letter of the output; how many there were.
    pub fn discard(&self, output: &str) -> Result<u64, DeadLetterError> {
        let state = self.state(output)?;
        let mut state = lock(&state);
        if state.replaying.is_some() {
            return Err(DeadLetterError::Replaying(output.to_owned()));
        }
        let held = self.count(output, &mut state)?;
        match std::fs::remove_file(self.path(output)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(self.io_error(output, e)),
        }
        state.held = Some(0);
        Ok(held)
    }

    /// Moves the dead letters of a deleted output aside, to
    /// `<name>.deleted-<unix seconds>.ndjson`: kept for an operator to read,
    /// but no longer the letters of an output given that name later.
    /// Refused while a replay runs. `None` when it held none.
    pub fn set_aside(&self, output: &str) -> Result<Option<PathBuf>, DeadLetterError> {
        let state = self.state(output)?;
        let mut state = lock(&state);
        if state.replaying.is_some() {
            return Err(DeadLetterError::Replaying(output.to_owned()));
        }
        let path = self.path(output);
        if !path.exists() {
            state.held = Some(0);
            return Ok(None);
        }
        let seconds = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let aside = self.dir.join(format!("{output}.deleted-{seconds}.ndjson"));
        std::fs::rename(&path, &aside).map_err(|e| self.io_error(output, e))?;
        state.held = Some(0);
        Ok(Some(aside))
    }

    /// Gives an output's dead letters to its new name (the output was
    /// renamed). Refused while a replay of either name runs. Letters left
    /// under the new name by an output deleted earlier are kept, before
    /// the moved ones.
    pub fn rename(&self, from: &str, to: &str) -> Result<(), DeadLetterError> {
        let from_state = self.state(from)?;
        let to_state = self.state(to)?;
        // Two locks at once only here, and renames are serialised by the
        // control layer's lock: no other order can meet this one.
        let mut source = lock(&from_state);
        let mut target = lock(&to_state);
        if source.replaying.is_some() {
            return Err(DeadLetterError::Replaying(from.to_owned()));
        }
        if target.replaying.is_some() {
            return Err(DeadLetterError::Replaying(to.to_owned()));
        }
        let moved = self.path(from);
        if moved.exists() {
            let kept = self.path(to);
            if kept.exists() {
                let mut from_file = File::open(&moved).map_err(|e| self.io_error(from, e))?;
                let mut to_file = open_append(&kept).map_err(|e| self.io_error(to, e))?;
                std::io::copy(&mut from_file, &mut to_file).map_err(|e| self.io_error(to, e))?;
                to_file.sync_data().map_err(|e| self.io_error(to, e))?;
                std::fs::remove_file(&moved).map_err(|e| self.io_error(from, e))?;
            } else {
                std::fs::rename(&moved, &kept).map_err(|e| self.io_error(from, e))?;
            }
        }
        source.held = Some(0);
        // Counted again from the file at the next look.
        target.held = None;
        Ok(())
    }

    /// Starts a replay: moves the main file aside and returns its reader,
    /// or `None` when nothing is held. Until the [`Replay`] is finished or
    /// dropped, no other replay or discard of the output may start.
    pub fn begin_replay(self: &Arc<Self>, output: &str) -> Result<Option<Replay>, DeadLetterError> {
        let state = self.state(output)?;
        let mut state = lock(&state);
        if state.replaying.is_some() {
            return Err(DeadLetterError::Replaying(output.to_owned()));
        }
        let held = self.count(output, &mut state)?;
        if held == 0 {
            return Ok(None);
        }
        let moved = self.replay_path(output);
        std::fs::rename(self.path(output), &moved).map_err(|e| self.io_error(output, e))?;
        let file = File::open(&moved).map_err(|e| self.io_error(output, e))?;
        state.held = Some(0);
        state.replaying = Some(held);
        Ok(Some(Replay {
            letters: Arc::clone(self),
            output: output.to_owned(),
            reader: Some(LineReader::new(file)),
            in_flight: Vec::new(),
            kept: Vec::new(),
        }))
    }
}

/// A replay in progress: the moved file's lines, read a batch at a time.
/// Dropping it (finished, failed, or abandoned by a panic) puts back every
/// line not settled, then removes the moved file.
pub struct Replay {
    letters: Arc<DeadLetters>,
    output: String,
    reader: Option<LineReader>,
    /// Lines handed out by [`Replay::next`] and not yet settled.
    in_flight: Vec<Vec<u8>>,
    /// Lines to put back: not readable as dead letters, or not taken.
    kept: Vec<Vec<u8>>,
}

/// A dead letter handed out for sending again.
pub struct Pending {
    pub record: String,
}

impl Replay {
    /// Up to `max` more records, fewer once their bytes reach `max_bytes`
    /// (as a worker's batch flushes at `max_buffer_bytes`). Lines that are
    /// not dead letters are kept aside and put back. Empty at the end of
    /// the file.
    pub fn next(&mut self, max: usize, max_bytes: usize) -> Result<Vec<Pending>, DeadLetterError> {
        let mut batch = Vec::new();
        let mut bytes = 0;
        let Some(reader) = &mut self.reader else {
            return Ok(batch);
        };
        while batch.len() < max && bytes < max_bytes {
            let line = match reader.next_line() {
                Ok(Some(line)) => line,
                Ok(None) => break,
                Err(e) => return Err(self.letters.io_error(&self.output, e)),
            };
            match serde_json::from_slice::<Line>(trim_newline(&line)) {
                Ok(parsed) => {
                    bytes += parsed.record.len();
                    batch.push(Pending {
                        record: parsed.record,
                    });
                    self.in_flight.push(line);
                }
                // Still counted as replaying until put back.
                Err(_) => self.kept.push(line),
            }
        }
        Ok(batch)
    }

    /// The records last handed out are settled: delivered, or
    /// dead-lettered again by the sink.
    pub fn settled(&mut self) {
        let count = self.in_flight.len() as u64;
        self.in_flight.clear();
        self.settle(count);
    }

    fn settle(&self, count: u64) {
        if let Ok(state) = self.letters.state(&self.output) {
            let mut state = lock(&state);
            if let Some(remaining) = &mut state.replaying {
                *remaining = remaining.saturating_sub(count);
            }
        }
    }

    /// Puts back what is not settled: the lines kept aside, those in
    /// flight, and the rest of the moved file, each with its original time
    /// and reason. Then removes the moved file. On an error the moved file
    /// stays, and the next access of the output puts it back. How many
    /// lines went back.
    pub fn finish(mut self) -> Result<u64, DeadLetterError> {
        self.put_back()
    }

    fn put_back(&mut self) -> Result<u64, DeadLetterError> {
        let Some(mut reader) = self.reader.take() else {
            return Ok(0);
        };
        let letters = Arc::clone(&self.letters);
        let output = self.output.clone();
        let state = letters.state(&output)?;
        let mut state = lock(&state);
        let mut lines: Vec<u8> = Vec::new();
        let mut count = 0u64;
        for line in self.kept.drain(..).chain(self.in_flight.drain(..)) {
            lines.extend_from_slice(&line);
            count += 1;
        }
        let result = (|| -> std::io::Result<u64> {
            while let Some(line) = reader.next_line()? {
                lines.extend_from_slice(&line);
                count += 1;
            }
            if !lines.is_empty() {
                letters.write_lines(&output, &lines)?;
            }
            std::fs::remove_file(letters.replay_path(&output))?;
            Ok(count)
        })();
        state.replaying = None;
        match result {
            Ok(count) => {
                if let Some(held) = &mut state.held {
                    *held += count;
                }
                Ok(count)
            }
            Err(e) => {
                // The moved file is still there: forget the state, so that
                // the next access puts it back and counts again.
                drop(state);
                lock(&letters.outputs).remove(&output);
                Err(letters.io_error(&output, e))
            }
        }
    }
}

impl Drop for Replay {
    fn drop(&mut self) {
        if let Err(e) = self.put_back() {
            tracing::error!(output = %self.output, "cannot put dead letters back: {e}");
        }
    }
}

/// Reads whole lines, each with its newline (the last one may lack it).
struct LineReader {
    reader: BufReader<File>,
}

impl LineReader {
    fn new(file: File) -> LineReader {
        LineReader {
            reader: BufReader::with_capacity(64 * 1024, file),
        }
    }

    fn next_line(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        let mut line = Vec::new();
        if self.reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(None);
        }
        if line.last() != Some(&b'\n') {
            line.push(b'\n');
        }
        Ok(Some(line))
    }
}

fn letter(number: u64, line: &[u8]) -> Letter {
    let text = trim_newline(line);
    match serde_json::from_slice::<Line>(text) {
        Ok(parsed) => Letter {
            line: number,
            at: parsed.at,
            reason: parsed.reason,
            record: parsed.record,
            unreadable: false,
        },
        Err(_) => Letter {
            line: number,
            at: String::new(),
            reason:
                "not a dead letter (a write cut short, or a line edited by hand): kept as it is"
                    .to_owned(),
            record: String::from_utf8_lossy(text).into_owned(),
            unreadable: true,
        },
    }
}

fn trim_newline(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\n").unwrap_or(line)
}

/// A file that may not exist yet: `None` then.
fn existing(opened: std::io::Result<File>) -> std::io::Result<Option<File>> {
    match opened {
        Ok(file) => Ok(Some(file)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn open_existing(path: &Path) -> std::io::Result<Option<File>> {
    existing(File::open(path))
}

fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// Ends the file's last line if a crash cut it short, so that the next
/// append starts a line of its own.
fn end_torn_line(path: &Path) -> std::io::Result<()> {
    use std::io::{Seek, SeekFrom};
    let Some(mut file) = existing(OpenOptions::new().read(true).append(true).open(path))? else {
        return Ok(());
    };
    if file.metadata()?.len() == 0 {
        return Ok(());
    }
    file.seek(SeekFrom::End(-1))?;
    let mut last = [0u8];
    file.read_exact(&mut last)?;
    if last[0] != b'\n' {
        file.write_all(b"\n")?;
        file.sync_data()?;
    }
    Ok(())
}

fn count_lines(path: &Path) -> std::io::Result<u64> {
    let Some(mut file) = open_existing(path)? else {
        return Ok(0);
    };
    let mut buffer = vec![0u8; 64 * 1024];
    let mut lines = 0u64;
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            return Ok(lines);
        }
        lines += buffer[..read].iter().filter(|&&b| b == b'\n').count() as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Arc<DeadLetters>) {
        let dir = tempfile::tempdir().unwrap();
        let letters = DeadLetters::new(dir.path().join("deadletter"));
        (dir, letters)
    }

    fn records(page: &Page) -> Vec<&str> {
        page.letters.iter().map(|l| l.record.as_str()).collect()
    }

    #[test]
    fn renamed_letters_move_and_join_those_held_under_the_new_name() {
        let (_dir, letters) = store();
        letters.append("a", &[b"1\n", b"2\n"], "HTTP 400").unwrap();
        letters.rename("a", "b").unwrap();
        assert_eq!(letters.held("a").unwrap(), 0);
        assert_eq!(letters.held("b").unwrap(), 2);
        assert!(!letters.path("a").exists());
        // Letters an earlier output of that name left are kept first.
        letters.append("c", &[b"3\n"], "HTTP 400").unwrap();
        letters.rename("b", "c").unwrap();
        assert_eq!(records(&letters.page("c", 0, 10).unwrap()), ["3", "1", "2"]);
        // Nothing to move is no error; a replay under way refuses.
        letters.rename("nothing", "d").unwrap();
        let _run = letters.begin_replay("c").unwrap().unwrap();
        assert!(matches!(
            letters.rename("c", "e"),
            Err(DeadLetterError::Replaying(_))
        ));
    }

    #[test]
    fn a_deleted_outputs_letters_are_set_aside_not_inherited() {
        let (_dir, letters) = store();
        assert_eq!(letters.set_aside("gone").unwrap(), None, "none held");
        letters
            .append("gone", &[b"1\n", b"2\n"], "HTTP 400")
            .unwrap();
        let _run = letters.begin_replay("gone").unwrap().unwrap();
        assert!(matches!(
            letters.set_aside("gone"),
            Err(DeadLetterError::Replaying(_))
        ));
        drop(_run);
        let aside = letters.set_aside("gone").unwrap().expect("moved");
        assert_eq!(std::fs::read_to_string(&aside).unwrap().lines().count(), 2);
        assert!(aside
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("gone.deleted-"));
        assert_eq!(letters.held("gone").unwrap(), 0, "a new output of the name");
        assert!(!letters.path("gone").exists());
    }

    #[test]
    fn appended_letters_are_counted_and_paged() {
        let (_dir, letters) = store();
        assert_eq!(letters.held("o").unwrap(), 0);
        letters
            .append("o", &[b"a 1\n", b"b 2\n"], "HTTP 400: x")
            .unwrap();
        letters.append("o", &[b"c 3\n"], "HTTP 400: y").unwrap();
        assert_eq!(letters.held("o").unwrap(), 3);
        let page = letters.page("o", 1, 5).unwrap();
        assert_eq!((page.held, page.offset), (3, 1));
        assert_eq!(records(&page), ["b 2", "c 3"]);
        assert_eq!(page.letters[1].reason, "HTTP 400: y");
        assert_eq!(page.letters[1].line, 2);
        // Counted from the file by a new process, too.
        let again = DeadLetters::new(letters.dir.clone());
        assert_eq!(again.held("o").unwrap(), 3);
    }

    #[test]
    fn a_replay_puts_back_what_it_did_not_settle_with_its_reason() {
        let (_dir, letters) = store();
        letters.append("o", &[b"a", b"b", b"c"], "first").unwrap();
        let mut run = letters.begin_replay("o").unwrap().unwrap();
        assert!(matches!(
            letters.begin_replay("o"),
            Err(DeadLetterError::Replaying(_))
        ));
        assert!(matches!(
            letters.discard("o"),
            Err(DeadLetterError::Replaying(_))
        ));
        let first = run.next(1, usize::MAX).unwrap();
        assert_eq!(first[0].record, "a");
        run.settled();
        // Refused while the replay runs: appended to the main file.
        letters.append("o", &[b"z"], "during").unwrap();
        assert_eq!(letters.held("o").unwrap(), 3);
        let second = run.next(1, usize::MAX).unwrap();
        assert_eq!(second[0].record, "b");
        // Not settled: "b" and the rest go back.
        assert_eq!(run.finish().unwrap(), 2);
        let page = letters.page("o", 0, 10).unwrap();
        assert_eq!(records(&page), ["z", "b", "c"]);
        assert_eq!(page.letters[1].reason, "first");
        assert_eq!(letters.held("o").unwrap(), 3);
        assert_eq!(page.replaying, 0);
    }

    #[test]
    fn a_replay_batch_stops_at_the_byte_limit() {
        let (_dir, letters) = store();
        let record = [b'x'; 10];
        letters.append("o", &[&record[..]; 5], "r").unwrap();
        let mut run = letters.begin_replay("o").unwrap().unwrap();
        // 10, 20, then 30 bytes: the third record reaches 25.
        assert_eq!(run.next(100, 25).unwrap().len(), 3);
        run.settled();
        assert_eq!(run.next(100, 25).unwrap().len(), 2);
        run.settled();
        assert!(run.next(100, 25).unwrap().is_empty());
        assert_eq!(run.finish().unwrap(), 0);
    }

    #[test]
    fn a_dropped_replay_loses_nothing() {
        let (_dir, letters) = store();
        letters.append("o", &[b"a", b"b"], "r").unwrap();
        {
            let mut run = letters.begin_replay("o").unwrap().unwrap();
            run.next(1, usize::MAX).unwrap();
            // Dropped with "a" in flight, as a panic would.
        }
        assert_eq!(records(&letters.page("o", 0, 10).unwrap()), ["a", "b"]);
        assert!(letters.begin_replay("o").unwrap().is_some());
    }

    #[test]
    fn after_a_crash_the_moved_file_comes_back_and_a_torn_line_is_ended() {
        let (dir, letters) = store();
        letters.append("o", &[b"a"], "r").unwrap();
        let run = letters.begin_replay("o").unwrap().unwrap();
        // A crash: the process ends without putting anything back.
        std::mem::forget(run);
        let main = dir.path().join("deadletter/o.ndjson");
        std::fs::write(&main, "{\"at\":\"t\",\"reason\":\"r\",\"rec").unwrap();

        let restarted = DeadLetters::new(dir.path().join("deadletter"));
        restarted.append("o", &[b"b"], "r").unwrap();
        let page = restarted.page("o", 0, 10).unwrap();
        assert_eq!(page.held, 3);
        assert!(page.letters[0].unreadable, "{page:?}");
        assert_eq!(records(&page)[1..], ["a", "b"]);
        assert!(!dir.path().join("deadletter/o.replaying.ndjson").exists());

        // A replay keeps the unreadable line as it is.
        let mut run = restarted.begin_replay("o").unwrap().unwrap();
        let sent = run.next(10, usize::MAX).unwrap();
        assert_eq!(sent.len(), 2);
        run.settled();
        assert_eq!(run.finish().unwrap(), 1);
        let text = std::fs::read_to_string(&main).unwrap();
        assert_eq!(text, "{\"at\":\"t\",\"reason\":\"r\",\"rec\n");
    }

    #[test]
    fn discard_removes_every_letter() {
        let (dir, letters) = store();
        letters.append("o", &[b"a", b"b"], "r").unwrap();
        assert_eq!(letters.discard("o").unwrap(), 2);
        assert_eq!(letters.held("o").unwrap(), 0);
        assert!(!dir.path().join("deadletter/o.ndjson").exists());
        assert_eq!(letters.discard("o").unwrap(), 0);
        assert!(letters.begin_replay("o").unwrap().is_none());
    }
}
