//! TLS on BBDO with real peers: Python's ssl module (OpenSSL) through
//! tests/data/bbdo_tls_peer.py, which does the clear-text welcome itself and
//! then upgrades the same socket, and GnuTLS's gnutls-serv / gnutls-cli
//! (Centreon's own TLS library) behind a small relay that does the clear
//! BBDO prelude. Certificates are made at test time with the openssl CLI.
//! Bad cases sit beside good ones: each failure closes its connection only,
//! is counted and named, and the listener serves the next peer.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use brokerstream::bbdo::tls::{TlsSetting, TlsSettings};
use brokerstream::bbdo::{self, handshake, Version};
use brokerstream::config::{BbdoConfig, Config};
use brokerstream::event::Event;
use bytes::BytesMut;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::common::*;

const WAIT: Duration = Duration::from_secs(30);

fn openssl(dir: &Path, args: &[&str]) {
    let status = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("the openssl CLI runs");
    assert!(status.success(), "openssl {args:?}");
}

/// Two CAs; a server certificate for localhost and 127.0.0.1, a client
/// certificate, an expired one, all from `ca`; a client certificate from
/// `other_ca`; RFC 7919 DH parameters for Python's server.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn make(dir: &Path) -> Pki {
        let dir = dir.join("pki");
        std::fs::create_dir_all(&dir).unwrap();
        for ca in ["ca", "other_ca"] {
            openssl(
                &dir,
                &[
                    "req",
                    "-x509",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-keyout",
                    &format!("{ca}.key"),
                    "-out",
                    &format!("{ca}.pem"),
                    "-subj",
                    &format!("/CN={ca}"),
                    "-days",
                    "2",
                ],
            );
        }
        std::fs::write(
            dir.join("san.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
        )
        .unwrap();
        for (name, ca, days) in [
            ("server", "ca", "2"),
            ("client", "ca", "2"),
            ("expired", "ca", "-1"),
            ("rogue", "other_ca", "2"),
        ] {
            openssl(
                &dir,
                &[
                    "req",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-keyout",
                    &format!("{name}.key"),
                    "-out",
                    &format!("{name}.csr"),
                    "-subj",
                    "/CN=localhost",
                ],
            );
            openssl(
                &dir,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &format!("{name}.csr"),
                    "-CA",
                    &format!("{ca}.pem"),
                    "-CAkey",
                    &format!("{ca}.key"),
                    "-CAcreateserial",
                    "-days",
                    days,
                    "-extfile",
                    "san.ext",
                    "-out",
                    &format!("{name}.pem"),
                ],
            );
        }
        openssl(
            &dir,
            &[
                "genpkey",
                "-genparam",
                "-algorithm",
                "DH",
                "-pkeyopt",
                "group:ffdhe2048",
                "-out",
                "dh.pem",
            ],
        );
        Pki { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_str().unwrap().to_owned()
    }

    /// brokerstream's settings with `name`'s key and certificate.
    fn settings(&self, tls: TlsSetting, name: &str, ca: bool, host: Option<&str>) -> TlsSettings {
        TlsSettings {
            tls,
            private_key: Some(self.dir.join(format!("{name}.key"))),
            public_cert: Some(self.dir.join(format!("{name}.pem"))),
            ca_certificate: ca.then(|| self.dir.join("ca.pem")),
            tls_hostname: host.map(str::to_owned),
        }
    }

    /// The Python peer's settings.
    fn peer(&self, name: Option<&str>, ca: bool, host: Option<&str>) -> Value {
        let mut v = json!({"mode": "certificate", "dh": self.path("dh.pem")});
        if let Some(name) = name {
            v["cert"] = json!(self.path(&format!("{name}.pem")));
            v["key"] = json!(self.path(&format!("{name}.key")));
        }
        if ca {
            v["ca"] = json!(self.path("ca.pem"));
        }
        if let Some(host) = host {
            v["hostname"] = json!(host);
        }
        v
    }

    fn anonymous(&self) -> Value {
        json!({"mode": "anonymous", "dh": self.path("dh.pem")})
    }
}

