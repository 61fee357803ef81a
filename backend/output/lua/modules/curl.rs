//! `cURL` (also `lcurl`): the easy interface of Lua-cURL as stream
//! connectors use it.
//!
//! ```lua
//! local curl = require "cURL"
//! local c = curl.easy{ url = u, post = true, httpheader = {"content-type: application/json"},
//!                      postfields = body, writefunction = function(chunk) ... end }
//! c:setopt(curl.OPT_SSL_VERIFYPEER, 0):setopt_timeout(10)
//! c:perform()
//! local code = c:getinfo(curl.INFO_RESPONSE_CODE)
//! c:close()
//! ```
//!
//! `perform` raises an error object when no HTTP answer came (refused,
//! timeout, TLS failure, write function abort…): `tostring(e)` gives
//! `[CURL-EASY][NAME] message (code): detail`, and `e:no()`, `e:name()`,
//! `e:msg()`, `e:category()` its parts, with libcurl's codes and messages.
//! An HTTP error status is an answer: `perform` succeeds and `getinfo`
//! tells the code. Option and info constants carry libcurl's numbers.

use std::io::Read;
use std::time::{Duration, Instant};

use mlua::{
    AnyUserData, Function, Lua, MultiValue, ObjectLike, Table, UserDataFields, UserDataMethods,
    UserDataRegistry, Value,
};

use super::http::{self, ClientSettings, Failure, HttpError, ProxySettings, Request};
use super::tls::TlsSettings;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Long,
    Str,
    List,
    Callback,
}

/// Supported options: Lua name, libcurl number, value kind.
const OPTIONS: &[(&str, i64, Kind)] = &[
    ("url", 10002, Kind::Str),
    ("port", 3, Kind::Long),
    ("proxy", 10004, Kind::Str),
    ("userpwd", 10005, Kind::Str),
    ("proxyuserpwd", 10006, Kind::Str),
    ("timeout", 13, Kind::Long),
    ("postfields", 10015, Kind::Str),
    ("copypostfields", 10165, Kind::Str),
    ("postfieldsize", 60, Kind::Long),
    ("referer", 10016, Kind::Str),
    ("useragent", 10018, Kind::Str),
    ("httpheader", 10023, Kind::List),
    ("sslcert", 10025, Kind::Str),
    ("keypasswd", 10026, Kind::Str),
    ("customrequest", 10036, Kind::Str),
    ("verbose", 41, Kind::Long),
    ("header", 42, Kind::Long),
    ("nobody", 44, Kind::Long),
    ("failonerror", 45, Kind::Long),
    ("post", 47, Kind::Long),
    ("followlocation", 52, Kind::Long),
    ("proxyport", 59, Kind::Long),
    ("httpproxytunnel", 61, Kind::Long),
    ("ssl_verifypeer", 64, Kind::Long),
    ("cainfo", 10065, Kind::Str),
    ("maxredirs", 68, Kind::Long),
    ("fresh_connect", 74, Kind::Long),
    ("forbid_reuse", 75, Kind::Long),
    ("connecttimeout", 78, Kind::Long),
    ("httpget", 80, Kind::Long),
    ("ssl_verifyhost", 81, Kind::Long),
    ("http_version", 84, Kind::Long),
    ("sslcerttype", 10086, Kind::Str),
    ("sslkey", 10087, Kind::Str),
    ("sslkeytype", 10088, Kind::Str),
    ("capath", 10097, Kind::Str),
    ("nosignal", 99, Kind::Long),
    ("proxytype", 101, Kind::Long),
    ("accept_encoding", 10102, Kind::Str),
    ("httpauth", 107, Kind::Long),
    ("proxyauth", 111, Kind::Long),
    ("sslversion", 32, Kind::Long),
    ("timeout_ms", 155, Kind::Long),
    ("connecttimeout_ms", 156, Kind::Long),
    ("username", 10173, Kind::Str),
    ("password", 10174, Kind::Str),
    ("proxyusername", 10175, Kind::Str),
    ("proxypassword", 10176, Kind::Str),
    ("noproxy", 10177, Kind::Str),
    ("tcp_keepalive", 213, Kind::Long),
    ("writefunction", 20011, Kind::Callback),
    ("headerfunction", 20079, Kind::Callback),
];

const STRING_INFO: i64 = 0x10_0000;
const LONG_INFO: i64 = 0x20_0000;
const DOUBLE_INFO: i64 = 0x30_0000;

/// Supported infos: Lua name, libcurl number.
const INFOS: &[(&str, i64)] = &[
    ("effective_url", STRING_INFO + 1),
    ("response_code", LONG_INFO + 2),
    ("total_time", DOUBLE_INFO + 3),
    ("size_download", DOUBLE_INFO + 8),
    ("speed_download", DOUBLE_INFO + 9),
    ("content_type", STRING_INFO + 18),
    ("redirect_count", LONG_INFO + 20),
];

/// Other constants scripts pass as option values.
const CONSTANTS: &[(&str, i64)] = &[
    ("AUTH_NONE", 0),
    ("AUTH_BASIC", 1),
    ("AUTH_DIGEST", 2),
    ("AUTH_ANY", -17),
    ("AUTH_ANYSAFE", -18),
    ("SSLVERSION_DEFAULT", 0),
    ("SSLVERSION_TLSv1", 1),
    ("SSLVERSION_TLSv1_0", 4),
    ("SSLVERSION_TLSv1_1", 5),
    ("SSLVERSION_TLSv1_2", 6),
    ("SSLVERSION_TLSv1_3", 7),
    ("HTTP_VERSION_NONE", 0),
    ("HTTP_VERSION_1_0", 1),
    ("HTTP_VERSION_1_1", 2),
    ("HTTP_VERSION_2_0", 3),
    ("PROXY_HTTP", 0),
    ("E_OK", 0),
    ("E_UNSUPPORTED_PROTOCOL", 1),
    ("E_URL_MALFORMAT", 3),
    ("E_COULDNT_RESOLVE_PROXY", 5),
    ("E_COULDNT_RESOLVE_HOST", 6),
    ("E_COULDNT_CONNECT", 7),
    ("E_WRITE_ERROR", 23),
    ("E_OPERATION_TIMEDOUT", 28),
    ("E_SSL_CONNECT_ERROR", 35),
    ("E_SEND_ERROR", 55),
    ("E_RECV_ERROR", 56),
    ("E_SSL_CERTPROBLEM", 58),
    ("E_PEER_FAILED_VERIFICATION", 60),
    ("E_SSL_CACERT_BADFILE", 77),
];

