//! Event rates for the pages, from counters sampled on the server every
//! [`SAMPLE_EVERY`]: the overview's sparklines come from here, so a browser
//! that was closed for an hour still sees the last minute at once. Each
//! output has two series: events received (read from the journal) and
//! events delivered (acknowledged by the destination), so that "receiving
//! 1,000/s, delivering 0/s" shows as such; each source of events has one,
//! the events the journal took from it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, Weak};
use std::time::{Duration, Instant};

use super::Shared;
use crate::ingest::sources::is_source_series;

pub const SAMPLE_EVERY: Duration = Duration::from_secs(2);
/// Samples kept: two minutes.
pub const SAMPLES: usize = 60;
/// The hour's history keeps one sample a minute.
pub const HOUR_STEP: Duration = Duration::from_secs(60);
/// Sixty minutes between the first and the last.
const HOUR_SAMPLES: usize = 61;

#[derive(Clone, Copy)]
struct Sample {
    at: Instant,
    /// Events received so far.
    count: u64,
    /// Events delivered (acknowledged) so far; 0 for a source.
    delivered: u64,
}

/// One series' samples: the last two minutes at [`SAMPLE_EVERY`], and the
/// last hour at [`HOUR_STEP`].
#[derive(Default)]
struct Recent {
    fine: VecDeque<Sample>,
    hour: VecDeque<Sample>,
}

#[derive(Default)]
pub struct Rates {
    series: Mutex<HashMap<String, Recent>>,
}

/// Events per second received and delivered, oldest first, one value per
/// `step`.
#[derive(Debug, PartialEq, serde::Serialize)]
pub struct History {
    pub step_secs: u64,
    pub received: Vec<f64>,
    pub delivered: Vec<f64>,
}

impl Rates {
    fn record(&self, name: &str, count: u64, delivered: u64, at: Instant) {
        let mut series = crate::sync::lock(&self.series);
        let recent = series.entry(name.to_owned()).or_default();
        let sample = Sample {
            at,
            count,
            delivered,
        };
        push(&mut recent.fine, sample, SAMPLES);
        let minute_passed = recent
            .hour
            .back()
            .is_none_or(|last| at.duration_since(last.at) >= HOUR_STEP);
        if minute_passed {
            push(&mut recent.hour, sample, HOUR_SAMPLES);
        }
    }

    /// Keeps a renamed output's history under its new name.
    pub fn rename(&self, from: &str, to: &str) {
        let mut series = crate::sync::lock(&self.series);
        if let Some(recent) = series.remove(from) {
            series.insert(to.to_owned(), recent);
        }
    }

    fn retain(&self, names: &[String]) {
        let mut series = crate::sync::lock(&self.series);
        series.retain(|k, _| is_source_series(k) || names.contains(k));
    }

    /// Events received per second between consecutive samples, oldest first.
    pub fn per_second(&self, name: &str) -> Vec<f64> {
        self.fine(name, |s| s.count)
    }

    /// Events delivered (acknowledged) per second, as [`Rates::per_second`].
    pub fn delivered_per_second(&self, name: &str) -> Vec<f64> {
        self.fine(name, |s| s.delivered)
    }

    fn fine(&self, name: &str, count: impl Fn(&Sample) -> u64) -> Vec<f64> {
        let series = crate::sync::lock(&self.series);
        series
            .get(name)
            .map(|recent| rates(recent.fine.iter(), &count))
            .unwrap_or_default()
    }

    /// The last two minutes, as the sparklines show them.
    pub fn recent(&self, name: &str) -> History {
        History {
            step_secs: SAMPLE_EVERY.as_secs(),
            received: self.per_second(name),
            delivered: self.delivered_per_second(name),
        }
    }

    /// The last hour, a value per minute; the last one covers the minute
    /// under way, up to the latest sample.
    pub fn hour(&self, name: &str) -> History {
        let series = crate::sync::lock(&self.series);
        let mut history = History {
            step_secs: HOUR_STEP.as_secs(),
            received: Vec::new(),
            delivered: Vec::new(),
        };
        if let Some(recent) = series.get(name) {
            let latest = recent
                .fine
                .back()
                .filter(|s| recent.hour.back().is_some_and(|h| h.at < s.at));
            let samples = || recent.hour.iter().chain(latest);
            history.received = rates(samples(), |s| s.count);
            history.delivered = rates(samples(), |s| s.delivered);
        }
        history
    }
}

fn push(samples: &mut VecDeque<Sample>, sample: Sample, keep: usize) {
    if samples.len() == keep {
        samples.pop_front();
    }
    samples.push_back(sample);
}