fn anonymous(tls: TlsSetting) -> TlsSettings {
    TlsSettings {
        tls,
        ..TlsSettings::default()
    }
}

fn config(dir: &Path, listener_tls: TlsSettings) -> Config {
    let mut bbdo = BbdoConfig::disabled();
    bbdo.listen = vec!["127.0.0.1:0".parse().unwrap()];
    bbdo.tls = listener_tls;
    Config {
        data_dir: dir.to_owned(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        bbdo,
        ..Config::default()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn welcome(extensions: &[&str]) -> String {
    let mut out = BytesMut::new();
    handshake::encode(Version::V2, extensions, "python", &mut out);
    hex(&out)
}

/// `n` BBDO 2 host_status events for host ids `first..first+n`, then a
/// stop, which brokerstream answers with an ack of everything it holds.
fn events(first: i64, n: i64) -> String {
    let mut out = BytesMut::new();
    for id in first..first + n {
        let e = Event::from_json(&json!({
            "_type": 65550, "host_id": id, "state": 0, "output": "tls",
            "last_check": 1_732_000_000, "check_interval": 5.0,
        }))
        .unwrap();
        bbdo::encode(&e, &mut out);
    }
    bbdo::frame::encode(handshake::STOP, &[], &mut out);
    hex(&out)
}

fn script() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/bbdo_tls_peer.py").to_owned()
}

/// Runs the Python peer against a listener; its last JSON line.
async fn python_connect(addr: SocketAddr, args: Value) -> Value {
    let mut args = args;
    args["role"] = json!("connect");
    args["port"] = json!(addr.port());
    let output = tokio::time::timeout(
        WAIT,
        tokio::process::Command::new("python3")
            .arg(script())
            .arg(args.to_string())
            .output(),
    )
    .await
    .expect("the Python peer ends")
    .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stdout.lines().last().unwrap_or("{}");
    serde_json::from_str(last).unwrap_or_else(|_| json!({"error": stdout.to_string()}))
}

/// A Python peer that accepts: its port, and the child to wait for.
async fn python_accept(args: Value) -> (u16, tokio::process::Child) {
    let mut args = args;
    args["role"] = json!("accept");
    let mut child = tokio::process::Command::new("python3")
        .arg(script())
        .arg(args.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 runs");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next_line().await.unwrap().expect("the port line");
    let port = serde_json::from_str::<Value>(&first).unwrap()["port"]
        .as_u64()
        .unwrap() as u16;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (port, child)
}

async fn inputs(server: &Server) -> Value {
    server.get_json("/api/v1/inputs").await
}

/// Polls `GET /api/v1/inputs` until `ready`.
async fn wait_inputs(server: &Server, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let all = inputs(server).await;
        if ready(&all) {
            return all;
        }
        assert!(Instant::now() < deadline, "{what}: {all:#}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn last_connection(all: &Value, kind: &str) -> Value {
    all[kind][0]["connections"]
        .as_array()
        .and_then(|c| c.last().cloned())
        .unwrap_or(Value::Null)
}

async fn output(server: &Server, dir: &Path) -> PathBuf {
    let path = dir.join("tls.log");
    server
        .create_file_output(
            "tls",
            &path,
            json!({"parameters": [
                {"name": "path", "type": "string", "value": path.to_str().unwrap()},
                {"name": "max_buffer_size", "type": "number", "value": "1000"},
                {"name": "max_buffer_age", "type": "number", "value": "0.05"},
            ]}),
        )
        .await;
    path
}

/// Each host id of `ids` exactly once in the file output.
async fn assert_once(path: &Path, ids: std::ops::Range<i64>) {
    let lines = wait_lines(path, ids.clone().count()).await;
    let mut seen: Vec<i64> = lines
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["host_id"]
                .as_i64()
                .unwrap()
        })
        .collect();
    seen.sort();
    assert_eq!(seen, ids.collect::<Vec<_>>());
}

fn listener_addr(server: &Server) -> SocketAddr {
    server.app.as_ref().unwrap().bbdo_addrs[0]
}

#[tokio::test]
async fn python_client_anonymous_tls_then_events_once_and_acked_once() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::make(dir.path());
    let server = Server::start_with(config(dir.path(), anonymous(TlsSetting::Auto))).await;
    let path = output(&server, dir.path()).await;
    let addr = listener_addr(&server);
    let r = python_connect(
        addr,
        json!({"welcome": welcome(&["TLS"]), "tls": pki.anonymous(),
               "events": events(1, 5), "expect_acks": 5}),
    )
    .await;
    assert_eq!(r["acked"], 5, "{r}");
    assert_eq!(r["tls_version"], "TLSv1.2", "{r}");
    assert_eq!(r["cipher"], "ADH-AES256-GCM-SHA384", "{r}");
    // brokerstream listed TLS in clear in its welcome.
    let mut answer = r["welcome"].as_str().unwrap().to_owned();
    answer.make_ascii_uppercase();
    assert!(answer.contains(&hex(b"TLS").to_uppercase()), "{r}");
    assert_once(&path, 1..6).await;
    let all = wait_inputs(&server, "closed", |a| {
        last_connection(a, "listeners")["state"] == "closed"
    })
    .await;
    let c = last_connection(&all, "listeners");
    assert_eq!(c["tls"], "anonymous", "{all:#}");
    assert_eq!(c["tls_version"], "TLSv1.2", "{all:#}");
    assert_eq!(c["events_ingested"], 5, "{all:#}");
    assert_eq!(c["events_acknowledged"], 5, "{all:#}");
    assert_eq!(all["listeners"][0]["tls"]["mode"], "anonymous");
    assert_eq!(all["listeners"][0]["tls_errors"]["handshake_failures"], 0);
    server.stop().await;
}

#[tokio::test]
async fn python_client_compresses_every_packet_inside_tls() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::make(dir.path());
    let server = Server::start_with(config(dir.path(), anonymous(TlsSetting::Yes))).await;
    let path = output(&server, dir.path()).await;
    let r = python_connect(
        listener_addr(&server),
        json!({"welcome": welcome(&["TLS", "COMPRESSION"]), "tls": pki.anonymous(),
               "events": events(10, 20), "compress": true, "expect_acks": 20}),
    )
    .await;
    assert_eq!(r["acked"], 20, "{r}");
    assert_once(&path, 10..30).await;
    let all = wait_inputs(&server, "closed", |a| {
        last_connection(a, "listeners")["state"] == "closed"
    })
    .await;
    let c = last_connection(&all, "listeners");
    assert_eq!(c["tls"], "anonymous", "{all:#}");
    assert_eq!(c["compressed"], true, "{all:#}");
    assert_eq!(c["events_acknowledged"], 20, "{all:#}");
    server.stop().await;
}

