//! What opening the journal does with what it finds on disk, and the
//! `journal check` report for operators.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::cursors::{self, CursorState};
use super::segment::{self, Scan};
use super::{JournalConfig, SegmentMeta, Seq};

pub const QUARANTINE: &str = "quarantine";

/// What recovery found and did. Shown by `journal check`/`repair`, logged at
/// start and served by `GET /api/v1/journal`.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct RecoveryReport {
    pub segments: usize,
    pub events: u64,
    /// Bytes of an incomplete last record cut off (a write torn by a crash).
    pub torn_bytes_cut: u64,
    /// Events known lost: in corrupt records, in missing segments.
    pub events_lost: u64,
    /// Each problem, in words, with what it cost.
    pub problems: Vec<String>,
    /// Files moved to the quarantine folder.
    pub quarantined: Vec<PathBuf>,
}

impl RecoveryReport {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

pub(super) struct Recovered {
    pub segments: Vec<SegmentMeta>,
    pub next_seq: Seq,
    pub cursors: HashMap<String, CursorState>,
    /// The cursor file was lost: cursors unknown to it start at the oldest
    /// event held instead of the head.
    pub cursors_lost: bool,
    pub report: RecoveryReport,
}

/// Reads every segment without changing anything.
pub fn check(dir: &Path) -> io::Result<RecoveryReport> {
    Ok(examine(dir, false)?.report)
}

impl std::fmt::Display for RecoveryReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{} segment(s), {} event(s)", self.segments, self.events)?;
        if self.is_clean() {
            return writeln!(f, "no problem found");
        }
        for problem in &self.problems {
            writeln!(f, "- {problem}")?;
        }
        writeln!(f, "events lost: {}", self.events_lost)?;
        if self.torn_bytes_cut > 0 {
            writeln!(f, "torn bytes cut: {}", self.torn_bytes_cut)?;
        }
        for file in &self.quarantined {
            writeln!(f, "quarantined: {}", file.display())?;
        }
        Ok(())
    }
}

pub(super) fn recover(config: &JournalConfig) -> io::Result<Recovered> {
    std::fs::create_dir_all(&config.dir).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot create {}: {e}", config.dir.display()),
        )
    })?;
    let mut recovered = examine(&config.dir, true)?;
    for problem in &recovered.report.problems {
        tracing::warn!("journal recovery: {problem}");
    }
    // Cursors can never be ahead of what the journal holds: what they had
    // acknowledged past the recovered head was never acknowledged to a
    // producer under a durable policy, and will be sent again.
    let head = recovered.next_seq - 1;
    for cursor in recovered.cursors.values_mut() {
        cursor.acked = cursor.acked.min(head);
        cursor.next_read = cursor.acked + 1;
    }
    Ok(recovered)
}

