//! brokerstream: a standalone stream-connector manager for Centreon
//! monitoring data. The module tree follows the data flow
//! (docs/architecture.md §1, §2): inputs (`bbdo`, the NDJSON route of
//! `web`, the simulator) hand events to `ingest`, which feeds the `cache`
//! and the `journal`; the `output` supervisor runs one worker per output,
//! each reading the journal through its own cursor. `store`, `auth` and
//! `web` keep and serve the definitions, `config` reads the settings and
//! `app` wires it all.
//!
//! The Centreon behaviour the code relies on is stated in docs/bbdo.md
//! (the wire protocol and the events) and docs/lua-runtime.md (the Lua
//! stream-connector runtime); code comments cite their numbered sections.

/// mimalloc rather than glibc's malloc. Events are allocated on a
/// connection's thread and freed on an output's: glibc's arenas handle that
/// pattern worst (their free lists consolidate under contention), and
/// malloc and free took about a fifth of the native path's CPU. With
/// mimalloc, `scripts/bench-e2e`'s native influxdb row moves 15% more
/// events per CPU-second (1.11 M → 1.29 M on 2 M events in one run).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

// The layers that are crates of their own (docs/architecture.md §2.1),
// under the module names the rest of the service uses.
pub use brokerstream_bbdo as bbdo;
pub use brokerstream_common::{memory, net, sync, throttle};
pub use brokerstream_event as event;
pub use brokerstream_journal as journal;

pub mod app;
pub mod auth;
pub mod backup;
pub mod cache;
pub mod config;
pub mod control;
pub mod encoding;
pub mod ingest;
pub mod output;
pub mod reload;
pub mod store;
pub mod web;
