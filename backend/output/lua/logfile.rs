//! The files `broker_log:set_parameters(level, path)` writes to, rotated by
//! size.
//!
//! Centreon Broker appends each line to the file and never rotates it; its
//! library warns that "this log file will grow quickly". Here a file is
//! rotated once it would pass [`Rotation::max_bytes`]: `x.log` becomes
//! `x.log.1`, `x.log.1` becomes `x.log.2`, and so on up to
//! [`Rotation::keep`] files, the oldest dropped.
//!
//! Locking rule: every writer of one path in this process goes through the
//! same [`LogFile`], whose mutex is held for the size check, the rotation
//! and the write of one whole line. Several outputs often share a file (two
//! instances of one connector keep its default `logfile`), so without the
//! lock two rotations could race and a line land in a file that is being
//! renamed away. The file is still opened for each line, in append mode, as
//! Centreon does: a `logrotate` that moves the file away is followed at the
//! next line, and a line always goes out in one `write`.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, Weak};

/// When a script's log file is rotated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rotation {
    /// A file is rotated before a line would take it past this size; 0
    /// never rotates (an external `logrotate` then owns the file).
    pub max_bytes: u64,
    /// Rotated files kept beside the current one (`x.log.1` … `x.log.N`).
    pub keep: u32,
}

impl Default for Rotation {
    fn default() -> Self {
        Rotation {
            max_bytes: 20 * 1024 * 1024,
            keep: 5,
        }
    }
}

/// One log file, shared by every script of the process that writes to it.
pub struct LogFile {
    path: PathBuf,
    /// Held while a line is written (and the file rotated before it).
    write: Mutex<Option<Handle>>,
}

/// The open file and what brokerstream knows of it. Centreon opens the
/// file for every line; opening, sizing and closing cost more CPU than
/// the line itself for a library that logs twice per event, so the handle
/// is kept, and given up after [`REOPEN_AFTER`]: a file that logrotate (or
/// an operator) moved or deleted is then created again, as with Centreon,
/// within that time.
struct Handle {
    file: File,
    /// Bytes in the file: its size when opened plus what this process
    /// appended since (every writer of the path in this process shares the
    /// handle).
    size: u64,
    opened: std::time::Instant,
}

const REOPEN_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// The files in use, by path, so that writers of one path share a lock.
static OPEN: LazyLock<Mutex<HashMap<PathBuf, Weak<LogFile>>>> = LazyLock::new(Mutex::default);

