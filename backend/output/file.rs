//! The `file` output: appends one line per event to a file.

use std::path::PathBuf;

use futures::future::BoxFuture;
use tokio::fs::{File, OpenOptions};
use tokio::io::AsyncWriteExt;

use super::delivery::DeliveryError;
use super::schema::{Kind, ParamSchema, BUFFER_AGE, BUFFER_SIZE};
use super::sink::{BuildContext, Sink};
use super::{FieldErrors, OutputSpec, ParamType, Template};
use crate::cache::Cache;
use crate::event::Event;

pub static KIND: Kind = Kind::batches(
    "file",
    "Appends events to a file: one JSON object per line, or a line built from a template.",
    PARAMETERS,
    check,
    build,
);

const PARAMETERS: &[ParamSchema] = &[
    ParamSchema {
        name: "path",
        ty: ParamType::String,
        required: true,
        default: None,
        help: "The file to append to; created if missing (its directory must exist).",
        secret: false,
        choices: &[],
        min: None,
    },
    ParamSchema {
        name: "format",
        ty: ParamType::String,
        required: false,
        default: Some("json"),
        help: "`json`: one event per line in its JSON form. `template`: one line per event from `template`.",
        secret: false,
        choices: &["json", "template"],
        min: None,
    },
    ParamSchema {
        name: "template",
        ty: ParamType::String,
        required: false,
        default: None,
        help: "With format `template`: the line, with `{field}` placeholders and cache names such as `{cache.host.name}` and `{cache.service.description}`; `{{` and `}}` are literal braces.",
        secret: false,
        choices: &[],
        min: None,
    },
    BUFFER_SIZE,
    BUFFER_AGE,
];

fn check(spec: &OutputSpec, errors: &mut FieldErrors) {
    let format = spec.parameter("format").map(|p| p.value.as_str());
    let template = spec.parameter("template");
    match (format, template) {
        (Some("template"), None) => {
            errors.add("parameters.template", "is required with format `template`")
        }
        (Some("template"), Some(t)) => {
            if let Err(e) = Template::parse(&t.value) {
                errors.add("parameters.template", e);
            }
        }
        (_, Some(_)) => errors.add("parameters.template", "is only used with format `template`"),
        _ => {}
    }
    if spec
        .parameter("path")
        .is_some_and(|p| p.value.trim().is_empty())
    {
        errors.add("parameters.path", "must not be empty");
    }
}

fn build(spec: &OutputSpec, _: &BuildContext) -> Result<Box<dyn Sink>, String> {
    let path = spec
        .parameter("path")
        .map(|p| p.value.clone())
        .ok_or("a `file` output needs a `path` parameter")?;
    Ok(Box::new(FileOutput {
        format: LineFormat::from_spec(spec)?,
        file: FileSink::new(path),
    }))
}

struct FileOutput {
    format: LineFormat,
    file: FileSink,
}

impl Sink for FileOutput {
    fn encode(&mut self, event: &Event, cache: &Cache, out: &mut Vec<u8>) {
        self.format.encode(event, cache, out);
    }

    fn check(&mut self) -> BoxFuture<'_, Result<(), DeliveryError>> {
        Box::pin(self.file.check())
    }

    fn send<'a>(&'a mut self, batch: &'a [u8]) -> BoxFuture<'a, Result<(), DeliveryError>> {
        Box::pin(self.file.write(batch))
    }
}

/// How an event becomes a line.
pub enum LineFormat {
    Json,
    Template(Template),
}

impl LineFormat {
    pub fn from_spec(spec: &OutputSpec) -> Result<LineFormat, String> {
        match spec.parameter("format").map(|p| p.value.as_str()) {
            None | Some("json") => Ok(LineFormat::Json),
            Some("template") => {
                let text = spec
                    .parameter("template")
                    .map(|p| p.value.as_str())
                    .ok_or("format `template` needs a `template` parameter")?;
                Ok(LineFormat::Template(Template::parse(text)?))
            }
            Some(other) => Err(format!("unknown format `{other}`")),
        }
    }

    /// Appends the event's line, with its line break, to `out`.
    pub fn encode(&self, event: &Event, cache: &Cache, out: &mut Vec<u8>) {
        match self {
            LineFormat::Json => {
                // Writing into a Vec cannot fail.
                let _ = serde_json::to_writer(&mut *out, event);
            }
            LineFormat::Template(template) => {
                let mut line = String::new();
                template.render(event, cache, &mut line);
                out.extend_from_slice(line.as_bytes());
            }
        }
        out.push(b'\n');
    }
}

