//! Dispatch of one IKE SA's messages (RFC 7296 2.1, 2.2: one request in
//! flight per direction, duplicate requests answered from the cache) and
//! the INFORMATIONAL exchange (RFC 7296 1.4, 1.5, 2.4).

use std::net::SocketAddr;
use std::time::Instant;

use crate::api::{DropReason, Error};
use crate::msg::{self, notify};
use crate::sa::{later, Ctx, IkeSa, Op, PendingKind, Phase, State, LINGER};
use crate::wire::{self, exchange, notify as n, protocol, Delete, Message, Payload};

impl IkeSa {
    /// A parsed message for this SA; `buf` is the datagram.
    pub(crate) fn handle(
        &mut self,
        ctx: &mut Ctx<'_>,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        buf: &[u8],
        msg: &Message,
    ) {
        if msg.header.is_response() {
            self.handle_response(ctx, now, local, remote, buf, msg);
        } else {
            self.handle_request(ctx, now, local, remote, buf, msg);
        }
        if !self.dead {
            self.start_next(ctx, now);
        }
    }

    fn handle_response(
        &mut self,
        ctx: &mut Ctx<'_>,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        buf: &[u8],
        msg: &Message,
    ) {
        let h = &msg.header;
        // RFC 7296 2.2: the I flag tells who sent it; a response must come
        // from the other side of the SA.
        if h.is_initiator() == self.initiator {
            ctx.out.drop(
                DropReason::UnexpectedResponse,
                "response with our own I flag",
            );
            return;
        }
        if matches!(self.state, State::InitSent(_)) {
            if h.exchange == exchange::IKE_SA_INIT {
                self.on_init_response(ctx, now, buf, msg);
            } else {
                ctx.out
                    .drop(DropReason::WrongState, "encrypted response before keys");
            }
            return;
        }
        let Some(p) = &self.pending else {
            ctx.out
                .drop(DropReason::UnexpectedResponse, "no request outstanding");
            return;
        };
        // RFC 7296 2.2: a response must match the outstanding request.
        if p.msg_id != h.message_id || p.exchange != h.exchange {
            ctx.out.drop(
                DropReason::UnexpectedResponse,
                "message ID of no outstanding request",
            );
            return;
        }
        // RFC 7296 2.21: messages failing integrity are dropped silently.
        let payloads = match self.open_any(ctx, now, buf, msg, crate::frag::RESPONSE) {
            Ok(Some(p)) => p,
            Ok(None) => {
                // A fragment stored (or refused): more to come.
                return;
            }
            Err(r) => {
                ctx.out.drop(r, "response");
                return;
            }
        };
        self.heard(now);
        self.follow_nat(ctx, local, remote);
        let Some(kind) = self.complete(ctx) else {
            return;
        };
        match kind {
            PendingKind::Init => {}
            PendingKind::Auth(req) => self.on_auth_response(ctx, now, req, &payloads),
            PendingKind::CreateChild(req) => {
                self.on_create_child_response(ctx, now, req, &payloads)
            }
            PendingKind::RekeyIke(req) => self.on_rekey_ike_response(ctx, now, *req, &payloads),
            PendingKind::DeleteChild(ids) => {
                for id in ids {
                    self.remove_child(ctx, id);
                }
            }
            PendingKind::DeleteIke => self.deleted(ctx),
            PendingKind::Liveness | PendingKind::Notify => {}
        }
    }

