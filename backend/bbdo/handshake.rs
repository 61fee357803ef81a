//! The opening exchange (docs/bbdo.md §8): each side sends a welcome,
//! `version_response` (2:1) up to version 3.0.0 or protobuf `Welcome` (2:7)
//! after, with the extensions it offers. The connecting side speaks first.
//! A different major version ends the connection; minor and patch are not
//! checked. The extensions both sides list are applied.

use std::fmt;

use bytes::BytesMut;

use crate::event::{catalogue, Event, EventType, Value};

use super::frame::Packet;

pub const VERSION_RESPONSE: EventType = EventType::new(2, 1);
pub const ACK: EventType = EventType::new(2, 2);
pub const STOP: EventType = EventType::new(2, 3);
pub const WELCOME: EventType = EventType::new(2, 7);
pub const PB_ACK: EventType = EventType::new(2, 8);
pub const PB_STOP: EventType = EventType::new(2, 9);

/// The extension brokerstream implements, under Centreon's name. Peers'
/// names are compared without case, where Centreon compares them exactly
/// (docs/bbdo.md §4.2): brokerstream is only more lenient.
pub const COMPRESSION: &str = "COMPRESSION";
pub const TLS: &str = "TLS";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    pub major: u16,
    pub minor: u16,
    pub patch: u16,
}

impl Version {
    pub const V2: Version = Version::new(2, 0, 0);
    pub const V3: Version = Version::new(3, 0, 1);

    pub const fn new(major: u16, minor: u16, patch: u16) -> Self {
        Version {
            major,
            minor,
            patch,
        }
    }

