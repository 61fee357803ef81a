//! The HTTP server's sockets: plain TCP, or TLS when `[http]` names a
//! certificate and a key, and the limits every connection is held to.
//!
//! Each accepted connection runs in a task of its own (TLS handshake, each
//! with a timeout, then HTTP/1.1 through hyper), so a client that connects
//! and stays silent, or crawls through its handshake, never holds up the
//! others. Handlers may extract `ConnectInfo<SocketAddr>` behind both kinds
//! of listener.
//!
//! What a hostile client can hold, and for how long (`[http]`):
//! - a request head: `header_timeout_secs` from the moment the server waits
//!   for one (hyper's `header_read_timeout`; its timer also runs while a
//!   kept-alive connection waits for its next request);
//! - a request body: `body_timeout_secs` for the whole of it, from the
//!   moment its head arrived: a deadline, not a minimum rate, so trickling
//!   a byte now and then does not help (the handler sees the body fail and
//!   the client gets a 408 and a close);
//! - an idle kept-alive connection: `keep_alive_timeout_secs` after its
//!   last response was written;
//! - connections: `max_connections` at once, TLS handshakes included.
//!
//! The reserve. Past `max_connections`, `reserved_connections` more are
//! accepted, but each serves one request only (no keep-alive, a head
//! within [`RESERVE_HEADER_TIMEOUT`]), and only a health check
//! (`/healthz`, `/readyz`) or a request from a peer in `reserve_allow` (the
//! admin on the machine itself, by default): anything else gets a 503. So
//! while clients hold every ordinary slot, the load balancer's probes and
//! the admin's own requests still get through, and the reserve itself
//! cannot be held for long by the same kind of client. Past the reserve,
//! connections are closed at once. Both refusals are counted
//! ([`HttpStats`], `/metrics`) and logged at most once a minute.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use anyhow::Context as _;
use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderValue, Request, Response, StatusCode};
use axum::response::IntoResponse as _;
use axum::Router;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::config::HttpSettings;
use crate::net::AllowList;
use crate::throttle::LogThrottle;

/// The head timeout (and TLS handshake timeout) of a reserved connection,
/// when the configured one is longer: a probe sends its request at once,
/// and a silent client must not keep a reserved slot as long as an
/// ordinary one.
pub const RESERVE_HEADER_TIMEOUT: Duration = Duration::from_secs(2);
/// At most one log line per interval about refused connections.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(60);

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

/// The limits of `[http]` the server holds connections to.
#[derive(Clone, Debug)]
pub struct ServerLimits {
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub keep_alive_timeout: Duration,
    pub max_connections: usize,
    pub reserved_connections: usize,
    pub reserve_allow: AllowList,
    pub trusted_proxies: AllowList,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits::from_settings(&HttpSettings::default()).expect("valid defaults")
    }
}

impl ServerLimits {
    pub fn from_settings(http: &HttpSettings) -> anyhow::Result<ServerLimits> {
        Ok(ServerLimits {
            header_timeout: Duration::from_secs(http.header_timeout_secs.max(1)),
            body_timeout: Duration::from_secs(http.body_timeout_secs.max(1)),
            keep_alive_timeout: Duration::from_secs(http.keep_alive_timeout_secs.max(1)),
            max_connections: http.max_connections.max(1),
            reserved_connections: http.reserved_connections,
            reserve_allow: http.reserve_allow()?,
            trusted_proxies: http.trusted_proxies()?,
        })
    }
}

/// What the HTTP server counts, for `/metrics`.
#[derive(Debug)]
pub struct HttpStats {
    /// Connections open now, TLS handshakes included.
    pub open: AtomicUsize,
    /// Connections closed at once: every ordinary and reserved slot taken.
    pub refused_connections: AtomicU64,
    /// Connections that got a reserved slot.
    pub reserved_connections: AtomicU64,
    /// Requests a reserved connection answered 503.
    pub reserve_refused_requests: AtomicU64,
    /// Connections closed for a request head not finished in time.
    pub header_timeouts: AtomicU64,
    /// Requests whose body did not arrive whole in time.
    pub body_timeouts: AtomicU64,
    /// Kept-alive connections closed for idling.
    pub idle_closed: AtomicU64,
    refusal_log: LogThrottle,
    reserve_log: LogThrottle,
}