#[tokio::test]
async fn certificate_mode_listener_verifies_python_clients() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::make(dir.path());
    let settings = pki.settings(TlsSetting::Yes, "server", true, Some("localhost"));
    let server = Server::start_with(config(dir.path(), settings)).await;
    let path = output(&server, dir.path()).await;
    let addr = listener_addr(&server);
    // Good: a client certificate from our CA, and the server checked too.
    let r = python_connect(
        addr,
        json!({"welcome": welcome(&["TLS"]), "tls": pki.peer(Some("client"), true, Some("localhost")),
               "events": events(1, 3), "expect_acks": 3}),
    )
    .await;
    assert_eq!(r["acked"], 3, "{r}");
    assert_eq!(r["tls_version"], "TLSv1.3", "{r}");
    // Bad: signed by another CA, expired, no certificate at all.
    for (n, bad) in [Some("rogue"), Some("expired"), None]
        .into_iter()
        .enumerate()
    {
        let r = python_connect(
            addr,
            json!({"welcome": welcome(&["TLS"]), "tls": pki.peer(bad, false, None),
                   "events": events(100, 1), "expect_acks": 1}),
        )
        .await;
        assert!(r["error"].is_string(), "{bad:?} must fail: {r}");
        wait_inputs(&server, "handshake failure counted", |a| {
            a["listeners"][0]["tls_errors"]["handshake_failures"] == n + 1
        })
        .await;
    }
    let all = inputs(&server).await;
    let errors: Vec<String> = all["listeners"][0]["connections"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["last_error"]["message"].as_str().map(str::to_owned))
        .collect();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("TLS: handshake failed") && e.contains("expired")),
        "{errors:#?}"
    );
    // The listener still serves a good peer, and nothing was taken twice.
    let r = python_connect(
        addr,
        json!({"welcome": welcome(&["TLS"]), "tls": pki.peer(Some("client"), true, Some("localhost")),
               "events": events(4, 2), "expect_acks": 2}),
    )
    .await;
    assert_eq!(r["acked"], 2, "{r}");
    assert_once(&path, 1..6).await;
    server.stop().await;
}

