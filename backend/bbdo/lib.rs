//! The BBDO wire protocol: how a Centreon Broker sends events over TCP.
//!
//! Layers, bottom up, as in mini-redis:
//! - [`frame`]: 16-byte headers with CRC-16/X-25, events split at 0xFFFF
//!   bytes and joined again, resynchronisation after a bad CRC;
//! - [`compression`]: Centreon's zlib chunks, when negotiated;
//! - [`mapped`] (BBDO 2) and [`protobuf`] (BBDO 3): payload ↔ [`Event`],
//!   both driven by the event catalogue;
//! - [`handshake`]: `version_response` / `Welcome`, versions, extensions;
//! - [`connection`]: one peer's session: read, hand the events to an
//!   [`EventSink`], acknowledge what it holds;
//! - [`listener`] and [`connector`]: accept peers, or dial them and
//!   reconnect; [`Inputs`] is what `GET /api/v1/inputs` shows of them.
//!
//! - [`tls`]: the `TLS` extension, started right after the welcomes on
//!   the same connection (OpenSSL, for Centreon's anonymous suites).
//!
//! A peer that offers TLS while it is off here (`tls = no`) is answered
//! without it; one that starts a TLS handshake anyway is closed with a
//! clear error, and one that requires TLS closes the connection itself
//! right after the handshake, which is logged as such.

pub mod compression;
pub mod connection;
pub mod connector;
pub mod frame;
pub mod handshake;
pub mod inputs;
pub mod listener;
pub mod mapped;
pub mod protobuf;
pub mod sink;
pub mod tls;

// The layers below, under the names the modules use.
pub(crate) use brokerstream_common::{net, sync, throttle};
pub(crate) use brokerstream_event as event;

use bytes::BytesMut;

use crate::event::{catalogue, Event, EventType, Protocol};

pub use connection::SessionConfig;
pub use frame::Packet;
pub use handshake::Version;
pub use inputs::Inputs;
pub use sink::{EventSink, Refusal};

/// Why a payload is not an event.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DecodeError {
    #[error("unknown event type {0} (`_type` {n})", n = .0 .0)]
    UnknownType(EventType),
    #[error("`{event}`.`{field}`: {reason}")]
    Field {
        event: &'static str,
        field: String,
        reason: String,
    },
    #[error("`{event}`: invalid protobuf message: {reason}")]
    Protobuf { event: String, reason: String },
}

/// Decodes one event's payload, mapped or protobuf as the catalogue says.
pub fn decode(event_type: EventType, payload: &[u8]) -> Result<Event, DecodeError> {
    let def = catalogue::by_type(event_type).ok_or(DecodeError::UnknownType(event_type))?;
    match def.protocol {
        Protocol::Mapped => mapped::decode(def, payload),
        Protocol::Protobuf => protobuf::decode(def, payload),
    }
}

/// The payload of an event, without framing.
pub fn encode_payload(event: &Event) -> Vec<u8> {
    let mut out = Vec::new();
    match event.def().protocol {
        Protocol::Mapped => mapped::encode(event, &mut out),
        Protocol::Protobuf => protobuf::encode(event, &mut out),
    }
    out
}

/// Appends the packets of an event to `out`.
pub fn encode(event: &Event, out: &mut BytesMut) {
    frame::encode(event.event_type(), &encode_payload(event), out);
}
