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
/// Hidden mapped field, nil if 0.
const fn hidz(ty: super::FieldType) -> FieldDef {
    FieldDef::hidden(ty, NilRule::Zero)
}
/// Hidden mapped field, nil if -1.
const fn hidm(ty: super::FieldType) -> FieldDef {
    FieldDef::hidden(ty, NilRule::MinusOne)
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
///
/// Mapped (BBDO 2) events list every mapping entry in wire order, hidden ones
/// included (`hid*`, with the C++ member they carry as a comment). Protobuf
/// events list their message fields in declaration order with their field
/// numbers. Registration names are unique within a category; across
/// categories, `rebuild` is both storage 3:2 (21.10 only) and bam 6:12, and
/// `by_name("rebuild")` gives the storage one.
#[rustfmt::skip]
pub static EVENTS: &[EventDef] = &[
    // ---- 1: neb
    mapped(1, 1, "acknowledgement", &[
        m("type", Short),
        m("author", Str),
        m("comment_data", Str),
        mm("deletion_time", Time),
        mm("entry_time", Time),
        mz("host_id", UInt),
        mz("instance_id", UInt),
        m("sticky", Bool),
        m("notify_contacts", Bool),
        m("persistent_comment", Bool),
        mz("service_id", UInt),
        m("state", Short),
        hid(Bool), // notify_only_if_not_already_acknowledged
    ]),
    mapped(1, 2, "comment", &[
        m("author", Str),
        m("type", Short),
        m("data", Str),
        mz("deletion_time", Time),
        mm("entry_time", Time),
        m("entry_type", Short),
        mz("expire_time", Time),
        m("expires", Bool),
        mz("host_id", UInt),
        m("internal_id", UInt),
        m("persistent", Bool),
        mz("instance_id", UInt),
        m("service_id", UInt),
        m("source", Short),
    ]),
    mapped(1, 3, "custom_variable", &[
        hid(Bool), // enabled
        mz("host_id", UInt),
        m("modified", Bool),
        m("name", Str),
        mz("service_id", UInt),
        mm("update_time", Time),
        m("type", Short),
        m("value", Str),
        m("default_value", Str),
    ]),
    mapped(1, 4, "custom_variable_status", &[
        mz("host_id", UInt),
        m("modified", Bool),
        m("name", Str),
        mz("service_id", UInt),
        mm("update_time", Time),
        m("value", Str),
    ]),
    mapped(1, 5, "downtime", &[
        mm("actual_end_time", Time),
        mm("actual_start_time", Time),
        m("author", Str),
        m("type", Short),
        mm("deletion_time", Time),
        m("duration", Time),
        mm("end_time", Time),
        mm("entry_time", Time),
        m("fixed", Bool),
        mz("host_id", UInt),
        mz("instance_id", UInt),
        m("internal_id", UInt),
        mz("service_id", UInt),
        mm("start_time", Time),
        mz("triggered_by", UInt),
        m("cancelled", Bool),
        m("started", Bool),
        m("comment_data", Str),
        hid(Short), // come_from
    ]),
    mapped(1, 6, "event_handler", &[
        m("early_timeout", Bool),
        mm("end_time", Time),
        m("execution_time", Double),
        m("type", Short),
        mz("host_id", UInt),
        m("return_code", Short),
        mz("service_id", UInt),
        mm("start_time", Time),
        m("state", Short),
        m("state_type", Short),
        m("timeout", Short),
        m("command_args", Str),
        m("command_line", Str),
        m("output", Str),
    ]),
    mapped(1, 7, "flapping_status", &[
        m("event_time", Time),
        m("event_type", Int),
        m("type", Short),
        m("high_threshold", Double),
        mz("host_id", UInt),
        m("low_threshold", Double),
        m("percent_state_change", Double),
        m("reason_type", Short),
        mz("service_id", UInt),
    ]),
    mapped(1, 8, "host_check", &[
        hid(Bool), // active_checks_enabled
        hid(Short), // check_type
        mz("host_id", UInt),
        hid(Time), // next_check
        m("command_line", Str),
    ]),
    mapped(1, 9, "host_dependency", &[
        m("dependency_period", Str),
        mz("dependent_host_id", UInt),
        hid(Bool), // enabled
        m("execution_failure_options", Str),
        m("inherits_parent", Bool),
        mz("host_id", UInt),
        m("notification_failure_options", Str),
    ]),
    mapped(1, 10, "host_group", &[
        mz("hostgroup_id", UInt),
        m("name", Str),
        hid(Bool), // enabled
        hidz(UInt), // poller_id
    ]),
    mapped(1, 11, "host_group_member", &[
        mz("hostgroup_id", UInt),
        mz("host_id", UInt),
        hid(Bool), // enabled
        hid(Str), // group_name
        hidz(UInt), // poller_id
    ]),
    mapped(1, 12, "host", &[
        m("acknowledged", Bool),
        m("acknowledgement_type", Short),
        m("action_url", Str),
        m("active_checks", Bool),
        m("address", Str),
        m("alias", Str),
        m("check_freshness", Bool),
        m("check_interval", Double),
        m("check_period", Str),
        m("check_type", Short),
        m("check_attempt", Short),
        m("state", Short),
        m("default_active_checks", Bool),
        m("default_event_handler_enabled", Bool),
        m("default_flap_detection", Bool),
        m("default_notify", Bool),
        m("default_passive_checks", Bool),
        m("scheduled_downtime_depth", Short),
        m("display_name", Str),
        m("enabled", Bool),
        m("event_handler", Str),
        m("event_handler_enabled", Bool),
        m("execution_time", Double),
        m("first_notification_delay", Double),
        m("flap_detection", Bool),
        m("flap_detection_on_down", Bool),
        m("flap_detection_on_unreachable", Bool),
        m("flap_detection_on_up", Bool),
        m("freshness_threshold", Double),
        m("checked", Bool),
        m("high_flap_threshold", Double),
        m("name", Str),
        mz("host_id", UInt),
        m("icon_image", Str),
        m("icon_image_alt", Str),
        mz("instance_id", UInt),
        m("flapping", Bool),
        mz("last_check", Time),
        m("last_hard_state", Short),
        mz("last_hard_state_change", Time),
        mz("last_notification", Time),
        mz("last_state_change", Time),
        mz("last_time_down", Time),
        mz("last_time_unreachable", Time),
        mz("last_time_up", Time),
        mz("last_update", Time),
        m("latency", Double),
        m("low_flap_threshold", Double),
        m("max_check_attempts", Short),
        mz("next_check", Time),
        mz("next_host_notification", Time),
        m("no_more_notifications", Bool),
        m("notes", Str),
        m("notes_url", Str),
        m("notification_interval", Double),
        m("notification_number", Short),
        m("notification_period", Str),
        m("notify", Bool),
        m("notify_on_down", Bool),
        m("notify_on_downtime", Bool),
        m("notify_on_flapping", Bool),
        m("notify_on_recovery", Bool),
        m("notify_on_unreachable", Bool),
        m("obsess_over_host", Bool),
        m("passive_checks", Bool),
        m("percent_state_change", Double),
        m("retry_interval", Double),
        m("should_be_scheduled", Bool),
        m("stalk_on_down", Bool),
        m("stalk_on_unreachable", Bool),
        m("stalk_on_up", Bool),
        m("statusmap_image", Str),
        m("state_type", Short),
        m("check_command", Str),
        m("output", Str),
        m("perfdata", Str),
        m("retain_nonstatus_information", Bool),
        m("retain_status_information", Bool),
        m("timezone", Str),
    ]),
    mapped(1, 13, "host_parent", &[
        hid(Bool), // enabled
        mz("child_id", UInt),
        mz("parent_id", UInt),
    ]),
    mapped(1, 14, "host_status", &[
        m("acknowledged", Bool),
        m("acknowledgement_type", Short),
        m("active_checks", Bool),
        m("check_interval", Double),
        m("check_period", Str),
        m("check_type", Short),
        m("check_attempt", Short),
        m("state", Short),
        m("scheduled_downtime_depth", Short),
        m("enabled", Bool),
        m("event_handler", Str),
        m("event_handler_enabled", Bool),
        m("execution_time", Double),
        m("flap_detection", Bool),
        m("checked", Bool),
        mz("host_id", UInt),
        m("flapping", Bool),
        mz("last_check", Time),
        m("last_hard_state", Short),
        mz("last_hard_state_change", Time),
        mz("last_notification", Time),
        mz("last_state_change", Time),
        mz("last_time_down", Time),
        mz("last_time_unreachable", Time),
        mz("last_time_up", Time),
        mz("last_update", Time),
        m("latency", Double),
        m("max_check_attempts", Short),
        mz("next_check", Time),
        FieldDef::not_on_wire("next_host_notification", Time, NilRule::Zero),
        m("no_more_notifications", Bool),
        m("notification_number", Short),
        m("notify", Bool),
        m("obsess_over_host", Bool),
        m("passive_checks", Bool),
        m("percent_state_change", Double),
        m("retry_interval", Double),
        m("should_be_scheduled", Bool),
        m("state_type", Short),
        m("check_command", Str),
        m("output", Str),
        m("perfdata", Str),
    ]),
    mapped(1, 15, "instance", &[
        m("engine", Str),
        mz("instance_id", UInt),
        m("name", Str),
        m("running", Bool),
        m("pid", UInt),
        mm("end_time", Time),
        mm("start_time", Time),
        m("version", Str),
    ]),
    mapped(1, 16, "instance_status", &[
        m("active_host_checks", Bool),
        m("active_service_checks", Bool),
        m("check_hosts_freshness", Bool),
        m("check_services_freshness", Bool),
        m("event_handlers", Bool),
        m("flap_detection", Bool),
        mz("instance_id", UInt),
        mm("last_alive", Time),
        mm("last_command_check", Time),
        m("notifications", Bool),
        m("obsess_over_hosts", Bool),
        m("obsess_over_services", Bool),
        m("passive_host_checks", Bool),
        m("passive_service_checks", Bool),
        m("global_host_event_handler", Str),
        m("global_service_event_handler", Str),
    ]),
    mapped(1, 17, "log_entry", &[
        m("ctime", Time),
        mz("host_id", UInt),
        m("host_name", Str),
        m("instance_name", Str),
        hidm(Time), // issue_start_time
        m("type", Short),
        m("msg_type", Short),
        m("notification_cmd", Str),
        m("notification_contact", Str),
        m("retry", Int),
        mz("service_description", Str),
        mz("service_id", UInt),
        m("status", Short),
        m("output", Str),
    ]),
    mapped(1, 18, "module", &[
        m("args", Str),
        hid(Bool), // enabled
        m("filename", Str),
        mz("instance_id", UInt),
        m("loaded", Bool),
        m("should_be_loaded", Bool),
    ]),
    mapped(1, 19, "service_check", &[
        hid(Bool), // active_checks_enabled
        hid(Short), // check_type
        mz("host_id", UInt),
        hid(Time), // next_check
        mz("service_id", UInt),
        m("command_line", Str),
    ]),
    mapped(1, 20, "service_dependency", &[
        m("dependency_period", Str),
        mz("dependent_host_id", UInt),
        mz("dependent_service_id", UInt),
        hid(Bool), // enabled
        m("execution_failure_options", Str),
        mz("host_id", UInt),
        m("inherits_parent", Bool),
        m("notification_failure_options", Str),
        mz("service_id", UInt),
    ]),
    mapped(1, 21, "service_group", &[
        mz("servicegroup_id", UInt),
        m("name", Str),
        hid(Bool), // enabled
        hidz(UInt), // poller_id
    ]),
    mapped(1, 22, "service_group_member", &[
        mz("servicegroup_id", UInt),
        mz("host_id", UInt),
        mz("service_id", UInt),
        hid(Bool), // enabled
        hid(Str), // group_name
        hidz(UInt), // poller_id
    ]),
    mapped(1, 23, "service", &[
        m("acknowledged", Bool),
        m("acknowledgement_type", Short),
        m("action_url", Str),
        m("active_checks", Bool),
        m("check_freshness", Bool),
        m("check_interval", Double),
        m("check_period", Str),
        m("check_type", Short),
        m("check_attempt", Short),
        m("state", Short),
        m("default_active_checks", Bool),
        m("default_event_handler_enabled", Bool),
        m("default_flap_detection", Bool),
        m("default_notify", Bool),
        m("default_passive_checks", Bool),
        m("scheduled_downtime_depth", Short),
        m("display_name", Str),
        m("enabled", Bool),
        m("event_handler", Str),
        m("event_handler_enabled", Bool),
        m("execution_time", Double),
        m("first_notification_delay", Double),
        m("flap_detection", Bool),
        m("flap_detection_on_critical", Bool),
        m("flap_detection_on_ok", Bool),
        m("flap_detection_on_unknown", Bool),
        m("flap_detection_on_warning", Bool),
        m("freshness_threshold", Double),
        m("checked", Bool),
        m("high_flap_threshold", Double),
        mz("host_id", UInt),
        hid(Str), // host_name
        m("icon_image", Str),
        m("icon_image_alt", Str),
        mz("service_id", UInt),
        m("flapping", Bool),
        m("volatile", Bool),
        mz("last_check", Time),
        m("last_hard_state", Short),
        mz("last_hard_state_change", Time),
        mz("last_notification", Time),
        mz("last_state_change", Time),
        mz("last_time_critical", Time),
        mz("last_time_ok", Time),
        mz("last_time_unknown", Time),
        mz("last_time_warning", Time),
        mz("last_update", Time),
        m("latency", Double),
        m("low_flap_threshold", Double),
        m("max_check_attempts", Short),
        mz("next_check", Time),
        mz("next_notification", Time),
        m("no_more_notifications", Bool),
        m("notes", Str),
        m("notes_url", Str),
        m("notification_interval", Double),
        m("notification_number", Short),
        m("notification_period", Str),
        m("notify", Bool),
        m("notify_on_critical", Bool),
        m("notify_on_downtime", Bool),
        m("notify_on_flapping", Bool),
        m("notify_on_recovery", Bool),
        m("notify_on_unknown", Bool),
        m("notify_on_warning", Bool),
        m("obsess_over_service", Bool),
        m("passive_checks", Bool),
        m("percent_state_change", Double),
        m("retry_interval", Double),
        m("description", Str),
        m("should_be_scheduled", Bool),
        m("stalk_on_critical", Bool),
        m("stalk_on_ok", Bool),
        m("stalk_on_unknown", Bool),
        m("stalk_on_warning", Bool),
        m("state_type", Short),
        m("check_command", Str),
        m("output", Str),
        m("perfdata", Str),
        m("retain_nonstatus_information", Bool),
        m("retain_status_information", Bool),
    ]),
    mapped(1, 24, "service_status", &[
        m("acknowledged", Bool),
        m("acknowledgement_type", Short),
        m("active_checks", Bool),
        m("check_interval", Double),
        m("check_period", Str),
        m("check_type", Short),
        m("check_attempt", Short),
        m("state", Short),
        m("scheduled_downtime_depth", Short),
        m("enabled", Bool),
        m("event_handler", Str),
        m("event_handler_enabled", Bool),
        m("execution_time", Double),
        m("flap_detection", Bool),
        m("checked", Bool),
        mz("host_id", UInt),
        hid(Str), // host_name
        m("flapping", Bool),
        mz("last_check", Time),
        m("last_hard_state", Short),
        mz("last_hard_state_change", Time),
        mz("last_notification", Time),
        mz("last_state_change", Time),
        mz("last_time_critical", Time),
        mz("last_time_ok", Time),
        mz("last_time_unknown", Time),
        mz("last_time_warning", Time),
        mz("last_update", Time),
        m("latency", Double),
        m("max_check_attempts", Short),
        mz("next_check", Time),
        mz("next_notification", Time),
        m("no_more_notifications", Bool),
        m("notification_number", Short),
        m("notify", Bool),
        m("obsess_over_service", Bool),
        m("passive_checks", Bool),
        m("percent_state_change", Double),
        m("retry_interval", Double),
        hid(Str), // service_description
        mz("service_id", UInt),
        m("should_be_scheduled", Bool),
        m("state_type", Short),
        m("check_command", Str),
        m("output", Str),
        m("perfdata", Str),
    ]),
    mapped(1, 25, "instance_configuration", &[
        m("loaded", Bool),
        m("poller_id", UInt),
    ]),
    mapped(1, 26, "responsive_instance", &[
        m("poller_id", UInt),
        m("responsive", Bool),
    ]),
    // ---- 2: bbdo
    mapped(2, 1, "version_response", &[
        m("major", Short),
        m("minor", Short),
        m("patch", Short),
        m("extensions", Str),
    ]),
    mapped(2, 2, "ack", &[
        m("acknowledged_events", UInt),
    ]),
    mapped(2, 3, "stop", &[]),
    // ---- 3: storage
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
    mapped(3, 2, "rebuild", &[
        m("end", Bool),
        mz("id", ULong),
        m("is_index", Bool),
    ]),
    mapped(3, 3, "remove_graph", &[
        mz("id", ULong),
        m("is_end", Bool),
    ]),
    mapped(3, 4, "status", &[
        mm("ctime", Time),
        mz("index_id", ULong),
        m("interval", UInt),
        m("rrd_len", Time),
        m("state", Short),
        m("is_for_rebuild", Bool),
    ]),
    mapped(3, 5, "index_mapping", &[
        mz("index_id", ULong),
        mz("host_id", UInt),
        mz("service_id", UInt),
    ]),
    mapped(3, 6, "metric_mapping", &[
        mz("index_id", ULong),
        mz("metric_id", UInt),
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
    // ---- 6: bam
    mapped(6, 1, "ba_status", &[
        mz("ba_id", UInt),
        m("in_downtime", Bool),
        m("last_state_change", Time),
        m("level_acknowledgement", Double),
        m("level_downtime", Double),
        m("level_nominal", Double),
        m("state", Short),
        m("state_changed", Bool),
    ]),
    mapped(6, 2, "kpi_status", &[
        mz("kpi_id", UInt),
        m("in_downtime", Bool),
        m("level_acknowledgement_hard", Double),
        m("level_acknowledgement_soft", Double),
        m("level_downtime_hard", Double),
        m("level_downtime_soft", Double),
        m("level_nominal_hard", Double),
        m("level_nominal_soft", Double),
        m("state_hard", Short),
        m("state_soft", Short),
        m("last_state_change", Time),
        m("last_impact", Double),
        m("valid", Bool),
    ]),
    // unused; no mapping table in the spec, so its fields are not in the spec.
    mapped(6, 3, "meta_service_status", &[]),
    mapped(6, 4, "ba_event", &[
        mz("ba_id", UInt),
        m("first_level", Double),
        m("end_time", Time),
        m("in_downtime", Bool),
        m("start_time", Time),
        m("status", Short),
    ]),
    mapped(6, 5, "kpi_event", &[
        mz("kpi_id", UInt),
        m("end_time", Time),
        m("impact_level", Int),
        m("in_downtime", Bool),
        m("first_output", Str),
        m("first_perfdata", Str),
        m("start_time", Time),
        m("status", Short),
    ]),
    mapped(6, 6, "ba_duration_event", &[
        mz("ba_id", UInt),
        m("real_start_time", Time),
        m("end_time", Time),
        m("start_time", Time),
        m("duration", UInt),
        m("sla_duration", UInt),
        mz("timeperiod_id", UInt),
        m("timeperiod_is_default", Bool),
    ]),
    mapped(6, 7, "dimension_ba_event", &[
        mz("ba_id", UInt),
        m("ba_name", Str),
        m("ba_description", Str),
        m("sla_month_percent_crit", Double),
        m("sla_month_percent_warn", Double),
        m("sla_month_duration_crit", UInt),
        m("sla_month_duration_warn", UInt),
    ]),
    mapped(6, 8, "dimension_kpi_event", &[
        mz("kpi_id", UInt),
        mz("ba_id", UInt),
        m("ba_name", Str),
        mz("host_id", UInt),
        m("host_name", Str),
        mz("service_id", UInt),
        m("service_description", Str),
        mz("kpi_ba_id", UInt),
        m("kpi_ba_name", Str),
        mz("meta_service_id", UInt),
        mz("meta_service_name", Str),
        mz("boolean_id", UInt),
        mz("boolean_name", Str),
        m("impact_warning", Double),
        m("impact_critical", Double),
        m("impact_unknown", Double),
    ]),
    mapped(6, 9, "dimension_ba_bv_relation_event", &[
        mz("ba_id", UInt),
        mz("bv_id", UInt),
    ]),
    mapped(6, 10, "dimension_bv_event", &[
        mz("bv_id", UInt),
        m("bv_name", Str),
        m("bv_description", Str),
    ]),
    mapped(6, 11, "dimension_truncate_table_signal", &[
        m("update_started", Bool),
    ]),
    mapped(6, 12, "rebuild", &[
        m("bas_to_rebuild", Str),
    ]),
    mapped(6, 13, "dimension_timeperiod", &[
        mz("tp_id", UInt),
        m("name", Str),
        m("monday", Str),
        m("tuesday", Str),
        m("wednesday", Str),
        m("thursday", Str),
        m("friday", Str),
        m("saturday", Str),
        m("sunday", Str),
    ]),
    mapped(6, 14, "dimension_ba_timeperiod_relation", &[
        mz("ba_id", UInt),
        mz("timeperiod_id", UInt),
        m("is_default", Bool),
    ]),
    mapped(6, 15, "dimension_timeperiod_exception", &[
        mz("timeperiod_id", UInt),
        m("daterange", Str),
        m("timerange", Str),
    ]),
    mapped(6, 16, "dimension_timeperiod_exclusion", &[
        mz("timeperiod_id", UInt),
        mz("excluded_timeperiod_id", UInt),
    ]),
    mapped(6, 17, "inherited_downtime", &[
        mz("ba_id", UInt),
        m("in_downtime", Bool),
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
