//! Wiring: builds every part from a [`Config`], runs them, and stops them in
//! order (stop taking requests and events, then let workers flush).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::auth::Auth;
use crate::bbdo::{self, Inputs};
use crate::cache::Cache;
use crate::config::Config;
use crate::ingest::bbdo_sources::{BbdoConnector, BbdoListener};
use crate::ingest::simulator::Simulator;
use crate::ingest::{Ingest, Source};
use crate::journal::Journal;
use crate::output::Supervisor;
use crate::store::Store;
use crate::web::server::{load_tls_config, HttpListener, ServerLimits};
use crate::web::{self, Context, WebSettings};

pub struct App {
    /// The address the HTTP server listens on (useful with port 0).
    pub http_addr: SocketAddr,
    /// The HTTP server speaks HTTPS.
    pub http_tls: bool,
    /// The addresses the BBDO listeners are bound to (useful with port 0).
    pub bbdo_addrs: Vec<SocketAddr>,
    pub context: Context,
    stop: CancellationToken,
    /// Stops the sources (BBDO inputs, the simulator), before everything
    /// else.
    sources_stop: CancellationToken,
    source_tasks: Vec<JoinHandle<()>>,
    server: JoinHandle<()>,
    cache_saver: JoinHandle<()>,
    cache: Arc<Cache>,
    data_dir: std::path::PathBuf,
}

/// How often the cache snapshot is written when it changed.
const CACHE_SAVE_INTERVAL: Duration = Duration::from_secs(10);

pub async fn start(config: Config) -> anyhow::Result<App> {
    // Before anything is opened: a bad certificate is the operator's first
    // thing to fix.
    let tls = match (&config.http.tls_cert, &config.http.tls_key) {
        (Some(cert), Some(key)) => Some(load_tls_config(cert, key)?),
        (None, None) => None,
        _ => anyhow::bail!("http.tls_cert and http.tls_key go together: give both or neither"),
    };
    let http_tls = tls.is_some();
    let store = Store::open(&config.data_dir).await?;
    let auth = Arc::new(Auth::new(store.clone(), config.auth.clone()));
    auth.bootstrap(config.admin_password.as_ref().map(|p| p.0.as_str()))
        .await?;
    let journal = Journal::open(config.journal_config()?)?;
    let cache = Cache::load(&config.data_dir);
    let lua = config.lua_settings()?;
    if let Some(dir) = lua.script_dirs.first() {
        // The default script directory is created so that it can be filled.
        if !dir.exists() {
            let _ = std::fs::create_dir_all(dir);
        }
    }
    let supervisor = Supervisor::with_lua(
        Arc::clone(&journal),
        Arc::clone(&cache),
        Duration::from_secs(config.shutdown_timeout_secs),
        lua,
        &config.data_dir,
        config.health.clone(),
    );
    let ingest = Ingest::new(Arc::clone(&journal), Arc::clone(&cache));
    let mut names = Vec::new();
    for output in store.list_outputs().await? {
        names.push(output.spec.name.clone());
        supervisor.apply(output.spec).await;
    }
    supervisor.forget_other_cursors(&names);
    let listener = HttpListener::bind(config.http_addr, tls, config.http.tls_handshake_timeout())
        .await?
        .with_limits(ServerLimits::from_settings(&config.http)?);
    let http_addr = listener.local_addr()?;
    let inputs = Inputs::new();
    let context = Context::new(
        store,
        supervisor,
        Arc::clone(&ingest),
        Arc::clone(&journal),
        Arc::clone(&inputs),
        auth,
        WebSettings {
            limits: config.limits.clone(),
            tls: http_tls,
            http_stats: listener.stats(),
            allowed_hosts: config.http.allowed_hosts_for(http_addr),
        },
    );
    let mut session = config.bbdo.session.clone();
    session.max_event_bytes = config.limits.max_bbdo_event_bytes;
    // TLS contexts once, here: a bad key or certificate stops the start.
    let mut listener_session = session.clone();
    listener_session.tls = config
        .bbdo
        .tls
        .build(bbdo::tls::TlsSide::Server)
        .map_err(|e| anyhow::anyhow!("bbdo: TLS: {e}"))?;
    let mut connector_sessions = Vec::new();
    for peer in &config.bbdo.connectors {
        let mut s = session.clone();
        s.tls = peer
            .tls
            .build(bbdo::tls::TlsSide::Client)
            .map_err(|e| anyhow::anyhow!("bbdo.connectors `{}`: TLS: {e}", peer.address))?;
        connector_sessions.push(s);
    }
    let stop = CancellationToken::new();
    // Listeners are bound before anything is spawned, so that a busy port
    // fails the start instead of a background task.
    let mut sources: Vec<Box<dyn Source>> = Vec::new();
    let mut bbdo_addrs = Vec::new();
    for address in &config.bbdo.listen {
        let listener = BbdoListener {
            listener: bbdo::listener::Listener::bind(*address).await?,
            session: listener_session.clone(),
            allow: config.bbdo.allow.clone(),
            max_connections: config.bbdo.max_connections,
            inputs: Arc::clone(&inputs),
        };
        bbdo_addrs.push(listener.address());
        sources.push(Box::new(listener));
    }
    for (peer, session) in config.bbdo.connectors.iter().zip(connector_sessions) {
        sources.push(Box::new(BbdoConnector {
            peer: peer.clone(),
            session,
            inputs: Arc::clone(&inputs),
        }));
    }
    if config.simulate > 0 {
        sources.push(Box::new(Simulator {
            rate: config.simulate,
        }));
    }
    let sources_stop = CancellationToken::new();
    let source_tasks = sources
        .into_iter()
        .map(|source| {
            let feed = ingest.feed(source.kind(), source.name());
            tokio::spawn(source.run(feed, sources_stop.clone()))
        })
        .collect();
    let router = web::router(context.clone());
    let server_stop = stop.clone();
    let server = tokio::spawn(async move {
        let shutdown = async move { server_stop.cancelled().await };
        if let Err(e) = listener.serve(router, shutdown).await {
            tracing::error!("HTTP server failed: {e}");
        }
    });
    tracing::info!(
        "brokerstream listening on {}://{http_addr}, data in {}",
        if http_tls { "https" } else { "http" },
        config.data_dir.display()
    );
    let cache_saver = tokio::spawn(save_cache_periodically(
        Arc::clone(&cache),
        config.data_dir.clone(),
        stop.clone(),
    ));
    // Ends with `stop`; nothing to wait for at shutdown.
    tokio::spawn(trim_memory_when_idle(
        Arc::clone(&ingest),
        Arc::clone(&journal),
        stop.clone(),
    ));
    Ok(App {
        http_addr,
        http_tls,
        bbdo_addrs,
        context,
        stop,
        sources_stop,
        source_tasks,
        server,
        cache_saver,
        cache,
        data_dir: config.data_dir,
    })
}

