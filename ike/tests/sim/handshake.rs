//! IKE_SA_INIT and IKE_AUTH (RFC 7296 1.2, 2.6, 2.7, 2.15, 2.23), retransmission (2.1).

use super::*;

fn run_suite(encr: Encr, prf: Prf, dh: DhGroup, auth: AuthMethod, seed: u64) {
    let integ = if encr.is_aead() { "" } else { "-sha256" };
    let s = format!("{}{integ}-{}-{}", encr.name(), prf.name(), dh.name());
    let props = IkeProposal::parse_list(&s).unwrap();
    let mut a = peer_a();
    let mut b = peer_b();
    a.ike_proposals = props.clone();
    b.ike_proposals = props;
    if auth == AuthMethod::Null {
        for p in [&mut a, &mut b] {
            p.local_auth = AuthMethod::Null;
            p.remote_auth = AuthMethod::Null;
            p.local_id = Identity::Null;
            p.remote_id = None;
            p.psk = None;
        }
    }
    let mut sim = Sim::new(seed, config(vec![]), config(vec![b]));
    sim.handshake(a);
    let ea = &sim.established(0)[0];
    let eb = &sim.established(1)[0];
    assert_eq!(ea.suite.encr, encr, "{s}");
    assert_eq!(ea.suite.prf, prf);
    assert_eq!(ea.suite.dh, dh);
    assert_eq!(ea.suite, eb.suite);
    assert_eq!((ea.spi_i, ea.spi_r), (eb.spi_i, eb.spi_r));
    assert!(ea.initiator && !eb.initiator);
    assert_eq!(eb.peer_auth, auth);
    if auth == AuthMethod::Null {
        assert_eq!(eb.peer_id, Identity::Null);
        assert_eq!(ea.peer_id, Identity::Null);
    } else {
        assert_eq!(eb.peer_id, Identity::Fqdn("a.example".into()));
        assert_eq!(ea.peer_id, Identity::Fqdn("b.example".into()));
    }
    assert!(!ea.udp_encap && !ea.nat_local && !ea.nat_remote);
    assert_pair(&sim.children(0)[0], &sim.children(1)[0]);
}

#[test]
fn psk_every_cipher_and_prf() {
    let mut seed = 1;
    for encr in Encr::ALL {
        for prf in [Prf::HmacSha256, Prf::HmacSha384, Prf::HmacSha512] {
            seed += 1;
            run_suite(encr, prf, DhGroup::X25519, AuthMethod::Psk, seed);
        }
    }
}

#[test]
fn psk_every_group() {
    for (i, dh) in DhGroup::ALL.into_iter().enumerate() {
        run_suite(
            Encr::AesGcm16_256,
            Prf::HmacSha384,
            dh,
            AuthMethod::Psk,
            100 + i as u64,
        );
        run_suite(
            Encr::AesCbc128,
            Prf::HmacSha256,
            dh,
            AuthMethod::Psk,
            200 + i as u64,
        );
    }
}

#[test]
fn null_auth_suites() {
    let mut seed = 300;
    for encr in Encr::ALL {
        for dh in [DhGroup::X25519, DhGroup::Ecp256, DhGroup::Ecp384] {
            seed += 1;
            run_suite(encr, Prf::HmacSha256, dh, AuthMethod::Null, seed);
        }
    }
    run_suite(
        Encr::ChaCha20Poly1305,
        Prf::HmacSha512,
        DhGroup::Modp2048,
        AuthMethod::Null,
        399,
    );
}

#[test]
fn transport_mode_and_esp_integ() {
    let mut a = peer_a();
    let mut b = peer_b();
    for p in [&mut a, &mut b] {
        p.child.mode = Mode::Transport;
        p.child.esp_proposals = EspProposal::parse_list("aes256-sha384").unwrap();
    }
    let mut sim = Sim::new(7, config(vec![]), config(vec![b]));
    sim.handshake(a);
    let (ca, cb) = (&sim.children(0)[0], &sim.children(1)[0]);
    assert_eq!(ca.mode, Mode::Transport);
    assert_eq!(ca.integ, Some(pad::alg::Integ::HmacSha384_192));
    assert_eq!(ca.inbound_integ_key.len(), 48);
    assert_pair(ca, cb);
    assert_eq!(ca.replay_window, 64);
    // Redacted Debug.
    let dbg = format!("{ca:?}");
    assert!(dbg.contains("redacted"));
}

