//! Child SAs (RFC 7296 1.3, 2.9, 2.17) in IKE_AUTH and CREATE_CHILD_SA,
//! and their rekeying with the collision rule of 2.8.1. The IKE SA rekey
//! is in `rekey.rs`.

use std::time::{Duration, Instant};

use pad::alg::DhGroup;
use pad::{Mode, TrafficSelector, TsList};

use crate::api::{ChildSaDecision, ChildSaId, ChildSaRequest, Error, Event};
use crate::crypto;
use crate::init::{ke_of, nonce_of, sa_of};
use crate::msg::{self, find_notify, notify};
use crate::sa::{later, Child, ChildCfg, ChildReq, Ctx, IkeSa, Op, PendingKind, MAX_CHILDREN};
use crate::select::{self, EspSuite, Refusal};
use crate::wire::{exchange, notify as n, protocol, Notify, Payload};

/// A refused child SA: the error for the local user and the notify for
/// the peer.
pub(crate) type ChildRefusal = (Error, Payload);

fn refusal(e: Error) -> ChildRefusal {
    let kind = e.notify_type().unwrap_or(n::NO_PROPOSAL_CHOSEN);
    let data = match &e {
        Error::NoProposalChosen { ours, .. } => select::npc_data(ours),
        _ => Vec::new(),
    };
    (e, notify(kind, data))
}

/// Retry delay after TEMPORARY_FAILURE or a collision.
pub(crate) fn retry_delay(ctx: &mut Ctx<'_>) -> Duration {
    Duration::from_millis(500 + u64::from(ctx.rng.next_u32() % 1500))
}

/// The error a refused child SA request stands for.
fn child_error(req: &ChildReq, e: &Notify) -> Error {
    match e.kind {
        n::NO_PROPOSAL_CHOSEN => Error::NoProposalChosen {
            ours: select::describe_ours(&req.cfg.esp_proposals),
            theirs: select::npc_theirs(&e.data),
        },
        k => Error::from_notify(k),
    }
}

/// What a new child SA is made of.
struct NewChild {
    inbound_spi: u32,
    outbound_spi: u32,
    suite: EspSuite,
    mode: Mode,
    local_ts: TsList,
    remote_ts: TsList,
    keys: crypto::ChildKeys,
    /// We initiated the exchange ("i" keys are our outbound ones).
    initiator: bool,
    replaces: Option<ChildSaId>,
    cfg: ChildCfg,
}

impl IkeSa {
    fn install_child(&mut self, ctx: &mut Ctx<'_>, now: Instant, c: NewChild) -> ChildSaId {
        let id = ctx.new_child_id();
        let mut k = c.keys;
        let take = std::mem::take::<crypto::Secret>;
        let (ei, ai, er, ar) = (
            take(&mut k.encr_i),
            take(&mut k.integ_i),
            take(&mut k.encr_r),
            take(&mut k.integ_r),
        );
        // RFC 7296 2.17: "_i" keys protect initiator-to-responder traffic,
        // initiator meaning the initiator of this exchange.
        let (in_e, in_a, out_e, out_a) = if c.initiator {
            (er, ar, ei, ai)
        } else {
            (ei, ai, er, ar)
        };
        let rekey_at = c.cfg.rekey_after.map(|d| later(now, ctx.jittered(d)));
        let child = Child {
            id,
            replaces: c.replaces,
            initiator: c.initiator,
            inbound_spi: c.inbound_spi,
            outbound_spi: c.outbound_spi,
            suite: c.suite,
            mode: c.mode,
            local_ts: c.local_ts,
            remote_ts: c.remote_ts,
            cfg: c.cfg,
            rekey_at,
            rekeying: false,
            collision: None,
            rekeyed: false,
            superseded: false,
        };
        let mut info = self.child_info(&child);
        info.inbound_encr_key = in_e;
        info.inbound_integ_key = in_a;
        info.outbound_encr_key = out_e;
        info.outbound_integ_key = out_a;
        self.children.insert(child);
        ctx.out.stats.child_sas_established += 1;
        tracing::debug!(
            sa = self.id.0,
            child = id.0,
            inbound_spi = c.inbound_spi,
            "child SA established"
        );
        ctx.out.event(Event::ChildSaEstablished(info));
        id
    }

