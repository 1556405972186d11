//! IKE_SA_INIT and IKE_AUTH, both roles (RFC 7296 1.2, 2.6, 2.7, 2.15,
//! 2.21.2, 2.23).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pad::alg::DhGroup;
use pad::{AuthMethod, Identity};

use crate::api::{DropReason, Error, Event, PeerConfig, PeerCredential};
use crate::crypto::{self, CookieJar, IkeKeys, IkeSuite, SkCipher};
use crate::msg::{self, find_notify, notifies, notify};
use crate::sa::{
    later, AuthData, ChildCfg, ChildReq, Ctx, IkeSa, InitSent, Keyed, PendingKind, Phase, State,
};
use crate::select::{self, Refusal};
use crate::sig;
use crate::wire::{exchange, flags, notify as n, Header, Message, Payload};

/// How long a responder keeps a half-open IKE SA.
const HALF_OPEN_TIMEOUT: Duration = Duration::from_secs(30);

/// Nonce length bounds (RFC 7296 3.9: 16 to 256 octets).
fn nonce_ok(n: &[u8]) -> bool {
    (16..=256).contains(&n.len())
}

pub(crate) fn sa_of(p: &[Payload]) -> Option<&[crate::wire::Proposal]> {
    p.iter().find_map(|x| match x {
        Payload::Sa(v) => Some(&v[..]),
        _ => None,
    })
}

pub(crate) fn ke_of(p: &[Payload]) -> Option<(u16, &[u8])> {
    p.iter().find_map(|x| match x {
        Payload::Ke { group, data } => Some((*group, &data[..])),
        _ => None,
    })
}

pub(crate) fn nonce_of(p: &[Payload]) -> Option<&[u8]> {
    p.iter().find_map(|x| match x {
        Payload::Nonce(v) => Some(&v[..]),
        _ => None,
    })
}

/// Derive the IKE SA's keys and SK ciphers (RFC 7296 2.14).
#[allow(clippy::too_many_arguments, reason = "the inputs of RFC 7296 2.14")]
pub(crate) fn keyed(
    suite: IkeSuite,
    skeyseed: &[u8],
    ni: &[u8],
    nr: &[u8],
    spi_i: u64,
    spi_r: u64,
    initiator: bool,
    phase: Phase,
) -> Result<Keyed, Error> {
    let keys: IkeKeys = crypto::ike_keys(&suite, skeyseed, ni, nr, spi_i, spi_r)
        .map_err(|e| Error::Crypto(e.to_string()))?;
    let ci = SkCipher::new(suite.encr, suite.integ, &keys.sk_ei, &keys.sk_ai)
        .map_err(|e| Error::Crypto(e.to_string()))?;
    let cr = SkCipher::new(suite.encr, suite.integ, &keys.sk_er, &keys.sk_ar)
        .map_err(|e| Error::Crypto(e.to_string()))?;
    let (seal, open) = if initiator { (ci, cr) } else { (cr, ci) };
    // The ciphers hold SK_e* and SK_a* now (and give them back for key
    // export): no second copy per IKE SA (`keys`' are zeroized on drop).
    let mut keys = crate::sa::KeptKeys::new(keys);
    if matches!(phase, Phase::Established) {
        // A rekeyed IKE SA: no AUTH payloads to key (RFC 7296 2.18).
        keys.forget_auth();
    }
    Ok(Keyed {
        suite,
        keys,
        seal,
        open,
        phase,
    })
}

/// The NAT_DETECTION_*_IP notifies (RFC 7296 2.23). With `fake_source`
/// the source hash cannot match, so the peer believes we are behind a NAT
/// and both sides use UDP encapsulation.
fn nat_notifies(
    ctx: &mut Ctx<'_>,
    spi_i: u64,
    spi_r: u64,
    local: SocketAddr,
    remote: SocketAddr,
    fake_source: bool,
) -> [Payload; 2] {
    let src = if fake_source {
        ctx.random(20)
    } else {
        crypto::nat_detection_hash(spi_i, spi_r, local).to_vec()
    };
    [
        notify(n::NAT_DETECTION_SOURCE_IP, src),
        notify(
            n::NAT_DETECTION_DESTINATION_IP,
            crypto::nat_detection_hash(spi_i, spi_r, remote).to_vec(),
        ),
    ]
}

/// NAT detection from received notifies: (we are behind a NAT, the peer
/// is), or `None` when the peer sent no NAT-D (no NAT-T support).
fn nat_detect(
    payloads: &[Payload],
    spi_i: u64,
    spi_r: u64,
    local: SocketAddr,
    remote: SocketAddr,
) -> Option<(bool, bool)> {
    let dst: Vec<_> = notifies(payloads, n::NAT_DETECTION_DESTINATION_IP).collect();
    let src: Vec<_> = notifies(payloads, n::NAT_DETECTION_SOURCE_IP).collect();
    if dst.is_empty() && src.is_empty() {
        return None;
    }
    let ours = crypto::nat_detection_hash(spi_i, spi_r, local);
    let theirs = crypto::nat_detection_hash(spi_i, spi_r, remote);
    let nat_local = !dst.iter().any(|d| d.data == ours);
    let nat_remote = !src.iter().any(|s| s.data == theirs);
    Some((nat_local, nat_remote))
}

