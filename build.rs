//! Exports the embedded Lua's C API (`lua_*`, `luaL_*`, `luaopen_*`) from
//! the executables, so that a C module found on `package.cpath` can be
//! loaded: Lua C modules, as Debian builds them (`lua-cjson`…), do not link
//! a Lua library and take those symbols from the program that loads them.
//! Only those symbols are exported, not the whole program's, except where
//! the linker cannot name them (below).

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=BROKERSTREAM_EXPORT_ALL_SYMBOLS");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        // The RPM's build links with Zig (scripts/package), whose linker
        // driver refuses --export-dynamic-symbol: it exports every symbol
        // instead, which C modules find just the same.
        if std::env::var_os("BROKERSTREAM_EXPORT_ALL_SYMBOLS").is_some() {
            println!("cargo:rustc-link-arg=-Wl,--export-dynamic");
            return;
        }
        for pattern in ["lua_*", "luaL_*", "luaopen_*"] {
            println!("cargo:rustc-link-arg=-Wl,--export-dynamic-symbol={pattern}");
        }
    }
}