#[test]
fn wrong_psk_fails_on_both_sides() {
    let a = peer(
        "to-b",
        "a.example",
        Some("b.example"),
        AuthMethod::Psk,
        b"wrong",
    );
    let mut sim = Sim::new(8, config(vec![]), config(vec![peer_b()]));
    sim.initiate(a);
    sim.run_until(Duration::from_secs(30), |s| {
        !s.failures(0).is_empty() && !s.failures(1).is_empty()
    });
    assert!(
        matches!(sim.failures(0)[..], [Error::AuthenticationFailed { .. }]),
        "{:?}",
        sim.events(0)
    );
    assert!(
        matches!(sim.failures(1)[..], [Error::AuthenticationFailed { .. }]),
        "{:?}",
        sim.events(1)
    );
    assert_eq!(
        sim.failures(0)[0].notify_type(),
        Some(notify::AUTHENTICATION_FAILED)
    );
    assert!(sim.established(0).is_empty() && sim.established(1).is_empty());
    sim.run_for(Duration::from_secs(60));
    assert_eq!(sim.nodes[0].ike.ike_sa_count(), 0);
    assert_eq!(sim.nodes[1].ike.ike_sa_count(), 0);
}

#[test]
fn wrong_psk_under_loss_is_still_authentication_failed() {
    for seed in 90..96 {
        let a = peer(
            "to-b",
            "a.example",
            Some("b.example"),
            AuthMethod::Psk,
            b"wrong",
        );
        let mut sim = Sim::new(seed, config(vec![]), config(vec![peer_b()]));
        sim.faults = Faults {
            loss: 0.3,
            dup: 0.1,
            reorder: 0.1,
        };
        sim.initiate(a);
        sim.run_until(Duration::from_secs(60), |s| !s.failures(0).is_empty());
        let f = sim.failures(0);
        // Retransmitted IKE_AUTH requests get the cached refusal.
        assert!(
            matches!(f[..], [Error::AuthenticationFailed { .. }]),
            "seed {seed}: {f:?}"
        );
        sim.run_for(Duration::from_secs(60));
        assert_eq!(sim.nodes[1].ike.ike_sa_count(), 0, "seed {seed}");
        assert!(sim.nodes[1].ike.ike_sas().is_empty());
    }
}

#[test]
fn unknown_identity_fails() {
    let a = peer(
        "to-b",
        "mallory.example",
        Some("b.example"),
        AuthMethod::Psk,
        b"secret",
    );
    let mut sim = Sim::new(9, config(vec![]), config(vec![peer_b()]));
    sim.initiate(a);
    sim.run_until(Duration::from_secs(30), |s| !s.failures(0).is_empty());
    assert!(matches!(
        sim.failures(0)[..],
        [Error::AuthenticationFailed { .. }]
    ));
    match &sim.failures(1)[..] {
        [Error::AuthenticationFailed { detail }] => {
            assert!(detail.contains("mallory"), "{detail}")
        }
        x => panic!("{x:?}"),
    }
}

