//! Is an output acknowledging what it receives? Beside its lifecycle state
//! (`running`, `retrying`, `paused`…), each output has a health derived
//! from what matters to whoever reads its status:
//!
//! - `failing`: someone has to act: the output cannot run, or its
//!   destination refuses how it is set up (401, 403, 404, an untrusted
//!   certificate, a script that does not load);
//! - `stalled`: its worker runs but acknowledges nothing while events wait
//!   (a Lua script whose `write()`/`flush()` keep returning false);
//! - `degraded`: events wait and nothing was acknowledged for longer than
//!   the output's threshold while the destination is unavailable or the
//!   output is paused, or the destination refused events lately (they went
//!   to the dead-letter file);
//! - `ok` otherwise.
//!
//! The threshold is derived from the output's own batching: it is normal
//! for events to wait `max_buffer_age`, and Centreon's certified
//! connectors hold their queues up to `max_all_queues_age` (60 s by
//! default) before sending.

use std::time::Duration;

use serde::Deserialize;
use time::OffsetDateTime;

use super::delivery::ErrorKind;
#[cfg(test)]
use super::status::FlushRecord;
use super::status::{FlushOutcome, OutputState, OutputStatus};
// The verdict is part of the status it is judged from.
pub use super::status::{Health, HealthState};
use super::BatchSettings;
use super::OutputSpec;

/// `[health]` in the configuration file.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HealthSettings {
    /// The least time events may wait with nothing acknowledged before the
    /// output is `stalled` or `degraded`.
    pub no_progress_secs: u64,
    /// The threshold is at least this many times the output's
    /// `max_buffer_age`.
    pub buffer_age_factor: f64,
    /// For script outputs, the threshold is at least this: Centreon's
    /// connectors wait up to `max_all_queues_age` (60 s) before sending.
    pub script_no_progress_secs: u64,
    /// An output whose flushes fail on and off, at least this share of
    /// them over its threshold's time, is `degraded`.
    pub error_ratio: f64,
}

/// Runs of failed flushes, each ended by a flush that settled events, that
/// make "on and off": one run is an outage (then a recovery).
pub const MIN_FAILURE_RUNS: u64 = 2;

impl Default for HealthSettings {
    fn default() -> Self {
        HealthSettings {
            no_progress_secs: 60,
            buffer_age_factor: 3.0,
            script_no_progress_secs: 120,
            error_ratio: 0.25,
        }
    }
}

impl HealthSettings {
    /// How long `spec`'s events may wait with nothing acknowledged.
    pub fn threshold(&self, spec: &OutputSpec, script: bool) -> Duration {
        let mut secs = self.no_progress_secs as f64;
        let age = BatchSettings::from_spec(spec).max_age.as_secs_f64();
        secs = secs.max(age * self.buffer_age_factor);
        if script {
            secs = secs.max(self.script_no_progress_secs as f64);
        }
        Duration::from_secs_f64(secs)
    }
}

/// What the health is judged on besides the status itself.
pub struct Judged<'a> {
    pub status: &'a OutputStatus,
    /// How long nothing was acknowledged while events waited; zero while
    /// the output keeps up.
    pub waiting_for: Duration,
    pub threshold: Duration,
    /// When the last flush that dead-lettered events ran.
    pub refused_at: Option<OffsetDateTime>,
    /// [`HealthSettings::error_ratio`].
    pub error_ratio: f64,
    pub now: OffsetDateTime,
}

