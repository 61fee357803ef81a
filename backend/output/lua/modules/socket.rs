//! LuaSocket's `socket` (time functions, and the TCP client of
//! `socket_tcp.rs`), `socket.url` (escaping),
//! `socket.http`, and LuaSec's `ssl.https`, which has the same interface
//! over TLS.
//!
//! `http.request` has two forms:
//! - `http.request(url [, body])` returns `body, code, headers, status`; with
//!   a body it is a form POST;
//! - `http.request{url=, method=, headers=, source=, sink=, step=, proxy=,
//!   redirect=}` returns `1, code, headers, status`, the body going to `sink`.
//!
//! Both return `nil, message` when no answer came ("connection refused",
//! "timeout", "host not found", …). An HTTP error status is an answer, not a
//! failure. The request body is read from `source` before sending and sent
//! with its length. `http.TIMEOUT` (seconds, default 60) bounds the exchange.

use std::io::Read;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mlua::{Function, Lua, MultiValue, Table, Value};

use super::http::{self, ClientSettings, Failure, HttpError, ProxySettings, Request};
use super::tls::TlsSettings;

pub(super) fn socket_loader(lua: &Lua) -> mlua::Result<Function> {
    lua.create_function(|lua, _: MultiValue| {
        let m = lua.create_table()?;
        m.set("_VERSION", "LuaSocket 3.0.0")?;
        m.set("tcp", lua.create_function(super::socket_tcp::tcp)?)?;
        m.set("connect", lua.create_function(super::socket_tcp::connect)?)?;
        m.set(
            "gettime",
            lua.create_function(|_, ()| {
                Ok(SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs_f64())
                    .unwrap_or(0.0))
            })?,
        )?;
        m.set(
            "sleep",
            lua.create_function(|_, seconds: f64| {
                if seconds.is_finite() && seconds > 0.0 {
                    std::thread::sleep(Duration::from_secs_f64(seconds.min(86_400.0)));
                }
                Ok(())
            })?,
        )?;
        Ok(m)
    })
}

const URL_SOURCE: &str = r#"
local url = {}

-- Every byte but letters, digits and "_" becomes %xx, as LuaSocket does.
function url.escape(s)
  return (string.gsub(s, "([^A-Za-z0-9_])", function(c)
    return string.format("%%%02x", string.byte(c))
  end))
end

function url.unescape(s)
  return (string.gsub(s, "%%(%x%x)", function(h)
    return string.char(tonumber(h, 16))
  end))
end

return url
"#;

pub(super) fn url_loader(lua: &Lua) -> mlua::Result<Function> {
    super::lua_part(lua, "socket.url", URL_SOURCE)
}

/// The Lua half of `socket.http` and `ssl.https`: argument forms, sources
/// and sinks. `core` is the Rust request function below.
const HTTP_SOURCE: &str = r#"
local core, scheme = ...
local ltn12 = require "ltn12"

local m = {
  TIMEOUT = 60,
  USERAGENT = "LuaSocket 3.0.0 (brokerstream)",
  PORT = scheme == "https" and 443 or 80,
}

local function read_all(source, step)
  local parts = {}
  local ok, err = ltn12.pump.all(source, ltn12.sink.table(parts), step)
  if not ok then return nil, err end
  return table.concat(parts)
end

-- LuaSec's `verify` is a string or a list of strings; "peer" turns checks on.
local function verifies(v)
  if type(v) == "string" then return v == "peer" end
  if type(v) == "table" then
    for _, s in ipairs(v) do if s == "peer" then return true end end
  end
  return false
end

