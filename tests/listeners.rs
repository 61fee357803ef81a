//! Timeouts and limits on every listener (issue 15): clients that connect
//! and hold a connection without finishing anything are closed, the
//! connection caps refuse what is past them and count it, and health
//! checks, ingest and a real broker are served all the while.
//!
//! Every timeout is short here (1 s, set through the configuration); every
//! wait is bounded by [`WAIT`], far longer, and nothing asserts how fast.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use brokerstream::bbdo::{self, frame::Deframer, handshake, Version};
use brokerstream::config::{AllowList, BbdoConfig, Config};
use brokerstream::event::Event;
use brokerstream::web::server::HttpStats;
use bytes::BytesMut;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::common::*;

const WAIT: Duration = Duration::from_secs(30);
/// Idle connections of each kind: 100, or `BROKERSTREAM_SOAK_IDLE` for
/// `scripts/soak-listeners`.
fn idle_per_kind() -> usize {
    std::env::var("BROKERSTREAM_SOAK_IDLE")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100)
}

/// The suite holds hundreds of connections, both ends of each in this
/// process: a soft limit of 1024 (or 256) descriptors would be too few.
fn raise_open_files_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: both calls only read and write the struct given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// Short timeouts, both listeners on loopback port 0.
fn config(dir: &Path) -> Config {
    let mut bbdo = BbdoConfig::disabled();
    bbdo.listen = vec!["127.0.0.1:0".parse().unwrap()];
    bbdo.session.stall_timeout = Duration::from_secs(1);
    // Above the trickling peers below (the default is 256).
    bbdo.max_connections = (3 * idle_per_kind() + 100).max(1000);
    let mut config = Config {
        data_dir: dir.to_owned(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        bbdo,
        ..Config::default()
    };
    config.http.header_timeout_secs = 1;
    config.http.body_timeout_secs = 1;
    config.http.keep_alive_timeout_secs = 1;
    // Room for every idle client (the default, 1024, is less than a soak's).
    config.http.max_connections = config.http.max_connections.max(3 * idle_per_kind() + 100);
    config
}

fn http_stats(server: &Server) -> Arc<HttpStats> {
    Arc::clone(&server.app.as_ref().unwrap().context.http_stats)
}

/// Reads until the server closes the connection; a reset is a close too.
async fn read_until_closed<S: AsyncRead + Unpin>(stream: &mut S) -> Vec<u8> {
    let mut answer = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut chunk = [0u8; 4096];
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Err(_) => panic!(
                "the server kept the connection open for {WAIT:?}; read so far: {:?}",
                String::from_utf8_lossy(&answer)
            ),
            Ok(Ok(0)) | Ok(Err(_)) => return answer,
            Ok(Ok(n)) => answer.extend_from_slice(&chunk[..n]),
        }
    }
}

/// What an idle HTTP client sends before it stops.
#[derive(Clone, Copy, Debug)]
enum Idle {
    Nothing,
    HalfAHeader,
    UnfinishedBody,
}

impl Idle {
    const ALL: [Idle; 3] = [Idle::Nothing, Idle::HalfAHeader, Idle::UnfinishedBody];

    fn bytes(self) -> Vec<u8> {
        match self {
            Idle::Nothing => Vec::new(),
            Idle::HalfAHeader => b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nUser-Ag".to_vec(),
            // An ingest request that authenticates, so that its body is read.
            Idle::UnfinishedBody => format!(
                "POST /api/v1/events HTTP/1.1\r\nHost: localhost\r\nAuthorization: {}\r\n\
                 Content-Type: application/x-ndjson\r\nContent-Length: 100000\r\n\r\n{{\"_type\":",
                basic_auth("admin", ADMIN_PASSWORD).to_str().unwrap()
            )
            .into_bytes(),
        }
    }

    /// Checks what the server answered before closing.
    fn check(self, answer: &[u8]) {
        let answer = String::from_utf8_lossy(answer);
        match self {
            Idle::Nothing | Idle::HalfAHeader => {
                // hyper may answer a timed-out head with a 408; never more.
                assert!(
                    answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
                    "{self:?}: {answer}"
                );
            }
            Idle::UnfinishedBody => {
                assert!(answer.starts_with("HTTP/1.1 408"), "{self:?}: {answer}");
                assert!(
                    answer.contains(
                        "the request body did not arrive whole within 1s (http.body_timeout_secs)"
                    ),
                    "{answer}"
                );
            }
        }
    }
}

/// Opens [`idle_per_kind`] connections of each kind and leaves them where they are.
async fn open_idle<S, F, Fut>(connect: F) -> Vec<(Idle, S)>
where
    S: AsyncWrite + Unpin,
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = S>,
{
    let mut idle = Vec::new();
    for kind in Idle::ALL {
        for _ in 0..idle_per_kind() {
            let mut stream = connect().await;
            stream.write_all(&kind.bytes()).await.unwrap();
            idle.push((kind, stream));
        }
    }
    idle
}

