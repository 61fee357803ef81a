//! Where a session's events go. The session acknowledges an event to its
//! broker only once the sink says it holds it, so the sink decides what
//! "safe" means (in the service: written to the journal as its durability
//! policy promises); this crate only waits for the answer.

use std::future::Future;
use std::pin::Pin;

use crate::event::Event;

/// Why a sink did not take a batch.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refusal {
    /// Not now (a full journal, a failing disk): the session pauses
    /// reading and offers the batch again, in halves down to one event.
    #[error("{0}")]
    Later(String),
    /// The service is stopping: the session ends after its final ack.
    #[error("the service is stopping")]
    Closed,
}

/// A boxed future, so that sessions hold a `dyn EventSink` and the sink's
/// type does not become a parameter of every listener and connector.
pub type Accepting<'a> = Pin<Box<dyn Future<Output = Result<(), Refusal>> + Send + 'a>>;

pub trait EventSink: Send + Sync + 'static {
    /// Takes the batch whole or refuses it whole; resolves once the batch
    /// is as safe as the events' acknowledgement promises the broker.
    fn accept(&self, events: Vec<Event>) -> Accepting<'_>;
}
