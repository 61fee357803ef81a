//! Sends an output's dead letters again, through a sink built from the
//! output's current definition (a mended mapping, a new index), in batches
//! of the output's own size (`max_buffer_size` and `max_buffer_bytes`). The file side (what is taken, what goes back)
//! is the dead-letter store's; this is only the sending.

use std::sync::Arc;

use serde::Serialize;

use super::deadletter::{DeadLetterError, DeadLetters};
use super::kinds;
use super::sink::BuildContext;
use super::{BatchSettings, OutputSpec, Secrets};

/// What a replay did.
#[derive(Debug, Default, PartialEq, Serialize)]
pub struct Redelivery {
    /// Taken by the destination.
    pub delivered: u64,
    /// Refused again, and dead-lettered again with the new reason.
    pub refused_again: u64,
    /// Put back as they were: not sent because the destination could not
    /// take them now (see `error`), or lines that are not dead letters.
    pub kept: u64,
    /// Why the replay stopped before the end, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RedeliveryError {
    #[error("{0}")]
    Store(#[from] DeadLetterError),
    /// The definition cannot build a sink that takes records back.
    #[error("{0}")]
    Unsupported(String),
}

/// Sends `spec`'s dead letters again. Stops at the first batch the
/// destination cannot take now (down, credentials refused): that batch and
/// the rest go back, in order, with their original time and reason.
pub async fn replay(
    letters: &Arc<DeadLetters>,
    spec: &OutputSpec,
) -> Result<Redelivery, RedeliveryError> {
    let build = kinds::builder(&spec.kind).ok_or_else(|| {
        RedeliveryError::Unsupported(format!(
            "outputs of kind `{}` have no dead letters to replay",
            spec.kind
        ))
    })?;
    let secrets = Secrets::of(spec);
    let mut sink = build(
        spec,
        &BuildContext {
            dead_letters: letters,
        },
    )
    .map_err(|e| RedeliveryError::Unsupported(secrets.redact_owned(e)))?;
    let Some(mut run) = letters.begin_replay(&spec.name)? else {
        return Ok(Redelivery::default());
    };
    let settings = BatchSettings::from_spec(spec);
    let mut outcome = Redelivery::default();
    let mut batch = Vec::new();
    loop {
        let pending = run.next(settings.max_size, settings.max_bytes)?;
        if pending.is_empty() {
            break;
        }
        batch.clear();
        for letter in &pending {
            if !sink.push_encoded(letter.record.as_bytes(), &mut batch) {
                // Dropping the run puts every line back.
                return Err(RedeliveryError::Unsupported(format!(
                    "outputs of kind `{}` cannot send dead letters again",
                    spec.kind
                )));
            }
        }
        let sent = sink.send(&batch).await;
        let report = sink.take_report();
        match sent {
            Ok(()) => {
                sink.reset();
                run.settled();
                outcome.refused_again += report.dead_lettered;
                outcome.delivered += (pending.len() as u64).saturating_sub(report.dead_lettered);
            }
            Err(error) => {
                outcome.error = Some(secrets.redact_owned(error.to_string()));
                break;
            }
        }
    }
    outcome.kept = run.finish()?;
    tracing::info!(
        output = %spec.name,
        delivered = outcome.delivered,
        refused_again = outcome.refused_again,
        kept = outcome.kept,
        "dead letters replayed{}",
        outcome.error.as_deref().map(|e| format!(": stopped, {e}")).unwrap_or_default()
    );
    Ok(outcome)
}
