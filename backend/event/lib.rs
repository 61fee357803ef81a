//! The event model: what a Centreon Broker event is, independently of how it
//! travelled (BBDO 2, BBDO 3, NDJSON, simulator).
//!
//! An event is a type (`category << 16 | element`) and the values of the
//! fields that the [catalogue] lists for that type, in catalogue order. The
//! catalogue is the single source of truth: BBDO codecs walk it for wire order,
//! the JSON form and the Lua tables walk it for key order, and ingest checks
//! value types against it.
//!
//! A field's value is `None` when Centreon's "nil rule" applies (a 0 id, a -1
//! time…): a Lua script would find the key absent, and the JSON form omits
//! it. Codecs map `None` back to the sentinel on the wire, so nothing is lost.

pub mod catalogue;
mod filter;
mod json;
pub mod proto3;
mod types;
mod value;

#[cfg(test)]
mod tests;

pub use filter::{Filter, FilterError};
pub use json::{EventJsonError, MAX_NESTING};
pub use types::{
    category_by_name, category_name, Category, EventDef, EventType, FieldDef, FieldType, Label,
    LuaType, NilRule, Protocol, CATEGORIES,
};
pub use value::Value;

/// One monitoring event.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    def: &'static EventDef,
    /// One slot per field of `def.fields`, in the same order. Hidden BBDO 2
    /// fields have slots too, so a decoded event re-encodes byte for byte.
    values: Vec<Option<Value>>,
}

impl Event {
    /// An event of the given definition with every field unset (nil).
    pub fn new(def: &'static EventDef) -> Self {
        // Not `vec![None; n]`: that clones the `None` n times through
        // `Value::clone`, a visible cost on the ingest path.
        let mut values = Vec::with_capacity(def.fields.len());
        values.resize_with(def.fields.len(), || None);
        Event { def, values }
    }

    /// An empty event of the type with this registration name, such as
    /// `host_status` or `ServiceStatus`.
    pub fn named(name: &str) -> Option<Self> {
        catalogue::by_name(name).map(Event::new)
    }

    #[inline]
    pub fn def(&self) -> &'static EventDef {
        self.def
    }

    #[inline]
    pub fn event_type(&self) -> EventType {
        self.def.event_type()
    }

    /// The value of the field with this Lua key, `None` when it is nil or the
    /// type has no such field.
    #[inline]
    pub fn get(&self, key: &str) -> Option<&Value> {
        let index = self.def.field_index(key)?;
        self.values[index].as_ref()
    }

    /// Sets a field by Lua key. Returns false when the type has no such
    /// field. The value is stored as given: callers that build events from
    /// outside input go through [`Event::from_json`], which checks types and
    /// applies nil rules.
    pub fn set(&mut self, key: &str, value: impl Into<Value>) -> bool {
        match self.def.field_index(key) {
            Some(index) => {
                self.values[index] = Some(value.into());
                true
            }
            None => false,
        }
    }

    /// Builder form of [`Event::set`]; a key the type lacks is a programming
    /// error and panics in debug builds.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        let known = self.set(key, value);
        debug_assert!(known, "{} has no field {key}", self.def.name);
        self
    }

    /// The slot values, aligned with `def().fields`.
    #[inline]
    pub fn values(&self) -> &[Option<Value>] {
        &self.values
    }

    #[inline]
    pub fn values_mut(&mut self) -> &mut [Option<Value>] {
        &mut self.values
    }

    /// The fields a Lua script sees, in catalogue order: hidden wire-only
    /// fields and nil values are skipped.
    #[inline]
    pub fn visible_fields(&self) -> impl Iterator<Item = (&'static str, &Value)> + '_ {
        self.def
            .fields
            .iter()
            .zip(&self.values)
            .filter(|(field, _)| !field.is_hidden())
            .filter_map(|(field, value)| value.as_ref().map(|v| (field.key, v)))
    }
}
