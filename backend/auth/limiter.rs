//! Failed logins within a sliding window, per user name and per client.
//! Over either limit, further attempts are refused without checking the
//! password until the oldest failure leaves the window.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Bounds the memory an attacker can make us spend on keys.
const MAX_KEYS: usize = 10_000;

pub struct LoginLimiter {
    per_user: u32,
    per_client: u32,
    window: Duration,
    users: Mutex<HashMap<String, VecDeque<Instant>>>,
    clients: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
}

/// An IPv6 client usually owns its whole /64: count it as one.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::V6(segments.into())
            }
        },
    }
}

fn blocked_for(
    failures: Option<&VecDeque<Instant>>,
    limit: u32,
    window: Duration,
) -> Option<Duration> {
    let failures = failures?;
    let recent: Vec<&Instant> = failures.iter().filter(|at| at.elapsed() < window).collect();
    if recent.len() < limit as usize {
        return None;
    }
    // Free again when enough of the oldest failures have left the window.
    let freeing = recent[recent.len() - limit as usize];
    Some(window.saturating_sub(freeing.elapsed()))
}

fn record<K: std::hash::Hash + Eq + Clone>(
    map: &Mutex<HashMap<K, VecDeque<Instant>>>,
    key: K,
    limit: u32,
    window: Duration,
) {
    let Ok(mut map) = map.lock() else { return };
    if map.len() >= MAX_KEYS && !map.contains_key(&key) {
        map.retain(|_, failures| failures.back().is_some_and(|at| at.elapsed() < window));
        if map.len() >= MAX_KEYS {
            let oldest = map
                .iter()
                .min_by_key(|(_, failures)| failures.back().copied())
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                map.remove(&oldest);
            }
        }
    }
    let failures = map.entry(key).or_default();
    failures.push_back(Instant::now());
    while failures.len() > limit as usize
        || failures.front().is_some_and(|at| at.elapsed() >= window)
    {
        failures.pop_front();
    }
}

impl LoginLimiter {
    pub fn new(per_user: u32, per_client: u32, window: Duration) -> LoginLimiter {
        LoginLimiter {
            per_user: per_user.max(1),
            per_client: per_client.max(1),
            window,
            users: Mutex::new(HashMap::new()),
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// How long until an attempt for `user` from `client` is heard again.
    pub fn blocked(&self, client: IpAddr, user: &str) -> Option<Duration> {
        let by_user = self
            .users
            .lock()
            .ok()
            .and_then(|m| blocked_for(m.get(user), self.per_user, self.window));
        by_user.max(self.blocked_client(client))
    }

    pub fn blocked_client(&self, client: IpAddr) -> Option<Duration> {
        self.clients
            .lock()
            .ok()
            .and_then(|m| blocked_for(m.get(&client_key(client)), self.per_client, self.window))
    }

    pub fn failed(&self, client: IpAddr, user: &str) {
        record(&self.users, user.to_owned(), self.per_user, self.window);
        self.failed_client(client);
    }

    pub fn failed_client(&self, client: IpAddr) {
        record(
            &self.clients,
            client_key(client),
            self.per_client,
            self.window,
        );
    }

    /// A success forgives the user's failures, not the client's: one good
    /// password must not reset a client guessing at many accounts.
    pub fn succeeded(&self, user: &str) {
        if let Ok(mut users) = self.users.lock() {
            users.remove(user);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_user_is_blocked_after_its_limit_and_forgiven_on_success() {
        let limiter = LoginLimiter::new(3, 100, Duration::from_secs(60));
        for _ in 0..2 {
            limiter.failed(ip("10.0.0.1"), "alice");
        }
        assert!(limiter.blocked(ip("10.0.0.1"), "alice").is_none());
        limiter.failed(ip("10.0.0.2"), "alice");
        let wait = limiter.blocked(ip("10.0.0.3"), "alice").expect("blocked");
        assert!(wait <= Duration::from_secs(60) && wait > Duration::from_secs(50));
        assert!(limiter.blocked(ip("10.0.0.3"), "bob").is_none());
        limiter.succeeded("alice");
        assert!(limiter.blocked(ip("10.0.0.3"), "alice").is_none());
    }

    #[test]
    fn a_client_is_blocked_across_user_names_and_by_its_v6_prefix() {
        let limiter = LoginLimiter::new(100, 3, Duration::from_secs(60));
        for user in ["a", "b", "c"] {
            limiter.failed(ip("2001:db8::1"), user);
        }
        assert!(limiter.blocked(ip("2001:db8::ffff"), "d").is_some());
        assert!(limiter.blocked(ip("2001:db8:0:1::1"), "d").is_none());
    }

    #[test]
    fn failures_leave_the_window() {
        let limiter = LoginLimiter::new(1, 1, Duration::from_millis(30));
        limiter.failed(ip("10.0.0.1"), "alice");
        assert!(limiter.blocked(ip("10.0.0.1"), "alice").is_some());
        std::thread::sleep(Duration::from_millis(40));
        assert!(limiter.blocked(ip("10.0.0.1"), "alice").is_none());
    }

    #[test]
    fn keys_are_bounded() {
        let limiter = LoginLimiter::new(5, 5, Duration::from_secs(60));
        for n in 0..(MAX_KEYS + 10) {
            limiter.failed_client(IpAddr::V4((n as u32).into()));
        }
        assert!(limiter.clients.lock().unwrap().len() <= MAX_KEYS);
    }
}