    fn ask_policy(
        &self,
        ctx: &mut Ctx<'_>,
        initiator: bool,
        tsi: &[TrafficSelector],
        tsr: &[TrafficSelector],
        mode: Mode,
        suite: &EspSuite,
    ) -> Option<(Vec<TrafficSelector>, Vec<TrafficSelector>)> {
        let req = ChildSaRequest {
            ike_sa: self.id,
            peer_id: &self.peer_id,
            peer_auth: self.peer_auth,
            peer_credential: &self.peer_credential,
            remote: self.remote,
            initiator,
            tsi,
            tsr,
            mode,
            encr: suite.encr,
            integ: suite.integ,
        };
        match ctx.policy.authorize(&req) {
            ChildSaDecision::Accept { tsi: a, tsr: b }
                if !a.is_empty()
                    && !b.is_empty()
                    && msg::ts_subset(&a, tsi)
                    && msg::ts_subset(&b, tsr) =>
            {
                Some((a, b))
            }
            _ => None,
        }
    }

    /// Responder: negotiate a child SA from a request's SA, TSi, TSr
    /// (RFC 7296 2.7, 2.9). `ke` is the KE payload of CREATE_CHILD_SA
    /// (`None` in IKE_AUTH, where no PFS happens). Returns the response's
    /// SA, [KEr], TSi, TSr and mode notify.
    #[allow(clippy::too_many_arguments, reason = "the parts of RFC 7296 1.3.1")]
    pub(crate) fn respond_child(
        &mut self,
        ctx: &mut Ctx<'_>,
        now: Instant,
        p: &[Payload],
        ni: &[u8],
        nr: &[u8],
        ke: Option<(u16, &[u8])>,
        cfg: &ChildCfg,
        replaces: Option<ChildSaId>,
    ) -> Result<(Vec<Payload>, ChildSaId), ChildRefusal> {
        let Some(sa) = sa_of(p) else {
            return Err(refusal(Error::Protocol(
                "no SA payload for the child SA".into(),
            )));
        };
        let tsi_req = p.iter().find_map(|x| match x {
            Payload::TsI(t) => Some(msg::ts_from_wire(t)),
            _ => None,
        });
        let tsr_req = p.iter().find_map(|x| match x {
            Payload::TsR(t) => Some(msg::ts_from_wire(t)),
            _ => None,
        });
        let (Some(tsi_req), Some(tsr_req)) = (tsi_req, tsr_req) else {
            return Err(refusal(Error::Protocol("no TSi or TSr".into())));
        };
        // D-H transforms count only with a KE payload (never in IKE_AUTH,
        // RFC 7296 1.2).
        let pfs_allowed = ke.is_some();
        let ke_group = ke.and_then(|(g, _)| DhGroup::from_wire(g));
        let (num, their_spi, suite) =
            match select::select_esp(sa, &cfg.esp_proposals, ke_group, pfs_allowed) {
                Ok(x) => x,
                Err(Refusal::WrongGroup(g)) => {
                    return Err((
                        Error::InvalidKePayload,
                        notify(
                            n::INVALID_KE_PAYLOAD,
                            g.transform_id().to_be_bytes().to_vec(),
                        ),
                    ))
                }
                Err(Refusal::NoProposal) => {
                    return Err(refusal(Error::NoProposalChosen {
                        ours: select::describe_ours(&cfg.esp_proposals),
                        theirs: select::describe(sa),
                    }))
                }
            };
        // RFC 7296 2.9: narrow to the intersection with our policy.
        let tsi = msg::ts_intersect(&tsi_req, &cfg.remote_ts);
        let tsr = msg::ts_intersect(&tsr_req, &cfg.local_ts);
        if tsi.is_empty() || tsr.is_empty() {
            return Err(refusal(Error::TsUnacceptable));
        }
        // RFC 7296 1.3.1: transport mode only when both want it.
        let mode = if find_notify(p, n::USE_TRANSPORT_MODE).is_some() && cfg.mode == Mode::Transport
        {
            Mode::Transport
        } else {
            Mode::Tunnel
        };
        let Some((tsi, tsr)) = self.ask_policy(ctx, false, &tsi, &tsr, mode, &suite) else {
            return Err(refusal(Error::TsUnacceptable));
        };
        let Some(k) = self.keyed() else {
            return Err(refusal(Error::NotEstablished));
        };
        let prf = k.suite.prf;
        let mut ke_out = None;
        let g_ir = match (suite.dh, ke) {
            (Some(g), Some((kg, _))) if kg != g.transform_id() => {
                return Err((
                    Error::InvalidKePayload,
                    notify(
                        n::INVALID_KE_PAYLOAD,
                        g.transform_id().to_be_bytes().to_vec(),
                    ),
                ));
            }
            (Some(g), Some((_, data))) => {
                let dh = ctx.dh(g);
                let s = dh
                    .agree(data)
                    .map_err(|e| refusal(Error::Crypto(e.to_string())))?;
                ke_out = Some(Payload::Ke {
                    group: g.transform_id(),
                    data: dh.public().to_vec(),
                });
                Some(s)
            }
            _ => None,
        };
        let keys = crypto::child_keys(
            prf,
            &k.keys.sk_d,
            g_ir.as_ref().map(|s| &s[..]),
            ni,
            nr,
            suite.encr,
            suite.integ,
        )
        .map_err(|e| refusal(Error::Crypto(e.to_string())))?;
        let inbound_spi = ctx.new_esp_spi();
        let mut out = vec![Payload::Sa(vec![select::esp_chosen(
            num,
            &suite,
            inbound_spi,
        )])];
        out.extend(ke_out);
        out.push(Payload::TsI(msg::ts_to_wire(&tsi)));
        out.push(Payload::TsR(msg::ts_to_wire(&tsr)));
        if mode == Mode::Transport {
            out.push(notify(n::USE_TRANSPORT_MODE, Vec::new()));
        }
        let id = self.install_child(
            ctx,
            now,
            NewChild {
                inbound_spi,
                outbound_spi: their_spi,
                suite,
                mode,
                local_ts: tsr.into(),
                remote_ts: tsi.into(),
                keys,
                initiator: false,
                replaces,
                cfg: cfg.clone(),
            },
        );
        Ok((out, id))
    }

