//! LuaSocket's TCP client: `socket.tcp()` and `socket.connect(host, port)`,
//! which the catalogue's Graphite connector uses (plain, or through an HTTP
//! proxy with a hand-written CONNECT).
//!
//! As in LuaSocket, nothing raises: failures return `nil, message` with the
//! messages scripts compare against ("connection refused", "timeout",
//! "closed", "host not found"), and `send` / `receive` also return how far
//! they got. `settimeout(t)` bounds each blocking operation; `nil` or a
//! negative value blocks without limit, the default.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use mlua::{AnyUserData, Lua, MetaMethod, MultiValue, UserData, UserDataMethods, Value};

#[derive(Default)]
pub(super) struct Tcp {
    stream: Option<TcpStream>,
    /// Bytes read from the stream but not yet handed to the script.
    pending: Vec<u8>,
    timeout: Option<Duration>,
    /// LuaSocket's "master" before connect, "client" after.
    connected_once: bool,
}

fn message(error: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match error.kind() {
        ConnectionRefused => "connection refused".into(),
        TimedOut | WouldBlock => "timeout".into(),
        UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe | NotConnected => {
            "closed".into()
        }
        _ => error.to_string(),
    }
}

fn nil_and(lua: &Lua, msg: &str, extra: Option<Value>) -> mlua::Result<MultiValue> {
    let mut v = vec![Value::Nil, Value::String(lua.create_string(msg)?)];
    if let Some(e) = extra {
        v.push(e);
    }
    Ok(MultiValue::from_vec(v))
}

fn timeout_of(value: Option<f64>) -> Option<Duration> {
    value
        .filter(|t| t.is_finite() && *t >= 0.0)
        .map(|t| Duration::from_secs_f64(t.min(86_400.0)).max(Duration::from_millis(1)))
}

impl Tcp {
    fn connect(&mut self, host: &str, port: u16) -> Result<(), String> {
        let addrs: Vec<SocketAddr> = (host, port)
            .to_socket_addrs()
            .map_err(|_| "host not found".to_string())?
            .collect();
        let mut last = "host not found".to_string();
        for addr in addrs {
            let attempt = match self.timeout {
                Some(t) => TcpStream::connect_timeout(&addr, t),
                None => TcpStream::connect(addr),
            };
            match attempt {
                Ok(stream) => {
                    let _ = stream.set_read_timeout(self.timeout);
                    let _ = stream.set_write_timeout(self.timeout);
                    self.stream = Some(stream);
                    self.pending.clear();
                    self.connected_once = true;
                    return Ok(());
                }
                Err(e) => last = message(&e),
            }
        }
        Err(last)
    }

    /// Reads more bytes into `pending`; `Ok(false)` at end of stream.
    fn fill(&mut self) -> Result<bool, String> {
        let stream = self.stream.as_mut().ok_or_else(|| "closed".to_string())?;
        let mut buf = [0u8; 8192];
        match stream.read(&mut buf) {
            Ok(0) => Ok(false),
            Ok(n) => {
                self.pending.extend_from_slice(&buf[..n]);
                Ok(true)
            }
            Err(e) => Err(message(&e)),
        }
    }

    /// LuaSocket's patterns: `*l` a line (LF ends it, CRs dropped), `*a`
    /// everything until the peer closes, a number that many bytes.
    /// Returns the data, or the error and the partial data.
    fn receive(&mut self, pattern: &Value) -> Result<Vec<u8>, (String, Vec<u8>)> {
        enum Want {
            Line,
            All,
            Bytes(usize),
        }
        let want = match pattern {
            Value::Nil => Want::Line,
            Value::Integer(n) => Want::Bytes(usize::try_from(*n).unwrap_or(0)),
            Value::Number(n) if *n >= 0.0 => Want::Bytes(*n as usize),
            Value::String(s) => match s
                .to_str()
                .map(|s| s.to_string())
                .unwrap_or_default()
                .as_str()
            {
                "*l" | "l" => Want::Line,
                "*a" | "a" => Want::All,
                other => return Err((format!("invalid receive pattern '{other}'"), Vec::new())),
            },
            other => {
                return Err((
                    format!("invalid receive pattern of type {}", other.type_name()),
                    Vec::new(),
                ))
            }
        };
        loop {
            match want {
                Want::Line => {
                    if let Some(i) = self.pending.iter().position(|&b| b == b'\n') {
                        let mut line: Vec<u8> = self.pending.drain(..=i).collect();
                        line.retain(|&b| b != b'\r' && b != b'\n');
                        return Ok(line);
                    }
                }
                Want::Bytes(n) => {
                    if self.pending.len() >= n {
                        return Ok(self.pending.drain(..n).collect());
                    }
                }
                Want::All => {}
            }
            match self.fill() {
                Ok(true) => {}
                Ok(false) => {
                    let data = std::mem::take(&mut self.pending);
                    return match want {
                        // "*a" ends well when the peer closes.
                        Want::All => Ok(data),
                        _ => Err(("closed".into(), data)),
                    };
                }
                Err(e) => {
                    let mut data = std::mem::take(&mut self.pending);
                    if matches!(want, Want::Line) {
                        data.retain(|&b| b != b'\r');
                    }
                    return Err((e, data));
                }
            }
        }
    }
}

