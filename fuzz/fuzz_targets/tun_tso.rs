//! Fuzz target: our segmentation of TUN reads (the offload datapath's cut
//! of a TSO/USO read into the packets the wire carries, `tso`) must never
//! panic on any bytes, write every segment as long as announced, and carry
//! the payload once over.
//!
//! Input: one read of the device: the 10-octet virtio-net header, then
//! the packet.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let segments = endpoint::fuzzing::tun_tso(data);
    assert!(segments <= u16::MAX as usize);
});