    /// Initiator: the child SA part of an IKE_AUTH or CREATE_CHILD_SA
    /// response.
    pub(crate) fn complete_child(
        &mut self,
        ctx: &mut Ctx<'_>,
        now: Instant,
        req: ChildReq,
        p: &[Payload],
        ni: &[u8],
        nr: &[u8],
    ) {
        let result = self.accept_child(ctx, now, &req, p, ni, nr);
        match result {
            Ok(id) => {
                if let Some(old) = req.rekeys {
                    self.rekey_done(old, id, ni, nr);
                }
            }
            Err(e) => {
                if let Some(old) = req.rekeys.and_then(|o| self.children.get_mut(&o)) {
                    old.rekeying = false;
                }
                if msg::error_notify(p).is_none() && sa_of(p).is_some() {
                    // The responder installed its half: delete it (RFC 7296
                    // 1.4.1, by our inbound SPI).
                    self.enqueue(Op::DeleteSpi(req.inbound_spi));
                }
                tracing::debug!(sa = self.id.0, error = %e, "child SA failed");
                ctx.out.event(Event::ChildSaFailed {
                    ike_sa: self.id,
                    error: e,
                });
            }
        }
    }

    fn accept_child(
        &mut self,
        ctx: &mut Ctx<'_>,
        now: Instant,
        req: &ChildReq,
        p: &[Payload],
        ni: &[u8],
        nr: &[u8],
    ) -> Result<ChildSaId, Error> {
        if let Some(e) = msg::error_notify(p) {
            return Err(child_error(req, e));
        }
        let sa = sa_of(p).ok_or_else(|| Error::Protocol("no SA payload in the answer".into()))?;
        let (outbound_spi, suite) =
            select::accept_esp(sa, &req.cfg.esp_proposals, req.dh.is_some()).ok_or_else(|| {
                Error::Protocol("responder chose an ESP proposal we did not offer".into())
            })?;
        let tsi = p.iter().find_map(|x| match x {
            Payload::TsI(t) => Some(msg::ts_from_wire(t)),
            _ => None,
        });
        let tsr = p.iter().find_map(|x| match x {
            Payload::TsR(t) => Some(msg::ts_from_wire(t)),
            _ => None,
        });
        let (Some(tsi), Some(tsr)) = (tsi, tsr) else {
            return Err(Error::Protocol("no TSi or TSr in the answer".into()));
        };
        // RFC 7296 2.9: the responder may only narrow.
        if tsi.is_empty()
            || tsr.is_empty()
            || !msg::ts_subset(&tsi, &req.tsi)
            || !msg::ts_subset(&tsr, &req.tsr)
        {
            tracing::debug!(sa = self.id.0, "responder widened the traffic selectors");
            return Err(Error::TsUnacceptable);
        }
        let mode =
            if find_notify(p, n::USE_TRANSPORT_MODE).is_some() && req.cfg.mode == Mode::Transport {
                Mode::Transport
            } else {
                Mode::Tunnel
            };
        let Some((tsi, tsr)) = self.ask_policy(ctx, true, &tsi, &tsr, mode, &suite) else {
            return Err(Error::TsUnacceptable);
        };
        let g_ir = match (suite.dh, &req.dh) {
            (Some(g), Some(dh)) if dh.group() == g => {
                let (kg, data) = ke_of(p).ok_or_else(|| Error::Protocol("no KEr".into()))?;
                if kg != g.transform_id() {
                    return Err(Error::Protocol("KEr of another group".into()));
                }
                Some(dh.agree(data).map_err(|e| Error::Crypto(e.to_string()))?)
            }
            (None, _) => None,
            _ => return Err(Error::Protocol("responder chose another PFS group".into())),
        };
        let k = self.keyed().ok_or(Error::NotEstablished)?;
        let keys = crypto::child_keys(
            k.suite.prf,
            &k.keys.sk_d,
            g_ir.as_ref().map(|s| &s[..]),
            ni,
            nr,
            suite.encr,
            suite.integ,
        )
        .map_err(|e| Error::Crypto(e.to_string()))?;
        Ok(self.install_child(
            ctx,
            now,
            NewChild {
                inbound_spi: req.inbound_spi,
                outbound_spi,
                suite,
                mode,
                local_ts: tsi.into(),
                remote_ts: tsr.into(),
                keys,
                initiator: true,
                replaces: req.rekeys,
                cfg: req.cfg.clone(),
            },
        ))
    }

