//! The broker cache: names and objects learnt from the events that went
//! through ingest, so an output can say `srv-01` where the event only says
//! `host_id = 1`.
//!
//! It is fed by every ingested event, whatever the outputs' filters, and
//! answers the `{cache.host.name}`-style lookups of templates and the
//! `broker_cache` methods of Lua scripts (what feeds what follows Centreon's
//! `macro_cache`, docs/lua-runtime.md §4.2).
//!
//! It is persisted as a snapshot file in the data directory (see
//! [`Cache::save`]), so that `get_hostname` answers right after a restart,
//! before Centreon Engine sends its configuration again. A snapshot rather
//! than SQLite rows: the cache is small (a few MB for thousands of hosts),
//! is read far more than written, and a whole-file write with a rename is
//! atomic and costs nothing on the ingest path.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::event::{Event, LuaType, Value};

/// The file name of the snapshot in the data directory.
pub const SNAPSHOT_FILE: &str = "cache.json";

#[derive(Default)]
pub struct Cache {
    state: RwLock<State>,
    /// Changed since the last save.
    dirty: AtomicBool,
    /// Moves whenever something but a status changed: encoders that keep
    /// names (the influxdb output's heads) start over when it moves.
    names: AtomicU64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Group {
    pub name: String,
    pub alias: String,
    /// The pollers that declared the group; it goes when none is left.
    pub pollers: BTreeSet<i64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexMapping {
    pub index_id: i64,
    pub host_id: i64,
    pub service_id: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricMapping {
    pub metric_id: i64,
    pub index_id: i64,
}

#[derive(Default)]
struct State {
    instances: HashMap<i64, Arc<Event>>,
    hosts: HashMap<i64, Arc<Event>>,
    services: HashMap<(i64, i64), Arc<Event>>,
    hostgroups: BTreeMap<i64, Group>,
    servicegroups: BTreeMap<i64, Group>,
    /// (host_id, hostgroup_id) → the member event's group name, if it had one.
    host_members: BTreeMap<(i64, i64), Option<String>>,
    /// (host_id, service_id, servicegroup_id) → group name.
    service_members: BTreeMap<(i64, i64, i64), Option<String>>,
    /// (host_id, service_id or 0) → `CRITICALITY_LEVEL`.
    severities: HashMap<(i64, i64), i64>,
    index_mappings: HashMap<i64, IndexMapping>,
    metric_mappings: HashMap<i64, MetricMapping>,
    bas: HashMap<i64, Arc<Event>>,
    bvs: HashMap<i64, Arc<Event>>,
    /// ba_id → bv ids, a multimap as in Centreon.
    ba_bvs: Vec<(i64, i64)>,
}

/// The objects of the cache a template can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Object {
    Instance,
    Host,
    Service,
}

impl Object {
    pub fn from_name(name: &str) -> Option<Object> {
        match name {
            "instance" => Some(Object::Instance),
            "host" => Some(Object::Host),
            "service" => Some(Object::Service),
            _ => None,
        }
    }
}

fn id(event: &Event, key: &str) -> Option<i64> {
    event.get(key).and_then(Value::as_i64)
}

/// False only when the event says `enabled: false`.
/// Statuses only copy state fields into the cached host or service.
fn is_status(name: &str) -> bool {
    matches!(
        name,
        "host_status"
            | "HostStatus"
            | "AdaptiveHostStatus"
            | "service_status"
            | "ServiceStatus"
            | "AdaptiveServiceStatus"
    )
}

fn enabled(event: &Event) -> bool {
    event.get("enabled").and_then(Value::as_bool) != Some(false)
}

fn text(event: &Event, key: &str) -> Option<String> {
    event.get(key).and_then(Value::as_str).map(str::to_owned)
}

/// What a host status brings to the cached host (Centreon copies these).
const HOST_STATUS_FIELDS: &[&str] = &[
    "checked",
    "check_type",
    "state",
    "state_type",
    "last_state_change",
    "last_hard_state",
    "last_hard_state_change",
    "last_time_up",
    "last_time_down",
    "last_time_unreachable",
    "output",
    "perfdata",
    "flapping",
    "percent_state_change",
    "latency",
    "execution_time",
    "last_check",
    "next_check",
    "should_be_scheduled",
    "check_attempt",
    "notification_number",
    "no_more_notifications",
    "last_notification",
    "next_host_notification",
    "acknowledgement_type",
    "scheduled_downtime_depth",
];

const SERVICE_STATUS_FIELDS: &[&str] = &[
    "checked",
    "check_type",
    "state",
    "state_type",
    "last_state_change",
    "last_hard_state",
    "last_hard_state_change",
    "last_time_ok",
    "last_time_warning",
    "last_time_critical",
    "last_time_unknown",
    "output",
    "perfdata",
    "flapping",
    "percent_state_change",
    "latency",
    "execution_time",
    "last_check",
    "next_check",
    "should_be_scheduled",
    "check_attempt",
    "notification_number",
    "no_more_notifications",
    "last_notification",
    "next_notification",
    "acknowledgement_type",
    "scheduled_downtime_depth",
];

const ADAPTIVE_STATUS_FIELDS: &[&str] = &[
    "scheduled_downtime_depth",
    "acknowledgement_type",
    "notification_number",
];

/// What an adaptive host or service event may change (only the fields it
/// carries): (its field, the cached object's field).
const ADAPTIVE_FIELDS: &[(&str, &str)] = &[
    ("notify", "notify"),
    ("active_checks", "active_checks"),
    ("should_be_scheduled", "should_be_scheduled"),
    ("passive_checks", "passive_checks"),
    ("event_handler_enabled", "event_handler_enabled"),
    ("flap_detection", "flap_detection"),
    ("flap_detection_enabled", "flap_detection"),
    ("obsess_over_host", "obsess_over_host"),
    ("obsess_over_service", "obsess_over_service"),
    ("event_handler", "event_handler"),
    ("check_command", "check_command"),
    ("check_interval", "check_interval"),
    ("retry_interval", "retry_interval"),
    ("max_check_attempts", "max_check_attempts"),
    ("check_freshness", "check_freshness"),
    ("check_period", "check_period"),
    ("notification_period", "notification_period"),
];

/// Copies the fields named that `from` has into `into`, where `into`'s
/// type has them too, as the Lua type of `into`'s field (a BBDO 3 status
/// may update a BBDO 2 host, whose intervals are doubles).
fn copy_fields<'a>(
    into: &mut Arc<Event>,
    from: &Event,
    fields: impl IntoIterator<Item = (&'a str, &'a str)>,
) {
    let target = Arc::make_mut(into);
    for (from_key, into_key) in fields {
        let (Some(value), Some(field)) = (from.get(from_key), target.def().field(into_key)) else {
            continue;
        };
        let value = match (field.ty.lua_type(), value) {
            (LuaType::Number, Value::Int(i)) => Value::Float(*i as f64),
            _ => value.clone(),
        };
        target.set(into_key, value);
    }
}

fn same(fields: &'static [&'static str]) -> impl Iterator<Item = (&'static str, &'static str)> {
    fields.iter().map(|f| (*f, *f))
}

