//! HTTPS: the API over TLS with a test CA's certificate, plain HTTP refused
//! on the TLS port, silent clients that block no one, bad certificate or
//! key files that stop the binary with a clear message, and the client
//! address handlers can read behind both kinds of listener.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::routing::get;
use brokerstream::config::{BbdoConfig, Config, HttpSettings};
use brokerstream::web::server::{load_tls_config, HttpListener};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::*;

const WAIT: Duration = Duration::from_secs(20);

/// A CA, and a certificate it signed for 127.0.0.1 and localhost, as PEM
/// files in `dir`.
pub struct Pki {
    pub ca_pem: String,
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub fn pki(dir: &Path) -> Pki {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "brokerstream test CA");
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca = params.self_signed(&ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();
    let cert = dir.join("server.crt");
    let key = dir.join("server.key");
    std::fs::write(&cert, leaf.pem()).unwrap();
    std::fs::write(&key, leaf_key.serialize_pem()).unwrap();
    Pki {
        ca_pem: ca.pem(),
        cert,
        key,
    }
}

pub fn trusting(pki: &Pki) -> reqwest::Client {
    admin_client_builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).unwrap())
        .build()
        .unwrap()
}

pub fn tls_config(dir: &Path, pki: &Pki, handshake_timeout_secs: u64) -> Config {
    Config {
        data_dir: dir.to_owned(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        bbdo: BbdoConfig::disabled(),
        http: HttpSettings {
            tls_cert: Some(pki.cert.clone()),
            tls_key: Some(pki.key.clone()),
            tls_handshake_timeout_secs: handshake_timeout_secs,
            ..HttpSettings::default()
        },
        ..Config::default()
    }
}

#[tokio::test]
async fn the_api_over_https_with_the_configured_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let server = Server::start_with(tls_config(dir.path(), &pki, 10)).await;
    let app = server.app.as_ref().unwrap();
    assert!(app.http_tls);
    assert!(app.context.tls, "the web layer knows, for Secure cookies");
    let base = format!("https://{}", app.http_addr);
    let client = trusting(&pki);

    let response = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let path = dir.path().join("tls.log");
    let response = client
        .post(format!("{base}/api/v1/outputs"))
        .json(&json!({
            "name": "tls",
            "kind": "file",
            "parameters": [{"name": "path", "type": "string", "value": path.to_str().unwrap()}],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let response = client
        .post(format!("{base}/api/v1/events"))
        .body(format!("{}\n", host_status(1, 0, "over TLS")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(wait_lines(&path, 1).await[0].contains("over TLS"));

    // Plain HTTP to the TLS port gets no answer.
    let plain = reqwest::Client::new()
        .get(format!("http://{}/healthz", app.http_addr))
        .send()
        .await;
    assert!(plain.is_err(), "{plain:?}");
    // Nor does a client that does not trust the certificate.
    let untrusting = reqwest::Client::new()
        .get(format!("{base}/healthz"))
        .send()
        .await;
    assert!(untrusting.is_err(), "{untrusting:?}");
    // The server still serves after both.
    let response = client.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    // Over HTTPS, browsers are told to stay on HTTPS, and the login form's
    // cookie (as the session's) never travels in clear.
    assert!(response.headers()["strict-transport-security"]
        .to_str()
        .unwrap()
        .starts_with("max-age="));
    let anonymous = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let login = anonymous.get(format!("{base}/login")).send().await.unwrap();
    let cookie = login.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.contains("; Secure"), "{cookie}");
    server.stop().await;
}

#[tokio::test]
async fn a_silent_or_slow_client_blocks_no_one() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    // A handshake timeout far longer than the test may take: a listener
    // that handshakes in its accept loop would hold the request below.
    let server = Server::start_with(tls_config(dir.path(), &pki, 3600)).await;
    let addr = server.app.as_ref().unwrap().http_addr;
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).unwrap())
        .timeout(WAIT)
        .build()
        .unwrap();

    // One says nothing; another starts a handshake record and stops.
    let _silent = TcpStream::connect(addr).await.unwrap();
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00])
        .await
        .unwrap();
    for _ in 0..3 {
        let response = client
            .get(format!("https://{addr}/healthz"))
            .send()
            .await
            .expect("answered while two clients hang in their handshakes");
        assert_eq!(response.status(), 200);
    }
    // Clients still hanging at shutdown do not hold it up.
    server.stop().await;
}