#[tokio::test]
async fn broken_handshakes_close_one_connection_and_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::make(dir.path());
    let server = Server::start_with(config(dir.path(), anonymous(TlsSetting::Auto))).await;
    let path = output(&server, dir.path()).await;
    let addr = listener_addr(&server);
    // TLS agreed, then bytes that are no ClientHello.
    // (The peer may see its connection reset: brokerstream closes it.)
    python_connect(
        addr,
        json!({"welcome": welcome(&["TLS"]), "garbage": hex(b"GET / HTTP/1.0\r\n\r\n"),
               "events": "", "expect_acks": 0}),
    )
    .await;
    wait_inputs(&server, "garbage", |a| {
        a["listeners"][0]["tls_errors"]["handshake_failures"] == 1
    })
    .await;
    // A peer that starts a ClientHello and is gone.
    python_connect(
        addr,
        json!({"welcome": welcome(&["TLS"]), "drop_mid_handshake": true}),
    )
    .await;
    let all = wait_inputs(&server, "dropped", |a| {
        a["listeners"][0]["tls_errors"]["handshake_failures"] == 2
    })
    .await;
    let c = last_connection(&all, "listeners");
    assert!(
        c["last_error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("TLS: handshake failed")),
        "{all:#}"
    );
    // And the next peer is served.
    let r = python_connect(
        addr,
        json!({"welcome": welcome(&["TLS"]), "tls": pki.anonymous(),
               "events": events(1, 2), "expect_acks": 2}),
    )
    .await;
    assert_eq!(r["acked"], 2, "{r}");
    assert_once(&path, 1..3).await;
    server.stop().await;
}

#[tokio::test]
async fn a_peer_that_insists_on_tls_while_it_is_off_gets_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::make(dir.path());
    let server = Server::start_with(config(dir.path(), TlsSettings::default())).await;
    let r = python_connect(
        listener_addr(&server),
        json!({"welcome": welcome(&["TLS"]), "tls": pki.anonymous(),
               "events": events(1, 1), "expect_acks": 1}),
    )
    .await;
    assert!(r["error"].is_string(), "{r}");
    // brokerstream did not list TLS.
    let answer = r["welcome"].as_str().unwrap();
    assert!(!answer.contains(&hex(b"TLS")), "{r}");
    let all = wait_inputs(&server, "error", |a| {
        last_connection(a, "listeners")["state"] == "closed"
    })
    .await;
    assert_eq!(all["listeners"][0]["tls_errors"]["offered_while_off"], 1);
    let c = last_connection(&all, "listeners");
    let m = c["last_error"]["message"].as_str().unwrap_or_default();
    assert!(m.contains("TLS is off here"), "{all:#}");
    assert_eq!(c["tls"], "none");
    let metrics = server.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("brokerstream_bbdo_tls_errors_total{")
                && l.contains("reason=\"offered_while_off\"} 1")),
        "{metrics}"
    );
    server.stop().await;
}

