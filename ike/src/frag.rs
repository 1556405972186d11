//! IKE fragmentation (RFC 7383): splitting an encrypted message into SKF
//! fragments, each encrypted and authenticated on its own (2.5), and
//! reassembling the peer's fragments within bounds a peer cannot abuse
//! (2.6): at most [`crate::FragmentationConfig::max_fragments`] fragments
//! and [`crate::FragmentationConfig::max_message`] octets, one message per
//! direction at a time (a newer message ID replaces an older one),
//! discarded after [`REASSEMBLY_TIMEOUT`], and every fragment
//! authenticated before it is stored.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::api::DropReason;
use crate::sa::{Ctx, IkeSa};
use crate::wire::{self, payload_type, EncryptedFragment, Header, Message, Payload};

/// How long an incomplete reassembly is kept.
pub(crate) const REASSEMBLY_TIMEOUT: Duration = Duration::from_secs(30);

/// Slots of [`IkeSa::reassembly`].
pub(crate) const REQUEST: usize = 0;
/// The slot for responses to our requests.
pub(crate) const RESPONSE: usize = 1;

/// IPv4 header + UDP header; IPv6 adds 20 more.
const IPV4_UDP: usize = 28;
const IPV6_UDP: usize = 48;
/// The non-ESP marker on the NAT-T port (RFC 3948).
const NON_ESP_MARKER: usize = 4;
/// The SKF payload header: generic header and Fragment Number / Total.
const SKF_HEADER: usize = 8;
/// Room for CBC padding in a fragment.
const PAD_SLACK: usize = 16;
/// The smallest piece of content per fragment we split into.
const MIN_CHUNK: usize = 64;

/// A message being reassembled.
pub(crate) struct Reassembly {
    msg_id: u32,
    exchange: u8,
    total: u16,
    first_inner: u8,
    /// Decrypted (authentic) contents by fragment number.
    parts: BTreeMap<u16, Vec<u8>>,
    size: usize,
    started: Instant,
}

/// The IKE header followed by the SKF payload header (RFC 7383 2.5): the
/// AAD / integrity-protected prefix of one fragment.
fn skf_prefix(
    header: &Header,
    first_inner: u8,
    number: u16,
    total: u16,
    body_len: usize,
) -> Vec<u8> {
    let skf_len = SKF_HEADER + body_len;
    let len = Header::LEN + skf_len;
    let mut h = *header;
    h.next_payload = payload_type::SKF;
    h.length = u32::try_from(len).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&h.to_bytes());
    out.push(first_inner);
    out.push(0);
    out.extend_from_slice(&u16::try_from(skf_len).unwrap_or(u16::MAX).to_be_bytes());
    out.extend_from_slice(&number.to_be_bytes());
    out.extend_from_slice(&total.to_be_bytes());
    out
}

impl IkeSa {
    /// The largest IKE message we send to `remote` from `local` before
    /// fragmenting (RFC 7383 2.5.1).
    fn max_message(&self, ctx: &Ctx<'_>, local: SocketAddr) -> usize {
        let ip = if self.remote.is_ipv4() {
            IPV4_UDP
        } else {
            IPV6_UDP
        };
        let marker = if local.port() == ctx.config.natt_port
            && ctx.config.natt_port != ctx.config.ike_port
        {
            NON_ESP_MARKER
        } else {
            0
        };
        usize::from(ctx.config.fragmentation.max_datagram).saturating_sub(ip + marker)
    }