impl Cache {
    pub fn new() -> Arc<Self> {
        Arc::new(Cache::default())
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        // Every mutation is a single insert or remove: a panic leaves
        // consistent data, so poisoning is ignored.
        crate::sync::read(&self.state)
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        crate::sync::write(&self.state)
    }

    /// Learns from one event; events that describe no object are ignored.
    pub fn update(&self, event: &Event) {
        let changed = self.apply(event);
        // The encoded ingest path skips what `learns_from` says teaches
        // nothing: the list must cover every event that changes the cache.
        debug_assert!(
            !changed || Cache::learns_from(event.def().name),
            "{} is missing from Cache::learns_from",
            event.def().name
        );
        if changed {
            self.dirty.store(true, Ordering::Relaxed);
            if !is_status(event.def().name) {
                self.names.fetch_add(1, Ordering::Release);
            }
        }
    }

    /// See [`Cache::names`]: equal generations mean the same names,
    /// mappings and groups.
    pub fn names_generation(&self) -> u64 {
        self.names.load(Ordering::Acquire)
    }

    /// Whether [`Cache::update`] can learn anything from events of this
    /// catalogue name: the names `apply` matches, kept next to it.
    pub fn learns_from(name: &str) -> bool {
        matches!(
            name,
            "instance"
                | "Instance"
                | "host"
                | "Host"
                | "service"
                | "Service"
                | "host_status"
                | "HostStatus"
                | "AdaptiveHostStatus"
                | "service_status"
                | "ServiceStatus"
                | "AdaptiveServiceStatus"
                | "AdaptiveHost"
                | "AdaptiveService"
                | "host_group"
                | "HostGroup"
                | "service_group"
                | "ServiceGroup"
                | "host_group_member"
                | "HostGroupMember"
                | "service_group_member"
                | "ServiceGroupMember"
                | "custom_variable"
                | "CustomVariable"
                | "index_mapping"
                | "pb_index_mapping"
                | "metric_mapping"
                | "pb_metric_mapping"
                | "dimension_ba_event"
                | "DimensionBaEvent"
                | "dimension_bv_event"
                | "DimensionBvEvent"
                | "dimension_ba_bv_relation_event"
                | "DimensionBaBvRelationEvent"
                | "dimension_truncate_table_signal"
                | "DimensionTruncateTableSignal"
        )
    }