/// Our AUTH payload (RFC 7296 2.15; RFC 7619 for NULL; RFC 7427 and
/// RFC 4754 for signatures): method number and data.
fn auth_value(
    method: AuthMethod,
    peer: &PeerConfig,
    prf: pad::alg::Prf,
    sk_p: &[u8],
    signed: &[u8],
    peer_hashes: Option<&[u16]>,
) -> Result<(u8, Vec<u8>), Error> {
    match method {
        AuthMethod::Psk => {
            let psk = peer.psk.as_ref().ok_or_else(|| {
                Error::InvalidConfig(format!("peer {}: PSK auth without a PSK", peer.name))
            })?;
            Ok((
                method.wire(),
                crypto::psk_auth(prf, psk.expose(), signed).to_vec(),
            ))
        }
        // RFC 7619 2.1: the shared-key MIC with SK_pi / SK_pr as the key.
        AuthMethod::Null => Ok((method.wire(), crypto::null_auth(prf, sk_p, signed).to_vec())),
        AuthMethod::Certificate | AuthMethod::RawPublicKey => {
            sig::sign(peer, peer_hashes, signed).map_err(Error::InvalidConfig)
        }
        _ => Err(Error::InvalidConfig(format!(
            "auth method {method} not supported"
        ))),
    }
}

/// Check the peer's AUTH payload; `sk_p` is the peer's SK_pi / SK_pr.
/// Returns what it proved, or why not.
#[allow(clippy::too_many_arguments, reason = "the inputs of RFC 7296 2.15")]
fn check_auth(
    ctx: &Ctx<'_>,
    now: Instant,
    peer: &PeerConfig,
    peer_id: &Identity,
    method: u8,
    data: &[u8],
    payloads: &[Payload],
    prf: pad::alg::Prf,
    sk_p: &[u8],
    signed: &[u8],
) -> Result<PeerCredential, String> {
    let fail = |what: &str| Err(format!("AUTH of {peer_id} ({what}) does not verify"));
    match peer.remote_auth {
        AuthMethod::Psk if method == AuthMethod::WIRE_PSK => match peer.psk.as_ref() {
            Some(psk) if crypto::psk_auth_verify(prf, psk.expose(), signed, data) => {
                Ok(PeerCredential::SharedKey)
            }
            _ => fail("psk"),
        },
        AuthMethod::Null if method == AuthMethod::WIRE_NULL => {
            if crypto::null_auth_verify(prf, sk_p, signed, data) {
                Ok(PeerCredential::Anonymous)
            } else {
                fail("null")
            }
        }
        m if m.is_signature() && AuthMethod::is_signature_method(method) => sig::verify(
            peer,
            peer_id,
            method,
            data,
            payloads,
            signed,
            sig::wall_time(ctx.wall, now),
        ),
        m => Err(format!("peer used auth method {method}, expected {m}")),
    }
}

fn stateless_reply(
    ctx: &mut Ctx<'_>,
    req: &Header,
    local: SocketAddr,
    remote: SocketAddr,
    p: Payload,
) {
    let m = Message {
        header: Header {
            spi_i: req.spi_i,
            spi_r: 0,
            next_payload: 0,
            version: 0x20,
            exchange: exchange::IKE_SA_INIT,
            flags: flags::RESPONSE,
            message_id: 0,
            length: 0,
        },
        payloads: vec![p],
    };
    ctx.out.send(local, remote, m.emit());
}

/// The parts of an IKE_SA_INIT request a stateless COOKIE answer needs
/// (RFC 7296 2.6): found by [`scan_plain_init`] without parsing payload
/// bodies or allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PlainInit<'a> {
    /// The initiator's SPI.
    pub(crate) spi_i: u64,
    /// The body of the (first) Nonce payload.
    pub(crate) ni: &'a [u8],
}

/// Walk the generic payload headers of `buf` and return its SPIi and Ni
/// if it is an IKE_SA_INIT request that [`respond_init`], with cookies
/// demanded, would answer with a COOKIE: a valid header (version 2,
/// length, message ID 0, Initiator flag, SPIr 0), a well-formed payload
/// chain (at most [`crate::wire::MAX_PAYLOADS`] payloads, nothing after
/// the last) without critical or encrypted payloads, SA, KE (with its
/// 4-octet group header) and a nonce of 16 to 256 octets, and no COOKIE
/// notify as the first payload (RFC 7296 2.6: that one must be checked).
/// Anything else is `None` and goes the full way.
///
/// RFC 7296 2.6, RFC 8019: the point of the cookie is that the
/// responder commits no state and little work before the initiator has
/// shown it receives at its address, so the bodies of the SA, KE and
/// notify payloads are not decoded here (a request whose SA payload is
/// malformed gets a COOKIE; its retry with the cookie is parsed in full).
pub(crate) fn scan_plain_init(buf: &[u8]) -> Option<PlainInit<'_>> {
    let h = crate::wire::header_only(buf).ok()?;
    if h.exchange != exchange::IKE_SA_INIT
        || h.is_response()
        || !h.is_initiator()
        || h.spi_r != 0
        || h.message_id != 0
    {
        return None;
    }
    let mut rest = buf.get(Header::LEN..)?;
    let mut next = h.next_payload;
    let (mut sa, mut ke, mut ni) = (false, false, None);
    let mut count = 0;
    while next != crate::wire::payload_type::NONE {
        count += 1;
        if count > crate::wire::MAX_PAYLOADS {
            return None;
        }
        let (&[np, pflags, l0, l1], _) = rest.split_first_chunk::<4>()?;
        let len = usize::from(u16::from_be_bytes([l0, l1]));
        if len < 4 || pflags & 0x80 != 0 {
            return None;
        }
        let body = rest.get(4..len)?;
        match next {
            crate::wire::payload_type::SA => sa = true,
            crate::wire::payload_type::KE => ke = ke || body.len() >= 4,
            crate::wire::payload_type::NONCE => ni = ni.or(Some(body)),
            crate::wire::payload_type::NOTIFY => {
                // Protocol ID, SPI size, type: what the full parse needs.
                let [_, spi_size, t0, t1, ..] = *body else {
                    return None;
                };
                if body.len() < 4 + usize::from(spi_size) {
                    return None;
                }
                if count == 1 && u16::from_be_bytes([t0, t1]) == n::COOKIE {
                    return None;
                }
            }
            crate::wire::payload_type::SK | crate::wire::payload_type::SKF => return None,
            _ => {}
        }
        rest = rest.get(len..)?;
        next = np;
    }
    if !rest.is_empty() || !sa || !ke {
        return None;
    }
    let ni = ni.filter(|n| nonce_ok(n))?;
    Some(PlainInit { spi_i: h.spi_i, ni })
}