#[tokio::test]
async fn tls_yes_against_a_peer_without_tls_goes_on_in_clear_and_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(config(dir.path(), anonymous(TlsSetting::Yes))).await;
    let path = output(&server, dir.path()).await;
    let r = python_connect(
        listener_addr(&server),
        json!({"welcome": welcome(&[]), "events": events(1, 2), "expect_acks": 2}),
    )
    .await;
    assert_eq!(r["acked"], 2, "{r}");
    assert_once(&path, 1..3).await;
    let all = inputs(&server).await;
    assert_eq!(all["listeners"][0]["tls_errors"]["refused_by_peer"], 1);
    server.stop().await;
}

fn connector_config(dir: &Path, port: u16, tls: TlsSettings) -> Config {
    let mut config = config(dir, TlsSettings::default());
    config.bbdo.listen.clear();
    config.bbdo.connectors = vec![brokerstream::bbdo::connector::ConnectorConfig {
        address: format!("127.0.0.1:{port}"),
        version: Version::V2,
        tls,
    }];
    config
}

#[tokio::test]
async fn brokerstream_dials_python_servers_in_both_modes() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::make(dir.path());
    for (round, (ours, theirs, mode, version)) in [
        (
            anonymous(TlsSetting::Auto),
            pki.anonymous(),
            "anonymous",
            "TLSv1.2",
        ),
        (
            pki.settings(TlsSetting::Yes, "client", true, Some("localhost")),
            pki.peer(Some("server"), true, None),
            "certificate",
            "TLSv1.3",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let data = dir.path().join(format!("round{round}"));
        std::fs::create_dir_all(&data).unwrap();
        let (port, mut child) = python_accept(json!({
            "welcome": welcome(&["TLS"]), "tls": theirs, "wait_stdin": true,
            "events": events(1, 4), "expect_acks": 4,
        }))
        .await;
        let server = Server::start_with(connector_config(&data, port, ours)).await;
        let path = output(&server, &data).await;
        // The events go once the output reads the journal.
        let mut go = child.stdin.take().unwrap();
        go.write_all(b"go\n").await.unwrap();
        drop(go);
        let status = tokio::time::timeout(WAIT, child.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(status.success(), "the Python server got its acks ({mode})");
        assert_once(&path, 1..5).await;
        let all = inputs(&server).await;
        let c = &all["connectors"][0]["connections"][0];
        assert_eq!(c["tls"], mode, "{all:#}");
        assert_eq!(c["tls_version"], version, "{all:#}");
        assert_eq!(c["events_acknowledged"], 4, "{all:#}");
        server.stop().await;
    }
}

#[tokio::test]
async fn a_connector_with_tls_hostname_refuses_a_server_of_another_name() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::make(dir.path());
    let (port, _child) = python_accept(json!({
        "welcome": welcome(&["TLS"]), "tls": pki.peer(Some("server"), false, None),
        "events": events(1, 1), "expect_acks": 1,
    }))
    .await;
    let ours = pki.settings(TlsSetting::Yes, "client", true, Some("central.example"));
    let server = Server::start_with(connector_config(dir.path(), port, ours)).await;
    let all = wait_inputs(&server, "hostname refused", |a| {
        a["connectors"][0]["tls_errors"]["handshake_failures"]
            .as_u64()
            .is_some_and(|n| n >= 1)
    })
    .await;
    let c = &all["connectors"][0]["connections"][0];
    let m = c["last_error"]["message"].as_str().unwrap_or_default();
    assert!(m.contains("TLS: handshake failed"), "{all:#}");
    assert_eq!(c["events_ingested"], 0);
    server.stop().await;
}

#[tokio::test]
async fn bad_tls_files_stop_the_start_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::make(dir.path());
    let cases = [
        (
            TlsSettings {
                private_key: Some(pki.dir.join("missing.key")),
                ..pki.settings(TlsSetting::Yes, "server", false, None)
            },
            "cannot read",
        ),
        (
            TlsSettings {
                private_key: Some(pki.dir.join("client.key")),
                ..pki.settings(TlsSetting::Yes, "server", false, None)
            },
            "does not match",
        ),
        (
            TlsSettings {
                ca_certificate: Some(pki.dir.join("san.ext")),
                ..pki.settings(TlsSetting::Yes, "server", false, None)
            },
            "ca_certificate",
        ),
        (
            TlsSettings {
                public_cert: None,
                ..pki.settings(TlsSetting::Yes, "server", false, None)
            },
            "without public_cert",
        ),
    ];
    for (settings, expected) in cases {
        let e = settings
            .build(brokerstream::bbdo::tls::TlsSide::Server)
            .unwrap_err()
            .to_string();
        assert!(e.contains(expected), "{expected}: {e}");
    }
}

