//! What a native kind builds and the worker drives: a sink that encodes
//! events into a batch and delivers the batch. The worker owns everything
//! around it (reading, filtering, the tail, batching, acknowledging,
//! backoff, the status), so a kind is only this.

use std::sync::Arc;

use futures::future::BoxFuture;

use super::deadletter::DeadLetters;
use super::delivery::DeliveryError;
use super::OutputSpec;
use crate::cache::Cache;
use crate::event::Event;

/// What a kind's `build` may use besides the definition.
pub struct BuildContext<'a> {
    /// Where kinds that dead-letter refused events keep them.
    pub dead_letters: &'a Arc<DeadLetters>,
}

/// Builds a kind's sink from a definition that passed validation; fails
/// only on one stored by an older version that validation would refuse.
pub type BuildSink = fn(&OutputSpec, &BuildContext) -> Result<Box<dyn Sink>, String>;

pub trait Sink: Send {
    /// Appends one event's record to the batch; nothing when the event has
    /// nothing for this destination.
    fn encode(&mut self, event: &Event, cache: &Cache, out: &mut Vec<u8>);

    /// Appends a record this kind encoded earlier (a dead letter sent
    /// again), as the dead-letter file kept it; `false` for a kind that
    /// has no dead letters to take back.
    fn push_encoded(&mut self, _record: &[u8], _out: &mut Vec<u8>) -> bool {
        false
    }

    /// Whether the destination can be used, with nothing to send: at start
    /// (a bad path shows at once) and on an empty flush.
    fn check(&mut self) -> BoxFuture<'_, Result<(), DeliveryError>>;

    /// Delivers the batch, or what is still owed of it after a partial
    /// answer. `Ok` settles every record (delivered, or dead-lettered and
    /// reported); `Err` keeps the batch for the retry.
    fn send<'a>(&'a mut self, batch: &'a [u8]) -> BoxFuture<'a, Result<(), DeliveryError>>;

    /// What the exchanges since the last call leave for the status.
    fn take_report(&mut self) -> SendReport {
        SendReport::default()
    }

    /// The batch was acknowledged: whatever the sink kept about it goes.
    fn reset(&mut self) {}
}

/// What a delivery leaves for the output's status; the sink never writes
/// the status itself.
#[derive(Debug, Default, PartialEq)]
pub struct SendReport {
    /// The status code and the start of the body of the last answer.
    pub response: Option<(u16, String)>,
    /// Events dead-lettered since the report was last taken, and the last
    /// reason.
    pub dead_lettered: u64,
    pub dead_letter_reason: Option<String>,
}