/// libcurl's code, mnemonic and message for a failure.
fn curl_code(failure: Failure) -> (i64, &'static str, &'static str) {
    match failure {
        Failure::UnsupportedProtocol => (1, "UNSUPPORTED_PROTOCOL", "Unsupported protocol"),
        Failure::BadUrl => (
            3,
            "URL_MALFORMAT",
            "URL using bad/illegal format or missing URL",
        ),
        Failure::ResolveProxy => (5, "COULDNT_RESOLVE_PROXY", "Couldn't resolve proxy name"),
        Failure::Resolve => (6, "COULDNT_RESOLVE_HOST", "Couldn't resolve host name"),
        Failure::Connect => (7, "COULDNT_CONNECT", "Couldn't connect to server"),
        Failure::Timeout => (28, "OPERATION_TIMEDOUT", "Timeout was reached"),
        Failure::TlsConnect => (35, "SSL_CONNECT_ERROR", "SSL connect error"),
        Failure::Send => (55, "SEND_ERROR", "Failed sending data to the peer"),
        Failure::Recv => (
            56,
            "RECV_ERROR",
            "Failure when receiving data from the peer",
        ),
        Failure::ClientCert => (
            58,
            "SSL_CERTPROBLEM",
            "Problem with the local SSL certificate",
        ),
        Failure::PeerVerification => (
            60,
            "PEER_FAILED_VERIFICATION",
            "SSL peer certificate or SSH remote key was not OK",
        ),
        Failure::CaFile => (
            77,
            "SSL_CACERT_BADFILE",
            "Problem with the SSL CA cert (path? access rights?)",
        ),
    }
}

const WRITE_ERROR: (i64, &str, &str) = (
    23,
    "WRITE_ERROR",
    "Failed writing received data to disk/application",
);

/// A write or header callback: `f(data)`, or `f(ctx, data)` with a context
/// (an object given alone is called as `obj:write(data)`).
#[derive(Clone)]
struct Callback {
    function: Function,
    context: Option<Value>,
}

#[derive(Clone, Default)]
struct Info {
    response_code: i64,
    total_time: f64,
    size_download: f64,
    effective_url: Option<String>,
    content_type: Option<String>,
    redirect_count: i64,
}

/// What a `curl.easy()` handle holds: libcurl's options, unset by default.
#[derive(Clone, Default)]
struct Easy {
    url: Option<String>,
    post: bool,
    postfields: Option<Vec<u8>>,
    postfieldsize: Option<usize>,
    customrequest: Option<String>,
    nobody: bool,
    headers: Vec<Vec<u8>>,
    useragent: Option<String>,
    referer: Option<String>,
    timeout: Option<Duration>,
    connect_timeout: Option<Duration>,
    verify_peer: Option<bool>,
    verify_host: Option<bool>,
    cainfo: Option<String>,
    sslcert: Option<String>,
    sslkey: Option<String>,
    proxy: Option<String>,
    proxyport: Option<u16>,
    proxyuserpwd: Option<String>,
    proxyusername: Option<String>,
    proxypassword: Option<String>,
    userpwd: Option<String>,
    username: Option<String>,
    password: Option<String>,
    followlocation: bool,
    maxredirs: Option<i64>,
    verbose: bool,
    write: Option<Callback>,
    header: Option<Callback>,
    info: Info,
    closed: bool,
}

fn type_error(name: &str, expected: &str, got: &Value) -> mlua::Error {
    mlua::Error::runtime(format!(
        "cURL: option '{name}' expects {expected}, got {}",
        got.type_name()
    ))
}

fn long_value(name: &str, value: &Value) -> mlua::Result<i64> {
    match value {
        Value::Boolean(b) => Ok(i64::from(*b)),
        Value::Integer(i) => Ok(*i),
        Value::Number(n) if n.is_finite() => Ok(*n as i64),
        Value::String(s) => s
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|n| n.is_finite())
            .map(|n| n as i64)
            .ok_or_else(|| type_error(name, "a number or a boolean", value)),
        _ => Err(type_error(name, "a number or a boolean", value)),
    }
}

fn bytes_value(name: &str, value: &Value) -> mlua::Result<Vec<u8>> {
    match value {
        Value::String(s) => Ok(s.as_bytes().to_vec()),
        Value::Integer(i) => Ok(i.to_string().into_bytes()),
        Value::Number(n) => Ok(n.to_string().into_bytes()),
        _ => Err(type_error(name, "a string", value)),
    }
}

fn string_value(name: &str, value: &Value) -> mlua::Result<String> {
    Ok(String::from_utf8_lossy(&bytes_value(name, value)?).into_owned())
}

fn seconds(n: i64, unit_ms: bool) -> Option<Duration> {
    // libcurl: 0 means "no timeout"; negative values are refused there,
    // taken as "none" here.
    if n <= 0 {
        return None;
    }
    let n = n.unsigned_abs();
    Some(if unit_ms {
        Duration::from_millis(n)
    } else {
        Duration::from_secs(n)
    })
}

