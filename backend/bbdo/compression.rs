//! Centreon's compression layer (docs/bbdo.md §4.3): each flushed chunk is
//! `u32 BE chunk_len`, then `u32 BE uncompressed_len` and a zlib stream;
//! `chunk_len` counts both.
//!
//! A Centreon Broker 21.10 agrees on `COMPRESSION` and then sends plain
//! BBDO (its extension never applies, docs/bbdo.md §4.4), so agreeing is
//! not enough: the reader looks at the first bytes after the handshake
//! ([`sniff`]) and writes compressed only to a peer that was seen sending
//! compressed.

use std::io::Read;

use bytes::{Buf, BufMut, BytesMut};
use flate2::read::ZlibDecoder;
use flate2::write::ZlibEncoder;

use super::frame;

/// Largest chunk accepted by [`decompress`], compressed or not. Centreon
/// allows 100 000 000; a smaller cap bounds what one peer can make us hold,
/// and a real chunk (one flush of a few packets) is far smaller. Sessions
/// use [`chunk_limit`] of their event limit instead.
pub const MAX_CHUNK: usize = 16 * 1024 * 1024;

/// Room in a chunk besides its largest event: packet headers, and a few
/// small events flushed with it.
const CHUNK_SLACK: usize = 1024 * 1024;

/// The largest chunk, compressed or inflated, that a session accepts when
/// events may be `max_event` bytes: Centreon compresses what one write
/// flushes, about one event's packets.
pub fn chunk_limit(max_event: usize) -> usize {
    max_event.saturating_add(CHUNK_SLACK)
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CompressionError {
    #[error("compressed chunk of {size} bytes is larger than the {limit}-byte limit (limits.max_bbdo_event_bytes + 1 MiB)")]
    TooLarge { size: usize, limit: usize },
    #[error("compressed chunk of {0} bytes is too short")]
    TooShort(usize),
    #[error("corrupted compressed chunk: {0}")]
    Corrupt(String),
}

/// What the first bytes from the peer are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sniffed {
    NeedMore,
    Plain,
    Compressed,
}

/// Tells plain BBDO from compression chunks by the first bytes: a plain
/// stream starts with a header whose CRC holds, a compressed one with a
/// length, another length, and a zlib header (or an empty chunk).
pub fn sniff(buf: &[u8]) -> Sniffed {
    if buf.len() >= 8 && buf[..8] == [0, 0, 0, 4, 0, 0, 0, 0] {
        return Sniffed::Compressed;
    }
    match frame::header_is_valid(buf) {
        None => Sniffed::NeedMore,
        Some(true) => Sniffed::Plain,
        Some(false) => {
            let zlib =
                buf[8] & 0x0f == 8 && u16::from_be_bytes([buf[8], buf[9]]).is_multiple_of(31);
            if zlib {
                Sniffed::Compressed
            } else {
                // Neither: let the deframer resynchronise and count it.
                Sniffed::Plain
            }
        }
    }
}

/// Moves every whole chunk of `raw` into `plain`, decompressed, each at
/// most [`MAX_CHUNK`] bytes. For a peer's stream, prefer
/// [`decompress_chunk`]: many small chunks can each inflate to the limit.
pub fn decompress(raw: &mut BytesMut, plain: &mut BytesMut) -> Result<(), CompressionError> {
    while decompress_chunk(raw, plain, MAX_CHUNK)? {}
    Ok(())
}

/// Moves the first chunk of `raw` into `plain`, decompressed, if it is
/// whole; `false` when more bytes are needed. A chunk larger than `limit`,
/// compressed or inflated, is an error, and inflating stops one byte past
/// the size the chunk announces: a zlib bomb costs at most `limit` bytes.
pub fn decompress_chunk(
    raw: &mut BytesMut,
    plain: &mut BytesMut,
    limit: usize,
) -> Result<bool, CompressionError> {
    if raw.len() < 4 {
        return Ok(false);
    }
    let len = u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]) as usize;
    if len > limit {
        return Err(CompressionError::TooLarge { size: len, limit });
    }
    if len < 4 {
        return Err(CompressionError::TooShort(len));
    }
    if raw.len() < 4 + len {
        raw.reserve(4 + len - raw.len());
        return Ok(false);
    }
    let expected = u32::from_be_bytes([raw[4], raw[5], raw[6], raw[7]]) as usize;
    if expected > limit {
        return Err(CompressionError::TooLarge {
            size: expected,
            limit,
        });
    }
    raw.advance(4);
    let chunk = raw.split_to(len);
    if expected == 0 {
        return Ok(true);
    }
    let mut out = Vec::with_capacity(expected);
    ZlibDecoder::new(&chunk[4..])
        .take(expected as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| CompressionError::Corrupt(e.to_string()))?;
    if out.len() != expected {
        return Err(CompressionError::Corrupt(format!(
            "{} bytes announced, {} found",
            expected,
            if out.len() > expected {
                "more".to_owned()
            } else {
                out.len().to_string()
            }
        )));
    }
    plain.extend_from_slice(&out);
    Ok(true)
}

