//! The `file` output: appends one line per event to a file.

use std::path::PathBuf;

use tokio::fs::{File, OpenOptions};
use tokio::io::AsyncWriteExt;

use super::{OutputSpec, Template};
use crate::cache::Cache;
use crate::event::Event;

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

impl FileSink {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileSink {
            path: path.into(),
            file: None,
        }
    }

    async fn open(&mut self) -> Result<&mut File, String> {
        if self.file.is_none() {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .await
                .map_err(|e| format!("cannot open {}: {e}", self.path.display()))?;
            self.file = Some(file);
        }
        // Just set above when it was None.
        self.file.as_mut().ok_or_else(|| "file not open".to_owned())
    }

    /// Opens the file if it is not, so that a bad path shows at start.
    pub async fn check(&mut self) -> Result<(), String> {
        self.open().await.map(|_| ())
    }

    /// Appends `bytes` and waits until they are on disk: a batch is only
    /// acknowledged once it would survive a crash. A write that fails
    /// halfway is cut off again, so a retry never leaves a torn line.
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), String> {
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
            return Err(format!("cannot write to {}: {e}", path.display()));
        }
        Ok(())
    }
}