fn callback(name: &str, value: &Value, extra: &Value) -> mlua::Result<Option<Callback>> {
    match value {
        Value::Nil => Ok(None),
        Value::Function(f) => Ok(Some(Callback {
            function: f.clone(),
            context: match extra {
                Value::Nil => None,
                v => Some(v.clone()),
            },
        })),
        Value::Table(_) | Value::UserData(_) => {
            let method: Value = match value {
                Value::Table(t) => t.get("write")?,
                Value::UserData(u) => u.get("write")?,
                _ => Value::Nil,
            };
            match method {
                Value::Function(f) => Ok(Some(Callback {
                    function: f,
                    context: Some(value.clone()),
                })),
                _ => Err(mlua::Error::runtime(format!(
                    "cURL: option '{name}' expects a function or an object with a write method"
                ))),
            }
        }
        _ => Err(type_error(name, "a function", value)),
    }
}

impl Easy {
    fn set(&mut self, name: &str, value: &Value, extra: &Value) -> mlua::Result<()> {
        let Some(&(_, _, kind)) = OPTIONS.iter().find(|(n, _, _)| *n == name) else {
            return Err(mlua::Error::runtime(format!(
                "cURL: unsupported option '{name}'"
            )));
        };
        let long = || long_value(name, value);
        let text = || -> mlua::Result<Option<String>> {
            match value {
                Value::Nil => Ok(None),
                v => string_value(name, v).map(Some),
            }
        };
        match kind {
            Kind::List => {
                let mut lines = Vec::new();
                match value {
                    Value::Nil => {}
                    Value::Table(t) => {
                        for v in t.sequence_values::<Value>() {
                            lines.push(bytes_value(name, &v?)?);
                        }
                    }
                    v => return Err(type_error(name, "a table of strings", v)),
                }
                self.headers = lines;
            }
            Kind::Callback => {
                let cb = callback(name, value, extra)?;
                if name == "writefunction" {
                    self.write = cb;
                } else {
                    self.header = cb;
                }
            }
            Kind::Long | Kind::Str => match name {
                "url" => self.url = text()?,
                "post" => self.post = long()? != 0,
                "httpget" => {
                    if long()? != 0 {
                        self.post = false;
                        self.nobody = false;
                        self.postfields = None;
                    }
                }
                "postfields" | "copypostfields" => {
                    let mut body = match value {
                        Value::Nil => None,
                        v => Some(bytes_value(name, v)?),
                    };
                    // Lua-cURL: an optional length cuts the data.
                    if let (Some(b), Value::Integer(n)) = (&mut body, extra) {
                        b.truncate(usize::try_from(*n).unwrap_or(0));
                    }
                    self.postfields = body;
                }
                "postfieldsize" => self.postfieldsize = usize::try_from(long()?).ok(),
                "customrequest" => self.customrequest = text()?,
                "nobody" => self.nobody = long()? != 0,
                "useragent" => self.useragent = text()?,
                "referer" => self.referer = text()?,
                "timeout" => self.timeout = seconds(long()?, false),
                "timeout_ms" => self.timeout = seconds(long()?, true),
                "connecttimeout" => self.connect_timeout = seconds(long()?, false),
                "connecttimeout_ms" => self.connect_timeout = seconds(long()?, true),
                "ssl_verifypeer" => self.verify_peer = Some(long()? != 0),
                "ssl_verifyhost" => self.verify_host = Some(long()? != 0),
                "cainfo" => self.cainfo = text()?,
                "sslcert" => self.sslcert = text()?,
                "sslkey" => self.sslkey = text()?,
                "proxy" => self.proxy = text()?,
                "proxyport" => self.proxyport = u16::try_from(long()?).ok(),
                "proxyuserpwd" => self.proxyuserpwd = text()?,
                "proxyusername" => self.proxyusername = text()?,
                "proxypassword" => self.proxypassword = text()?,
                "userpwd" => self.userpwd = text()?,
                "username" => self.username = text()?,
                "password" => self.password = text()?,
                "followlocation" => self.followlocation = long()? != 0,
                "maxredirs" => self.maxredirs = Some(long()?),
                "verbose" => self.verbose = long()? != 0,
                // Accepted for compatibility; what they tune does not apply
                // to this client (protocol versions, key types, signals…).
                _ => {
                    if kind == Kind::Long {
                        long()?;
                    } else {
                        text()?;
                    }
                }
            },
        }
        Ok(())
    }

    fn method(&self) -> String {
        if let Some(m) = &self.customrequest {
            return m.clone();
        }
        if self.nobody {
            "HEAD".into()
        } else if self.post || self.postfields.is_some() {
            "POST".into()
        } else {
            "GET".into()
        }
    }

    fn proxy(&self) -> Result<Option<ProxySettings>, HttpError> {
        let Some(spec) = self.proxy.as_deref().filter(|p| !p.is_empty()) else {
            return Ok(None);
        };
        let mut proxy = ProxySettings::parse(spec, self.proxyport)?;
        let split = |s: &str| match s.split_once(':') {
            Some((u, p)) => (u.to_string(), p.to_string()),
            None => (s.to_string(), String::new()),
        };
        if let Some(userpwd) = &self.proxyuserpwd {
            proxy.credentials = Some(split(userpwd));
        }
        if let Some(user) = &self.proxyusername {
            let password = self.proxypassword.clone().unwrap_or_default();
            proxy.credentials = Some((user.clone(), password));
        }
        Ok(Some(proxy))
    }

