//! `brokerstream backup` and `brokerstream restore`: a copy of a data
//! directory that a service can be started on, taken while the service
//! runs.
//!
//! The service keeps writing while a backup is taken, so each part is
//! copied in the way that keeps it whole: the database through SQLite's
//! `VACUUM INTO` (one read transaction: a consistent snapshot, whatever
//! the service commits meanwhile); the files the service replaces by a
//! rename (`secret.key`, `journal/cursors.json`, `cache.json`) by reading
//! them once; journal segments, which are append-only, by copying them,
//! a record torn at the end of the last one being cut when the restored
//! journal opens. Segments are copied before the cursors: a cursor is then
//! never behind a segment that retention deleted meanwhile (that would
//! lose events it had not acknowledged), only possibly ahead of the last
//! copied event, which the journal's recovery handles.
//!
//! The manifest is written last: a directory without one is a backup that
//! did not finish, and `restore` refuses it.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::Connection;

use crate::journal;
use crate::store::{self, secrets::KEY_FILE, DATABASE_FILE};

pub const MANIFEST_FILE: &str = "brokerstream-backup.json";
const FORMAT: u32 = 1;
const JOURNAL_DIR: &str = "journal";
const SCRIPTS_DIR: &str = "scripts";

/// What a backup holds, and what it was taken from.
#[derive(Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// The brokerstream that took it.
    pub version: String,
    pub created_at: String,
    pub data_dir: PathBuf,
    /// The schema migrations applied to the database copied.
    pub migrations: Vec<i64>,
    /// The journal's segments are in it, not only its cursors.
    pub with_journal: bool,
    /// Every file, relative to the backup directory.
    pub files: Vec<PathBuf>,
}

/// A directory that must end up holding only what is copied into it:
/// created (with its parents) when missing, refused when it holds
/// anything. Nothing is ever overwritten.
fn prepare_empty_dir(dir: &Path, what: &str, hint: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                anyhow::bail!("{what} {} is not empty: {hint}", dir.display());
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {what} {}", dir.display()))?;
        }
        Err(e) => anyhow::bail!("cannot use {what} {}: {e}", dir.display()),
    }
    // It holds the key of every stored password.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot make {what} {} private", dir.display()))?;
    Ok(())
}

/// Copies `from` to `to`, creating `to`'s directory. `Ok(false)` when
/// `from` does not exist (it was removed meanwhile, or never was).
fn copy_file(from: &Path, to: &Path) -> anyhow::Result<bool> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    match std::fs::copy(from, to) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !from.exists() => Ok(false),
        Err(e) => {
            Err(e).with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))
        }
    }
}

/// Every regular file under `dir`, relative to `dir`, symbolic links left
/// out (what they point to is not the data directory's).
fn files_under(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        let entries = match std::fs::read_dir(dir.join(&relative)) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
        };
        for entry in entries {
            let entry = entry?;
            let kind = entry.file_type()?;
            let path = relative.join(entry.file_name());
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Takes a backup of `data_dir` into `target`, which must be missing or
/// empty. The service may be running.
pub async fn backup(
    data_dir: &Path,
    target: &Path,
    with_journal: bool,
) -> anyhow::Result<Manifest> {
    let database = data_dir.join(DATABASE_FILE);
    anyhow::ensure!(
        database.is_file(),
        "no database in {} ({DATABASE_FILE}): is it the service's data directory (--data-dir, \
         or data_dir in --config)?",
        data_dir.display()
    );
    prepare_empty_dir(
        target,
        "backup directory",
        "give a new or empty directory (a backup never overwrites another)",
    )?;
    let mut files = Vec::new();

    let copy = target.join(DATABASE_FILE);
    let copy_text = copy
        .to_str()
        .with_context(|| format!("{} is not UTF-8, which SQLite needs", copy.display()))?;
    let options = SqliteConnectOptions::from_str("sqlite:")?
        .filename(&database)
        .create_if_missing(false)
        .busy_timeout(std::time::Duration::from_secs(5));
    let mut connection = sqlx::SqliteConnection::connect_with(&options)
        .await
        .with_context(|| format!("cannot open database {}", database.display()))?;
    let migrations = store::applied_migrations(&mut connection)
        .await
        .with_context(|| format!("cannot read the schema version of {}", database.display()))?;
    sqlx::query("VACUUM INTO ?")
        .bind(copy_text)
        .execute(&mut connection)
        .await
        .with_context(|| {
            format!(
                "cannot copy database {} to {}",
                database.display(),
                copy.display()
            )
        })?;
    connection.close().await?;
    files.push(PathBuf::from(DATABASE_FILE));

    // Without it, no password parameter can be decrypted.
    anyhow::ensure!(
        copy_file(&data_dir.join(KEY_FILE), &target.join(KEY_FILE))?,
        "no secret key in {} ({KEY_FILE}): the service creates it at its first start",
        data_dir.display()
    );
    files.push(PathBuf::from(KEY_FILE));

    let journal_dir = data_dir.join(JOURNAL_DIR);
    if with_journal {
        let segments = match journal::segment_files(&journal_dir) {
            Ok(segments) => segments,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                        "cannot list the journal's segments in {}",
                        journal_dir.display()
                    )
                })
            }
        };
        for segment in segments {
            let Some(name) = segment.file_name() else {
                continue;
            };
            let relative = Path::new(JOURNAL_DIR).join(name);
            // Retention may delete a segment once listed: every cursor was
            // past it, or it was lost to the limits anyway.
            if copy_file(&segment, &target.join(&relative))? {
                files.push(relative);
            }
        }
    }
    let cursors = Path::new(JOURNAL_DIR).join(journal::CURSORS_FILE);
    if copy_file(&data_dir.join(&cursors), &target.join(&cursors))? {
        files.push(cursors);
    }
    let cache = PathBuf::from(crate::cache::SNAPSHOT_FILE);
    if copy_file(&data_dir.join(&cache), &target.join(&cache))? {
        files.push(cache);
    }
    // Uploaded scripts: the `lua` outputs that run them name them by path.
    let scripts = data_dir.join(SCRIPTS_DIR);
    for relative in files_under(&scripts)? {
        let relative = Path::new(SCRIPTS_DIR).join(relative);
        if copy_file(&data_dir.join(&relative), &target.join(&relative))? {
            files.push(relative);
        }
    }

    let manifest = Manifest {
        format: FORMAT,
        version: env!("CARGO_PKG_VERSION").to_owned(),
        created_at: store::now_text(),
        data_dir: data_dir.to_owned(),
        migrations,
        with_journal,
        files,
    };
    // The files on disk before the manifest that vouches for them.
    sync_to_disk(target, &manifest.files)?;
    let text = serde_json::to_vec_pretty(&manifest)?;
    let path = target.join(MANIFEST_FILE);
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    sync_to_disk(target, &[PathBuf::from(MANIFEST_FILE)])?;
    Ok(manifest)
}