fn byte_index(value: Option<i64>, len: usize, default: i64) -> i64 {
    // Lua string positions: negative ones count from the end.
    let len = len as i64;
    let v = value.unwrap_or(default);
    if v < 0 {
        (len + v + 1).max(0)
    } else {
        v
    }
}

impl UserData for Tcp {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method_mut(
            "connect",
            |lua, tcp, (host, port): (String, f64)| -> mlua::Result<MultiValue> {
                let Some(port) = valid_port(port) else {
                    return nil_and(lua, "invalid port", None);
                };
                match tcp.connect(&host, port) {
                    Ok(()) => Ok(MultiValue::from_vec(vec![Value::Integer(1)])),
                    Err(e) => nil_and(lua, &e, None),
                }
            },
        );
        methods.add_method_mut("settimeout", |_, tcp, (t, _mode): (Option<f64>, Value)| {
            tcp.timeout = timeout_of(t);
            if let Some(stream) = &tcp.stream {
                let _ = stream.set_read_timeout(tcp.timeout);
                let _ = stream.set_write_timeout(tcp.timeout);
            }
            Ok(1)
        });
        methods.add_method_mut(
            "send",
            |lua, tcp, (data, i, j): (mlua::LuaString, Option<i64>, Option<i64>)| {
                let bytes = data.as_bytes();
                let start = byte_index(i, bytes.len(), 1).max(1);
                let end = byte_index(j, bytes.len(), -1).min(bytes.len() as i64);
                if start > end {
                    return Ok(MultiValue::from_vec(vec![Value::Integer(start - 1)]));
                }
                let slice = &bytes[(start - 1) as usize..end as usize];
                let Some(stream) = tcp.stream.as_mut() else {
                    return nil_and(lua, "closed", Some(Value::Integer(start - 1)));
                };
                let mut sent = 0;
                while sent < slice.len() {
                    match stream.write(&slice[sent..]) {
                        Ok(0) => {
                            return nil_and(
                                lua,
                                "closed",
                                Some(Value::Integer(start - 1 + sent as i64)),
                            )
                        }
                        Ok(n) => sent += n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            return nil_and(
                                lua,
                                &message(&e),
                                Some(Value::Integer(start - 1 + sent as i64)),
                            )
                        }
                    }
                }
                Ok(MultiValue::from_vec(vec![Value::Integer(end)]))
            },
        );
        methods.add_method_mut(
            "receive",
            |lua, tcp, (pattern, prefix): (Value, Option<mlua::LuaString>)| {
                let mut out = prefix.map(|p| p.as_bytes().to_vec()).unwrap_or_default();
                match tcp.receive(&pattern) {
                    Ok(data) => {
                        out.extend_from_slice(&data);
                        Ok(MultiValue::from_vec(vec![Value::String(
                            lua.create_string(&out)?,
                        )]))
                    }
                    Err((e, partial)) => {
                        out.extend_from_slice(&partial);
                        let partial = Value::String(lua.create_string(&out)?);
                        nil_and(lua, &e, Some(partial))
                    }
                }
            },
        );
        methods.add_method_mut("close", |_, tcp, ()| {
            if let Some(stream) = tcp.stream.take() {
                let _ = stream.shutdown(Shutdown::Both);
            }
            tcp.pending.clear();
            Ok(1)
        });
        methods.add_method("shutdown", |_, tcp, how: Option<String>| {
            let how = match how.as_deref() {
                Some("send") => Shutdown::Write,
                Some("receive") => Shutdown::Read,
                _ => Shutdown::Both,
            };
            if let Some(stream) = &tcp.stream {
                let _ = stream.shutdown(how);
            }
            Ok(1)
        });
        methods.add_method("getpeername", |lua, tcp, ()| {
            match tcp.stream.as_ref().and_then(|s| s.peer_addr().ok()) {
                Some(a) => Ok(MultiValue::from_vec(vec![
                    Value::String(lua.create_string(a.ip().to_string())?),
                    Value::Integer(i64::from(a.port())),
                    Value::String(lua.create_string(if a.is_ipv4() { "inet" } else { "inet6" })?),
                ])),
                None => nil_and(lua, "getpeername failed", None),
            }
        });
        methods.add_method("getsockname", |lua, tcp, ()| {
            match tcp.stream.as_ref().and_then(|s| s.local_addr().ok()) {
                Some(a) => Ok(MultiValue::from_vec(vec![
                    Value::String(lua.create_string(a.ip().to_string())?),
                    Value::Integer(i64::from(a.port())),
                    Value::String(lua.create_string(if a.is_ipv4() { "inet" } else { "inet6" })?),
                ])),
                None => nil_and(lua, "getsockname failed", None),
            }
        });
        // Socket options (keepalive, tcp-nodelay, linger…) are accepted and
        // left to the system's defaults.
        methods.add_method("setoption", |_, _, _: MultiValue| Ok(1));
        methods.add_meta_method(MetaMethod::ToString, |_, tcp, ()| {
            let kind = if tcp.connected_once {
                "client"
            } else {
                "master"
            };
            Ok(format!("tcp{{{kind}}}: {:p}", tcp as *const Tcp))
        });
    }
}

