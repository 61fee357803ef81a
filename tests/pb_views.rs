//! BBDO 3 events with nested messages, as every view shows them
//! (docs/bbdo.md §3.2 to §3.4, docs/lua-runtime.md §6): the JSON form (file
//! output, live tail), an API v1 table, an API v2 `broker_event` and its
//! `json_encode`. The payloads are written by the small protobuf writer
//! below, from the field lists of docs/bbdo.md, not by brokerstream's codec,
//! and the expected values are written out by hand.

use std::sync::Arc;

use brokerstream::bbdo;
use brokerstream::event::{Event, EventType};
use brokerstream::output::lua::event::Shared;
use serde_json::{json, Value};

use crate::lua::{eval, Lab};

/// A protobuf message being written: keys and values in the order given.
#[derive(Default, Clone)]
pub(crate) struct Pb(Vec<u8>);

impl Pb {
    fn key(mut self, tag: u32, wire_type: u8) -> Self {
        self.put_varint(u64::from(tag) << 3 | u64::from(wire_type));
        self
    }

    fn put_varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn varint(self, tag: u32, v: u64) -> Self {
        let mut me = self.key(tag, 0);
        me.put_varint(v);
        me
    }

    /// int32 and int64 are sign-extended to 64 bits.
    fn int(self, tag: u32, v: i64) -> Self {
        self.varint(tag, v as u64)
    }

    fn sint32(self, tag: u32, v: i32) -> Self {
        self.varint(tag, u64::from(((v << 1) ^ (v >> 31)) as u32))
    }

    fn fixed64(self, tag: u32, v: u64) -> Self {
        let mut me = self.key(tag, 1);
        me.0.extend_from_slice(&v.to_le_bytes());
        me
    }

    fn double(self, tag: u32, v: f64) -> Self {
        self.fixed64(tag, v.to_bits())
    }

    fn bytes(self, tag: u32, v: &[u8]) -> Self {
        let mut me = self.key(tag, 2);
        me.put_varint(v.len() as u64);
        me.0.extend_from_slice(v);
        me
    }

    fn str(self, tag: u32, v: &str) -> Self {
        self.bytes(tag, v.as_bytes())
    }

    fn msg(self, tag: u32, m: Pb) -> Self {
        self.bytes(tag, &m.0)
    }
}

fn pb() -> Pb {
    Pb::default()
}

pub(crate) struct Sample {
    pub event_type: EventType,
    pub payload: Vec<u8>,
    /// The JSON form, as the file output writes it.
    pub json: Value,
}

fn sample(category: u16, element: u16, payload: Pb, json: Value) -> Sample {
    Sample {
        event_type: EventType::new(category, element),
        payload: payload.0,
        json,
    }
}

fn agent_stats() -> Sample {
    let info = pb()
        .varint(1, 1)
        .varint(2, 2)
        .varint(3, 3)
        .varint(4, 1)
        .str(5, "linux \"deb\"\n")
        .str(6, "12")
        .varint(7, 4);
    sample(
        1,
        57,
        pb().int(1, -5).msg(2, info).msg(2, pb().str(5, "win")),
        json!({"_type": 65593, "category": 1, "element": 57, "poller_id": -5, "stats": [
            {"major": 1, "minor": 2, "patch": 3, "reverse": true, "os": "linux \"deb\"\n",
             "os_version": "12", "nb_agent": 4},
            {"major": 0, "minor": 0, "patch": 0, "reverse": false, "os": "win",
             "os_version": "", "nb_agent": 0}
        ]}),
    )
}

fn services_book_state() -> Sample {
    let state = pb()
        .varint(1, u64::MAX)
        .varint(2, 7)
        .varint(3, 2)
        .varint(4, 1)
        .varint(5, 1_732_000_000)
        .varint(6, 1);
    sample(
        6,
        31,
        pb().msg(1, state),
        json!({"_type": 393247, "category": 6, "element": 31, "service": [
            {"host_id": -1, "service_id": 7, "current_state": 2, "last_hard_state": 1,
             "last_check": 1_732_000_000, "state_type": true, "acknowledged": false}
        ]}),
    )
}