fn examine(dir: &Path, repair: bool) -> io::Result<Recovered> {
    let mut report = RecoveryReport::default();
    let quarantine = dir.join(QUARANTINE);
    let mut missing_cursor_file = false;
    let snapshot = match cursors::load(dir) {
        Ok(Some(snapshot)) => snapshot,
        Ok(None) => {
            missing_cursor_file = true;
            cursors::Snapshot::default()
        }
        Err(problem) => {
            report.problems.push(format!(
                "{problem}; outputs restart from the oldest event held (some may be delivered again)"
            ));
            if repair {
                std::fs::create_dir_all(&quarantine)?;
                let target = quarantine.join(cursors::FILE);
                std::fs::rename(dir.join(cursors::FILE), &target)?;
                report.quarantined.push(target);
            }
            cursors::Snapshot {
                head: 0,
                cursors: HashMap::new(),
            }
        }
    };
    let lost_cursor_file = !report.problems.is_empty();
    let files = if dir.exists() {
        segment::list(dir)?
    } else {
        Vec::new()
    };
    let count = files.len();
    let mut segments: Vec<SegmentMeta> = Vec::new();
    let mut lost_ranges: Vec<(Seq, Seq)> = Vec::new();
    for (index, (name_seq, path)) in files.into_iter().enumerate() {
        let last_file = index + 1 == count;
        let scan = segment::scan(&path)?;
        if scan.records.is_empty() && !last_file {
            // An empty segment that is not the active one holds nothing:
            // a crash right after a rotation.
            report
                .problems
                .push(format!("{} is empty; removed", path.display()));
            if repair {
                std::fs::remove_file(&path)?;
            }
            continue;
        }
        describe_damage(&path, &scan, &mut report, &mut lost_ranges, last_file);
        let bytes = if repair && !scan.is_clean() {
            let len = segment::repair(&path, &scan, &quarantine)?;
            if !scan.bad_ranges.is_empty() {
                let name = path
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned();
                report.quarantined.push(quarantine.join(name));
            }
            len
        } else {
            scan.records.iter().map(|r| u64::from(r.2)).sum()
        };
        report.torn_bytes_cut += scan.torn_tail.unwrap_or(0);
        let first_seq = scan.records.first().map_or(name_seq, |r| r.0);
        // A gap between segments is a segment that went missing.
        if let Some(previous) = segments.last() {
            if first_seq > previous.last_seq + 1 {
                lost_ranges.push((previous.last_seq + 1, first_seq - 1));
                report.problems.push(format!(
                    "events {} to {} are missing (a segment file is gone)",
                    previous.last_seq + 1,
                    first_seq - 1
                ));
            }
        }
        report.events += scan.records.len() as u64;
        segments.push(SegmentMeta {
            first_seq,
            last_seq: scan.last_seq().unwrap_or(first_seq - 1),
            path,
            bytes,
            newest: scan.records.last().map(|r| r.3),
            oldest: scan.records.first().map(|r| r.3),
        });
    }
    report.segments = segments.len();
    let last_record = segments
        .iter()
        .rev()
        .find(|s| s.last_seq >= s.first_seq)
        .map(|s| s.last_seq);
    let next_seq = [
        last_record.map_or(1, |s| s + 1),
        segments.last().map_or(1, |s| s.first_seq),
        snapshot.head + 1,
    ]
    .into_iter()
    .max()
    .unwrap_or(1);
    let mut cursors = snapshot.cursors;
    let oldest = segments
        .iter()
        .find(|s| s.last_seq >= s.first_seq)
        .map(|s| s.first_seq);
    for (name, cursor) in cursors.iter_mut() {
        let mut lost = 0;
        for (from, to) in &lost_ranges {
            if *to > cursor.acked {
                lost += to - (*from).max(cursor.acked + 1) + 1;
            }
        }
        // Events between the cursor and the oldest segment held went with
        // a deleted or missing first segment.
        if let Some(oldest) = oldest {
            if cursor.acked + 1 < oldest {
                let missing = oldest - 1 - cursor.acked;
                if !lost_ranges
                    .iter()
                    .any(|(from, _)| *from <= cursor.acked + 1)
                {
                    lost += missing;
                    report.problems.push(format!(
                        "output `{name}` had not acknowledged events {} to {}, which are no longer held",
                        cursor.acked + 1,
                        oldest - 1
                    ));
                }
            }
        }
        if lost > 0 {
            cursor.lost += lost;
        }
    }
    // Without the positions, outputs start again from the oldest event held:
    // duplicates rather than losses. A journal with events and no cursor file
    // at all lost it too (a new journal has no events).
    if missing_cursor_file && report.events > 0 {
        report.problems.push(format!(
            "{} is missing; outputs restart from the oldest event held (some may be delivered again)",
            dir.join(cursors::FILE).display()
        ));
    }
    let cursors_lost = lost_cursor_file || (missing_cursor_file && report.events > 0);
    report.events_lost = lost_ranges.iter().map(|(from, to)| to - from + 1).sum();
    Ok(Recovered {
        segments,
        next_seq,
        cursors,
        cursors_lost,
        report,
    })
}

fn describe_damage(
    path: &Path,
    scan: &Scan,
    report: &mut RecoveryReport,
    lost_ranges: &mut Vec<(Seq, Seq)>,
    last_file: bool,
) {
    if let Some(torn) = scan.torn_tail {
        report.problems.push(format!(
            "{}: an incomplete last record ({torn} bytes) was cut{}",
            path.display(),
            if last_file {
                " (a write interrupted by a crash)"
            } else {
                ""
            }
        ));
    }
    for (from, to, why) in &scan.bad_ranges {
        // The events in a bad range are those between the valid records
        // around it: sequence numbers are contiguous.
        let before = scan.records.iter().rev().find(|r| r.1 < *from).map(|r| r.0);
        let after = scan.records.iter().find(|r| r.1 >= *to).map(|r| r.0);
        let lost = match (before, after) {
            (Some(b), Some(a)) if a > b + 1 => Some((b + 1, a - 1)),
            (None, Some(a)) => segment::first_seq_of(path)
                .filter(|f| *f < a)
                .map(|f| (f, a - 1)),
            _ => None,
        };
        let what = match lost {
            Some((first, last)) => {
                lost_ranges.push((first, last));
                format!("events {first} to {last} lost")
            }
            None => "the events it held could not be numbered".to_owned(),
        };
        report.problems.push(format!(
            "{}: bytes {from} to {to} are corrupt ({why}); {what}; the original is in quarantine",
            path.display()
        ));
    }
}
