//! `base64`: `encode(s)` and `decode(s)`, the API of the `lbase64` and
//! `base64` rocks, which Centreon's Prometheus gateway connector calls as
//! `base64.encode(service_description)`.
//!
//! Standard alphabet with `=` padding (RFC 4648 §4), one line, no wrapping.
//! The codec is the SDK's (`broker.base64_encode`/`broker.base64_decode`),
//! so whitespace and `=` are skipped when decoding.
//!
//! On a character outside the alphabet the real modules are silent: lbase64
//! returns nothing and the pure-Lua rock drops the character. A fallback
//! that quietly returns other bytes than were encoded is worse than one
//! that stops, so `decode` raises a Lua error saying what is wrong
//! (catchable with `pcall`).

use mlua::{Function, Lua, LuaString, MultiValue};

use crate::encoding::base64_encode;
use crate::output::lua::sdk::base64_decode;

pub(super) fn loader(lua: &Lua) -> mlua::Result<Function> {
    lua.create_function(|lua, _: MultiValue| {
        let m = lua.create_table()?;
        m.set(
            "encode",
            lua.create_function(|_, s: LuaString| Ok(base64_encode(&s.as_bytes())))?,
        )?;
        let decode = lua.create_function(|lua, s: LuaString| {
            Ok(match base64_decode(&s.as_bytes()) {
                Ok(bytes) => (true, lua.create_string(&bytes)?),
                Err(e) => (false, lua.create_string(format!("base64.decode: {e}"))?),
            })
        })?;
        m.set("decode", super::raising(lua, "base64", decode)?)?;
        Ok(m)
    })
}

#[cfg(test)]
mod tests {
    use super::super::super::testsupport::lua;

    #[test]
    fn binary_round_trip_and_a_bad_character() {
        let lua = lua();
        lua.load(
            r#"
            local base64 = require "base64"
            local all = {}
            for i = 0, 255 do all[#all + 1] = string.char(i) end
            all = table.concat(all)
            assert(base64.decode(base64.encode(all)) == all)
            assert(base64.encode("service@host") == "c2VydmljZUBob3N0")
            local ok, e = pcall(base64.decode, "Zm9v!YmFy")
            assert(not ok and type(e) == "string")
            assert(e:find("base64.decode: ", 1, true) and e:find("not legal", 1, true), e)
            "#,
        )
        .exec()
        .expect("lua");
    }
}
