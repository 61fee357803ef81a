//! Unit tests of the event model: catalogue invariants, the JSON form
//! against a real Centreon Broker 21.10 capture, JSON errors and filters.

use std::collections::{HashMap, HashSet};

use serde_json::{json, Value as Json};

use super::catalogue::{self, EVENTS};
use super::types::{FieldType, Label, NilRule, Protocol};
use super::{Event, EventJsonError, EventType, Filter, FilterError, Value, CATEGORIES};

fn is_pb_type(ty: FieldType) -> bool {
    matches!(
        ty,
        FieldType::PbBool
            | FieldType::PbInt32
            | FieldType::PbUInt32
            | FieldType::PbInt64
            | FieldType::PbUInt64
            | FieldType::PbDouble
            | FieldType::PbString
            | FieldType::PbEnum
            | FieldType::PbFixed64
            | FieldType::PbSFixed64
            | FieldType::PbSInt32
            | FieldType::PbBytes
            | FieldType::PbMessage(_)
    )
}

fn def(category: u16, element: u16) -> &'static super::EventDef {
    catalogue::by_type(EventType::new(category, element))
        .unwrap_or_else(|| panic!("no event {category}:{element}"))
}

// ---- catalogue invariants -------------------------------------------------

#[test]
fn catalogue_is_sorted_by_type_and_unique() {
    for pair in EVENTS.windows(2) {
        assert!(
            pair[0].event_type() < pair[1].event_type(),
            "{} ({}) must come before {} ({})",
            pair[0].name,
            pair[0].event_type(),
            pair[1].name,
            pair[1].event_type()
        );
    }
    for def in EVENTS {
        assert!(
            std::ptr::eq(catalogue::by_type(def.event_type()).unwrap(), def),
            "by_type({}) must find {}",
            def.event_type(),
            def.name
        );
    }
}

#[test]
fn names_are_unique_within_a_category() {
    let mut seen = HashSet::new();
    for def in EVENTS {
        assert!(!def.name.is_empty());
        assert!(
            seen.insert((def.category, def.name)),
            "{} appears twice in category {}",
            def.name,
            def.category
        );
        let found = catalogue::by_category_and_name(def.category, def.name).unwrap();
        assert!(std::ptr::eq(found, def));
    }
}

#[test]
fn every_category_is_known() {
    for def in EVENTS {
        assert!(
            CATEGORIES.iter().any(|c| c.id == def.category),
            "{} has unknown category {}",
            def.name,
            def.category
        );
    }
}

#[test]
fn visible_keys_are_unique_within_an_event() {
    for def in EVENTS {
        let mut keys = HashSet::new();
        for field in def.fields.iter().filter(|f| !f.is_hidden()) {
            assert!(
                keys.insert(field.key),
                "{}: key {} appears twice",
                def.name,
                field.key
            );
        }
    }
}

#[test]
fn protobuf_fields_have_unique_nonzero_tags() {
    for def in EVENTS.iter().filter(|d| d.protocol == Protocol::Protobuf) {
        let mut tags = HashSet::new();
        for field in def.fields {
            assert_ne!(field.tag, 0, "{}.{} has no tag", def.name, field.key);
            assert!(
                tags.insert(field.tag),
                "{}: tag {} used twice",
                def.name,
                field.tag
            );
            assert!(!field.is_hidden(), "{}: hidden protobuf field", def.name);
            assert!(field.on_wire);
            assert_eq!(field.nil, NilRule::Never, "{}.{}", def.name, field.key);
            assert!(is_pb_type(field.ty), "{}.{}", def.name, field.key);
        }
    }
}

#[test]
fn mapped_fields_have_no_tag() {
    for def in EVENTS.iter().filter(|d| d.protocol == Protocol::Mapped) {
        for field in def.fields {
            assert_eq!(field.tag, 0, "{}.{}", def.name, field.key);
            assert_eq!(field.label, Label::Single, "{}.{}", def.name, field.key);
            assert!(!is_pb_type(field.ty), "{}.{}", def.name, field.key);
        }
    }
}

#[test]
fn only_host_status_next_host_notification_is_off_the_wire() {
    let off: Vec<_> = EVENTS
        .iter()
        .flat_map(|d| d.fields.iter().map(move |f| (d, f)))
        .filter(|(_, f)| !f.on_wire)
        .map(|(d, f)| (d.event_type().0, f.key))
        .collect();
    assert_eq!(off, [(65550, "next_host_notification")]);
}

