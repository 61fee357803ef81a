//! Failed logins within a sliding window.
//!
//! The scheme, and why (README, "Users, roles and tokens"): a hard lock per
//! user name lets anyone who knows the name lock its owner out (five wrong
//! passwords for `admin` from anywhere), so no counter here is keyed by
//! the user name alone:
//!
//! - per **(user, client)** pair, `max_failures_per_user` failures within
//!   the window refuse that pair (429) until the oldest leaves the window;
//! - per **client**, `max_failures_per_client` failures, whatever the user
//!   names, refuse that client's password attempts;
//! - per **user**, across clients, past `max_failures_per_user` failures
//!   a client that has itself failed for that user waits a delay that
//!   doubles with each further failure of the user's (1 s, 2 s, 4 s… up to
//!   [`MAX_USER_DELAY`]) after its own last failure for that user. Counted
//!   from the client's own failure, not the user's latest, so strangers
//!   failing on and on cannot keep an owner who mistyped once waiting
//!   past the longest delay. A client with no
//!   failure for the user is never delayed: the owner's right password
//!   from their own machine is accepted whatever strangers do.
//!
//! This is what Django's axes (lockout by user *and* address), Microsoft's
//! "smart lockout" (unfamiliar locations are locked, familiar ones are
//! not) and OWASP's advice (throttle rather than lock) have in common.
//!
//! An attempt is counted **before** its password is checked
//! ([`LoginLimiter::begin`] reserves it, atomically with the check of the
//! limits), so parallel requests cannot all pass a check made before any
//! of them failed; a success takes its reservation back.
//!
//! Bad API tokens are counted apart: they only turn the 401 of further bad
//! tokens into 429, and never refuse a token that verifies (a token is
//! 256 random bits: there is nothing to guess, and a lookup costs a
//! SHA-256).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Bounds the memory an attacker can make us spend on keys.
const MAX_KEYS: usize = 10_000;
/// The longest a user's progressive delay grows.
pub const MAX_USER_DELAY: Duration = Duration::from_secs(60);
/// Failures kept per user past its limit: enough to reach the longest delay.
const USER_EXTRA: usize = 8;

type Failures = VecDeque<Instant>;

#[derive(Default)]
struct State {
    pairs: HashMap<(String, IpAddr), Failures>,
    clients: HashMap<IpAddr, Failures>,
    users: HashMap<String, Failures>,
    tokens: HashMap<IpAddr, Failures>,
}

pub struct LoginLimiter {
    per_user: u32,
    per_client: u32,
    window: Duration,
    state: Mutex<State>,
}