pub(super) fn tcp(lua: &Lua, _: ()) -> mlua::Result<AnyUserData> {
    lua.create_userdata(Tcp::default())
}

/// `socket.connect(host, port)`: a connected client, or `nil, message`.
pub(super) fn connect(lua: &Lua, (host, port): (String, f64)) -> mlua::Result<MultiValue> {
    let Some(port) = valid_port(port) else {
        return nil_and(lua, "invalid port", None);
    };
    let mut tcp = Tcp::default();
    if let Err(e) = tcp.connect(&host, port) {
        return nil_and(lua, &e, None);
    }
    Ok(MultiValue::from_vec(vec![Value::UserData(
        lua.create_userdata(tcp)?,
    )]))
}

fn valid_port(port: f64) -> Option<u16> {
    if port.fract() != 0.0 {
        return None;
    }
    u16::try_from(port as i64).ok()
}

#[cfg(test)]
mod tests {
    use super::super::testsupport::{closed_port, lua};
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    use std::thread;

    #[test]
    fn graphite_style_client_with_proxy_connect() {
        // A server that answers a CONNECT line like a proxy, then echoes
        // every line it gets, upper-cased, until the client closes.
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = thread::spawn(move || {
            let (conn, _) = listener.accept().expect("accept");
            let mut reader = BufReader::new(conn.try_clone().expect("clone"));
            let mut writer = conn;
            let mut line = String::new();
            reader.read_line(&mut line).expect("read");
            assert!(line.starts_with("CONNECT graphite:2003 HTTP/1.1"));
            loop {
                line.clear();
                reader.read_line(&mut line).expect("read");
                if line == "\r\n" {
                    break;
                }
            }
            writer
                .write_all(b"HTTP/1.1 200 Connection established\r\nX-A: b\r\n\r\n")
                .expect("write");
            loop {
                line.clear();
                if reader.read_line(&mut line).expect("read") == 0 {
                    break;
                }
                writer
                    .write_all(line.to_uppercase().as_bytes())
                    .expect("write");
            }
        });
        let lua = lua();
        lua.globals().set("port", port).expect("set");
        lua.load(
            r#"
            local socket = require "socket"
            local c = assert(socket.connect("127.0.0.1", port))
            assert(tostring(c):find("^tcp{client}"))
            c:settimeout(5)
            assert(c:send("CONNECT graphite:2003 HTTP/1.1\r\nHost: graphite:2003\r\n\r\n"))
            local status = c:receive("*l")
            assert(status:find(" 200 "), status)
            repeat local h = c:receive("*l") until not h or h == ""
            local sent = c:send("a.b.c 1 1600000000\nxyz\n")
            assert(sent == 23, tostring(sent))
            assert(c:receive("*l") == "A.B.C 1 1600000000")
            assert(c:receive(2) == "XY")
            assert(c:receive("*l", ">") == ">Z")
            local ip, p = c:getpeername()
            assert(ip == "127.0.0.1" and p == port)
            c:shutdown("send")
            assert(c:receive("*a") == "")
            local data, err, partial = c:receive("*l")
            assert(data == nil and err == "closed" and partial == "")
            assert(c:close() == 1)
            "#,
        )
        .exec()
        .expect("lua");
        server.join().expect("server");
    }

    #[test]
    fn failures_are_returned_not_raised() {
        let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
        let silent_port = silent.local_addr().expect("addr").port();
        let lua = lua();
        lua.globals().set("refused", closed_port()).expect("set");
        lua.globals().set("silent", silent_port).expect("set");
        lua.load(
            r#"
            local socket = require "socket"
            local c, err = socket.connect("127.0.0.1", refused)
            assert(c == nil and err == "connection refused", tostring(err))
            local t = socket.tcp()
            assert(tostring(t):find("^tcp{master}"))
            t:settimeout(0.2)
            assert(t:connect("127.0.0.1", silent) == 1)
            local data, err, partial = t:receive("*l")
            assert(data == nil and err == "timeout" and partial == "", tostring(err))
            t:close()
            local n, err = t:send("x")
            assert(n == nil and err == "closed")
            "#,
        )
        .exec()
        .expect("lua");
        drop(silent);
    }
}
