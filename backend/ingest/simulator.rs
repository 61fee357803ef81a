//! The built-in simulator: a small Centreon platform of a few hundred hosts
//! whose checks produce host and service statuses and metrics, so that a
//! new user sees data flow the moment the service starts.
//!
//! It first sends what an engine sends when it starts (the instance, its
//! hosts, services, groups and memberships), then status and metric events
//! at the requested rate, cycling over the services. Events go through
//! ingest like any other source's; when the journal is full it waits
//! instead of dropping them.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio_util::sync::CancellationToken;

use super::sources::{Feed, Running, Source, SourceKind};
use crate::event::Event;

pub const HOSTS: u32 = 300;
const INSTANCE_ID: i64 = 1;

/// A metric of a simulated service: name, unit, typical value, max (0 = none).
type MetricShape = (&'static str, &'static str, f64, f64);

/// The services every simulated host has: description, command, and the
/// metrics its perfdata carries.
const SERVICES: &[(&str, &str, &[MetricShape])] = &[
    (
        "Ping",
        "App-Monitoring-Centreon-Ping",
        &[("rta", "ms", 0.4, 0.0), ("pl", "%", 0.0, 100.0)],
    ),
    (
        "Cpu",
        "OS-Linux-SNMP-Cpu",
        &[("cpu.utilization.percentage", "%", 25.0, 100.0)],
    ),
    (
        "Memory",
        "OS-Linux-SNMP-Memory",
        &[("memory.usage.bytes", "B", 3.2e9, 8.0e9)],
    ),
    (
        "Disk-/",
        "OS-Linux-SNMP-Disk",
        &[("storage.space.usage.bytes", "B", 2.1e10, 5.0e10)],
    ),
    (
        "Load",
        "OS-Linux-SNMP-Load",
        &[
            ("load1", "", 0.6, 0.0),
            ("load5", "", 0.5, 0.0),
            ("load15", "", 0.4, 0.0),
        ],
    ),
];

const HOST_GROUPS: &[&str] = &["Linux-Servers", "Web-Frontends", "Databases"];
const SERVICE_GROUPS: &[&str] = &["System", "Network"];

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn host_name(host_id: u32) -> String {
    format!("srv-{host_id:03}")
}

fn service_id(host_id: u32, index: usize) -> i64 {
    ((host_id - 1) as i64) * SERVICES.len() as i64 + index as i64 + 1
}

fn event(name: &str) -> Event {
    // The simulator names only catalogue events; a typo is a bug caught by
    // its tests.
    Event::named(name).unwrap_or_else(|| panic!("simulator uses unknown event {name}"))
}

/// The scheduling settings every simulated host and service shares.
fn with_check_settings(event: Event, command: &str) -> Event {
    event
        .with("enabled", true)
        .with("active_checks", true)
        .with("check_command", command)
        .with("check_period", "24x7")
        .with("check_interval", 5.0)
        .with("retry_interval", 1.0)
        .with("max_check_attempts", 3i64)
}

/// The fields a status event of a check that just ran carries.
fn with_check_result(event: Event, command: &str, time: i64, latency: f64) -> Event {
    with_check_settings(event, command)
        .with("checked", true)
        .with("check_attempt", 1i64)
        .with("last_check", time)
        .with("next_check", time + 300)
        .with("last_update", time)
        .with("latency", latency)
}