/// Counts from docs/bbdo.md §1.3 (element ids): neb 1–26 mapped, 27–57 protobuf
/// except 43 (unused); bbdo 1–10; storage 1–13; bam 1–31; extcmd 1–2;
/// local 1.
#[test]
fn events_per_category_match_the_spec() {
    let mut counts: HashMap<u16, usize> = HashMap::new();
    for def in EVENTS {
        *counts.entry(def.category).or_default() += 1;
    }
    let expected = HashMap::from([(1, 56), (2, 10), (3, 13), (6, 31), (7, 2), (9, 1)]);
    assert_eq!(counts, expected);
    assert_eq!(EVENTS.len(), 113);

    let protobuf = |category| {
        EVENTS
            .iter()
            .filter(|d| d.category == category && d.protocol == Protocol::Protobuf)
            .count()
    };
    assert_eq!(protobuf(1), 30);
    assert_eq!(protobuf(2), 7);
    assert_eq!(protobuf(3), 7);
    assert_eq!(protobuf(6), 14);
    assert_eq!(protobuf(7), 2);
    assert_eq!(protobuf(9), 1);
    assert!(catalogue::by_type(EventType::new(1, 43)).is_none());
    // Outside the lookup table's range, and at its edges.
    for (category, element) in [(0, 0), (1, 63), (15, 1), (16, 1), (1, 64), (65535, 65535)] {
        assert!(catalogue::by_type(EventType::new(category, element)).is_none());
    }
}

#[test]
fn spot_checks_against_the_spec() {
    // (category, element, name, fields, hidden)
    let cases = [
        (1, 1, "acknowledgement", 13, 1),
        (1, 12, "host", 79, 0),
        (1, 14, "host_status", 42, 0),
        (1, 17, "log_entry", 14, 1),
        (1, 22, "service_group_member", 6, 3),
        (1, 23, "service", 81, 1),
        (1, 24, "service_status", 46, 2),
        (1, 27, "Service", 87, 0),
        (1, 30, "Host", 82, 0),
        (1, 37, "CustomVariable", 11, 0),
        (1, 38, "CustomVariableStatus", 11, 0),
        (2, 1, "version_response", 4, 0),
        (2, 2, "ack", 1, 0),
        (2, 3, "stop", 0, 0),
        (2, 9, "pb_stop", 1, 0),
        (3, 1, "metric", 10, 0),
        (3, 2, "rebuild", 3, 0),
        (3, 7, "rebuild_message", 4, 0),
        (6, 12, "rebuild", 1, 0),
        (6, 31, "ServicesBookState", 1, 0),
        (7, 1, "Bench", 2, 0),
        (2, 4, "rebuild_graphs", 1, 0),
        (2, 5, "remove_graphs", 2, 0),
        (2, 6, "remove_poller", 2, 0),
        (3, 13, "pb_otl_metrics", 1, 0),
        (7, 2, "BaInfo", 2, 0),
        (9, 1, "Stop", 1, 0),
    ];
    for (category, element, name, fields, hidden) in cases {
        let d = def(category, element);
        assert_eq!(d.name, name);
        assert_eq!(d.fields.len(), fields, "{name}");
        assert_eq!(
            d.fields.iter().filter(|f| f.is_hidden()).count(),
            hidden,
            "{name}"
        );
    }
    // The one event the catalogue knows by id only (docs/bbdo.md §3.7).
    assert!(def(6, 3).fields.is_empty());

    let log_entry = def(1, 17);
    assert_eq!(log_entry.fields[4].nil, NilRule::MinusOne);
    assert_eq!(log_entry.fields[4].ty, FieldType::Time);
    assert_eq!(
        log_entry.field("service_description").unwrap().nil,
        NilRule::Zero
    );
    let host_group = def(1, 10);
    assert!(host_group.fields[3].is_hidden());
    assert_eq!(host_group.fields[3].nil, NilRule::Zero);

    let service = def(1, 27);
    let tags = service.field("tags").unwrap();
    assert_eq!(
        (tags.ty, tags.label, tags.tag),
        (FieldType::PbMessage("TagInfo"), Label::Repeated, 84)
    );
    let adaptive = def(1, 28).field("notify").unwrap();
    assert_eq!(adaptive.label, Label::Optional);
    let comment = def(1, 35).field("header").unwrap();
    assert_eq!(
        (comment.ty, comment.label),
        (FieldType::PbMessage("BBDOHeader"), Label::Single)
    );
    let pb_metric = def(3, 9);
    assert_eq!(pb_metric.name, "pb_metric");
    assert_eq!(pb_metric.fields[0].tag, 4);
    assert_eq!(catalogue::by_name("ServiceStatus").unwrap().element, 29);
    assert_eq!(catalogue::by_name("status").unwrap().event_type().0, 196612);
}