local function generic(reqt)
  if type(reqt.url) ~= "string" then return nil, "invalid url" end
  if scheme == "https" and not reqt.url:lower():match("^https://") then
    return nil, "wrong scheme"
  end
  local body
  if reqt.source ~= nil then
    local err
    body, err = read_all(reqt.source, reqt.step)
    if body == nil then return nil, err end
  end
  local headers, has_agent = {}, false
  for k, v in pairs(reqt.headers or {}) do
    k = tostring(k)
    if k:lower() == "user-agent" then has_agent = true end
    headers[#headers + 1] = { k, tostring(v) }
  end
  if not has_agent and m.USERAGENT then
    headers[#headers + 1] = { "user-agent", m.USERAGENT }
  end
  local method = string.upper(reqt.method or "GET")
  local sink, sink_err = reqt.sink or ltn12.sink.null(), nil
  local code, rheaders, status = core{
    url = reqt.url,
    method = method,
    headers = headers,
    body = body,
    proxy = reqt.proxy or m.PROXY,
    redirect = reqt.redirect ~= false and (method == "GET" or method == "HEAD"),
    timeout = m.TIMEOUT,
    verify = verifies(reqt.verify),
    cafile = reqt.cafile,
    certificate = reqt.certificate,
    key = reqt.key,
    -- the body goes to the sink as it arrives; false stops the transfer
    deliver = function(chunk)
      local ok, err = sink(chunk)
      if not ok then sink_err = err or "sink failed" end
      return ok and true or false
    end,
  }
  if code == nil then return nil, rheaders end
  if sink_err then return nil, sink_err end
  local ok, err = sink(nil)
  if not ok then return nil, err end
  return 1, code, rheaders, status
end

function m.request(reqt, body)
  if type(reqt) ~= "string" then return generic(reqt) end
  local parts = {}
  local t = { url = reqt, sink = ltn12.sink.table(parts) }
  if body ~= nil then
    body = tostring(body)
    t.method = "POST"
    t.source = ltn12.source.string(body)
    t.headers = {
      ["content-length"] = #body,
      ["content-type"] = "application/x-www-form-urlencoded",
    }
  end
  local ok, code, headers, status = generic(t)
  if not ok then return nil, code end
  return table.concat(parts), code, headers, status
end

return m
"#;

fn loader_for(lua: &Lua, name: &'static str, scheme: &'static str) -> mlua::Result<Function> {
    let module = super::lua_part(lua, name, HTTP_SOURCE)?;
    let core = lua.create_function(request)?;
    lua.create_function(move |_, _: MultiValue| module.call::<Table>((core.clone(), scheme)))
}

pub(super) fn http_loader(lua: &Lua) -> mlua::Result<Function> {
    loader_for(lua, "socket.http", "http")
}

pub(super) fn https_loader(lua: &Lua) -> mlua::Result<Function> {
    loader_for(lua, "ssl.https", "https")
}

/// LuaSocket's words for the failures scripts compare against.
fn luasocket_message(error: &HttpError) -> String {
    match error.failure {
        Failure::Connect => "connection refused".to_string(),
        Failure::Timeout => "timeout".to_string(),
        Failure::Resolve => "host not found".to_string(),
        _ => error.detail.clone(),
    }
}

fn opt_string(spec: &Table, key: &str) -> mlua::Result<Option<String>> {
    Ok(spec
        .get::<Option<mlua::LuaString>>(key)?
        .map(|s| s.to_string_lossy()))
}

/// `core{url=, method=, headers={{name, value}…}, body=, proxy=, redirect=,
/// timeout=, verify=, cafile=, certificate=, key=, deliver=}` → `code,
/// headers, status`, or `nil, message`. The body is handed to `deliver`
/// chunk by chunk, so a large answer is never held whole.
fn request(lua: &Lua, spec: Table) -> mlua::Result<MultiValue> {
    let fail = |message: String| -> mlua::Result<MultiValue> {
        Ok(MultiValue::from_vec(vec![
            Value::Nil,
            Value::String(lua.create_string(message)?),
        ]))
    };
    let url: String = spec.get::<mlua::LuaString>("url")?.to_string_lossy();
    let mut headers = Vec::new();
    for pair in spec.get::<Table>("headers")?.sequence_values::<Table>() {
        let pair = pair?;
        let name: mlua::LuaString = pair.get(1)?;
        let value: mlua::LuaString = pair.get(2)?;
        headers.push((name.to_string_lossy(), value.as_bytes().to_vec()));
    }
    let body = spec
        .get::<Option<mlua::LuaString>>("body")?
        .map(|b| b.as_bytes().to_vec());
    let timeout = spec
        .get::<Option<f64>>("timeout")?
        .filter(|t| t.is_finite() && *t > 0.0)
        .map(|t| Duration::from_secs_f64(t.min(86_400.0)));
    let proxy = match opt_string(&spec, "proxy")? {
        // LuaSocket's default proxy port is 3128.
        Some(p) if !p.is_empty() => match ProxySettings::parse(&p, Some(3128)) {
            Ok(p) => Some(p),
            Err(e) => return fail(e.detail),
        },
        _ => None,
    };
    let verify: bool = spec.get::<Option<bool>>("verify")?.unwrap_or(false);
    let settings = ClientSettings {
        tls: TlsSettings {
            verify_peer: verify,
            verify_host: verify,
            ca_file: opt_string(&spec, "cafile")?.map(Into::into),
            client_cert: opt_string(&spec, "certificate")?.map(Into::into),
            client_key: opt_string(&spec, "key")?.map(Into::into),
        },
        proxy,
        max_redirects: if spec.get::<bool>("redirect")? { 5 } else { 0 },
        connect_timeout: timeout,
    };
    let request = Request {
        method: spec.get::<String>("method")?,
        url,
        headers,
        body,
        timeout,
    };
    let mut response = match http::send(lua, &settings, request) {
        Ok(r) => r,
        Err(e) => return fail(luasocket_message(&e)),
    };
    let code = response.status().as_u16();
    let status = format!(
        "{:?} {} {}",
        response.version(),
        code,
        response.status().canonical_reason().unwrap_or("")
    );
    // LuaSocket gives lowercase names and joins repeated headers with ", ".
    let rheaders = lua.create_table()?;
    for (name, value) in response.headers() {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        let joined = match rheaders.get::<Option<String>>(name.as_str())? {
            Some(previous) => format!("{previous}, {value}"),
            None => value,
        };
        rheaders.set(name.as_str(), joined)?;
    }
    let deliver: Function = spec.get("deliver")?;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match response.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => return fail(luasocket_message(&http::io_failure(&e))),
        };
        if !deliver.call::<bool>(lua.create_string(&buf[..n])?)? {
            break;
        }
    }
    Ok(MultiValue::from_vec(vec![
        Value::Integer(i64::from(code)),
        Value::Table(rheaders),
        Value::String(lua.create_string(status)?),
    ]))
}