/// Octets of the answer [`write_cookie_reply`] writes: header, Notify
/// header (4 + 4) and the cookie.
pub(crate) const COOKIE_REPLY_LEN: usize = Header::LEN + 8 + crypto::COOKIE_LEN;

/// The stateless COOKIE answer to `req` (RFC 7296 2.6, 1.2: IKE_SA_INIT
/// response, SPIr 0, one Notify of type COOKIE), the same octets
/// `stateless_reply` emits, written into `out` (cleared first; no
/// allocation when it has room).
pub(crate) fn write_cookie_reply(
    cookies: &CookieJar,
    req: PlainInit<'_>,
    remote: std::net::IpAddr,
    out: &mut Vec<u8>,
) {
    out.clear();
    let h = Header {
        spi_i: req.spi_i,
        spi_r: 0,
        next_payload: crate::wire::payload_type::NOTIFY,
        version: 0x20,
        exchange: exchange::IKE_SA_INIT,
        flags: flags::RESPONSE,
        message_id: 0,
        length: COOKIE_REPLY_LEN as u32,
    };
    out.extend_from_slice(&h.to_bytes());
    let body = (8 + crypto::COOKIE_LEN) as u16;
    out.extend_from_slice(&[crate::wire::payload_type::NONE, 0]);
    out.extend_from_slice(&body.to_be_bytes());
    // Protocol ID 0 and SPI size 0 (RFC 7296 3.10), then the type.
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&n::COOKIE.to_be_bytes());
    cookies.make_into(req.ni, remote, req.spi_i, out);
}

fn init_request(ctx: &mut Ctx<'_>, sa: &IkeSa, st: &InitSent, peer: &PeerConfig) -> Vec<u8> {
    let mut payloads = Vec::new();
    if let Some(c) = &st.cookie {
        // RFC 7296 2.6: the COOKIE notify comes first.
        payloads.push(notify(n::COOKIE, c.clone()));
    }
    payloads.push(Payload::Sa(select::ike_offer(&peer.ike_proposals, &[])));
    payloads.push(Payload::Ke {
        group: st.dh.group().transform_id(),
        data: st.dh.public().to_vec(),
    });
    payloads.push(Payload::Nonce(st.ni.clone()));
    payloads.extend(nat_notifies(
        ctx,
        sa.spi_i,
        0,
        sa.local,
        sa.remote,
        peer.force_encap,
    ));
    if ctx.config.fragmentation.enabled {
        //= https://www.rfc-editor.org/rfc/rfc7383#section-2.3
        //# the initiator includes the IKEV2_FRAGMENTATION_SUPPORTED
        //# notification in the IKE_SA_INIT request.
        payloads.push(notify(n::IKEV2_FRAGMENTATION_SUPPORTED, Vec::new()));
    }
    if sig::uses_signatures(peer) {
        payloads.push(sig::hash_algorithms_notify());
    }
    Message {
        header: sa.header(exchange::IKE_SA_INIT, false, 0),
        payloads,
    }
    .emit()
}

/// Initiator: create an IKE SA and send IKE_SA_INIT (RFC 7296 1.2).
pub(crate) fn initiate(
    ctx: &mut Ctx<'_>,
    now: Instant,
    peer: Arc<PeerConfig>,
    local: SocketAddr,
    remote: SocketAddr,
    initial_contact: bool,
) -> IkeSa {
    let id = ctx.new_sa_id();
    let spi_i = ctx.new_ike_spi();
    let group = peer
        .ike_proposals
        .first()
        .and_then(|p| p.dh.first())
        .copied();
    let st = InitSent {
        dh: ctx.init_dh(group.unwrap_or(DhGroup::X25519)),
        ni: ctx.nonce(),
        cookie: None,
        request: Vec::new(),
        cookie_tries: 0,
        ke_tries: 0,
    };
    let mut sa = IkeSa::new(
        id,
        Some(Arc::clone(&peer)),
        true,
        spi_i,
        0,
        local,
        remote,
        State::InitSent(Box::new(st)),
        now,
    );
    sa.initial_contact = initial_contact;
    let bad = if group.is_none() {
        Some("no IKE proposal with a D-H group".to_owned())
    } else if peer.child.esp_proposals.is_empty() {
        Some("no ESP proposal".to_owned())
    } else if (peer.local_auth == AuthMethod::Psk || peer.remote_auth == AuthMethod::Psk)
        && peer.psk.is_none()
    {
        Some("PSK authentication without a PSK".to_owned())
    } else {
        sig::check_config(&peer).err()
    };
    if let Some(why) = bad {
        sa.fail(
            ctx,
            Error::InvalidConfig(format!("peer {}: {why}", peer.name)),
        );
        return sa;
    }
    sa.send_init(ctx, now);
    sa
}

