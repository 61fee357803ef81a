//! Persisted cursor positions: `cursors.json` in the journal directory,
//! replaced atomically (write, fsync, rename, fsync the directory).

use std::collections::HashMap;
use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{segment, Seq};

pub const FILE: &str = "cursors.json";

#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct CursorState {
    /// Every event up to and including this one is acknowledged.
    pub acked: Seq,
    /// Events deleted before this cursor acknowledged them.
    #[serde(default)]
    pub lost: u64,
    /// The next event handed out; not persisted (a restart redelivers
    /// everything not acknowledged).
    #[serde(skip)]
    pub next_read: Seq,
}

impl CursorState {
    pub fn at(acked: Seq) -> Self {
        CursorState {
            acked,
            lost: 0,
            next_read: acked + 1,
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Snapshot {
    /// The last sequence number handed out, so that numbering goes on
    /// after every segment was deleted.
    pub head: Seq,
    pub cursors: HashMap<String, CursorState>,
}

pub fn save(dir: &Path, snapshot: &Snapshot) -> io::Result<()> {
    let path = dir.join(FILE);
    let tmp = dir.join(format!("{FILE}.tmp"));
    let text = serde_json::to_vec_pretty(snapshot).map_err(io::Error::other)?;
    std::fs::write(&tmp, text)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    segment::sync_dir(dir)
}

/// Reads the snapshot; `Ok(None)` when there is none yet, `Err` with the
/// reason when it is unreadable.
pub fn load(dir: &Path) -> Result<Option<Snapshot>, String> {
    let path = dir.join(FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let mut snapshot: Snapshot = serde_json::from_slice(&bytes)
        .map_err(|e| format!("{} is corrupt: {e}", path.display()))?;
    for cursor in snapshot.cursors.values_mut() {
        cursor.next_read = cursor.acked + 1;
    }
    Ok(Some(snapshot))
}