    fn request(&self) -> Result<(ClientSettings, Request), HttpError> {
        let url = self
            .url
            .clone()
            .ok_or_else(|| HttpError::new(Failure::BadUrl, "no URL set"))?;
        let settings = ClientSettings {
            tls: TlsSettings {
                verify_peer: self.verify_peer.unwrap_or(true),
                verify_host: self.verify_host.unwrap_or(true),
                ca_file: self.cainfo.clone().map(Into::into),
                client_cert: self.sslcert.clone().map(Into::into),
                client_key: self.sslkey.clone().map(Into::into),
            },
            proxy: self.proxy()?,
            max_redirects: if self.followlocation {
                // libcurl's default -1 is "no limit"; keep one anyway.
                usize::try_from(self.maxredirs.unwrap_or(50))
                    .unwrap_or(50)
                    .min(50)
            } else {
                0
            },
            connect_timeout: Some(self.connect_timeout.unwrap_or(Duration::from_secs(300))),
        };
        let mut headers: Vec<(String, Vec<u8>)> = Vec::new();
        let has = |name: &str| -> bool {
            self.headers.iter().any(|h| {
                h.len() > name.len()
                    && h[..name.len()].eq_ignore_ascii_case(name.as_bytes())
                    && h[name.len()] == b':'
            })
        };
        for line in &self.headers {
            let Some(colon) = line.iter().position(|&b| b == b':' || b == b';') else {
                continue;
            };
            let name = String::from_utf8_lossy(&line[..colon]).trim().to_string();
            let value = trim_bytes(&line[colon + 1..]);
            // libcurl: "Name:" removes a header; "Name;" sends it empty.
            if line[colon] == b':' && value.is_empty() {
                continue;
            }
            headers.push((name, value.to_vec()));
        }
        let body = self.postfields.clone().map(|mut b| {
            if let Some(size) = self.postfieldsize {
                b.truncate(size);
            }
            b
        });
        if body.is_some() && !has("content-type") {
            headers.push((
                "Content-Type".into(),
                b"application/x-www-form-urlencoded".to_vec(),
            ));
        }
        if let Some(ua) = &self.useragent {
            if !has("user-agent") {
                headers.push(("User-Agent".into(), ua.clone().into_bytes()));
            }
        }
        if let Some(referer) = &self.referer {
            headers.push(("Referer".into(), referer.clone().into_bytes()));
        }
        let userpwd = match (&self.userpwd, &self.username) {
            (_, Some(user)) => Some(format!(
                "{user}:{}",
                self.password.as_deref().unwrap_or_default()
            )),
            (Some(userpwd), None) => Some(userpwd.clone()),
            _ => None,
        };
        if let Some(userpwd) = userpwd {
            if !has("authorization") {
                let (encoded, _) = super::mime::b64(userpwd.as_bytes(), true);
                let mut value = b"Basic ".to_vec();
                value.extend_from_slice(&encoded);
                headers.push(("Authorization".into(), value));
            }
        }
        Ok((
            settings,
            Request {
                method: self.method(),
                url,
                headers,
                body,
                timeout: self.timeout,
            },
        ))
    }
}

fn trim_bytes(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &b[start..end.max(start)]
}

/// Calls a write/header callback; `false` means the script asked to abort
/// (it returned `false`, a length other than the chunk's, or `nil, err`).
fn deliver(lua: &Lua, cb: &Callback, data: &[u8]) -> mlua::Result<bool> {
    let chunk = Value::String(lua.create_string(data)?);
    let result: MultiValue = match &cb.context {
        Some(ctx) => cb.function.call((ctx.clone(), chunk))?,
        None => cb.function.call(chunk)?,
    };
    let mut values = result.into_iter();
    Ok(match values.next() {
        None | Some(Value::Boolean(true)) => true,
        Some(Value::Nil) => values.next().is_none(),
        Some(Value::Boolean(false)) => false,
        Some(Value::Integer(n)) => usize::try_from(n).ok() == Some(data.len()),
        Some(Value::Number(n)) => n == data.len() as f64,
        // io.write and file:write return the file: carry on.
        Some(_) => true,
    })
}

type Outcome = Result<(), (i64, &'static str, &'static str, String)>;

fn failure_outcome(e: &HttpError) -> Outcome {
    let (no, name, msg) = curl_code(e.failure);
    Err((no, name, msg, e.detail.clone()))
}

/// The transfer itself. The handle is not borrowed while script callbacks
/// run, so they may call the handle's methods.
fn transfer(lua: &Lua, easy: &Easy, info: &mut Info) -> mlua::Result<Outcome> {
    let (settings, request) = match easy.request() {
        Ok(r) => r,
        Err(e) => return Ok(failure_outcome(&e)),
    };
    if easy.verbose {
        let url = http::url_for_log(&request.url);
        tracing::debug!(method = %request.method, url = %url, "cURL perform");
    }
    let mut response = match http::send(lua, &settings, request) {
        Ok(r) => r,
        Err(e) => return Ok(failure_outcome(&e)),
    };
    info.response_code = i64::from(response.status().as_u16());
    info.effective_url = Some(response.url().to_string());
    info.content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if let Some(cb) = &easy.header {
        let mut lines = vec![format!(
            "{:?} {} {}\r\n",
            response.version(),
            response.status().as_u16(),
            response.status().canonical_reason().unwrap_or("")
        )
        .into_bytes()];
        for (name, value) in response.headers() {
            let mut line = format!("{name}: ").into_bytes();
            line.extend_from_slice(value.as_bytes());
            line.extend_from_slice(b"\r\n");
            lines.push(line);
        }
        lines.push(b"\r\n".to_vec());
        for line in lines {
            if !deliver(lua, cb, &line)? {
                let (no, name, msg) = WRITE_ERROR;
                return Ok(Err((no, name, msg, "header function aborted".into())));
            }
        }
    }
    let mut buf = vec![0; 16 * 1024];
    loop {
        let n = match response.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => return Ok(failure_outcome(&http::io_failure(&e))),
        };
        info.size_download += n as f64;
        if let Some(cb) = &easy.write {
            if !deliver(lua, cb, &buf[..n])? {
                let (no, name, msg) = WRITE_ERROR;
                return Ok(Err((no, name, msg, "write function aborted".into())));
            }
        }
    }
    Ok(Ok(()))
}