/// The health state and its reason.
pub fn judge(j: &Judged) -> (HealthState, String) {
    let s = j.status;
    let error = s.last_error.as_deref().unwrap_or("no error recorded");
    let pending = if s.queue_depth > 0 {
        format!(
            "; {} events pending{}",
            s.queue_depth,
            s.oldest_pending_age_secs
                .map(|age| format!(", the oldest {}", seconds(age)))
                .unwrap_or_default()
        )
    } else {
        String::new()
    };
    if s.state == OutputState::Failed {
        return (
            HealthState::Failing,
            format!("cannot run: {error}{pending}"),
        );
    }
    if s.state == OutputState::Retrying && s.last_error_kind == Some(ErrorKind::Misconfigured) {
        return (HealthState::Failing, format!("{error}{pending}"));
    }
    let late = s.queue_depth > 0 && j.waiting_for > j.threshold;
    if late {
        let quiet = format!(
            "nothing acknowledged for {} (more than {})",
            seconds(j.waiting_for.as_secs_f64()),
            seconds(j.threshold.as_secs_f64())
        );
        return match s.state {
            OutputState::Paused => (
                HealthState::Degraded,
                format!("paused by an operator: {quiet}{pending}"),
            ),
            OutputState::Stopped => (
                HealthState::Degraded,
                format!("stopped (disabled): {quiet}{pending}"),
            ),
            OutputState::Retrying => (
                HealthState::Degraded,
                format!("the destination is unavailable: {quiet}; last error: {error}{pending}"),
            ),
            _ => (
                HealthState::Stalled,
                format!("{quiet}; last error: {error}{pending}"),
            ),
        };
    }
    if let Some((failed, all)) = failing_often(j) {
        return (
            HealthState::Degraded,
            format!(
                "{failed} of the last {all} flushes failed within {}, on and off, though events are delivered; last error: {error}{pending}",
                seconds(j.threshold.as_secs_f64())
            ),
        );
    }
    if let Some(at) = j.refused_at {
        if (j.now - at).unsigned_abs() <= j.threshold {
            let reason = s
                .last_dead_letter_reason
                .as_deref()
                .unwrap_or("no reason recorded");
            return (
                HealthState::Degraded,
                format!(
                    "the destination refused events lately ({} dead-lettered in all): {reason}",
                    s.dead_lettered
                ),
            );
        }
    }
    let reason = match s.state {
        OutputState::Paused => format!("paused by an operator{pending}"),
        // Ok until the events wait past the threshold (degraded above):
        // but it says that nothing is delivered meanwhile.
        OutputState::Stopped => format!("stopped (disabled): nothing is delivered{pending}"),
        OutputState::Retrying => format!("retrying: {error}"),
        _ if s.queue_depth == 0 => "everything received is acknowledged".to_owned(),
        _ => format!("acknowledging{pending}"),
    };
    (HealthState::Ok, reason)
}

/// `(failed, all)` flushes within the threshold's time, when the output
/// fails on and off: at least [`MIN_FAILURE_RUNS`] runs of failed flushes
/// with a settled flush of events between them, and failures at least
/// `error_ratio` of all. One run is an outage, not this: a destination
/// down is `retrying` (then `degraded` once nothing was acknowledged for
/// the threshold), and one that came back is `ok` at once. Flushes with
/// no events count only when they failed.
fn failing_often(j: &Judged) -> Option<(u64, u64)> {
    let since = j.now - j.threshold;
    let (mut failed, mut settled, mut runs) = (0u64, 0u64, 0u64);
    let mut in_run = false;
    // The history is newest first; runs read oldest first.
    for flush in j.status.flushes.iter().rev().filter(|f| f.at >= since) {
        match flush.outcome {
            FlushOutcome::Failed => {
                failed += flush.count;
                if !in_run {
                    runs += 1;
                    in_run = true;
                }
            }
            FlushOutcome::Ok | FlushOutcome::Refused if flush.events > 0 => {
                settled += flush.count;
                in_run = false;
            }
            _ => {}
        }
    }
    let all = failed + settled;
    (runs >= MIN_FAILURE_RUNS && failed as f64 >= j.error_ratio * all as f64)
        .then_some((failed, all))
}

/// When the last flush that dead-lettered events ran.
pub fn last_refusal(status: &OutputStatus) -> Option<OffsetDateTime> {
    status
        .flushes
        .iter()
        .find(|f| f.outcome == FlushOutcome::Refused)
        .map(|f| f.at)
}

