//! Segment files: naming, scanning, and the repair of what a crash or a bad
//! disk left behind.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::record::{decode_record, RecordError, HEADER_LEN};
use super::Seq;

pub const EXTENSION: &str = "seg";

pub fn file_name(first_seq: Seq) -> String {
    format!("{first_seq:020}.{EXTENSION}")
}

/// The first sequence number a segment file's name announces.
pub fn first_seq_of(path: &Path) -> Option<Seq> {
    if path.extension()? != EXTENSION {
        return None;
    }
    path.file_stem()?.to_str()?.parse().ok()
}

/// Segment files of a directory, oldest first.
pub fn list(dir: &Path) -> io::Result<Vec<(Seq, PathBuf)>> {
    let mut segments = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if let Some(first) = first_seq_of(&path) {
            segments.push((first, path));
        }
    }
    segments.sort();
    Ok(segments)
}

/// What a scan of one segment found.
#[derive(Debug, Default)]
pub struct Scan {
    /// Valid records, in file order: (seq, offset, length, received_at).
    pub records: Vec<(Seq, u64, u32, SystemTime)>,
    /// Byte ranges that held no valid record, with why.
    pub bad_ranges: Vec<(u64, u64, String)>,
    /// Bytes at the end that form an incomplete record (a torn write).
    pub torn_tail: Option<u64>,
    pub file_len: u64,
}

impl Scan {
    pub fn last_seq(&self) -> Option<Seq> {
        self.records.last().map(|r| r.0)
    }
    pub fn is_clean(&self) -> bool {
        self.bad_ranges.is_empty() && self.torn_tail.is_none()
    }
}

/// Reads a whole segment, checking every record. After a bad record it
/// looks for the next valid one (a record whose checksum holds and whose
/// sequence number follows), so one flipped bit costs the records it hit,
/// not the rest of the segment.
pub fn scan(path: &Path) -> io::Result<Scan> {
    let bytes = fs::read(path)?;
    let mut scan = Scan {
        file_len: bytes.len() as u64,
        ..Scan::default()
    };
    let mut offset = 0usize;
    let mut last_seq: Option<Seq> = None;
    while offset < bytes.len() {
        match decode_record(&bytes[offset..]) {
            Ok(raw) if last_seq.is_none_or(|s| raw.seq > s) => {
                scan.records
                    .push((raw.seq, offset as u64, raw.len as u32, raw.received_at));
                last_seq = Some(raw.seq);
                offset += raw.len;
            }
            Ok(_) => {
                let end = resync(&bytes, offset + 1, last_seq).unwrap_or(bytes.len());
                scan.bad_ranges
                    .push((offset as u64, end as u64, "sequence goes backwards".into()));
                offset = end;
            }
            Err(RecordError::Truncated) if resync(&bytes, offset + 1, last_seq).is_none() => {
                scan.torn_tail = Some((bytes.len() - offset) as u64);
                break;
            }
            Err(error) => {
                let end = resync(&bytes, offset + 1, last_seq).unwrap_or(bytes.len());
                scan.bad_ranges
                    .push((offset as u64, end as u64, error.to_string()));
                offset = end;
            }
        }
    }
    Ok(scan)
}

fn resync(bytes: &[u8], from: usize, last_seq: Option<Seq>) -> Option<usize> {
    (from..bytes.len().saturating_sub(HEADER_LEN - 1)).find(|&at| {
        decode_record(&bytes[at..]).is_ok_and(|raw| last_seq.is_none_or(|s| raw.seq > s))
    })
}

/// Rewrites a segment with only its valid records (the original goes to
/// quarantine first), or cuts a torn tail. Returns the new length.
pub fn repair(path: &Path, scan: &Scan, quarantine: &Path) -> io::Result<u64> {
    if scan.bad_ranges.is_empty() {
        if let Some(torn) = scan.torn_tail {
            let len = scan.file_len - torn;
            let file = fs::OpenOptions::new().write(true).open(path)?;
            file.set_len(len)?;
            file.sync_all()?;
            return Ok(len);
        }
        return Ok(scan.file_len);
    }
    let bytes = fs::read(path)?;
    fs::create_dir_all(quarantine)?;
    let name = path
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let stamp = SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    fs::copy(path, quarantine.join(format!("{name}.{stamp}")))?;
    let mut good = Vec::with_capacity(bytes.len());
    for (_, offset, len, _) in &scan.records {
        let start = *offset as usize;
        good.extend_from_slice(&bytes[start..start + *len as usize]);
    }
    let tmp = path.with_extension("repair");
    fs::write(&tmp, &good)?;
    fs::File::open(&tmp)?.sync_all()?;
    fs::rename(&tmp, path)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))?;
    Ok(good.len() as u64)
}

/// Makes a rename or a new file in `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}
