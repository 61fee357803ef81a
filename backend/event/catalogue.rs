//! Every event type of Centreon Broker, with its fields in wire order
//! (`shared/spec/bbdo.md` §6, Appendix A for mapped events, Appendix B for
//! protobuf ones). Data, not logic: the codecs, the JSON form and the Lua
//! tables all walk these tables.

use super::types::{EventDef, EventType, FieldDef, FieldType::*, Label, NilRule, Protocol};

const fn m(key: &'static str, ty: super::FieldType) -> FieldDef {
    FieldDef::mapped(key, ty, NilRule::Never)
}
/// Mapped field, nil if 0 (or "").
const fn mz(key: &'static str, ty: super::FieldType) -> FieldDef {
    FieldDef::mapped(key, ty, NilRule::Zero)
}
/// Mapped field, nil if -1.
const fn mm(key: &'static str, ty: super::FieldType) -> FieldDef {
    FieldDef::mapped(key, ty, NilRule::MinusOne)
}
const fn hid(ty: super::FieldType) -> FieldDef {
    FieldDef::hidden(ty, NilRule::Never)
}
const fn p(key: &'static str, ty: super::FieldType, tag: u32) -> FieldDef {
    FieldDef::pb(key, ty, tag, Label::Single)
}
const fn popt(key: &'static str, ty: super::FieldType, tag: u32) -> FieldDef {
    FieldDef::pb(key, ty, tag, Label::Optional)
}
const fn prep(key: &'static str, ty: super::FieldType, tag: u32) -> FieldDef {
    FieldDef::pb(key, ty, tag, Label::Repeated)
}
const fn mapped(
    category: u16,
    element: u16,
    name: &'static str,
    fields: &'static [FieldDef],
) -> EventDef {
    EventDef {
        category,
        element,
        name,
        protocol: Protocol::Mapped,
        fields,
    }
}
const fn proto(
    category: u16,
    element: u16,
    name: &'static str,
    fields: &'static [FieldDef],
) -> EventDef {
    EventDef {
        category,
        element,
        name,
        protocol: Protocol::Protobuf,
        fields,
    }
}

/// Sorted by `_type`, so lookups are a binary search (checked by a test).
pub static EVENTS: &[EventDef] = &[
    // ... (the full tables follow)
    mapped(3, 1, "metric", &[
        mm("ctime", Time),
        m("interval", UInt),
        mz("metric_id", UInt),
        m("name", Str),
        m("rrd_len", Int),
        m("value", Double),
        m("value_type", Short),
        m("is_for_rebuild", Bool),
        mz("host_id", UInt),
        m("service_id", UInt),
    ]),
    proto(3, 9, "pb_metric", &[
        p("metric_id", PbUInt64, 4),
        p("rrd_len", PbInt32, 5),
        p("interval", PbInt32, 6),
        p("value_type", PbEnum, 7),
        p("time", PbUInt64, 8),
        p("value", PbDouble, 9),
        p("name", PbString, 10),
        p("host_id", PbUInt64, 11),
        p("service_id", PbUInt64, 12),
    ]),
];

pub fn by_type(ty: EventType) -> Option<&'static EventDef> {
    EVENTS
        .binary_search_by_key(&ty, |def| def.event_type())
        .ok()
        .map(|i| &EVENTS[i])
}

/// By registration name alone; names are unique across categories except
/// where noted in the catalogue, and the first match wins.
pub fn by_name(name: &str) -> Option<&'static EventDef> {
    EVENTS.iter().find(|def| def.name == name)
}

pub fn by_category_and_name(category: u16, name: &str) -> Option<&'static EventDef> {
    EVENTS
        .iter()
        .find(|def| def.category == category && def.name == name)
}
