//! Who may do what: local users with argon2id password hashes, browser
//! sessions, API tokens, and a limit on failed logins. HTTP concerns
//! (cookies, headers, redirects) live in `web::auth`; this module only
//! answers "who is this?" and "may they?".

pub mod crypto;
mod limiter;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use serde::Deserialize;
use time::OffsetDateTime;

// Roles are stored with users; this is where the rest of the service
// finds them.
pub use crate::store::Role;
use crate::store::{Principal, SessionRow, Store, StoreError};
pub use limiter::LoginLimiter;

/// The `[auth]` table.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// A browser session ends this long after login.
    pub session_ttl_secs: u64,
    /// Failed logins allowed per user name from one client within the
    /// window; past it from all clients together, a progressive delay (see
    /// `limiter`)…
    pub max_failures_per_user: u32,
    /// …and per client address (an IPv6 client counts by its /64).
    pub max_failures_per_client: u32,
    pub failure_window_secs: u64,
}

impl AuthSettings {
    /// `session_ttl_secs` as the signed seconds that dates and cookies take.
    pub fn session_seconds(&self) -> i64 {
        self.session_ttl_secs.min(i64::MAX as u64) as i64
    }
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            session_ttl_secs: 8 * 3600,
            max_failures_per_user: 5,
            max_failures_per_client: 20,
            failure_window_secs: 15 * 60,
        }
    }
}

pub const MIN_PASSWORD_LEN: usize = 12;
/// Argon2 hashes any length; this bounds the work a request can ask for.
pub const MAX_PASSWORD_LEN: usize = 1024;
pub const TOKEN_PREFIX: &str = "bst_";

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("wrong user name or password")]
    Refused,
    #[error("too many failed logins; try again in {} s", retry_after.as_secs().max(1))]
    Limited { retry_after: Duration },
    /// Every password-hashing slot and its queue are taken: 503.
    #[error("too many password checks at once; try again in a moment")]
    Busy,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A password's quality, checked where users choose one.
pub fn check_new_password(password: &str) -> Result<(), String> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_LEN {
        return Err(format!(
            "must be at least {MIN_PASSWORD_LEN} characters long"
        ));
    }
    if password.len() > MAX_PASSWORD_LEN {
        return Err(format!("must be at most {MAX_PASSWORD_LEN} bytes long"));
    }
    Ok(())
}

pub fn check_user_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if valid {
        Ok(())
    } else {
        Err("1 to 64 characters among letters, digits and . _ - @".into())
    }
}

/// An argon2id PHC string (the crate's defaults: 19 MiB, 2 passes, as
/// OWASP recommends). Slow on purpose: call it off the async threads.
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("cannot hash the password: {e}"))
}

fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A hash to verify against when the user does not exist, so that a
/// login for an unknown name takes as long as a wrong password.
fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| hash_password(&crypto::random_text(24)).unwrap_or_default())
}

/// Password hashing (argon2id: 19 MiB and tens of milliseconds of a core
/// per run) is bounded: as many runs at once as there are cores, and a
/// short queue behind them; past the queue, an attempt is refused at once
/// ([`LoginError::Busy`], 503 with `Retry-After`) instead of taking memory.
/// Whatever the parallelism of the clients, argon2 holds at most
/// `cores × 19 MiB`.
pub struct HashPool {
    running: Arc<Semaphore>,
    admitted: Arc<Semaphore>,
    /// Verifications run since start (tests count them).
    runs: AtomicU64,
}

/// Attempts that may wait for a hashing slot, per slot.
const HASH_QUEUE_PER_SLOT: usize = 4;

impl HashPool {
    pub fn new(slots: usize) -> HashPool {
        let slots = slots.max(1);
        HashPool {
            running: Arc::new(Semaphore::new(slots)),
            admitted: Arc::new(Semaphore::new(slots * (1 + HASH_QUEUE_PER_SLOT))),
            runs: AtomicU64::new(0),
        }
    }