/// Every idle connection is closed by the server, each answered as its
/// kind should be.
async fn all_closed<S: AsyncRead + Unpin + Send + 'static>(idle: Vec<(Idle, S)>) {
    let readers = idle.into_iter().map(|(kind, mut stream)| {
        tokio::spawn(async move {
            let answer = read_until_closed(&mut stream).await;
            kind.check(&answer);
        })
    });
    for reader in futures::future::join_all(readers).await {
        reader.unwrap();
    }
}

fn host_status_v2(host_id: i64, output: &str) -> Event {
    Event::from_json(&json!({"_type": 65550, "host_id": host_id, "output": output})).unwrap()
}

/// A broker's side of a BBDO connection, handshake done.
struct Peer {
    stream: TcpStream,
    raw: BytesMut,
    deframer: Deframer,
}

impl Peer {
    async fn open(addr: SocketAddr) -> Peer {
        let mut peer = Peer {
            stream: TcpStream::connect(addr).await.unwrap(),
            raw: BytesMut::new(),
            deframer: Deframer::new(),
        };
        let mut hello = BytesMut::new();
        handshake::encode(Version::V2, &[], "test-broker", &mut hello);
        peer.stream.write_all(&hello).await.unwrap();
        let welcome = peer.next_packet().await.expect("a welcome");
        handshake::parse(&welcome).unwrap();
        peer
    }

    async fn next_packet(&mut self) -> Option<bbdo::Packet> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(p) = self.deframer.next(&mut self.raw) {
                return Some(p);
            }
            let read = tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.raw))
                .await
                .expect("brokerstream answers in time");
            if !matches!(read, Ok(n) if n > 0) {
                return None;
            }
        }
    }

    /// Sends one event and `stop`; answers the events acknowledged.
    async fn send_one_and_stop(mut self, output: &str) -> i64 {
        let mut out = BytesMut::new();
        bbdo::encode(&host_status_v2(1, output), &mut out);
        bbdo::frame::encode(handshake::STOP, &[], &mut out);
        self.stream.write_all(&out).await.unwrap();
        let ack = self.next_packet().await.expect("an ack");
        assert_eq!(ack.event_type, handshake::ACK);
        let ack = bbdo::decode(ack.event_type, &ack.payload).unwrap();
        ack.get("acknowledged_events").unwrap().as_i64().unwrap()
    }
}