// ---- golden test: cbd 21.10 API v1 lines ----------------------------------

const GOLDEN_V1: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/data/cbd-21.10/events-api-v1.jsonl"
);

#[test]
fn golden_cbd_21_10_api_v1_lines_round_trip() {
    let text = std::fs::read_to_string(GOLDEN_V1).expect("golden file");
    let mut counts: HashMap<u32, usize> = HashMap::new();
    let mut lines = 0;
    for (n, line) in text.lines().enumerate() {
        let n = n + 1;
        let json: Json = serde_json::from_str(line).unwrap_or_else(|e| panic!("line {n}: {e}"));
        let event = Event::from_json(&json).unwrap_or_else(|e| panic!("line {n}: {e}"));
        assert_eq!(event.to_json(), json, "line {n}");
        *counts.entry(event.event_type().0).or_default() += 1;
        lines += 1;
    }
    assert_eq!(lines, 953);
    let expected = HashMap::from([
        (65537, 2),
        (65538, 2),
        (65539, 1),
        (65541, 2),
        (65546, 2),
        (65547, 3),
        (65548, 10),
        (65550, 300),
        (65551, 1),
        (65559, 30),
        (65560, 300),
        (196609, 300),
    ]);
    assert_eq!(counts, expected);
}

#[test]
fn golden_doubles_stay_floats_and_times_integers() {
    let text = std::fs::read_to_string(GOLDEN_V1).expect("golden file");
    let line = text
        .lines()
        .find(|l| l.contains("\"_type\":65550"))
        .expect("a host_status line");
    let json: Json = serde_json::from_str(line).unwrap();
    let event = Event::from_json(&json).unwrap();
    assert!(matches!(event.get("check_interval"), Some(Value::Float(_))));
    assert!(matches!(event.get("last_check"), Some(Value::Int(_))));
    let out = event.to_json();
    assert!(out["check_interval"].is_f64());
    assert!(out["last_check"].is_i64());
}

// ---- from_json errors and nil rules ---------------------------------------

#[test]
fn from_json_rejects_non_objects() {
    for json in [
        json!([1, 2]),
        json!("host_status"),
        json!(65550),
        json!(null),
    ] {
        assert_eq!(Event::from_json(&json), Err(EventJsonError::NotAnObject));
    }
}

#[test]
fn from_json_needs_a_type() {
    assert_eq!(
        Event::from_json(&json!({"host_id": 1})),
        Err(EventJsonError::MissingType)
    );
    // category without element is not enough.
    assert_eq!(
        Event::from_json(&json!({"category": 1, "host_id": 1})),
        Err(EventJsonError::MissingType)
    );
    assert_eq!(
        Event::from_json(&json!({"_type": "65550"})),
        Err(EventJsonError::BadTypeKey("_type"))
    );
}

#[test]
fn from_json_checks_type_against_category_and_element() {
    assert_eq!(
        Event::from_json(&json!({"_type": 65550, "category": 1, "element": 12})),
        Err(EventJsonError::TypeMismatch {
            ty: 65550,
            category: 1,
            element: 12
        })
    );
    let ok = Event::from_json(&json!({"_type": 65550, "category": 1, "element": 14})).unwrap();
    assert_eq!(ok.def().name, "host_status");
}

#[test]
fn from_json_rejects_unknown_types() {
    assert_eq!(
        Event::from_json(&json!({"_type": 65579})),
        Err(EventJsonError::UnknownType(EventType::new(1, 43)))
    );
    assert_eq!(
        Event::from_json(&json!({"category": 4, "element": 1})),
        Err(EventJsonError::UnknownType(EventType::new(4, 1)))
    );
}

