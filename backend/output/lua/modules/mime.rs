//! `mime`: LuaSocket's Base64 filters, `mime.b64` and `mime.unb64`.
//!
//! Both are LuaSocket's low-level filters: `A, B = mime.b64(C, D)` encodes
//! the longest prefix of `C..D` that can be encoded on its own and returns
//! the bytes left over in `B`, so a caller can feed the data in pieces. With
//! `D` absent the input is final: `A` is padded and `B` is nil. Scripts
//! mostly call `(mime.b64(s))` for a Basic authorization header.

use mlua::{Function, Lua, Value};

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn encode_atoms(input: &[u8], out: &mut Vec<u8>) {
    for atom in input.chunks_exact(3) {
        let n = (u32::from(atom[0]) << 16) | (u32::from(atom[1]) << 8) | u32::from(atom[2]);
        for shift in [18, 12, 6, 0] {
            out.push(ALPHABET[((n >> shift) & 63) as usize]);
        }
    }
}

fn encode_padded(rest: &[u8], out: &mut Vec<u8>) {
    match *rest {
        [a] => {
            let n = u32::from(a) << 16;
            out.extend_from_slice(&[
                ALPHABET[((n >> 18) & 63) as usize],
                ALPHABET[((n >> 12) & 63) as usize],
                b'=',
                b'=',
            ]);
        }
        [a, b] => {
            let n = (u32::from(a) << 16) | (u32::from(b) << 8);
            out.extend_from_slice(&[
                ALPHABET[((n >> 18) & 63) as usize],
                ALPHABET[((n >> 12) & 63) as usize],
                ALPHABET[((n >> 6) & 63) as usize],
                b'=',
            ]);
        }
        _ => {}
    }
}

/// Base64 encoding of `input`; with `last` false, the 0 to 2 trailing bytes
/// that do not make a whole atom are returned instead of being padded.
pub(crate) fn b64(input: &[u8], last: bool) -> (Vec<u8>, Vec<u8>) {
    let whole = input.len() - input.len() % 3;
    let mut out = Vec::with_capacity(input.len() / 3 * 4 + 4);
    encode_atoms(&input[..whole], &mut out);
    if last {
        encode_padded(&input[whole..], &mut out);
        (out, Vec::new())
    } else {
        (out, input[whole..].to_vec())
    }
}

fn sextet(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

/// Base64 decoding of `input`. Characters outside the alphabet are skipped,
/// as LuaSocket does (line breaks in wrapped text). With `last` false, the
/// characters of an incomplete atom are returned for the next call; with
/// `last` true they are dropped.
pub(crate) fn unb64(input: &[u8], last: bool) -> (Vec<u8>, Vec<u8>) {
    let mut out = Vec::with_capacity(input.len() / 4 * 3);
    let mut atom: Vec<u8> = Vec::with_capacity(4);
    for &c in input {
        if c != b'=' && sextet(c).is_none() {
            continue;
        }
        atom.push(c);
        if atom.len() == 4 {
            let mut n: u32 = 0;
            let mut valid = 0;
            for &a in &atom {
                n <<= 6;
                if let Some(v) = sextet(a) {
                    n |= u32::from(v);
                    valid += 1;
                }
            }
            // Padding: 2 valid characters give 1 byte, 3 give 2, 4 give 3.
            let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
            let count = match valid {
                4 => 3,
                3 => 2,
                2 => 1,
                _ => 0,
            };
            out.extend_from_slice(&bytes[..count]);
            atom.clear();
        }
    }
    if last {
        (out, Vec::new())
    } else {
        (out, atom)
    }
}

type Filter = fn(&[u8], bool) -> (Vec<u8>, Vec<u8>);

/// Wraps a filter with LuaSocket's calling convention: `nil` in gives
/// `nil, nil`; a final call that produced nothing gives `nil`.
fn lua_filter(lua: &Lua, filter: Filter) -> mlua::Result<Function> {
    lua.create_function(
        move |lua, (c, d): (Option<mlua::LuaString>, Option<mlua::LuaString>)| {
            let Some(c) = c else {
                return Ok((Value::Nil, Value::Nil));
            };
            let mut input = c.as_bytes().to_vec();
            let last = d.is_none();
            if let Some(d) = &d {
                input.extend_from_slice(&d.as_bytes());
            }
            let (done, rest) = filter(&input, last);
            if last {
                if done.is_empty() {
                    return Ok((Value::Nil, Value::Nil));
                }
                return Ok((Value::String(lua.create_string(&done)?), Value::Nil));
            }
            Ok((
                Value::String(lua.create_string(&done)?),
                Value::String(lua.create_string(&rest)?),
            ))
        },
    )
}

pub(super) fn loader(lua: &Lua) -> mlua::Result<Function> {
    lua.create_function(|lua, _: mlua::MultiValue| {
        let m = lua.create_table()?;
        m.set("_VERSION", "MIME 1.0.3")?;
        m.set("b64", lua_filter(lua, b64)?)?;
        m.set("unb64", lua_filter(lua, unb64)?)?;
        Ok(m)
    })
}

#[cfg(test)]
mod tests {
    use super::super::testsupport::lua;
    use super::*;

    #[test]
    fn encodes_and_decodes_whole_strings() {
        for (plain, coded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("diego:password", "ZGllZ286cGFzc3dvcmQ="),
        ] {
            assert_eq!(b64(plain.as_bytes(), true).0, coded.as_bytes());
            assert_eq!(unb64(coded.as_bytes(), true).0, plain.as_bytes());
        }
    }

    #[test]
    fn lua_conventions() {
        let lua = lua();
        lua.load(
            r#"
            local mime = require "mime"
            assert((mime.b64("diego:password")) == "ZGllZ286cGFzc3dvcmQ=")
            local a, b = mime.b64("diego:password")
            assert(a == "ZGllZ286cGFzc3dvcmQ=" and b == nil)
            -- pieces: the leftover bytes come back for the next call
            a, b = mime.b64("abcd", "e")
            assert(a == "YWJj" and b == "de", a .. "/" .. tostring(b))
            a, b = mime.b64("abcd", "ef")
            assert(a == "YWJjZGVm" and b == "")
            assert(mime.b64(nil) == nil)
            assert(mime.b64("") == nil)
            -- decoding skips line breaks and keeps incomplete atoms
            assert((mime.unb64("ZGllZ286\r\ncGFzc3dvcmQ=")) == "diego:password")
            a, b = mime.unb64("Zm9vYm", "Fy")
            assert(a == "foobar" and b == "", tostring(a))
            a, b = mime.unb64("Zm9vY", "")
            assert(a == "foo" and b == "Y")
            local bin = string.char(0, 255, 10, 13, 128)
            assert(mime.unb64((mime.b64(bin))) == bin)
            "#,
        )
        .exec()
        .expect("lua");
    }
}