    /// Our rekey of `old` produced `new` (RFC 7296 1.3.3, 2.8.1).
    fn rekey_done(&mut self, old: ChildSaId, new: ChildSaId, ni: &[u8], nr: &[u8]) {
        let mine = Ord::min(ni, nr).to_vec();
        let Some(o) = self.children.get_mut(&old) else {
            return;
        };
        o.rekeying = false;
        match o.collision.take().map(|c| *c) {
            // RFC 7296 2.8.1: "The SA created with the lowest of the four
            // nonces SHOULD be deleted by the endpoint that created it."
            Some((theirs, _)) if mine < theirs => {
                tracing::debug!(
                    sa = self.id.0,
                    child = new.0,
                    "rekey collision lost, deleting ours"
                );
                o.rekeyed = true;
                self.enqueue(Op::DeleteChild(new));
            }
            _ => {
                o.rekeyed = true;
                self.enqueue(Op::DeleteChild(old));
            }
        }
        tracing::debug!(sa = self.id.0, old = old.0, new = new.0, "child SA rekeyed");
    }

    /// Initiator: send CREATE_CHILD_SA for a new child SA or a rekey
    /// (RFC 7296 1.3.1, 1.3.3).
    pub(crate) fn start_create_child(
        &mut self,
        ctx: &mut Ctx<'_>,
        now: Instant,
        cfg: ChildCfg,
        rekeys: Option<ChildSaId>,
        group: Option<DhGroup>,
    ) {
        let (tsi, tsr, old_spi) = match rekeys.and_then(|id| self.children.get_mut(&id)) {
            Some(c) => {
                c.rekeying = true;
                (
                    c.local_ts.to_vec(),
                    c.remote_ts.to_vec(),
                    Some(c.inbound_spi),
                )
            }
            None if rekeys.is_some() => return,
            None => (cfg.local_ts.clone(), cfg.remote_ts.clone(), None),
        };
        let pfs = group.or_else(|| {
            cfg.esp_proposals
                .first()
                .and_then(|p| p.dh.first())
                .copied()
        });
        let dh = pfs.map(|g| ctx.dh(g));
        let ni = ctx.nonce();
        let inbound_spi = ctx.new_esp_spi();
        let mut payloads = Vec::new();
        if let Some(spi) = old_spi {
            payloads.push(Payload::Notify(Notify {
                protocol_id: protocol::ESP,
                spi: spi.to_be_bytes().to_vec(),
                kind: n::REKEY_SA,
                data: Vec::new(),
            }));
        }
        if cfg.mode == Mode::Transport {
            payloads.push(notify(n::USE_TRANSPORT_MODE, Vec::new()));
        }
        payloads.push(Payload::Sa(select::esp_offer(
            &cfg.esp_proposals,
            inbound_spi,
            true,
        )));
        payloads.push(Payload::Nonce(ni.clone()));
        if let Some(dh) = &dh {
            payloads.push(Payload::Ke {
                group: dh.group().transform_id(),
                data: dh.public().to_vec(),
            });
        }
        payloads.push(Payload::TsI(msg::ts_to_wire(&tsi)));
        payloads.push(Payload::TsR(msg::ts_to_wire(&tsr)));
        let req = ChildReq {
            cfg,
            inbound_spi,
            ni: Some(ni),
            dh,
            rekeys,
            tsi,
            tsr,
            ke_tries: u8::from(group.is_some()),
        };
        self.request(
            ctx,
            now,
            exchange::CREATE_CHILD_SA,
            &payloads,
            PendingKind::CreateChild(Box::new(req)),
        );
    }

