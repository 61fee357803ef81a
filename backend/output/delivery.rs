//! Why a batch could not be delivered, as a sink says it and the worker
//! acts on it: the batch is always kept and tried again with backoff, and
//! the kind of failure tells the operator (and the output's health) whether
//! waiting will mend it or someone has to act.
//!
//! What a destination refuses for good about *these events* is not an
//! error here: the sink settles the batch by dead-lettering them
//! ([`super::http::Verdict::Refused`]).

use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// The destination is down, slow or busy (connection refused, timeout,
    /// 5xx, 429, a full disk): it may take the batch later.
    #[error("{0}")]
    Unavailable(String),
    /// The destination refuses how this output is set up (credentials,
    /// URL, certificate trust, a file it may not open): the batch waits
    /// until an operator mends the definition or the destination.
    #[error("{0}")]
    Misconfigured(String),
}

/// [`DeliveryError`]'s variants, as the status names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    Unavailable,
    Misconfigured,
}

impl DeliveryError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            DeliveryError::Unavailable(_) => ErrorKind::Unavailable,
            DeliveryError::Misconfigured(_) => ErrorKind::Misconfigured,
        }
    }

    /// The same error with its text changed (redacted, given context).
    pub fn map_message(self, change: impl FnOnce(String) -> String) -> DeliveryError {
        match self {
            DeliveryError::Unavailable(m) => DeliveryError::Unavailable(change(m)),
            DeliveryError::Misconfigured(m) => DeliveryError::Misconfigured(change(m)),
        }
    }
}