#[test]
fn no_proposal_chosen_names_both_sides() {
    let mut a = peer_a();
    a.ike_proposals = IkeProposal::parse_list("aes256-sha512-modp2048").unwrap();
    let mut sim = Sim::new(10, config(vec![]), config(vec![peer_b()]));
    sim.initiate(a);
    sim.run_until(Duration::from_secs(30), |s| !s.failures(0).is_empty());
    let ea = &sim.failures(0)[0];
    assert_eq!(ea.notify_type(), Some(notify::NO_PROPOSAL_CHOSEN));
    assert!(
        ea.to_string().contains("aes256-sha512-prfsha512-modp2048"),
        "{ea}"
    );
    // The responder's proposals come in the notify data.
    assert!(
        ea.to_string()
            .contains("theirs aes128gcm16-prfsha256-x25519"),
        "{ea}"
    );
    let eb = sim.failures(1)[0].to_string();
    assert!(eb.contains("aes256-sha512-prfsha512-modp2048"), "{eb}");
    assert!(eb.contains("aes128gcm16-prfsha256-x25519"), "{eb}");
    assert_eq!(sim.nodes[1].ike.ike_sa_count(), 0);
}

#[test]
fn invalid_ke_round_trip() {
    let mut a = peer_a();
    a.ike_proposals = IkeProposal::parse_list("aes128gcm16-prfsha256-x25519-ecp256").unwrap();
    let mut b = peer_b();
    b.ike_proposals = IkeProposal::parse_list("aes128gcm16-prfsha256-ecp256").unwrap();
    let mut sim = Sim::new(11, config(vec![]), config(vec![b]));
    sim.handshake(a);
    assert_eq!(sim.established(0)[0].suite.dh, DhGroup::Ecp256);
    let inits = exchanges_of(&sim.log, exchange::IKE_SA_INIT);
    // request(x25519), INVALID_KE, request(ecp256), response
    assert_eq!(inits.len(), 4);
    let m = Message::parse(&inits[1].data).unwrap();
    let n = ike::wire::find_notify(&m.payloads, notify::INVALID_KE_PAYLOAD).unwrap();
    assert_eq!(n.data, 19u16.to_be_bytes());
}

#[test]
fn invalid_ke_without_common_group_fails() {
    let mut a = peer_a();
    a.ike_proposals = IkeProposal::parse_list("aes128gcm16-prfsha256-x25519").unwrap();
    let mut b = peer_b();
    b.ike_proposals = IkeProposal::parse_list("aes128gcm16-prfsha256-ecp384").unwrap();
    let mut sim = Sim::new(12, config(vec![]), config(vec![b]));
    sim.initiate(a);
    sim.run_until(Duration::from_secs(30), |s| !s.failures(0).is_empty());
    assert!(matches!(
        sim.failures(0)[..],
        [Error::NoProposalChosen { .. }]
    ));
}

#[test]
fn cookie_round_trip() {
    let mut cb = config(vec![peer_b()]);
    cb.cookie_threshold = 0;
    let mut sim = Sim::new(13, config(vec![]), cb);
    sim.handshake(peer_a());
    let inits = exchanges_of(&sim.log, exchange::IKE_SA_INIT);
    assert_eq!(inits.len(), 4);
    let cookie = Message::parse(&inits[1].data).unwrap();
    let c = ike::wire::find_notify(&cookie.payloads, notify::COOKIE).unwrap();
    let retry = Message::parse(&inits[2].data).unwrap();
    match &retry.payloads[0] {
        ike::wire::Payload::Notify(n) => {
            assert_eq!(n.kind, notify::COOKIE);
            assert_eq!(n.data, c.data);
        }
        p => panic!("first payload {p:?}"),
    }
    assert_eq!(sim.nodes[1].ike.stats().cookies_sent, 1);
}