fn bench() -> Sample {
    let first = pb()
        .str(1, "a")
        .str(2, "f")
        .msg(3, pb().int(1, 1_732_000_000).int(2, 5));
    sample(
        7,
        1,
        pb().varint(1, 9).msg(2, first).msg(2, pb().str(1, "b")),
        json!({"_type": 458753, "category": 7, "element": 1, "id": 9, "points": [
            {"name": "a", "function": "f", "time": {"seconds": 1_732_000_000, "nanos": 5}},
            {"name": "b", "function": "", "time": {"seconds": 0, "nanos": 0}}
        ]}),
    )
}

fn rebuild_message() -> Sample {
    let timeserie = pb()
        .msg(1, pb().int(1, 100).double(2, 0.1))
        .msg(1, pb().int(1, 200).double(2, 1e300).varint(3, 2))
        .int(2, 1)
        .varint(3, 300)
        .varint(4, 180);
    sample(
        3,
        7,
        pb().varint(1, 1)
            .msg(2, pb().varint(1, 12).msg(2, timeserie))
            // metric_id, packed.
            .bytes(3, &[1, 2])
            .msg(4, pb().varint(1, 5).varint(2, 6)),
        json!({"_type": 196615, "category": 3, "element": 7, "state": 1,
            "timeserie": [{"key": 12, "value": {
                "pts": [{"ctime": 100, "value": 0.1, "status": 0},
                        {"ctime": 200, "value": 1e300, "status": 2}],
                "data_source_type": 1, "check_interval": 300, "rrd_retention": 180}}],
            "metric_id": [1, 2],
            "metric_to_index_id": [{"key": 5, "value": 6}]}),
    )
}

fn ba_info() -> Sample {
    sample(
        7,
        2,
        pb().varint(1, (1 << 63) + 6).str(2, "/tmp/ba.json"),
        json!({"_type": 458754, "category": 7, "element": 2,
            "id": -9_223_372_036_854_775_802_i64, "output_file": "/tmp/ba.json"}),
    )
}

/// A Comment with no header on the wire, as every Centreon sends it.
fn comment() -> Sample {
    let json = json!({"_type": 65571, "category": 1, "element": 35});
    sample(1, 35, pb().str(2, "admin").varint(9, 3), json)
}

fn remove_poller() -> Sample {
    sample(
        2,
        6,
        pb().str(1, "poller1"),
        json!({"_type": 131078, "category": 2, "element": 6, "str": "poller1", "idx": 0}),
    )
}

fn otl_metrics() -> Sample {
    let attribute = pb().str(1, "host").msg(2, pb().str(1, "srv"));
    let exemplar = pb().fixed64(2, 7).bytes(4, &[0xde, 0xad]);
    let point = pb()
        .fixed64(3, 1_732_000_000_000_000_000)
        .double(4, 0.5)
        .msg(5, exemplar);
    let metric = pb().str(1, "cpu").str(3, "%").msg(5, pb().msg(1, point));
    let scope = pb().msg(1, pb().str(1, "s")).msg(2, metric);
    let resource = pb().msg(1, attribute);
    sample(
        3,
        13,
        pb().msg(1, pb().msg(1, resource).msg(2, scope)),
        json!({"_type": 196621, "category": 3, "element": 13}),
    )
}

pub(crate) fn samples() -> Vec<Sample> {
    vec![
        agent_stats(),
        services_book_state(),
        bench(),
        rebuild_message(),
        ba_info(),
        comment(),
        remove_poller(),
        otl_metrics(),
    ]
}

fn decoded(sample: &Sample) -> Event {
    bbdo::decode(sample.event_type, &sample.payload)
        .unwrap_or_else(|e| panic!("{}: {e}", sample.event_type))
}