/// `42 s`, `3 min 20 s`, `2 h 05 min`.
fn seconds(secs: f64) -> String {
    let secs = secs.max(0.0) as u64;
    match secs {
        0..=119 => format!("{secs} s"),
        120..=7199 => format!("{} min {:02} s", secs / 60, secs % 60),
        _ => format!("{} h {:02} min", secs / 3600, secs / 60 % 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judged(status: &OutputStatus, waiting: u64) -> (HealthState, String) {
        judge(&Judged {
            status,
            waiting_for: Duration::from_secs(waiting),
            threshold: Duration::from_secs(60),
            refused_at: last_refusal(status),
            error_ratio: 0.25,
            now: OffsetDateTime::now_utc(),
        })
    }

    #[test]
    fn each_state_with_its_reason() {
        let mut status = OutputStatus::new("o", OutputState::Running);
        assert_eq!(judged(&status, 0).0, HealthState::Ok);
        status.queue_depth = 10;
        status.oldest_pending_age_secs = Some(200.0);
        // Waiting, but within the threshold: batching.
        assert_eq!(judged(&status, 30).0, HealthState::Ok);
        let (state, reason) = judged(&status, 200);
        assert_eq!(state, HealthState::Stalled);
        assert!(
            reason.contains("nothing acknowledged for 3 min 20 s"),
            "{reason}"
        );
        assert!(
            reason.contains("10 events pending, the oldest 3 min 20 s"),
            "{reason}"
        );
        status.record_error(
            "cannot connect".into(),
            Some(ErrorKind::Unavailable),
            Duration::ZERO,
        );
        assert_eq!(judged(&status, 30).0, HealthState::Ok);
        let (state, reason) = judged(&status, 200);
        assert_eq!(state, HealthState::Degraded);
        assert!(
            reason.contains("unavailable") && reason.contains("cannot connect"),
            "{reason}"
        );
        status.record_error(
            "HTTP 401".into(),
            Some(ErrorKind::Misconfigured),
            Duration::ZERO,
        );
        // A configuration error fails at once, whatever the wait.
        let (state, reason) = judged(&status, 0);
        assert_eq!(state, HealthState::Failing);
        assert!(
            reason.starts_with("HTTP 401; 10 events pending"),
            "{reason}"
        );
        status.state = OutputState::Paused;
        assert_eq!(judged(&status, 200).0, HealthState::Degraded);
        status.state = OutputState::Failed;
        assert_eq!(judged(&status, 0).0, HealthState::Failing);
    }

    fn flush(outcome: FlushOutcome, events: usize, secs_ago: i64) -> FlushRecord {
        FlushRecord {
            at: OffsetDateTime::now_utc() - time::Duration::seconds(secs_ago),
            reason: super::super::status::FlushReason::Size,
            events,
            bytes: 10,
            duration_ms: 1.0,
            outcome,
            result: if outcome == FlushOutcome::Failed {
                "HTTP 503".into()
            } else {
                "ok".into()
            },
        }
    }

    fn history(outcomes: &str) -> OutputStatus {
        let mut status = OutputStatus::new("o", OutputState::Running);
        status.last_error = Some("HTTP 503: busy".into());
        let n = outcomes.len() as i64;
        for (i, c) in outcomes.chars().enumerate() {
            let outcome = if c == 'F' {
                FlushOutcome::Failed
            } else {
                FlushOutcome::Ok
            };
            status.record_flush(flush(outcome, 5, n - i as i64));
        }
        status
    }

    #[test]
    fn flushes_failing_on_and_off_make_a_delivering_output_degraded() {
        // One run of failures, however long, is an outage: ok once over,
        // and `retrying` while it lasts.
        for outage in ["FFFFFS", "SSSSFFFFF", "FFSSSSSS"] {
            assert_eq!(judged(&history(outage), 0).0, HealthState::Ok, "{outage}");
        }
        // On and off, but rare: 2 of 10.
        assert_eq!(judged(&history("FSSSSFSSSS"), 0).0, HealthState::Ok);
        let (state, reason) = judged(&history("FSSFSSFSS"), 0);
        assert_eq!(state, HealthState::Degraded, "{reason}");
        assert!(
            reason.starts_with("3 of the last 9 flushes failed within 60 s, on and off")
                && reason.contains("HTTP 503: busy"),
            "{reason}"
        );
        // Older than the threshold: forgotten.
        let mut old = OutputStatus::new("o", OutputState::Running);
        for i in 0..6 {
            let outcome = if i % 2 == 0 {
                FlushOutcome::Failed
            } else {
                FlushOutcome::Ok
            };
            old.record_flush(flush(outcome, 5, 300 - i));
        }
        assert_eq!(judged(&old, 0).0, HealthState::Ok);
    }

    #[test]
    fn the_threshold_follows_the_batching() {
        let settings = HealthSettings::default();
        let mut spec = OutputSpec::blank("o");
        spec.kind = "file".into();
        assert_eq!(settings.threshold(&spec, false), Duration::from_secs(60));
        spec.parameters.push(super::super::Parameter {
            name: "max_buffer_age".into(),
            ty: super::super::ParamType::Number,
            value: "40".into(),
        });
        assert_eq!(settings.threshold(&spec, false), Duration::from_secs(120));
        assert_eq!(settings.threshold(&spec, true), Duration::from_secs(120));
        spec.parameters.clear();
        assert_eq!(settings.threshold(&spec, true), Duration::from_secs(120));
    }
}
