//! `broker.json_encode` and `broker.json_decode` (docs/lua-runtime.md §5.1,
//! §5.2), with Centreon's quirks kept on purpose: scripts and their consumers
//! were written against them (`{}` encodes as `[]`, only five escapes, `nan`
//! and `inf` written raw, integers truncated to 32 bits on decode…).

use mlua::{Lua, Table, Value as LuaValue};

use super::event::{LuaEvent, UnencodableField};

/// Deepest table nesting `json_encode` follows; Centreon would overflow
/// its C stack on a table that contains itself, here it is a Lua error.
const MAX_DEPTH: usize = 200;

/// A float as Lua 5.3/5.4's `tostring` writes it: `%.14g`, plus `.0` when
/// the result looks like an integer.
pub fn lua_number(x: f64) -> String {
    if x.is_nan() {
        // glibc prints the sign of a NaN, and 0/0 is negative on x86-64.
        return if x.is_sign_negative() { "-nan" } else { "nan" }.to_owned();
    }
    if x.is_infinite() {
        return if x < 0.0 { "-inf" } else { "inf" }.to_owned();
    }
    let mut s = format_g(x, 14);
    if s.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
        s.push_str(".0");
    }
    s
}

/// C's `%.<precision>g`.
pub fn format_g(x: f64, precision: usize) -> String {
    if x.is_nan() {
        return if x.is_sign_negative() { "-nan" } else { "nan" }.to_owned();
    }
    if x.is_infinite() {
        return if x < 0.0 { "-inf" } else { "inf" }.to_owned();
    }
    let precision = precision.max(1);
    if x == 0.0 {
        return if x.is_sign_negative() { "-0" } else { "0" }.to_owned();
    }
    let sci = format!("{:.*e}", precision - 1, x);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if exp < -4 || exp >= precision as i32 {
        let mantissa = strip_zeros(mantissa);
        format!(
            "{mantissa}e{}{:02}",
            if exp < 0 { '-' } else { '+' },
            exp.abs()
        )
    } else {
        let decimals = (precision as i32 - 1 - exp).max(0) as usize;
        strip_zeros(&format!("{x:.decimals$}")).to_owned()
    }
}

fn strip_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// A double as the `{fmt}` library's `{}` writes it: the shortest text that
/// reads back the same, in fixed notation for exponents -4 to 15 and in
/// scientific notation otherwise (`0`, `1.2`, `1e+20`, `nan`, `inf`).
pub fn shortest(x: f64) -> String {
    if x.is_nan() {
        return "nan".to_owned();
    }
    if x.is_infinite() {
        return if x < 0.0 { "-inf" } else { "inf" }.to_owned();
    }
    if x == 0.0 {
        return if x.is_sign_negative() { "-0" } else { "0" }.to_owned();
    }
    let sci = format!("{x:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..16).contains(&exp) {
        format!(
            "{mantissa}e{}{:02}",
            if exp < 0 { '-' } else { '+' },
            exp.abs()
        )
    } else {
        // Rust's `{}` is also the shortest round-trip text, in fixed notation.
        format!("{x}")
    }
}

/// Appends a string with Centreon's escaping: only `\`, `"`, TAB, CR and
/// LF; every other byte raw, and the string cut at its first NUL (it is
/// handled as a C string).
pub fn escape_into(bytes: &[u8], out: &mut Vec<u8>) {
    for &b in bytes {
        match b {
            0 => break,
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'"' => out.extend_from_slice(b"\\\""),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b => out.push(b),
        }
    }
}

fn not_implemented() -> mlua::Error {
    mlua::Error::runtime("json_encode: type not implemented")
}

fn bad_event_argument(got: &str) -> mlua::Error {
    mlua::Error::runtime(format!(
        "bad argument #1 to 'json_encode' (broker_event expected, got {got})"
    ))
}

/// `broker.json_encode(value)`: the value is the last argument (Centreon
/// reads the top of the stack). The inner error is an event Centreon's
/// encoder cannot write, which it logs rather than raises.
pub fn encode(
    value: &LuaValue,
    style: super::EventJsonStyle,
) -> mlua::Result<Result<Vec<u8>, UnencodableField>> {
    let mut out = Vec::new();
    match value {
        LuaValue::UserData(ud) => match ud.borrow::<LuaEvent>() {
            Ok(event) => return Ok(event.to_json(style).map(String::into_bytes)),
            Err(_) => return Err(bad_event_argument("userdata")),
        },
        other => encode_value(other, &mut out, 0, value_is_table(other))?,
    }
    Ok(Ok(out))
}

