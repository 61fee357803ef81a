//! [`Value`]: what one field of an event holds, in the types a Lua script
//! can see.

use std::fmt;

/// A field value, with the types a Lua script can see.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Bool(bool),
    /// Every integer field (16-, 32- and 64-bit, times, enums) is a Lua
    /// integer; unsigned 64-bit values are carried as their i64 bit pattern,
    /// as Centreon pushes them.
    Int(i64),
    /// A Lua float (`DOUBLE` fields): always rendered with a fraction in JSON.
    Float(f64),
    Str(String),
    /// A protobuf repeated field: a Lua array.
    List(Vec<Value>),
    /// A protobuf nested message or map entry: a Lua table with string keys.
    Table(Vec<(String, Value)>),
}

impl Value {
    #[inline]
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    #[inline]
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Float(f) => Some(*f),
            Value::Int(i) => Some(*i as f64),
            _ => None,
        }
    }

    #[inline]
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    #[inline]
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }
}

/// The text a template placeholder gives: strings as they are, numbers as
/// Lua's `tostring` would print them (`5.0` for a float, `5` for an integer),
/// tables as JSON.
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{}", serde_json::Value::from(*x)),
            Value::Str(s) => f.write_str(s),
            Value::List(_) | Value::Table(_) => write!(f, "{}", self.to_json()),
        }
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}
impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}
impl From<i32> for Value {
    fn from(i: i32) -> Self {
        Value::Int(i.into())
    }
}
impl From<u32> for Value {
    fn from(i: u32) -> Self {
        Value::Int(i.into())
    }
}
impl From<f64> for Value {
    fn from(x: f64) -> Self {
        Value::Float(x)
    }
}
impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Str(s.to_owned())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Str(s)
    }
}