/// Appends batches to a file, opened on first use and reopened after an
/// error (the operator may have fixed a permission or a full disk).
pub struct FileSink {
    path: PathBuf,
    file: Option<File>,
}

/// A process killed in the middle of a write leaves the last line without
/// its newline. That line was never acknowledged (a batch is acknowledged
/// once wholly on disk), so its events come again: cut it off before
/// appending, or the file would hold a torn line followed by the replay.
async fn cut_torn_tail(file: &File) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let len = file.metadata().await?.len();
    if len == 0 {
        return Ok(());
    }
    let mut reader = file.try_clone().await?;
    let mut end = len;
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let start = end.saturating_sub(chunk.len() as u64);
        let size = (end - start) as usize;
        reader.seek(std::io::SeekFrom::Start(start)).await?;
        reader.read_exact(&mut chunk[..size]).await?;
        if end == len && chunk[size - 1] == b'\n' {
            return Ok(());
        }
        if let Some(at) = chunk[..size].iter().rposition(|b| *b == b'\n') {
            return file.set_len(start + at as u64 + 1).await;
        }
        if start == 0 {
            return file.set_len(0).await;
        }
        end = start;
    }
}

impl FileSink {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileSink {
            path: path.into(),
            file: None,
        }
    }

    async fn open(&mut self) -> Result<&mut File, DeliveryError> {
        if self.file.is_none() {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .read(true)
                .open(&self.path)
                .await
                .map_err(|e| {
                    let message = format!("cannot open {}: {e}", self.path.display());
                    // A missing directory or a denied path waits for an
                    // operator; anything else (a full table of open files)
                    // may pass.
                    match e.kind() {
                        std::io::ErrorKind::NotFound
                        | std::io::ErrorKind::PermissionDenied
                        | std::io::ErrorKind::IsADirectory
                        | std::io::ErrorKind::NotADirectory
                        | std::io::ErrorKind::ReadOnlyFilesystem => {
                            DeliveryError::Misconfigured(message)
                        }
                        _ => DeliveryError::Unavailable(message),
                    }
                })?;
            cut_torn_tail(&file).await.map_err(|e| {
                DeliveryError::Unavailable(format!("cannot repair {}: {e}", self.path.display()))
            })?;
            self.file = Some(file);
        }
        // Just set above when it was None.
        self.file
            .as_mut()
            .ok_or_else(|| DeliveryError::Unavailable("file not open".to_owned()))
    }

    /// Opens the file if it is not, so that a bad path shows at start.
    pub async fn check(&mut self) -> Result<(), DeliveryError> {
        self.open().await.map(|_| ())
    }

    /// Appends `bytes` and waits until they are on disk: a batch is only
    /// acknowledged once it would survive a crash. A write that fails
    /// halfway is cut off again, so a retry never leaves a torn line.
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), DeliveryError> {
        let path = self.path.clone();
        let file = self.open().await?;
        let before = file.metadata().await.map(|m| m.len()).ok();
        let result = async {
            file.write_all(bytes).await?;
            file.flush().await?;
            file.sync_data().await
        }
        .await;
        if let Err(e) = result {
            if let Some(len) = before {
                let _ = file.set_len(len).await;
            }
            self.file = None;
            return Err(DeliveryError::Unavailable(format!(
                "cannot write to {}: {e}",
                path.display()
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod torn_tail_tests {
    use super::*;

    #[tokio::test]
    async fn a_line_cut_by_a_crash_is_removed_before_appending() {
        let dir = tempfile::tempdir().unwrap();
        for (before, after) in [
            ("a\nb\npart", "a\nb\nnew\n"),
            ("a\n", "a\nnew\n"),
            ("only part", "new\n"),
            ("", "new\n"),
        ] {
            let path = dir.path().join("out.log");
            std::fs::write(&path, before).unwrap();
            let mut sink = FileSink::new(&path);
            sink.write(b"new\n").await.unwrap();
            assert_eq!(std::fs::read_to_string(&path).unwrap(), after, "{before:?}");
        }
        // Longer than one read chunk, the cut still finds its line.
        let path = dir.path().join("long.log");
        let long = format!("first\n{}", "x".repeat(200_000));
        std::fs::write(&path, long).unwrap();
        FileSink::new(&path).write(b"new\n").await.unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "first\nnew\n");
    }
}