    /// Up to 3.0.0 the welcome is `version_response` and acks are legacy
    /// `ack`; after it, `Welcome` and protobuf `Ack`.
    pub fn uses_protobuf(self) -> bool {
        self > Version::new(3, 0, 0)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl std::str::FromStr for Version {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.trim().split('.').collect();
        let bad = || format!("`{s}` is not a BBDO version such as 2.0.0 or 3.0.1");
        if parts.is_empty() || parts.len() > 3 {
            return Err(bad());
        }
        let mut n = [0u16; 3];
        for (slot, part) in n.iter_mut().zip(&parts) {
            *slot = part.parse().map_err(|_| bad())?;
        }
        Ok(Version::new(n[0], n[1], n[2]))
    }
}

/// A peer's welcome.
#[derive(Clone, Debug, PartialEq)]
pub struct Hello {
    pub version: Version,
    /// As the peer listed them, e.g. `["TLS", "COMPRESSION"]`.
    pub extensions: Vec<String>,
    /// `Welcome` only: who the peer is.
    pub poller_id: Option<i64>,
    pub poller_name: Option<String>,
    pub broker_name: Option<String>,
    pub protobuf: bool,
}

impl Hello {
    pub fn offers(&self, extension: &str) -> bool {
        self.extensions
            .iter()
            .any(|e| e.eq_ignore_ascii_case(extension))
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum HandshakeError {
    #[error("BBDO: expected a welcome (version_response or Welcome) from the peer, got event {0}")]
    NotAWelcome(EventType),
    #[error("BBDO: invalid welcome from the peer: {0}")]
    Invalid(String),
    #[error("BBDO: peer is using protocol version {peer} whereas we're using protocol version {ours}; closing the connection")]
    VersionMismatch { peer: Version, ours: Version },
    #[error("BBDO: peer is using protocol version {0}, and brokerstream supports BBDO 2 and 3 only; closing the connection")]
    Unsupported(Version),
}

fn int(event: &Event, key: &str) -> i64 {
    event.get(key).and_then(Value::as_i64).unwrap_or(0)
}

fn version_field(v: i64) -> u16 {
    u16::try_from(v).unwrap_or(u16::MAX)
}

/// Reads a welcome packet.
pub fn parse(packet: &Packet) -> Result<Hello, HandshakeError> {
    let protobuf = match packet.event_type {
        VERSION_RESPONSE => false,
        WELCOME => true,
        other => return Err(HandshakeError::NotAWelcome(other)),
    };
    let event = super::decode(packet.event_type, &packet.payload)
        .map_err(|e| HandshakeError::Invalid(e.to_string()))?;
    let extensions = event
        .get("extensions")
        .and_then(Value::as_str)
        .unwrap_or("")
        .split_ascii_whitespace()
        .map(str::to_owned)
        .collect();
    let version = if protobuf {
        let table = match event.get("version") {
            Some(Value::Table(t)) => t.clone(),
            _ => Vec::new(),
        };
        let part = |key: &str| {
            table
                .iter()
                .find(|(k, _)| k == key)
                .and_then(|(_, v)| v.as_i64())
                .unwrap_or(0)
        };
        Version::new(
            version_field(part("major")),
            version_field(part("minor")),
            version_field(part("patch")),
        )
    } else {
        Version::new(
            version_field(int(&event, "major")),
            version_field(int(&event, "minor")),
            version_field(int(&event, "patch")),
        )
    };
    let string = |key: &str| event.get(key).and_then(Value::as_str).map(str::to_owned);
    Ok(Hello {
        version,
        extensions,
        poller_id: protobuf.then(|| int(&event, "poller_id")),
        poller_name: if protobuf {
            string("poller_name")
        } else {
            None
        },
        broker_name: if protobuf {
            string("broker_name")
        } else {
            None
        },
        protobuf,
    })
}

/// Appends our welcome for `version`, offering `extensions`.
pub fn encode(version: Version, extensions: &[&str], broker_name: &str, out: &mut BytesMut) {
    let list = extensions.join(" ");
    let event = if version.uses_protobuf() {
        let def = catalogue::by_type(WELCOME).expect("welcome is in the catalogue");
        Event::new(def)
            .with(
                "version",
                Value::Table(vec![
                    ("major".into(), Value::Int(version.major.into())),
                    ("minor".into(), Value::Int(version.minor.into())),
                    ("patch".into(), Value::Int(version.patch.into())),
                ]),
            )
            .with("extensions", list)
            .with("poller_id", 0)
            .with("poller_name", "")
            .with("broker_name", broker_name)
            // PeerType BROKER: we are a broker-like peer, never an Engine.
            .with("peer_type", 1)
            .with("extended_negotiation", false)
    } else {
        let def =
            catalogue::by_type(VERSION_RESPONSE).expect("version_response is in the catalogue");
        Event::new(def)
            .with("major", i64::from(version.major))
            .with("minor", i64::from(version.minor))
            .with("patch", i64::from(version.patch))
            .with("extensions", list)
    };
    super::encode(&event, out);
}

/// What the accepting side answers: brokerstream speaks BBDO 2 and 3, so it
/// answers in the peer's major version, the way the peer itself would have
/// been configured.
pub fn answer_version(peer: Version) -> Result<Version, HandshakeError> {
    match peer.major {
        2 => Ok(Version::V2),
        3 if peer.uses_protobuf() => Ok(Version::V3),
        // 3.0.0 still uses version_response and legacy acks.
        3 => Ok(Version::new(3, 0, 0)),
        _ => Err(HandshakeError::Unsupported(peer)),
    }
}

/// The connecting side checks the answer against the version it sent.
pub fn check_version(ours: Version, peer: Version) -> Result<(), HandshakeError> {
    if ours.major == peer.major {
        Ok(())
    } else {
        Err(HandshakeError::VersionMismatch { peer, ours })
    }
}

/// Appends an acknowledgement of `count` events in the format of `version`.
pub fn encode_ack(version: Version, count: u32, out: &mut BytesMut) {
    let (ty, key) = if version.uses_protobuf() {
        (PB_ACK, "acknowledged_events")
    } else {
        (ACK, "acknowledged_events")
    };
    let def = catalogue::by_type(ty).expect("acks are in the catalogue");
    super::encode(&Event::new(def).with(key, count), out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Deframer;

    fn round_trip(version: Version, extensions: &[&str]) -> Hello {
        let mut buf = BytesMut::new();
        encode(version, extensions, "brokerstream", &mut buf);
        let packet = Deframer::new().next(&mut buf).unwrap();
        parse(&packet).unwrap()
    }

    #[test]
    fn welcomes_round_trip() {
        let hello = round_trip(Version::V2, &["COMPRESSION"]);
        assert_eq!(hello.version, Version::V2);
        assert!(!hello.protobuf);
        assert!(hello.offers("compression"));
        let hello = round_trip(Version::V3, &["TLS", "COMPRESSION"]);
        assert_eq!(hello.version, Version::V3);
        assert!(hello.protobuf);
        assert!(hello.offers("tls"));
        assert_eq!(hello.broker_name.as_deref(), Some("brokerstream"));
    }

    #[test]
    fn version_response_matches_the_spec_bytes() {
        let mut buf = BytesMut::new();
        encode(Version::V2, &[], "x", &mut buf);
        assert_eq!(
            &buf[..],
            &[0x57, 0xf6, 0, 7, 0, 2, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0]
        );
        let mut buf = BytesMut::new();
        encode_ack(Version::V2, 42, &mut buf);
        assert_eq!(&buf[..4], &[0x8f, 0x06, 0, 4]);
        let mut buf = BytesMut::new();
        encode_ack(Version::V3, 42, &mut buf);
        assert_eq!(
            &buf[..],
            &[0x76, 0xd8, 0, 2, 0, 2, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 8, 42]
        );
    }

    #[test]
    fn versions() {
        assert_eq!(answer_version(Version::new(2, 1, 0)), Ok(Version::V2));
        assert_eq!(
            answer_version(Version::new(3, 0, 0)),
            Ok(Version::new(3, 0, 0))
        );
        assert_eq!(answer_version(Version::new(3, 1, 0)), Ok(Version::V3));
        let err = answer_version(Version::new(4, 0, 0))
            .unwrap_err()
            .to_string();
        assert!(err.contains("4.0.0"), "{err}");
        let err = check_version(Version::V3, Version::V2)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(
                "peer is using protocol version 2.0.0 whereas we're using protocol version 3.0.1"
            ),
            "{err}"
        );
        assert_eq!("3.0.1".parse(), Ok(Version::V3));
        assert!("x".parse::<Version>().is_err());
    }
}