/// A peer that starts an event and then sends one more byte of it every
/// 200 ms, never finishing it; answers the bytes of it sent before
/// brokerstream closed the connection.
async fn trickle(mut peer: Peer) -> usize {
    let mut event = BytesMut::new();
    bbdo::encode(&host_status_v2(7, &"t".repeat(4000)), &mut event);
    let mut sent = 0;
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut buf = [0u8; 64];
    loop {
        assert!(
            sent < event.len() - 1,
            "the trickling peer is still open after {sent} bytes"
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "the trickling peer is still open after {WAIT:?}"
        );
        if peer.stream.write_all(&event[sent..sent + 1]).await.is_err() {
            return sent;
        }
        sent += 1;
        tokio::select! {
            read = peer.stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => return sent,
                Ok(_) => panic!("brokerstream acknowledged an unfinished event"),
            },
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
}

async fn healthz(server: &Server) {
    let response = server.get("/healthz").await;
    assert_eq!(response.status(), 200);
}

async fn ingest(server: &Server, i: i64) {
    let (code, answer) = server
        .post_events(&[host_status(i, 0, "while idle clients hang")])
        .await;
    assert_eq!((code, answer), (200, json!({"accepted": 1})));
}

async fn metrics(server: &Server) -> String {
    server.get("/metrics").await.text().await.unwrap()
}

fn metric(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {metrics}"))
}

#[tokio::test]
async fn hundreds_of_idle_clients_are_closed_while_probes_ingest_and_brokers_are_served() {
    raise_open_files_limit();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(config(dir.path())).await;
    let http = server.app.as_ref().unwrap().http_addr;
    let bbdo_addr = server.app.as_ref().unwrap().bbdo_addrs[0];

    // 3 × idle_per_kind() HTTP clients: silent, half a head, an unfinished body.
    let idle = open_idle(|| async move { TcpStream::connect(http).await.unwrap() }).await;
    // 3 × idle_per_kind() brokers trickling one byte per 200 ms in the middle of an event.
    let mut tricklers = Vec::new();
    for _ in 0..3 * idle_per_kind() {
        let peer = Peer::open(bbdo_addr).await;
        tricklers.push(tokio::spawn(trickle(peer)));
    }

    // All the while, the others are served.
    healthz(&server).await;
    ingest(&server, 1).await;
    let broker = Peer::open(bbdo_addr).await;
    assert_eq!(broker.send_one_and_stop("a real broker").await, 1);

    all_closed(idle).await;
    for trickler in futures::future::join_all(tricklers).await {
        // Closed although it kept sending: every byte after the first came
        // well within the stall timeout (1 s) of the one before.
        let sent = trickler.unwrap();
        assert!(sent >= 3, "closed after {sent} bytes only");
    }
    healthz(&server).await;
    ingest(&server, 2).await;

    let inputs = server.get_json("/api/v1/inputs").await;
    let listener = &inputs["listeners"][0];
    assert_eq!(listener["connections_accepted"], 3 * idle_per_kind() + 1);
    let closed = listener["connections"].as_array().unwrap();
    let stalled = closed
        .iter()
        .filter(|c| {
            c["last_error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("did not finish a packet within 1s of its first byte"))
        })
        .count();
    assert!(stalled > 0, "{inputs:#}");
    let metrics = metrics(&server).await;
    assert!(
        metric(
            &metrics,
            "brokerstream_http_timeouts_total{timeout=\"header\"}"
        ) >= 2 * idle_per_kind() as u64,
        "{metrics}"
    );
    assert_eq!(
        metric(
            &metrics,
            "brokerstream_http_timeouts_total{timeout=\"body\"}"
        ),
        idle_per_kind() as u64
    );
    server.stop().await;
}

#[tokio::test]
async fn https_connections_are_held_to_the_same_timeouts() {
    raise_open_files_limit();
    let dir = tempfile::tempdir().unwrap();
    let pki = crate::tls::pki(dir.path());
    let mut config = crate::tls::tls_config(dir.path(), &pki, 10);
    config.http = brokerstream::config::HttpSettings {
        header_timeout_secs: 1,
        body_timeout_secs: 1,
        keep_alive_timeout_secs: 1,
        ..config.http
    };
    let server = Server::start_with(config).await;
    let addr = server.app.as_ref().unwrap().http_addr;
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject as _;
    roots
        .add(rustls::pki_types::CertificateDer::from_pem_slice(pki.ca_pem.as_bytes()).unwrap())
        .unwrap();
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let connect = || {
        let connector = connector.clone();
        async move {
            let tcp = TcpStream::connect(addr).await.unwrap();
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            connector.connect(name, tcp).await.unwrap()
        }
    };

    // Handshakes finished, then nothing, half a head, an unfinished body.
    let idle = open_idle(connect).await;
    let probe = crate::tls::trusting(&pki)
        .get(format!("https://{addr}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(probe.status(), 200);
    all_closed(idle).await;

    // A kept-alive connection is closed once idle.
    let mut kept = connect().await;
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let answer = String::from_utf8_lossy(&read_until_closed(&mut kept).await).into_owned();
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(answer.ends_with("\r\n\r\nok"), "{answer}");
    server.stop().await;
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed_after_the_keep_alive_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    // The head timeout far away: the close below is the keep-alive one.
    config.http.header_timeout_secs = 3600;
    let server = Server::start_with(config).await;
    let addr = server.app.as_ref().unwrap().http_addr;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    // Two requests in a row share the connection…
    for _ in 0..2 {
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        while !answer.ends_with(b"\r\n\r\nok") {
            let mut chunk = [0u8; 1024];
            let n = tokio::time::timeout(WAIT, stream.read(&mut chunk))
                .await
                .expect("answered")
                .unwrap();
            assert!(n > 0, "closed while a request was answered");
            answer.extend_from_slice(&chunk[..n]);
        }
        assert!(answer.starts_with(b"HTTP/1.1 200 OK"));
    }
    // …then it idles, and is closed.
    assert_eq!(read_until_closed(&mut stream).await, b"");
    let metrics = metrics(&server).await;
    assert_eq!(
        metric(
            &metrics,
            "brokerstream_http_timeouts_total{timeout=\"keep_alive\"}"
        ),
        1
    );
    server.stop().await;
}

/// A connection from `local` (a loopback address).
async fn connect_from(local: &str, addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{local}:0").parse().unwrap()).unwrap();
    socket.connect(addr).await.unwrap()
}

/// One request on a fresh connection; the whole answer, up to the close.
async fn request_from(local: &str, addr: SocketAddr, request: &str) -> String {
    let mut stream = connect_from(local, addr).await;
    // A refused connection may be closed before the request is written.
    let _ = stream.write_all(request.as_bytes()).await;
    String::from_utf8_lossy(&read_until_closed(&mut stream).await).into_owned()
}

async fn wait_open(stats: &HttpStats, n: usize) {
    let deadline = Instant::now() + WAIT;
    while stats.open.load(Ordering::Relaxed) != n {
        assert!(
            Instant::now() < deadline,
            "{} connections open, not {n}",
            stats.open.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn the_http_cap_refuses_past_its_reserve_which_serves_probes_and_the_admin() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.http.header_timeout_secs = 3600;
    config.http.max_connections = 5;
    config.http.reserved_connections = 3;
    config.http.reserve_allow = vec!["127.0.0.1".into()];
    let server = Server::start_with(config).await;
    let addr = server.app.as_ref().unwrap().http_addr;
    let stats = http_stats(&server);

    // Clients that hold every ordinary slot.
    let mut holders = Vec::new();
    for _ in 0..5 {
        holders.push(connect_from("127.0.0.2", addr).await);
    }
    wait_open(&stats, 5).await;

    // The 6th connection gets a reserved slot: an API request from
    // elsewhere than reserve_allow is refused, with a 503 and a close…
    let api = "GET /api/v1/inputs HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let answer = request_from("127.0.0.2", addr, api).await;
    assert!(
        answer.starts_with("HTTP/1.1 503 Service Unavailable"),
        "{answer}"
    );
    assert!(
        answer.to_lowercase().contains("connection: close"),
        "{answer}"
    );
    assert!(
        answer.contains("only health checks and http.reserve_allow are served now"),
        "{answer}"
    );
    // …a health check is answered, from anywhere…
    let answer = request_from(
        "127.0.0.2",
        addr,
        "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    // …and so is the admin on the machine itself.
    let credentials = basic_auth("admin", ADMIN_PASSWORD);
    let admin = format!(
        "GET /api/v1/inputs HTTP/1.1\r\nHost: localhost\r\nAuthorization: {}\r\n\r\n",
        credentials.to_str().unwrap()
    );
    let answer = request_from("127.0.0.1", addr, &admin).await;
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");

    // Once the reserve is held too, a connection is closed at once and
    // counted. (A silent client keeps a reserved slot a short while only:
    // try again if one was let go in between.)
    let mut reserve_holders = Vec::new();
    for attempt in 0.. {
        assert!(attempt < 5, "never refused");
        reserve_holders.clear();
        wait_open(&stats, 5).await;
        for _ in 0..3 {
            reserve_holders.push(connect_from("127.0.0.2", addr).await);
        }
        wait_open(&stats, 8).await;
        let before = stats.refused_connections.load(Ordering::Relaxed);
        let answer = request_from("127.0.0.1", addr, &admin).await;
        if stats.refused_connections.load(Ordering::Relaxed) > before {
            assert_eq!(answer, "", "closed without an answer");
            break;
        }
    }
    assert!(stats.refused_connections.load(Ordering::Relaxed) >= 1);
    drop(reserve_holders);
    drop(holders);
    wait_open(&stats, 0).await;
    let metrics = metrics(&server).await;
    assert!(
        metric(&metrics, "brokerstream_http_refused_connections_total") >= 1,
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, "brokerstream_http_reserve_refused_requests_total"),
        1
    );
    assert!(metric(&metrics, "brokerstream_http_reserved_connections_total") >= 6);
    server.stop().await;
}

#[tokio::test]
async fn the_bbdo_cap_refuses_the_next_peer_and_counts_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.bbdo.max_connections = 2;
    config.bbdo.allow = AllowList::default();
    let server = Server::start_with(config).await;
    let addr = server.app.as_ref().unwrap().bbdo_addrs[0];

    let first = Peer::open(addr).await;
    let _second = Peer::open(addr).await;
    // The third is closed before a byte of it is read.
    let answer = request_from("127.0.0.1", addr, "not even BBDO").await;
    assert_eq!(answer, "");
    let listener = server.get_json("/api/v1/inputs").await["listeners"][0].clone();
    assert_eq!(listener["max_connections"], 2, "{listener:#}");
    assert_eq!(listener["connections_over_limit"], 1, "{listener:#}");
    assert_eq!(listener["connections_refused"], 0, "not the allow-list's");
    assert_eq!(listener["connections_accepted"], 2);
    assert!(listener["last_over_limit"]["peer"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    let metrics = metrics(&server).await;
    assert!(
        metrics.contains(&format!(
            "brokerstream_bbdo_over_limit_connections_total{{input=\"{addr}\"}} 1"
        )),
        "{metrics}"
    );

    // A session that ends makes room.
    assert_eq!(first.send_one_and_stop("first").await, 1);
    let deadline = Instant::now() + WAIT;
    let third = loop {
        let inputs = server.get_json("/api/v1/inputs").await;
        let closed = inputs["listeners"][0]["connections"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["state"] == "closed");
        if closed {
            break Peer::open(addr).await;
        }
        assert!(Instant::now() < deadline, "{inputs:#}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(third.send_one_and_stop("third").await, 1);
    let listener: Value = server.get_json("/api/v1/inputs").await["listeners"][0].clone();
    assert_eq!(listener["connections_over_limit"], 1);
    server.stop().await;
}