    fn apply(&self, event: &Event) -> bool {
        let name = event.def().name;
        match name {
            "instance" | "Instance" => {
                let Some(i) = id(event, "instance_id") else {
                    return false;
                };
                self.write().instances.insert(i, Arc::new(event.clone()));
            }
            "host" | "Host" => {
                let Some(h) = id(event, "host_id") else {
                    return false;
                };
                let mut state = self.write();
                if enabled(event) {
                    state.hosts.insert(h, Arc::new(event.clone()));
                } else {
                    state.hosts.remove(&h);
                }
            }
            "service" | "Service" => {
                let (Some(h), Some(s)) = (id(event, "host_id"), id(event, "service_id")) else {
                    return false;
                };
                let mut state = self.write();
                if enabled(event) {
                    state.services.insert((h, s), Arc::new(event.clone()));
                } else {
                    state.services.remove(&(h, s));
                }
            }
            "host_status" | "HostStatus" | "AdaptiveHostStatus" => {
                let Some(h) = id(event, "host_id") else {
                    return false;
                };
                let fields = if name == "AdaptiveHostStatus" {
                    ADAPTIVE_STATUS_FIELDS
                } else {
                    HOST_STATUS_FIELDS
                };
                let mut state = self.write();
                match state.hosts.get_mut(&h) {
                    Some(host) => copy_fields(host, event, same(fields)),
                    None => return false,
                }
            }
            "service_status" | "ServiceStatus" | "AdaptiveServiceStatus" => {
                let (Some(h), Some(s)) = (id(event, "host_id"), id(event, "service_id")) else {
                    return false;
                };
                let fields = if name == "AdaptiveServiceStatus" {
                    ADAPTIVE_STATUS_FIELDS
                } else {
                    SERVICE_STATUS_FIELDS
                };
                let mut state = self.write();
                match state.services.get_mut(&(h, s)) {
                    Some(service) => copy_fields(service, event, same(fields)),
                    None => return false,
                }
            }
            "AdaptiveHost" => {
                let Some(h) = id(event, "host_id") else {
                    return false;
                };
                match self.write().hosts.get_mut(&h) {
                    Some(host) => copy_fields(host, event, ADAPTIVE_FIELDS.iter().copied()),
                    None => return false,
                }
            }
            "AdaptiveService" => {
                let (Some(h), Some(s)) = (id(event, "host_id"), id(event, "service_id")) else {
                    return false;
                };
                match self.write().services.get_mut(&(h, s)) {
                    Some(service) => copy_fields(service, event, ADAPTIVE_FIELDS.iter().copied()),
                    None => return false,
                }
            }
            "host_group" | "HostGroup" | "service_group" | "ServiceGroup" => {
                let host = matches!(name, "host_group" | "HostGroup");
                let key = if host {
                    "hostgroup_id"
                } else {
                    "servicegroup_id"
                };
                let Some(g) = id(event, key) else {
                    return false;
                };
                let poller = id(event, "poller_id").unwrap_or(0);
                let mut state = self.write();
                let groups = if host {
                    &mut state.hostgroups
                } else {
                    &mut state.servicegroups
                };
                if enabled(event) {
                    let group = groups.entry(g).or_insert_with(|| Group {
                        alias: text(event, "alias").unwrap_or_default(),
                        ..Group::default()
                    });
                    group.pollers.insert(poller);
                    group.name = text(event, "name").unwrap_or_default();
                } else if let Some(group) = groups.get_mut(&g) {
                    group.pollers.remove(&poller);
                    if group.pollers.is_empty() {
                        groups.remove(&g);
                    }
                }
            }
            "host_group_member" | "HostGroupMember" => {
                let (Some(h), Some(g)) = (id(event, "host_id"), id(event, "hostgroup_id")) else {
                    return false;
                };
                let mut state = self.write();
                if enabled(event) {
                    state.host_members.insert((h, g), text(event, "name"));
                } else {
                    state.host_members.remove(&(h, g));
                }
            }
            "service_group_member" | "ServiceGroupMember" => {
                let (Some(h), Some(s), Some(g)) = (
                    id(event, "host_id"),
                    id(event, "service_id"),
                    id(event, "servicegroup_id"),
                ) else {
                    return false;
                };
                let mut state = self.write();
                if enabled(event) {
                    state.service_members.insert((h, s, g), text(event, "name"));
                } else {
                    state.service_members.remove(&(h, s, g));
                }
            }
            "custom_variable" | "CustomVariable" => {
                if text(event, "name").as_deref() != Some("CRITICALITY_LEVEL") {
                    return false;
                }
                let Some(h) = id(event, "host_id") else {
                    return false;
                };
                let s = id(event, "service_id").unwrap_or(0);
                let value = text(event, "value").unwrap_or_default();
                match value.trim().parse::<i32>() {
                    // 0 does not erase an older level, as in Centreon.
                    Ok(0) => return false,
                    Ok(level) => {
                        self.write().severities.insert((h, s), i64::from(level));
                    }
                    Err(_) => {
                        tracing::warn!(
                            host_id = h,
                            service_id = s,
                            "CRITICALITY_LEVEL {value:?} is not an integer"
                        );
                        return false;
                    }
                }
            }
            "index_mapping" | "pb_index_mapping" => {
                let Some(index_id) = id(event, "index_id") else {
                    return false;
                };
                let mapping = IndexMapping {
                    index_id,
                    host_id: id(event, "host_id").unwrap_or(0),
                    service_id: id(event, "service_id").unwrap_or(0),
                };
                self.write().index_mappings.insert(index_id, mapping);
            }
            "metric_mapping" | "pb_metric_mapping" => {
                let Some(metric_id) = id(event, "metric_id") else {
                    return false;
                };
                let mapping = MetricMapping {
                    metric_id,
                    index_id: id(event, "index_id").unwrap_or(0),
                };
                self.write().metric_mappings.insert(metric_id, mapping);
            }
            "dimension_ba_event" | "DimensionBaEvent" => {
                let Some(ba) = id(event, "ba_id") else {
                    return false;
                };
                self.write().bas.insert(ba, Arc::new(event.clone()));
            }
            "dimension_bv_event" | "DimensionBvEvent" => {
                let Some(bv) = id(event, "bv_id") else {
                    return false;
                };
                self.write().bvs.insert(bv, Arc::new(event.clone()));
            }
            "dimension_ba_bv_relation_event" | "DimensionBaBvRelationEvent" => {
                let (Some(ba), Some(bv)) = (id(event, "ba_id"), id(event, "bv_id")) else {
                    return false;
                };
                self.write().ba_bvs.push((ba, bv));
            }
            "dimension_truncate_table_signal" | "DimensionTruncateTableSignal" => {
                if event.get("update_started").and_then(Value::as_bool) != Some(true) {
                    return false;
                }
                let mut state = self.write();
                state.bas.clear();
                state.bvs.clear();
                state.ba_bvs.clear();
            }
            _ => return false,
        }
        true
    }

