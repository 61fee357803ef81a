//! The script files of the script directories, as the form's upload and
//! the scripts API manage them: listed from every directory, written and
//! removed only in the first one, under plain `name.lua` names.
//!
//! A name never holds a directory part, so nothing is written outside the
//! directory; a write never goes through a symbolic link (an upload does
//! not replace anything, a replacement renames a new file over a regular
//! one and refuses links), so a link in the directory cannot make
//! brokerstream overwrite a file elsewhere.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use super::LuaSettings;
use crate::output::OutputSpec;

/// Largest script accepted, by upload or through the API.
pub const MAX_SCRIPT_BYTES: usize = 1024 * 1024;
const MAX_NAME_LEN: usize = 100;

/// A plain script name: `something.lua`, letters, digits, `-`, `_`, `.`,
/// not starting with a dot. So no `/`, `\`, NUL, `..` or hidden file.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the script has no name".into());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "a script name has at most {MAX_NAME_LEN} characters"
        ));
    }
    if name.starts_with('.') {
        return Err("a script name must not start with a dot".into());
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(
            "a script name may hold only letters, digits, '-', '_' and '.' (no directory)".into(),
        );
    }
    if !name.ends_with(".lua") || name.len() <= ".lua".len() {
        return Err("a script name must end in .lua".into());
    }
    Ok(())
}

/// A script that an output's `path` can name.
#[derive(Clone, Debug, PartialEq)]
pub struct ScriptFile {
    pub name: String,
    /// What an output's `path` takes: the name in the first directory, the
    /// full path in the others.
    pub path: String,
    pub dir: PathBuf,
    pub size: u64,
    pub modified: Option<OffsetDateTime>,
}

/// The `.lua` files of every script directory that an output could run
/// (a link leading outside the directories is left out), sorted by
/// directory then name.
pub fn list(settings: &LuaSettings) -> Vec<ScriptFile> {
    let mut found = Vec::new();
    for (i, dir) in settings.script_dirs.iter().enumerate() {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut here = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".lua") || name.starts_with('.') {
                continue;
            }
            let full = dir.join(&name);
            let path = if i == 0 {
                name.clone()
            } else {
                full.display().to_string()
            };
            let Ok(resolved) = settings.resolve_script(&path) else {
                continue;
            };
            let Ok(meta) = std::fs::metadata(&resolved) else {
                continue;
            };
            here.push(ScriptFile {
                name,
                path,
                dir: dir.clone(),
                size: meta.len(),
                modified: meta.modified().ok().map(OffsetDateTime::from),
            });
        }
        here.sort_by(|a, b| a.name.cmp(&b.name));
        found.extend(here);
    }
    found
}

/// Why a script could not be written or removed.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum ScriptError {
    #[error("{0}")]
    BadName(String),
    #[error("the script is larger than {} KiB", MAX_SCRIPT_BYTES / 1024)]
    TooLarge,
    #[error("no script directory is configured")]
    NoDirectory,
    #[error("a script named `{0}` exists already")]
    Exists(String),
    /// A link or a directory stands where the script would go.
    #[error("`{0}` in the script directory is not a regular file (a symbolic link or a directory); brokerstream does not replace it")]
    NotAFile(String),
    #[error("no script named `{0}` in {1}")]
    NotFound(String, String),
    /// Lua cannot compile it; `line` is the one Lua's message names.
    #[error("the script does not compile: {message}")]
    Syntax { message: String, line: Option<u32> },
    #[error("{0}")]
    Io(String),
}

/// Compiles `bytes` as the runtime would load script `name` (its `#!`
/// line and BOM skipped, text only under the sandbox), without running
/// any of it: a script that cannot load is refused before it replaces one
/// that can.
pub fn check_syntax(settings: &LuaSettings, name: &str, bytes: &[u8]) -> Result<(), ScriptError> {
    // No library is opened: compiling needs none, and nothing runs.
    let lua = mlua::Lua::new_with(mlua::StdLib::NONE, mlua::LuaOptions::new())
        .map_err(|e| ScriptError::Io(format!("cannot start Lua: {e}")))?;
    let mode = settings.sandbox.then_some(mlua::chunk::ChunkMode::Text);
    match super::loader::load_bytes(&lua, bytes, name, mode, None) {
        Ok(_) => Ok(()),
        Err(message) => Err(ScriptError::Syntax {
            line: error_line(&message, name),
            message,
        }),
    }
}

/// The line of `name.lua:12: unexpected symbol near 'x'`.
fn error_line(message: &str, name: &str) -> Option<u32> {
    let rest = message.strip_prefix(name)?.strip_prefix(':')?;
    let digits = &rest[..rest.find(':')?];
    digits.parse().ok()
}