// ---- GnuTLS

/// Does the clear BBDO prelude with a listener, then relays bytes between
/// it and one TCP client (gnutls-cli), which runs the TLS handshake and
/// sends its standard input as TLS data.
async fn relay_to_listener(addr: SocketAddr, extensions: &[&str]) -> u16 {
    let front = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = front.local_addr().unwrap().port();
    let mut hello = BytesMut::new();
    handshake::encode(Version::V2, extensions, "gnutls", &mut hello);
    let mut back = tokio::net::TcpStream::connect(addr).await.unwrap();
    back.write_all(&hello).await.unwrap();
    let mut header = [0u8; 16];
    back.read_exact(&mut header).await.unwrap();
    let size = u16::from_be_bytes([header[2], header[3]]) as usize;
    let mut payload = vec![0u8; size];
    back.read_exact(&mut payload).await.unwrap();
    tokio::spawn(async move {
        let (mut client, _) = front.accept().await.unwrap();
        let _ = tokio::io::copy_bidirectional(&mut client, &mut back).await;
    });
    port
}

async fn gnutls_cli(port: u16, priority: &str, extra: &[&str], stdin: Vec<u8>) -> bool {
    let mut child = tokio::process::Command::new("gnutls-cli")
        .args([
            "--no-ca-verification",
            "--priority",
            priority,
            "-p",
            &port.to_string(),
        ])
        .args(extra)
        .arg("127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("gnutls-cli runs (Debian package gnutls-bin)");
    let mut input = child.stdin.take().unwrap();
    input.write_all(&stdin).await.unwrap();
    drop(input);
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .unwrap()
        .unwrap();
    status.success()
}

fn bytes_of(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

#[tokio::test]
async fn gnutls_cli_sends_events_to_a_listener_in_both_modes() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::make(dir.path());
    let modes = [
        (
            anonymous(TlsSetting::Auto),
            "NORMAL:-VERS-ALL:+VERS-TLS1.2:+ANON-DH",
            vec![],
            "anonymous",
        ),
        (
            pki.settings(TlsSetting::Yes, "server", true, None),
            "NORMAL",
            vec![
                "--x509certfile".to_owned(),
                pki.path("client.pem"),
                "--x509keyfile".to_owned(),
                pki.path("client.key"),
            ],
            "certificate",
        ),
    ];
    for (round, (ours, priority, extra, mode)) in modes.into_iter().enumerate() {
        let data = dir.path().join(format!("g{round}"));
        std::fs::create_dir_all(&data).unwrap();
        let server = Server::start_with(config(&data, ours)).await;
        let path = output(&server, &data).await;
        let port = relay_to_listener(listener_addr(&server), &["TLS"]).await;
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        assert!(
            gnutls_cli(port, priority, &extra, bytes_of(&events(1, 3))).await,
            "gnutls-cli completed the handshake ({mode})"
        );
        assert_once(&path, 1..4).await;
        // gnutls-cli says bye once its input ends, maybe before the ack
        // comes: the ack is checked as never more than what was held.
        let all = wait_inputs(&server, "ingested", |a| {
            last_connection(a, "listeners")["events_ingested"] == 3
        })
        .await;
        let c = last_connection(&all, "listeners");
        assert_eq!(c["tls"], mode, "{all:#}");
        assert!(c["events_acknowledged"].as_u64().unwrap() <= 3, "{all:#}");
        server.stop().await;
    }
}

/// The connector side against gnutls-serv: a relay accepts brokerstream,
/// answers its welcome in clear, then hands the socket's bytes to
/// gnutls-serv, whose handshake brokerstream must complete.
#[tokio::test]
async fn brokerstream_completes_handshakes_with_gnutls_serv_in_both_modes() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::make(dir.path());
    let modes = [
        (
            anonymous(TlsSetting::Auto),
            vec!["--priority", "NORMAL:-VERS-ALL:+VERS-TLS1.2:+ANON-DH"]
                .into_iter()
                .map(str::to_owned)
                .collect::<Vec<_>>(),
            "anonymous",
        ),
        (
            pki.settings(TlsSetting::Yes, "client", true, Some("localhost")),
            vec![
                "--x509certfile".to_owned(),
                pki.path("server.pem"),
                "--x509keyfile".to_owned(),
                pki.path("server.key"),
            ],
            "certificate",
        ),
    ];
    for (round, (ours, args, mode)) in modes.into_iter().enumerate() {
        let data = dir.path().join(format!("s{round}"));
        std::fs::create_dir_all(&data).unwrap();
        let gnutls_port = free_port();
        let mut serv = tokio::process::Command::new("gnutls-serv")
            .args(["-p", &gnutls_port.to_string()])
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("gnutls-serv runs (Debian package gnutls-bin)");
        // gnutls-serv is ready once it accepts.
        let deadline = Instant::now() + WAIT;
        while tokio::net::TcpStream::connect(("127.0.0.1", gnutls_port))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "gnutls-serv never listened");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let front = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = front.local_addr().unwrap().port();
        let relay = tokio::spawn(async move {
            let (mut peer, _) = front.accept().await.unwrap();
            let mut header = [0u8; 16];
            peer.read_exact(&mut header).await.unwrap();
            let size = u16::from_be_bytes([header[2], header[3]]) as usize;
            let mut payload = vec![0u8; size];
            peer.read_exact(&mut payload).await.unwrap();
            let mut hello = BytesMut::new();
            handshake::encode(Version::V2, &["TLS"], "gnutls", &mut hello);
            peer.write_all(&hello).await.unwrap();
            let mut back = tokio::net::TcpStream::connect(("127.0.0.1", gnutls_port))
                .await
                .unwrap();
            let _ = tokio::io::copy_bidirectional(&mut peer, &mut back).await;
        });
        let server = Server::start_with(connector_config(&data, port, ours)).await;
        let all = wait_inputs(&server, "TLS with gnutls-serv", |a| {
            a["connectors"][0]["connections"][0]["tls"] == mode
        })
        .await;
        assert_eq!(all["connectors"][0]["tls_errors"]["handshake_failures"], 0);
        // The overview's inputs panel says so too (the session is open).
        let html = server.get("/").await.text().await.unwrap();
        let version = if mode == "anonymous" {
            "TLSv1.2"
        } else {
            "TLSv1.3"
        };
        assert!(html.contains(&format!("TLS {mode}, {version}")), "{mode}");
        server.stop().await;
        relay.abort();
        let _ = serv.kill().await;
    }
}

#[test]
fn the_service_refuses_to_start_with_a_key_that_does_not_match_its_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::make(dir.path());
    let file = dir.path().join("brokerstream.toml");
    std::fs::write(
        &file,
        format!(
            "[bbdo]\ntls = \"yes\"\nprivate_key = \"{}\"\npublic_cert = \"{}\"\n",
            pki.path("client.key"),
            pki.path("server.pem")
        ),
    )
    .unwrap();
    crate::tls::fails_with(
        dir.path(),
        &["--config", file.to_str().unwrap()],
        "does not match public_cert",
    );
    // A connector's missing CA names the connector and the file.
    std::fs::write(
        &file,
        format!(
            "[[bbdo.connectors]]\naddress = \"127.0.0.1:1\"\ntls = \"auto\"\nprivate_key = \"{}\"\ncertificate = \"{}\"\nca_certificate = \"{}\"\n",
            pki.path("client.key"),
            pki.path("client.pem"),
            pki.path("nowhere.pem")
        ),
    )
    .unwrap();
    crate::tls::fails_with(
        dir.path(),
        &["--config", file.to_str().unwrap()],
        "bbdo.connectors `127.0.0.1:1`: TLS: ca_certificate",
    );
}