    /// The cached object an event refers to (through its `instance_id`,
    /// `host_id` and `service_id`).
    pub fn object_for(&self, object: Object, event: &Event) -> Option<Arc<Event>> {
        let state = self.read();
        match object {
            Object::Instance => state.instances.get(&id(event, "instance_id")?).cloned(),
            Object::Host => state.hosts.get(&id(event, "host_id")?).cloned(),
            Object::Service => state
                .services
                .get(&(id(event, "host_id")?, id(event, "service_id")?))
                .cloned(),
        }
    }

    pub fn host(&self, host_id: i64) -> Option<Arc<Event>> {
        self.read().hosts.get(&host_id).cloned()
    }

    pub fn service(&self, host_id: i64, service_id: i64) -> Option<Arc<Event>> {
        self.read().services.get(&(host_id, service_id)).cloned()
    }

    pub fn host_name(&self, host_id: i64) -> Option<String> {
        text(&*self.host(host_id)?, "name")
    }

    pub fn service_description(&self, host_id: i64, service_id: i64) -> Option<String> {
        text(&*self.service(host_id, service_id)?, "description")
    }

    pub fn instance_name(&self, instance_id: i64) -> Option<String> {
        let instance = self.read().instances.get(&instance_id).cloned()?;
        text(&instance, "name")
    }