/// Every key the sample names has the value it names (Comment and
/// OTLMetrics name only their type: they are checked field by field).
#[test]
fn the_json_form_names_sub_message_fields_and_arrays() {
    for sample in samples() {
        let json = decoded(&sample).to_json();
        for (key, expected) in sample.json.as_object().unwrap() {
            assert_eq!(
                &json[key], expected,
                "{}: {key} in {json}",
                sample.event_type
            );
        }
    }
    let comment = decoded(&comment()).to_json();
    assert_eq!(comment["header"], json!({"conf_version": 0}));
    assert_eq!(comment["author"], "admin");

    let otl = decoded(&otl_metrics()).to_json();
    let rm = &otl["resource_metrics"][0];
    assert_eq!(
        rm["resource"]["attributes"][0]["value"],
        json!({"string_value": "srv", "bool_value": false, "int_value": 0, "double_value": 0.0,
               "array_value": {"values": []}, "kvlist_value": {"values": []},
               "bytes_value": ""}),
        "a set oneof shows every member"
    );
    let metric = &rm["scope_metrics"][0]["metrics"][0];
    assert_eq!(metric["name"], "cpu");
    assert_eq!(metric["unit"], "%");
    assert_eq!(
        metric["sum"],
        json!({"data_points": [], "aggregation_temporality": 0, "is_monotonic": false})
    );
    let point = &metric["gauge"]["data_points"][0];
    assert_eq!(point["time_unix_nano"], 1_732_000_000_000_000_000_i64);
    assert_eq!(point["as_double"], 0.5);
    assert_eq!(point["as_int"], 0);
    assert_eq!(point["exemplars"][0]["span_id"], "dead");
    assert_eq!(point["exemplars"][0]["trace_id"], "");

    // The JSON form reads back to the same event (a replay file, NDJSON).
    for sample in samples() {
        let event = decoded(&sample);
        assert_eq!(Event::from_json(&event.to_json()).unwrap(), event);
    }
}

fn script_with_last(lab: &Lab, api: u8) -> brokerstream::output::lua::runtime::Script {
    lab.load(
        &format!(
            "broker_api_version = {api}\n\
             function init(conf) end\n\
             function write(d) last = d return true end\n"
        ),
        &[],
    )
}

fn written(api: u8, sample: &Sample) -> (Lab, brokerstream::output::lua::runtime::Script) {
    let lab = Lab::new();
    let mut script = script_with_last(&lab, api);
    script.write(&Shared::Event(Arc::new(decoded(sample))));
    (lab, script)
}

