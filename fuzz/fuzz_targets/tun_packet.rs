//! Fuzz target: the TUN datapath's packet parser and the R18 flow watcher
//! must never panic on any bytes.
//!
//! Input: a sequence of packets, each prefixed by a 2-octet big-endian
//! length; they are parsed as the OS stack's (or a peer's decapsulated)
//! packets and shown to the flow watcher in alternating directions.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let parsed = endpoint::fuzzing::tun_packets(data);
    assert!(parsed <= data.len() / 2);
});
