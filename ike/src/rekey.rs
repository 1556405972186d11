//! Rekeying the IKE SA (RFC 7296 1.3.2, 2.18) and simultaneous IKE SA
//! rekeys (2.8.2).

use std::time::Instant;

use pad::alg::DhGroup;

use crate::api::{Error, Event};
use crate::child::retry_delay;
use crate::crypto;
use crate::init::{ke_of, keyed, nonce_of, sa_of};
use crate::msg::{self, notify};
use crate::sa::{later, Ctx, IkeRekeyReq, IkeSa, PendingKind, Phase, State};
use crate::select::{self, Refusal};
use crate::wire::{exchange, notify as n, Payload};

impl IkeSa {
    /// Initiator: rekey the IKE SA (RFC 7296 1.3.2).
    pub(crate) fn start_rekey_ike(&mut self, ctx: &mut Ctx<'_>, now: Instant) {
        let (Some(peer), Some(k)) = (self.peer.clone(), self.keyed()) else {
            return;
        };
        let group = k.suite.dh;
        let new_spi = ctx.new_ike_spi();
        let ni = ctx.nonce();
        let dh = ctx.dh(group);
        let payloads = [
            Payload::Sa(select::ike_offer(
                &peer.ike_proposals,
                &new_spi.to_be_bytes(),
            )),
            Payload::Nonce(ni.clone()),
            Payload::Ke {
                group: group.transform_id(),
                data: dh.public().to_vec(),
            },
        ];
        let req = IkeRekeyReq { new_spi, ni, dh };
        self.request(
            ctx,
            now,
            exchange::CREATE_CHILD_SA,
            &payloads,
            PendingKind::RekeyIke(Box::new(req)),
        );
    }

    /// Move this SA's children and queued work to its successor and make
    /// this one a closing shell (RFC 7296 1.3.2).
    fn hand_over(&mut self, ctx: &mut Ctx<'_>, now: Instant, mut new: Self) {
        new.children = std::mem::take(&mut self.children);
        new.queue = std::mem::take(&mut self.queue);
        new.nat_local = self.nat_local;
        new.nat_remote = self.nat_remote;
        new.udp_encap = self.udp_encap;
        new.peer_id = self.peer_id.clone();
        new.peer_auth = self.peer_auth;
        new.peer_credential = self.peer_credential.clone();
        new.peer_hashes.clone_from(&self.peer_hashes);
        new.frag = self.frag;
        new.ike_rekey_at = self
            .peer
            .as_ref()
            .and_then(|p| p.ike_rekey_after)
            .map(|d| later(now, ctx.jittered(d)));
        if let Some(k) = self.keyed_mut() {
            k.phase = Phase::Closing;
        }
        self.expire_at = Some(later(now, crate::sa::LINGER));
        self.ike_rekey_at = None;
        ctx.out.stats.ike_sas_established += 1;
        tracing::debug!(old = self.id.0, new = new.id.0, "IKE SA rekeyed");
        ctx.out.event(Event::IkeSaRekeyed {
            old: self.id,
            new: new.id,
        });
        ctx.born.push(new);
    }

    /// Responder: an IKE SA rekey request (RFC 7296 1.3.2, 2.18).
    pub(crate) fn on_rekey_ike_request(
        &mut self,
        ctx: &mut Ctx<'_>,
        now: Instant,
        p: &[Payload],
    ) -> Vec<Payload> {
        // Our own IKE rekey outstanding: a collision, settled by the nonces
        // when ours completes (RFC 7296 2.8.2). Any other request of ours
        // outstanding: refused for now, the peer retries (2.25).
        let collision = matches!(
            self.pending.as_ref().map(|p| &p.kind),
            Some(PendingKind::RekeyIke(_))
        );
        if (self.pending.is_some() && !collision) || self.ike_collision.is_some() {
            return vec![notify(n::TEMPORARY_FAILURE, Vec::new())];
        }
        let (Some(peer), Some(sa), Some((group, ke)), Some(ni)) =
            (self.peer.clone(), sa_of(p), ke_of(p), nonce_of(p))
        else {
            return vec![notify(n::INVALID_SYNTAX, Vec::new())];
        };
        if !(16..=256).contains(&ni.len()) {
            return vec![notify(n::INVALID_SYNTAX, Vec::new())];
        }
        let (num, suite) =
            match select::select_ike(sa, &peer.ike_proposals, DhGroup::from_wire(group)) {
                Ok(x) => x,
                Err(Refusal::WrongGroup(g)) => {
                    return vec![notify(
                        n::INVALID_KE_PAYLOAD,
                        g.transform_id().to_be_bytes().to_vec(),
                    )]
                }
                Err(Refusal::NoProposal) => {
                    let ours = select::describe_ours(&peer.ike_proposals);
                    return vec![notify(n::NO_PROPOSAL_CHOSEN, select::npc_data(&ours))];
                }
            };
        let Some(spi_i) = sa
            .iter()
            .find(|x| x.num == num)
            .and_then(|x| msg::spi64(&x.spi))
            .filter(|s| *s != 0)
        else {
            return vec![notify(n::INVALID_SYNTAX, Vec::new())];
        };
        let Some(k) = self.keyed() else {
            return Vec::new();
        };
        if group != suite.dh.transform_id() {
            let g = suite.dh.transform_id().to_be_bytes().to_vec();
            return vec![notify(n::INVALID_KE_PAYLOAD, g)];
        }
        let dh = ctx.dh(suite.dh);
        let Ok(g_ir) = dh.agree(ke) else {
            return vec![notify(n::INVALID_SYNTAX, Vec::new())];
        };
        let nr = ctx.nonce();
        let spi_r = ctx.new_ike_spi();
        // RFC 7296 2.18: SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr).
        let skeyseed = crypto::rekey_skeyseed(suite.prf, &k.keys.sk_d, &g_ir, ni, &nr);
        let Ok(nk) = keyed(
            suite,
            &skeyseed,
            ni,
            &nr,
            spi_i,
            spi_r,
            false,
            Phase::Established,
        ) else {
            return vec![notify(n::NO_PROPOSAL_CHOSEN, Vec::new())];
        };
        let id = ctx.new_sa_id();
        let new = Self::new(
            id,
            self.peer.clone(),
            false,
            spi_i,
            spi_r,
            self.local,
            self.remote,
            State::Keyed(Box::new(nk)),
            now,
        );
        if collision {
            let lowest = Ord::min(ni, &nr[..]).to_vec();
            self.ike_collision = Some(Box::new((lowest, new)));
        } else {
            self.hand_over(ctx, now, new);
        }
        vec![
            Payload::Sa(vec![select::ike_chosen(num, &suite, &spi_r.to_be_bytes())]),
            Payload::Nonce(nr),
            Payload::Ke {
                group: suite.dh.transform_id(),
                data: dh.public().to_vec(),
            },
        ]
    }