/// What a write does to a script that exists.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Existing {
    /// Refuse it: a running output may use it (the form's upload).
    Keep,
    /// Replace it, atomically (the API's PUT).
    Replace,
}

/// Where scripts are written: the first directory, created if missing.
fn first_dir(settings: &LuaSettings) -> Result<&Path, ScriptError> {
    let dir = settings
        .script_dirs
        .first()
        .ok_or(ScriptError::NoDirectory)?;
    std::fs::create_dir_all(dir)
        .map_err(|e| ScriptError::Io(format!("cannot create {}: {e}", dir.display())))?;
    Ok(dir)
}

/// Writes `bytes` as script `name` of the first directory: whole or not at
/// all (a temporary file, synced, then moved in place). Returns whether a
/// script was replaced.
pub fn write(
    settings: &LuaSettings,
    name: &str,
    bytes: &[u8],
    existing: Existing,
) -> Result<bool, ScriptError> {
    check_name(name).map_err(ScriptError::BadName)?;
    if bytes.len() > MAX_SCRIPT_BYTES {
        return Err(ScriptError::TooLarge);
    }
    let dir = first_dir(settings)?;
    let target = dir.join(name);
    let replaced = match std::fs::symlink_metadata(&target) {
        Ok(meta) if !meta.file_type().is_file() => {
            return Err(ScriptError::NotAFile(name.to_owned()))
        }
        Ok(_) if existing == Existing::Keep => return Err(ScriptError::Exists(name.to_owned())),
        Ok(_) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => {
            return Err(ScriptError::Io(format!(
                "cannot read {}: {e}",
                target.display()
            )))
        }
    };
    let temporary = dir.join(format!(".{name}.{:016x}.tmp", rand::random::<u64>()));
    let io = |what: &str, e: std::io::Error| {
        ScriptError::Io(format!("cannot {what} {}: {e}", target.display()))
    };
    let written = (|| -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(io("write", e));
    }
    let placed = match existing {
        // A link fails if anything appeared there meanwhile: never clobbers.
        Existing::Keep => std::fs::hard_link(&temporary, &target).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                ScriptError::Exists(name.to_owned())
            } else {
                io("save", e)
            }
        }),
        // A rename replaces a link that appeared meanwhile, never its target.
        Existing::Replace => std::fs::rename(&temporary, &target).map_err(|e| io("save", e)),
    };
    let _ = std::fs::remove_file(&temporary);
    placed?;
    if let Ok(dir) = std::fs::File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(replaced)
}

/// Removes script `name` of the first directory (a link there is removed,
/// never what it leads to).
pub fn remove(settings: &LuaSettings, name: &str) -> Result<(), ScriptError> {
    check_name(name).map_err(ScriptError::BadName)?;
    let dir = settings
        .script_dirs
        .first()
        .ok_or(ScriptError::NoDirectory)?;
    let target = dir.join(name);
    match std::fs::symlink_metadata(&target) {
        Ok(meta) if meta.is_dir() => return Err(ScriptError::NotAFile(name.to_owned())),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ScriptError::NotFound(
                name.to_owned(),
                dir.display().to_string(),
            ))
        }
        Err(e) => {
            return Err(ScriptError::Io(format!(
                "cannot read {}: {e}",
                target.display()
            )))
        }
    }
    std::fs::remove_file(&target)
        .map_err(|e| ScriptError::Io(format!("cannot remove {}: {e}", target.display())))
}