impl LogFile {
    /// The shared handle of `path` (made absolute, so that `x.log` and
    /// `./x.log` are one file).
    pub fn open(path: &Path) -> Arc<LogFile> {
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
        let mut open = crate::sync::lock(&OPEN);
        if let Some(file) = open.get(&path).and_then(Weak::upgrade) {
            return file;
        }
        open.retain(|_, file| file.strong_count() > 0);
        let file = Arc::new(LogFile {
            path: path.clone(),
            write: Mutex::new(None),
        });
        open.insert(path, Arc::downgrade(&file));
        file
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `line` (one whole line, newline included), rotating first
    /// when it would take the file past the limit. A missing directory is
    /// created.
    pub fn append(&self, line: &[u8], rotation: Rotation) -> io::Result<()> {
        let mut handle = crate::sync::lock(&self.write);
        if handle
            .as_ref()
            .is_some_and(|h| h.opened.elapsed() >= REOPEN_AFTER)
        {
            *handle = None;
        }
        let mut current = match handle.take() {
            Some(h) => h,
            None => self.open_handle()?,
        };
        // A line longer than the limit still goes out, alone in a file.
        if rotation.max_bytes > 0
            && current.size > 0
            && current.size + line.len() as u64 > rotation.max_bytes
        {
            drop(current);
            self.rotate(rotation.keep)?;
            current = self.open_handle()?;
        }
        current.file.write_all(line)?;
        current.size += line.len() as u64;
        *handle = Some(current);
        Ok(())
    }

    fn open_handle(&self) -> io::Result<Handle> {
        let file = self.open_for_append()?;
        let size = file.metadata()?.len();
        Ok(Handle {
            file,
            size,
            opened: std::time::Instant::now(),
        })
    }

    fn open_for_append(&self) -> io::Result<File> {
        let open = || {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
        };
        match open() {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if let Some(dir) = self.path.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| {
                        io::Error::new(
                            e.kind(),
                            format!("its directory {} cannot be created: {e}", dir.display()),
                        )
                    })?;
                }
                open()
            }
            other => other,
        }
    }

    fn numbered(&self, n: u32) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    /// `x.log.(N-1)` → `x.log.N`, …, `x.log` → `x.log.1`; with nothing to
    /// keep, the file is emptied instead.
    fn rotate(&self, keep: u32) -> io::Result<()> {
        if keep == 0 {
            return File::create(&self.path).map(drop);
        }
        for n in (1..keep).rev() {
            match std::fs::rename(self.numbered(n), self.numbered(n + 1)) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                other => other?,
            }
        }
        std::fs::rename(&self.path, self.numbered(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_in(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .map(|t| t.lines().map(str::to_owned).collect())
            .unwrap_or_default()
    }

    #[test]
    fn files_rotate_by_size_keeping_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let file = LogFile::open(&dir.path().join("x.log"));
        let rotation = Rotation {
            max_bytes: 20,
            keep: 2,
        };
        for i in 0..8 {
            // 10 bytes a line: two lines a file.
            file.append(format!("line {i:03}\n").as_bytes(), rotation)
                .unwrap();
        }
        assert_eq!(lines_in(file.path()), ["line 006", "line 007"]);
        assert_eq!(lines_in(&file.numbered(1)), ["line 004", "line 005"]);
        assert_eq!(lines_in(&file.numbered(2)), ["line 002", "line 003"]);
        assert!(!file.numbered(3).exists());
    }

    #[test]
    fn without_rotation_or_files_to_keep() {
        let dir = tempfile::tempdir().unwrap();
        let file = LogFile::open(&dir.path().join("never.log"));
        let never = Rotation {
            max_bytes: 0,
            keep: 3,
        };
        for _ in 0..100 {
            file.append(b"0123456789\n", never).unwrap();
        }
        assert_eq!(lines_in(file.path()).len(), 100);
        let emptied = Rotation {
            max_bytes: 30,
            keep: 0,
        };
        file.append(b"after\n", emptied).unwrap();
        assert_eq!(lines_in(file.path()), ["after"]);
        assert!(!file.numbered(1).exists());
    }

    #[test]
    fn a_file_moved_or_deleted_by_logrotate_is_created_again() {
        let dir = tempfile::tempdir().unwrap();
        let file = LogFile::open(&dir.path().join("rotated.log"));
        file.append(b"before\n", Rotation::default()).unwrap();
        std::fs::rename(file.path(), dir.path().join("rotated.log.1")).unwrap();
        // Within the reopen delay, lines still reach the moved file: none
        // is lost.
        file.append(b"moved\n", Rotation::default()).unwrap();
        std::thread::sleep(REOPEN_AFTER + std::time::Duration::from_millis(50));
        file.append(b"after\n", Rotation::default()).unwrap();
        assert_eq!(
            lines_in(&dir.path().join("rotated.log.1")),
            ["before", "moved"]
        );
        assert_eq!(lines_in(file.path()), ["after"]);
        std::fs::remove_file(file.path()).unwrap();
        std::thread::sleep(REOPEN_AFTER + std::time::Duration::from_millis(50));
        file.append(b"again\n", Rotation::default()).unwrap();
        assert_eq!(lines_in(file.path()), ["again"]);
    }

    #[test]
    fn one_path_is_one_shared_file() {
        let dir = tempfile::tempdir().unwrap();
        let a = LogFile::open(&dir.path().join("same.log"));
        let b = LogFile::open(&dir.path().join("./same.log"));
        assert!(Arc::ptr_eq(&a, &b));
    }

    #[test]
    fn a_missing_directory_is_created_and_an_impossible_one_reported() {
        let dir = tempfile::tempdir().unwrap();
        let file = LogFile::open(&dir.path().join("centreon-broker/deep/x.log"));
        file.append(b"here\n", Rotation::default()).unwrap();
        assert_eq!(lines_in(file.path()), ["here"]);
        std::fs::write(dir.path().join("a-file"), "").unwrap();
        let file = LogFile::open(&dir.path().join("a-file/x.log"));
        assert!(file.append(b"lost?\n", Rotation::default()).is_err());
    }
}