impl IkeSa {
    /// (Re)send IKE_SA_INIT with the current cookie and KE.
    fn send_init(&mut self, ctx: &mut Ctx<'_>, now: Instant) {
        let Some(peer) = self.peer.clone() else {
            return;
        };
        let data = match &self.state {
            State::InitSent(st) => init_request(ctx, self, st, &peer),
            State::Keyed(_) => return,
        };
        if let State::InitSent(st) = &mut self.state {
            st.request.clone_from(&data);
        }
        ctx.out.send(self.local, self.remote, data.clone());
        self.pending = Some(Box::new(crate::sa::Pending {
            msg_id: 0,
            exchange: exchange::IKE_SA_INIT,
            data: vec![data],
            tries: 1,
            next_at: later(now, ctx.config.retransmit.timeout(1)),
            kind: PendingKind::Init,
        }));
    }

    /// Initiator: the IKE_SA_INIT response.
    pub(crate) fn on_init_response(
        &mut self,
        ctx: &mut Ctx<'_>,
        now: Instant,
        buf: &[u8],
        msg: &Message,
    ) {
        let Some(peer) = self.peer.clone() else {
            return;
        };
        let State::InitSent(st) = &mut self.state else {
            ctx.out
                .drop(DropReason::WrongState, "IKE_SA_INIT response after keys");
            return;
        };
        if msg.header.message_id != 0
            || !matches!(
                self.pending.as_ref().map(|p| &p.kind),
                Some(PendingKind::Init)
            )
        {
            ctx.out
                .drop(DropReason::UnexpectedResponse, "IKE_SA_INIT response");
            return;
        }
        let p = &msg.payloads;
        // RFC 7296 2.6: retry with the cookie as the first payload.
        if let Some(c) = find_notify(p, n::COOKIE) {
            if st.cookie_tries >= 3 || c.data.is_empty() || c.data.len() > 64 {
                self.fail(
                    ctx,
                    Error::Protocol("responder keeps demanding cookies".into()),
                );
                return;
            }
            st.cookie_tries += 1;
            st.cookie = Some(c.data.clone());
            self.send_init(ctx, now);
            return;
        }
        // RFC 7296 1.2, 2.7: retry with the group the responder prefers.
        if let Some(k) = find_notify(p, n::INVALID_KE_PAYLOAD) {
            let g = <[u8; 2]>::try_from(&k.data[..])
                .ok()
                .and_then(|b| DhGroup::from_wire(u16::from_be_bytes(b)));
            let ok = g.filter(|g| {
                *g != st.dh.group()
                    && st.ke_tries < 2
                    && peer.ike_proposals.iter().any(|x| x.dh.contains(g))
            });
            let Some(g) = ok else {
                self.fail(ctx, Error::InvalidKePayload);
                return;
            };
            st.ke_tries += 1;
            st.dh = ctx.init_dh(g);
            self.send_init(ctx, now);
            return;
        }
        if let Some(e) = msg::error_notify(p) {
            let err = if e.kind == n::NO_PROPOSAL_CHOSEN {
                Error::NoProposalChosen {
                    ours: select::describe_ours(&peer.ike_proposals),
                    theirs: select::npc_theirs(&e.data),
                }
            } else {
                Error::from_notify(e.kind)
            };
            self.fail(ctx, err);
            return;
        }
        let (Some(sa), Some((group, ke)), Some(nr)) = (sa_of(p), ke_of(p), nonce_of(p)) else {
            ctx.out.drop(
                DropReason::InvalidPayload,
                "IKE_SA_INIT response lacks SA, KE or Nr",
            );
            return;
        };
        let spi_r = msg.header.spi_r;
        let Some((suite, _)) = select::accept_ike(sa, &peer.ike_proposals) else {
            self.fail(
                ctx,
                Error::Protocol("responder chose a proposal we did not offer".into()),
            );
            return;
        };
        if suite.dh != st.dh.group()
            || group != suite.dh.transform_id()
            || !nonce_ok(nr)
            || spi_r == 0
        {
            self.fail(
                ctx,
                Error::Protocol("bad KE, nonce or SPI in IKE_SA_INIT response".into()),
            );
            return;
        }
        let g_ir = match st.dh.agree(ke) {
            Ok(s) => s,
            Err(e) => {
                self.fail(ctx, Error::Crypto(e.to_string()));
                return;
            }
        };
        let ni = st.ni.clone();
        let skeyseed = crypto::skeyseed(suite.prf, &ni, nr, &g_ir);
        let len = usize::try_from(msg.header.length).unwrap_or(usize::MAX);
        let auth = AuthData {
            init_i: std::mem::take(&mut st.request),
            init_r: buf.get(..len).unwrap_or(buf).to_vec(),
            ni: ni.clone(),
            nr: nr.to_vec(),
        };
        let k = match keyed(
            suite,
            &skeyseed,
            &ni,
            nr,
            self.spi_i,
            spi_r,
            true,
            Phase::AuthSent(Box::new(auth)),
        ) {
            Ok(k) => k,
            Err(e) => {
                self.fail(ctx, e);
                return;
            }
        };
        self.spi_r = spi_r;
        self.state = State::Keyed(Box::new(k));
        if let Some((nat_local, nat_remote)) =
            nat_detect(p, self.spi_i, spi_r, self.local, self.remote)
        {
            self.nat_local = nat_local;
            self.nat_remote = nat_remote;
        }
        self.udp_encap = self.nat_local || self.nat_remote || peer.force_encap;
        self.frag = ctx.config.fragmentation.enabled
            && find_notify(p, n::IKEV2_FRAGMENTATION_SUPPORTED).is_some();
        self.peer_hashes = find_notify(p, n::SIGNATURE_HASH_ALGORITHMS)
            .map(|x| sig::parse_hash_algorithms(&x.data));
        // RFC 7296 2.23: behind a NAT (or forced), move to the NAT-T port
        // for IKE_AUTH and everything after it.
        if self.udp_encap && self.local.port() != ctx.config.natt_port {
            self.local.set_port(ctx.config.natt_port);
            self.remote.set_port(peer.remote_natt_port);
        }
        self.complete(ctx);
        self.heard(now);
        self.send_auth(ctx, now, &peer);
    }