    /// Encrypt payloads into one message (RFC 7296 3.14) or, with
    /// fragmentation negotiated and the message too large, into SKF
    /// fragments (RFC 7383 2.5). `None` when encryption fails.
    pub(crate) fn seal_datagrams(
        &self,
        ctx: &mut Ctx<'_>,
        exchange: u8,
        response: bool,
        msg_id: u32,
        payloads: &[Payload],
    ) -> Option<Vec<Vec<u8>>> {
        let k = self.keyed()?;
        let (first, plain) = wire::emit_payload_chain(payloads);
        let header = self.header(exchange, response, msg_id);
        let whole = Header::LEN + 4 + k.seal.sealed_len(plain.len());
        let budget = self.max_message(ctx, self.local);
        if !self.frag || whole <= budget {
            let mut msg = crate::msg::sk_prefix(&header, first, k.seal.sealed_len(plain.len()));
            let body = k
                .seal
                .seal(&mut *ctx.rng, &msg, &plain)
                .map_err(|e| tracing::debug!(error = ?e, "SK seal failed"))
                .ok()?;
            msg.extend_from_slice(&body);
            return Some(vec![msg]);
        }
        let overhead = Header::LEN + SKF_HEADER + k.seal.sealed_len(0) + PAD_SLACK;
        let chunk = budget.saturating_sub(overhead).max(MIN_CHUNK);
        let pieces: Vec<&[u8]> = plain.chunks(chunk).collect();
        let total = u16::try_from(pieces.len()).ok()?;
        let mut out = Vec::with_capacity(pieces.len());
        for (i, piece) in pieces.iter().enumerate() {
            let number = u16::try_from(i + 1).ok()?;
            //= https://www.rfc-editor.org/rfc/rfc7383#section-2.5
            //# In the first fragment, the Next Payload field MUST be set to
            //# the type of the first payload inside the original message; in
            //# all other fragments, it MUST be set to zero.
            let np = if i == 0 { first } else { 0 };
            let mut msg = skf_prefix(&header, np, number, total, k.seal.sealed_len(piece.len()));
            let body = k
                .seal
                .seal(&mut *ctx.rng, &msg, piece)
                .map_err(|e| tracing::debug!(error = ?e, "SKF seal failed"))
                .ok()?;
            msg.extend_from_slice(&body);
            out.push(msg);
        }
        tracing::debug!(sa = self.id.0, msg_id, total, "message sent in fragments");
        Some(out)
    }

