//! `broker_tcp_socket`: Centreon Broker's blocking TCP client.
//!
//! `broker_tcp_socket.new()` gives a socket with `connect(host, port)`,
//! `write(data)`, `read()`, `close()` and `get_state()`, all blocking.
//! Failures raise the same strings as Centreon Broker
//! (`broker_socket::connect: Couldn't connect to <host>:<port>: <why>`…),
//! and two quirks are kept because scripts may depend on them:
//! - `read()` returns at most 1024 bytes from one read; at end of stream it
//!   returns the socket itself rather than a string;
//! - the state seen by `get_state()` is shared by all the sockets of a Lua
//!   state, and `new`, `close` and collection reset it to `unconnected`.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex};

use mlua::{AnyUserData, Lua, MultiValue, Table, UserDataFields, UserDataRegistry, Value};

/// At most this much per `read()`, as in Centreon Broker.
const READ_SIZE: usize = 1024;

type SharedState = Arc<Mutex<&'static str>>;

struct TcpSocket {
    stream: Option<TcpStream>,
    peer: Option<SocketAddr>,
    state: SharedState,
}

impl TcpSocket {
    fn set_state(&self, state: &'static str) {
        if let Ok(mut s) = self.state.lock() {
            *s = state;
        }
    }
}

impl Drop for TcpSocket {
    fn drop(&mut self) {
        self.set_state("unconnected");
    }
}

fn port_text(port: f64) -> String {
    if port.fract() == 0.0 && port.abs() < 1e15 {
        format!("{}", port as i64)
    } else {
        port.to_string()
    }
}

fn ok() -> MultiValue {
    MultiValue::from_vec(vec![Value::Boolean(true)])
}

fn fail(lua: &Lua, message: String) -> mlua::Result<MultiValue> {
    Ok(MultiValue::from_vec(vec![
        Value::Nil,
        Value::String(lua.create_string(message)?),
    ]))
}

fn connect(lua: &Lua, (ud, host, port): (AnyUserData, String, f64)) -> mlua::Result<MultiValue> {
    let mut socket = ud.borrow_mut::<TcpSocket>()?;
    let shown = port_text(port);
    socket.set_state("hostLookup");
    let addrs: Vec<SocketAddr> = match u16::try_from(port as i64)
        .ok()
        .filter(|_| port.fract() == 0.0)
        .ok_or_else(|| std::io::Error::other("invalid port"))
        .and_then(|p| (host.as_str(), p).to_socket_addrs())
    {
        Ok(addrs) => addrs.collect(),
        Err(e) => {
            socket.set_state("unconnected");
            return fail(
                lua,
                format!("broker_socket::connect: Couldn't resolve {host}:{shown} : {e}"),
            );
        }
    };
    socket.set_state("connecting");
    let mut last = std::io::Error::other("no address");
    for addr in addrs {
        match TcpStream::connect(addr) {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                socket.peer = Some(addr);
                socket.stream = Some(stream);
                socket.set_state("connected");
                return Ok(ok());
            }
            Err(e) => last = e,
        }
    }
    socket.set_state("unconnected");
    fail(
        lua,
        format!("broker_socket::connect: Couldn't connect to {host}:{shown}: {last}"),
    )
}

fn peer_text(socket: &TcpSocket) -> String {
    socket
        .peer
        .map(|a| format!("{}:{}", a.ip(), a.port()))
        .unwrap_or_else(|| "<not connected>:0".to_string())
}

fn write(lua: &Lua, (ud, data): (AnyUserData, mlua::LuaString)) -> mlua::Result<MultiValue> {
    let mut socket = ud.borrow_mut::<TcpSocket>()?;
    let peer = peer_text(&socket);
    let result = match socket.stream.as_mut() {
        Some(stream) => stream.write_all(&data.as_bytes()),
        None => Err(std::io::Error::from(std::io::ErrorKind::NotConnected)),
    };
    match result {
        Ok(()) => Ok(ok()),
        Err(e) => fail(
            lua,
            format!("broker_socket::write: Couldn't write to {peer}: {e}"),
        ),
    }
}

/// `data` | `false` (end of stream) | `nil, message`.
fn read(lua: &Lua, ud: AnyUserData) -> mlua::Result<MultiValue> {
    let mut socket = ud.borrow_mut::<TcpSocket>()?;
    let peer = peer_text(&socket);
    let mut buf = [0u8; READ_SIZE];
    let result = match socket.stream.as_mut() {
        Some(stream) => stream.read(&mut buf),
        None => Err(std::io::Error::from(std::io::ErrorKind::NotConnected)),
    };
    match result {
        Ok(0) => Ok(MultiValue::from_vec(vec![Value::Boolean(false)])),
        Ok(n) => Ok(MultiValue::from_vec(vec![Value::String(
            lua.create_string(&buf[..n])?,
        )])),
        Err(e) => fail(
            lua,
            format!("broker_socket::read: Couldn't read data from {peer}: {e}"),
        ),
    }
}

fn close(_: &Lua, ud: AnyUserData) -> mlua::Result<()> {
    let mut socket = ud.borrow_mut::<TcpSocket>()?;
    socket.set_state("closing");
    if let Some(stream) = socket.stream.take() {
        let _ = stream.shutdown(Shutdown::Both);
    }
    socket.peer = None;
    socket.set_state("unconnected");
    Ok(())
}

