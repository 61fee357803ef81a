//! One event's payload, for every type of the catalogue: the BBDO 2 mapped
//! and BBDO 3 protobuf decoders must return an event or an error, and what
//! they return must encode and decode again.

#![no_main]

use brokerstream::bbdo;
use brokerstream::event::catalogue::EVENTS;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&index, payload)) = data.split_first() else {
        return;
    };
    let def = &EVENTS[usize::from(index) % EVENTS.len()];
    let ty = def.event_type();
    if let Ok(event) = bbdo::decode(ty, payload) {
        let again = bbdo::encode_payload(&event);
        // Not necessarily the same event: a double read from long text
        // comes back at `%f` precision.
        bbdo::decode(ty, &again).expect("re-encoded event decodes");
    }
});