    /// Authenticate and decrypt one SKF fragment (RFC 7383 2.6). Bounds
    /// that need no key are checked first.
    pub(crate) fn open_fragment<'m>(
        &self,
        ctx: &Ctx<'_>,
        buf: &[u8],
        msg: &'m Message,
    ) -> Result<(&'m EncryptedFragment, Vec<u8>), (DropReason, &'static str)> {
        let Some(Payload::EncryptedFragment(f)) = msg.payloads.last() else {
            return Err((DropReason::InvalidPayload, "no SKF payload"));
        };
        if !self.frag {
            return Err((
                DropReason::FragmentLimit,
                "fragment without fragmentation negotiated",
            ));
        }
        if f.total > ctx.config.fragmentation.max_fragments {
            return Err((DropReason::FragmentLimit, "too many fragments"));
        }
        let k = self
            .keyed()
            .ok_or((DropReason::WrongState, "fragment before keys"))?;
        let len = usize::try_from(msg.header.length).unwrap_or(usize::MAX);
        let buf = buf.get(..len).unwrap_or(buf);
        let aad = buf
            .len()
            .checked_sub(f.body.len())
            .and_then(|n| buf.get(..n))
            .ok_or((DropReason::Malformed, "fragment"))?;
        let plain = k
            .open
            .open(aad, &f.body)
            .map_err(|_| (DropReason::IntegrityFailed, "fragment"))?;
        Ok((f, plain))
    }

    /// A received encrypted message: its payloads when complete (`SK`, or
    /// the last missing `SKF` fragment), `Ok(None)` while fragments are
    /// missing (or the fragment was refused and counted). `slot` is
    /// [`REQUEST`] or [`RESPONSE`]; `retransmit`: for requests, whether
    /// the message ID is that of the request last answered (then only
    /// fragment 1 asks for the cached response again, RFC 7383 2.6.1).
    pub(crate) fn open_any(
        &mut self,
        ctx: &mut Ctx<'_>,
        now: Instant,
        buf: &[u8],
        msg: &Message,
        slot: usize,
    ) -> Result<Option<Vec<Payload>>, DropReason> {
        if !matches!(msg.payloads.last(), Some(Payload::EncryptedFragment(_))) {
            return self.open(buf, msg).map(Some);
        }
        let (f, plain) = match self.open_fragment(ctx, buf, msg) {
            Ok(x) => x,
            Err((r, why)) => {
                ctx.out.drop(r, why);
                return Ok(None);
            }
        };
        ctx.out.stats.fragments_in += 1;
        Ok(self.add_fragment(
            ctx,
            now,
            slot,
            msg.header.message_id,
            msg.header.exchange,
            f,
            plain,
        ))
    }

    /// Whether an authentic fragment is fragment 1 (a retransmitted
    /// request's first fragment asks for the cached response again).
    pub(crate) fn fragment_number(msg: &Message) -> Option<u16> {
        match msg.payloads.last() {
            Some(Payload::EncryptedFragment(f)) => Some(f.number),
            _ => None,
        }
    }

    #[allow(clippy::too_many_arguments, reason = "one fragment's facts")]
    fn add_fragment(
        &mut self,
        ctx: &mut Ctx<'_>,
        now: Instant,
        slot: usize,
        msg_id: u32,
        exchange: u8,
        f: &EncryptedFragment,
        plain: Vec<u8>,
    ) -> Option<Vec<Payload>> {
        let max_message = ctx.config.fragmentation.max_message;
        let entry = self.reassembly.get_mut(slot)?;
        // Stale or superseded reassemblies go (RFC 7383 2.6.1: a newer
        // message, or more fragments of the same one, wins).
        if let Some(r) = entry.as_deref() {
            let expired = now.saturating_duration_since(r.started) > REASSEMBLY_TIMEOUT;
            if expired || msg_id > r.msg_id || (msg_id == r.msg_id && f.total > r.total) {
                *entry = None;
            } else if msg_id < r.msg_id || f.total < r.total || r.exchange != exchange {
                ctx.out
                    .drop(DropReason::FragmentLimit, "fragment of an older message");
                return None;
            }
        }
        let r = entry.get_or_insert_with(|| {
            Box::new(Reassembly {
                msg_id,
                exchange,
                total: f.total,
                first_inner: 0,
                parts: BTreeMap::new(),
                size: 0,
                started: now,
            })
        });
        if r.parts.contains_key(&f.number) {
            // A duplicate (a retransmission): nothing new.
            return None;
        }
        if r.size.saturating_add(plain.len()) > max_message {
            *entry = None;
            ctx.out
                .drop(DropReason::FragmentLimit, "reassembled message too large");
            return None;
        }
        if f.number == 1 {
            r.first_inner = f.first_inner;
        }
        r.size += plain.len();
        r.parts.insert(f.number, plain);
        if r.parts.len() < usize::from(r.total) {
            return None;
        }
        let r = entry.take()?;
        let mut whole = Vec::with_capacity(r.size);
        for p in r.parts.values() {
            whole.extend_from_slice(p);
        }
        ctx.out.stats.reassembled += 1;
        match wire::parse_payload_chain(r.first_inner, &whole) {
            Ok(p) => Some(p),
            Err(e) => {
                ctx.out
                    .drop(DropReason::Malformed, &format!("reassembled message: {e}"));
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skf_prefix_layout() {
        let h = Header {
            spi_i: 1,
            spi_r: 2,
            next_payload: 0,
            version: 0x20,
            exchange: 35,
            flags: 0x08,
            message_id: 1,
            length: 0,
        };
        let p = skf_prefix(&h, payload_type::IDI, 2, 3, 100);
        assert_eq!(p.len(), 36);
        assert_eq!(p[16], payload_type::SKF);
        assert_eq!(&p[24..28], &(136u32).to_be_bytes());
        assert_eq!(p[28], payload_type::IDI);
        assert_eq!(&p[30..32], &(108u16).to_be_bytes());
        assert_eq!(&p[32..36], &[0, 2, 0, 3]);
    }
}
