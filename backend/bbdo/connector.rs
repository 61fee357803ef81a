//! BBDO connectors: brokerstream dials a Centreon Broker output that
//! listens (`bbdo_server`, or "TCP - IPv4" without a host), speaks first,
//! and dials again with exponential backoff and jitter whenever the
//! connection fails or ends.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::connection::{Role, Session, SessionConfig};
use super::handshake::Version;
use super::inputs::{ConnectorState, Inputs, TlsShown};
use super::sink::EventSink;
use super::tls::TlsSettings;

pub const BACKOFF_MIN: Duration = Duration::from_millis(250);
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
const SESSION_STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// One peer to dial.
#[derive(Clone, Debug, PartialEq)]
pub struct ConnectorConfig {
    /// `host:port`.
    pub address: String,
    /// The version we announce; the peer must have the same major.
    pub version: Version,
    /// Its own TLS settings (Centreon's, per endpoint); the client
    /// context is built from them at start, into the session's config.
    pub tls: TlsSettings,
}

/// The delay before attempt `n` (0 = first retry): doubling from
/// [`BACKOFF_MIN`] up to [`BACKOFF_MAX`], then up to a quarter less at
/// random, so that many connectors do not dial in step.
pub fn backoff(n: u32) -> Duration {
    let base = BACKOFF_MIN
        .saturating_mul(1u32 << n.min(16))
        .min(BACKOFF_MAX);
    let jitter = rand::thread_rng().gen_range(0.75..=1.0);
    base.mul_f64(jitter)
}

pub async fn run(
    peer: ConnectorConfig,
    config: SessionConfig,
    sink: Arc<dyn EventSink>,
    inputs: Arc<Inputs>,
    stop: CancellationToken,
) {
    let stats = inputs.connector(
        peer.address.clone(),
        peer.version.to_string(),
        TlsShown::of(config.tls.as_ref()),
    );
    let mut failures = 0u32;
    loop {
        stats.attempt();
        let connect = tokio::select! {
            c = tokio::time::timeout(config.handshake_timeout, TcpStream::connect(&peer.address)) => c,
            _ = stop.cancelled() => break,
        };
        let error = match connect {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                let remote = stream
                    .peer_addr()
                    .map(|a| a.to_string())
                    .unwrap_or_else(|_| peer.address.clone());
                stats.set_state(ConnectorState::Connected);
                let conn = stats.connection(remote);
                let session = Session::new(
                    stream,
                    config.clone(),
                    Arc::clone(&sink),
                    Arc::clone(&conn),
                    stop.child_token(),
                );
                let run = session.run(Role::Connect(peer.version));
                tokio::pin!(run);
                // As for listeners: a session blocked writing to a peer that
                // stopped reading must not hold the shutdown for ever.
                let result = tokio::select! {
                    r = &mut run => r,
                    _ = async {
                        stop.cancelled().await;
                        tokio::time::sleep(SESSION_STOP_TIMEOUT).await;
                    } => {
                        conn.closed();
                        break;
                    }
                };
                if conn.received.load(std::sync::atomic::Ordering::Relaxed) > 0 {
                    // It worked for a while: start the backoff afresh.
                    failures = 0;
                }
                match result {
                    Ok(()) => "the peer closed the connection".to_owned(),
                    Err(e) => e.to_string(),
                }
            }
            Ok(Err(e)) => format!("cannot connect: {e}"),
            Err(_) => format!(
                "cannot connect: no answer within {:?}",
                config.handshake_timeout
            ),
        };
        if stop.is_cancelled() {
            break;
        }
        let delay = backoff(failures);
        failures = failures.saturating_add(1);
        tracing::warn!(
            "BBDO connector {}: {error}; retrying in {:.1} s",
            peer.address,
            delay.as_secs_f64()
        );
        stats.failed(error, delay);
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.cancelled() => break,
        }
    }
    stats.set_state(ConnectorState::Stopped);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        for n in 0..40 {
            let d = backoff(n);
            let base = BACKOFF_MIN.saturating_mul(1 << n.min(16)).min(BACKOFF_MAX);
            assert!(d <= base && d >= base.mul_f64(0.75), "{n}: {d:?}");
        }
        assert_eq!(backoff(30).max(BACKOFF_MAX), BACKOFF_MAX);
    }
}
