//! A log line that says something repeated, at most once per interval:
//! a flood of refused connections must not become a flood of log lines.

use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct LogThrottle {
    every: Duration,
    /// When the last line went out, and the occurrences since then.
    state: Mutex<(Option<Instant>, u64)>,
}

impl LogThrottle {
    pub const fn new(every: Duration) -> Self {
        LogThrottle {
            every,
            state: Mutex::new((None, 0)),
        }
    }

    /// Counts one occurrence; `Some(n)` when a line should be logged now,
    /// `n` being the occurrences it stands for (this one included).
    pub fn hit(&self) -> Option<u64> {
        let mut state = crate::sync::lock(&self.state);
        state.1 += 1;
        let now = Instant::now();
        match state.0 {
            Some(last) if now.duration_since(last) < self.every => None,
            _ => {
                let n = state.1;
                *state = (Some(now), 0);
                Some(n)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_counting_the_rest() {
        let throttle = LogThrottle::new(Duration::from_secs(3600));
        assert_eq!(throttle.hit(), Some(1));
        assert_eq!(throttle.hit(), None);
        assert_eq!(throttle.hit(), None);
        let throttle = LogThrottle::new(Duration::ZERO);
        assert_eq!(throttle.hit(), Some(1));
        assert_eq!(throttle.hit(), Some(1));
    }
}
