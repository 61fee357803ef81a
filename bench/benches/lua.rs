//! The brokerstream side of `scripts/bench-lua`: one stream connector run
//! by the Lua runtime on the events of an NDJSON file, `write()` timed the
//! way `bench/lua/driver.lua` times it under a bare Lua 5.4 (a fresh state
//! per round, then every event through `Script::write` — the conversion of
//! the event into its API v1 table included — then `flush()`), best round
//! printed in events/s.
//!
//! ```sh
//! BENCH_SCRIPT=bench/lua/trivial.lua BENCH_EVENTS=events.ndjson BENCH_ROUNDS=5 \
//!     BENCH_PARAMS="http_server_url=http://127.0.0.1:9/ max_buffer_size=500" \
//!     cargo bench -p brokerstream-bench --bench lua
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use brokerstream::cache::Cache;
use brokerstream::ingest::ndjson;
use brokerstream::output::lua::event::Shared;
use brokerstream::output::lua::runtime::{Script, ScriptEnv};
use brokerstream::output::lua::LuaSettings;
use brokerstream::output::{ParamType, Parameter};

fn main() {
    let var = |name: &str| std::env::var(name).ok();
    let (Some(script), Some(events)) = (var("BENCH_SCRIPT"), var("BENCH_EVENTS")) else {
        eprintln!("lua bench: set BENCH_SCRIPT and BENCH_EVENTS (scripts/bench-lua does); skipped");
        return;
    };
    let rounds: usize = var("BENCH_ROUNDS")
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    let parameters: Vec<Parameter> = var("BENCH_PARAMS")
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.split_once('='))
        .map(|(name, value)| Parameter {
            name: name.to_owned(),
            ty: if value.parse::<f64>().is_ok() {
                ParamType::Number
            } else {
                ParamType::String
            },
            value: value.to_owned(),
        })
        .collect();
    let bytes = std::fs::read(&events).expect("read the events");
    let events: Vec<Shared> = ndjson::parse(&bytes)
        .unwrap_or_else(|e| panic!("bad NDJSON: {:?}", e.first().map(|l| (l.line, &l.message))))
        .into_iter()
        .map(|e| Shared::Event(Arc::new(e)))
        .collect();
    let script = PathBuf::from(script)
        .canonicalize()
        .expect("the script exists");
    let dir = script.parent().expect("a directory").to_owned();
    let env = ScriptEnv {
        cache: Cache::new(),
        settings: Arc::new(LuaSettings {
            script_dirs: vec![dir.clone()],
            // BENCH_MEMORY_LIMIT=0 measures the runtime without its limit.
            memory_limit_bytes: var("BENCH_MEMORY_LIMIT")
                .and_then(|v| v.parse().ok())
                .unwrap_or(brokerstream::output::lua::DEFAULT_MEMORY_LIMIT_BYTES),
            ..LuaSettings::for_data_dir(&dir)
        }),
        log: Arc::new(|_, _| {}),
        file_log: None,
        interrupt: brokerstream::output::lua::interrupt::Interrupt::new(),
        trace: None,
    };
    let mut best = 0.0f64;
    for _ in 0..rounds {
        let mut loaded = Script::load(&script, &parameters, &env).expect("the script loads");
        let started = Instant::now();
        for event in &events {
            let outcome = loaded.write(event);
            assert!(outcome.error.is_none(), "{:?}", outcome.error);
        }
        let flushed = loaded.flush();
        assert!(flushed.error.is_none(), "{:?}", flushed.error);
        let rate = events.len() as f64 / started.elapsed().as_secs_f64();
        best = best.max(rate);
    }
    println!("{best:.0}");
}