#[test]
fn lua_tables_and_userdata_name_sub_message_fields() {
    for api in [1, 2] {
        let (_lab, s) = written(api, &agent_stats());
        assert_eq!(eval::<i64>(&s, "#last.stats"), 2, "api {api}");
        assert_eq!(eval::<String>(&s, "last.stats[1].os_version"), "12");
        assert_eq!(eval::<String>(&s, "last.stats[1].os"), "linux \"deb\"\n");
        assert!(!eval::<bool>(&s, "last.stats[2].reverse"));
        assert_eq!(eval::<i64>(&s, "last.poller_id"), -5);

        let (_lab, s) = written(api, &services_book_state());
        // uint64 is a signed Lua integer, nested too.
        assert_eq!(eval::<i64>(&s, "last.service[1].host_id"), -1);
        assert!(eval::<bool>(&s, "last.service[1].state_type"));

        let (_lab, s) = written(api, &bench());
        assert_eq!(
            eval::<i64>(&s, "last.points[1].time.seconds"),
            1_732_000_000
        );
        assert_eq!(eval::<i64>(&s, "last.points[2].time.nanos"), 0);

        let (_lab, s) = written(api, &rebuild_message());
        assert_eq!(eval::<i64>(&s, "last.timeserie[1].key"), 12);
        assert_eq!(
            eval::<f64>(&s, "last.timeserie[1].value.pts[2].value"),
            1e300
        );
        assert_eq!(eval::<i64>(&s, "#last.timeserie[1].value.pts"), 2);
        assert_eq!(eval::<i64>(&s, "last.metric_to_index_id[1].value"), 6);

        let (_lab, s) = written(api, &ba_info());
        assert_eq!(eval::<i64>(&s, "last.id"), -9_223_372_036_854_775_802);
        assert_eq!(eval::<String>(&s, "last.output_file"), "/tmp/ba.json");

        let (_lab, s) = written(api, &comment());
        assert_eq!(eval::<i64>(&s, "last.header.conf_version"), 0);

        let (_lab, s) = written(api, &remove_poller());
        assert_eq!(eval::<String>(&s, "last.str"), "poller1");
        assert_eq!(eval::<i64>(&s, "last.idx"), 0);

        // Types Centreon's reflection does not convert.
        let (_lab, s) = written(api, &otl_metrics());
        let point = "last.resource_metrics[1].scope_metrics[1].metrics[1].gauge.data_points[1]";
        assert_eq!(
            eval::<String>(&s, &format!("{point}.time_unix_nano")),
            "not_implemented"
        );
        assert_eq!(eval::<f64>(&s, &format!("{point}.as_double")), 0.5);
        assert_eq!(
            eval::<String>(&s, &format!("{point}.as_int")),
            "not_implemented"
        );
        assert_eq!(
            eval::<String>(&s, &format!("{point}.exemplars[1].span_id")),
            "not_implemented"
        );
        assert!(!eval::<bool>(
            &s,
            "last.resource_metrics[1].scope_metrics[1].metrics[1].sum.is_monotonic"
        ));
        assert_eq!(
            eval::<String>(
                &s,
                "last.resource_metrics[1].resource.attributes[1].value.string_value"
            ),
            "srv"
        );
    }
}

#[test]
fn pairs_of_a_v2_event_stops_at_an_unset_oneof() {
    let lab = Lab::new();
    let mut s = lab.load(
        "broker_api_version = 2\nfunction init(conf) end\n\
         function write(d) keys = {} for k in pairs(d) do keys[#keys + 1] = k end return true end\n",
        &[],
    );
    s.write(&Shared::Event(Arc::new(decoded(&remove_poller()))));
    assert_eq!(
        eval::<String>(&s, "table.concat(keys, ',')"),
        "_type,category,element,str,idx"
    );
    let neither = Sample {
        payload: Vec::new(),
        ..remove_poller()
    };
    s.write(&Shared::Event(Arc::new(decoded(&neither))));
    assert_eq!(
        eval::<String>(&s, "table.concat(keys, ',')"),
        "_type,category,element"
    );
}

