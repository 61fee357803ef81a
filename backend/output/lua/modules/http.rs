//! The blocking HTTP engine behind `cURL`, `socket.http` and `ssl.https`.
//!
//! One `reqwest::blocking::Client` per distinct connection setting (TLS,
//! proxy, redirects, connect timeout) is kept per Lua state, because a
//! blocking client owns a thread and a connection pool: scripts that build a
//! fresh `curl.easy()` for every flush still reuse connections.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use mlua::Lua;
use reqwest::blocking::{Client, Response};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, Url};

use super::tls::{self, TlsSettings, TlsSetupError};

/// At most this many clients per Lua state; past it the cache starts over.
const MAX_CLIENTS: usize = 16;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct ProxySettings {
    /// `scheme://host:port`, without credentials.
    pub url: String,
    pub credentials: Option<(String, String)>,
}

impl ProxySettings {
    /// Reads a proxy as libcurl does: `host`, `host:port` or
    /// `scheme://[user:password@]host[:port]`; `default_port` (libcurl's
    /// PROXYPORT) applies when the string has none, else 1080.
    pub fn parse(spec: &str, default_port: Option<u16>) -> Result<ProxySettings, HttpError> {
        let with_scheme = if spec.contains("://") {
            spec.to_string()
        } else {
            format!("http://{spec}")
        };
        let mut url = Url::parse(&with_scheme).map_err(|e| {
            HttpError::new(
                Failure::ResolveProxy,
                format!("invalid proxy '{spec}': {e}"),
            )
        })?;
        let credentials = if url.username().is_empty() {
            None
        } else {
            let user = percent_decode(url.username());
            let password = percent_decode(url.password().unwrap_or(""));
            Some((user, password))
        };
        // Setting these cannot fail on an http(s) URL with a host.
        let _ = url.set_username("");
        let _ = url.set_password(None);
        // `Url` forgets a port equal to the scheme's default, so the text
        // tells whether one was given.
        if !has_explicit_port(&with_scheme) {
            let _ = url.set_port(Some(default_port.unwrap_or(1080)));
        }
        let mut text = url.to_string();
        if text.ends_with('/') {
            text.pop();
        }
        Ok(ProxySettings {
            url: text,
            credentials,
        })
    }
}

fn has_explicit_port(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    match host_port.rfind(']') {
        // [v6]:port
        Some(end) => host_port[end..].contains(':'),
        None => host_port.contains(':'),
    }
}

pub(crate) fn percent_decode(s: &str) -> String {
    String::from_utf8_lossy(&crate::encoding::url_decode(s.as_bytes())).into_owned()
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct ClientSettings {
    pub tls: TlsSettings,
    pub proxy: Option<ProxySettings>,
    /// 0: redirects are returned to the caller, as libcurl does by default.
    pub max_redirects: usize,
    pub connect_timeout: Option<Duration>,
}

pub(crate) struct Request {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Option<Vec<u8>>,
    /// For the whole exchange, body included.
    pub timeout: Option<Duration>,
}

/// Why a request failed, as libcurl classifies it (`cURL` reports the
/// libcurl code; `socket.http` a LuaSocket message).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    UnsupportedProtocol,
    BadUrl,
    ResolveProxy,
    Resolve,
    Connect,
    Timeout,
    TlsConnect,
    PeerVerification,
    ClientCert,
    CaFile,
    Send,
    Recv,
}

#[derive(Clone, Debug)]
pub(crate) struct HttpError {
    pub failure: Failure,
    pub detail: String,
}

impl HttpError {
    pub fn new(failure: Failure, detail: impl Into<String>) -> HttpError {
        HttpError {
            failure,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.detail)
    }
}

#[derive(Default)]
struct Clients(HashMap<ClientSettings, Client>);

fn build_client(settings: &ClientSettings) -> Result<Client, HttpError> {
    let tls = tls::client_config(&settings.tls).map_err(|e| match e {
        TlsSetupError::CaFile(m) => HttpError::new(Failure::CaFile, m),
        TlsSetupError::ClientCert(m) => HttpError::new(Failure::ClientCert, m),
    })?;
    let redirect = if settings.max_redirects == 0 {
        reqwest::redirect::Policy::none()
    } else {
        reqwest::redirect::Policy::limited(settings.max_redirects)
    };
    // Environment proxies are ignored: an output's proxy is part of its
    // configuration, and a service must not change route with its
    // environment.
    let mut builder = Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(None)
        .redirect(redirect)
        .no_proxy();
    if let Some(timeout) = settings.connect_timeout {
        builder = builder.connect_timeout(timeout);
    }
    if let Some(proxy) = &settings.proxy {
        let mut p = reqwest::Proxy::all(&proxy.url)
            .map_err(|e| HttpError::new(Failure::ResolveProxy, format!("invalid proxy: {e}")))?;
        if let Some((user, password)) = &proxy.credentials {
            p = p.basic_auth(user, password);
        }
        builder = builder.proxy(p);
    }
    builder
        .build()
        .map_err(|e| HttpError::new(Failure::TlsConnect, format!("cannot set up HTTP: {e}")))
}

fn client(lua: &Lua, settings: &ClientSettings) -> Result<Client, HttpError> {
    if lua.app_data_ref::<Clients>().is_none() {
        lua.set_app_data(Clients::default());
    }
    if let Some(clients) = lua.app_data_ref::<Clients>() {
        if let Some(c) = clients.0.get(settings) {
            return Ok(c.clone());
        }
    }
    let client = build_client(settings)?;
    if let Some(mut clients) = lua.app_data_mut::<Clients>() {
        if clients.0.len() >= MAX_CLIENTS {
            clients.0.clear();
        }
        clients.0.insert(settings.clone(), client.clone());
    }
    Ok(client)
}

