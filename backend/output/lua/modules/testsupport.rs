//! What the module tests share: a Lua state with the modules, and small
//! loopback servers (HTTP, HTTPS with certificates made at test time, and a
//! forward/CONNECT proxy with Basic authentication). They serve one request
//! per connection and live as long as the test process.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use mlua::Lua;

pub fn lua() -> Lua {
    let lua = Lua::new();
    super::register(&lua).expect("register the modules");
    lua
}

#[derive(Clone, Debug, Default)]
pub struct Recorded {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Waits this long before answering (for timeouts).
    pub delay: Duration,
}

impl Reply {
    pub fn new(status: u16, body: &str) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: body.as_bytes().to_vec(),
            delay: Duration::ZERO,
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn delayed(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
}

type Handler = dyn Fn(&Recorded) -> Reply + Send + Sync;

pub struct Server {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
}

impl Server {
    pub fn start(handler: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> Server {
        Self::spawn(None, Arc::new(handler))
    }

    pub fn start_tls(
        config: rustls::ServerConfig,
        handler: impl Fn(&Recorded) -> Reply + Send + Sync + 'static,
    ) -> Server {
        Self::spawn(Some(Arc::new(config)), Arc::new(handler))
    }

    fn spawn(tls: Option<Arc<rustls::ServerConfig>>, handler: Arc<Handler>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let recorded = requests.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let handler = handler.clone();
                let recorded = recorded.clone();
                let tls = tls.clone();
                thread::spawn(move || {
                    let _ = match tls {
                        None => serve_one(stream, &*handler, &recorded),
                        Some(config) => {
                            let Ok(conn) = rustls::ServerConnection::new(config) else {
                                return;
                            };
                            serve_one(rustls::StreamOwned::new(conn, stream), &*handler, &recorded)
                        }
                    };
                });
            }
        });
        Server { addr, requests }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().expect("lock").clone()
    }
}

fn read_head(reader: &mut impl BufRead) -> std::io::Result<(String, Vec<(String, String)>)> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let request_line = line.trim_end().to_string();
    let mut headers = Vec::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            break;
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((n, v)) = l.split_once(':') {
            headers.push((n.trim().to_string(), v.trim().to_string()));
        }
    }
    Ok((request_line, headers))
}

fn content_length(headers: &[(String, String)]) -> usize {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

fn serve_one<S: Read + Write>(
    stream: S,
    handler: &Handler,
    recorded: &Mutex<Vec<Recorded>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    let (request_line, headers) = read_head(&mut reader)?;
    let mut body = vec![0; content_length(&headers)];
    reader.read_exact(&mut body)?;
    let mut parts = request_line.split(' ');
    let request = Recorded {
        method: parts.next().unwrap_or_default().to_string(),
        target: parts.next().unwrap_or_default().to_string(),
        headers,
        body,
    };
    recorded.lock().expect("lock").push(request.clone());
    let reply = handler(&request);
    thread::sleep(reply.delay);
    let mut out = format!("HTTP/1.1 {} Whatever\r\n", reply.status);
    for (n, v) in &reply.headers {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    out.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        reply.body.len()
    ));
    let stream = reader.get_mut();
    stream.write_all(out.as_bytes())?;
    stream.write_all(&reply.body)?;
    stream.flush()
}

/// A port on which nothing listens.
pub fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    port
}

/// Certificates made at test time: a CA, and leaves it signed.
pub struct Pki {
    ca_cert: rcgen::Certificate,
    ca_key: rcgen::KeyPair,
    pub dir: tempfile::TempDir,
}

pub struct Leaf {
    pub cert_der: rustls::pki_types::CertificateDer<'static>,
    pub key_der: Vec<u8>,
    pub cert_path: String,
    pub key_path: String,
}