/// `_perform(easy)` → `true`, or `false, no, name, message, detail` for the
/// Lua half to raise as an error object.
fn raw_perform(lua: &Lua, ud: AnyUserData) -> mlua::Result<MultiValue> {
    let easy = {
        let easy = ud.borrow::<Easy>()?;
        if easy.closed {
            return Err(mlua::Error::runtime("cURL: the easy handle is closed"));
        }
        easy.clone()
    };
    let started = Instant::now();
    let mut info = Info::default();
    let outcome = transfer(lua, &easy, &mut info);
    info.total_time = started.elapsed().as_secs_f64();
    if let Ok(mut easy) = ud.borrow_mut::<Easy>() {
        easy.info = info;
    }
    match outcome? {
        Ok(()) => Ok(MultiValue::from_vec(vec![Value::Boolean(true)])),
        Err((no, name, msg, detail)) => Ok(MultiValue::from_vec(vec![
            Value::Boolean(false),
            Value::Integer(no),
            Value::String(lua.create_string(name)?),
            Value::String(lua.create_string(msg)?),
            Value::String(lua.create_string(detail)?),
        ])),
    }
}

fn option_name(key: &Value) -> mlua::Result<String> {
    match key {
        Value::String(s) => Ok(s.to_string_lossy().to_ascii_lowercase()),
        Value::Integer(n) => OPTIONS
            .iter()
            .find(|(_, code, _)| code == n)
            .map(|(name, _, _)| name.to_string())
            .ok_or_else(|| mlua::Error::runtime(format!("cURL: unsupported option {n}"))),
        v => Err(mlua::Error::runtime(format!(
            "cURL: an option is a name or an OPT_ number, got {}",
            v.type_name()
        ))),
    }
}

fn info_value(lua: &Lua, info: &Info, name: &str) -> mlua::Result<Value> {
    let text = |s: &Option<String>| -> mlua::Result<Value> {
        match s {
            Some(s) => Ok(Value::String(lua.create_string(s)?)),
            None => Ok(Value::Nil),
        }
    };
    Ok(match name {
        "effective_url" => text(&info.effective_url)?,
        "response_code" => Value::Integer(info.response_code),
        "total_time" => Value::Number(info.total_time),
        "size_download" => Value::Number(info.size_download),
        "speed_download" => Value::Number(if info.total_time > 0.0 {
            info.size_download / info.total_time
        } else {
            0.0
        }),
        "content_type" => text(&info.content_type)?,
        "redirect_count" => Value::Integer(info.redirect_count),
        _ => {
            return Err(mlua::Error::runtime(format!(
                "cURL: unsupported info '{name}'"
            )))
        }
    })
}