/// The stateless cookie path (`Ike::answer_with_cookie`) answers with the
/// same octets as the full path (`handle_datagram` + `poll_transmit`) of a
/// twin responder, leaves cookie-bearing retries, retransmissions and
/// everything else to the full path, and the initiator completes with
/// its cookie.
#[test]
fn stateless_cookie_answer_is_the_full_answer() {
    let mut cb = config(vec![peer_b()]);
    cb.cookie_threshold = 0;
    let now = Instant::now();
    let (la, lb) = (SocketAddr::new(A, IKE_PORT), SocketAddr::new(B, IKE_PORT));
    let mut init = Ike::new(config(vec![]), rng(40), Box::new(AcceptAll));
    let mut fast = Ike::new(cb.clone(), rng(41), Box::new(AcceptAll));
    let mut full = Ike::new(cb, rng(41), Box::new(AcceptAll));
    init.initiate(now, peer_a(), la, lb);
    let req = init.poll_transmit().unwrap();
    assert!(fast.cookies_on());

    let mut out = vec![0xaa; 3];
    assert!(fast.answer_with_cookie(now, la, &req.data, &mut out));
    full.handle_datagram(now, lb, la, &req.data);
    let t = full.poll_transmit().unwrap();
    assert_eq!(out, t.data, "byte for byte the full path's answer");
    assert!(
        fast.poll_transmit().is_none(),
        "nothing queued besides `out`"
    );
    assert_eq!(fast.stats().cookies_sent, 1);
    assert_eq!(fast.stats().datagrams_in, 1);
    assert_eq!(full.stats().cookies_sent, 1);
    assert_eq!(fast.ike_sas().len(), 0, "no state");

    // Another source address: another cookie.
    let other = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 9)), IKE_PORT);
    let mut out2 = Vec::new();
    assert!(fast.answer_with_cookie(now, other, &req.data, &mut out2));
    assert_ne!(out, out2);

    // Not for the fast path: damaged requests, responses, the cookie retry.
    let mut short = req.data.clone();
    short.pop();
    let mut resp = req.data.clone();
    resp[19] |= 0x20;
    let mut scratch = Vec::new();
    for bad in [&short[..], &resp[..], &req.data[..27], &[][..]] {
        assert!(!fast.answer_with_cookie(now, la, bad, &mut scratch));
    }
    assert!(scratch.is_empty());
    init.handle_datagram(now, la, lb, &out);
    let retry = init.poll_transmit().unwrap();
    assert!(!fast.answer_with_cookie(now, la, &retry.data, &mut scratch));
    fast.handle_datagram(now, lb, la, &retry.data);
    let answer = fast.poll_transmit().unwrap();
    let m = Message::parse(&answer.data).unwrap();
    assert!(
        matches!(m.payloads[0], ike::wire::Payload::Sa(_)),
        "full answer"
    );
    // Its retransmission (now a half-open SA's) is not answered statelessly.
    assert!(!fast.answer_with_cookie(now, la, &retry.data, &mut scratch));
    assert!(scratch.is_empty());
}

#[test]
fn nat_t_move_with_force_encap() {
    let mut a = peer_a();
    a.force_encap = true;
    let mut sim = Sim::new(14, config(vec![]), config(vec![peer_b()]));
    sim.handshake(a);
    let auths = exchanges_of(&sim.log, exchange::IKE_AUTH);
    assert_eq!(auths[0].local.port(), NATT_PORT);
    assert_eq!(auths[0].remote.port(), NATT_PORT);
    assert_eq!(auths[1].local.port(), NATT_PORT);
    let (ea, eb) = (&sim.established(0)[0], &sim.established(1)[0]);
    assert!(ea.udp_encap && eb.udp_encap);
    // B thinks A is behind a NAT (the fake source hash).
    assert!(eb.nat_remote && !eb.nat_local);
    let (ca, cb) = (&sim.children(0)[0], &sim.children(1)[0]);
    assert!(ca.udp_encap && cb.udp_encap);
    assert_eq!(ca.remote.port(), NATT_PORT);
    assert_eq!(cb.remote.port(), NATT_PORT);
    assert_eq!(cb.local.port(), NATT_PORT);
}

#[test]
fn nat_t_forced_by_the_responder() {
    let mut b = peer_b();
    b.force_encap = true;
    let mut sim = Sim::new(17, config(vec![]), config(vec![b]));
    sim.handshake(peer_a());
    let auths = exchanges_of(&sim.log, exchange::IKE_AUTH);
    assert_eq!(auths[0].remote.port(), NATT_PORT);
    let (ea, eb) = (&sim.established(0)[0], &sim.established(1)[0]);
    assert!(ea.nat_remote && !ea.nat_local);
    assert!(ea.udp_encap && eb.udp_encap);
    assert!(sim.children(0)[0].udp_encap && sim.children(1)[0].udp_encap);
}

