//! BBDO listeners: a Centreon Broker output in client mode (`bbdo_client`,
//! or "TCP - IPv4" with a host) connects here.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::connection::{Role, Session, SessionConfig};
use super::inputs::{Inputs, TlsShown};
use super::sink::EventSink;
use crate::net::AllowList;
use crate::throttle::LogThrottle;

/// How long sessions get to acknowledge and close once asked to stop.
const SESSIONS_STOP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// At most one log line per interval about peers refused for the limit.
const OVER_LIMIT_LOG_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// A bound listener, not yet accepting.
pub struct Listener {
    listener: TcpListener,
    pub address: SocketAddr,
}

impl Listener {
    pub async fn bind(address: SocketAddr) -> anyhow::Result<Listener> {
        let listener = TcpListener::bind(address)
            .await
            .with_context(|| format!("cannot listen for BBDO on {address}"))?;
        let address = listener.local_addr()?;
        Ok(Listener { listener, address })
    }

    /// Accepts peers until `stop`, then waits for their sessions to end
    /// (each acknowledges what the journal holds before closing). A peer
    /// outside `allow`, or one that comes while `max_connections` sessions
    /// are open, is closed at once, before any of its bytes is read.
    ///
    /// There is no reserve here, unlike HTTP's: every BBDO peer is a
    /// broker, none more urgent than another, and a broker that is turned
    /// away keeps its events in its retention and dials again.
    pub async fn run(
        self,
        config: SessionConfig,
        allow: AllowList,
        max_connections: usize,
        sink: Arc<dyn EventSink>,
        inputs: Arc<Inputs>,
        stop: CancellationToken,
    ) {
        let stats = inputs.listener(
            self.address,
            allow.entries(),
            max_connections,
            TlsShown::of(config.tls.as_ref()),
        );
        let over_limit_log = LogThrottle::new(OVER_LIMIT_LOG_INTERVAL);
        if allow.is_empty() {
            tracing::info!("BBDO listening on {} (every peer allowed)", self.address);
        } else {
            tracing::info!("BBDO listening on {}, allowing {allow}", self.address);
        }
        let mut sessions = JoinSet::new();
        loop {
            let accepted = tokio::select! {
                a = self.listener.accept() => a,
                _ = stop.cancelled() => break,
                // Reap finished sessions so the set does not grow.
                Some(_) = sessions.join_next(), if !sessions.is_empty() => continue,
            };
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: pause rather
                    // than spin.
                    tracing::warn!("BBDO listener {}: cannot accept: {e}", self.address);
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            if !allow.allows(peer.ip()) {
                // Counted before the close, so whoever sees the close sees
                // the count.
                stats.refused(peer);
                tracing::warn!(
                    "BBDO listener {}: refused a connection from {peer}: not in bbdo.allow",
                    self.address
                );
                drop(stream);
                continue;
            }
            while sessions.try_join_next().is_some() {}
            if sessions.len() >= max_connections {
                stats.over_limit(peer);
                if let Some(n) = over_limit_log.hit() {
                    tracing::warn!(
                        "BBDO listener {}: {} sessions open, at bbdo.max_connections: closing new connections at once ({n} refused since the last such line, the last from {peer}; see connections_over_limit in GET /api/v1/inputs)",
                        self.address,
                        sessions.len()
                    );
                }
                drop(stream);
                continue;
            }
            let _ = stream.set_nodelay(true);
            let conn = stats.connection(peer.to_string());
            let session = Session::new(
                stream,
                config.clone(),
                Arc::clone(&sink),
                conn,
                stop.child_token(),
            );
            sessions.spawn(async move {
                match session.run(Role::Accept).await {
                    Ok(()) => tracing::info!("BBDO peer {peer} disconnected"),
                    Err(e) => tracing::warn!("BBDO peer {peer}: {e}"),
                }
            });
        }
        // A session blocked writing to a peer that stopped reading must not
        // hold the shutdown for ever.
        let drained = tokio::time::timeout(SESSIONS_STOP_TIMEOUT, async {
            while sessions.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                "BBDO listener {}: sessions still busy after {:?}; closing them",
                self.address,
                SESSIONS_STOP_TIMEOUT
            );
            sessions.shutdown().await;
        }
        tracing::info!("BBDO listener {} stopped", self.address);
    }
}