    fn for_cores() -> HashPool {
        HashPool::new(std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    /// Runs argon2 off the async threads, in a slot; `None` when the pool
    /// and its queue are full or the task failed.
    ///
    /// Each run allocates its 19 MiB of blocks, and an allocator keeps
    /// freed pages for reuse (with glibc, this alone put an idle service
    /// over 30 MiB in `scripts/bench-e2e idle`): they are handed back at
    /// once, logins being rare and Basic credentials remembered.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, LoginError> {
        let admitted = self
            .admitted
            .clone()
            .try_acquire_owned()
            .map_err(|_| LoginError::Busy)?;
        let slot = self
            .running
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| LoginError::Busy)?;
        self.runs.fetch_add(1, Ordering::Relaxed);
        // The permits go with the work: a client that hangs up does not
        // free a slot while argon2 still runs in it.
        tokio::task::spawn_blocking(move || {
            let result = work();
            crate::memory::collect_this_thread();
            drop((slot, admitted));
            result
        })
        .await
        .map_err(|_| LoginError::Busy)
    }
}

async fn hash_blocking(pool: &HashPool, password: String) -> Result<String, String> {
    pool.run(move || hash_password(&password))
        .await
        .unwrap_or_else(|e| Err(e.to_string()))
}

/// The limiter's key for a user name: names longer than any user's are all
/// one key, so that a client cannot make the limiter hold huge names.
fn limiter_key(name: &str) -> &str {
    if name.len() > 64 {
        "(a name too long for any user)"
    } else {
        name
    }
}

/// How long a verified HTTP Basic credential is trusted without running
/// argon2 again: scripts send it with every request.
const BASIC_CACHE_TTL: Duration = Duration::from_secs(60);
const BASIC_CACHE_MAX: usize = 1024;

/// The outcome of a Basic check that parallel requests wait for.
type PendingCheck = Arc<tokio::sync::OnceCell<Option<Principal>>>;

pub struct Auth {
    store: Store,
    pub settings: AuthSettings,
    limiter: LoginLimiter,
    hashing: HashPool,
    /// SHA-256 of `user:password` → who, since when.
    basic_cache: Mutex<HashMap<[u8; 32], (Principal, Instant)>>,
    /// Basic credentials being checked: parallel requests with the same
    /// ones (a script starting) wait for that one check instead of each
    /// counting an attempt.
    basic_pending: Mutex<HashMap<[u8; 32], PendingCheck>>,
}

/// A new session's cookie value and its CSRF token.
pub struct NewSession {
    pub cookie: String,
    pub csrf: String,
}

impl Auth {
    pub fn new(store: Store, settings: AuthSettings) -> Auth {
        let window = Duration::from_secs(settings.failure_window_secs.max(1));
        Auth {
            limiter: LoginLimiter::new(
                settings.max_failures_per_user,
                settings.max_failures_per_client,
                window,
            ),
            store,
            settings,
            hashing: HashPool::for_cores(),
            basic_cache: Mutex::new(HashMap::new()),
            basic_pending: Mutex::new(HashMap::new()),
        }
    }

    /// How many times argon2 ran to check a password or hash one.
    pub fn hash_runs(&self) -> u64 {
        self.hashing.runs.load(Ordering::Relaxed)
    }

    /// With no user at all, creates `admin` with `admin_password`, or with
    /// a random password printed once on the console.
    pub async fn bootstrap(&self, admin_password: Option<&str>) -> anyhow::Result<()> {
        if self.store.count_users().await? > 0 {
            if admin_password.is_some() {
                tracing::info!(
                    "BROKERSTREAM_ADMIN_PASSWORD ignored: users exist already (change passwords on the Users page or with the API)"
                );
            }
            return Ok(());
        }
        let (password, generated) = match admin_password {
            Some(p) => {
                check_new_password(p)
                    .map_err(|e| anyhow::anyhow!("BROKERSTREAM_ADMIN_PASSWORD {e}"))?;
                (p.to_owned(), false)
            }
            None => (crypto::random_text(20), true),
        };
        let hash = hash_blocking(&self.hashing, password.clone())
            .await
            .map_err(|e| anyhow::anyhow!(e))?;
        self.store.create_user("admin", &hash, Role::Admin).await?;
        self.store
            .audit(
                "brokerstream",
                "user.create",
                "admin",
                &serde_json::json!({"role": "admin", "bootstrap": true}),
            )
            .await?;
        if generated {
            // On the console, not in the log: log files are kept and shipped.
            eprintln!(
                "\n  brokerstream created the user `admin` with the password:\n\n      {password}\n\n  It is shown this once. Log in and change it, or set\n  BROKERSTREAM_ADMIN_PASSWORD before the first start.\n"
            );
        } else {
            tracing::info!("created the user `admin` with BROKERSTREAM_ADMIN_PASSWORD");
        }
        Ok(())
    }