#[cfg(test)]
mod tests {
    use super::super::testsupport::{closed_port, lua, Pki, Proxy, Reply, Server};
    use std::time::Duration;

    #[test]
    fn simple_get_and_form_post() {
        let server = Server::start(|r| {
            Reply::new(
                200,
                &format!("{} {}", r.method, String::from_utf8_lossy(&r.body)),
            )
            .header("X-Multi", "a")
            .header("X-Multi", "b")
        });
        let lua = lua();
        lua.globals().set("url", server.url("/x")).expect("set");
        lua.load(
            r#"
            local http = require "socket.http"
            local body, code, headers, status = http.request(url)
            assert(body == "GET ", body)
            assert(code == 200 and math.type(code) == "integer")
            assert(headers["x-multi"] == "a, b", headers["x-multi"])
            -- the reason phrase is the standard one, whatever the server wrote
            assert(status == "HTTP/1.1 200 OK", status)
            body, code = http.request(url, "a=1&b=2")
            assert(body == "POST a=1&b=2" and code == 200, body)
            "#,
        )
        .exec()
        .expect("lua");
        let requests = server.requests();
        assert_eq!(
            requests[1].header("content-type"),
            Some("application/x-www-form-urlencoded")
        );
        assert!(requests[0]
            .header("user-agent")
            .is_some_and(|ua| ua.starts_with("LuaSocket")));
    }

    #[test]
    fn generic_form_with_source_sink_and_headers() {
        let server = Server::start(|r| {
            Reply::new(
                500,
                &format!(
                    "{} {} {}",
                    r.method,
                    r.header("x-token").unwrap_or("-"),
                    String::from_utf8_lossy(&r.body)
                ),
            )
        });
        let lua = lua();
        lua.globals()
            .set("url", server.url("/write?db=x"))
            .expect("set");
        lua.load(
            r#"
            local http = require "socket.http"
            local ltn12 = require "ltn12"
            local data = "cpu,host=a value=1"
            local result = {}
            local r, code, headers, status = http.request{
              url = url,
              method = "PUT",
              source = ltn12.source.string(data),
              sink = ltn12.sink.table(result),
              headers = { ["content-length"] = string.len(data), ["X-Token"] = "t0k" },
            }
            assert(r == 1, tostring(r))
            assert(code == 500, "an HTTP error is an answer")
            assert(table.concat(result) == "PUT t0k cpu,host=a value=1", table.concat(result))
            assert(headers["content-length"])
            -- a failing sink stops the transfer and is reported
            r, code = http.request{ url = url, sink = ltn12.sink.error("full") }
            assert(r == nil and code == "full", tostring(code))
            "#,
        )
        .exec()
        .expect("lua");
        assert_eq!(server.requests()[0].target, "/write?db=x");
    }

    #[test]
    fn failures_return_nil_and_luasocket_messages() {
        let slow = Server::start(|_| Reply::new(200, "late").delayed(Duration::from_secs(3)));
        let lua = lua();
        lua.globals()
            .set("refused", format!("http://127.0.0.1:{}/", closed_port()))
            .expect("set");
        lua.globals().set("slow", slow.url("/")).expect("set");
        lua.load(
            r#"
            local http = require "socket.http"
            local ltn12 = require "ltn12"
            local r, err = http.request(refused)
            assert(r == nil and err == "connection refused", tostring(err))
            http.TIMEOUT = 0.5
            r, err = http.request(slow)
            assert(r == nil and err == "timeout", tostring(err))
            r, err = http.request{ url = refused, source = ltn12.source.error("no data") }
            assert(r == nil and err == "no data", tostring(err))
            r, err = http.request{ url = "ftp://127.0.0.1/" }
            assert(r == nil and err:find("not supported"), tostring(err))
            "#,
        )
        .exec()
        .expect("lua");
    }