/// Per second between consecutive samples.
fn rates<'a>(
    samples: impl Iterator<Item = &'a Sample> + Clone,
    count: impl Fn(&Sample) -> u64,
) -> Vec<f64> {
    samples
        .clone()
        .zip(samples.skip(1))
        .map(|(a, b)| {
            let secs = b.at.duration_since(a.at).as_secs_f64();
            // A counter that went down was reset (a new worker).
            let delta = count(b).saturating_sub(count(a)) as f64;
            if secs > 0.0 {
                delta / secs
            } else {
                0.0
            }
        })
        .collect()
}

/// Samples until the context is dropped.
pub async fn sample(shared: Weak<Shared>) {
    let mut ticks = tokio::time::interval(SAMPLE_EVERY);
    loop {
        ticks.tick().await;
        let Some(ctx) = shared.upgrade() else { return };
        let now = Instant::now();
        let names = ctx.supervisor.names().await;
        for name in &names {
            if let Some(status) = ctx.supervisor.status(name).await {
                let counters = &status.counters;
                ctx.rates
                    .record(name, counters.received, counters.acknowledged, now);
            }
        }
        ctx.rates.retain(&names);
        for source in ctx.ingest.sources() {
            ctx.rates
                .record(&source.series(), source.events_accepted, 0, now);
        }
    }
}

/// Where `value` goes on a chart `height` high whose top is `max`: a pixel
/// inside each edge, so that a line at 0 or at the top stays visible.
pub fn chart_y(value: f64, max: f64, height: f64) -> f64 {
    if max > 0.0 {
        height - (value / max) * (height - 2.0) - 1.0
    } else {
        height - 1.0
    }
}

/// An SVG polyline's points for `values` in a `width` × `height` box,
/// scaled to the largest value (a flat line at the bottom when all are 0).
pub fn sparkline_points(values: &[f64], width: f64, height: f64) -> String {
    if values.is_empty() {
        return String::new();
    }
    let max = values.iter().cloned().fold(0.0_f64, f64::max);
    let step = if values.len() > 1 {
        width / (values.len() - 1) as f64
    } else {
        0.0
    };
    values
        .iter()
        .enumerate()
        .map(|(i, v)| format!("{:.1},{:.1}", i as f64 * step, chart_y(*v, max, height)))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_from_samples() {
        let rates = Rates::default();
        let t = Instant::now();
        rates.record("o", 0, 0, t);
        rates.record("o", 10, 0, t + Duration::from_secs(2));
        rates.record("o", 10, 4, t + Duration::from_secs(4));
        rates.record("o", 3, 1, t + Duration::from_secs(6));
        assert_eq!(rates.per_second("o"), vec![5.0, 0.0, 0.0]);
        assert_eq!(rates.delivered_per_second("o"), vec![0.0, 2.0, 0.0]);
        assert!(rates.delivered_per_second("other").is_empty());
        assert!(rates.per_second("other").is_empty());
    }

    #[test]
    fn the_hour_keeps_a_sample_a_minute_and_ends_with_the_latest() {
        let rates = Rates::default();
        let t = Instant::now();
        // 90 minutes of 2-second samples: 600 events received a minute,
        // 60 delivered.
        for i in 0..=2700u64 {
            rates.record("o", i * 20, i * 2, t + Duration::from_secs(i * 2));
        }
        let hour = rates.hour("o");
        assert_eq!(hour.step_secs, 60);
        assert_eq!(hour.received.len(), 60, "{hour:?}");
        assert!(
            hour.received.iter().all(|r| (*r - 10.0).abs() < 1e-9),
            "{hour:?}"
        );
        assert!(hour.delivered.iter().all(|r| (*r - 1.0).abs() < 1e-9));
        // A minute and a bit: one whole minute and the one under way.
        let rates = Rates::default();
        for i in 0..=40u64 {
            rates.record("p", i, 0, t + Duration::from_secs(i * 2));
        }
        assert_eq!(rates.hour("p").received.len(), 2);
        assert!(rates.hour("none").received.is_empty());
    }

    #[test]
    fn sparkline_scales_to_the_box() {
        assert_eq!(
            sparkline_points(&[0.0, 0.0], 10.0, 10.0),
            "0.0,9.0 10.0,9.0"
        );
        assert_eq!(
            sparkline_points(&[0.0, 4.0], 10.0, 10.0),
            "0.0,9.0 10.0,1.0"
        );
    }
}