/// The events an engine sends when it starts.
pub fn startup_events() -> Vec<Event> {
    let start = now();
    let mut events = vec![event("instance")
        .with("engine", "Centreon Engine")
        .with("instance_id", INSTANCE_ID)
        .with("name", "Central")
        .with("running", true)
        .with("pid", 4242i64)
        .with("start_time", start)
        .with("version", "24.10.0")];
    for host_id in 1..=HOSTS {
        let name = host_name(host_id);
        events.push(
            with_check_settings(event("host"), "base_host_alive")
                .with("host_id", host_id)
                .with("name", name.as_str())
                .with("alias", format!("Server {host_id}"))
                .with("display_name", name.as_str())
                .with(
                    "address",
                    format!("10.0.{}.{}", host_id / 250, host_id % 250 + 1),
                )
                .with("instance_id", INSTANCE_ID)
                .with("notify", true)
                .with("state", 0i64)
                .with("state_type", 1i64)
                .with("timezone", ":Europe/Paris"),
        );
        for (index, (description, command, _)) in SERVICES.iter().enumerate() {
            events.push(
                with_check_settings(event("service"), command)
                    .with("host_id", host_id)
                    .with("service_id", service_id(host_id, index))
                    .with("description", *description)
                    .with("display_name", *description)
                    .with("state", 0i64)
                    .with("state_type", 1i64),
            );
        }
    }
    for (index, group) in HOST_GROUPS.iter().enumerate() {
        let group_id = index as i64 + 1;
        events.push(
            event("host_group")
                .with("hostgroup_id", group_id)
                .with("name", *group),
        );
        for host_id in (1..=HOSTS).filter(|h| *h as usize % HOST_GROUPS.len() == index) {
            events.push(
                event("host_group_member")
                    .with("hostgroup_id", group_id)
                    .with("host_id", host_id),
            );
        }
    }
    for (index, group) in SERVICE_GROUPS.iter().enumerate() {
        let group_id = index as i64 + 1;
        events.push(
            event("service_group")
                .with("servicegroup_id", group_id)
                .with("name", *group),
        );
        // Ping is a network check; the others are system checks.
        for host_id in 1..=HOSTS {
            for service_index in 0..SERVICES.len() {
                if (service_index == 0) == (index == 1) {
                    events.push(
                        event("service_group_member")
                            .with("servicegroup_id", group_id)
                            .with("host_id", host_id)
                            .with("service_id", service_id(host_id, service_index)),
                    );
                }
            }
        }
    }
    events
}

/// Produces the status and metric events of the checks, one service at a
/// time; a host status comes with the host's first service.
pub struct Checks {
    rng: StdRng,
    next: u64,
}

impl Default for Checks {
    fn default() -> Self {
        Checks {
            rng: StdRng::seed_from_u64(0x5eed),
            next: 0,
        }
    }
}

impl Checks {
    /// The events of the next check: a service status and its metrics,
    /// preceded by a host status for a host's first service.
    pub fn next_check(&mut self) -> Vec<Event> {
        let total = HOSTS as u64 * SERVICES.len() as u64;
        let slot = self.next % total;
        self.next += 1;
        let host_id = (slot / SERVICES.len() as u64) as u32 + 1;
        let index = (slot % SERVICES.len() as u64) as usize;
        let (description, command, metrics) = SERVICES[index];
        let time = now();
        let mut events = Vec::new();
        if index == 0 {
            let down = self.rng.gen_bool(0.005);
            let rta = self.rng.gen_range(0.1..2.0);
            let latency = self.rng.gen_range(0.0..0.5);
            events.push(
                with_check_result(event("host_status"), "base_host_alive", time, latency)
                    .with("host_id", host_id)
                    .with("state", if down { 1i64 } else { 0 })
                    .with("state_type", 1i64)
                    .with("execution_time", self.rng.gen_range(0.01..0.3))
                    .with(
                        "output",
                        if down {
                            format!("CRITICAL - {} : Host unreachable", host_name(host_id))
                        } else {
                            format!("OK - {} rta {rta:.3}ms, lost 0%", host_name(host_id))
                        },
                    )
                    .with(
                        "perfdata",
                        format!("rta={rta:.3}ms;3000.000;5000.000;0; pl=0%;80;100;0;100"),
                    ),
            );
        }
        let mut perfdata = Vec::new();
        let mut values = Vec::new();
        for (name, unit, typical, max) in metrics {
            let value = (typical * self.rng.gen_range(0.5..1.5) * 1000.0).round() / 1000.0;
            let max = if *max > 0.0 {
                format!("{max}")
            } else {
                String::new()
            };
            perfdata.push(format!("'{name}'={value}{unit};;;0;{max}"));
            values.push((*name, value));
        }
        let state: i64 = match self.rng.gen_range(0..1000) {
            0..=959 => 0,
            960..=989 => 1,
            990..=996 => 2,
            _ => 3,
        };
        let label = ["OK", "WARNING", "CRITICAL", "UNKNOWN"][state as usize];
        let latency = self.rng.gen_range(0.0..0.5);
        events.push(
            with_check_result(event("service_status"), command, time, latency)
                .with("host_id", host_id)
                .with("service_id", service_id(host_id, index))
                .with("state", state)
                .with("state_type", if state == 0 { 1i64 } else { 0 })
                .with("execution_time", self.rng.gen_range(0.01..1.5))
                .with(
                    "output",
                    format!(
                        "{label}: {description} {}",
                        values
                            .first()
                            .map(|(_, v)| v.to_string())
                            .unwrap_or_default()
                    ),
                )
                .with("perfdata", perfdata.join(" ")),
        );
        for (metric_index, (name, value)) in values.into_iter().enumerate() {
            events.push(
                event("metric")
                    .with("ctime", time)
                    .with("interval", 300u32)
                    .with(
                        "metric_id",
                        service_id(host_id, index) * 10 + metric_index as i64,
                    )
                    .with("name", name)
                    .with("rrd_len", 15_552_000i64)
                    .with("value", value)
                    .with("value_type", 0i64)
                    .with("is_for_rebuild", false)
                    .with("host_id", host_id)
                    .with("service_id", service_id(host_id, index)),
            );
        }
        events
    }
}