    /// Initiator: IKE_AUTH request with the first child SA.
    fn send_auth(&mut self, ctx: &mut Ctx<'_>, now: Instant, peer: &Arc<PeerConfig>) {
        let Some(k) = self.keyed() else { return };
        let Phase::AuthSent(a) = &k.phase else { return };
        let body = msg::id_body(peer.local_id.id_type(), &peer.local_id.data());
        let signed = crypto::signed_octets(k.suite.prf, k.keys.sk_pi(), &a.init_i, &a.nr, &body);
        let auth = match auth_value(
            peer.local_auth,
            peer,
            k.suite.prf,
            k.keys.sk_pi(),
            &signed,
            self.peer_hashes.as_deref(),
        ) {
            Ok(v) => v,
            Err(e) => {
                self.fail(ctx, e);
                return;
            }
        };
        let inbound_spi = ctx.new_esp_spi();
        let cfg = ChildCfg::Peer(Arc::clone(peer));
        let mut payloads = vec![msg::id_i(&peer.local_id)];
        payloads.extend(sig::cert_payloads(peer));
        if peer.remote_auth == AuthMethod::Certificate {
            payloads.extend(sig::certreq(&peer.credentials.trust_anchors));
        }
        payloads.push(Payload::Auth {
            method: auth.0,
            data: auth.1,
        });
        if self.initial_contact {
            payloads.push(notify(n::INITIAL_CONTACT, Vec::new()));
        }
        if cfg.mode == pad::Mode::Transport {
            payloads.push(notify(n::USE_TRANSPORT_MODE, Vec::new()));
        }
        payloads.push(Payload::Sa(select::esp_offer(
            &cfg.esp_proposals,
            inbound_spi,
            false,
        )));
        payloads.push(Payload::TsI(msg::ts_to_wire(&cfg.local_ts)));
        payloads.push(Payload::TsR(msg::ts_to_wire(&cfg.remote_ts)));
        let req = ChildReq {
            tsi: cfg.local_ts.clone(),
            tsr: cfg.remote_ts.clone(),
            cfg,
            inbound_spi,
            ni: None,
            dh: None,
            rekeys: None,
            ke_tries: 0,
        };
        self.request(
            ctx,
            now,
            exchange::IKE_AUTH,
            &payloads,
            PendingKind::Auth(Box::new(req)),
        );
    }

    fn auth_failed(&mut self, ctx: &mut Ctx<'_>, detail: String) {
        tracing::warn!(sa = self.id.0, remote = %self.remote, %detail, "authentication failed");
        self.fail(ctx, Error::AuthenticationFailed { detail });
    }

