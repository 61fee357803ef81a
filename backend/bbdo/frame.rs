//! BBDO packets (docs/bbdo.md §5): a 16-byte big-endian header
//! (CRC-16/X-25 over bytes 2..16, payload size, event type, source,
//! destination) and up to 0xFFFF payload bytes. An event larger than that
//! travels as packets of exactly 0xFFFF bytes followed by one shorter packet
//! with the same type, source and destination; the reader joins them.
//!
//! [`Deframer`] parses in place from a caller-owned buffer, in the style of
//! mini-redis: it consumes whole packets only, so a caller reads more bytes
//! and calls again whenever it answers `None`.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::event::EventType;

pub const HEADER_SIZE: usize = 16;
/// The payload size field of a packet that continues in the next one.
pub const MAX_PACKET_PAYLOAD: usize = 0xFFFF;
/// The default of the largest event accepted once its packets are joined
/// (`limits.max_bbdo_event_bytes`). Centreon sets no limit; this one bounds
/// the memory a peer can make us hold, and is far above any real event (the
/// cbd 21.10 capture's largest is 477 bytes).
pub const MAX_EVENT_SIZE: usize = 16 * 1024 * 1024;

const CRC16: crc::Crc<u16> = crc::Crc::<u16>::new(&crc::CRC_16_IBM_SDLC);

/// CRC-16/X-25, the checksum of Centreon's `crc16_ccitt`.
pub fn crc16(bytes: &[u8]) -> u16 {
    CRC16.checksum(bytes)
}

/// One event's payload, its packets joined.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    pub event_type: EventType,
    pub source: u32,
    pub destination: u32,
    pub payload: Bytes,
}

fn header(size: usize, event_type: EventType, source: u32, destination: u32) -> [u8; HEADER_SIZE] {
    let mut h = [0u8; HEADER_SIZE];
    h[2..4].copy_from_slice(&(size as u16).to_be_bytes());
    h[4..8].copy_from_slice(&event_type.0.to_be_bytes());
    h[8..12].copy_from_slice(&source.to_be_bytes());
    h[12..16].copy_from_slice(&destination.to_be_bytes());
    let crc = crc16(&h[2..]);
    h[0..2].copy_from_slice(&crc.to_be_bytes());
    h
}

/// Appends the packets of one event to `out`, with source and destination 0
/// as Centreon sends them.
pub fn encode(event_type: EventType, payload: &[u8], out: &mut BytesMut) {
    encode_with(event_type, 0, 0, payload, out)
}

/// Appends the packets of one event. The last packet is always shorter than
/// 0xFFFF, empty if need be: Centreon's protobuf writer omits that empty
/// packet for a payload of an exact multiple of 0xFFFF, which leaves a reader
/// waiting (docs/bbdo.md §5.4); the mapped rule, followed here for both, is
/// read correctly by every Centreon version.
pub fn encode_with(
    event_type: EventType,
    source: u32,
    destination: u32,
    payload: &[u8],
    out: &mut BytesMut,
) {
    let mut rest = payload;
    out.reserve(payload.len() + HEADER_SIZE * (1 + payload.len() / MAX_PACKET_PAYLOAD));
    loop {
        let n = rest.len().min(MAX_PACKET_PAYLOAD);
        out.put_slice(&header(n, event_type, source, destination));
        out.put_slice(&rest[..n]);
        rest = &rest[n..];
        if n < MAX_PACKET_PAYLOAD {
            break;
        }
    }
}

/// Checks a header's CRC; `None` when fewer than 16 bytes are given.
pub fn header_is_valid(bytes: &[u8]) -> Option<bool> {
    let h = bytes.get(..HEADER_SIZE)?;
    Some(u16::from_be_bytes([h[0], h[1]]) == crc16(&h[2..]))
}

/// Something the deframer noticed and recovered from, for the connection to
/// log and count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// A header whose CRC does not match: one byte was dropped to look for
    /// the next header, as Centreon does.
    BadCrc,
    /// A valid header was found again after `skipped` bytes were dropped.
    Resynchronised { skipped: u64 },
    /// An event grew past the deframer's limit; its packets are dropped.
    Oversized { event_type: EventType, limit: usize },
    /// A split event was interrupted by a packet of another type: the part
    /// received is handed on as if it were whole.
    Interrupted { event_type: EventType },
}