#[test]
fn from_json_rejects_unknown_and_hidden_fields() {
    assert_eq!(
        Event::from_json(&json!({"_type": 65550, "hostid": 1})),
        Err(EventJsonError::UnknownField {
            event: "host_status",
            field: "hostid".to_owned()
        })
    );
    // Hidden fields have an empty key and cannot be reached from JSON.
    assert_eq!(
        Event::from_json(&json!({"_type": 65560, "": "srv"})),
        Err(EventJsonError::UnknownField {
            event: "service_status",
            field: String::new()
        })
    );
    // Visible to Lua even though it is not on the wire.
    let event = Event::from_json(&json!({"_type": 65550, "next_host_notification": 5})).unwrap();
    assert_eq!(event.get("next_host_notification"), Some(&Value::Int(5)));
}

#[test]
fn from_json_checks_value_types() {
    let wrong = |field: &str, expected, got| {
        Err(EventJsonError::WrongType {
            field: field.to_owned(),
            expected,
            got,
        })
    };
    assert_eq!(
        Event::from_json(&json!({"_type": 65550, "host_id": "12"})),
        wrong("host_id", "an integer", "a string")
    );
    assert_eq!(
        Event::from_json(&json!({"_type": 65550, "host_id": 12.0})),
        wrong("host_id", "an integer", "a float")
    );
    assert_eq!(
        Event::from_json(&json!({"_type": 65550, "checked": 1})),
        wrong("checked", "a boolean", "an integer")
    );
    assert_eq!(
        Event::from_json(&json!({"_type": 65550, "output": 1})),
        wrong("output", "a string", "an integer")
    );
    assert_eq!(
        Event::from_json(&json!({"_type": 65550, "check_interval": "5"})),
        wrong("check_interval", "a number", "a string")
    );
    // An integer is a fine double: it becomes a float.
    let event = Event::from_json(&json!({"_type": 65550, "check_interval": 5})).unwrap();
    assert_eq!(event.get("check_interval"), Some(&Value::Float(5.0)));
    assert_eq!(event.to_json()["check_interval"], json!(5.0));
    assert_ne!(event.to_json()["check_interval"], json!(5));
}

#[test]
fn from_json_checks_ranges() {
    assert_eq!(
        Event::from_json(&json!({"_type": 65550, "state": 70000})),
        Err(EventJsonError::OutOfRange {
            field: "state".to_owned(),
            value: 70000,
            min: i16::MIN.into(),
            max: i16::MAX.into()
        })
    );
    // metric.interval is a u32 without a nil rule.
    assert_eq!(
        Event::from_json(&json!({"_type": 196609, "interval": -1})),
        Err(EventJsonError::OutOfRange {
            field: "interval".to_owned(),
            value: -1,
            min: 0,
            max: u32::MAX.into()
        })
    );
    // Beyond i64 on a field that is not 64-bit unsigned.
    assert_eq!(
        Event::from_json(&json!({"_type": 65550, "host_id": u64::MAX})),
        Err(EventJsonError::OutOfRange {
            field: "host_id".to_owned(),
            value: i64::MAX,
            min: 0,
            max: u32::MAX.into()
        })
    );
    // A uint64 above i64::MAX keeps its bit pattern.
    let event = Event::from_json(&json!({"_type": 65563, "host_id": u64::MAX})).unwrap();
    assert_eq!(event.get("host_id"), Some(&Value::Int(-1)));
}

#[test]
fn from_json_applies_nil_rules() {
    let event = Event::from_json(&json!({"_type": 65550, "host_id": 0, "state": 0})).unwrap();
    assert_eq!(event.get("host_id"), None);
    assert_eq!(event.get("state"), Some(&Value::Int(0)));
    assert_eq!(
        event.to_json(),
        json!({"_type": 65550, "category": 1, "element": 14, "state": 0})
    );

    let ack = Event::from_json(&json!({
        "_type": 65537, "deletion_time": -1, "entry_time": 1732009200, "host_id": 3
    }))
    .unwrap();
    assert_eq!(ack.get("deletion_time"), None);
    let out = ack.to_json();
    assert!(out.get("deletion_time").is_none());
    assert_eq!(out["entry_time"], json!(1732009200));

    // comment.deletion_time is nil if 0, not -1.
    let comment = Event::from_json(&json!({"_type": 65538, "deletion_time": -1})).unwrap();
    assert_eq!(comment.get("deletion_time"), Some(&Value::Int(-1)));

    // nil if "" on a string field.
    let log = Event::from_json(&json!({"_type": 65553, "service_description": ""})).unwrap();
    assert_eq!(log.get("service_description"), None);

    // null is nil too.
    let event = Event::from_json(&json!({"_type": 65550, "output": null})).unwrap();
    assert_eq!(event.get("output"), None);
}