    fn handle_request(
        &mut self,
        ctx: &mut Ctx<'_>,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        buf: &[u8],
        msg: &Message,
    ) {
        let h = &msg.header;
        if h.is_initiator() == self.initiator {
            ctx.out
                .drop(DropReason::InvalidPayload, "request with our own I flag");
            return;
        }
        if h.exchange == exchange::IKE_SA_INIT {
            // Retransmissions with spi_r = 0 are answered by the endpoint;
            // this one carries our SPI.
            ctx.out.drop(
                DropReason::DuplicateInit,
                "IKE_SA_INIT request to a known SA",
            );
            return;
        }
        if self.keyed().is_none() {
            ctx.out.drop(DropReason::WrongState, "request before keys");
            return;
        }
        let fragment = Self::fragment_number(msg);
        let retransmitted = h.message_id.wrapping_add(1) == self.peer_next
            && self.cached.as_ref().is_some_and(|c| c.0 == h.message_id);
        if fragment.is_some() && !retransmitted && h.message_id != self.peer_next {
            ctx.out
                .drop(DropReason::InvalidMessageId, "fragment outside the window");
            return;
        }
        let payloads = if retransmitted && fragment.is_some() {
            // Authenticate it, but store nothing.
            if let Err((r, why)) = self.open_fragment(ctx, buf, msg) {
                ctx.out.drop(r, why);
                return;
            }
            Vec::new()
        } else {
            match self.open_any(ctx, now, buf, msg, crate::frag::REQUEST) {
                Ok(Some(p)) => p,
                Ok(None) => return,
                Err(r) => {
                    ctx.out.drop(r, "request");
                    return;
                }
            }
        };
        // RFC 7296 2.1, 2.2: a retransmitted request gets the cached
        // response again, unprocessed.
        if retransmitted {
            //= https://www.rfc-editor.org/rfc/rfc7383#section-2.6.1
            //# that event MUST only trigger retransmission of the response
            //# message (fragmented or not) if the Fragment Number field in
            //# the received fragment is set to 1
            if fragment.is_none_or(|n| n == 1) {
                if let Some((_, data, from, to)) = &self.cached {
                    ctx.out.stats.cached_responses += 1;
                    data.resend(ctx.out, *from, *to);
                }
            }
            return;
        }
        if h.message_id != self.peer_next {
            ctx.out
                .drop(DropReason::InvalidMessageId, "request outside the window");
            return;
        }
        let phase_ok = match self.keyed().map(|k| &k.phase) {
            Some(Phase::AwaitAuth(_)) => h.exchange == exchange::IKE_AUTH,
            Some(Phase::Established) => matches!(
                h.exchange,
                exchange::CREATE_CHILD_SA | exchange::INFORMATIONAL
            ),
            Some(Phase::Closing) => matches!(
                h.exchange,
                exchange::CREATE_CHILD_SA | exchange::INFORMATIONAL
            ),
            _ => false,
        };
        if !phase_ok {
            ctx.out
                .drop(DropReason::WrongState, "exchange not valid in this state");
            return;
        }
        self.heard(now);
        self.follow_nat(ctx, local, remote);
        self.peer_next = self.peer_next.wrapping_add(1);
        let to = (local, remote);
        // RFC 7296 2.5: an unrecognized payload with the critical bit set
        // rejects the whole message.
        if let Some(t) = msg::unsupported_critical(&payloads) {
            let p = [notify(n::UNSUPPORTED_CRITICAL_PAYLOAD, vec![t])];
            self.respond(ctx, h.exchange, h.message_id, &p, to);
            if h.exchange == exchange::IKE_AUTH {
                self.fail(
                    ctx,
                    Error::Protocol(format!("unsupported critical payload {t}")),
                );
            }
            return;
        }
        match h.exchange {
            exchange::IKE_AUTH => {
                let resp = self.on_auth_request(ctx, now, local, remote, &payloads);
                self.respond(ctx, h.exchange, h.message_id, &resp, to);
                if self.dead {
                    // RFC 7296 2.21.2: the half-open state is gone; only the
                    // AUTHENTICATION_FAILED answer lingers, for retransmitted
                    // requests (2.1).
                    self.dead = false;
                    if let Some(k) = self.keyed_mut() {
                        k.phase = Phase::Closing;
                    }
                    self.expire_at = Some(later(now, LINGER));
                }
            }
            exchange::CREATE_CHILD_SA if self.closing() => {
                // RFC 7296 2.25.2: an IKE SA being closed (or rekeyed away)
                // takes no new work.
                let p = [notify(n::TEMPORARY_FAILURE, Vec::new())];
                self.respond(ctx, h.exchange, h.message_id, &p, to);
            }
            exchange::CREATE_CHILD_SA => {
                let resp = self.on_create_child_request(ctx, now, &payloads);
                self.respond(ctx, h.exchange, h.message_id, &resp, to);
            }
            _ => {
                let (resp, after) = self.on_informational(ctx, &payloads);
                self.respond(ctx, h.exchange, h.message_id, &resp, to);
                match after {
                    After::Nothing => {}
                    After::Deleted => self.deleted(ctx),
                    After::Failed(e) => self.fail(ctx, e),
                }
            }
        }
    }

