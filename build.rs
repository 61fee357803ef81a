//! Exports the embedded Lua's C API (`lua_*`, `luaL_*`, `luaopen_*`) from
//! the executables, so that a C module found on `package.cpath` can be
//! loaded: Lua C modules, as Debian builds them (`lua-cjson`…), do not link
//! a Lua library and take those symbols from the program that loads them.
//! Only those symbols are exported, not the whole program's.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        for pattern in ["lua_*", "luaL_*", "luaopen_*"] {
            println!("cargo:rustc-link-arg=-Wl,--export-dynamic-symbol={pattern}");
        }
    }
}
