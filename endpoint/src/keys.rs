//! Key export for protocol analyzers (opt-in: [`crate::EndpointConfig::key_export`]).
//!
//! When on, the driver keeps a copy of the keys of every IKE SA (from its
//! establishment, and again after each IKE rekey) and of both ESP SAs of
//! every child SA, with the outer addresses its packets carry, and forgets
//! them when the SAs go. [`crate::Endpoint::session_keys`] hands out a
//! snapshot; `latchkey keys --wireshark` turns it into Wireshark's
//! `ikev2_decryption_table` and `esp_sa` tables.
//!
//! Everything here is SECRET: whoever holds these keys reads and can forge
//! the traffic. Keys are zeroized on drop and never printed by `Debug`.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;

use ike::crypto::Secret;
use ike::{ChildSaId, IkeSaId};
use pad::alg::{Encr, Integ};

pub use ike::IkeSaKeys;

/// The keys of the SAs up at one moment. SECRET; zeroized on drop.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SessionKeys {
    /// IKE SAs (those whose keys exist: established, or rekeyed into).
    pub ike_sas: Vec<IkeSaKeyRecord>,
    /// ESP SAs: two per child SA (inbound and outbound).
    pub esp_sas: Vec<EspSaKeys>,
}

impl fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionKeys")
            .field("ike_sas", &self.ike_sas)
            .field("esp_sas", &self.esp_sas)
            .finish()
    }
}

/// One IKE SA's keys and where it runs.
#[derive(Clone, PartialEq, Eq)]
pub struct IkeSaKeyRecord {
    /// The IKE SA.
    pub ike_sa: IkeSaId,
    /// Our outer address (may be unspecified, `0.0.0.0`, when the endpoint
    /// was bound to the wildcard address).
    pub local: SocketAddr,
    /// The peer's outer address.
    pub remote: SocketAddr,
    /// SPIs, SK_e*, SK_a*, algorithms.
    pub keys: IkeSaKeys,
}

impl fmt::Debug for IkeSaKeyRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IkeSaKeyRecord")
            .field("ike_sa", &self.ike_sa)
            .field("local", &self.local)
            .field("remote", &self.remote)
            .field("keys", &self.keys)
            .finish()
    }
}

/// One ESP SA (one direction of a child SA): how to find its packets (the
/// outer addresses as the packets carry them, and the SPI) and its keys.
#[derive(Clone, PartialEq, Eq)]
pub struct EspSaKeys {
    /// The IKE SA the child SA belongs to (now: IKE rekeys move it).
    pub ike_sa: IkeSaId,
    /// The child SA.
    pub child: ChildSaId,
    /// Inbound (the peer sends, we receive) or outbound.
    pub inbound: bool,
    /// The SPI in the packets' ESP header.
    pub spi: u32,
    /// Outer source address of the packets (ours for outbound; may be
    /// unspecified when bound to the wildcard address).
    pub src: SocketAddr,
    /// Outer destination address of the packets.
    pub dst: SocketAddr,
    /// ESP in UDP (RFC 3948).
    pub udp_encap: bool,
    /// Cipher.
    pub encr: Encr,
    /// Integrity algorithm (`None` for AEADs).
    pub integ: Option<Integ>,
    /// Cipher key; for AEADs followed by the 4-octet salt (RFC 4106 8.1).
    pub encr_key: Secret,
    /// Integrity key (empty for AEADs).
    pub integ_key: Secret,
}

impl fmt::Debug for EspSaKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EspSaKeys")
            .field("ike_sa", &self.ike_sa)
            .field("child", &self.child)
            .field("inbound", &self.inbound)
            .field("spi", &format_args!("{:08x}", self.spi))
            .field("src", &self.src)
            .field("dst", &self.dst)
            .field("udp_encap", &self.udp_encap)
            .field("encr", &self.encr)
            .field("integ", &self.integ)
            .field("keys", &"<redacted>")
            .finish()
    }
}

/// What the driver keeps while key export is on.
#[derive(Default)]
pub(crate) struct KeyStore {
    ike: BTreeMap<IkeSaId, IkeSaKeyRecord>,
    /// (child, inbound) -> keys.
    esp: BTreeMap<(ChildSaId, bool), EspSaKeys>,
}

impl KeyStore {
    /// An IKE SA came up (or was rekeyed into, as `id`).
    pub(crate) fn ike_up(&mut self, ike: &ike::Ike, id: IkeSaId) {
        let (Some(info), Some(keys)) = (ike.ike_sa(id), ike.export_keys(id)) else {
            return;
        };
        self.ike.insert(
            id,
            IkeSaKeyRecord {
                ike_sa: id,
                local: info.local,
                remote: info.remote,
                keys,
            },
        );
    }

    /// The IKE SA `old` was rekeyed into `new`, which holds its child SAs.
    pub(crate) fn ike_rekeyed(&mut self, ike: &ike::Ike, old: IkeSaId, new: IkeSaId) {
        self.ike.remove(&old);
        self.ike_up(ike, new);
        for e in self.esp.values_mut() {
            if e.ike_sa == old {
                e.ike_sa = new;
            }
        }
    }

    /// The IKE SA is gone (deleted or failed), and its child SAs with it.
    pub(crate) fn ike_gone(&mut self, sa: IkeSaId) {
        self.ike.remove(&sa);
        self.esp.retain(|_, e| e.ike_sa != sa);
    }

    /// The peer's outer address changed (RFC 7296 2.23).
    pub(crate) fn moved(&mut self, sa: IkeSaId, local: SocketAddr, remote: SocketAddr) {
        if let Some(r) = self.ike.get_mut(&sa) {
            r.local = local;
            r.remote = remote;
        }
        for e in self.esp.values_mut().filter(|e| e.ike_sa == sa) {
            (e.src, e.dst) = if e.inbound {
                (remote, local)
            } else {
                (local, remote)
            };
        }
    }

    /// A child SA was installed: its two ESP SAs.
    pub(crate) fn child_up(&mut self, info: &ike::ChildSaInfo) {
        for inbound in [true, false] {
            let (spi, src, dst, encr_key, integ_key) = if inbound {
                (
                    info.inbound_spi,
                    info.remote,
                    info.local,
                    &info.inbound_encr_key,
                    &info.inbound_integ_key,
                )
            } else {
                (
                    info.outbound_spi,
                    info.local,
                    info.remote,
                    &info.outbound_encr_key,
                    &info.outbound_integ_key,
                )
            };
            self.esp.insert(
                (info.id, inbound),
                EspSaKeys {
                    ike_sa: info.ike_sa,
                    child: info.id,
                    inbound,
                    spi,
                    src,
                    dst,
                    udp_encap: info.udp_encap,
                    encr: info.encr,
                    integ: info.integ,
                    encr_key: encr_key.clone(),
                    integ_key: integ_key.clone(),
                },
            );
        }
    }

    /// A child SA is gone.
    pub(crate) fn child_gone(&mut self, child: ChildSaId) {
        self.esp.remove(&(child, true));
        self.esp.remove(&(child, false));
    }

    /// Forget everything (key manager restart).
    pub(crate) fn clear(&mut self) {
        self.ike.clear();
        self.esp.clear();
    }

    pub(crate) fn snapshot(&self) -> SessionKeys {
        SessionKeys {
            ike_sas: self.ike.values().cloned().collect(),
            esp_sas: self.esp.values().cloned().collect(),
        }
    }
}