    /// Checks a user name and password. The attempt is counted as a
    /// failure before argon2 runs (see `limiter`), and taken back if the
    /// password is right.
    pub async fn check_password(
        &self,
        client: IpAddr,
        name: &str,
        password: &str,
    ) -> Result<Principal, LoginError> {
        let reservation = self
            .limiter
            .begin(client, limiter_key(name))
            .map_err(|retry_after| LoginError::Limited { retry_after })?;
        let user = match self.store.get_user(name).await {
            Ok(user) => user,
            Err(e) => {
                self.limiter.cancel(reservation);
                return Err(e.into());
            }
        };
        let hash = user.as_ref().map(|u| u.password_hash.clone());
        let candidate = password.to_owned();
        let matches = if password.len() > MAX_PASSWORD_LEN {
            false
        } else {
            let verified = self
                .hashing
                .run(move || {
                    // The decoy too is made off the async threads.
                    match &hash {
                        Some(hash) => verify_password(&candidate, hash),
                        None => verify_password(&candidate, decoy_hash()),
                    }
                })
                .await;
            match verified {
                Ok(matches) => matches,
                Err(e) => {
                    // Not checked: not a failure of the client's.
                    self.limiter.cancel(reservation);
                    return Err(e);
                }
            }
        };
        match user {
            Some(user) if matches => {
                self.limiter.succeeded(reservation);
                Ok(Principal {
                    user_id: user.id,
                    name: user.name,
                    role: user.role,
                })
            }
            _ => {
                tracing::warn!(
                    "failed login for user `{}` from {client}",
                    name.escape_debug()
                );
                Err(LoginError::Refused)
            }
        }
    }