    /// Responder side of INFORMATIONAL (RFC 7296 1.4, 1.5, 2.4).
    fn on_informational(&mut self, ctx: &mut Ctx<'_>, p: &[Payload]) -> (Vec<Payload>, After) {
        let mut out = Vec::new();
        let mut after = After::Nothing;
        for pl in p {
            match pl {
                Payload::Delete(d) if d.protocol_id == protocol::IKE => {
                    // RFC 7296 1.4.1: deleting the IKE SA takes every child
                    // SA with it; the response is empty.
                    after = After::Deleted;
                }
                Payload::Delete(d)
                    if d.protocol_id == protocol::ESP || d.protocol_id == protocol::AH =>
                {
                    let ours_pending: Vec<_> = match self.pending.as_ref().map(|p| &p.kind) {
                        Some(PendingKind::DeleteChild(ids)) => ids.clone(),
                        _ => Vec::new(),
                    };
                    let mut spis = Vec::new();
                    for spi in d.spis.iter().filter_map(|s| msg::spi32(s)) {
                        let Some(id) = self
                            .children
                            .values()
                            .find(|c| c.outbound_spi == spi)
                            .map(|c| c.id)
                        else {
                            continue;
                        };
                        // RFC 7296 1.4.1: answer with our inbound SPI of the
                        // pair, unless we are deleting it ourselves.
                        if !ours_pending.contains(&id) {
                            if let Some(c) = self.children.get(&id) {
                                spis.push(c.inbound_spi.to_be_bytes().to_vec());
                            }
                        }
                        self.remove_child(ctx, id);
                    }
                    if !spis.is_empty() {
                        out.push(Payload::Delete(Delete {
                            protocol_id: d.protocol_id,
                            spi_size: 4,
                            spis,
                        }));
                    }
                }
                Payload::Notify(x) if wire::notify::is_error(x.kind) && x.spi.is_empty() => {
                    // An error about the IKE SA itself (e.g. the initiator
                    // refusing our AUTH, RFC 7296 2.21.2).
                    after = After::Failed(Error::from_notify(x.kind));
                }
                _ => {}
            }
        }
        if matches!(after, After::Deleted) {
            out.clear();
        }
        (out, after)
    }

    /// Start queued operations while the request window is free (RFC 7296
    /// 2.3: window size 1).
    pub(crate) fn start_next(&mut self, ctx: &mut Ctx<'_>, now: Instant) {
        while self.pending.is_none() && !self.dead && self.established() {
            let Some(op) = self.queue.pop_front() else {
                return;
            };
            match op {
                Op::CreateChild(cfg) => self.start_create_child(ctx, now, cfg, None, None),
                Op::RekeyChild(id) => {
                    let Some(c) = self.children.get(&id) else {
                        continue;
                    };
                    if c.rekeyed || c.superseded || c.rekeying {
                        continue;
                    }
                    let cfg = c.cfg.clone();
                    self.start_create_child(ctx, now, cfg, Some(id), None);
                }
                Op::RekeyIke => self.start_rekey_ike(ctx, now),
                Op::DeleteChild(id) => {
                    let Some(c) = self.children.get(&id) else {
                        continue;
                    };
                    let d = Delete {
                        protocol_id: protocol::ESP,
                        spi_size: 4,
                        spis: vec![c.inbound_spi.to_be_bytes().to_vec()],
                    };
                    self.request(
                        ctx,
                        now,
                        exchange::INFORMATIONAL,
                        &[Payload::Delete(d)],
                        PendingKind::DeleteChild(vec![id]),
                    );
                }
                Op::DeleteSpi(spi) => {
                    let d = Delete {
                        protocol_id: protocol::ESP,
                        spi_size: 4,
                        spis: vec![spi.to_be_bytes().to_vec()],
                    };
                    self.request(
                        ctx,
                        now,
                        exchange::INFORMATIONAL,
                        &[Payload::Delete(d)],
                        PendingKind::Notify,
                    );
                }
                Op::DeleteIke => self.send_delete_ike(ctx, now),
                Op::Liveness => {
                    self.request(
                        ctx,
                        now,
                        exchange::INFORMATIONAL,
                        &[],
                        PendingKind::Liveness,
                    );
                }
            }
        }
    }

    /// Send the Delete of this IKE SA (RFC 7296 1.4.1).
    pub(crate) fn send_delete_ike(&mut self, ctx: &mut Ctx<'_>, now: Instant) {
        let d = Delete {
            protocol_id: protocol::IKE,
            spi_size: 0,
            spis: Vec::new(),
        };
        self.request(
            ctx,
            now,
            exchange::INFORMATIONAL,
            &[Payload::Delete(d)],
            PendingKind::DeleteIke,
        );
    }
}

/// What to do once an INFORMATIONAL request is answered.
enum After {
    Nothing,
    Deleted,
    Failed(Error),
}