impl Default for HttpStats {
    fn default() -> Self {
        HttpStats {
            open: AtomicUsize::new(0),
            refused_connections: AtomicU64::new(0),
            reserved_connections: AtomicU64::new(0),
            reserve_refused_requests: AtomicU64::new(0),
            header_timeouts: AtomicU64::new(0),
            body_timeouts: AtomicU64::new(0),
            idle_closed: AtomicU64::new(0),
            refusal_log: LogThrottle::new(REFUSAL_LOG_INTERVAL),
            reserve_log: LogThrottle::new(REFUSAL_LOG_INTERVAL),
        }
    }
}

/// One open connection's place in the count.
struct Slot {
    stats: Arc<HttpStats>,
    reserved: bool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.stats.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl HttpStats {
    /// An ordinary slot, a reserved one, or none (the connection is to be
    /// closed). Only the accepting loop takes slots, so the count cannot
    /// move between the check and the take.
    fn take_slot(self: &Arc<Self>, limits: &ServerLimits) -> Option<Slot> {
        let open = self.open.load(Ordering::Relaxed);
        let reserved = if open < limits.max_connections {
            false
        } else if open < limits.max_connections + limits.reserved_connections {
            self.reserved_connections.fetch_add(1, Ordering::Relaxed);
            if let Some(n) = self.reserve_log.hit() {
                tracing::warn!(
                    "HTTP server: {open} connections open, at http.max_connections ({}): new ones get one of the {} reserved slots, which serve only /healthz, /readyz and http.reserve_allow ({n} since the last such line)",
                    limits.max_connections,
                    limits.reserved_connections
                );
            }
            true
        } else {
            self.refused_connections.fetch_add(1, Ordering::Relaxed);
            if let Some(n) = self.refusal_log.hit() {
                tracing::warn!(
                    "HTTP server: {open} connections open, every slot taken (http.max_connections {} and http.reserved_connections {}): closing new connections at once ({n} refused since the last such line; see brokerstream_http_refused_connections_total)",
                    limits.max_connections,
                    limits.reserved_connections
                );
            }
            return None;
        };
        self.open.fetch_add(1, Ordering::Relaxed);
        Some(Slot {
            stats: Arc::clone(self),
            reserved,
        })
    }
}

/// Where the HTTP server accepts connections.
pub struct HttpListener {
    tcp: TcpListener,
    local_addr: SocketAddr,
    tls: Option<(TlsAcceptor, Duration)>,
    limits: Arc<ServerLimits>,
    stats: Arc<HttpStats>,
}

impl HttpListener {
    /// Binds `address`; with `tls`, clients must speak TLS and finish their
    /// handshake within `handshake_timeout`. The limits are the defaults of
    /// `[http]` until [`HttpListener::with_limits`].
    pub async fn bind(
        address: SocketAddr,
        tls: Option<Arc<rustls::ServerConfig>>,
        handshake_timeout: Duration,
    ) -> anyhow::Result<HttpListener> {
        let tcp = TcpListener::bind(address)
            .await
            .with_context(|| format!("cannot listen on {address}"))?;
        let local_addr = tcp.local_addr()?;
        Ok(HttpListener {
            tcp,
            local_addr,
            tls: tls.map(|config| (TlsAcceptor::from(config), handshake_timeout)),
            limits: Arc::new(ServerLimits::default()),
            stats: Arc::new(HttpStats::default()),
        })
    }

    pub fn with_limits(mut self, limits: ServerLimits) -> Self {
        self.limits = Arc::new(limits);
        self
    }

    /// The counters, shared with `/metrics`.
    pub fn stats(&self) -> Arc<HttpStats> {
        Arc::clone(&self.stats)
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local_addr)
    }

