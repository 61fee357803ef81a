//! The vocabulary of the catalogue: categories, event types, field types.

use std::fmt;

/// `category << 16 | element`, Centreon's `_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventType(pub u32);

impl EventType {
    #[inline]
    pub const fn new(category: u16, element: u16) -> Self {
        EventType(((category as u32) << 16) | element as u32)
    }
    #[inline]
    pub const fn category(self) -> u16 {
        (self.0 >> 16) as u16
    }
    #[inline]
    pub const fn element(self) -> u16 {
        (self.0 & 0xffff) as u16
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.category(), self.element())
    }
}

/// An event category (docs/bbdo.md §1.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Category {
    pub id: u16,
    pub name: &'static str,
}

pub const CATEGORIES: &[Category] = &[
    Category { id: 1, name: "neb" },
    Category {
        id: 2,
        name: "bbdo",
    },
    Category {
        id: 3,
        name: "storage",
    },
    Category {
        id: 5,
        name: "dumper",
    },
    Category { id: 6, name: "bam" },
    Category {
        id: 7,
        name: "extcmd",
    },
    Category {
        id: 8,
        name: "generator",
    },
    Category {
        id: 9,
        name: "local",
    },
    Category {
        id: 65535,
        name: "internal",
    },
];

pub fn category_by_name(name: &str) -> Option<&'static Category> {
    CATEGORIES.iter().find(|c| c.name == name)
}

pub fn category_name(id: u16) -> Option<&'static str> {
    CATEGORIES.iter().find(|c| c.id == id).map(|c| c.name)
}

/// How an event travels in BBDO.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// BBDO 2 "mapped" event: fields in wire order, fixed-size integers,
    /// NUL-terminated strings, doubles as `%f` text.
    Mapped,
    /// BBDO 3 protobuf message.
    Protobuf,
}

/// An event type of the catalogue.
#[derive(Debug, PartialEq)]
pub struct EventDef {
    pub category: u16,
    pub element: u16,
    /// Centreon's registration name, used by filters (`neb:host_status`,
    /// `neb:ServiceStatus`, `storage:pb_metric`).
    pub name: &'static str,
    pub protocol: Protocol,
    /// Wire order for mapped events, declaration order for protobuf ones:
    /// in both cases the order a Lua script iterates in.
    pub fields: &'static [FieldDef],
}

impl EventDef {
    #[inline]
    pub const fn event_type(&self) -> EventType {
        EventType::new(self.category, self.element)
    }

    #[inline]
    pub fn field_index(&self, key: &str) -> Option<usize> {
        self.fields
            .iter()
            .position(|f| !f.is_hidden() && f.key == key)
    }

    pub fn field(&self, key: &str) -> Option<&'static FieldDef> {
        self.field_index(key).map(|i| &self.fields[i])
    }
}

/// When a value is nil for Lua (the key is absent from an API v1 table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NilRule {
    Never,
    /// `invalid_on_zero`: integers equal to 0 and strings equal to "".
    Zero,
    /// `invalid_on_minus_one`: -1 (all bits set for unsigned types).
    MinusOne,
}

/// Repetition of a protobuf field; mapped fields are always `Single`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Label {
    /// Always present (proto3 scalars default to 0, "", false).
    Single,
    /// proto3 `optional` (a one-member oneof): absent when unset.
    Optional,
    /// A member of a `oneof`, numbered within its message (a number rather
    /// than the oneof's name keeps field definitions small: the decoder
    /// scans them for every field it reads). Absent while no member of that
    /// oneof is set; once one is, every member is present, the others at
    /// their defaults (Centreon's reflection checks "is any member set" per
    /// field, docs/bbdo.md §3.2).
    OneOf(u8),
    /// `repeated` (and `map<>`, a repeated entry message).
    Repeated,
}

impl Label {
    /// Optional and oneof fields: their absence is a value of its own.
    #[inline]
    pub const fn may_be_absent(self) -> bool {
        matches!(self, Label::Optional | Label::OneOf(_))
    }
}

/// The type of a field, on the wire and for Lua.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldType {
    // BBDO 2 mapped wire types.
    Bool,
    Short,
    Int,
    UInt,
    ULong,
    Time,
    Str,
    /// A double written as `%f` text on the wire.
    Double,
    // BBDO 3 protobuf types.
    PbBool,
    PbInt32,
    PbUInt32,
    PbInt64,
    PbUInt64,
    PbDouble,
    PbString,
    PbEnum,
    /// `fixed64` (unsigned, 8 bytes on the wire), carried like uint64.
    PbFixed64,
    /// `sfixed64` (signed, 8 bytes on the wire).
    PbSFixed64,
    /// `sint32` (zigzag varint).
    PbSInt32,
    /// `bytes`, carried as lowercase hexadecimal text (two digits a byte):
    /// the event model has no binary value and the JSON form needs text.
    PbBytes,
    /// A nested message, named by its proto message name; its fields are
    /// [`crate::catalogue::message`]'s.
    PbMessage(&'static str),
}