#[test]
fn from_json_accepts_category_and_element_alone() {
    let event = Event::from_json(&json!({"category": 1, "element": 14, "host_id": 5})).unwrap();
    assert_eq!(event.event_type(), EventType(65550));
    assert_eq!(
        event.to_json(),
        json!({"_type": 65550, "category": 1, "element": 14, "host_id": 5})
    );
}

#[test]
fn from_json_takes_repeated_fields_as_arrays() {
    let json = json!({
        "_type": 196616, "category": 3, "element": 8, "index_ids": [1, 2, 3], "metric_ids": []
    });
    let event = Event::from_json(&json).unwrap();
    assert_eq!(
        event.get("index_ids"),
        Some(&Value::List(vec![
            Value::Int(1),
            Value::Int(2),
            Value::Int(3)
        ]))
    );
    assert_eq!(event.to_json(), json);

    assert_eq!(
        Event::from_json(&json!({"_type": 196616, "index_ids": 1})),
        Err(EventJsonError::WrongType {
            field: "index_ids".to_owned(),
            expected: "an array",
            got: "an integer"
        })
    );
    assert_eq!(
        Event::from_json(&json!({"_type": 196616, "index_ids": [1, "2"]})),
        Err(EventJsonError::WrongType {
            field: "index_ids".to_owned(),
            expected: "an integer",
            got: "a string"
        })
    );

    // Repeated messages: an array of tables.
    let json = json!({
        "_type": 65563, "category": 1, "element": 27, "host_id": 1,
        "tags": [{"id": 4, "type": 1}]
    });
    let event = Event::from_json(&json).unwrap();
    assert_eq!(
        event.get("tags"),
        Some(&Value::List(vec![Value::Table(vec![
            ("id".to_owned(), Value::Int(4)),
            ("type".to_owned(), Value::Int(1)),
        ])]))
    );
    let back = event.to_json();
    assert_eq!(back["tags"], json["tags"]);
    assert_eq!(back["host_id"], 1);
    assert_eq!(Event::from_json(&back).unwrap(), event);
}

#[test]
fn from_json_takes_nested_messages_as_objects() {
    let json = json!({
        "_type": 65571, "category": 1, "element": 35,
        "header": {"conf_version": 3}, "author": "admin"
    });
    let event = Event::from_json(&json).unwrap();
    assert_eq!(
        event.get("header"),
        Some(&Value::Table(vec![(
            "conf_version".to_owned(),
            Value::Int(3)
        )]))
    );
    let back = event.to_json();
    assert_eq!(back["header"], json["header"]);
    assert_eq!(back["author"], "admin");
    assert_eq!(Event::from_json(&back).unwrap(), event);

    let welcome = json!({
        "_type": 131079, "category": 2, "element": 7,
        "version": {"major": 3, "minor": 0, "patch": 1}
    });
    let back = Event::from_json(&welcome).unwrap().to_json();
    assert_eq!(back["version"], welcome["version"]);
    assert_eq!(back["poller_name"], "");
}

// ---- sub-messages and proto3 presence (docs/bbdo.md §3.2 to §3.4) -----------

