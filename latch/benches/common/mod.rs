//! What the latch benches share: the policy their tables run under.

/// One BTNS peer entry for all of 10.0.0.0/8 and a PROTECT policy: every
/// latch the benches create is allowed, and every SA they add fits it.
pub(crate) const POLICY: &str = r#"
[[peer]]
name = "btns"
id = "any"
auth = ["raw_public_key"]
child_sa = "10.0.0.0/8"
btns = true

[[policy]]
name = "default"
action = "protect"
"#;

/// Child SA `id` of a BTNS peer whose key has fingerprint `fingerprint`:
/// transport mode, AES-128-GCM, from our 10.0.0.1 to `remote`.
pub(crate) fn btns_sa(
    id: u64,
    fingerprint: [u8; 32],
    remote: pad::TrafficSelector,
    spis: (u32, u32),
) -> latch::ChildSaDescriptor {
    let peer = latch::PeerIdentity {
        asserted: pad::Identity::Null,
        authenticated: None,
        auth: latch::PeerAuth::Btns {
            fingerprint: pad::KeyFingerprint(fingerprint),
            key_der: vec![],
        },
        pad_entry: "btns".into(),
    };
    let local = pad::TrafficSelector::host("10.0.0.1".parse().expect("an address"));
    latch::ChildSaDescriptor {
        id,
        peer,
        protection: pad::SaQop {
            mode: pad::Mode::Transport,
            encr: Some(pad::alg::Encr::AesGcm16_128),
            integ: None,
            esn: false,
            replay_window: 64,
        },
        local_ts: vec![local].into(),
        remote_ts: vec![remote].into(),
        nat: latch::NatInfo::default(),
        spi_in: spis.0,
        spi_out: spis.1,
    }
}