async fn save_cache_periodically(
    cache: Arc<Cache>,
    data_dir: std::path::PathBuf,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(CACHE_SAVE_INTERVAL) => {}
        }
        let (cache, dir) = (Arc::clone(&cache), data_dir.clone());
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || cache.save(&dir)).await {
            tracing::warn!("cannot save the cache snapshot: {e}");
        }
    }
}

/// How long ingest must have been quiet before freed memory is handed back.
const TRIM_AFTER_IDLE: Duration = Duration::from_secs(10);

/// Allocators keep what a burst of events freed: after 200,000 events
/// through 5 outputs, about 30 MiB of the service's RSS was free memory
/// that only an explicit trim gave back (`scripts/bench-e2e idle`). Once
/// ingest has been quiet for [`TRIM_AFTER_IDLE`], trim once; never while
/// events flow, as trimming walks and locks every heap.
async fn trim_memory_when_idle(
    ingest: Arc<Ingest>,
    journal: Arc<Journal>,
    stop: CancellationToken,
) {
    let mut last = ingest.counts();
    let mut trimmed = true;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(TRIM_AFTER_IDLE) => {}
        }
        let counts = ingest.counts();
        if counts != last {
            last = counts;
            trimmed = false;
        } else if !trimmed {
            trimmed = true;
            // Before the trim: the threads that allocated the buffers
            // collect their pages when they honour it.
            journal.release_idle_memory();
            let _ = tokio::task::spawn_blocking(crate::memory::trim).await;
        }
    }
}

impl App {
    /// Stops taking events and requests, then stops every worker, each
    /// flushing what it holds.
    pub async fn shutdown(self) {
        // Sources first: each BBDO session acknowledges what the journal
        // holds and closes, so peers keep the rest in their retention.
        self.sources_stop.cancel();
        for task in self.source_tasks {
            let _ = task.await;
        }
        self.stop.cancel();
        self.context.closing.cancel();
        let _ = self.server.await;
        self.context.supervisor.shutdown().await;
        self.context.journal.close();
        let _ = self.cache_saver.await;
        if let Err(e) = self.cache.save(&self.data_dir) {
            tracing::warn!("cannot save the cache snapshot: {e}");
        }
        self.context.store.close().await;
        tracing::info!("stopped");
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
