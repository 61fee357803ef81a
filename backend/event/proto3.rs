//! proto3 presence rules for BBDO 3 events and their sub-messages
//! (docs/bbdo.md §3.2, §3.3), in one place for every view: the protobuf
//! decoder fills decoded messages with them, and the JSON form and the Lua
//! tables apply them to what an event does not hold.

use super::catalogue;
use super::types::{FieldDef, FieldType, Label};
use super::Value;

impl FieldDef {
    /// What Centreon's reflection shows for a protobuf field that is not
    /// set: a scalar's default, an empty list, a table of a sub-message's
    /// defaults; `None` (absent) for an optional or oneof field.
    #[inline(always)]
    pub fn proto3_default(&self) -> Option<Value> {
        match self.label {
            Label::Repeated => Some(Value::List(Vec::new())),
            Label::Optional | Label::OneOf(_) => None,
            Label::Single => Some(self.ty.proto3_default()),
        }
    }
}

impl FieldType {
    /// The default of a value of this type: 0, "", false, 0.0, or the table
    /// of a sub-message's defaults.
    #[inline(always)]
    pub fn proto3_default(self) -> Value {
        match self {
            FieldType::PbBool | FieldType::Bool => Value::Bool(false),
            FieldType::PbDouble | FieldType::Double => Value::Float(0.0),
            FieldType::PbString | FieldType::PbBytes | FieldType::Str => Value::Str(String::new()),
            FieldType::PbMessage(name) => message_default(name),
            _ => Value::Int(0),
        }
    }
}

/// Out of line: the decoder fills absent scalars on its hot path, and
/// sub-message defaults are rare there.
#[cold]
fn message_default(name: &str) -> Value {
    let fields = catalogue::message(name).unwrap_or(&[]);
    let mut values = vec![None; fields.len()];
    complete(fields, &mut values);
    message_table(fields, values)
}

/// Fills the unset slots of a decoded message as proto3 reads it: defaults
/// for plain and repeated fields, and every member of a oneof of which one
/// member is set. Optional fields and unset oneofs stay absent.
#[inline]
pub fn complete(fields: &[FieldDef], values: &mut [Option<Value>]) {
    for index in 0..fields.len() {
        if values[index].is_some() {
            continue;
        }
        let field = &fields[index];
        values[index] = match field.label {
            Label::OneOf(group) => {
                let group_is_set = fields
                    .iter()
                    .zip(values.iter())
                    .any(|(f, v)| f.label == Label::OneOf(group) && v.is_some());
                group_is_set.then(|| field.ty.proto3_default())
            }
            _ => field.proto3_default(),
        };
    }
}

/// A sub-message's table: its present fields by name, in declaration
/// order.
pub fn message_table(fields: &[FieldDef], values: Vec<Option<Value>>) -> Value {
    Value::Table(
        fields
            .iter()
            .zip(values)
            .filter_map(|(f, v)| v.map(|v| (f.key.to_owned(), v)))
            .collect(),
    )
}

/// The value of `key` in a sub-message table.
pub fn entry<'a>(entries: &'a [(String, Value)], key: &str) -> Option<&'a Value> {
    entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}
