//! The modules that Centreon's stream-connector scripts `require`, built in
//! so that nothing has to be installed next to brokerstream: `cURL`
//! (Lua-cURL's easy interface), `socket`, `socket.http`, `socket.url`,
//! `ssl.https`, `ltn12` and `mime` (LuaSocket / LuaSec), and the
//! `broker_tcp_socket` global of Centreon Broker.
//!
//! [`register`] installs them into a Lua state: the modules as
//! `package.preload` loaders, so a script's `require "cURL"` finds them
//! before any file on `package.path`, and `broker_tcp_socket` as a global.
//! It also appends the searcher of `fallback`'s modules (`luatz.timetable`,
//! `base64`, `crypto`), which, the other way round, answer only when no file
//! on `package.path`/`package.cpath` does.
//!
//! Every call here blocks, as it does in Centreon Broker: the Lua state runs
//! on a dedicated thread, never inside a tokio runtime.

mod curl;
mod fallback;
mod http;
mod ltn12;
mod mime;
mod socket;
mod socket_tcp;
mod tcp_socket;
// Shared with the native HTTP outputs, which use the same two checks.
use crate::output::http::tls;

#[cfg(test)]
mod testsupport;

use mlua::{Function, Lua, Table};

/// Installs the built-in modules, the `broker_tcp_socket` global, and the
/// searcher of the fallback modules (`fallback`: used only when no module of
/// the name is on disk).
pub fn register(lua: &Lua) -> mlua::Result<()> {
    let preload: Table = lua
        .globals()
        .get::<Table>("package")?
        .get::<Table>("preload")?;
    preload.set("ltn12", ltn12::loader(lua)?)?;
    preload.set("mime", mime::loader(lua)?)?;
    preload.set("mime.core", mime::loader(lua)?)?;
    preload.set("socket", socket::socket_loader(lua)?)?;
    preload.set("socket.core", socket::socket_loader(lua)?)?;
    preload.set("socket.url", socket::url_loader(lua)?)?;
    preload.set("socket.http", socket::http_loader(lua)?)?;
    preload.set("ssl.https", socket::https_loader(lua)?)?;
    preload.set("cURL", curl::loader(lua)?)?;
    preload.set("lcurl", curl::loader(lua)?)?;
    lua.globals()
        .set("broker_tcp_socket", tcp_socket::create(lua)?)?;
    fallback::install(lua)
}

/// Runs a chunk of embedded Lua that builds (part of) a module. Parts of the
/// modules are written in Lua because they must raise Lua values (strings,
/// error objects) exactly as the C libraries do, and errors raised from Rust
/// reach Lua as mlua's own error userdata.
fn lua_part(lua: &Lua, name: &str, source: &str) -> mlua::Result<Function> {
    lua.load(source)
        .set_name(format!("={name}"))
        .into_function()
}