    /// Initiator: CREATE_CHILD_SA response for a child SA.
    pub(crate) fn on_create_child_response(
        &mut self,
        ctx: &mut Ctx<'_>,
        now: Instant,
        req: Box<ChildReq>,
        p: &[Payload],
    ) {
        if let Some(e) = msg::error_notify(p) {
            // RFC 7296 1.3: retry with the group the responder wants.
            if e.kind == n::INVALID_KE_PAYLOAD && req.ke_tries == 0 {
                let g = <[u8; 2]>::try_from(&e.data[..])
                    .ok()
                    .and_then(|b| DhGroup::from_wire(u16::from_be_bytes(b)))
                    .filter(|g| req.cfg.esp_proposals.iter().any(|x| x.dh.contains(g)));
                if let Some(g) = g {
                    if let Some(old) = req.rekeys.and_then(|o| self.children.get_mut(&o)) {
                        old.rekeying = false;
                    }
                    self.start_create_child(ctx, now, req.cfg, req.rekeys, Some(g));
                    return;
                }
            }
            // RFC 7296 2.25: a rekey refused for now is tried again later.
            if e.kind == n::TEMPORARY_FAILURE {
                if let Some(old) = req.rekeys {
                    let d = retry_delay(ctx);
                    if let Some(o) = self.children.get_mut(&old) {
                        o.rekeying = false;
                        if !o.rekeyed {
                            o.rekey_at = Some(later(now, d));
                        }
                    }
                    return;
                }
            }
        }
        let Some(nr) = nonce_of(p).map(|x| x.to_vec()) else {
            let error = msg::error_notify(p).map_or_else(
                || Error::Protocol("CREATE_CHILD_SA response without Nr".into()),
                |e| child_error(&req, e),
            );
            if let Some(old) = req.rekeys.and_then(|o| self.children.get_mut(&o)) {
                old.rekeying = false;
            }
            ctx.out.event(Event::ChildSaFailed {
                ike_sa: self.id,
                error,
            });
            return;
        };
        let ni = req.ni.clone().unwrap_or_default();
        self.complete_child(ctx, now, *req, p, &ni, &nr);
    }

