//! Fuzz the IKEv2 codec: parsing any bytes never panics, and whatever
//! parses round-trips through emit (ike/src/wire/mod.rs invariants).
#![no_main]

use ike::wire::{emit_payload_chain, parse_payload_chain, Message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Message::parse(data) {
        let bytes = m.emit();
        let again = Message::parse(&bytes).expect("emitted message must parse");
        assert_eq!(again, m, "parse(emit(m)) != m");
        assert_eq!(again.emit(), bytes, "emit(parse(emit(m))) != emit(m)");
    }
    if let Some((&first, rest)) = data.split_first() {
        if let Ok(payloads) = parse_payload_chain(first, rest) {
            let (t, bytes) = emit_payload_chain(&payloads);
            let again = parse_payload_chain(t, &bytes).expect("emitted chain must parse");
            assert_eq!(again, payloads, "chain round trip");
            assert_eq!(emit_payload_chain(&again), (t, bytes));
        }
    }
});
