//! The pin store (issue 4 item 3, beyond RFC 5386): like SSH's
//! `known_hosts`, a peer address first seen with a key is expected with
//! that key afterwards. A pure structure: the state machine consults and
//! fills it for peers whose [`crate::Credentials::pinning`] is set; the
//! driver persists it ([`PinStore::to_text`] / [`PinStore::from_text`])
//! when [`crate::Event::PeerKeyPinned`] says it changed.

use std::collections::BTreeMap;
use std::net::IpAddr;

use certs::SpkiFingerprint;

/// What to do when a pinned address presents another key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum PinPolicy {
    /// Refuse the peer (AUTHENTICATION_FAILED, detail `pin-mismatch`).
    #[default]
    Refuse,
    /// Accept it with a warning (logged, and
    /// [`crate::Event::PeerKeyChanged`]); the old pin stays.
    Warn,
}

/// The result of checking a key against the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinCheck {
    /// The address has no pin.
    Unknown,
    /// The address is pinned to this key.
    Match,
    /// The address is pinned to another key.
    Changed {
        /// The pinned key.
        pinned: SpkiFingerprint,
    },
}

/// Why a pin store text could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("pin store line {line}: {reason}")]
pub struct PinParseError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub reason: &'static str,
}

/// Peer address -> SHA-256 of the SubjectPublicKeyInfo it authenticated
/// with. Bounded by [`PinStore::max_entries`]: when full, new addresses
/// are not learned (and a warning is logged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinStore {
    pins: BTreeMap<IpAddr, SpkiFingerprint>,
    /// What a changed key leads to.
    pub policy: PinPolicy,
    /// Most addresses kept.
    pub max_entries: usize,
}

impl Default for PinStore {
    fn default() -> Self {
        Self::new(PinPolicy::default())
    }
}

impl PinStore {
    /// An empty store.
    pub fn new(policy: PinPolicy) -> Self {
        Self {
            pins: BTreeMap::new(),
            policy,
            max_entries: 65_536,
        }
    }

    /// Check `key` for `addr` (pure).
    pub fn check(&self, addr: IpAddr, key: &SpkiFingerprint) -> PinCheck {
        match self.pins.get(&addr) {
            None => PinCheck::Unknown,
            Some(p) if p == key => PinCheck::Match,
            Some(p) => PinCheck::Changed { pinned: *p },
        }
    }

    /// Pin `addr` to `key` (replacing any pin). False when the store is
    /// full and `addr` was not in it.
    pub fn pin(&mut self, addr: IpAddr, key: SpkiFingerprint) -> bool {
        if !self.pins.contains_key(&addr) && self.pins.len() >= self.max_entries {
            return false;
        }
        self.pins.insert(addr, key);
        true
    }

    /// Forget `addr`'s pin (as `ssh-keygen -R`).
    pub fn remove(&mut self, addr: IpAddr) -> Option<SpkiFingerprint> {
        self.pins.remove(&addr)
    }

    /// The pin of `addr`.
    pub fn get(&self, addr: IpAddr) -> Option<&SpkiFingerprint> {
        self.pins.get(&addr)
    }

    /// Every pin, by address.
    pub fn iter(&self) -> impl Iterator<Item = (&IpAddr, &SpkiFingerprint)> {
        self.pins.iter()
    }

    /// Number of pins.
    pub fn len(&self) -> usize {
        self.pins.len()
    }

    /// No pins.
    pub fn is_empty(&self) -> bool {
        self.pins.is_empty()
    }

    /// The store as text: one `ADDRESS sha256:HEX` line per pin.
    pub fn to_text(&self) -> String {
        self.pins
            .iter()
            .map(|(a, k)| format!("{a} sha256:{k}\n"))
            .collect()
    }

    /// Read [`PinStore::to_text`]'s format (blank lines and `#` comments
    /// allowed) into a store with `policy`.
    pub fn from_text(text: &str, policy: PinPolicy) -> Result<Self, PinParseError> {
        let mut s = Self::new(policy);
        for (i, line) in text.lines().enumerate() {
            let err = |reason| PinParseError {
                line: i + 1,
                reason,
            };
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut it = line.split_whitespace();
            let (Some(addr), Some(key), None) = (it.next(), it.next(), it.next()) else {
                return Err(err("expected ADDRESS sha256:HEX"));
            };
            let addr: IpAddr = addr.parse().map_err(|_| err("bad address"))?;
            let hex = key
                .strip_prefix("sha256:")
                .ok_or(err("key lacks sha256:"))?;
            let mut fp = [0u8; 32];
            if hex.len() != 64 || !hex.is_ascii() {
                return Err(err("key is not 64 hex digits"));
            }
            for (o, pair) in fp.iter_mut().zip(hex.as_bytes().chunks_exact(2)) {
                let p = core::str::from_utf8(pair).map_err(|_| err("bad hex"))?;
                *o = u8::from_str_radix(p, 16).map_err(|_| err("bad hex"))?;
            }
            if !s.pin(addr, SpkiFingerprint(fp)) {
                return Err(err("too many pins"));
            }
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_hosts_semantics_and_text_round_trip() {
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "2001:db8::1".parse().unwrap();
        let k1 = SpkiFingerprint([1; 32]);
        let k2 = SpkiFingerprint([2; 32]);
        let mut s = PinStore::default();
        assert_eq!(s.check(a, &k1), PinCheck::Unknown);
        assert!(s.pin(a, k1));
        assert!(s.pin(b, k2));
        assert_eq!(s.check(a, &k1), PinCheck::Match);
        assert_eq!(s.check(a, &k2), PinCheck::Changed { pinned: k1 });
        let text = s.to_text();
        let back = PinStore::from_text(&format!("# pins\n\n{text}"), PinPolicy::Refuse).unwrap();
        assert_eq!(back, s);
        assert_eq!(s.remove(a), Some(k1));
        assert_eq!(s.len(), 1);
        assert_eq!(
            PinStore::from_text("192.0.2.1 md5:00", PinPolicy::Warn)
                .unwrap_err()
                .line,
            1
        );
        assert!(PinStore::from_text("x sha256:00", PinPolicy::Warn).is_err());
        let mut full = PinStore::new(PinPolicy::Warn);
        full.max_entries = 1;
        assert!(full.pin(a, k1));
        assert!(!full.pin(b, k1));
        assert!(full.pin(a, k2));
    }
}