/// libcurl's `curl_easy_escape`: all but unreserved characters as %XX.
fn escape(s: &[u8]) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for &b in s {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn unescape(s: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            if let (Some(h), Some(l)) = (
                s.get(i + 1).copied().and_then(hex),
                s.get(i + 2).copied().and_then(hex),
            ) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

/// Applies `setopt{...}` or `setopt(opt, value [, extra])`.
fn setopt(easy: &mut Easy, args: MultiValue) -> mlua::Result<()> {
    let mut args = args.into_iter();
    let first = args.next().unwrap_or(Value::Nil);
    if let Value::Table(t) = &first {
        for pair in t.pairs::<Value, Value>() {
            let (k, v) = pair?;
            easy.set(&option_name(&k)?, &v, &Value::Nil)?;
        }
        return Ok(());
    }
    let value = args.next().unwrap_or(Value::Nil);
    let extra = args.next().unwrap_or(Value::Nil);
    easy.set(&option_name(&first)?, &value, &extra)
}

/// The Lua half: `perform` raises error objects, which Rust cannot do.
const LUA_PART: &str = r#"
local raw_perform = ...

local Error = { __name = "LcURL Error" }
Error.__index = Error
function Error:no() return self._no end
function Error:name() return self._name end
function Error:msg() return self._msg end
function Error:category() return "CURL-EASY" end
function Error:detail() return self._detail end
function Error.__tostring(e)
  local s = string.format("[CURL-EASY][%s] %s (%d)", e._name, e._msg, e._no)
  if e._detail ~= nil and e._detail ~= "" then s = s .. ": " .. e._detail end
  return s
end

local methods = {}
function methods.perform(self, opts)
  if opts ~= nil then self:setopt(opts) end
  local ok, no, name, msg, detail = raw_perform(self)
  if not ok then
    error(setmetatable({ _no = no, _name = name, _msg = msg, _detail = detail }, Error))
  end
  return self
end

return methods
"#;

fn register_easy(lua: &Lua) -> mlua::Result<()> {
    let methods: Table =
        super::lua_part(lua, "cURL", LUA_PART)?.call(lua.create_function(raw_perform)?)?;
    lua.register_userdata_type::<Easy>(|reg: &mut UserDataRegistry<Easy>| {
        // Rust methods are added to this table next to the Lua ones.
        reg.add_meta_field("__index", methods);
        reg.add_meta_field("__name", "LcURL Easy");
        reg.add_function("setopt", |_, (ud, args): (AnyUserData, MultiValue)| {
            setopt(&mut *ud.borrow_mut::<Easy>()?, args)?;
            Ok(ud)
        });
        for &(name, _, _) in OPTIONS {
            reg.add_function(
                format!("setopt_{name}"),
                move |_, (ud, value, extra): (AnyUserData, Value, Value)| {
                    ud.borrow_mut::<Easy>()?.set(name, &value, &extra)?;
                    Ok(ud)
                },
            );
            reg.add_function(format!("unsetopt_{name}"), move |_, ud: AnyUserData| {
                reset_option(&mut *ud.borrow_mut::<Easy>()?, name);
                Ok(ud)
            });
        }
        reg.add_method("getinfo", |lua, easy, key: Value| {
            let name = match &key {
                Value::Integer(n) => INFOS
                    .iter()
                    .find(|(_, code)| code == n)
                    .map(|(name, _)| *name)
                    .ok_or_else(|| mlua::Error::runtime(format!("cURL: unsupported info {n}")))?
                    .to_string(),
                Value::String(s) => s.to_string_lossy().to_ascii_lowercase(),
                v => {
                    return Err(mlua::Error::runtime(format!(
                        "cURL: an info is an INFO_ number, got {}",
                        v.type_name()
                    )))
                }
            };
            info_value(lua, &easy.info, &name)
        });
        for &(name, _) in INFOS {
            reg.add_method(format!("getinfo_{name}"), move |lua, easy, ()| {
                info_value(lua, &easy.info, name)
            });
        }
        reg.add_method("escape", |_, _, s: mlua::LuaString| {
            Ok(escape(&s.as_bytes()))
        });
        reg.add_method("unescape", |lua, _, s: mlua::LuaString| {
            lua.create_string(unescape(&s.as_bytes()))
        });
        reg.add_function("reset", |_, ud: AnyUserData| {
            *ud.borrow_mut::<Easy>()? = Easy::default();
            Ok(ud)
        });
        reg.add_method_mut("close", |_, easy, ()| {
            // Dropping the callbacks breaks cycles through closures that
            // capture the handle.
            *easy = Easy {
                closed: true,
                ..Easy::default()
            };
            Ok(())
        });
        reg.add_method("cleanup", |_, _, ()| Ok(()));
    })
}

fn reset_option(easy: &mut Easy, name: &str) {
    match name {
        "url" => easy.url = None,
        "post" => easy.post = false,
        "postfields" | "copypostfields" => easy.postfields = None,
        "httpheader" => easy.headers.clear(),
        "writefunction" => easy.write = None,
        "headerfunction" => easy.header = None,
        "timeout" | "timeout_ms" => easy.timeout = None,
        "connecttimeout" | "connecttimeout_ms" => easy.connect_timeout = None,
        "ssl_verifypeer" => easy.verify_peer = None,
        "ssl_verifyhost" => easy.verify_host = None,
        "cainfo" => easy.cainfo = None,
        "sslcert" => easy.sslcert = None,
        "sslkey" => easy.sslkey = None,
        "proxy" => easy.proxy = None,
        "proxyport" => easy.proxyport = None,
        "proxyuserpwd" => easy.proxyuserpwd = None,
        "userpwd" => easy.userpwd = None,
        "customrequest" => easy.customrequest = None,
        "followlocation" => easy.followlocation = false,
        _ => {}
    }
}

fn new_easy(lua: &Lua, opts: Option<Table>) -> mlua::Result<AnyUserData> {
    let ud = lua.create_any_userdata(Easy::default())?;
    if let Some(opts) = opts {
        setopt(
            &mut *ud.borrow_mut::<Easy>()?,
            MultiValue::from_vec(vec![Value::Table(opts)]),
        )?;
    }
    Ok(ud)
}

fn module(lua: &Lua) -> mlua::Result<Table> {
    let m = lua.create_table()?;
    m.set("_NAME", "Lua-cURL (brokerstream)")?;
    m.set("_VERSION", "0.3.13")?;
    m.set(
        "easy",
        lua.create_function(|lua, opts: Option<Table>| new_easy(lua, opts))?,
    )?;
    m.set(
        "easy_init",
        lua.create_function(|lua, opts: Option<Table>| new_easy(lua, opts))?,
    )?;
    m.set(
        "version",
        lua.create_function(|_, ()| Ok("libcurl/8.0.0 (brokerstream: reqwest, rustls)"))?,
    )?;
    m.set(
        "version_info",
        lua.create_function(|lua, which: Option<String>| {
            let t = lua.create_table()?;
            t.set("version", "8.0.0")?;
            t.set("ssl_version", "rustls")?;
            let protocols = lua.create_table()?;
            protocols.set("HTTP", true)?;
            protocols.set("HTTPS", true)?;
            t.set("protocols", protocols)?;
            match which {
                Some(key) => t.get::<Value>(key),
                None => Ok(Value::Table(t)),
            }
        })?,
    )?;
    for &(name, code, _) in OPTIONS {
        m.set(format!("OPT_{}", name.to_ascii_uppercase()), code)?;
    }
    for &(name, code) in INFOS {
        m.set(format!("INFO_{}", name.to_ascii_uppercase()), code)?;
    }
    for &(name, value) in CONSTANTS {
        m.set(name, value)?;
    }
    Ok(m)
}

pub(super) fn loader(lua: &Lua) -> mlua::Result<Function> {
    lua.create_function(|lua, _: MultiValue| {
        if lua.app_data_ref::<Registered>().is_none() {
            register_easy(lua)?;
            lua.set_app_data(Registered);
        }
        module(lua)
    })
}

/// Marks a Lua state whose easy handle type is registered.
struct Registered;

#[cfg(test)]
mod tests {
    use super::super::testsupport::{closed_port, lua, Pki, Proxy, Reply, Server};
    use std::time::Duration;

    fn echo() -> Server {
        Server::start(|r| {
            let status = if r.target == "/fail" { 500 } else { 200 };
            Reply::new(
                status,
                &format!(
                    "{} {} {}",
                    r.method,
                    r.target,
                    String::from_utf8_lossy(&r.body)
                ),
            )
            .header("Content-Type", "text/plain")
        })
    }

    #[test]
    fn easy_table_form_posts_with_headers() {
        let server = echo();
        let lua = lua();
        lua.globals().set("url", server.url("/api")).expect("set");
        lua.load(
            r#"
            local curl = require "cURL"
            local body = ""
            local c = curl.easy{
              url = url,
              post = true,
              httpheader = { "Content-Type: application/json", "X-Api-Key: k" },
              postfields = '{"a":1}',
              writefunction = function(chunk) body = body .. chunk end,
              ssl_verifypeer = false,
              timeout = 10,
            }
            assert(type(c) == "userdata")
            assert(c:perform() == c)
            assert(body == 'POST /api {"a":1}', body)
            assert(c:getinfo(curl.INFO_RESPONSE_CODE) == 200)
            assert(c:getinfo_response_code() == 200)
            assert(c:getinfo(curl.INFO_CONTENT_TYPE) == "text/plain")
            assert(c:getinfo(curl.INFO_TOTAL_TIME) >= 0)
            c:close()
            "#,
        )
        .exec()
        .expect("lua");
        let r = &server.requests()[0];
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.header("x-api-key"), Some("k"));
    }

    #[test]
    fn chained_setopt_forms_as_the_catalogue_uses_them() {
        let server = echo();
        let lua = lua();
        lua.globals().set("url", server.url("/fail")).expect("set");
        lua.load(
            r#"
            local curl = require "cURL"
            local response = ""
            local c = curl.easy()
              :setopt_url(url)
              :setopt_writefunction(function(r) response = response .. tostring(r) end)
              :setopt(curl.OPT_TIMEOUT, 5)
              :setopt(curl.OPT_SSL_VERIFYPEER, 1)
              :setopt(curl.OPT_HTTPHEADER, { "content-type: application/json" })
            c:setopt_postfields("data")
            c:setopt{ [curl.OPT_CUSTOMREQUEST] = "PUT", userpwd = "u:p" }
            c:perform()
            -- an HTTP 500 is an answer, not an error
            assert(c:getinfo(curl.INFO_RESPONSE_CODE) == 500)
            assert(response == "PUT /fail data", response)
            assert(c:escape("a b&é") == "a%20b%26%C3%A9")
            assert(c:unescape("a%20b%26") == "a b&")
            "#,
        )
        .exec()
        .expect("lua");
        assert_eq!(
            server.requests()[0].header("authorization"),
            Some("Basic dTpw")
        );
    }

    #[test]
    fn write_function_forms_and_abort() {
        let server = echo();
        let lua = lua();
        lua.globals().set("url", server.url("/w")).expect("set");
        lua.load(
            r#"
            local curl = require "cURL"
            local t = {}
            curl.easy{ url = url }:setopt_writefunction(table.insert, t):perform()
            assert(t[1] == "GET /w ", t[1])
            local sink = { parts = {} }
            function sink:write(s) self.parts[#self.parts + 1] = s; return true end
            curl.easy{ url = url, writefunction = sink }:perform()
            assert(sink.parts[1] == "GET /w ")
            local ok, err = pcall(function()
              curl.easy{ url = url, writefunction = function() return false end }:perform()
            end)
            assert(not ok and err:no() == curl.E_WRITE_ERROR and err:name() == "WRITE_ERROR")
            local headers = {}
            curl.easy{ url = url, headerfunction = function(h) headers[#headers + 1] = h end,
                       writefunction = function() end }:perform()
            assert(headers[1]:match("^HTTP/1.1 200"), headers[1])
            assert(headers[#headers] == "\r\n")
            "#,
        )
        .exec()
        .expect("lua");
    }

    #[test]
    fn errors_are_raised_as_curl_error_objects() {
        let slow = Server::start(|_| Reply::new(200, "late").delayed(Duration::from_secs(3)));
        let lua = lua();
        lua.globals()
            .set("refused", format!("http://127.0.0.1:{}/", closed_port()))
            .expect("set");
        lua.globals().set("slow", slow.url("/")).expect("set");
        lua.load(
            r#"
            local curl = require "cURL"
            local c = curl.easy{ url = refused }
            local ok, err = pcall(c.perform, c)
            assert(not ok)
            assert(err:no() == 7 and err:name() == "COULDNT_CONNECT", tostring(err))
            assert(err:category() == "CURL-EASY")
            assert(tostring(err):find("^%[CURL%-EASY%]%[COULDNT_CONNECT%] Couldn't connect to server %(7%)"),
              tostring(err))
            assert(c:getinfo(curl.INFO_RESPONSE_CODE) == 0)
            ok, err = pcall(function()
              curl.easy{ url = slow }:setopt(curl.OPT_TIMEOUT_MS, 300):perform()
            end)
            assert(not ok and err:no() == curl.E_OPERATION_TIMEDOUT, tostring(err))
            ok, err = pcall(function() curl.easy():perform() end)
            assert(not ok and err:no() == 3, tostring(err))
            ok, err = pcall(function() curl.easy{ url = "gopher://x/" }:perform() end)
            assert(not ok and err:no() == 1, tostring(err))
            ok, err = pcall(function() curl.easy{ nonsense = 1 } end)
            assert(not ok and tostring(err):find("unsupported option 'nonsense'"), tostring(err))
            ok, err = pcall(function() curl.easy{ timeout = {} } end)
            assert(not ok and tostring(err):find("expects a number"), tostring(err))
            c:close()
            ok, err = pcall(c.perform, c)
            assert(not ok and tostring(err):find("closed"))
            "#,
        )
        .exec()
        .expect("lua");
    }

    #[test]
    fn follows_redirects_only_when_asked() {
        let target = echo();
        let location = target.url("/end");
        let server = Server::start(move |_| Reply::new(301, "").header("Location", &location));
        let lua = lua();
        lua.globals().set("url", server.url("/start")).expect("set");
        lua.load(
            r#"
            local curl = require "cURL"
            local c = curl.easy{ url = url, writefunction = function() end }
            c:perform()
            assert(c:getinfo_response_code() == 301)
            c:setopt(curl.OPT_FOLLOWLOCATION, true):perform()
            assert(c:getinfo_response_code() == 200)
            assert(c:getinfo(curl.INFO_EFFECTIVE_URL):find("/end$"))
            "#,
        )
        .exec()
        .expect("lua");
    }

    /// Runs `perform` with `opts` (a Lua table constructor) against `url`
    /// and returns the response code, or the error number.
    const TRY: &str = r#"
        curl = require "cURL"
        function try(url, opts)
          local c = curl.easy(opts or {}):setopt_url(url):setopt_writefunction(function() end)
          local ok, err = pcall(c.perform, c)
          if ok then return c:getinfo(curl.INFO_RESPONSE_CODE) end
          return "E" .. err:no() .. " " .. tostring(err)
        end
    "#;

    fn try_all(lua: &mlua::Lua, cases: &[(&str, &str, &str)]) {
        lua.load(TRY).exec().expect("helper");
        for (url, opts, expected) in cases {
            let got: String = lua
                .load(format!("return tostring(try({url}, {opts}))"))
                .eval()
                .expect("lua");
            assert!(
                got.starts_with(expected),
                "{url} with {opts}: expected {expected}, got {got}"
            );
        }
    }

    #[test]
    fn tls_peer_and_host_checks_are_separate() {
        let pki = Pki::new();
        let leaf = pki.leaf("server", &["localhost"], false);
        let server = Server::start_tls(pki.server_config(&leaf, false), |_| Reply::new(200, "ok"));
        let own = pki.leaf("self", &["localhost"], true);
        let self_signed =
            Server::start_tls(pki.server_config(&own, false), |_| Reply::new(200, "ok"));
        let lua = lua();
        let g = lua.globals();
        g.set(
            "by_name",
            format!("https://localhost:{}/", server.addr.port()),
        )
        .expect("set");
        g.set(
            "by_ip",
            format!("https://127.0.0.1:{}/", server.addr.port()),
        )
        .expect("set");
        g.set(
            "self_signed",
            format!("https://localhost:{}/", self_signed.addr.port()),
        )
        .expect("set");
        g.set("ca", pki.ca_path()).expect("set");
        try_all(
            &lua,
            &[
                // the system roots do not know the test CA
                ("by_name", "{}", "E60 [CURL-EASY][PEER_FAILED_VERIFICATION]"),
                ("by_name", "{cainfo = ca}", "200"),
                (
                    "by_name",
                    "{[curl.OPT_CAINFO] = ca, ssl_verifyhost = 2}",
                    "200",
                ),
                // a trusted certificate for another name
                ("by_ip", "{cainfo = ca}", "E60"),
                ("by_ip", "{cainfo = ca, ssl_verifyhost = 0}", "200"),
                // an untrusted certificate whose name fits
                ("by_name", "{ssl_verifypeer = 0}", "200"),
                ("self_signed", "{ssl_verifypeer = false}", "200"),
                ("self_signed", "{cainfo = ca}", "E60"),
                // libcurl checks the name even when the chain is not checked
                ("by_ip", "{ssl_verifypeer = 0}", "E60"),
                ("by_ip", "{ssl_verifypeer = 0, ssl_verifyhost = 0}", "200"),
                ("by_name", "{cainfo = '/nonexistent/ca.pem'}", "E77"),
                (
                    "by_name",
                    "{cainfo = '/nonexistent/ca.pem', ssl_verifypeer = 0}",
                    "200",
                ),
            ],
        );
    }

    #[test]
    fn tls_client_certificate() {
        let pki = Pki::new();
        let leaf = pki.leaf("server", &["localhost"], false);
        let server = Server::start_tls(pki.server_config(&leaf, true), |_| Reply::new(200, "ok"));
        let client = pki.leaf("client", &["client"], false);
        let both = pki.dir.path().join("both.pem");
        let mut pem = std::fs::read(&client.cert_path).expect("cert");
        pem.extend(std::fs::read(&client.key_path).expect("key"));
        std::fs::write(&both, pem).expect("write");
        let lua = lua();
        let g = lua.globals();
        g.set("url", format!("https://localhost:{}/", server.addr.port()))
            .expect("set");
        g.set("ca", pki.ca_path()).expect("set");
        g.set("cert", client.cert_path.clone()).expect("set");
        g.set("key", client.key_path.clone()).expect("set");
        g.set("both", both.to_string_lossy().to_string())
            .expect("set");
        try_all(
            &lua,
            &[
                ("url", "{cainfo = ca, sslcert = cert, sslkey = key}", "200"),
                ("url", "{cainfo = ca, sslcert = both}", "200"),
                ("url", "{cainfo = ca, sslcert = '/nonexistent.pem'}", "E58"),
                // refused by the server: the handshake or the first read fails
                ("url", "{cainfo = ca}", "E"),
            ],
        );
    }

    #[test]
    fn proxy_with_authentication() {
        let origin = echo();
        let pki = Pki::new();
        let leaf = pki.leaf("server", &["localhost"], false);
        let tls_origin =
            Server::start_tls(pki.server_config(&leaf, false), |_| Reply::new(200, "ok"));
        let proxy = Proxy::start("alice", "p@ss:word");
        let lua = lua();
        let g = lua.globals();
        g.set("url", origin.url("/via")).expect("set");
        g.set(
            "tls_url",
            format!("https://localhost:{}/", tls_origin.addr.port()),
        )
        .expect("set");
        g.set("ca", pki.ca_path()).expect("set");
        g.set("proxy", format!("http://{}", proxy.addr))
            .expect("set");
        g.set("proxy_host", proxy.addr.ip().to_string())
            .expect("set");
        g.set("proxy_port", proxy.addr.port()).expect("set");
        g.set("closed", closed_port()).expect("set");
        try_all(
            &lua,
            &[
                (
                    "url",
                    "{proxy = proxy, proxyuserpwd = 'alice:p@ss:word'}",
                    "200",
                ),
                (
                    "url",
                    "{[curl.OPT_PROXY] = proxy_host, [curl.OPT_PROXYPORT] = proxy_port, \
                      [curl.OPT_PROXYUSERPWD] = 'alice:p@ss:word'}",
                    "200",
                ),
                // a plain HTTP proxy's refusal is an answer
                ("url", "{proxy = proxy, proxyuserpwd = 'alice:nope'}", "407"),
                (
                    "tls_url",
                    "{proxy = proxy, proxyuserpwd = 'alice:p@ss:word', cainfo = ca}",
                    "200",
                ),
                // a refused CONNECT is not
                ("tls_url", "{proxy = proxy, cainfo = ca}", "E56"),
                ("url", "{proxy = 'http://127.0.0.1:' .. closed}", "E7 "),
            ],
        );
        let hits = proxy.hits();
        assert!(hits[0].authorized, "{hits:?}");
        assert!(hits[0].request_line.starts_with("GET http://127.0.0.1:"));
        assert!(hits
            .iter()
            .any(|h| h.authorized && h.request_line.starts_with("CONNECT localhost:")));
    }
}
