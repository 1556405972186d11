//! Fuzz target: our GRO for TUN writes (the offload datapath's planning of
//! a UDP GRO read's decapsulated packets into merged writes) must never
//! panic on any bytes, and must write every packet.
//!
//! Input: a sequence of packets, each prefixed by a 2-octet big-endian
//! length, as they would lie in one read after decryption.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let packets = endpoint::fuzzing::tun_gro(data);
    assert!(packets <= data.len() / 2);
});