    /// Responder: the IKE_AUTH request (RFC 7296 1.2, 2.15, 2.21.2).
    /// Returns the response payloads.
    pub(crate) fn on_auth_request(
        &mut self,
        ctx: &mut Ctx<'_>,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        p: &[Payload],
    ) -> Vec<Payload> {
        let Some(k) = self.keyed_mut() else {
            return Vec::new();
        };
        let Phase::AwaitAuth(a) = std::mem::replace(&mut k.phase, Phase::Established) else {
            return Vec::new();
        };
        let fail = |sa: &mut Self, ctx: &mut Ctx<'_>, detail: String| {
            sa.auth_failed(ctx, detail);
            // RFC 7296 2.21.2: AUTHENTICATION_FAILED in the IKE_AUTH
            // response; the half-open state then goes.
            vec![notify(n::AUTHENTICATION_FAILED, Vec::new())]
        };
        let idi = p.iter().find_map(|x| match x {
            Payload::IdI { id_type, data } => Some((*id_type, data)),
            _ => None,
        });
        let auth = msg::auth_payload(p);
        let (Some((id_type, id_data)), Some((method, auth_data))) = (idi, auth) else {
            return fail(self, ctx, "IKE_AUTH request without IDi or AUTH".into());
        };
        let peer_id = match Identity::from_wire(id_type, id_data) {
            Ok(i) => i,
            Err(e) => return fail(self, ctx, format!("bad IDi: {e}")),
        };
        let wire_method = method;
        let Some(mut method) = AuthMethod::from_wire(method) else {
            return fail(self, ctx, format!("unsupported auth method {method}"));
        };
        if method.is_signature() {
            // Certificate or raw key: told by the CERT payloads.
            method = sig::kind_of(p);
        }
        let id_ok = |c: &&Arc<PeerConfig>| c.remote_id.as_ref().is_none_or(|r| *r == peer_id);
        let found = ctx
            .peers
            .iter()
            .filter(id_ok)
            .find(|c| c.remote_auth == method)
            .or_else(|| {
                // A certificate whose key is pinned as a raw key.
                (method == AuthMethod::Certificate).then_some(())?;
                ctx.peers
                    .iter()
                    .filter(id_ok)
                    .find(|c| c.remote_auth == AuthMethod::RawPublicKey)
            })
            .cloned();
        let Some(peer) = found else {
            return fail(
                self,
                ctx,
                format!("no peer config for {peer_id} with {method} auth"),
            );
        };
        let Some(k) = self.keyed() else {
            return Vec::new();
        };
        let prf = k.suite.prf;
        let body = msg::id_body(id_type, id_data);
        let signed = crypto::signed_octets(prf, k.keys.sk_pi(), &a.init_i, &a.nr, &body);
        let credential = match check_auth(
            ctx,
            now,
            &peer,
            &peer_id,
            wire_method,
            auth_data,
            p,
            prf,
            k.keys.sk_pi(),
            &signed,
        ) {
            Ok(c) => c,
            Err(detail) => return fail(self, ctx, detail),
        };
        if let Err(detail) = self.check_pin(ctx, &peer, &credential, remote.ip()) {
            return fail(self, ctx, detail);
        }
        // Our own AUTH.
        let idr_body = msg::id_body(peer.local_id.id_type(), &peer.local_id.data());
        let signed_r = crypto::signed_octets(prf, k.keys.sk_pr(), &a.init_r, &a.ni, &idr_body);
        let our_auth = match auth_value(
            peer.local_auth,
            &peer,
            prf,
            k.keys.sk_pr(),
            &signed_r,
            self.peer_hashes.as_deref(),
        ) {
            Ok(v) => v,
            Err(e) => {
                self.fail(ctx, e);
                return vec![notify(n::AUTHENTICATION_FAILED, Vec::new())];
            }
        };
        // Authenticated: the SA is established.
        self.forget_auth_keys();
        self.peer_id = peer_id;
        self.peer_auth = peer.remote_auth;
        self.peer_credential = credential;
        self.local = local;
        self.remote = remote;
        if local.port() == ctx.config.natt_port && ctx.config.natt_port != ctx.config.ike_port {
            self.udp_encap = true;
        }
        self.expire_at = None;
        self.ike_rekey_at = peer.ike_rekey_after.map(|d| later(now, ctx.jittered(d)));
        self.peer = Some(Arc::clone(&peer));
        if find_notify(p, n::INITIAL_CONTACT).is_some() {
            ctx.initial_contact = Some((self.peer_id.clone(), remote.ip()));
        }
        ctx.out.stats.ike_sas_established += 1;
        if let Some(info) = self.info() {
            ctx.out.event(Event::IkeSaEstablished(info));
        }
        let mut out = vec![msg::id_r(&peer.local_id)];
        out.extend(sig::cert_payloads(&peer));
        out.push(Payload::Auth {
            method: our_auth.0,
            data: our_auth.1,
        });
        let cfg = ChildCfg::Peer(Arc::clone(&peer));
        match self.respond_child(ctx, now, p, &a.ni, &a.nr, None, &cfg, None) {
            Ok((mut c, _)) => out.append(&mut c),
            Err((e, pl)) => {
                // RFC 7296 2.21.3: the IKE SA stays up.
                out.push(pl);
                ctx.out.event(Event::ChildSaFailed {
                    ike_sa: self.id,
                    error: e,
                });
            }
        }
        out
    }

    /// Initiator: the IKE_AUTH response.
    pub(crate) fn on_auth_response(
        &mut self,
        ctx: &mut Ctx<'_>,
        now: Instant,
        req: Box<ChildReq>,
        p: &[Payload],
    ) {
        let Some(peer) = self.peer.clone() else {
            return;
        };
        let Some(k) = self.keyed_mut() else { return };
        let Phase::AuthSent(a) = std::mem::replace(&mut k.phase, Phase::Established) else {
            return;
        };
        let idr = p.iter().find_map(|x| match x {
            Payload::IdR { id_type, data } => Some((*id_type, data)),
            _ => None,
        });
        let auth = msg::auth_payload(p);
        let (Some((id_type, id_data)), Some((method, auth_data))) = (idr, auth) else {
            let err = match msg::error_notify(p) {
                Some(e) => Error::from_notify(e.kind),
                None => Error::Protocol("IKE_AUTH response without IDr or AUTH".into()),
            };
            self.fail(ctx, err);
            return;
        };
        let peer_id = match Identity::from_wire(id_type, id_data) {
            Ok(i) => i,
            Err(e) => {
                self.reject_responder(ctx, now, format!("bad IDr: {e}"));
                return;
            }
        };
        if peer.remote_id.as_ref().is_some_and(|r| *r != peer_id) {
            self.reject_responder(
                ctx,
                now,
                format!("responder is {peer_id}, expected another identity"),
            );
            return;
        }
        let Some(k) = self.keyed() else { return };
        let prf = k.suite.prf;
        let body = msg::id_body(id_type, id_data);
        let signed = crypto::signed_octets(prf, k.keys.sk_pr(), &a.init_r, &a.ni, &body);
        let credential = match check_auth(
            ctx,
            now,
            &peer,
            &peer_id,
            method,
            auth_data,
            p,
            prf,
            k.keys.sk_pr(),
            &signed,
        ) {
            Ok(c) => c,
            Err(detail) => {
                self.reject_responder(ctx, now, format!("responder: {detail}"));
                return;
            }
        };
        if let Err(detail) = self.check_pin(ctx, &peer, &credential, self.remote.ip()) {
            self.reject_responder(ctx, now, format!("responder: {detail}"));
            return;
        }
        self.forget_auth_keys();
        self.peer_id = peer_id;
        self.peer_auth = peer.remote_auth;
        self.peer_credential = credential;
        self.ike_rekey_at = peer.ike_rekey_after.map(|d| later(now, ctx.jittered(d)));
        ctx.out.stats.ike_sas_established += 1;
        if let Some(info) = self.info() {
            ctx.out.event(Event::IkeSaEstablished(info));
        }
        self.complete_child(ctx, now, *req, p, &a.ni, &a.nr);
    }

    /// Both AUTH payloads are checked: SK_pi and SK_pr are never used
    /// again (RFC 7296 2.15: they only key the AUTH payloads of IKE_AUTH;
    /// a rekeyed IKE SA derives everything from SK_d, 2.18). Zeroized here
    /// rather than kept for the SA's lifetime.
    fn forget_auth_keys(&mut self) {
        if let Some(k) = self.keyed_mut() {
            k.keys.forget_auth();
        }
    }

    /// The pin store check for a peer that asked for it: unknown
    /// addresses are learned, changed keys refused or warned about.
    fn check_pin(
        &self,
        ctx: &mut Ctx<'_>,
        peer: &PeerConfig,
        credential: &PeerCredential,
        address: std::net::IpAddr,
    ) -> Result<(), String> {
        let Some(fp) = credential
            .spki_sha256()
            .filter(|_| peer.credentials.pinning)
        else {
            return Ok(());
        };
        match ctx.pins.check(address, &fp) {
            crate::pins::PinCheck::Match => Ok(()),
            crate::pins::PinCheck::Unknown => {
                if ctx.pins.pin(address, fp) {
                    ctx.out.event(Event::PeerKeyPinned {
                        sa: self.id,
                        address,
                        fingerprint: fp,
                    });
                } else {
                    tracing::warn!(%address, "pin store full: key not pinned");
                }
                Ok(())
            }
            crate::pins::PinCheck::Changed { pinned } => {
                let refused = ctx.pins.policy == crate::pins::PinPolicy::Refuse;
                tracing::warn!(%address, %pinned, presented = %fp, refused, "peer key changed");
                ctx.out.event(Event::PeerKeyChanged {
                    sa: self.id,
                    address,
                    pinned,
                    presented: fp,
                    refused,
                });
                if refused {
                    Err(format!(
                        "pin-mismatch: {address} is pinned to key {pinned}, presented {fp}"
                    ))
                } else {
                    Ok(())
                }
            }
        }
    }

    /// Initiator: the responder's AUTH failed; tell it (RFC 7296 2.21.2)
    /// and fail.
    fn reject_responder(&mut self, ctx: &mut Ctx<'_>, now: Instant, detail: String) {
        self.request(
            ctx,
            now,
            exchange::INFORMATIONAL,
            &[notify(n::AUTHENTICATION_FAILED, Vec::new())],
            PendingKind::Notify,
        );
        self.auth_failed(ctx, detail);
    }
}