/// The Lua half: argument checks worded as `luaL_check*` words them, and
/// errors raised as plain strings, as `luaL_error` raises them.
const LUA_PART: &str = r##"
local raw = ...

local function bad(n, fname, expected, value, present)
  local got = present and type(value) or "no value"
  error(string.format("bad argument #%d to '%s' (%s expected, got %s)", n, fname, expected, got), 0)
end

local function check(ok, err)
  if not ok then error(err, 0) end
end

local methods = {}

function methods.connect(self, ...)
  local n = select("#", ...)
  local host, port = ...
  if type(host) ~= "string" and type(host) ~= "number" then bad(1, "connect", "string", host, n >= 1) end
  if tonumber(port) == nil then bad(2, "connect", "number", port, n >= 2) end
  check(raw.connect(self, tostring(host), tonumber(port)))
end

function methods.write(self, ...)
  local data = ...
  if type(data) ~= "string" and type(data) ~= "number" then
    bad(1, "write", "string", data, select("#", ...) >= 1)
  end
  check(raw.write(self, tostring(data)))
end

function methods.read(self)
  local data, err = raw.read(self)
  if data == nil then error(err, 0) end
  if data == false then return self end
  return data
end

function methods.close(self)
  raw.close(self)
end

function methods.get_state(self)
  return raw.get_state()
end

return methods
"##;

/// Builds the `broker_tcp_socket` table.
pub(super) fn create(lua: &Lua) -> mlua::Result<Table> {
    let state: SharedState = Arc::new(Mutex::new("unconnected"));
    let raw = lua.create_table()?;
    raw.set("connect", lua.create_function(connect)?)?;
    raw.set("write", lua.create_function(write)?)?;
    raw.set("read", lua.create_function(read)?)?;
    raw.set("close", lua.create_function(close)?)?;
    let shared = state.clone();
    raw.set(
        "get_state",
        lua.create_function(move |_, ()| Ok(shared.lock().map(|s| *s).unwrap_or("unconnected")))?,
    )?;
    let methods: Table = super::lua_part(lua, "broker_tcp_socket", LUA_PART)?.call(raw)?;
    lua.register_userdata_type::<TcpSocket>(|reg: &mut UserDataRegistry<TcpSocket>| {
        reg.add_meta_field("__index", methods);
        reg.add_meta_field("__name", "lua_broker_tcp_socket");
    })?;
    let module = lua.create_table()?;
    module.set(
        "new",
        lua.create_function(move |lua, ()| {
            let socket = TcpSocket {
                stream: None,
                peer: None,
                state: state.clone(),
            };
            socket.set_state("unconnected");
            lua.create_any_userdata(socket)
        })?,
    )?;
    Ok(module)
}

#[cfg(test)]
mod tests {
    use super::super::testsupport::{closed_port, lua};
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::thread;

    #[test]
    fn connect_write_read_close() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = thread::spawn(move || {
            let (mut conn, _) = listener.accept().expect("accept");
            let mut buf = [0u8; 5];
            conn.read_exact(&mut buf).expect("read");
            assert_eq!(&buf, b"ping\0");
            conn.write_all(&vec![b'x'; 1500]).expect("write");
            // then the end of the stream
        });
        let lua = lua();
        lua.globals().set("port", port).expect("set");
        lua.load(
            r#"
            local s = broker_tcp_socket.new()
            assert(type(s) == "userdata")
            assert(s:get_state() == "unconnected")
            s:connect("127.0.0.1", port)
            assert(s:get_state() == "connected")
            s:write("ping\0")
            local got = ""
            while #got < 1500 do
              local data = s:read()
              assert(type(data) == "string" and #data <= 1024, type(data))
              got = got .. data
            end
            assert(got == string.rep("x", 1500))
            -- end of stream: the quirk hands back the socket itself
            assert(s:read() == s)
            local other = broker_tcp_socket.new()
            assert(s:get_state() == "unconnected", "the state is shared")
            s:close()
            assert(s:get_state() == "unconnected")
            "#,
        )
        .exec()
        .expect("lua");
        server.join().expect("server");
    }

    #[test]
    fn errors_are_broker_strings() {
        let port = closed_port();
        let lua = lua();
        lua.globals().set("port", port).expect("set");
        lua.load(
            r#"
            local s = broker_tcp_socket.new()
            local ok, err = pcall(s.connect, s, "127.0.0.1", port)
            assert(not ok and type(err) == "string")
            assert(err:find("^broker_socket::connect: Couldn't connect to 127%.0%.0%.1:" .. port .. ": "), err)
            -- (no name lookup here: tests send nothing off loopback)
            ok, err = pcall(s.connect, s, "127.0.0.1", 70000)
            assert(not ok and err:find("^broker_socket::connect: Couldn't resolve 127%.0%.0%.1:70000 : "), err)
            ok, err = pcall(s.connect, s)
            assert(not ok and err == "bad argument #1 to 'connect' (string expected, got no value)", err)
            ok, err = pcall(s.connect, s, "localhost")
            assert(not ok and err == "bad argument #2 to 'connect' (number expected, got no value)", err)
            ok, err = pcall(s.write, s, "x")
            assert(not ok and err:find("^broker_socket::write: Couldn't write to "), err)
            ok, err = pcall(s.read, s)
            assert(not ok and err:find("^broker_socket::read: "), err)
            "#,
        )
        .exec()
        .expect("lua");
    }
}