    /// Initiator: the IKE SA rekey response.
    pub(crate) fn on_rekey_ike_response(
        &mut self,
        ctx: &mut Ctx<'_>,
        now: Instant,
        req: IkeRekeyReq,
        p: &[Payload],
    ) {
        let Some(peer) = self.peer.clone() else {
            return;
        };
        if let Some(e) = msg::error_notify(p) {
            if let Some(c) = self.ike_collision.take() {
                // Ours failed, the peer's stands (RFC 7296 2.8.2); the peer
                // deletes this SA.
                self.hand_over(ctx, now, c.1);
                return;
            }
            tracing::debug!(
                sa = self.id.0,
                notify = e.kind,
                "IKE SA rekey refused, retrying later"
            );
            self.ike_rekey_at = Some(later(now, retry_delay(ctx)));
            return;
        }
        let parts = (sa_of(p), ke_of(p), nonce_of(p));
        let (Some(sa), Some((group, ke)), Some(nr)) = parts else {
            self.fail(
                ctx,
                Error::Protocol("IKE rekey response lacks SA, KE or Nr".into()),
            );
            return;
        };
        let Some((suite, spi)) = select::accept_ike(sa, &peer.ike_proposals) else {
            self.fail(
                ctx,
                Error::Protocol("IKE rekey: proposal we did not offer".into()),
            );
            return;
        };
        let spi_r = msg::spi64(&spi).unwrap_or(0);
        if spi_r == 0 || suite.dh != req.dh.group() || group != suite.dh.transform_id() {
            self.fail(ctx, Error::Protocol("IKE rekey: bad SPI or group".into()));
            return;
        }
        let Some(k) = self.keyed() else { return };
        let g_ir = match req.dh.agree(ke) {
            Ok(s) => s,
            Err(e) => {
                self.fail(ctx, Error::Crypto(e.to_string()));
                return;
            }
        };
        let skeyseed = crypto::rekey_skeyseed(suite.prf, &k.keys.sk_d, &g_ir, &req.ni, nr);
        let nk = match keyed(
            suite,
            &skeyseed,
            &req.ni,
            nr,
            req.new_spi,
            spi_r,
            true,
            Phase::Established,
        ) {
            Ok(x) => x,
            Err(e) => {
                self.fail(ctx, e);
                return;
            }
        };
        let id = ctx.new_sa_id();
        let new = Self::new(
            id,
            self.peer.clone(),
            true,
            req.new_spi,
            spi_r,
            self.local,
            self.remote,
            State::Keyed(Box::new(nk)),
            now,
        );
        if let Some(c) = self.ike_collision.take() {
            let (theirs, peer_new) = *c;
            if Ord::min(&req.ni[..], nr) < &theirs[..] {
                // RFC 7296 2.8.2: the SA created with the lowest of the four
                // nonces is deleted by its initiator (us); the peer's rekey
                // stands and the peer deletes the old SA.
                tracing::debug!(sa = self.id.0, "IKE rekey collision lost");
                self.hand_over(ctx, now, peer_new);
                let mut redundant = new;
                redundant.close(now);
                redundant.send_delete_ike(ctx, now);
                ctx.born.push(redundant);
                return;
            }
            tracing::debug!(sa = self.id.0, "IKE rekey collision won");
            let mut redundant = peer_new;
            // The peer deletes the SA it created.
            redundant.close(now);
            ctx.born.push(redundant);
        }
        self.hand_over(ctx, now, new);
        // RFC 7296 1.3.2: the initiator of the rekey deletes the old SA.
        self.send_delete_ike(ctx, now);
    }

    /// A closing shell: answers retransmissions and Deletes, then goes.
    fn close(&mut self, now: Instant) {
        if let Some(k) = self.keyed_mut() {
            k.phase = Phase::Closing;
        }
        self.expire_at = Some(later(now, crate::sa::LINGER));
        self.ike_rekey_at = None;
    }
}