#[test]
fn lossy_network_still_completes() {
    for seed in 20..26 {
        let mut sim = Sim::new(seed, config(vec![]), config(vec![peer_b()]));
        sim.faults = Faults {
            loss: 0.3,
            dup: 0.2,
            reorder: 0.3,
        };
        sim.handshake(peer_a());
        assert_pair(&sim.children(0)[0], &sim.children(1)[0]);
        assert_eq!(sim.established(1).len(), 1, "seed {seed}");
        assert_eq!(sim.children(1).len(), 1, "seed {seed}");
        assert!(sim.elapsed() < Duration::from_secs(30));
        // Let retransmissions settle: nothing breaks.
        sim.run_for(Duration::from_secs(20));
        assert!(sim.failures(0).is_empty() && sim.failures(1).is_empty());
    }
}

#[test]
fn silent_peer_times_out() {
    let mut sim = Sim::new(15, config(vec![]), config(vec![peer_b()]));
    sim.mute[1] = true;
    sim.initiate(peer_a());
    sim.run_until(Duration::from_secs(120), |s| !s.failures(0).is_empty());
    assert_eq!(sim.failures(0), vec![Error::Timeout]);
    // 5 tries: 0.5 + 1 + 2 + 4 + 8 s.
    assert_eq!(sim.elapsed(), Duration::from_millis(15_500));
    assert_eq!(sim.nodes[0].ike.stats().retransmits, 4);
    assert_eq!(sim.nodes[0].ike.ike_sa_count(), 0);
    assert_eq!(sim.nodes[0].ike.poll_timeout(), None);
    // B expires its half-open SA.
    sim.run_for(Duration::from_secs(60));
    assert_eq!(sim.nodes[1].ike.ike_sa_count(), 0);
}

#[test]
fn duplicate_requests_answered_from_cache() {
    let mut sim = Sim::new(16, config(vec![]), config(vec![peer_b()]));
    sim.faults.dup = 1.0;
    sim.handshake(peer_a());
    sim.run_for(Duration::from_secs(5));
    let st = sim.nodes[1].ike.stats();
    assert!(st.cached_responses >= 2, "{st:?}");
    assert_eq!(sim.established(1).len(), 1);
    // Duplicated responses are dropped at A.
    assert!(
        sim.nodes[0]
            .ike
            .stats()
            .drops(DropReason::UnexpectedResponse)
            >= 1
    );
}

/// RFC 7296 2.23: the NAT in front of A changes its mapping; B follows
/// the authenticated messages to the new address.
#[test]
fn nat_mapping_change_is_followed() {
    let mut a = peer_a();
    a.force_encap = true;
    let mut sim = Sim::new(18, config(vec![]), config(vec![peer_b()]));
    let id = sim.handshake(a);
    let rb = sim.responder_sa();
    sim.nat_a = Some((NATT_PORT, 40000));
    sim.nodes[0].ike.liveness_check(sim.now, id).unwrap();
    sim.run_for(Duration::from_secs(2));
    let moved = sim.events(1).iter().find_map(|e| match e {
        Event::PeerAddressChanged { sa, remote, .. } => Some((*sa, *remote)),
        _ => None,
    });
    assert_eq!(moved, Some((rb, SocketAddr::new(A, 40000))));
    assert_eq!(sim.nodes[1].ike.ike_sa(rb).unwrap().remote.port(), 40000);
    assert_eq!(sim.nodes[1].ike.child_sas(rb)[0].remote.port(), 40000);
    // And B's own requests reach A through the new mapping.
    sim.nodes[1].ike.liveness_check(sim.now, rb).unwrap();
    sim.run_for(Duration::from_secs(2));
    assert!(sim.failures(1).is_empty());
    assert_eq!(sim.nodes[1].ike.stats().retransmits, 0);
}