impl Pki {
    pub fn new() -> Pki {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "brokerstream test CA");
        let ca_key = rcgen::KeyPair::generate().expect("key");
        let ca_cert = params.self_signed(&ca_key).expect("CA");
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("ca.pem"), ca_cert.pem()).expect("write CA");
        Pki {
            ca_cert,
            ca_key,
            dir,
        }
    }

    pub fn ca_path(&self) -> String {
        self.dir.path().join("ca.pem").to_string_lossy().to_string()
    }

    /// A leaf for `names` signed by the CA, or self-signed.
    pub fn leaf(&self, file: &str, names: &[&str], self_signed: bool) -> Leaf {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let params = rcgen::CertificateParams::new(names).expect("params");
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = if self_signed {
            params.self_signed(&key).expect("self-signed")
        } else {
            params
                .signed_by(&key, &self.ca_cert, &self.ca_key)
                .expect("signed")
        };
        let cert_path = self.dir.path().join(format!("{file}.crt"));
        let key_path = self.dir.path().join(format!("{file}.key"));
        std::fs::write(&cert_path, cert.pem()).expect("write cert");
        std::fs::write(&key_path, key.serialize_pem()).expect("write key");
        Leaf {
            cert_der: cert.der().clone(),
            key_der: key.serialize_der(),
            cert_path: cert_path.to_string_lossy().to_string(),
            key_path: key_path.to_string_lossy().to_string(),
        }
    }

    /// A server configuration presenting `leaf`; with `client_ca` it
    /// demands a client certificate signed by the CA.
    pub fn server_config(&self, leaf: &Leaf, client_ca: bool) -> rustls::ServerConfig {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("versions");
        let builder = if client_ca {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(self.ca_cert.der().clone()).expect("root");
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .expect("client verifier");
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(leaf.key_der.clone().into());
        builder
            .with_single_cert(vec![leaf.cert_der.clone()], key)
            .expect("server cert")
    }
}

/// What the proxy saw: the request line and whether it was authorised.
#[derive(Clone, Debug)]
pub struct ProxyHit {
    pub request_line: String,
    pub authorized: bool,
}

pub struct Proxy {
    pub addr: SocketAddr,
    hits: Arc<Mutex<Vec<ProxyHit>>>,
}

impl Proxy {
    /// A proxy that demands `Proxy-Authorization: Basic` for `user:password`,
    /// tunnels CONNECT and forwards plain requests, to loopback only.
    pub fn start(user: &str, password: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let hits = Arc::new(Mutex::new(Vec::new()));
        let seen = hits.clone();
        let (encoded, _) = super::mime::b64(format!("{user}:{password}").as_bytes(), true);
        let expected = format!("Basic {}", String::from_utf8_lossy(&encoded));
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let seen = seen.clone();
                let expected = expected.clone();
                thread::spawn(move || {
                    let _ = proxy_one(stream, &expected, &seen);
                });
            }
        });
        Proxy { addr, hits }
    }

    pub fn hits(&self) -> Vec<ProxyHit> {
        self.hits.lock().expect("lock").clone()
    }
}

fn loopback_stream(authority: &str) -> std::io::Result<TcpStream> {
    let addr = authority
        .to_socket_addrs()?
        .find(|a| a.ip().is_loopback())
        .ok_or_else(|| std::io::Error::other("the test proxy goes to loopback only"))?;
    TcpStream::connect(addr)
}

fn proxy_one(
    client: TcpStream,
    expected: &str,
    seen: &Mutex<Vec<ProxyHit>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(client);
    let (request_line, headers) = read_head(&mut reader)?;
    let authorized = headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("proxy-authorization") && v == expected);
    seen.lock().expect("lock").push(ProxyHit {
        request_line: request_line.clone(),
        authorized,
    });
    if !authorized {
        reader.get_mut().write_all(
            b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"t\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )?;
        return Ok(());
    }
    let mut parts = request_line.split(' ');
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default().to_string();
    if method == "CONNECT" {
        let mut upstream = loopback_stream(&target)?;
        reader
            .get_mut()
            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")?;
        // Bytes the client already sent past the head belong to the tunnel.
        let pending = reader.buffer().to_vec();
        upstream.write_all(&pending)?;
        let mut client = reader.into_inner();
        let mut client_read = client.try_clone()?;
        let mut upstream_write = upstream.try_clone()?;
        let forward = thread::spawn(move || {
            let _ = std::io::copy(&mut client_read, &mut upstream_write);
            let _ = upstream_write.shutdown(std::net::Shutdown::Write);
        });
        let _ = std::io::copy(&mut upstream, &mut client);
        let _ = client.shutdown(std::net::Shutdown::Write);
        let _ = forward.join();
        return Ok(());
    }
    // Absolute form: http://host:port/path
    let rest = target
        .strip_prefix("http://")
        .ok_or_else(|| std::io::Error::other("absolute URL expected"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let mut upstream = loopback_stream(authority)?;
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    for (n, v) in &headers {
        if !n.eq_ignore_ascii_case("proxy-authorization") && !n.eq_ignore_ascii_case("connection") {
            head.push_str(&format!("{n}: {v}\r\n"));
        }
    }
    head.push_str("Connection: close\r\n\r\n");
    let mut body = vec![0; content_length(&headers)];
    reader.read_exact(&mut body)?;
    upstream.write_all(head.as_bytes())?;
    upstream.write_all(&body)?;
    let mut client = reader.into_inner();
    std::io::copy(&mut upstream, &mut client)?;
    Ok(())
}