    /// Serves `router` until `shutdown` resolves, then lets open requests
    /// finish: idle connections close at once, busy ones after their
    /// response.
    pub async fn serve(
        self,
        router: Router,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let stop = CancellationToken::new();
        let mut connections = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                accepted = self.tcp.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        pause_after_accept_error(e).await;
                        continue;
                    }
                },
                _ = &mut shutdown => break,
                // Reap finished connections so the set does not grow.
                Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            };
            let Some(slot) = self.stats.take_slot(&self.limits) else {
                drop(stream);
                continue;
            };
            let _ = stream.set_nodelay(true);
            let conn = Connection {
                peer,
                slot,
                router: router.clone(),
                limits: Arc::clone(&self.limits),
                stop: stop.clone(),
            };
            match &self.tls {
                None => {
                    connections.spawn(conn.serve(stream));
                }
                Some((acceptor, handshake_timeout)) => {
                    let timeout = if conn.slot.reserved {
                        (*handshake_timeout).min(RESERVE_HEADER_TIMEOUT)
                    } else {
                        *handshake_timeout
                    };
                    let acceptor = acceptor.clone();
                    connections.spawn(async move {
                        let handshake = tokio::time::timeout(timeout, acceptor.accept(stream));
                        let result = tokio::select! {
                            r = handshake => r,
                            _ = conn.stop.cancelled() => return,
                        };
                        match result {
                            Ok(Ok(tls)) => conn.serve(tls).await,
                            // Scanners, plain HTTP on the HTTPS port,
                            // clients that do not trust the certificate:
                            // common, and the client's business, so not
                            // worth more than debug.
                            Ok(Err(e)) => tracing::debug!("TLS handshake with {peer} failed: {e}"),
                            Err(_) => tracing::debug!(
                                "TLS handshake with {peer} did not finish within {timeout:?}; closing"
                            ),
                        }
                    });
                }
            }
        }
        drop(self.tcp);
        stop.cancel();
        while connections.join_next().await.is_some() {}
        Ok(())
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
    tracing::error!("HTTP listener: cannot accept: {e}");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// One accepted connection, before its bytes are read.
struct Connection {
    peer: SocketAddr,
    slot: Slot,
    router: Router,
    limits: Arc<ServerLimits>,
    stop: CancellationToken,
}

impl Connection {
    async fn serve<I>(self, io: I)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Connection {
            peer,
            slot,
            router,
            limits,
            stop,
        } = self;
        let reserved = slot.reserved;
        let stats = Arc::clone(&slot.stats);
        let activity = Arc::new(Activity::default());
        let service = {
            let (limits, stats, activity) = (
                Arc::clone(&limits),
                Arc::clone(&stats),
                Arc::clone(&activity),
            );
            hyper::service::service_fn(move |request: Request<Incoming>| {
                let request_guard = activity.start();
                let context = RequestContext {
                    peer,
                    reserved,
                    limits: Arc::clone(&limits),
                    stats: Arc::clone(&stats),
                    router: router.clone(),
                };
                async move {
                    let response = context.handle(request).await;
                    Ok::<_, std::convert::Infallible>(response.map(|body| Tracked {
                        inner: body,
                        _guard: request_guard,
                    }))
                }
            })
        };
        let header_timeout = if reserved {
            limits.header_timeout.min(RESERVE_HEADER_TIMEOUT)
        } else {
            limits.header_timeout
        };
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .keep_alive(!reserved);
        let conn = builder.serve_connection(TokioIo::new(io), service);
        tokio::pin!(conn);
        let mut closing = false;
        loop {
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        if e.is_timeout() {
                            stats.header_timeouts.fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(
                                "HTTP client {peer} did not send a whole request head within {header_timeout:?}; closed"
                            );
                        } else {
                            tracing::debug!("HTTP connection with {peer}: {e}");
                        }
                    }
                    break;
                }
                _ = stop.cancelled(), if !closing => {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
                _ = activity.idle_for(limits.keep_alive_timeout), if !closing => {
                    closing = true;
                    stats.idle_closed.fetch_add(1, Ordering::Relaxed);
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
        drop(slot);
    }
}