#[test]
fn every_nested_message_has_a_layout_of_protobuf_fields() {
    let mut names: Vec<&str> = Vec::new();
    let mut field_lists: Vec<&[super::FieldDef]> = EVENTS
        .iter()
        .filter(|d| d.protocol == Protocol::Protobuf)
        .map(|d| d.fields)
        .collect();
    field_lists.extend(catalogue::messages().map(|(_, fields)| fields));
    for fields in field_lists {
        let mut tags = HashSet::new();
        for field in fields {
            assert!(is_pb_type(field.ty), "{}: {:?}", field.key, field.ty);
            assert!(
                tags.insert(field.tag),
                "{}: tag {} twice",
                field.key,
                field.tag
            );
            if let FieldType::PbMessage(name) = field.ty {
                assert!(catalogue::message(name).is_some(), "no layout for {name}");
                names.push(name);
            }
        }
    }
    // Every layout is used, and every default builds (no message contains
    // itself through plain fields).
    for (name, _) in catalogue::messages() {
        assert!(names.contains(&name), "{name} is never nested");
        let Value::Table(_) = FieldType::PbMessage(name).proto3_default() else {
            panic!("{name}: default is not a table")
        };
    }
}

#[test]
fn unset_sub_messages_show_their_defaults_and_oneofs_all_their_members() {
    // Every neb event's header, never set by Centreon (docs/bbdo.md §3.3).
    let comment = Event::from_json(&json!({"_type": 65571, "host_id": 1})).unwrap();
    assert_eq!(comment.to_json()["header"], json!({"conf_version": 0}));
    let empty = Event::new(def(1, 35));
    assert_eq!(empty.to_json()["header"], json!({"conf_version": 0}));
    assert_eq!(empty.to_json()["author"], "");

    // A nested default contains the defaults of its own sub-messages.
    let bench = Event::from_json(&json!({"_type": 458753, "points": [{"name": "a"}]})).unwrap();
    assert_eq!(
        bench.to_json()["points"],
        json!([{"name": "a", "function": "", "time": {"seconds": 0, "nanos": 0}}])
    );

    // remove_poller's oneof: one member set shows both; none shows none.
    let by_name = Event::from_json(&json!({"_type": 131078, "str": "poller1"})).unwrap();
    let text = by_name.to_json();
    assert_eq!(
        (text["str"].clone(), text["idx"].clone()),
        (json!("poller1"), json!(0))
    );
    let neither = Event::from_json(&json!({"_type": 131078})).unwrap();
    assert!(neither.to_json().get("str").is_none());
    assert!(neither.to_json().get("idx").is_none());
}

#[test]
fn nested_input_is_checked_against_its_layout() {
    let unknown = json!({"_type": 65593, "stats": [{"major": 1, "colour": "red"}]});
    assert_eq!(
        Event::from_json(&unknown),
        Err(EventJsonError::UnknownField {
            event: "AgentInfo",
            field: "stats.colour".to_owned()
        })
    );
    let wrong = json!({"_type": 65593, "stats": [{"os": 3}]});
    assert_eq!(
        Event::from_json(&wrong),
        Err(EventJsonError::WrongType {
            field: "stats.os".to_owned(),
            expected: "a string",
            got: "an integer"
        })
    );
    let bytes = json!({"_type": 196621, "resource_metrics": [{"scope_metrics": [{"metrics": [
        {"name": "m", "gauge": {"data_points": [{"exemplars": [{"span_id": "xyz"}]}]}}
    ]}]}]});
    assert!(matches!(
        Event::from_json(&bytes),
        Err(EventJsonError::WrongType {
            expected: "hexadecimal text",
            ..
        })
    ));
    // AnyValue → ArrayValue → AnyValue… past the nesting limit.
    let mut value = json!({"string_value": "leaf"});
    for _ in 0..20 {
        value = json!({"array_value": {"values": [value]}});
    }
    let deep = json!({"_type": 196621, "resource_metrics": [{"resource": {"attributes": [
        {"key": "k", "value": value}
    ]}}]});
    assert!(matches!(
        Event::from_json(&deep),
        Err(EventJsonError::TooDeep(_))
    ));
}

// ---- filters ---------------------------------------------------------------

fn parse(names: &[&str]) -> Filter {
    Filter::parse(names).unwrap_or_else(|e| panic!("{names:?}: {e}"))
}

const HOST_STATUS: EventType = EventType::new(1, 14);
const SERVICE_STATUS: EventType = EventType::new(1, 24);
const PB_SERVICE_STATUS: EventType = EventType::new(1, 29);
const METRIC: EventType = EventType::new(3, 1);
const PB_METRIC: EventType = EventType::new(3, 9);
const BA_STATUS: EventType = EventType::new(6, 1);