/// Flushes `files` under `dir`, and the directories holding them, to disk.
fn sync_to_disk(dir: &Path, files: &[PathBuf]) -> anyhow::Result<()> {
    let mut dirs = std::collections::BTreeSet::new();
    for relative in files {
        let path = dir.join(relative);
        if let Some(parent) = path.parent() {
            dirs.insert(parent.to_owned());
        }
        dirs.insert(path);
    }
    for path in dirs {
        std::fs::File::open(&path)
            .and_then(|f| f.sync_all())
            .with_context(|| format!("cannot write {} to disk", path.display()))?;
    }
    Ok(())
}

/// Reads a backup's manifest, refusing what is not a finished backup.
pub fn read_manifest(backup: &Path) -> anyhow::Result<Manifest> {
    let path = backup.join(MANIFEST_FILE);
    let text = std::fs::read(&path).with_context(|| {
        format!(
            "{} is not a finished brokerstream backup: cannot read {}",
            backup.display(),
            path.display()
        )
    })?;
    let manifest: Manifest =
        serde_json::from_slice(&text).with_context(|| format!("{} is corrupt", path.display()))?;
    anyhow::ensure!(
        manifest.format == FORMAT,
        "{}: backup format {} is not the one this brokerstream reads ({FORMAT})",
        path.display(),
        manifest.format
    );
    for relative in &manifest.files {
        anyhow::ensure!(
            relative.is_relative()
                && relative
                    .components()
                    .all(|c| matches!(c, std::path::Component::Normal(_))),
            "{}: `{}` is not a path inside the backup",
            path.display(),
            relative.display()
        );
    }
    Ok(manifest)
}

/// Copies a backup into `data_dir`, which must be missing or empty: a
/// restore never mixes a backup with what a directory held.
pub fn restore(backup: &Path, data_dir: &Path) -> anyhow::Result<Manifest> {
    let manifest = read_manifest(backup)?;
    store::check_no_unknown_migrations(&backup.join(DATABASE_FILE), &manifest.migrations)?;
    for relative in &manifest.files {
        let path = backup.join(relative);
        anyhow::ensure!(
            path.is_file(),
            "the backup {} is incomplete: {} is missing",
            backup.display(),
            path.display()
        );
    }
    prepare_empty_dir(
        data_dir,
        "data directory",
        "restore into a new or empty directory (move the old one aside first)",
    )?;
    for relative in &manifest.files {
        anyhow::ensure!(
            copy_file(&backup.join(relative), &data_dir.join(relative))?,
            "{} vanished during the restore",
            backup.join(relative).display()
        );
    }
    sync_to_disk(data_dir, &manifest.files)?;
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_naming_a_path_outside_the_backup_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["../secret.key", "/etc/passwd"] {
            let manifest = Manifest {
                format: FORMAT,
                version: "0".into(),
                created_at: String::new(),
                data_dir: PathBuf::new(),
                migrations: Vec::new(),
                with_journal: false,
                files: vec![PathBuf::from(bad)],
            };
            std::fs::write(
                dir.path().join(MANIFEST_FILE),
                serde_json::to_vec(&manifest).unwrap(),
            )
            .unwrap();
            let error = read_manifest(dir.path()).unwrap_err().to_string();
            assert!(
                error.contains("not a path inside the backup"),
                "{bad}: {error}"
            );
        }
    }
}