#[tokio::test]
async fn handshakes_that_do_not_finish_are_closed_after_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let server = Server::start_with(tls_config(dir.path(), &pki, 1)).await;
    let addr = server.app.as_ref().unwrap().http_addr;
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00])
        .await
        .unwrap();
    for stream in [&mut silent, &mut slow] {
        let mut rest = Vec::new();
        let read = tokio::time::timeout(WAIT, stream.read_to_end(&mut rest))
            .await
            .expect("closed after the handshake timeout");
        assert!(
            read.is_err() || rest.is_empty(),
            "closed without a byte: {rest:?}"
        );
    }
    let response = trusting(&pki)
        .get(format!("https://{addr}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    server.stop().await;
}

#[tokio::test]
async fn handlers_can_read_the_client_address_over_plain_http_and_tls() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let router = || {
        axum::Router::new().route(
            "/whoami",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.ip().to_string() }),
        )
    };
    let localhost: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let tls = load_tls_config(&pki.cert, &pki.key).unwrap();
    for (scheme, tls, client) in [
        ("http", None, reqwest::Client::new()),
        ("https", Some(tls), trusting(&pki)),
    ] {
        let listener = HttpListener::bind(localhost, tls, Duration::from_secs(5))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = tokio_util::sync::CancellationToken::new();
        let stopped = stop.clone();
        let server =
            tokio::spawn(listener.serve(router(), async move { stopped.cancelled().await }));
        let answer = client
            .get(format!("{scheme}://{addr}/whoami"))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        assert_eq!(answer.text().await.unwrap(), "127.0.0.1", "{scheme}");
        stop.cancel();
        server.await.unwrap().unwrap();
    }
}

/// Runs `serve` with `args`, expecting it to exit at once with an error
/// that says `expected`.
pub(crate) fn fails_with(dir: &Path, args: &[&str], expected: &str) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_brokerstream"))
        .args(["serve", "--bbdo-addr", "none", "--http-addr", "127.0.0.1:0"])
        .args(args)
        .env("BROKERSTREAM_DATA_DIR", dir.join("data"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A service that starts anyway must fail the test, not hang it.
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{args:?}: the service started instead of refusing");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success(), "{args:?}");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains(expected), "{args:?}: {stderr}");
}

#[tokio::test]
async fn the_binary_serves_https_from_flags_and_refuses_bad_files_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let (cert, key) = (pki.cert.to_str().unwrap(), pki.key.to_str().unwrap());
    let port = free_port();
    let p = Process::spawn(
        &["serve", "--http-addr", &format!("127.0.0.1:{port}")],
        &[
            (
                "BROKERSTREAM_DATA_DIR",
                dir.path().join("data").to_str().unwrap(),
            ),
            ("BROKERSTREAM_TLS_CERT", cert),
            ("BROKERSTREAM_TLS_KEY", key),
        ],
        port,
    );
    let client = trusting(&pki);
    let deadline = Instant::now() + WAIT;
    loop {
        let answer = client
            .get(format!("https://127.0.0.1:{port}/healthz"))
            .send()
            .await;
        if answer.is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(Instant::now() < deadline, "no HTTPS answer");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(p.terminate().await.success());

    let missing = dir.path().join("missing.pem");
    let missing = missing.to_str().unwrap();
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a PEM file\n").unwrap();
    let garbage = garbage.to_str().unwrap();
    let other_key = dir.path().join("other.key");
    std::fs::write(
        &other_key,
        rcgen::KeyPair::generate().unwrap().serialize_pem(),
    )
    .unwrap();
    let other_key = other_key.to_str().unwrap();
    fails_with(
        dir.path(),
        &["--tls-cert", missing, "--tls-key", key],
        &format!("cannot read the TLS certificate file {missing}"),
    );
    fails_with(
        dir.path(),
        &["--tls-cert", cert, "--tls-key", missing],
        &format!("cannot read the TLS key file {missing}"),
    );
    fails_with(
        dir.path(),
        &["--tls-cert", garbage, "--tls-key", key],
        &format!("the TLS certificate file {garbage} holds no certificate"),
    );
    fails_with(
        dir.path(),
        &["--tls-cert", cert, "--tls-key", garbage],
        &format!("the TLS key file {garbage} holds no private key"),
    );
    fails_with(
        dir.path(),
        &["--tls-cert", cert, "--tls-key", other_key],
        "cannot be used together",
    );
    fails_with(
        dir.path(),
        &["--tls-cert", cert],
        "a TLS certificate is given without its key",
    );
    // The same from the configuration file.
    let config = dir.path().join("tls.toml");
    std::fs::write(
        &config,
        format!("[http]\ntls_cert = {missing:?}\ntls_key = {key:?}\n"),
    )
    .unwrap();
    fails_with(
        dir.path(),
        &["--config", config.to_str().unwrap()],
        "cannot read the TLS certificate file",
    );
}
