//! Fuzz target: ESP decapsulation must never panic.
//!
//! The first input byte selects a mode and an SA:
//! - `0x00..=0x7f`: the rest is an ESP packet; the selected inbound SA's SPI
//!   is spliced over its first four octets (one SA per suite, fixed keys),
//!   so the fuzzer gets past the SPI lookup into the length, replay and
//!   ICV checks. One selector value leaves the SPI as is.
//! - `0x80..=0xff`: the rest is an inner payload; it is encapsulated on a
//!   looped SA (tunnel or transport, next header taken from the input) and
//!   decapsulated again, which drives the code behind the ICV: trailer,
//!   next header, inner IPv4/IPv6 parsing and traffic selectors. The same
//!   bytes also go to `inner::parse` and `udp::classify`.
//!
//! Every packet goes through both packet paths: the `&Sad` one
//! (`decapsulate`, `encapsulate`) on a SAD shared by all inputs, and the
//! owner's (`decapsulate_mut`, `sealer_mut`) on a SAD of this thread.
#![no_main]

use std::cell::RefCell;
use std::sync::OnceLock;

use esp::{SaConfig, Sad};
use libfuzzer_sys::fuzz_target;
use pad::alg::{Encr, Integ};
use pad::{Mode, TrafficSelector};

const SUITES: [(Encr, Option<Integ>); 6] = [
    (Encr::AesGcm16_128, None),
    (Encr::AesGcm16_256, None),
    (Encr::ChaCha20Poly1305, None),
    (Encr::AesCbc128, Some(Integ::HmacSha256_128)),
    (Encr::AesCbc256, Some(Integ::HmacSha384_192)),
    (Encr::AesCbc256, Some(Integ::HmacSha512_256)),
];
const LOOP_TUNNEL: u32 = 0x200;
const LOOP_TRANSPORT: u32 = 0x201;

fn ts(s: &str) -> TrafficSelector {
    s.parse().expect("selector")
}

fn cfg<'a>(spi: u32, i: usize, ek: &'a [u8], ik: &'a [u8], mode: Mode) -> SaConfig<'a> {
    let (encr, integ) = SUITES[i];
    SaConfig {
        spi,
        encr,
        integ,
        encr_key: ek,
        integ_key: ik,
        esn: i % 2 == 1,
        replay_window: 1024,
        mode,
        local_ts: vec![ts("10.0.0.0/8"), ts("2001:db8::/32[udp]")],
        remote_ts: vec![ts("0.0.0.0/0[tcp/80-443]"), ts("::/0")],
        tag: spi.into(),
    }
}

fn keys(i: usize) -> (Vec<u8>, Vec<u8>) {
    let (encr, integ) = SUITES[i];
    let ek = (0..encr.keymat_len()).map(|k| (k * 7 + i) as u8).collect();
    let ik = integ
        .map(|x| (0..x.key_len()).map(|k| (k * 13 + i) as u8).collect())
        .unwrap_or_default();
    (ek, ik)
}

fn sad() -> &'static Sad {
    static SAD: OnceLock<Sad> = OnceLock::new();
    SAD.get_or_init(build)
}

thread_local! {
    /// The owner's SAD (`&mut` paths).
    static OWNED: RefCell<Sad> = RefCell::new(build());
}

fn build() -> Sad {
    let mut sad = Sad::new();
    for i in 0..SUITES.len() {
        let (ek, ik) = keys(i);
        let mode = if i % 2 == 0 {
            Mode::Tunnel
        } else {
            Mode::Transport
        };
        sad.add_inbound(cfg(0x100 + i as u32, i, &ek, &ik, mode))
            .expect("inbound SA");
    }
    for (spi, mode) in [
        (LOOP_TUNNEL, Mode::Tunnel),
        (LOOP_TRANSPORT, Mode::Transport),
    ] {
        let (ek, ik) = keys(0);
        sad.add_outbound(cfg(spi, 0, &ek, &ik, mode))
            .expect("outbound SA");
        sad.add_inbound(cfg(spi, 0, &ek, &ik, mode))
            .expect("inbound SA");
    }
    sad
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let sad = sad();
    if sel < 0x80 {
        let mut pkt = rest.to_vec();
        let which = usize::from(sel) % (SUITES.len() + 1);
        if which < SUITES.len() && pkt.len() >= 4 {
            pkt[..4].copy_from_slice(&(0x100 + which as u32).to_be_bytes());
        }
        let mut copy = pkt.clone();
        let _ = sad.decapsulate(&mut pkt);
        OWNED.with_borrow_mut(|owned| {
            let _ = owned.decapsulate_mut(&mut copy);
        });
    } else {
        let _ = esp::inner::parse(rest);
        let _ = esp::udp::classify(rest);
        let spi = if sel & 1 == 0 {
            LOOP_TUNNEL
        } else {
            LOOP_TRANSPORT
        };
        let nh = match sel & 0x0e {
            0 => 4,
            2 => 41,
            4 => 59,
            _ => rest.first().copied().unwrap_or(17),
        };
        let Ok(len) = sad.encapsulated_len(spi, rest.len()) else {
            return;
        };
        let mut out = vec![0u8; len];
        if let Ok(n) = sad.encapsulate(spi, nh, rest, &mut out) {
            if let Ok(d) = sad.decapsulate(&mut out[..n]) {
                assert_eq!(d.spi, spi);
                assert!(d.payload.len() <= rest.len());
            }
        }
        OWNED.with_borrow_mut(|owned| {
            let Ok(mut sealer) = owned.sealer_mut(spi) else {
                return;
            };
            if let Ok(n) = sealer.encapsulate(nh, rest, &mut out) {
                if let Ok(d) = owned.decapsulate_mut(&mut out[..n]) {
                    assert_eq!(d.spi, spi);
                    assert!(d.payload.len() <= rest.len());
                }
            }
        });
    }
});
