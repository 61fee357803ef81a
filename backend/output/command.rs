//! What the supervisor tells a running worker, native or Lua, over the
//! worker's channel. Its own module so that every kind of worker can take
//! it without depending on another kind's worker.

use tokio::sync::oneshot;

use super::status::FlushRecord;

pub enum Command {
    /// Flush now and answer with the record of that flush.
    Flush(oneshot::Sender<FlushRecord>),
    Stop,
}
