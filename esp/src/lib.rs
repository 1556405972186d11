//! latchkey's ESP datapath: RFC 4303 ESP with AES-GCM-16 (RFC 4106),
//! ChaCha20-Poly1305 (RFC 7634) and AES-CBC with HMAC-SHA-2 (RFC 3602,
//! RFC 4868), ESP in UDP (RFC 3948), and the inner IP packets a userspace
//! endpoint needs.
//!
//! # Invariants
//!
//! - **No I/O, no clock, no OS randomness.** The crate never opens a socket
//!   or reads the time; packets come in and go out as byte slices. AES-CBC
//!   IVs come from a per-SA IV key, not from a random source (see
//!   `cipher.rs` and [`Sad::encapsulate`]).
//! - **No allocation per packet.** [`Sad::encapsulate`] writes into a
//!   caller-supplied buffer, [`Sad::decapsulate`] decrypts in place. Replay
//!   windows and the CBC key schedules are built when an SA is installed;
//!   an AEAD key is expanded (one allocation) on the SA's first packet in
//!   its direction, so that idle SAs hold only the raw key.
//! - **Every inbound packet names its SA** (R17): [`Decapsulated`] carries
//!   the SPI and the caller's `tag` (the child SA id) of the SA that
//!   protected it.
//! - **No panics on input.** Packet parsing is bounds-checked throughout;
//!   the `esp_decap` fuzz target feeds arbitrary bytes to
//!   [`Sad::decapsulate`].
//! - **Keys are wiped.** Raw key bytes are copied only into `Zeroizing`
//!   buffers or self-wiping AES key schedules. ring's AEAD and HMAC keys
//!   cannot be wiped (ring offers no zeroize); that is the one exception.
//!
//! # Inbound order (RFC 4303 3.4)
//!
//! length checks, SPI lookup, replay pre-check, ICV / AEAD open, replay
//! window update (only after the ICV verified), padding check, next header
//! check, and in tunnel mode the traffic-selector check of the inner packet
//! (RFC 4301 5.2 step 4). Each failure is one [`DropReason`], counted.
//!
//! # Concurrency
//!
//! The packet paths ([`Sad::encapsulate`], [`Sad::decapsulate`]) take
//! `&self`: outbound sequence numbers and counters are atomics; each inbound
//! SA's replay window is read without a lock for the pre-check and takes
//! its own `Mutex` once per authentic packet for the update (which also
//! counts the packet), never during cryptography. Installing and removing
//! SAs takes `&mut self`, so the per-packet SPI lookup takes no lock.
#![forbid(unsafe_code)]

mod cipher;
mod error;
pub mod inner;
mod replay;
mod sad;
pub mod udp;

#[cfg(test)]
mod tests;

pub use error::{DropReason, EncapError, SadError};
pub use sad::{
    Decapsulated, SaConfig, SaInfo, SaStats, Sad, Sealer, SealerMut, Stats, NEXT_HEADER_DUMMY,
    NEXT_HEADER_IPV4, NEXT_HEADER_IPV6,
};

/// Octets of the ESP header (SPI and sequence number).
pub const ESP_HEADER_LEN: usize = 8;

/// Smallest anti-replay window, in packets; smaller requests are raised.
pub const MIN_REPLAY_WINDOW: u32 = 1024;

/// Largest anti-replay window accepted, in packets (128 KiB of bitmap).
pub const MAX_REPLAY_WINDOW: u32 = 1 << 20;
