//! The BBDO byte stream as a peer could send it: framing, resynchronisation,
//! reassembly, compression chunks and payload decoding must never panic nor
//! hold more than their caps, however the bytes are cut into reads.

#![no_main]

use brokerstream::bbdo::{self, compression, frame::Deframer};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&step, data)) = data.split_first() else {
        return;
    };
    // Feed the bytes in reads of 1 to 256 bytes, as a socket would.
    let step = usize::from(step) + 1;
    let mut deframer = Deframer::new();
    let mut buf = BytesMut::new();
    for read in data.chunks(step) {
        buf.extend_from_slice(read);
        while let Some(packet) = deframer.next(&mut buf) {
            assert!(packet.payload.len() <= bbdo::frame::MAX_EVENT_SIZE);
            if let Ok(event) = bbdo::decode(packet.event_type, &packet.payload) {
                // What decodes must encode and decode again.
                let payload = bbdo::encode_payload(&event);
                bbdo::decode(packet.event_type, &payload).expect("re-encoded event decodes");
            }
        }
        assert!(buf.len() < bbdo::frame::HEADER_SIZE + bbdo::frame::MAX_PACKET_PAYLOAD + step);
    }
    // The same bytes as compression chunks.
    let mut raw = BytesMut::from(data);
    let mut plain = BytesMut::new();
    if compression::decompress(&mut raw, &mut plain).is_ok() {
        assert!(plain.len() <= data.len().saturating_mul(1100).max(compression::MAX_CHUNK));
    }
});