/// The Lua type a field's value has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LuaType {
    Boolean,
    Integer,
    Number,
    String,
    Table,
}

impl FieldType {
    pub const fn lua_type(self) -> LuaType {
        match self {
            FieldType::Bool | FieldType::PbBool => LuaType::Boolean,
            FieldType::Short
            | FieldType::Int
            | FieldType::UInt
            | FieldType::ULong
            | FieldType::Time
            | FieldType::PbInt32
            | FieldType::PbUInt32
            | FieldType::PbInt64
            | FieldType::PbUInt64
            | FieldType::PbEnum
            | FieldType::PbFixed64
            | FieldType::PbSFixed64
            | FieldType::PbSInt32 => LuaType::Integer,
            FieldType::Double | FieldType::PbDouble => LuaType::Number,
            FieldType::Str | FieldType::PbString | FieldType::PbBytes => LuaType::String,
            FieldType::PbMessage(_) => LuaType::Table,
        }
    }

    /// Unsigned 64-bit types, whose values above 2^63 − 1 are carried as
    /// negative i64 and written unsigned where Centreon writes them so.
    pub const fn is_unsigned_64(self) -> bool {
        matches!(
            self,
            FieldType::ULong | FieldType::PbUInt64 | FieldType::PbFixed64
        )
    }

    /// Protobuf types Centreon's Lua reflection does not convert: a script
    /// finds the string `"not_implemented"` in their place
    /// (docs/lua-runtime.md §6.1). Only OTLMetrics has them.
    pub const fn lua_not_implemented(self) -> bool {
        matches!(
            self,
            FieldType::PbFixed64 | FieldType::PbSFixed64 | FieldType::PbSInt32 | FieldType::PbBytes
        )
    }

    /// The range an integer field holds, for checking outside input.
    pub const fn integer_range(self) -> Option<(i64, i64)> {
        Some(match self {
            FieldType::Short => (i16::MIN as i64, i16::MAX as i64),
            FieldType::Int | FieldType::PbInt32 | FieldType::PbEnum | FieldType::PbSInt32 => {
                (i32::MIN as i64, i32::MAX as i64)
            }
            FieldType::UInt | FieldType::PbUInt32 => (0, u32::MAX as i64),
            // uint64 travels as its i64 bit pattern, as Centreon pushes it.
            FieldType::ULong
            | FieldType::Time
            | FieldType::PbInt64
            | FieldType::PbUInt64
            | FieldType::PbFixed64
            | FieldType::PbSFixed64 => (i64::MIN, i64::MAX),
            _ => return None,
        })
    }
}

/// One field of an event type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldDef {
    /// The Lua key; empty for a hidden mapped field (on the wire, never seen
    /// by Lua).
    pub key: &'static str,
    pub ty: FieldType,
    pub nil: NilRule,
    pub label: Label,
    /// Protobuf field number; 0 for mapped fields.
    pub tag: u32,
    /// False for the one mapped field that is not serialized
    /// (`host_status.next_host_notification`).
    pub on_wire: bool,
}

impl FieldDef {
    /// A mapped (BBDO 2) field.
    pub const fn mapped(key: &'static str, ty: FieldType, nil: NilRule) -> Self {
        FieldDef {
            key,
            ty,
            nil,
            label: Label::Single,
            tag: 0,
            on_wire: true,
        }
    }

    /// A mapped field serialized on the wire but invisible to Lua.
    pub const fn hidden(ty: FieldType, nil: NilRule) -> Self {
        FieldDef::mapped("", ty, nil)
    }

    /// A mapped field visible to Lua but never serialized.
    pub const fn not_on_wire(key: &'static str, ty: FieldType, nil: NilRule) -> Self {
        FieldDef {
            on_wire: false,
            ..FieldDef::mapped(key, ty, nil)
        }
    }

    /// A protobuf field.
    pub const fn pb(key: &'static str, ty: FieldType, tag: u32, label: Label) -> Self {
        FieldDef {
            key,
            ty,
            nil: NilRule::Never,
            label,
            tag,
            on_wire: true,
        }
    }

    #[inline]
    pub const fn is_hidden(&self) -> bool {
        self.key.is_empty()
    }
}