    pub fn hostgroup(&self, id: i64) -> Option<Group> {
        self.read().hostgroups.get(&id).cloned()
    }

    pub fn servicegroup(&self, id: i64) -> Option<Group> {
        self.read().servicegroups.get(&id).cloned()
    }

    /// The host's groups by group id: (id, name), the name from the member
    /// event when it carried one, else from the group.
    pub fn hostgroups_of(&self, host_id: i64) -> Vec<(i64, String)> {
        let state = self.read();
        state
            .host_members
            .range((host_id, i64::MIN)..=(host_id, i64::MAX))
            .map(|(&(_, g), name)| {
                let name = name
                    .clone()
                    .or_else(|| state.hostgroups.get(&g).map(|group| group.name.clone()))
                    .unwrap_or_default();
                (g, name)
            })
            .collect()
    }

    pub fn servicegroups_of(&self, host_id: i64, service_id: i64) -> Vec<(i64, String)> {
        let state = self.read();
        state
            .service_members
            .range((host_id, service_id, i64::MIN)..=(host_id, service_id, i64::MAX))
            .map(|(&(_, _, g), name)| {
                let name = name
                    .clone()
                    .or_else(|| state.servicegroups.get(&g).map(|group| group.name.clone()))
                    .unwrap_or_default();
                (g, name)
            })
            .collect()
    }

    pub fn severity(&self, host_id: i64, service_id: i64) -> Option<i64> {
        self.read().severities.get(&(host_id, service_id)).copied()
    }

    pub fn index_mapping(&self, index_id: i64) -> Option<IndexMapping> {
        self.read().index_mappings.get(&index_id).copied()
    }

    pub fn metric_mapping(&self, metric_id: i64) -> Option<MetricMapping> {
        self.read().metric_mappings.get(&metric_id).copied()
    }

    pub fn ba(&self, ba_id: i64) -> Option<Arc<Event>> {
        self.read().bas.get(&ba_id).cloned()
    }

    pub fn bv(&self, bv_id: i64) -> Option<Arc<Event>> {
        self.read().bvs.get(&bv_id).cloned()
    }

    pub fn bvs_of(&self, ba_id: i64) -> Vec<i64> {
        self.read()
            .ba_bvs
            .iter()
            .filter(|(ba, _)| *ba == ba_id)
            .map(|(_, bv)| *bv)
            .collect()
    }

    pub fn counts(&self) -> (usize, usize, usize) {
        let state = self.read();
        (
            state.instances.len(),
            state.hosts.len(),
            state.services.len(),
        )
    }

    /// Writes the snapshot if anything changed since the last save: to a
    /// temporary file, then renamed over the old one, so a crash leaves
    /// one whole snapshot or the other.
    pub fn save(&self, data_dir: &Path) -> std::io::Result<bool> {
        if !self.dirty.swap(false, Ordering::Relaxed) {
            return Ok(false);
        }
        let snapshot = self.snapshot();
        let path = data_dir.join(SNAPSHOT_FILE);
        let tmp = data_dir.join(format!("{SNAPSHOT_FILE}.tmp"));
        let result = (|| {
            let bytes = serde_json::to_vec(&snapshot).map_err(std::io::Error::other)?;
            std::fs::write(&tmp, bytes)?;
            std::fs::rename(&tmp, &path)
        })();
        if result.is_err() {
            self.dirty.store(true, Ordering::Relaxed);
        }
        result.map(|()| true)
    }