    #[test]
    fn redirects_followed_for_get_only() {
        let target = Server::start(|_| Reply::new(200, "landed"));
        let location = target.url("/end");
        let server = Server::start(move |_| Reply::new(302, "moved").header("Location", &location));
        let lua = lua();
        lua.globals().set("url", server.url("/start")).expect("set");
        lua.load(
            r#"
            local http = require "socket.http"
            local body, code = http.request(url)
            assert(body == "landed" and code == 200, body)
            local t = {}
            local r, code = http.request{ url = url, redirect = false, sink = require("ltn12").sink.table(t) }
            assert(code == 302)
            body, code = http.request(url, "x=1")
            assert(code == 302, "a POST is not redirected")
            "#,
        )
        .exec()
        .expect("lua");
    }

    #[test]
    fn proxy_with_credentials() {
        let origin = Server::start(|r| Reply::new(200, &format!("via {}", r.target)));
        let proxy = Proxy::start("bob", "s3cret");
        let lua = lua();
        lua.globals().set("url", origin.url("/p")).expect("set");
        lua.globals()
            .set("proxy", format!("http://bob:s3cret@{}", proxy.addr))
            .expect("set");
        lua.globals()
            .set("bad_proxy", format!("http://bob:wrong@{}", proxy.addr))
            .expect("set");
        lua.load(
            r#"
            local http = require "socket.http"
            local t = {}
            local r, code = http.request{ url = url, proxy = proxy, sink = require("ltn12").sink.table(t) }
            assert(code == 200 and table.concat(t) == "via /p", table.concat(t))
            r, code = http.request{ url = url, proxy = bad_proxy }
            assert(code == 407, tostring(code))
            "#,
        )
        .exec()
        .expect("lua");
        let hits = proxy.hits();
        assert!(hits[0].authorized && hits[0].request_line.contains(&origin.url("/p")));
        assert!(!hits[1].authorized);
    }

    #[test]
    fn https_uses_luasec_verification_rules() {
        let pki = Pki::new();
        let leaf = pki.leaf("server", &["localhost"], false);
        let server = Server::start_tls(pki.server_config(&leaf, false), |_| Reply::new(200, "tls"));
        let lua = lua();
        lua.globals()
            .set("url", format!("https://localhost:{}/", server.addr.port()))
            .expect("set");
        lua.globals().set("ca", pki.ca_path()).expect("set");
        lua.load(
            r#"
            local https = require "ssl.https"
            -- LuaSec verifies nothing unless asked to
            local body, code = https.request(url)
            assert(body == "tls" and code == 200, tostring(code))
            local r, err = https.request{ url = url, verify = "peer" }
            assert(r == nil and err:find("certificate"), tostring(err))
            local t = {}
            r, code = https.request{ url = url, verify = {"peer", "fail_if_no_peer_cert"}, cafile = ca,
              sink = require("ltn12").sink.table(t) }
            assert(code == 200 and t[1] == "tls", tostring(code))
            r, err = https.request("http://localhost/")
            assert(r == nil and err == "wrong scheme")
            -- socket.http hands https URLs to the same code
            body, code = require("socket.http").request(url)
            assert(code == 200)
            "#,
        )
        .exec()
        .expect("lua");
    }

    #[test]
    fn socket_time_and_url_escape() {
        let lua = lua();
        lua.load(
            r#"
            local socket = require "socket"
            local t0 = socket.gettime()
            socket.sleep(0.05)
            assert(socket.gettime() - t0 >= 0.04)
            local url = require "socket.url"
            assert(url.escape("a b/é_1") == "a%20b%2f%c3%a9_1", url.escape("a b/é_1"))
            assert(url.unescape("a%20b%2F") == "a b/")
            "#,
        )
        .exec()
        .expect("lua");
    }

    #[test]
    fn large_bodies_reach_the_sink_in_chunks() {
        let big = "0123456789".repeat(20_000);
        let server = Server::start(move |_| Reply::new(200, &big));
        let lua = lua();
        lua.globals().set("url", server.url("/big")).expect("set");
        lua.load(
            r#"
            local http = require "socket.http"
            local ltn12 = require "ltn12"
            local t = {}
            local r, code = http.request{ url = url, sink = ltn12.sink.table(t) }
            assert(r == 1 and code == 200)
            assert(#t > 1, "streamed, not held whole")
            assert(#table.concat(t) == 200000)
            "#,
        )
        .exec()
        .expect("lua");
    }
}