#[derive(Debug)]
struct Partial {
    event_type: EventType,
    source: u32,
    destination: u32,
    data: BytesMut,
    /// Past the size limit: drop packets until the event ends.
    discarding: bool,
}

/// Parses packets out of a byte buffer, joins split events, and
/// resynchronises after corrupted headers.
#[derive(Debug)]
pub struct Deframer {
    /// Largest event handed on; larger ones are dropped as they arrive,
    /// never held whole.
    max_event: usize,
    partial: Option<Partial>,
    /// Bytes dropped since the last valid header.
    skipping: u64,
    /// Corrupt headers met where a packet should start: one per
    /// resynchronisation, however many bytes it drops.
    pub crc_errors: u64,
    pub bytes_skipped: u64,
    /// Whole packets consumed (with a valid header), each part of a split
    /// event counted: the measure of a peer's progress.
    pub packets: u64,
    notices: Vec<Notice>,
}

impl Default for Deframer {
    fn default() -> Self {
        Deframer::with_max_event(MAX_EVENT_SIZE)
    }
}

impl Deframer {
    pub fn new() -> Self {
        Self::default()
    }

    /// A deframer that drops events larger than `max_event` bytes.
    pub fn with_max_event(max_event: usize) -> Self {
        Deframer {
            max_event,
            partial: None,
            skipping: 0,
            crc_errors: 0,
            bytes_skipped: 0,
            packets: 0,
            notices: Vec::new(),
        }
    }

    /// What happened since the last call.
    pub fn take_notices(&mut self) -> Vec<Notice> {
        std::mem::take(&mut self.notices)
    }

    /// True when [`Deframer::take_notices`] has something: cheap enough to
    /// ask after every packet.
    pub fn has_notices(&self) -> bool {
        !self.notices.is_empty()
    }

    /// True while part of an event is held or the buffer holds a partial
    /// packet: a connection closing now loses data.
    pub fn mid_event(&self, buf: &[u8]) -> bool {
        self.partial.is_some() || !buf.is_empty()
    }

    /// The next whole event in `buf`, consuming its packets; `None` when
    /// more bytes are needed.
    pub fn next(&mut self, buf: &mut BytesMut) -> Option<Packet> {
        loop {
            if buf.len() < HEADER_SIZE {
                return None;
            }
            if header_is_valid(buf) != Some(true) {
                if self.skipping == 0 {
                    self.notices.push(Notice::BadCrc);
                    self.crc_errors += 1;
                }
                self.skipping += 1;
                self.bytes_skipped += 1;
                buf.advance(1);
                continue;
            }
            let size = u16::from_be_bytes([buf[2], buf[3]]) as usize;
            if buf.len() < HEADER_SIZE + size {
                // Leave room for the whole packet, so one read can finish it.
                buf.reserve(HEADER_SIZE + size - buf.len());
                return None;
            }
            if self.skipping > 0 {
                self.notices.push(Notice::Resynchronised {
                    skipped: self.skipping,
                });
                self.skipping = 0;
            }
            let event_type = EventType(u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]));
            let source = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
            let destination = u32::from_be_bytes([buf[12], buf[13], buf[14], buf[15]]);
            buf.advance(HEADER_SIZE);
            let payload = buf.split_to(size);
            self.packets += 1;

