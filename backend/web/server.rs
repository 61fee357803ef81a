//! The HTTP server's sockets: plain TCP, or TLS when `[http]` names a
//! certificate and a key.
//!
//! TLS handshakes run in tasks of their own, each with a timeout, and only
//! finished ones reach axum, so a client that connects and stays silent (or
//! crawls through its handshake) never holds up the others. Both kinds of
//! listener give axum the client's `SocketAddr`, so handlers may extract
//! `ConnectInfo<SocketAddr>`.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::serve::ListenerExt as _;
use axum::Router;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// Finished handshakes waiting for axum to take them.
const HANDSHAKED_QUEUE: usize = 64;

/// Reads a PEM certificate chain and private key into a server
/// configuration; every failure names the file and what is wrong with it.
pub fn load_tls_config(cert: &Path, key: &Path) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let cert_pem = std::fs::read(cert)
        .with_context(|| format!("cannot read the TLS certificate file {}", cert.display()))?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            anyhow::anyhow!(
                "the TLS certificate file {} is not valid PEM: {e}",
                cert.display()
            )
        })?;
    anyhow::ensure!(
        !chain.is_empty(),
        "the TLS certificate file {} holds no certificate (a PEM `BEGIN CERTIFICATE` block)",
        cert.display()
    );
    let key_pem = std::fs::read(key)
        .with_context(|| format!("cannot read the TLS key file {}", key.display()))?;
    let private_key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => anyhow::anyhow!(
            "the TLS key file {} holds no private key (a PEM `BEGIN PRIVATE KEY`, `BEGIN RSA PRIVATE KEY` or `BEGIN EC PRIVATE KEY` block)",
            key.display()
        ),
        other => anyhow::anyhow!("the TLS key file {} is not valid PEM: {other}", key.display()),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain, private_key)
        .with_context(|| {
            format!(
                "the TLS certificate {} and key {} cannot be used together",
                cert.display(),
                key.display()
            )
        })?;
    // The server speaks HTTP/1.1 only.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Where the HTTP server accepts connections.
pub enum HttpListener {
    Plain(TcpListener),
    Tls(TlsListener),
}

impl HttpListener {
    /// Binds `address`; with `tls`, clients must speak TLS and finish their
    /// handshake within `handshake_timeout`.
    pub async fn bind(
        address: SocketAddr,
        tls: Option<Arc<rustls::ServerConfig>>,
        handshake_timeout: Duration,
    ) -> anyhow::Result<HttpListener> {
        let tcp = TcpListener::bind(address)
            .await
            .with_context(|| format!("cannot listen on {address}"))?;
        Ok(match tls {
            None => HttpListener::Plain(tcp),
            Some(config) => HttpListener::Tls(TlsListener::new(tcp, config, handshake_timeout)?),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        match self {
            HttpListener::Plain(tcp) => tcp.local_addr(),
            HttpListener::Tls(tls) => Ok(tls.local_addr),
        }
    }

    /// Serves `router` until `shutdown` resolves, then lets open requests
    /// finish.
    pub async fn serve(
        self,
        router: Router,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let service = router.into_make_service_with_connect_info::<SocketAddr>();
        match self {
            HttpListener::Plain(tcp) => {
                axum::serve(tcp, service)
                    .with_graceful_shutdown(shutdown)
                    .await
            }
            HttpListener::Tls(tls) => {
                // axum knows the client address of a tapped listener whose
                // address is a SocketAddr; the tap itself does nothing.
                axum::serve(tls.tap_io(|_| {}), service)
                    .with_graceful_shutdown(shutdown)
                    .await
            }
        }
    }
}

/// A listener whose connections have finished their TLS handshake. Its
/// accepting task stops when the listener is dropped (axum drops it on
/// shutdown).
pub struct TlsListener {
    handshaked: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local_addr: SocketAddr,
    accepting: JoinHandle<()>,
}

impl TlsListener {
    fn new(
        tcp: TcpListener,
        config: Arc<rustls::ServerConfig>,
        handshake_timeout: Duration,
    ) -> std::io::Result<TlsListener> {
        let local_addr = tcp.local_addr()?;
        let (sender, handshaked) = mpsc::channel(HANDSHAKED_QUEUE);
        let accepting = tokio::spawn(accept_loop(
            tcp,
            TlsAcceptor::from(config),
            handshake_timeout,
            sender,
        ));
        Ok(TlsListener {
            handshaked,
            local_addr,
            accepting,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

async fn accept_loop(
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    handshake_timeout: Duration,
    handshaked: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    loop {
        let (stream, peer) = tokio::select! {
            accepted = tcp.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    pause_after_accept_error(e).await;
                    continue;
                }
            },
            _ = handshaked.closed() => return,
        };
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        let handshaked = handshaked.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    // Fails only when the server is stopping.
                    let _ = handshaked.send((tls, peer)).await;
                }
                // Scanners, plain HTTP on the HTTPS port, clients that do
                // not trust the certificate: common, and the client's
                // business, so not worth more than debug.
                Ok(Err(e)) => tracing::debug!("TLS handshake with {peer} failed: {e}"),
                Err(_) => tracing::debug!(
                    "TLS handshake with {peer} did not finish within {handshake_timeout:?}; closing"
                ),
            }
        });
    }
}

/// As axum's own listener does: a connection that failed before we took it
/// is no news; anything else (out of file descriptors) is worth a pause
/// rather than a spin.
async fn pause_after_accept_error(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    ) {
        return;
    }
    tracing::error!("HTTPS listener: cannot accept: {e}");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.handshaked.recv().await {
            Some(connection) => connection,
            // The accepting task ends only once the listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}