/// Sends `request` and returns the response with its body still to read.
pub(crate) fn send(
    lua: &Lua,
    settings: &ClientSettings,
    request: Request,
) -> Result<Response, HttpError> {
    if tokio::runtime::Handle::try_current().is_ok() {
        // reqwest's blocking client would panic here.
        return Err(HttpError::new(
            Failure::Send,
            "blocking HTTP called from inside the async runtime",
        ));
    }
    let url = Url::parse(&request.url)
        .map_err(|e| HttpError::new(Failure::BadUrl, format!("bad URL '{}': {e}", request.url)))?;
    match url.scheme() {
        "http" | "https" => {}
        other => {
            return Err(HttpError::new(
                Failure::UnsupportedProtocol,
                format!("protocol \"{other}\" not supported"),
            ))
        }
    }
    let method = Method::from_bytes(request.method.as_bytes()).map_err(|_| {
        HttpError::new(
            Failure::BadUrl,
            format!("invalid method '{}'", request.method),
        )
    })?;
    let mut headers = HeaderMap::new();
    for (name, value) in &request.headers {
        // The body is sent whole, with its real length.
        if name.eq_ignore_ascii_case("content-length")
            || name.eq_ignore_ascii_case("transfer-encoding")
        {
            continue;
        }
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            HttpError::new(Failure::BadUrl, format!("invalid header name '{name}'"))
        })?;
        let value = HeaderValue::from_bytes(value).map_err(|_| {
            HttpError::new(
                Failure::BadUrl,
                format!("invalid value for header '{name}'"),
            )
        })?;
        headers.append(name, value);
    }
    let client = client(lua, settings)?;
    let mut builder = client.request(method, url).headers(headers);
    if let Some(body) = request.body {
        builder = builder.body(body);
    }
    if let Some(timeout) = request.timeout {
        builder = builder.timeout(timeout);
    }
    builder
        .send()
        // Without the URL: libcurl's messages have none, and a script's URL
        // may carry credentials in its query.
        .map_err(|e| classify(&e.without_url(), settings.proxy.is_some()))
}

/// Turns a reqwest error into libcurl's classification, with the causes
/// spelled out (reqwest's own message is often just "error sending
/// request").
pub(crate) fn classify(error: &reqwest::Error, proxied: bool) -> HttpError {
    let detail = causes(error);
    let lower = detail.to_ascii_lowercase();
    let failure = if error.is_timeout() || lower.contains("timed out") {
        Failure::Timeout
    } else if let Some(kind) = tls_failure(error) {
        kind
    } else if lower.contains("dns error") || lower.contains("failed to lookup") {
        if proxied {
            Failure::ResolveProxy
        } else {
            Failure::Resolve
        }
    } else if lower.contains("connection refused") {
        Failure::Connect
    } else if lower.contains("tunnel") {
        // The proxy answered CONNECT with something else than 2xx.
        Failure::Recv
    } else if error.is_connect() {
        Failure::Connect
    } else if error.is_builder() {
        Failure::BadUrl
    } else if error.is_body() || error.is_decode() {
        Failure::Recv
    } else {
        Failure::Send
    };
    HttpError::new(failure, detail)
}

pub(crate) fn io_failure(error: &std::io::Error) -> HttpError {
    let detail = causes(error);
    let failure = if error.kind() == std::io::ErrorKind::TimedOut
        || detail.to_ascii_lowercase().contains("timed out")
    {
        Failure::Timeout
    } else {
        Failure::Recv
    };
    HttpError::new(failure, detail)
}

/// Every message down the source chain, io::Error payloads included (their
/// `source()` skips the payload itself).
fn causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    parts.join(": ")
}

fn tls_failure(error: &(dyn std::error::Error + 'static)) -> Option<Failure> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(match tls {
                rustls::Error::InvalidCertificate(_) => Failure::PeerVerification,
                _ => Failure::TlsConnect,
            });
        }
        current = match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    None
}

/// A URL as a log may show it: without user information and query, where
/// scripts put credentials (InfluxDB 1.x's `?u=…&p=…`, tokens).
pub fn url_for_log(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut parsed) => {
            let hidden = parsed.query().is_some();
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.set_query(None);
            let mut shown = parsed.to_string();
            if hidden {
                shown.push_str("?…");
            }
            shown
        }
        Err(_) => "(not a URL)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::ProxySettings;

    #[test]
    fn logged_urls_carry_no_credentials() {
        assert_eq!(
            super::url_for_log("http://u:pw@127.0.0.1:8086/write?db=x&u=me&p=hunter2"),
            "http://127.0.0.1:8086/write?…"
        );
        assert_eq!(
            super::url_for_log("https://127.0.0.1/a"),
            "https://127.0.0.1/a"
        );
        assert_eq!(super::url_for_log("::not a url"), "(not a URL)");
    }

    #[test]
    fn proxy_strings_as_libcurl_reads_them() {
        let p =
            |spec: &str, port: Option<u16>| ProxySettings::parse(spec, port).expect("valid proxy");
        assert_eq!(p("proxy.local", None).url, "http://proxy.local:1080");
        assert_eq!(p("proxy.local", Some(3128)).url, "http://proxy.local:3128");
        assert_eq!(
            p("proxy.local:8080", Some(3128)).url,
            "http://proxy.local:8080"
        );
        assert_eq!(p("http://proxy.local:80", None).url, "http://proxy.local");
        assert_eq!(p("[::1]:3128", None).url, "http://[::1]:3128");
        let with_user = p("http://us%40er:p%3Ass@proxy.local:3128", None);
        assert_eq!(with_user.url, "http://proxy.local:3128");
        assert_eq!(
            with_user.credentials,
            Some(("us@er".to_string(), "p:ss".to_string()))
        );
    }
}