/// The simulator as a source of the service, at `rate` events per second.
pub struct Simulator {
    pub rate: u32,
}

impl Source for Simulator {
    fn kind(&self) -> SourceKind {
        SourceKind::Simulator
    }

    fn name(&self) -> String {
        format!("{} events/s over {HOSTS} hosts", self.rate)
    }

    fn run(self: Box<Self>, feed: Arc<Feed>, stop: CancellationToken) -> Running {
        Box::pin(run(feed, self.rate, stop))
    }
}

/// Runs until `stop`: the start-up events, then `rate` events per second.
pub async fn run(ingest: Arc<Feed>, rate: u32, stop: CancellationToken) {
    tracing::info!(rate, hosts = HOSTS, "simulator started");
    if !send(&ingest, startup_events(), &stop).await {
        return;
    }
    let mut checks = Checks::default();
    let tick = Duration::from_millis(100);
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut credit = 0.0;
    let mut pending: Vec<Event> = Vec::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = interval.tick() => {}
        }
        credit += rate as f64 * tick.as_secs_f64();
        let mut batch = Vec::new();
        while credit >= 1.0 {
            if pending.is_empty() {
                pending = checks.next_check();
                pending.reverse();
            }
            if let Some(event) = pending.pop() {
                batch.push(event);
            }
            credit -= 1.0;
        }
        if !batch.is_empty() && !send(&ingest, batch, &stop).await {
            return;
        }
    }
}

/// Ingests a batch, waiting while the journal is full. False when stopped.
async fn send(ingest: &Feed, events: Vec<Event>, stop: &CancellationToken) -> bool {
    loop {
        match ingest.ingest(events.clone()).await {
            Ok(_) => return true,
            Err(error) => {
                tracing::debug!("simulator waiting: {error}");
                tokio::select! {
                    _ = stop.cancelled() => return false,
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_describes_the_whole_platform() {
        let events = startup_events();
        let count = |name: &str| events.iter().filter(|e| e.def().name == name).count();
        assert_eq!(count("instance"), 1);
        assert_eq!(count("host"), HOSTS as usize);
        assert_eq!(count("service"), HOSTS as usize * SERVICES.len());
        assert_eq!(count("host_group"), HOST_GROUPS.len());
        assert_eq!(count("host_group_member"), HOSTS as usize);
        assert_eq!(
            count("service_group_member"),
            HOSTS as usize * SERVICES.len()
        );
        assert_eq!(events[0].def().name, "instance");
    }

    #[test]
    fn checks_cycle_statuses_and_metrics_with_valid_json() {
        let mut checks = Checks::default();
        let first = checks.next_check();
        let names: Vec<_> = first.iter().map(|e| e.def().name).collect();
        assert_eq!(names, ["host_status", "service_status", "metric", "metric"]);
        for event in first {
            // Every simulated event must survive its own JSON form.
            let back = Event::from_json(&event.to_json()).unwrap();
            assert_eq!(back.to_json(), event.to_json());
        }
    }
}