    /// HTTP Basic: the password check, with recent successes remembered.
    pub async fn basic(
        &self,
        client: IpAddr,
        name: &str,
        password: &str,
    ) -> Result<Principal, LoginError> {
        let key = crypto::sha256(format!("{name}:{password}").as_bytes());
        // A client over a limit is refused even with remembered
        // credentials: otherwise the cache would be a password oracle
        // without argon2's cost.
        if let Some(retry_after) = self.limiter.blocked(client, limiter_key(name)) {
            return Err(LoginError::Limited { retry_after });
        }
        if let Ok(cache) = self.basic_cache.lock() {
            if let Some((principal, at)) = cache.get(&key) {
                if at.elapsed() < BASIC_CACHE_TTL {
                    return Ok(principal.clone());
                }
            }
        }
        let pending = self
            .basic_pending
            .lock()
            .map(|mut p| p.entry(key).or_default().clone())
            .ok();
        let principal = match pending {
            Some(cell) => {
                let mut outcome = None;
                let own = &mut outcome;
                let shared = cell
                    .get_or_init(|| async move {
                        let result = self.check_password(client, name, password).await;
                        let principal = result.as_ref().ok().cloned();
                        *own = Some(result);
                        principal
                    })
                    .await
                    .clone();
                if let Ok(mut p) = self.basic_pending.lock() {
                    if p.get(&key).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
                        p.remove(&key);
                    }
                }
                match (outcome, shared) {
                    // This request ran the check: its own answer.
                    (Some(result), _) => result?,
                    // Another one did, with the same credentials.
                    (None, Some(principal)) => principal,
                    // Another one failed: this one is an attempt of its own.
                    (None, None) => self.check_password(client, name, password).await?,
                }
            }
            None => self.check_password(client, name, password).await?,
        };
        if let Ok(mut cache) = self.basic_cache.lock() {
            if cache.len() >= BASIC_CACHE_MAX {
                cache.retain(|_, (_, at)| at.elapsed() < BASIC_CACHE_TTL);
                if cache.len() >= BASIC_CACHE_MAX {
                    cache.clear();
                }
            }
            cache.insert(key, (principal.clone(), Instant::now()));
        }
        Ok(principal)
    }

    /// Forgets remembered Basic credentials: a password, a role or a user
    /// changed.
    pub fn users_changed(&self) {
        if let Ok(mut cache) = self.basic_cache.lock() {
            cache.clear();
        }
    }

    /// Counts an unknown token; `Some` when the client is past its limit
    /// of bad tokens (answer 429 rather than 401). A token that verifies is
    /// never refused on these grounds.
    pub fn token_failed(&self, client: IpAddr) -> Option<Duration> {
        self.limiter.token_failed(client)
    }

    pub async fn start_session(&self, principal: &Principal) -> Result<NewSession, StoreError> {
        let cookie = crypto::random_token();
        let csrf = crypto::random_token();
        let expires_at =
            OffsetDateTime::now_utc() + time::Duration::seconds(self.settings.session_seconds());
        self.store
            .create_session(
                &crypto::digest(&cookie),
                principal.user_id,
                &csrf,
                expires_at,
            )
            .await?;
        Ok(NewSession { cookie, csrf })
    }

    /// The live session behind a cookie value; `Err(true)` when it existed
    /// but expired (the login page then says so).
    pub async fn session(&self, cookie: &str) -> Result<Result<SessionRow, bool>, StoreError> {
        let digest = crypto::digest(cookie);
        match self.store.find_session(&digest).await? {
            None => Ok(Err(false)),
            // Kept until the next login sweeps it, so that every request
            // made with it hears why it no longer works.
            Some(row) if row.expires_at <= OffsetDateTime::now_utc() => Ok(Err(true)),
            Some(row) => Ok(Ok(row)),
        }
    }

    pub async fn end_session(&self, cookie: &str) -> Result<(), StoreError> {
        self.store.delete_session(&crypto::digest(cookie)).await
    }

    pub async fn token(&self, token: &str) -> Result<Option<Principal>, StoreError> {
        if !token.starts_with(TOKEN_PREFIX) || token.len() > 128 {
            return Ok(None);
        }
        self.store.use_token(&crypto::digest(token)).await
    }

    /// A new API token: its clear value (shown once) and its id.
    pub async fn create_token(
        &self,
        user_id: i64,
        name: &str,
        expires_at: Option<OffsetDateTime>,
    ) -> Result<(String, String, i64), StoreError> {
        let token = format!("{TOKEN_PREFIX}{}", crypto::random_token());
        let prefix: String = token.chars().take(TOKEN_PREFIX.len() + 6).collect();
        let id = self
            .store
            .create_token(user_id, name, &crypto::digest(&token), &prefix, expires_at)
            .await?;
        Ok((token, prefix, id))
    }

    pub async fn hash(&self, password: &str) -> Result<String, String> {
        hash_blocking(&self.hashing, password.to_owned()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_only_its_password() {
        let hash = hash_password("correct horse battery").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery", &hash));
        assert!(!verify_password("correct horse batterx", &hash));
        assert!(!verify_password("correct horse battery", "not a hash"));
    }

    #[test]
    fn roles_are_ordered() {
        assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Admin);
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("Admin"), None);
    }

    #[test]
    fn passwords_and_names_are_checked() {
        assert!(check_new_password("short").is_err());
        assert!(check_new_password("long enough password").is_ok());
        assert!(check_new_password(&"x".repeat(MAX_PASSWORD_LEN + 1)).is_err());
        assert!(check_user_name("ops.team-1@site").is_ok());
        for bad in ["", "a b", "a/b", "é", &"a".repeat(65)] {
            assert!(check_user_name(bad).is_err(), "{bad}");
        }
    }
}