#[test]
fn json_encode_of_a_v2_event_writes_sub_messages_and_unsigned_64_bit_values() {
    let encode = |sample: Sample| -> String {
        let (_lab, s) = written(2, &sample);
        eval::<String>(&s, "broker.json_encode(last)")
    };
    assert_eq!(
        encode(agent_stats()),
        "{\"_type\":65593, \"category\":1, \"element\":57, \"poller_id\":-5, \"stats\":[\
         {\"major\":1, \"minor\":2, \"patch\":3, \"reverse\":true, \"os\":\"linux \"deb\"\n\", \
         \"os_version\":\"12\", \"nb_agent\":4}, \
         {\"major\":0, \"minor\":0, \"patch\":0, \"reverse\":false, \"os\":\"win\", \
         \"os_version\":\"\", \"nb_agent\":0}]}"
    );
    assert_eq!(
        encode(services_book_state()),
        "{\"_type\":393247, \"category\":6, \"element\":31, \"service\":[\
         {\"host_id\":18446744073709551615, \"service_id\":7, \"current_state\":2, \
         \"last_hard_state\":1, \"last_check\":1732000000, \"state_type\":true, \
         \"acknowledged\":false}]}"
    );
    assert_eq!(
        encode(bench()),
        "{\"_type\":458753, \"category\":7, \"element\":1, \"id\":9, \"points\":[\
         {\"name\":\"a\", \"function\":\"f\", \"time\":{\"seconds\":1732000000, \"nanos\":5}}, \
         {\"name\":\"b\", \"function\":\"\", \"time\":{\"seconds\":0, \"nanos\":0}}]}"
    );
    assert_eq!(
        encode(ba_info()),
        "{\"_type\":458754, \"category\":7, \"element\":2, \"id\":9223372036854775814, \
         \"output_file\":\"/tmp/ba.json\"}"
    );
    assert_eq!(
        encode(remove_poller()),
        "{\"_type\":131078, \"category\":2, \"element\":6, \"str\":\"poller1\", \"idx\":0}"
    );
    let comment = encode(comment());
    assert!(
        comment.contains("\"header\":{\"conf_version\":0}"),
        "{comment}"
    );
    let rebuild = encode(rebuild_message());
    assert!(
        rebuild.contains(
            "\"timeserie\":[{\"key\":12, \"value\":{\"pts\":[{\"ctime\":100, \"value\":0.1, \
             \"status\":0}, {\"ctime\":200, \"value\":1e+300, \"status\":2}], \
             \"data_source_type\":1, \"check_interval\":300, \"rrd_retention\":180}}]"
        ),
        "{rebuild}"
    );
    assert!(rebuild.contains("\"metric_id\":[1,2]"), "{rebuild}");
    let otl = encode(otl_metrics());
    assert!(
        otl.contains("\"time_unix_nano\":1732000000000000000"),
        "{otl}"
    );
    assert!(otl.contains("\"span_id\":\"dead\""), "{otl}");

    // The v1 table of the same BaInfo is signed, as Centreon's.
    let (_lab, s) = written(1, &ba_info());
    assert!(eval::<String>(&s, "broker.json_encode(last)").contains("-9223372036854775802"));
}

/// Centreon's encoder throws on sint32 (an exponential histogram's
/// `scale`): json_encode logs the error and returns nothing.
#[test]
fn json_encode_of_an_exponential_histogram_logs_and_returns_nothing() {
    let point = pb().fixed64(4, 3).sint32(6, -2);
    let metric = pb().str(1, "latency").msg(10, pb().msg(1, point));
    let payload = pb().msg(1, pb().msg(2, pb().msg(2, metric)));
    let sample = sample(3, 13, payload, json!({}));
    let event = decoded(&sample);
    let scale = &event.to_json()["resource_metrics"][0]["scope_metrics"][0]["metrics"][0]
        ["exponential_histogram"]["data_points"][0]["scale"];
    assert_eq!(scale, -2, "zigzag decoded");

    let (lab, s) = written(2, &sample);
    assert_eq!(eval::<i64>(&s, "select('#', broker.json_encode(last))"), 0);
    assert!(
        lab.logs()
            .iter()
            .any(|l| l.contains("json_encode encountered an error") && l.contains("scale")),
        "{:?}",
        lab.logs()
    );
}

/// Bad nested input is an error, not a panic or a stack overflow.
#[test]
fn broken_or_too_deep_sub_messages_are_decode_errors() {
    let mut value = pb().str(1, "leaf");
    for _ in 0..40 {
        // AnyValue { array_value: ArrayValue { values: [value] } }
        value = pb().msg(5, pb().msg(1, value));
    }
    let attribute = pb().str(1, "k").msg(2, value);
    let payload = pb().msg(1, pb().msg(1, pb().msg(1, attribute)));
    let error = bbdo::decode(EventType::new(3, 13), &payload.0).unwrap_err();
    assert!(error.to_string().contains("nested deeper"), "{error}");

    // A stats entry cut in the middle.
    let mut cut = agent_stats().payload;
    cut.truncate(cut.len() - 3);
    assert!(bbdo::decode(EventType::new(1, 57), &cut).is_err());
}