/// Responder: an IKE_SA_INIT request (RFC 7296 1.2). Returns the new
/// half-open IKE SA, if one was created.
#[allow(
    clippy::too_many_arguments,
    reason = "the endpoint's view, passed once"
)]
pub(crate) fn respond_init(
    ctx: &mut Ctx<'_>,
    now: Instant,
    local: SocketAddr,
    remote: SocketAddr,
    buf: &[u8],
    msg: &Message,
    half_open: usize,
    cookies: &CookieJar,
) -> Option<IkeSa> {
    let h = &msg.header;
    if h.message_id != 0 || !h.is_initiator() || h.spi_r != 0 {
        ctx.out.drop(
            DropReason::InvalidPayload,
            "IKE_SA_INIT request with bad header",
        );
        return None;
    }
    let p = &msg.payloads;
    // RFC 7296 2.5: unknown critical payloads are refused.
    if let Some(t) = msg::unsupported_critical(p) {
        stateless_reply(
            ctx,
            h,
            local,
            remote,
            notify(n::UNSUPPORTED_CRITICAL_PAYLOAD, vec![t]),
        );
        return None;
    }
    let (Some(sa), Some((group, ke)), Some(ni)) = (sa_of(p), ke_of(p), nonce_of(p)) else {
        ctx.out.drop(
            DropReason::InvalidPayload,
            "IKE_SA_INIT request lacks SA, KE or Ni",
        );
        return None;
    };
    if !nonce_ok(ni) {
        ctx.out
            .drop(DropReason::InvalidPayload, "IKE_SA_INIT nonce length");
        return None;
    }
    if half_open >= ctx.config.max_half_open {
        ctx.out.drop(
            DropReason::HalfOpenLimit,
            "IKE_SA_INIT beyond max_half_open",
        );
        return None;
    }
    // RFC 7296 2.6: past the threshold, demand a cookie (stateless).
    if half_open >= ctx.config.cookie_threshold {
        let presented = match p.first() {
            Some(Payload::Notify(c)) if c.kind == n::COOKIE => Some(&c.data),
            _ => None,
        };
        let valid = presented.is_some_and(|c| cookies.check(c, ni, remote.ip(), h.spi_i));
        if !valid {
            if presented.is_some() {
                ctx.out
                    .drop(DropReason::BadCookie, "IKE_SA_INIT with an invalid cookie");
            }
            ctx.out.stats.cookies_sent += 1;
            let c = cookies.make(ni, remote.ip(), h.spi_i);
            stateless_reply(ctx, h, local, remote, notify(n::COOKIE, c));
            return None;
        }
    }
    let ours: Vec<pad::IkeProposal> = ctx
        .config
        .peers
        .iter()
        .flat_map(|c| c.ike_proposals.iter().cloned())
        .collect();
    let (num, suite) = match select::select_ike(sa, &ours, DhGroup::from_wire(group)) {
        Ok(x) => x,
        Err(Refusal::WrongGroup(g)) => {
            // RFC 7296 1.2: INVALID_KE_PAYLOAD names the group we want.
            stateless_reply(
                ctx,
                h,
                local,
                remote,
                notify(
                    n::INVALID_KE_PAYLOAD,
                    g.transform_id().to_be_bytes().to_vec(),
                ),
            );
            return None;
        }
        Err(Refusal::NoProposal) => {
            let error = Error::NoProposalChosen {
                ours: select::describe_ours(&ours),
                theirs: select::describe(sa),
            };
            tracing::debug!(%remote, %error, "IKE_SA_INIT refused");
            stateless_reply(
                ctx,
                h,
                local,
                remote,
                notify(
                    n::NO_PROPOSAL_CHOSEN,
                    select::npc_data(&select::describe_ours(&ours)),
                ),
            );
            let id = ctx.new_sa_id();
            ctx.out.event(Event::IkeSaFailed { sa: id, error });
            return None;
        }
    };
    if group != suite.dh.transform_id() {
        // A KE payload of a group we do not know at all (RFC 7296 1.2).
        stateless_reply(
            ctx,
            h,
            local,
            remote,
            notify(
                n::INVALID_KE_PAYLOAD,
                suite.dh.transform_id().to_be_bytes().to_vec(),
            ),
        );
        return None;
    }
    let (our_ke, g_ir) = match crypto::dh_respond(suite.dh, &mut *ctx.rng, ctx.x25519, ke) {
        Ok(s) => s,
        Err(e) => {
            ctx.out
                .drop(DropReason::Crypto, &format!("bad KE in IKE_SA_INIT: {e}"));
            stateless_reply(ctx, h, local, remote, notify(n::INVALID_SYNTAX, Vec::new()));
            return None;
        }
    };
    let nr = ctx.nonce();
    let spi_r = ctx.new_ike_spi();
    let skeyseed = crypto::skeyseed(suite.prf, ni, &nr, &g_ir);
    let nat = nat_detect(p, h.spi_i, 0, local, remote);
    let mut payloads = vec![
        Payload::Sa(vec![select::ike_chosen(num, &suite, &[])]),
        Payload::Ke {
            group: suite.dh.transform_id(),
            data: our_ke,
        },
        Payload::Nonce(nr.clone()),
    ];
    if nat.is_some() {
        // RFC 7296 2.23: answer NAT-D only when the initiator sent it.
        // A responder does not know the peer yet: it fakes its source hash
        // when any peer config asks for forced encapsulation, so the
        // initiator moves to the NAT-T port (and we follow it there).
        let fake = ctx.config.peers.iter().any(|p| p.force_encap);
        payloads.extend(nat_notifies(ctx, h.spi_i, spi_r, local, remote, fake));
    }
    let frag = ctx.config.fragmentation.enabled
        && find_notify(p, n::IKEV2_FRAGMENTATION_SUPPORTED).is_some();
    if frag {
        //= https://www.rfc-editor.org/rfc/rfc7383#section-2.3
        //# If the responder supports IKE fragmentation and this notification
        //# is present in the request, then the responder returns it in the
        //# response.
        payloads.push(notify(n::IKEV2_FRAGMENTATION_SUPPORTED, Vec::new()));
    }
    let peer_hashes =
        find_notify(p, n::SIGNATURE_HASH_ALGORITHMS).map(|x| sig::parse_hash_algorithms(&x.data));
    if peer_hashes.is_some() && ctx.config.peers.iter().any(sig::uses_signatures) {
        payloads.push(sig::hash_algorithms_notify());
    }
    // RFC 7296 3.7: the anchors we accept, for the initiator to pick its
    // certificate (we do not know the peer yet: every anchor).
    payloads.extend(sig::certreq(
        ctx.config
            .peers
            .iter()
            .filter(|p| p.remote_auth == AuthMethod::Certificate)
            .flat_map(|p| p.credentials.trust_anchors.iter()),
    ));
    let response = Message {
        header: Header {
            spi_i: h.spi_i,
            spi_r,
            next_payload: 0,
            version: 0x20,
            exchange: exchange::IKE_SA_INIT,
            flags: flags::RESPONSE,
            message_id: 0,
            length: 0,
        },
        payloads,
    }
    .emit();
    let len = usize::try_from(h.length).unwrap_or(usize::MAX);
    let auth = AuthData {
        init_i: buf.get(..len).unwrap_or(buf).to_vec(),
        init_r: response.clone(),
        ni: ni.to_vec(),
        nr: nr.clone(),
    };
    let k = match keyed(
        suite,
        &skeyseed,
        ni,
        &nr,
        h.spi_i,
        spi_r,
        false,
        Phase::AwaitAuth(Box::new(auth)),
    ) {
        Ok(k) => k,
        Err(e) => {
            ctx.out.drop(DropReason::Crypto, &e.to_string());
            return None;
        }
    };
    let id = ctx.new_sa_id();
    let mut sa = IkeSa::new(
        id,
        None,
        false,
        h.spi_i,
        spi_r,
        local,
        remote,
        State::Keyed(Box::new(k)),
        now,
    );
    if let Some((nat_local, nat_remote)) = nat {
        sa.nat_local = nat_local;
        sa.nat_remote = nat_remote;
        sa.udp_encap = nat_local || nat_remote;
    }
    sa.peer_next = 1;
    sa.frag = frag;
    sa.peer_hashes = peer_hashes;
    sa.cached = Some((
        0,
        crate::sa::Datagrams::keep(vec![response.clone()]),
        local,
        remote,
    ));
    sa.expire_at = Some(later(now, HALF_OPEN_TIMEOUT));
    ctx.out.stats.exchanges += 1;
    ctx.out.send(local, remote, response);
    tracing::debug!(sa = id.0, %remote, suite = ?suite, "IKE_SA_INIT answered");
    Some(sa)
}
