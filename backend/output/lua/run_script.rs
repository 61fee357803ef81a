//! `brokerstream run-script`: one script against events from an NDJSON file
//! or the simulator, through the same worker a `lua` output runs (its
//! thread, cursor, filter/write/flush timing and acknowledgements), printing
//! what the script logged and what each call returned.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use tokio::sync::mpsc;

use super::sdk::{LogSink, Severity};
use super::LuaSettings;
use crate::cache::Cache;
use crate::event::Event;
use crate::ingest::{ndjson, simulator};
use crate::journal::{FsyncPolicy, Journal, JournalConfig, StartAt};
use crate::output::command::Command;
use crate::output::status::{OutputState, StatusWriter};
use crate::output::{OutputSpec, ParamType, Parameter};

/// Where the events come from.
pub enum Source {
    File(PathBuf),
    Simulate(usize),
    /// Events already chosen (the form's Test takes recent ones from the
    /// journal), with the cache that knows their names; the run only reads
    /// that cache.
    Events(Vec<Event>, Arc<Cache>),
}

/// `NAME=TYPE:VALUE`, the type one of `string`, `number`, `password`;
/// `NAME=VALUE` is a string.
pub fn parse_param(text: &str) -> anyhow::Result<Parameter> {
    let (name, rest) = text
        .split_once('=')
        .with_context(|| format!("--param {text:?}: expected NAME=TYPE:VALUE"))?;
    let (ty, value) = match rest.split_once(':') {
        Some((ty, value)) => match ParamType::parse(ty) {
            Some(ty) => (ty, value),
            None => (ParamType::String, rest),
        },
        None => (ParamType::String, rest),
    };
    if name.is_empty() {
        bail!("--param {text:?}: the name is empty");
    }
    Ok(Parameter {
        name: name.to_owned(),
        ty,
        value: value.to_owned(),
    })
}

fn load_events(source: Source) -> anyhow::Result<(Vec<Event>, Option<Arc<Cache>>)> {
    let events = match source {
        Source::File(path) => {
            let bytes =
                std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
            ndjson::parse(&bytes).map_err(|errors| {
                let lines: Vec<String> = errors
                    .iter()
                    .map(|e| format!("line {}: {}", e.line, e.message))
                    .collect();
                anyhow::anyhow!("{}: invalid events\n{}", path.display(), lines.join("\n"))
            })?
        }
        Source::Simulate(n) => {
            let mut events = simulator::startup_events();
            let mut checks = simulator::Checks::default();
            while events.len() < n {
                events.extend(checks.next_check());
            }
            events.truncate(n);
            events
        }
        Source::Events(events, cache) => return Ok((events, Some(cache))),
    };
    Ok((events, None))
}

/// Runs the script and prints to `out`; the summary says how many events
/// were acknowledged. The cache starts from `data_dir`'s snapshot when
/// there is one, so names known to the service are known here.
pub fn run(
    script: &Path,
    parameters: Vec<Parameter>,
    source: Source,
    settings: LuaSettings,
    data_dir: Option<&Path>,
) -> anyhow::Result<()> {
    let stdout = Mutex::new(std::io::stdout());
    let print: Printer = Arc::new(move |line: &str| {
        let mut out = crate::sync::lock(&stdout);
        let _ = writeln!(out, "{line}");
    });
    run_with(script, parameters, source, settings, data_dir, print)
}

/// Where [`run_with`] writes its lines.
pub type Printer = Arc<dyn Fn(&str) + Send + Sync>;

/// [`run`], giving each line to `print` instead of stdout (the web form's
/// Test button shows them in the page). Blocks: it runs its own runtime.
pub fn run_with(
    script: &Path,
    parameters: Vec<Parameter>,
    source: Source,
    mut settings: LuaSettings,
    data_dir: Option<&Path>,
    print: Printer,
) -> anyhow::Result<()> {
    let script = script
        .canonicalize()
        .with_context(|| format!("cannot open {}", script.display()))?;
    // The operator names the script: its own directory is allowed.
    if let Some(dir) = script.parent() {
        settings.script_dirs = vec![dir.to_owned()];
    }
    let (events, known) = load_events(source)?;
    let max_queue = settings.event_queue_max_size;
    let total = events.len() as u64;
    let learn = known.is_none();
    let cache = match (known, data_dir) {
        (Some(cache), _) => cache,
        (None, Some(dir)) => Cache::load(dir),
        (None, None) => Cache::new(),
    };
    // The worker reads a real journal, as in the service; a scratch one
    // that nobody needs to survive a crash.
    let scratch = tempfile::tempdir()?;
    let journal = Journal::open(JournalConfig {
        fsync: FsyncPolicy::Never,
        ..JournalConfig::new(scratch.path())
    })?;
    let cursor = journal.cursor("run-script", StartAt::Head);
    if learn {
        for event in &events {
            cache.update(event);
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    if !events.is_empty() {
        runtime
            .block_on(journal.append(events))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let spec = OutputSpec {
        name: "run-script".to_owned(),
        kind: "lua".to_owned(),
        path: Some(script.display().to_string()),
        enabled: true,
        filters: Vec::new(),
        parameters,
    };
    let secrets = crate::output::Secrets::of(&spec);
    let log_print = Arc::clone(&print);
    let log: LogSink = Arc::new(move |severity: Severity, text: &str| {
        log_print(&format!("log {}{text}", severity.header()))
    });
    let trace_print = Arc::clone(&print);
    let trace: super::runtime::TraceSink = Arc::new(move |line: &str| trace_print(line));
    let (writer, status) = StatusWriter::new("run-script", OutputState::Starting);
    let (commands, receiver) = mpsc::channel(4);
    runtime.block_on(async {
        let worker = tokio::spawn(super::worker::run_traced(
            spec,
            cursor,
            cache,
            writer,
            receiver,
            Arc::new(settings),
            Some(log),
            Some(trace),
            Arc::new(crate::output::tail::Tail::default()),
            super::interrupt::Interrupt::new(),
        ));
        // Until every event is read and the queue has been idle long enough
        // for the after-burst flush, or the script failed to load.
        let started = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let s = status.snapshot();
            if s.state == OutputState::Retrying || s.state == OutputState::Failed {
                break;
            }
            let all_read =
                s.counters.received >= total || (max_queue > 0 && s.buffered >= max_queue);
            if all_read && started.elapsed() > Duration::from_millis(300) {
                break;
            }
        }
        let _ = commands.send(Command::Stop).await;
        let _ = worker.await;
    });
    let s = status.snapshot();
    if let (Some(error), 0) = (&s.last_error, s.counters.received) {
        bail!("{}", secrets.redact(error));
    }
    print(&format!(
        "summary: {} events, {} handed to write(), {} filtered out, {} acknowledged, {} not acknowledged",
        total,
        s.counters.written,
        s.counters.filtered_out,
        s.counters.acknowledged,
        total.saturating_sub(s.counters.acknowledged)
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_on_the_command_line() {
        let p = parse_param("max_buffer_size=number:10").unwrap();
        assert_eq!(
            (p.name.as_str(), p.ty, p.value.as_str()),
            ("max_buffer_size", ParamType::Number, "10")
        );
        let p = parse_param("url=http://x:80/").unwrap();
        assert_eq!(
            (p.ty, p.value.as_str()),
            (ParamType::String, "http://x:80/")
        );
        let p = parse_param("token=password:s3cr=t").unwrap();
        assert_eq!((p.ty, p.value.as_str()), (ParamType::Password, "s3cr=t"));
        assert!(parse_param("novalue").is_err());
        assert!(parse_param("=x").is_err());
    }
}
