//! What a page's action did, told on the page it sends the browser to: a
//! message kept on the server for the browser's session and shown once.
//! Not in the URL: a reload, a bookmark or a shared link would show it
//! again, and anyone could make the page say anything.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::response::{IntoResponse, Redirect, Response};

use super::auth::Caller;
use super::Context;
use crate::auth::crypto;

/// How an action went, which decides how the message looks and how a
/// screen reader announces it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// Nothing was wrong, and nothing changed either (a pause of a paused
    /// output).
    Info,
    Error,
}

#[derive(Clone, Debug)]
pub struct Flash {
    pub outcome: Outcome,
    pub text: String,
}

impl Flash {
    pub fn success(text: impl Into<String>) -> Flash {
        Flash {
            outcome: Outcome::Success,
            text: text.into(),
        }
    }

    pub fn info(text: impl Into<String>) -> Flash {
        Flash {
            outcome: Outcome::Info,
            text: text.into(),
        }
    }

    pub fn error(text: impl Into<String>) -> Flash {
        Flash {
            outcome: Outcome::Error,
            text: text.into(),
        }
    }

    /// The CSS class of the message.
    pub fn class(&self) -> &'static str {
        match self.outcome {
            Outcome::Success => "notice-success",
            Outcome::Info => "notice-info",
            Outcome::Error => "notice-error",
        }
    }

    /// An error interrupts a screen reader; the rest waits its turn.
    pub fn role(&self) -> &'static str {
        match self.outcome {
            Outcome::Error => "alert",
            _ => "status",
        }
    }
}

/// A message left this long unread (the browser went elsewhere) is
/// dropped.
const KEPT_FOR: Duration = Duration::from_secs(300);
/// Sessions with a message waiting, at most: each is a few hundred bytes,
/// and a stale one is only a message that will not be seen.
const MAX_WAITING: usize = 10_000;

/// One waiting message per session, the latest. Keyed by a digest of the
/// session cookie, so that the map holds no credential.
#[derive(Default)]
pub struct Flashes {
    waiting: Mutex<HashMap<[u8; 32], (Instant, Flash)>>,
}

impl Flashes {
    /// Leaves `flash` for the caller's next page. A caller without a
    /// browser session (Basic, a token) reads the answer's status instead:
    /// nothing is kept for it.
    pub fn set(&self, caller: &Caller, flash: Flash) {
        let Some(session) = &caller.session else {
            return;
        };
        let key = crypto::sha256(session.cookie.as_bytes());
        let now = Instant::now();
        let mut waiting = crate::sync::lock(&self.waiting);
        if waiting.len() >= MAX_WAITING {
            waiting.retain(|_, (at, _)| now.duration_since(*at) < KEPT_FOR);
            if waiting.len() >= MAX_WAITING {
                waiting.clear();
            }
        }
        waiting.insert(key, (now, flash));
    }

    /// The caller's waiting message, removed: shown once.
    pub fn take(&self, caller: &Caller) -> Option<Flash> {
        let session = caller.session.as_ref()?;
        let key = crypto::sha256(session.cookie.as_bytes());
        let (at, flash) = crate::sync::lock(&self.waiting).remove(&key)?;
        (at.elapsed() < KEPT_FOR).then_some(flash)
    }
}

/// Sends the browser to `location`, with `flash` to show there.
pub(super) fn redirect_with(
    ctx: &Context,
    caller: &Caller,
    location: &str,
    flash: Flash,
) -> Response {
    ctx.flashes.set(caller, flash);
    Redirect::to(location).into_response()
}