            let mut out = None;
            if let Some(p) = &self.partial {
                if (p.event_type, p.source, p.destination) != (event_type, source, destination) {
                    // The only way to get here from a Centreon peer is a
                    // protobuf event of an exact multiple of 0xFFFF bytes,
                    // which has no terminating packet (docs/bbdo.md §5.4).
                    let p = self.partial.take().expect("checked above");
                    if !p.discarding {
                        self.notices.push(Notice::Interrupted {
                            event_type: p.event_type,
                        });
                        out = Some(Packet {
                            event_type: p.event_type,
                            source: p.source,
                            destination: p.destination,
                            payload: p.data.freeze(),
                        });
                    }
                }
            }
            let continues = size == MAX_PACKET_PAYLOAD;
            let joined = match self.partial.take() {
                Some(mut p) => {
                    if !p.discarding {
                        if p.data.len() + size > self.max_event {
                            p.discarding = true;
                            p.data = BytesMut::new();
                            self.notices.push(Notice::Oversized {
                                event_type,
                                limit: self.max_event,
                            });
                        } else {
                            p.data.extend_from_slice(&payload);
                        }
                    }
                    if continues {
                        self.partial = Some(p);
                        None
                    } else if p.discarding {
                        None
                    } else {
                        Some(p.data.freeze())
                    }
                }
                None if size > self.max_event => {
                    // A limit below one packet's size (0xFFFF) still holds.
                    self.notices.push(Notice::Oversized {
                        event_type,
                        limit: self.max_event,
                    });
                    if continues {
                        self.partial = Some(Partial {
                            event_type,
                            source,
                            destination,
                            data: BytesMut::new(),
                            discarding: true,
                        });
                    }
                    None
                }
                None if continues => {
                    self.partial = Some(Partial {
                        event_type,
                        source,
                        destination,
                        data: payload,
                        discarding: false,
                    });
                    None
                }
                None => Some(payload.freeze()),
            };
            match (out, joined) {
                (Some(interrupted), Some(now)) => {
                    // Hand the interrupted event on now and keep the new
                    // one for the next call by re-queueing it in front.
                    let mut again = BytesMut::new();
                    encode_with(event_type, source, destination, &now, &mut again);
                    again.extend_from_slice(buf);
                    *buf = again;
                    return Some(interrupted);
                }
                (Some(interrupted), None) => return Some(interrupted),
                (None, Some(payload)) => {
                    return Some(Packet {
                        event_type,
                        source,
                        destination,
                        payload,
                    })
                }
                (None, None) => continue,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ty(c: u16, e: u16) -> EventType {
        EventType::new(c, e)
    }

    #[test]
    fn crc_is_x25() {
        assert_eq!(crc16(b"123456789"), 0x906E);
    }

    #[test]
    fn worked_examples_of_the_spec() {
        let mut out = BytesMut::new();
        encode(ty(2, 1), &[0, 2, 0, 0, 0, 0, 0], &mut out);
        assert_eq!(&out[..4], &[0x57, 0xf6, 0x00, 0x07]);
        let mut out = BytesMut::new();
        encode(ty(2, 2), &[0, 0, 0, 0x2a], &mut out);
        assert_eq!(&out[..4], &[0x8f, 0x06, 0x00, 0x04]);
        let mut out = BytesMut::new();
        encode(ty(2, 8), &[0x08, 0x2a], &mut out);
        assert_eq!(&out[..4], &[0x76, 0xd8, 0x00, 0x02]);
        let mut out = BytesMut::new();
        let mut ext = vec![0, 2, 0, 0, 0, 0];
        ext.extend_from_slice(b"COMPRESSION\0");
        encode(ty(2, 1), &ext, &mut out);
        assert_eq!(&out[..4], &[0x1e, 0x3f, 0x00, 0x12]);
    }

    fn parse_all(d: &mut Deframer, buf: &mut BytesMut) -> Vec<Packet> {
        std::iter::from_fn(|| d.next(buf)).collect()
    }

    #[test]
    fn large_payloads_are_split_and_joined() {
        for len in [0, 1, 0xFFFE, 0xFFFF, 0x10000, 3 * 0xFFFF, 200_000] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut buf = BytesMut::new();
            encode(ty(1, 24), &payload, &mut buf);
            encode(ty(3, 1), b"next", &mut buf);
            let packets = parse_all(&mut Deframer::new(), &mut buf);
            assert_eq!(packets.len(), 2, "len {len}");
            assert_eq!(packets[0].payload.len(), len);
            assert_eq!(&packets[0].payload[..], &payload[..]);
            assert_eq!(&packets[1].payload[..], b"next");
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn byte_by_byte_input_gives_the_same_packets() {
        let mut all = BytesMut::new();
        encode(ty(1, 14), &[7; 100_000], &mut all);
        encode(ty(2, 2), &[0, 0, 0, 1], &mut all);
        let mut d = Deframer::new();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for b in all.iter() {
            buf.put_u8(*b);
            got.extend(parse_all(&mut d, &mut buf));
        }
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].payload.len(), 100_000);
        assert_eq!(d.crc_errors, 0);
    }