/// What a request needs to know of its connection.
struct RequestContext {
    peer: SocketAddr,
    reserved: bool,
    limits: Arc<ServerLimits>,
    stats: Arc<HttpStats>,
    router: Router,
}

/// The client a request comes from: the peer, or, when the peer is a
/// trusted proxy, the address `X-Forwarded-For` gives. The header is read
/// from the right (each proxy appends the address it received from),
/// skipping trusted proxies: the first address that is not one is the
/// client, since anything left of it was written by the client itself.
/// An entry that is not an address stops the walk at the last one read.
/// The port is the peer's: a proxy does not forward the client's.
pub fn client_address(
    peer: SocketAddr,
    headers: &axum::http::HeaderMap,
    trusted: &AllowList,
) -> SocketAddr {
    if trusted.is_empty() || !trusted.allows(peer.ip()) {
        return peer;
    }
    let mut client = peer.ip();
    let hops = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect::<Vec<_>>();
    for hop in hops.iter().rev() {
        let Some(ip) = parse_hop(hop.trim()) else {
            break;
        };
        client = ip;
        if !trusted.allows(ip) {
            break;
        }
    }
    SocketAddr::new(client, peer.port())
}

/// `192.0.2.7`, `192.0.2.7:1234`, `2001:db8::1` or `[2001:db8::1]:1234`.
fn parse_hop(hop: &str) -> Option<std::net::IpAddr> {
    hop.parse()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|a| a.ip()))
}

impl RequestContext {
    async fn handle(self, request: Request<Incoming>) -> Response<Body> {
        if self.reserved
            && !matches!(request.uri().path(), "/healthz" | "/readyz")
            && !self.limits.reserve_allow.allows(self.peer.ip())
        {
            self.stats
                .reserve_refused_requests
                .fetch_add(1, Ordering::Relaxed);
            return closing(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "the server has http.max_connections ({}) connections open; only health checks and http.reserve_allow are served now: retry later",
                    self.limits.max_connections
                ),
            );
        }
        let timed_out = Arc::new(AtomicBool::new(false));
        let mut request = request.map(|incoming| {
            if incoming.is_end_stream() {
                Body::new(incoming)
            } else {
                Body::new(Deadline {
                    inner: incoming,
                    at: Instant::now() + self.limits.body_timeout,
                    limit: self.limits.body_timeout,
                    sleep: None,
                    timed_out: Arc::clone(&timed_out),
                })
            }
        });
        let client = client_address(self.peer, request.headers(), &self.limits.trusted_proxies);
        request.extensions_mut().insert(ConnectInfo(client));
        let mut router = self.router;
        let response = match tower_service::Service::call(&mut router, request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        if timed_out.load(Ordering::Relaxed) {
            self.stats.body_timeouts.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(
                "HTTP client {}: the request body did not arrive within {:?}; closing",
                self.peer,
                self.limits.body_timeout
            );
            return closing(
                StatusCode::REQUEST_TIMEOUT,
                BodyTimeout(self.limits.body_timeout).to_string(),
            );
        }
        response
    }
}

