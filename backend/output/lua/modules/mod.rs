//! Built-in network and encoding modules (`cURL`, `socket.http`, `ltn12`,
//! `mime`, `ssl.https`, `broker_tcp_socket`). Written on another branch; this
//! placeholder is the call point the runtime uses, replaced at merge.

pub fn register(_lua: &mlua::Lua) -> mlua::Result<()> {
    Ok(())
}