fn value_is_table(v: &LuaValue) -> bool {
    matches!(v, LuaValue::Table(_))
}

fn encode_value(
    value: &LuaValue,
    out: &mut Vec<u8>,
    depth: usize,
    top_is_table: bool,
) -> mlua::Result<()> {
    match value {
        LuaValue::Boolean(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        LuaValue::Integer(i) => out.extend_from_slice(i.to_string().as_bytes()),
        LuaValue::Number(x) => out.extend_from_slice(lua_number(*x).as_bytes()),
        LuaValue::String(s) => {
            out.push(b'"');
            escape_into(&s.as_bytes(), out);
            out.push(b'"');
        }
        LuaValue::Table(table) => encode_table(table, out, depth + 1, top_is_table)?,
        // Centreon checks argument 1 for a broker_event: nested in a table,
        // the check sees the table.
        LuaValue::UserData(_) => {
            return Err(bad_event_argument(if top_is_table {
                "table"
            } else {
                "userdata"
            }))
        }
        _ => return Err(not_implemented()),
    }
    Ok(())
}

fn encode_table(
    table: &Table,
    out: &mut Vec<u8>,
    depth: usize,
    top_is_table: bool,
) -> mlua::Result<()> {
    if depth > MAX_DEPTH {
        return Err(mlua::Error::runtime("json_encode: tables nested too deep"));
    }
    let mut pairs = table.pairs::<LuaValue, LuaValue>();
    let Some(first) = pairs.next() else {
        out.extend_from_slice(b"[]");
        return Ok(());
    };
    let (key, value) = first?;
    if matches!(key, LuaValue::Integer(1)) {
        out.push(b'[');
        encode_value(&value, out, depth, top_is_table)?;
        for pair in pairs {
            let (key, value) = pair?;
            if matches!(key, LuaValue::Integer(_)) {
                out.push(b',');
                encode_value(&value, out, depth, top_is_table)?;
            }
        }
        out.push(b']');
        return Ok(());
    }
    out.push(b'{');
    let mut entry = Some((key, value));
    let mut first = true;
    loop {
        let (key, value) = match entry.take() {
            Some(e) => e,
            None => match pairs.next() {
                Some(pair) => pair?,
                None => break,
            },
        };
        if !first {
            out.push(b',');
        }
        first = false;
        match &key {
            LuaValue::String(s) => {
                // Keys are written unescaped, as Centreon writes them.
                out.push(b'"');
                out.extend_from_slice(&s.as_bytes());
                out.push(b'"');
            }
            // Centreon converts a numeric key in place with lua_tostring,
            // which breaks the traversal.
            _ => return Err(mlua::Error::runtime("invalid key to 'next'")),
        }
        out.push(b':');
        encode_value(&value, out, depth, top_is_table)?;
    }
    out.push(b'}');
    Ok(())
}

/// `broker.json_decode(text)`: the value, or `nil` and nlohmann's style of
/// message on a parse error.
pub fn decode(lua: &Lua, text: &[u8]) -> mlua::Result<(LuaValue, Option<String>)> {
    match serde_json::from_slice::<serde_json::Value>(text) {
        Ok(json) => Ok((to_lua(lua, &json)?, None)),
        Err(e) => Ok((LuaValue::Nil, Some(parse_error_message(text, &e)))),
    }
}

fn parse_error_message(text: &[u8], e: &serde_json::Error) -> String {
    let what = if text.iter().all(u8::is_ascii_whitespace) {
        "unexpected end of input; expected '[', '{', or a literal".to_owned()
    } else {
        let message = e.to_string();
        // serde_json appends " at line L column C"; the position goes first here.
        match message.rfind(" at line ") {
            Some(at) => message[..at].to_owned(),
            None => message,
        }
    };
    format!(
        "[json.exception.parse_error.101] parse error at line {}, column {}: syntax error while parsing value - {what}",
        e.line().max(1),
        e.column().max(1)
    )
}

fn to_lua(lua: &Lua, json: &serde_json::Value) -> mlua::Result<LuaValue> {
    use serde_json::Value as J;
    Ok(match json {
        J::Null => LuaValue::Nil,
        J::Bool(b) => LuaValue::Boolean(*b),
        J::Number(n) => {
            if let Some(u) = n.as_u64() {
                // nlohmann's get<uint32_t>: truncated modulo 2^32.
                LuaValue::Integer(i64::from(u as u32))
            } else if let Some(i) = n.as_i64() {
                // get<int32_t>: truncated.
                LuaValue::Integer(i64::from(i as i32))
            } else {
                LuaValue::Number(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        J::String(s) => LuaValue::String(lua.create_string(unescape_again(s))?),
        J::Array(items) => {
            let table = lua.create_table_with_capacity(items.len(), 0)?;
            for (i, item) in items.iter().enumerate() {
                let v = to_lua(lua, item)?;
                if !v.is_nil() {
                    table.raw_set(i as i64 + 1, v)?;
                }
            }
            LuaValue::Table(table)
        }
        J::Object(map) => {
            let table = lua.create_table_with_capacity(0, map.len())?;
            for (k, v) in map {
                table.raw_set(k.as_str(), to_lua(lua, v)?)?;
            }
            LuaValue::Table(table)
        }
    })
}

/// Centreon un-escapes decoded strings a second time: `\\`, `\"`, `\t`,
/// `\r` and `\n` found in the text become the character; other backslash
/// sequences stay.
fn unescape_again(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 1 < bytes.len() {
            let replaced = match bytes[i + 1] {
                b'\\' => Some(b'\\'),
                b'"' => Some(b'"'),
                b't' => Some(b'\t'),
                b'r' => Some(b'\r'),
                b'n' => Some(b'\n'),
                _ => None,
            };
            if let Some(c) = replaced {
                out.push(c);
                i += 2;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_written_as_lua_writes_them() {
        assert_eq!(lua_number(2.5), "2.5");
        assert_eq!(lua_number(1.0), "1.0");
        assert_eq!(lua_number(27.1), "27.1");
        assert_eq!(lua_number(1e100), "1e+100");
        assert_eq!(lua_number(f64::INFINITY), "inf");
        assert_eq!(lua_number(f64::NEG_INFINITY), "-inf");
        assert_eq!(lua_number(-(f64::NAN.abs())), "-nan");
        assert_eq!(lua_number(std::f64::consts::PI), "3.1415926535898");
        assert_eq!(lua_number(0.1 + 0.2), "0.3");
        assert_eq!(lua_number(f64::from(0.8f32)), "0.80000001192093");
        assert_eq!(lua_number(1e15), "1e+15");
        assert_eq!(lua_number(123456789012.0), "123456789012.0");
        assert_eq!(lua_number(0.0001), "0.0001");
        assert_eq!(lua_number(0.00001), "1e-05");
    }

    #[test]
    fn doubles_of_events_use_the_shortest_form() {
        assert_eq!(shortest(0.0), "0");
        assert_eq!(shortest(5.0), "5");
        assert_eq!(shortest(1.2), "1.2");
        assert_eq!(shortest(0.25), "0.25");
        assert_eq!(shortest(1e20), "1e+20");
        assert_eq!(shortest(1e15), "1000000000000000");
        assert_eq!(shortest(1e16), "1e+16");
        assert_eq!(shortest(1.5e-5), "1.5e-05");
        assert_eq!(shortest(f64::NAN), "nan");
        assert_eq!(shortest(f64::INFINITY), "inf");
    }

    #[test]
    fn only_five_characters_are_escaped() {
        let mut out = Vec::new();
        escape_into("a\\b\"c\td\re\nf\u{1}é\0cut".as_bytes(), &mut out);
        assert_eq!(out, "a\\\\b\\\"c\\td\\re\\nf\u{1}é".as_bytes());
    }

    #[test]
    fn decoded_strings_are_unescaped_twice() {
        assert_eq!(unescape_again("a\\nb"), b"a\nb");
        assert_eq!(unescape_again("a\\qb\\"), b"a\\qb\\");
    }
}
