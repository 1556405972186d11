//! Key export (`Ike::export_keys`): the keys handed out are the ones that
//! protect the SK payloads on the wire, in both directions.

use super::*;
use ike::crypto::SkCipher;

/// The IKE_AUTH request (`response == false`) or response as sent.
fn ike_auth(log: &[Transmit], response: bool) -> Vec<u8> {
    exchanges_of(log, exchange::IKE_AUTH)
        .into_iter()
        .find(|t| (t.data.get(19).copied().unwrap_or(0) & 0x20 != 0) == response)
        .expect("IKE_AUTH message in the log")
        .data
        .clone()
}

/// Open an unfragmented message whose first payload is SK (46): the AAD
/// is the IKE header and the SK payload header (RFC 7296 3.14, RFC 5282).
fn opens(c: &SkCipher, msg: &[u8]) -> bool {
    assert_eq!(msg[16], 46, "first payload is SK");
    c.open(&msg[..32], &msg[32..]).is_ok()
}

fn check(proposal: &str, seed: u64) {
    let props = IkeProposal::parse_list(proposal).unwrap();
    let mut a = peer_a();
    let mut b = peer_b();
    a.ike_proposals = props.clone();
    b.ike_proposals = props;
    let mut sim = Sim::new(seed, config(vec![]), config(vec![b]));
    let ia = sim.handshake(a);
    let ib = sim.responder_sa();
    let ka = sim.nodes[0].ike.export_keys(ia).expect("initiator's keys");
    let kb = sim.nodes[1].ike.export_keys(ib).expect("responder's keys");
    let info = sim.nodes[0].ike.ike_sa(ia).unwrap();
    assert_eq!((ka.spi_i, ka.spi_r), (info.spi_i, info.spi_r));
    assert_eq!(ka, kb, "{proposal}: both sides export the same keys");
    assert_eq!(ka.encr, info.suite.encr);
    assert_eq!(ka.integ, info.suite.integ);
    assert_eq!(ka.sk_ei.len(), ka.encr.keymat_len());
    assert_eq!(ka.integ_key_len(), ka.integ.map_or(0, |i| i.key_len()));
    assert_ne!(ka.sk_ei, ka.sk_er);
    // Debug never shows a key.
    let dbg = format!("{ka:?}");
    assert!(dbg.contains("redacted"));
    assert!(!dbg.contains(&hex::encode(&ka.sk_ei[..8])));
    let i2r = SkCipher::new(ka.encr, ka.integ, &ka.sk_ei, &ka.sk_ai).unwrap();
    let r2i = SkCipher::new(ka.encr, ka.integ, &ka.sk_er, &ka.sk_ar).unwrap();
    let req = ike_auth(&sim.log, false);
    let resp = ike_auth(&sim.log, true);
    assert!(
        opens(&i2r, &req),
        "{proposal}: SK_ei/SK_ai open IKE_AUTH request"
    );
    assert!(
        opens(&r2i, &resp),
        "{proposal}: SK_er/SK_ar open IKE_AUTH response"
    );
    assert!(
        !opens(&r2i, &req),
        "{proposal}: the other direction's keys do not"
    );
}

#[test]
fn exported_ike_keys_open_ike_auth_aead() {
    check("aes128gcm16-prfsha256-x25519", 71);
}

#[test]
fn exported_ike_keys_open_ike_auth_cbc() {
    check("aes256-sha384-prfsha384-ecp256", 72);
}

#[test]
fn no_keys_for_unknown_or_deleted_sa() {
    let mut sim = Sim::new(73, config(vec![]), config(vec![peer_b()]));
    assert!(sim.nodes[0].ike.export_keys(IkeSaId(999)).is_none());
    let ia = sim.handshake(peer_a());
    assert!(sim.nodes[0].ike.export_keys(ia).is_some());
    let now = sim.now;
    sim.nodes[0].ike.delete_ike(now, ia).unwrap();
    sim.run_for(Duration::from_secs(30));
    assert!(sim.nodes[0].ike.export_keys(ia).is_none());
}