    /// The cache of a data directory: its snapshot if there is one. A
    /// snapshot that cannot be read is logged and ignored (the cache fills
    /// again from events); it is never a reason not to start.
    pub fn load(data_dir: &Path) -> Arc<Self> {
        let cache = Cache::default();
        let path = data_dir.join(SNAPSHOT_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<Snapshot>(&bytes) {
                Ok(snapshot) => cache.restore(snapshot),
                Err(e) => tracing::warn!("ignoring the cache snapshot {}: {e}", path.display()),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!("cannot read the cache snapshot {}: {e}", path.display()),
        }
        Arc::new(cache)
    }

    fn snapshot(&self) -> Snapshot {
        let state = self.read();
        let events = |map: Vec<&Arc<Event>>| map.into_iter().map(|e| e.to_json()).collect();
        Snapshot {
            version: 1,
            instances: events(state.instances.values().collect()),
            hosts: events(state.hosts.values().collect()),
            services: events(state.services.values().collect()),
            hostgroups: state.hostgroups.clone().into_iter().collect(),
            servicegroups: state.servicegroups.clone().into_iter().collect(),
            host_members: state
                .host_members
                .iter()
                .map(|(&(h, g), n)| (h, g, n.clone()))
                .collect(),
            service_members: state
                .service_members
                .iter()
                .map(|(&(h, s, g), n)| (h, s, g, n.clone()))
                .collect(),
            severities: state
                .severities
                .iter()
                .map(|(&(h, s), &v)| (h, s, v))
                .collect(),
            index_mappings: state.index_mappings.values().copied().collect(),
            metric_mappings: state.metric_mappings.values().copied().collect(),
            bas: events(state.bas.values().collect()),
            bvs: events(state.bvs.values().collect()),
            ba_bvs: state.ba_bvs.clone(),
        }
    }

    fn restore(&self, snapshot: Snapshot) {
        self.names.fetch_add(1, Ordering::Release);
        let mut state = self.write();
        let parse = |json: &Json| match Event::from_json(json) {
            Ok(e) => Some(Arc::new(e)),
            Err(e) => {
                tracing::warn!("cache snapshot: skipping an object: {e}");
                None
            }
        };
        for e in snapshot.instances.iter().filter_map(parse) {
            if let Some(i) = id(&e, "instance_id") {
                state.instances.insert(i, e);
            }
        }
        for e in snapshot.hosts.iter().filter_map(parse) {
            if let Some(h) = id(&e, "host_id") {
                state.hosts.insert(h, e);
            }
        }
        for e in snapshot.services.iter().filter_map(parse) {
            if let (Some(h), Some(s)) = (id(&e, "host_id"), id(&e, "service_id")) {
                state.services.insert((h, s), e);
            }
        }
        state.hostgroups = snapshot.hostgroups.into_iter().collect();
        state.servicegroups = snapshot.servicegroups.into_iter().collect();
        state.host_members = snapshot
            .host_members
            .into_iter()
            .map(|(h, g, n)| ((h, g), n))
            .collect();
        state.service_members = snapshot
            .service_members
            .into_iter()
            .map(|(h, s, g, n)| ((h, s, g), n))
            .collect();
        state.severities = snapshot
            .severities
            .into_iter()
            .map(|(h, s, v)| ((h, s), v))
            .collect();
        state.index_mappings = snapshot
            .index_mappings
            .into_iter()
            .map(|m| (m.index_id, m))
            .collect();
        state.metric_mappings = snapshot
            .metric_mappings
            .into_iter()
            .map(|m| (m.metric_id, m))
            .collect();
        for e in snapshot.bas.iter().filter_map(parse) {
            if let Some(ba) = id(&e, "ba_id") {
                state.bas.insert(ba, e);
            }
        }
        for e in snapshot.bvs.iter().filter_map(parse) {
            if let Some(bv) = id(&e, "bv_id") {
                state.bvs.insert(bv, e);
            }
        }
        state.ba_bvs = snapshot.ba_bvs;
    }
}

/// The snapshot file: objects as their JSON form, the rest as plain data.
#[derive(Default, Serialize, Deserialize)]
#[serde(default)]
struct Snapshot {
    version: u32,
    instances: Vec<Json>,
    hosts: Vec<Json>,
    services: Vec<Json>,
    hostgroups: Vec<(i64, Group)>,
    servicegroups: Vec<(i64, Group)>,
    host_members: Vec<(i64, i64, Option<String>)>,
    service_members: Vec<(i64, i64, i64, Option<String>)>,
    severities: Vec<(i64, i64, i64)>,
    index_mappings: Vec<IndexMapping>,
    metric_mappings: Vec<MetricMapping>,
    bas: Vec<Json>,
    bvs: Vec<Json>,
    ba_bvs: Vec<(i64, i64)>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn feed(cache: &Cache, events: &[Json]) {
        for e in events {
            cache.update(&Event::from_json(e).unwrap());
        }
    }