#[test]
fn filter_by_category() {
    let neb = parse(&["neb"]);
    assert!(!neb.accepts_all());
    assert!(neb.accepts(HOST_STATUS));
    assert!(neb.accepts(PB_SERVICE_STATUS));
    assert!(!neb.accepts(METRIC));
    assert!(!neb.accepts(BA_STATUS));

    let storage = parse(&["storage"]);
    assert!(storage.accepts(METRIC));
    assert!(storage.accepts(PB_METRIC));
    assert!(!storage.accepts(HOST_STATUS));

    let bam = parse(&["bam"]);
    assert!(bam.accepts(BA_STATUS));
    assert!(bam.accepts(EventType::new(6, 19)));
    assert!(!bam.accepts(METRIC));

    let both = parse(&["neb", "bam"]);
    assert!(both.accepts(HOST_STATUS) && both.accepts(BA_STATUS));
    assert!(!both.accepts(METRIC));
}

#[test]
fn filter_by_event() {
    let f = parse(&["neb:host_status"]);
    assert!(f.accepts(HOST_STATUS));
    assert!(!f.accepts(SERVICE_STATUS));
    assert!(!f.accepts(EventType::new(1, 32)));

    let f = parse(&["storage:metric"]);
    assert!(f.accepts(METRIC));
    assert!(!f.accepts(PB_METRIC));

    let f = parse(&["neb:ServiceStatus"]);
    assert!(f.accepts(PB_SERVICE_STATUS));
    assert!(!f.accepts(SERVICE_STATUS));

    let f = parse(&["storage:pb_metric"]);
    assert!(f.accepts(PB_METRIC));
    assert!(!f.accepts(METRIC));

    let f = parse(&["neb:host_status", "storage"]);
    assert!(f.accepts(HOST_STATUS) && f.accepts(METRIC) && f.accepts(PB_METRIC));
    assert!(!f.accepts(SERVICE_STATUS));

    // The same name in two categories.
    assert!(parse(&["storage:rebuild"]).accepts(EventType::new(3, 2)));
    assert!(parse(&["bam:rebuild"]).accepts(EventType::new(6, 12)));
    assert!(!parse(&["bam:rebuild"]).accepts(EventType::new(3, 2)));
}

#[test]
fn filter_all_and_empty() {
    let all = parse(&["all"]);
    assert!(all.accepts_all());
    assert_eq!(all, Filter::all());
    assert!(parse(&["neb:host_status", "all"]).accepts_all());
    let empty = Filter::parse::<&str>(&[]).unwrap();
    assert!(empty.accepts_all());
    for ty in [HOST_STATUS, METRIC, BA_STATUS, EventType::new(9, 1)] {
        assert!(all.accepts(ty) && empty.accepts(ty));
    }
}

#[test]
fn filter_errors() {
    assert_eq!(
        Filter::parse(&["nebula"]),
        Err(FilterError::UnknownCategory("nebula".to_owned()))
    );
    assert_eq!(
        Filter::parse(&["foo:host_status"]),
        Err(FilterError::UnknownCategory("foo".to_owned()))
    );
    assert_eq!(
        Filter::parse(&["neb:nope"]),
        Err(FilterError::UnknownElement {
            category: "neb".to_owned(),
            element: "nope".to_owned()
        })
    );
    // An event of another category.
    assert_eq!(
        Filter::parse(&["neb:metric"]),
        Err(FilterError::UnknownElement {
            category: "neb".to_owned(),
            element: "metric".to_owned()
        })
    );
}

#[test]
fn filter_names_are_case_sensitive() {
    let pb = parse(&["neb:Service"]);
    let legacy = parse(&["neb:service"]);
    assert_ne!(pb, legacy);
    assert!(pb.accepts(EventType::new(1, 27)));
    assert!(!pb.accepts(EventType::new(1, 23)));
    assert!(legacy.accepts(EventType::new(1, 23)));
    assert!(!legacy.accepts(EventType::new(1, 27)));
    assert_eq!(
        Filter::parse(&["neb:SERVICE"]),
        Err(FilterError::UnknownElement {
            category: "neb".to_owned(),
            element: "SERVICE".to_owned()
        })
    );
    assert_eq!(
        Filter::parse(&["NEB"]),
        Err(FilterError::UnknownCategory("NEB".to_owned()))
    );
}