/// A JSON error, after which the connection closes.
fn closing(status: StatusCode, message: String) -> Response<Body> {
    let mut response = (status, axum::Json(json!({ "error": message }))).into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive whole within {0:?} (http.body_timeout_secs)")]
struct BodyTimeout(Duration);

/// A request body that fails once its deadline passes, however the bytes
/// trickle in.
struct Deadline {
    inner: Incoming,
    at: Instant,
    limit: Duration,
    /// Made at the first poll: most bodies are read at once, and an unread
    /// one needs no timer.
    sleep: Option<Pin<Box<Sleep>>>,
    timed_out: Arc<AtomicBool>,
}

impl HttpBody for Deadline {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let at = this.at;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
        if sleep.as_mut().poll(cx).is_ready() {
            this.timed_out.store(true, Ordering::Relaxed);
            return Poll::Ready(Some(Err(Box::new(BodyTimeout(this.limit)))));
        }
        Pin::new(&mut this.inner)
            .poll_frame(cx)
            .map_err(|e| Box::new(e) as Self::Error)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// When a connection's last request ended, to close it once it idled for
/// `keep_alive_timeout`.
#[derive(Debug, Default)]
struct Activity {
    in_flight: AtomicUsize,
    /// When the last response was written (or given up); `None` before the
    /// first request, whose head `header_timeout` bounds.
    last_done: Mutex<Option<Instant>>,
    changed: Notify,
}

impl Activity {
    fn start(self: &Arc<Self>) -> RequestGuard {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.changed.notify_one();
        RequestGuard(Arc::clone(self))
    }

    /// Resolves once no request has been in flight for `timeout` since the
    /// last one ended.
    async fn idle_for(&self, timeout: Duration) {
        loop {
            let deadline = if self.in_flight.load(Ordering::Relaxed) == 0 {
                crate::sync::lock(&self.last_done).map(|t| t + timeout)
            } else {
                None
            };
            match deadline {
                Some(deadline) => tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => return,
                    _ = self.changed.notified() => {}
                },
                None => self.changed.notified().await,
            }
        }
    }
}

/// Held by a request until its response body is written or dropped.
struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        *crate::sync::lock(&self.0.last_done) = Some(Instant::now());
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.changed.notify_one();
    }
}

/// A response body that ends its request when hyper is done with it.
struct Tracked {
    inner: Body,
    _guard: RequestGuard,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(peer: &str, forwarded: &[&str], trusted: &[&str]) -> String {
        let mut headers = axum::http::HeaderMap::new();
        for value in forwarded {
            headers.append("x-forwarded-for", value.parse().unwrap());
        }
        let trusted = AllowList::parse(trusted).unwrap();
        client_address(peer.parse().unwrap(), &headers, &trusted)
            .ip()
            .to_string()
    }

    #[test]
    fn the_client_is_read_from_x_forwarded_for_only_behind_a_trusted_proxy() {
        let proxy = "10.0.0.5:40000";
        // Not trusted: the header is the client's word, ignored.
        assert_eq!(client(proxy, &["203.0.113.7"], &[]), "10.0.0.5");
        assert_eq!(
            client(proxy, &["203.0.113.7"], &["10.9.0.0/16"]),
            "10.0.0.5"
        );
        // Trusted: the rightmost address that is not a proxy.
        assert_eq!(
            client(proxy, &["203.0.113.7"], &["10.0.0.0/8"]),
            "203.0.113.7"
        );
        assert_eq!(
            client(
                proxy,
                &["198.51.100.1, 203.0.113.7, 10.0.0.9"],
                &["10.0.0.0/8"]
            ),
            "203.0.113.7",
            "what the client wrote itself (198.51.100.1) is not believed"
        );
        assert_eq!(
            client(
                proxy,
                &["198.51.100.1", "203.0.113.7:5000"],
                &["10.0.0.0/8"]
            ),
            "203.0.113.7"
        );
        assert_eq!(
            client(proxy, &["[2001:db8::1]:443"], &["10.0.0.0/8"]),
            "2001:db8::1"
        );
        // Only proxies, or nothing: the leftmost proxy, or the peer.
        assert_eq!(client(proxy, &["10.0.0.9"], &["10.0.0.0/8"]), "10.0.0.9");
        assert_eq!(client(proxy, &[], &["10.0.0.0/8"]), "10.0.0.5");
        // Garbage stops the walk at the last address read.
        assert_eq!(
            client(proxy, &["203.0.113.7, unknown"], &["10.0.0.0/8"]),
            "10.0.0.5"
        );
        assert_eq!(
            client(proxy, &["unknown, 203.0.113.7"], &["10.0.0.0/8"]),
            "203.0.113.7"
        );
    }
}