    fn sample(cache: &Cache) {
        feed(
            cache,
            &[
                json!({"_type": 65551, "instance_id": 1, "name": "Central"}),
                json!({"_type": 65548, "host_id": 1, "name": "srv-01", "enabled": true, "notes": "Rack A1"}),
                json!({"_type": 65559, "host_id": 1, "service_id": 2, "description": "cpu", "enabled": true, "action_url": "http://x"}),
                json!({"_type": 65546, "hostgroup_id": 7, "name": "linux"}),
                json!({"_type": 65547, "hostgroup_id": 7, "host_id": 1}),
                json!({"_type": 65539, "host_id": 1, "service_id": 2, "name": "CRITICALITY_LEVEL", "value": "3"}),
                json!({"_type": 65539, "host_id": 1, "service_id": 2, "name": "CRITICALITY_LEVEL", "value": "0"}),
                json!({"_type": 196613, "index_id": 10, "host_id": 1, "service_id": 2}),
                json!({"_type": 196614, "index_id": 10, "metric_id": 100}),
                json!({"_type": 393223, "ba_id": 4, "ba_name": "web", "ba_description": "Web"}),
                json!({"_type": 393226, "bv_id": 5, "bv_name": "prod"}),
                json!({"_type": 393225, "ba_id": 4, "bv_id": 5}),
                json!({"_type": 65560, "host_id": 1, "service_id": 2, "state": 2, "output": "CRIT"}),
            ],
        );
    }

    #[test]
    fn learns_names_groups_mappings_and_severities() {
        let cache = Cache::default();
        sample(&cache);
        assert_eq!(cache.host_name(1).as_deref(), Some("srv-01"));
        assert_eq!(cache.service_description(1, 2).as_deref(), Some("cpu"));
        assert_eq!(cache.instance_name(1).as_deref(), Some("Central"));
        assert_eq!(cache.hostgroups_of(1), [(7, "linux".to_owned())]);
        assert_eq!(cache.severity(1, 2), Some(3), "0 does not erase");
        assert_eq!(cache.index_mapping(10).map(|m| m.service_id), Some(2));
        assert_eq!(cache.metric_mapping(100).map(|m| m.index_id), Some(10));
        assert_eq!(cache.bvs_of(4), [5]);
        let service = cache.service(1, 2).unwrap();
        assert_eq!(service.get("state"), Some(&Value::Int(2)), "status copied");
        feed(
            &cache,
            &[
                json!({"_type": 65564, "host_id": 1, "service_id": 2, "check_interval": 7, "flap_detection_enabled": true}),
            ],
        );
        let service = cache.service(1, 2).unwrap();
        assert_eq!(service.get("check_interval"), Some(&Value::Float(7.0)));
        assert_eq!(service.get("flap_detection"), Some(&Value::Bool(true)));
        feed(
            &cache,
            &[json!({"_type": 65548, "host_id": 1, "name": "srv-01", "enabled": false})],
        );
        assert_eq!(cache.host_name(1), None, "a disabled host is erased");
    }

    #[test]
    fn the_snapshot_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::default();
        sample(&cache);
        assert!(cache.save(dir.path()).unwrap());
        assert!(!cache.save(dir.path()).unwrap(), "nothing changed");
        let loaded = Cache::load(dir.path());
        assert_eq!(loaded.host_name(1).as_deref(), Some("srv-01"));
        assert_eq!(loaded.hostgroups_of(1), cache.hostgroups_of(1));
        assert_eq!(loaded.severity(1, 2), Some(3));
        assert_eq!(loaded.bvs_of(4), [5]);
        assert_eq!(loaded.metric_mapping(100), cache.metric_mapping(100));
        std::fs::write(dir.path().join(SNAPSHOT_FILE), "not json").unwrap();
        assert_eq!(Cache::load(dir.path()).counts(), (0, 0, 0));
    }
}