/// An attempt counted as a failure until [`LoginLimiter::succeeded`] or
/// [`LoginLimiter::cancel`] takes it back.
#[derive(Debug)]
pub struct Reservation {
    client: IpAddr,
    user: String,
    at: Instant,
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

fn prune(failures: &mut Failures, window: Duration) {
    while failures.front().is_some_and(|at| at.elapsed() >= window) {
        failures.pop_front();
    }
}

/// How long until fewer than `limit` failures are in the window.
fn over_limit(failures: Option<&Failures>, limit: u32, window: Duration) -> Option<Duration> {
    let failures = failures?;
    let recent: Vec<&Instant> = failures.iter().filter(|at| at.elapsed() < window).collect();
    if recent.len() < limit as usize {
        return None;
    }
    let freeing = recent[recent.len() - limit as usize];
    Some(window.saturating_sub(freeing.elapsed()))
}

fn record<K: std::hash::Hash + Eq + Clone>(
    map: &mut HashMap<K, Failures>,
    key: K,
    at: Instant,
    keep: usize,
    window: Duration,
) {
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
    failures.push_back(at);
    prune(failures, window);
    while failures.len() > keep.max(1) {
        failures.pop_front();
    }
}

fn forget<K: std::hash::Hash + Eq>(map: &mut HashMap<K, Failures>, key: &K, at: Instant) {
    if let Some(failures) = map.get_mut(key) {
        if let Some(i) = failures.iter().rposition(|t| *t == at) {
            failures.remove(i);
        }
        if failures.is_empty() {
            map.remove(key);
        }
    }
}

impl LoginLimiter {
    pub fn new(per_user: u32, per_client: u32, window: Duration) -> LoginLimiter {
        LoginLimiter {
            per_user: per_user.max(1),
            per_client: per_client.max(1),
            window,
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        crate::sync::lock(&self.state)
    }

    /// How long until a password for `user` from `client` is heard again.
    fn check(&self, state: &State, client: IpAddr, user: &str) -> Option<Duration> {
        let pair_key = (user.to_owned(), client);
        let pair = state.pairs.get(&pair_key);
        let by_pair = over_limit(pair, self.per_user, self.window);
        let by_client = over_limit(state.clients.get(&client), self.per_client, self.window);
        // The progressive delay only holds back a client that has failed
        // for this user itself.
        let pair_failed = pair.is_some_and(|f| f.iter().any(|at| at.elapsed() < self.window));
        let by_user = state.users.get(user).filter(|_| pair_failed).and_then(|f| {
            let recent = f.iter().filter(|at| at.elapsed() < self.window).count();
            let over = recent.checked_sub(self.per_user as usize)?;
            let delay = Duration::from_secs(1 << over.min(6)).min(MAX_USER_DELAY);
            let last = pair?.back()?;
            delay.checked_sub(last.elapsed()).filter(|d| !d.is_zero())
        });
        by_pair.max(by_client).max(by_user)
    }

    /// Without counting anything: would an attempt be refused, and for how
    /// long? (Remembered Basic credentials are refused like a password.)
    pub fn blocked(&self, client: IpAddr, user: &str) -> Option<Duration> {
        let state = self.lock();
        self.check(&state, client_key(client), user)
    }

    /// Checks the limits and, if the attempt may go on, counts it as a
    /// failure at once, in one step: parallel attempts see each other.
    pub fn begin(&self, client: IpAddr, user: &str) -> Result<Reservation, Duration> {
        let client = client_key(client);
        let mut state = self.lock();
        if let Some(wait) = self.check(&state, client, user) {
            return Err(wait);
        }
        let at = Instant::now();
        let (per_user, per_client, window) = (
            self.per_user as usize,
            self.per_client as usize,
            self.window,
        );
        record(
            &mut state.pairs,
            (user.to_owned(), client),
            at,
            per_user,
            window,
        );
        record(&mut state.clients, client, at, per_client, window);
        record(
            &mut state.users,
            user.to_owned(),
            at,
            per_user + USER_EXTRA,
            window,
        );
        Ok(Reservation {
            client,
            user: user.to_owned(),
            at,
        })
    }

    /// The password was right: the attempt is taken back, and the client's
    /// earlier failures for this user are forgiven (in the user's count
    /// too). Not the client's
    /// failures for other users (one good password must not reset a client
    /// guessing at many accounts), nor other clients' failures for this
    /// user.
    pub fn succeeded(&self, reservation: Reservation) {
        let mut state = self.lock();
        let own = state
            .pairs
            .remove(&(reservation.user.clone(), reservation.client))
            .unwrap_or_default();
        // The pair's failures were counted for the user too, at the same
        // instants: the user's delay forgets them with the pair.
        if !own.contains(&reservation.at) {
            forget(&mut state.users, &reservation.user, reservation.at);
        }
        for at in own {
            forget(&mut state.users, &reservation.user, at);
        }
        forget(&mut state.clients, &reservation.client, reservation.at);
    }

    /// The password was not checked at all (the server was too busy).
    pub fn cancel(&self, reservation: Reservation) {
        let mut state = self.lock();
        let pair = (reservation.user.clone(), reservation.client);
        forget(&mut state.pairs, &pair, reservation.at);
        forget(&mut state.clients, &reservation.client, reservation.at);
        forget(&mut state.users, &reservation.user, reservation.at);
    }

    /// Counts an unknown token; says how long to answer 429 rather than 401
    /// when the client is past its limit of bad tokens.
    pub fn token_failed(&self, client: IpAddr) -> Option<Duration> {
        let client = client_key(client);
        let mut state = self.lock();
        let (limit, window) = (self.per_client, self.window);
        let over = over_limit(state.tokens.get(&client), limit, window);
        record(
            &mut state.tokens,
            client,
            Instant::now(),
            limit as usize,
            window,
        );
        over
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn fail(limiter: &LoginLimiter, client: &str, user: &str) {
        limiter.begin(ip(client), user).expect("allowed");
    }

    #[test]
    fn a_pair_is_blocked_after_its_limit_and_forgiven_on_success() {
        let limiter = LoginLimiter::new(3, 100, Duration::from_secs(60));
        for _ in 0..2 {
            fail(&limiter, "10.0.0.1", "alice");
        }
        let right = limiter.begin(ip("10.0.0.1"), "alice").expect("3rd attempt");
        limiter.succeeded(right);
        for _ in 0..3 {
            fail(&limiter, "10.0.0.1", "alice");
        }
        let wait = limiter.blocked(ip("10.0.0.1"), "alice").expect("blocked");
        assert!(wait <= Duration::from_secs(60) && wait > Duration::from_secs(50));
        assert!(limiter.begin(ip("10.0.0.1"), "alice").is_err());
        assert!(limiter.blocked(ip("10.0.0.1"), "bob").is_none());
    }

    #[test]
    fn parallel_attempts_are_counted_before_they_are_checked() {
        let limiter = LoginLimiter::new(5, 100, Duration::from_secs(60));
        // 64 attempts begun before any ends: only 5 go on.
        let begun: Vec<_> = (0..64)
            .filter_map(|_| limiter.begin(ip("10.0.0.1"), "alice").ok())
            .collect();
        assert_eq!(begun.len(), 5);
    }

    #[test]
    fn a_stranger_does_not_lock_out_the_owner() {
        let limiter = LoginLimiter::new(3, 100, Duration::from_secs(60));
        for _ in 0..10 {
            let _ = limiter.begin(ip("192.0.2.66"), "admin");
        }
        assert!(limiter.blocked(ip("192.0.2.66"), "admin").is_some());
        // Another client that has not failed is heard at once, however
        // many strangers failed.
        for n in 1..=20 {
            let _ = limiter.begin(ip(&format!("198.51.100.{n}")), "admin");
        }
        let owner = limiter.begin(ip("10.0.0.1"), "admin").expect("owner heard");
        limiter.succeeded(owner);
        // A stranger that failed once waits the user's progressive delay.
        let wait = limiter
            .blocked(ip("198.51.100.1"), "admin")
            .expect("delayed");
        assert!(wait <= MAX_USER_DELAY, "{wait:?}");
    }

    #[test]
    fn a_client_is_blocked_across_user_names_and_by_its_v6_prefix() {
        let limiter = LoginLimiter::new(100, 3, Duration::from_secs(60));
        for user in ["a", "b", "c"] {
            fail(&limiter, "2001:db8::1", user);
        }
        assert!(limiter.blocked(ip("2001:db8::ffff"), "d").is_some());
        assert!(limiter.blocked(ip("2001:db8:0:1::1"), "d").is_none());
    }

    #[test]
    fn a_cancelled_attempt_is_not_counted() {
        let limiter = LoginLimiter::new(1, 1, Duration::from_secs(60));
        let attempt = limiter.begin(ip("10.0.0.1"), "alice").unwrap();
        assert!(limiter.blocked(ip("10.0.0.1"), "alice").is_some());
        limiter.cancel(attempt);
        assert!(limiter.blocked(ip("10.0.0.1"), "alice").is_none());
    }

    #[test]
    fn failures_leave_the_window() {
        let limiter = LoginLimiter::new(1, 1, Duration::from_millis(30));
        fail(&limiter, "10.0.0.1", "alice");
        assert!(limiter.blocked(ip("10.0.0.1"), "alice").is_some());
        std::thread::sleep(Duration::from_millis(40));
        assert!(limiter.blocked(ip("10.0.0.1"), "alice").is_none());
    }

    #[test]
    fn bad_tokens_are_counted_apart_from_passwords() {
        let limiter = LoginLimiter::new(5, 3, Duration::from_secs(60));
        let answers: Vec<_> = (0..5)
            .map(|_| limiter.token_failed(ip("10.0.0.1")))
            .collect();
        assert!(answers[..3].iter().all(Option::is_none), "{answers:?}");
        assert!(answers[3..].iter().all(Option::is_some), "{answers:?}");
        assert!(limiter.blocked(ip("10.0.0.1"), "alice").is_none());
    }

    #[test]
    fn keys_are_bounded() {
        let limiter = LoginLimiter::new(5, 5, Duration::from_secs(60));
        for n in 0..(MAX_KEYS + 10) {
            let _ = limiter.begin(IpAddr::V4((n as u32).into()), "alice");
        }
        let state = limiter.lock();
        assert!(state.clients.len() <= MAX_KEYS);
        assert!(state.pairs.len() <= MAX_KEYS);
    }
}