/// Whether `spec` runs script `name` of the first directory: named so, or
/// leading to the same file.
pub fn runs(settings: &LuaSettings, spec: &OutputSpec, name: &str) -> bool {
    let (Some(dir), Some(path)) = (settings.script_dirs.first(), spec.path.as_deref()) else {
        return false;
    };
    if !spec.runs_script() {
        return false;
    }
    let target = dir.join(name);
    let given = Path::new(path);
    let named = if given.is_absolute() {
        given.to_owned()
    } else {
        dir.join(given)
    };
    if named == target {
        return true;
    }
    match (settings.resolve_script(path), target.canonicalize()) {
        (Ok(runs), Ok(file)) => runs == file,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_lua_names_are_taken() {
        for good in ["influx.lua", "a.lua", "my-connector_v2.lua", "x.y.lua"] {
            assert_eq!(check_name(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            ".lua",
            "..",
            "../x.lua",
            "a/b.lua",
            "a\\b.lua",
            ".hidden.lua",
            "nul\0.lua",
            "x.sh",
            "x.lua.bak",
            "a b.lua",
            "é.lua",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_name(&format!("{}.lua", "a".repeat(100))).is_err());
    }

    fn settings(root: &Path) -> LuaSettings {
        LuaSettings {
            script_dirs: vec![root.join("scripts")],
            ..LuaSettings::for_data_dir(root)
        }
    }

    #[test]
    fn writes_are_whole_and_never_go_through_a_link() {
        let root = tempfile::tempdir().unwrap();
        let settings = settings(root.path());
        let dir = root.path().join("scripts");
        assert_eq!(
            write(&settings, "a.lua", b"-- 1", Existing::Keep),
            Ok(false)
        );
        assert_eq!(
            write(&settings, "a.lua", b"-- 2", Existing::Keep),
            Err(ScriptError::Exists("a.lua".into()))
        );
        assert_eq!(
            write(&settings, "a.lua", b"-- 3", Existing::Replace),
            Ok(true)
        );
        assert_eq!(std::fs::read(dir.join("a.lua")).unwrap(), b"-- 3");
        // A link to a file outside: neither written through nor replaced.
        let outside = root.path().join("outside.lua");
        std::fs::write(&outside, "-- outside").unwrap();
        std::os::unix::fs::symlink(&outside, dir.join("link.lua")).unwrap();
        for existing in [Existing::Keep, Existing::Replace] {
            assert_eq!(
                write(&settings, "link.lua", b"-- evil", existing),
                Err(ScriptError::NotAFile("link.lua".into()))
            );
        }
        assert_eq!(std::fs::read(&outside).unwrap(), b"-- outside");
        // No temporary file is left.
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, vec!["a.lua", "link.lua"]);
        // Removing the link leaves what it leads to.
        assert_eq!(remove(&settings, "link.lua"), Ok(()));
        assert!(outside.exists());
        assert!(matches!(
            remove(&settings, "link.lua"),
            Err(ScriptError::NotFound(..))
        ));
        assert_eq!(
            write(
                &settings,
                "big.lua",
                &vec![b' '; MAX_SCRIPT_BYTES + 1],
                Existing::Replace
            ),
            Err(ScriptError::TooLarge)
        );
    }

    #[test]
    fn a_script_that_does_not_compile_is_told_with_its_line() {
        let root = tempfile::tempdir().unwrap();
        let settings = settings(root.path());
        assert_eq!(check_syntax(&settings, "a.lua", b"x = 1\n"), Ok(()));
        // A `#!` line and a BOM are skipped as the loader skips them, and
        // the lines keep their numbers.
        assert_eq!(
            check_syntax(&settings, "a.lua", b"\xEF\xBB\xBF#!/usr/bin/lua\nx = 1\n"),
            Ok(())
        );
        let Err(ScriptError::Syntax { message, line }) =
            check_syntax(&settings, "a.lua", b"#!/usr/bin/lua\nx = 1\nfunction (\n")
        else {
            panic!("a syntax error passed");
        };
        assert_eq!(line, Some(3), "{message}");
        assert!(message.starts_with("a.lua:3:"), "{message}");
        // Defining functions runs nothing.
        assert_eq!(
            check_syntax(&settings, "a.lua", b"os.exit(1)\nerror('x')\n"),
            Ok(())
        );
        assert_eq!(error_line("a.lua:12: near x", "a.lua"), Some(12));
        assert_eq!(error_line("cannot load a.lua: bytecode", "a.lua"), None);
    }

    #[test]
    fn an_output_runs_a_script_by_name_or_by_file() {
        let root = tempfile::tempdir().unwrap();
        let settings = settings(root.path());
        write(&settings, "a.lua", b"", Existing::Keep).unwrap();
        let dir = root.path().join("scripts");
        let spec = |path: &str| OutputSpec {
            kind: "lua".into(),
            path: Some(path.into()),
            ..OutputSpec::blank("o")
        };
        assert!(runs(&settings, &spec("a.lua"), "a.lua"));
        assert!(runs(
            &settings,
            &spec(dir.join("a.lua").to_str().unwrap()),
            "a.lua"
        ));
        assert!(!runs(&settings, &spec("b.lua"), "a.lua"));
        std::os::unix::fs::symlink(dir.join("a.lua"), dir.join("alias.lua")).unwrap();
        assert!(runs(&settings, &spec("alias.lua"), "a.lua"));
        let listed: Vec<String> = list(&settings).into_iter().map(|s| s.name).collect();
        assert_eq!(listed, vec!["a.lua", "alias.lua"]);
    }
}