/// Appends one chunk holding `data`, compressed.
pub fn compress(data: &[u8], out: &mut BytesMut) {
    use std::io::Write;
    let mut body = Vec::with_capacity(4 + data.len() / 2);
    body.put_u32(data.len() as u32);
    if !data.is_empty() {
        let mut encoder = ZlibEncoder::new(body, flate2::Compression::default());
        // Writing into a Vec cannot fail.
        let _ = encoder.write_all(data);
        body = encoder.finish().unwrap_or_default();
    }
    out.put_u32(body.len() as u32);
    out.put_slice(&body);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventType;

    #[test]
    fn chunks_round_trip_and_are_told_from_plain_bbdo() {
        let mut packets = BytesMut::new();
        frame::encode(EventType::new(3, 1), b"hello", &mut packets);
        assert_eq!(sniff(&packets), Sniffed::Plain);
        let mut raw = BytesMut::new();
        compress(&packets, &mut raw);
        compress(&[], &mut raw);
        compress(&packets, &mut raw);
        assert_eq!(sniff(&raw), Sniffed::Compressed);
        let mut plain = BytesMut::new();
        // Byte by byte: chunks are taken only when whole.
        let all = raw.split();
        for b in all.iter() {
            raw.put_u8(*b);
            decompress(&mut raw, &mut plain).unwrap();
        }
        assert!(raw.is_empty());
        assert_eq!(plain.len(), 2 * packets.len());
    }

    #[test]
    fn bad_chunks_are_errors() {
        let mut raw = BytesMut::from(&[0xff, 0xff, 0xff, 0xff][..]);
        assert!(matches!(
            decompress(&mut raw, &mut BytesMut::new()),
            Err(CompressionError::TooLarge { .. })
        ));
        let mut raw = BytesMut::from(&[0, 0, 0, 6, 0, 0, 0, 9, 0x78, 0x9c][..]);
        assert!(matches!(
            decompress(&mut raw, &mut BytesMut::new()),
            Err(CompressionError::Corrupt(_))
        ));
    }

    #[test]
    fn zlib_bombs_inflate_no_further_than_the_limit() {
        let zeros = vec![0u8; 4 * 1024 * 1024];
        let mut bomb = BytesMut::new();
        compress(&zeros, &mut bomb);
        assert!(bomb.len() < 64 * 1024, "{}", bomb.len());
        // Announced honestly: refused before inflating.
        let mut raw = bomb.clone();
        let mut plain = BytesMut::new();
        assert_eq!(
            decompress_chunk(&mut raw, &mut plain, 1024 * 1024),
            Err(CompressionError::TooLarge {
                size: zeros.len(),
                limit: 1024 * 1024
            })
        );
        assert!(plain.is_empty());
        // Announcing 10 bytes: inflating stops at 11.
        let mut raw = bomb.clone();
        raw[4..8].copy_from_slice(&10u32.to_be_bytes());
        let error = decompress_chunk(&mut raw, &mut plain, 1024 * 1024).unwrap_err();
        assert_eq!(
            error,
            CompressionError::Corrupt("10 bytes announced, more found".into())
        );
        assert!(plain.is_empty());
        // Within the limit it is taken, one chunk per call.
        let mut raw = bomb.clone();
        raw.extend_from_slice(&bomb);
        assert_eq!(
            decompress_chunk(&mut raw, &mut plain, 8 * 1024 * 1024),
            Ok(true)
        );
        assert_eq!(plain.len(), zeros.len());
        assert_eq!(raw.len(), bomb.len());
    }
}
