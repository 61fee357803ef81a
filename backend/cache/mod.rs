//! The broker cache: names and objects learnt from the events that went
//! through ingest, so an output can say `srv-01` where the event only says
//! `host_id = 1`.
//!
//! It is fed by every ingested event, whatever the outputs' filters, and
//! answers the `{cache.host.name}`-style lookups of templates. Persistence
//! across restarts and the full `broker_cache` surface of the Lua runtime
//! build on this module.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::event::{Event, Value};

#[derive(Default)]
pub struct Cache {
    state: RwLock<State>,
}

#[derive(Default)]
struct State {
    instances: HashMap<i64, Arc<Event>>,
    hosts: HashMap<i64, Arc<Event>>,
    services: HashMap<(i64, i64), Arc<Event>>,
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

impl Cache {
    pub fn new() -> Arc<Self> {
        Arc::new(Cache::default())
    }

    /// Learns from one event; events that describe no object are ignored.
    pub fn update(&self, event: &Event) {
        let name = event.def().name;
        let slot = match name {
            "instance" | "Instance" => id(event, "instance_id").map(|i| (Object::Instance, i, 0)),
            "host" | "Host" => id(event, "host_id").map(|h| (Object::Host, h, 0)),
            "service" | "Service" => id(event, "host_id")
                .zip(id(event, "service_id"))
                .map(|(h, s)| (Object::Service, h, s)),
            _ => None,
        };
        let Some((object, a, b)) = slot else { return };
        let event = Arc::new(event.clone());
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        match object {
            Object::Instance => state.instances.insert(a, event),
            Object::Host => state.hosts.insert(a, event),
            Object::Service => state.services.insert((a, b), event),
        };
    }

    /// The cached object an event refers to (through its `instance_id`,
    /// `host_id` and `service_id`).
    pub fn object_for(&self, object: Object, event: &Event) -> Option<Arc<Event>> {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        match object {
            Object::Instance => state.instances.get(&id(event, "instance_id")?).cloned(),
            Object::Host => state.hosts.get(&id(event, "host_id")?).cloned(),
            Object::Service => state
                .services
                .get(&(id(event, "host_id")?, id(event, "service_id")?))
                .cloned(),
        }
    }

    pub fn host_name(&self, host_id: i64) -> Option<String> {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        let host = state.hosts.get(&host_id)?;
        host.get("name").and_then(Value::as_str).map(str::to_owned)
    }

    pub fn counts(&self) -> (usize, usize, usize) {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        (
            state.instances.len(),
            state.hosts.len(),
            state.services.len(),
        )
    }
}