    #[test]
    fn a_bad_crc_drops_bytes_until_the_next_header() {
        let mut buf = BytesMut::new();
        encode(ty(3, 1), b"one", &mut buf);
        let start = buf.len();
        encode(ty(3, 1), b"two", &mut buf);
        buf[start] ^= 0xff;
        encode(ty(3, 1), b"three", &mut buf);
        let mut d = Deframer::new();
        let packets = parse_all(&mut d, &mut buf);
        let payloads: Vec<_> = packets.iter().map(|p| &p.payload[..]).collect();
        assert_eq!(payloads, [&b"one"[..], &b"three"[..]]);
        assert_eq!(d.bytes_skipped, 16 + 3);
        assert_eq!(
            d.crc_errors, 1,
            "one corrupt header, however many bytes dropped"
        );
        assert_eq!(
            d.take_notices(),
            [Notice::BadCrc, Notice::Resynchronised { skipped: 19 }]
        );
    }

    #[test]
    fn an_interrupted_split_event_is_handed_on() {
        let mut buf = BytesMut::new();
        // A protobuf writer's exact 0xFFFF payload: no terminating packet.
        buf.put_slice(&header(0xFFFF, ty(1, 29), 0, 0));
        buf.put_slice(&[1; 0xFFFF]);
        encode(ty(3, 9), b"m", &mut buf);
        let mut d = Deframer::new();
        let packets = parse_all(&mut d, &mut buf);
        assert_eq!(packets.len(), 2);
        assert_eq!(packets[0].payload.len(), 0xFFFF);
        assert_eq!(&packets[1].payload[..], b"m");
    }

    #[test]
    fn a_lower_limit_drops_larger_events_and_keeps_smaller_ones() {
        let mut d = Deframer::with_max_event(100_000);
        let mut buf = BytesMut::new();
        encode(ty(1, 14), &[1; 100_000], &mut buf);
        encode(ty(1, 14), &[2; 100_001], &mut buf);
        encode(ty(1, 14), &[3; 10], &mut buf);
        let packets = parse_all(&mut d, &mut buf);
        let sizes: Vec<usize> = packets.iter().map(|p| p.payload.len()).collect();
        assert_eq!(sizes, [100_000, 10]);
        assert_eq!(
            d.take_notices(),
            [Notice::Oversized {
                event_type: ty(1, 14),
                limit: 100_000
            }]
        );
        // Below one packet's size too.
        let mut d = Deframer::with_max_event(1000);
        let mut buf = BytesMut::new();
        encode(ty(1, 14), &[1; 1001], &mut buf);
        encode(ty(1, 14), &[2; 1000], &mut buf);
        let packets = parse_all(&mut d, &mut buf);
        assert_eq!(packets.len(), 1);
        assert_eq!(packets[0].payload.len(), 1000);
        assert!(d.has_notices());
    }

    #[test]
    fn oversized_events_are_dropped_with_a_notice() {
        let mut d = Deframer::new();
        let chunk = [0u8; 0xFFFF];
        let mut dropped = false;
        for _ in 0..(MAX_EVENT_SIZE / 0xFFFF + 2) {
            let mut buf = BytesMut::new();
            buf.put_slice(&header(0xFFFF, ty(1, 1), 0, 0));
            buf.put_slice(&chunk);
            assert!(d.next(&mut buf).is_none());
            dropped |= d
                .take_notices()
                .iter()
                .any(|n| matches!(n, Notice::Oversized { .. }));
        }
        assert!(dropped);
        let mut buf = BytesMut::new();
        encode(ty(1, 1), b"end", &mut buf);
        encode(ty(3, 1), b"after", &mut buf);
        let packets = parse_all(&mut d, &mut buf);
        assert_eq!(packets.len(), 1);
        assert_eq!(&packets[0].payload[..], b"after");
    }
}