    /// Responder: a CREATE_CHILD_SA request (RFC 7296 1.3).
    pub(crate) fn on_create_child_request(
        &mut self,
        ctx: &mut Ctx<'_>,
        now: Instant,
        p: &[Payload],
    ) -> Vec<Payload> {
        let Some(sa) = sa_of(p) else {
            return vec![notify(n::INVALID_SYNTAX, Vec::new())];
        };
        if sa.first().is_some_and(|x| x.protocol_id == protocol::IKE) {
            return self.on_rekey_ike_request(ctx, now, p);
        }
        let Some(ni) = nonce_of(p)
            .filter(|x| (16..=256).contains(&x.len()))
            .map(|x| x.to_vec())
        else {
            return vec![notify(n::INVALID_SYNTAX, Vec::new())];
        };
        if self.children.len() >= MAX_CHILDREN {
            return vec![notify(n::NO_ADDITIONAL_SAS, Vec::new())];
        }
        let Some(peer) = self.peer.clone() else {
            return vec![notify(n::INVALID_SYNTAX, Vec::new())];
        };
        // RFC 7296 1.3.3: REKEY_SA names the SA by the initiator's inbound
        // SPI, our outbound one.
        let mut replaces = None;
        let mut cfg = ChildCfg::Peer(peer);
        if let Some(r) = find_notify(p, n::REKEY_SA) {
            let old = msg::spi32(&r.spi)
                .and_then(|spi| self.children.values().find(|c| c.outbound_spi == spi));
            let Some(old) = old else {
                return vec![Payload::Notify(Notify {
                    protocol_id: r.protocol_id,
                    spi: r.spi.clone(),
                    kind: n::CHILD_SA_NOT_FOUND,
                    data: Vec::new(),
                })];
            };
            // RFC 7296 2.25.1: a child SA we are closing (or have replaced)
            // is not rekeyed.
            let closing = match self.pending.as_ref().map(|p| &p.kind) {
                Some(PendingKind::DeleteChild(ids)) => ids.contains(&old.id),
                _ => false,
            } || self
                .queue
                .iter()
                .any(|o| matches!(o, Op::DeleteChild(id) if *id == old.id));
            if old.rekeyed || closing {
                return vec![notify(n::TEMPORARY_FAILURE, Vec::new())];
            }
            replaces = Some(old.id);
            cfg = old.cfg.clone();
        }
        let nr = ctx.nonce();
        match self.respond_child(ctx, now, p, &ni, &nr, ke_of(p), &cfg, replaces) {
            Ok((mut out, new)) => {
                out.insert(1, Payload::Nonce(nr.clone()));
                if let Some(o) = replaces.and_then(|id| self.children.get_mut(&id)) {
                    if o.rekeying {
                        // RFC 7296 2.8.1: a simultaneous rekey; decided
                        // when our own exchange completes.
                        o.collision = Some(Box::new((Ord::min(&ni[..], &nr[..]).to_vec(), new)));
                    } else {
                        o.superseded = true;
                    }
                }
                out
            }
            Err((e, pl)) => {
                ctx.out.event(Event::ChildSaFailed {
                    ike_sa: self.id,
                    error: e,
                });
                vec![pl]
            }
        }
    }
}
