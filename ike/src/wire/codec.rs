//! Parsing and emitting (RFC 7296 3, RFC 7383 2.5).
//!
//! Decisions taken here, beyond the RFC text:
//! - The datagram must be exactly one message: the header's Length field
//!   must equal the datagram's length ([`ParseError::BadLength`] with
//!   `what = "message"` otherwise). RFC 7296 3.1 defines Length as the
//!   length of the total message; with UDP there is no second message to
//!   find after it, so extra octets are an error, not padding.
//! - Reserved fields and bits are ignored on receipt (RFC 7296 3.2) and
//!   emitted as zero. The critical bit is kept only for
//!   [`Payload::Unknown`]; known payloads are emitted with it clear.
//! - A length field that points beyond its container is
//!   [`ParseError::BadLength`]; a fixed-size field that is cut off is
//!   [`ParseError::Truncated`]; octets left after the last element that a
//!   count or a chain announced are [`ParseError::TrailingData`].
//! - A TS_IPV4_ADDR_RANGE / TS_IPV6_ADDR_RANGE selector whose length is not
//!   16 / 40 is an error; one whose start address is above its end address
//!   is kept as [`WireTs::Other`], so it round-trips and the state machine
//!   can refuse it.
//! - Proposal numbers and SPI sizes are not checked against the protocol
//!   here: a response carries the number of the accepted proposal, and
//!   which SPI size is right depends on the exchange. The state machine
//!   checks them.
//!
//! [`Message::emit`] cannot fail. Values that do not fit their wire fields
//! (see the module documentation of [`super`]) are clamped so that the
//! output is still self-consistent.

use super::reader::Reader;
use super::{
    payload_type as pt, Attribute, CpAttribute, Delete, Encrypted, EncryptedFragment, Header,
    Message, Notify, ParseError, Payload, Proposal, Transform, WireTs,
};
use pad::{IpRange, TrafficSelector};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// At most this many payloads in one chain.
pub const MAX_PAYLOADS: usize = 64;
/// At most this many proposals in one SA payload.
pub const MAX_PROPOSALS: usize = 64;
/// At most this many transforms in one proposal.
pub const MAX_TRANSFORMS: usize = 64;
/// At most this many attributes in one transform.
pub const MAX_ATTRIBUTES: usize = 16;
/// At most this many traffic selectors in one TS payload.
pub const MAX_TRAFFIC_SELECTORS: usize = 64;
/// At most this many attributes in one CP payload.
pub const MAX_CP_ATTRIBUTES: usize = 64;

/// Largest payload body: a 16-bit length minus the 4-octet generic header.
const MAX_BODY: usize = u16::MAX as usize - 4;

impl Header {
    /// Decode the 28 header octets at the start of `buf`, checking nothing
    /// but their presence (no version or length check). For answering a
    /// message that [`header_only`] refuses, e.g. with
    /// INVALID_MAJOR_VERSION (RFC 7296 2.5).
    pub fn parse_raw(buf: &[u8]) -> Result<Self, ParseError> {
        // Take all 28 octets first, so a short buffer reports the header's
        // full size; the reads below cannot fail.
        let mut h = Reader::new(Reader::new(buf).take(Self::LEN, "header")?);
        let spi_i = u64::from_be_bytes(h.array::<8>("header")?);
        let spi_r = u64::from_be_bytes(h.array::<8>("header")?);
        let [next_payload, version, exchange, flags] = h.array::<4>("header")?;
        let message_id = u32::from_be_bytes(h.array::<4>("header")?);
        let length = u32::from_be_bytes(h.array::<4>("header")?);
        Ok(Self {
            spi_i,
            spi_r,
            next_payload,
            version,
            exchange,
            flags,
            message_id,
            length,
        })
    }

    /// The major version (high nibble of `version`).
    pub fn major_version(&self) -> u8 {
        self.version >> 4
    }

    /// The 28 header octets, with every field as it is in `self`.
    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        let fields = self
            .spi_i
            .to_be_bytes()
            .into_iter()
            .chain(self.spi_r.to_be_bytes())
            .chain([self.next_payload, self.version, self.exchange, self.flags])
            .chain(self.message_id.to_be_bytes())
            .chain(self.length.to_be_bytes());
        for (o, b) in out.iter_mut().zip(fields) {
            *o = b;
        }
        out
    }
}

/// Decode and check the header of a datagram without parsing its payloads
/// (for fast dispatch on SPIs, exchange type and message ID).
///
/// Checks: 28 octets present, major version 2 ([`ParseError::BadVersion`]),
/// Length field equal to `buf.len()` ([`ParseError::BadLength`]).
pub fn header_only(buf: &[u8]) -> Result<Header, ParseError> {
    let h = Header::parse_raw(buf)?;
    //= https://www.rfc-editor.org/rfc/rfc7296#section-3.1
    //# Implementations based on this version of the protocol MUST set the
    //# major version to 2 and MUST drop the messages with a higher major
    //# version number.
    if h.major_version() != 2 {
        return Err(ParseError::BadVersion(h.major_version()));
    }
    if usize::try_from(h.length).ok() != Some(buf.len()) {
        return Err(ParseError::BadLength {
            what: "message",
            len: usize::try_from(h.length).unwrap_or(usize::MAX),
        });
    }
    Ok(h)
}

/// The prefix of an encrypted message up to the start of the SK body: the
/// 28-octet header (with `next_payload` = SK and `length` = 28 + 4 +
/// `body_len`; the other fields from `header`) followed by the SK generic
/// payload header (next payload = `first_inner`, length = 4 + `body_len`).
///
/// This is the associated data of an AEAD (RFC 5282 5.1) and the start of
/// the integrity-protected region; the message on the wire is
/// `sk_prefix(..) || body`, the same octets [`Message::emit`] writes for a
/// message whose only payload is [`Payload::Encrypted`].
pub fn sk_prefix(header: &Header, first_inner: u8, body_len: usize) -> Vec<u8> {
    let mut h = *header;
    h.next_payload = pt::SK;
    h.length = u32::try_from(Header::LEN + 4 + body_len).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(Header::LEN + 4);
    out.extend_from_slice(&h.to_bytes());
    out.extend_from_slice(&generic_header(first_inner, false, body_len));
    out
}

impl Message {
    /// Parse a whole message (header and outer payload chain). See
    /// [`header_only`] for the header checks.
    pub fn parse(buf: &[u8]) -> Result<Self, ParseError> {
        let header = header_only(buf)?;
        let chain = buf.get(Header::LEN..).unwrap_or_default();
        let payloads = parse_payload_chain(header.next_payload, chain)?;
        Ok(Self { header, payloads })
    }

    /// Emit the message; `header.next_payload` and `header.length` are
    /// computed from the payloads.
    pub fn emit(&self) -> Vec<u8> {
        let (first, chain) = emit_payload_chain(&self.payloads);
        let mut h = self.header;
        h.next_payload = first;
        h.length = u32::try_from(Header::LEN + chain.len()).unwrap_or(u32::MAX);
        let mut out = Vec::with_capacity(Header::LEN + chain.len());
        out.extend_from_slice(&h.to_bytes());
        out.extend_from_slice(&chain);
        out
    }

    /// A message with `header.next_payload` and `header.length` set to the
    /// values [`Message::emit`] will write, so that
    /// `Message::parse(&m.emit()) == Ok(m)`.
    pub fn new(header: Header, payloads: Vec<Payload>) -> Self {
        let mut m = Self { header, payloads };
        let (first, chain) = emit_payload_chain(&m.payloads);
        m.header.next_payload = first;
        m.header.length = u32::try_from(Header::LEN + chain.len()).unwrap_or(u32::MAX);
        m
    }
}

/// Parse a chain of payloads starting with type `first`, e.g. the decrypted
/// content of an SK payload.
///
/// An SK or SKF payload ends the chain: its Next Payload field is the type
/// of the first inner payload, and anything after it is
/// [`ParseError::EncryptedNotLast`].
pub fn parse_payload_chain(first: u8, buf: &[u8]) -> Result<Vec<Payload>, ParseError> {
    let mut r = Reader::new(buf);
    let mut next = first;
    let mut out = Vec::new();
    while next != pt::NONE {
        if out.len() >= MAX_PAYLOADS {
            return Err(ParseError::TooMany("payloads"));
        }
        let [np, flags, l0, l1] = r.array::<4>("payload header")?;
        let len = usize::from(u16::from_be_bytes([l0, l1]));
        if len < 4 {
            return Err(ParseError::BadLength {
                what: "payload",
                len,
            });
        }
        let body = r.sub(len - 4, "payload", len)?;
        let critical = flags & 0x80 != 0;
        let p = parse_payload(next, np, critical, body)?;
        let encrypted = matches!(p, Payload::Encrypted(_) | Payload::EncryptedFragment(_));
        out.push(p);
        if encrypted {
            //= https://www.rfc-editor.org/rfc/rfc7296#section-3.14
            //# the Encrypted payload, if present in a message, MUST be the
            //# last payload in the message.
            if !r.is_empty() {
                return Err(ParseError::EncryptedNotLast);
            }
            break;
        }
        next = np;
    }
    r.finish("payload chain")?;
    Ok(out)
}

/// Emit a chain of payloads; returns the type of the first one (0 if empty)
/// and the bytes.
pub fn emit_payload_chain(payloads: &[Payload]) -> (u8, Vec<u8>) {
    let mut out = Vec::new();
    for (i, p) in payloads.iter().enumerate() {
        let next = match p {
            Payload::Encrypted(e) => e.first_inner,
            Payload::EncryptedFragment(f) => f.first_inner,
            _ => payloads.get(i + 1).map_or(pt::NONE, Payload::kind),
        };
        let critical = matches!(p, Payload::Unknown { critical: true, .. });
        let mut body = emit_body(p);
        body.truncate(MAX_BODY);
        out.extend_from_slice(&generic_header(next, critical, body.len()));
        out.extend_from_slice(&body);
    }
    (payloads.first().map_or(pt::NONE, Payload::kind), out)
}

fn generic_header(next: u8, critical: bool, body_len: usize) -> [u8; 4] {
    let [l0, l1] = len16(4 + body_len);
    [next, if critical { 0x80 } else { 0 }, l0, l1]
}

/// A 16-bit length field, clamped.
fn len16(n: usize) -> [u8; 2] {
    u16::try_from(n).unwrap_or(u16::MAX).to_be_bytes()
}

/// `data`, cut to what a 16-bit length field of a structure with a
/// `hdr`-octet header can describe.
fn fit16(data: &[u8], hdr: usize) -> &[u8] {
    data.get(..usize::from(u16::MAX) - hdr).unwrap_or(data)
}

impl Payload {
    /// The payload type number (see [`pt`]).
    pub fn kind(&self) -> u8 {
        match self {
            Self::Sa(_) => pt::SA,
            Self::Ke { .. } => pt::KE,
            Self::IdI { .. } => pt::IDI,
            Self::IdR { .. } => pt::IDR,
            Self::Cert { .. } => pt::CERT,
            Self::CertReq { .. } => pt::CERTREQ,
            Self::Auth { .. } => pt::AUTH,
            Self::Nonce(_) => pt::NONCE,
            Self::Notify(_) => pt::NOTIFY,
            Self::Delete(_) => pt::DELETE,
            Self::VendorId(_) => pt::VENDOR_ID,
            Self::TsI(_) => pt::TSI,
            Self::TsR(_) => pt::TSR,
            Self::Encrypted(_) => pt::SK,
            Self::EncryptedFragment(_) => pt::SKF,
            Self::Cp { .. } => pt::CP,
            Self::Eap(_) => pt::EAP,
            Self::Unknown { kind, .. } => *kind,
        }
    }
}

// ---------------------------------------------------------------- parsing

fn parse_payload(
    kind: u8,
    np: u8,
    critical: bool,
    mut r: Reader<'_>,
) -> Result<Payload, ParseError> {
    let p = match kind {
        pt::SA => Payload::Sa(parse_sa(r)?),
        pt::KE => {
            let [g0, g1, _, _] = r.array::<4>("KE header")?;
            Payload::Ke {
                group: u16::from_be_bytes([g0, g1]),
                data: r.rest().to_vec(),
            }
        }
        pt::IDI | pt::IDR => {
            let [id_type, _, _, _] = r.array::<4>("ID header")?;
            let data = r.rest().to_vec();
            if kind == pt::IDI {
                Payload::IdI { id_type, data }
            } else {
                Payload::IdR { id_type, data }
            }
        }
        pt::CERT | pt::CERTREQ => {
            let [encoding] = r.array::<1>("certificate encoding")?;
            let data = r.rest().to_vec();
            if kind == pt::CERT {
                Payload::Cert { encoding, data }
            } else {
                Payload::CertReq { encoding, data }
            }
        }
        pt::AUTH => {
            let [method, _, _, _] = r.array::<4>("AUTH header")?;
            Payload::Auth {
                method,
                data: r.rest().to_vec(),
            }
        }
        pt::NONCE => Payload::Nonce(r.rest().to_vec()),
        pt::NOTIFY => {
            let [protocol_id, spi_size, k0, k1] = r.array::<4>("notify header")?;
            let spi = r.take(usize::from(spi_size), "notify SPI")?.to_vec();
            Payload::Notify(Notify {
                protocol_id,
                spi,
                kind: u16::from_be_bytes([k0, k1]),
                data: r.rest().to_vec(),
            })
        }
        pt::DELETE => Payload::Delete(parse_delete(r)?),
        pt::VENDOR_ID => Payload::VendorId(r.rest().to_vec()),
        pt::TSI => Payload::TsI(parse_ts(r)?),
        pt::TSR => Payload::TsR(parse_ts(r)?),
        pt::SK => Payload::Encrypted(Encrypted {
            first_inner: np,
            body: r.rest().to_vec(),
        }),
        pt::SKF => {
            let [n0, n1, t0, t1] = r.array::<4>("fragment header")?;
            let number = u16::from_be_bytes([n0, n1]);
            let total = u16::from_be_bytes([t0, t1]);
            //= https://www.rfc-editor.org/rfc/rfc7383#section-2.5
            //# Fragment Number (2 octets, unsigned integer) - current
            //# Fragment message number, starting from 1.  This field MUST be
            //# less than or equal to the next field (Total Fragments).
            if number == 0 || number > total {
                return Err(ParseError::Invalid {
                    what: "fragment number",
                    detail: format!("fragment {number} of {total}"),
                });
            }
            Payload::EncryptedFragment(EncryptedFragment {
                first_inner: np,
                number,
                total,
                body: r.rest().to_vec(),
            })
        }
        pt::CP => parse_cp(r)?,
        pt::EAP => Payload::Eap(r.rest().to_vec()),
        _ => Payload::Unknown {
            kind,
            critical,
            data: r.rest().to_vec(),
        },
    };
    Ok(p)
}

fn parse_sa(mut r: Reader<'_>) -> Result<Vec<Proposal>, ParseError> {
    let mut out = Vec::new();
    while !r.is_empty() {
        if out.len() >= MAX_PROPOSALS {
            return Err(ParseError::TooMany("proposals"));
        }
        let [last, _, l0, l1, num, protocol_id, spi_size, count] =
            r.array::<8>("proposal header")?;
        let len = usize::from(u16::from_be_bytes([l0, l1]));
        if len < 8 + usize::from(spi_size) {
            return Err(ParseError::BadLength {
                what: "proposal",
                len,
            });
        }
        let mut p = r.sub(len - 8, "proposal", len)?;
        //= https://www.rfc-editor.org/rfc/rfc7296#section-3.3.1
        //# Last Substruc (1 octet) - Specifies whether this is the last
        //# Proposal Substructure in the SA.  This field has a value of 0 if
        //# this was the last Proposal Substructure, and a value of 2 if
        //# there are more Proposal Substructures.
        let want = if r.is_empty() { 0 } else { 2 };
        if last != want {
            return Err(ParseError::Invalid {
                what: "proposal last substructure flag",
                detail: format!("{last} in proposal {}, expected {want}", out.len() + 1),
            });
        }
        if usize::from(count) > MAX_TRANSFORMS {
            return Err(ParseError::TooMany("transforms"));
        }
        let spi = p.take(usize::from(spi_size), "proposal SPI")?.to_vec();
        let mut transforms = Vec::new();
        for i in 0..count {
            transforms.push(parse_transform(&mut p, i + 1 == count)?);
        }
        p.finish("proposal")?;
        out.push(Proposal {
            num,
            protocol_id,
            spi,
            transforms,
        });
    }
    Ok(out)
}

fn parse_transform(r: &mut Reader<'_>, is_last: bool) -> Result<Transform, ParseError> {
    let [last, _, l0, l1, kind, _, i0, i1] = r.array::<8>("transform header")?;
    let len = usize::from(u16::from_be_bytes([l0, l1]));
    if len < 8 {
        return Err(ParseError::BadLength {
            what: "transform",
            len,
        });
    }
    let mut t = r.sub(len - 8, "transform", len)?;
    //= https://www.rfc-editor.org/rfc/rfc7296#section-3.3.2
    //# Last Substruc (1 octet) - This field has a value of 0 if this was
    //# the last Transform Substructure, and a value of 3 if there are more
    //# Transform Substructures.
    let want = if is_last { 0 } else { 3 };
    if last != want {
        return Err(ParseError::Invalid {
            what: "transform last substructure flag",
            detail: format!("{last}, expected {want}"),
        });
    }
    let mut attributes = Vec::new();
    while !t.is_empty() {
        if attributes.len() >= MAX_ATTRIBUTES {
            return Err(ParseError::TooMany("attributes"));
        }
        let [t0, t1, v0, v1] = t.array::<4>("attribute header")?;
        let ty = u16::from_be_bytes([t0, t1]);
        let v = u16::from_be_bytes([v0, v1]);
        if ty & 0x8000 != 0 {
            attributes.push(Attribute::Tv {
                kind: ty & 0x7fff,
                value: v,
            });
        } else {
            let n = usize::from(v);
            let value = t.sub(n, "attribute", n)?.rest().to_vec();
            attributes.push(Attribute::Tlv { kind: ty, value });
        }
    }
    Ok(Transform {
        kind,
        id: u16::from_be_bytes([i0, i1]),
        attributes,
    })
}

fn parse_delete(mut r: Reader<'_>) -> Result<Delete, ParseError> {
    let [protocol_id, spi_size, c0, c1] = r.array::<4>("delete header")?;
    let count = usize::from(u16::from_be_bytes([c0, c1]));
    let mut spis = Vec::new();
    if spi_size == 0 {
        if count != 0 {
            return Err(ParseError::Invalid {
                what: "delete SPI count",
                detail: format!("{count} SPIs of size 0"),
            });
        }
    } else {
        let need = count * usize::from(spi_size);
        if need > r.left() {
            return Err(ParseError::Truncated {
                what: "delete SPIs",
                need,
                have: r.left(),
            });
        }
        for _ in 0..count {
            spis.push(r.take(usize::from(spi_size), "delete SPI")?.to_vec());
        }
    }
    r.finish("delete")?;
    Ok(Delete {
        protocol_id,
        spi_size,
        spis,
    })
}

fn parse_ts(mut r: Reader<'_>) -> Result<Vec<WireTs>, ParseError> {
    let [count, _, _, _] = r.array::<4>("TS header")?;
    if usize::from(count) > MAX_TRAFFIC_SELECTORS {
        return Err(ParseError::TooMany("traffic selectors"));
    }
    let mut out = Vec::new();
    for _ in 0..count {
        let [ts_type, ip_proto, l0, l1] = r.array::<4>("traffic selector header")?;
        let len = usize::from(u16::from_be_bytes([l0, l1]));
        if len < 4 {
            return Err(ParseError::BadLength {
                what: "traffic selector",
                len,
            });
        }
        let body = r.sub(len - 4, "traffic selector", len)?.rest();
        let addr_len = match ts_type {
            TrafficSelector::TS_IPV4_ADDR_RANGE => Some(4),
            TrafficSelector::TS_IPV6_ADDR_RANGE => Some(16),
            _ => None,
        };
        let parsed = match addr_len {
            Some(n) => {
                //= https://www.rfc-editor.org/rfc/rfc7296#section-3.13.1
                //# Selector Length (2 octets, unsigned integer) - Specifies
                //# the length of this Traffic Selector substructure
                //# including the header.
                if len != 8 + 2 * n {
                    return Err(ParseError::BadLength {
                        what: if n == 4 {
                            "IPv4 traffic selector"
                        } else {
                            "IPv6 traffic selector"
                        },
                        len,
                    });
                }
                let mut a = Reader::new(body);
                let start_port = a.u16("start port")?;
                let end_port = a.u16("end port")?;
                let start = ip(a.take(n, "start address")?);
                let end = ip(a.take(n, "end address")?);
                IpRange::new(start, end).ok().map(|addr| TrafficSelector {
                    ip_proto,
                    start_port,
                    end_port,
                    addr,
                })
            }
            None => None,
        };
        out.push(match parsed {
            Some(ts) => WireTs::Addr(ts),
            None => {
                let mut data = vec![ip_proto];
                data.extend_from_slice(body);
                WireTs::Other { ts_type, data }
            }
        });
    }
    r.finish("traffic selectors")?;
    Ok(out)
}

fn ip(b: &[u8]) -> IpAddr {
    if let Ok(a) = <[u8; 4]>::try_from(b) {
        IpAddr::V4(Ipv4Addr::from(a))
    } else if let Ok(a) = <[u8; 16]>::try_from(b) {
        IpAddr::V6(Ipv6Addr::from(a))
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    }
}

fn parse_cp(mut r: Reader<'_>) -> Result<Payload, ParseError> {
    let [cfg_type, _, _, _] = r.array::<4>("CP header")?;
    let mut attributes = Vec::new();
    while !r.is_empty() {
        if attributes.len() >= MAX_CP_ATTRIBUTES {
            return Err(ParseError::TooMany("configuration attributes"));
        }
        let [t0, t1, l0, l1] = r.array::<4>("configuration attribute header")?;
        let len = usize::from(u16::from_be_bytes([l0, l1]));
        let value = r.sub(len, "configuration attribute", len)?.rest().to_vec();
        attributes.push(CpAttribute {
            kind: u16::from_be_bytes([t0, t1]) & 0x7fff,
            value,
        });
    }
    Ok(Payload::Cp {
        cfg_type,
        attributes,
    })
}

// --------------------------------------------------------------- emitting

fn emit_body(p: &Payload) -> Vec<u8> {
    let mut out = Vec::new();
    match p {
        Payload::Sa(props) => {
            for (i, prop) in props.iter().enumerate() {
                let last = if i + 1 == props.len() { 0 } else { 2 };
                emit_proposal(&mut out, prop, last);
            }
        }
        Payload::Ke { group, data } => {
            out.extend_from_slice(&group.to_be_bytes());
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(data);
        }
        Payload::IdI { id_type, data } | Payload::IdR { id_type, data } => {
            out.extend_from_slice(&[*id_type, 0, 0, 0]);
            out.extend_from_slice(data);
        }
        Payload::Cert { encoding, data } | Payload::CertReq { encoding, data } => {
            out.push(*encoding);
            out.extend_from_slice(data);
        }
        Payload::Auth { method, data } => {
            out.extend_from_slice(&[*method, 0, 0, 0]);
            out.extend_from_slice(data);
        }
        Payload::Nonce(d) | Payload::VendorId(d) | Payload::Eap(d) => out.extend_from_slice(d),
        Payload::Unknown { data, .. } => out.extend_from_slice(data),
        Payload::Notify(n) => {
            let spi = n.spi.get(..usize::from(u8::MAX)).unwrap_or(&n.spi);
            out.push(n.protocol_id);
            out.push(u8::try_from(spi.len()).unwrap_or(u8::MAX));
            out.extend_from_slice(&n.kind.to_be_bytes());
            out.extend_from_slice(spi);
            out.extend_from_slice(&n.data);
        }
        Payload::Delete(d) => {
            let size = usize::from(d.spi_size);
            // No SPI can be written with size 0; keep the count honest.
            let count = (MAX_BODY - 4)
                .checked_div(size)
                .map_or(0, |room| d.spis.len().min(room));
            out.extend_from_slice(&[d.protocol_id, d.spi_size]);
            out.extend_from_slice(&u16::try_from(count).unwrap_or(u16::MAX).to_be_bytes());
            for spi in d.spis.iter().take(count) {
                // Each SPI is written with exactly `spi_size` octets.
                let mut s = spi.clone();
                s.resize(size, 0);
                out.extend_from_slice(&s);
            }
        }
        Payload::TsI(ts) | Payload::TsR(ts) => {
            let ts = ts.get(..usize::from(u8::MAX)).unwrap_or(ts);
            out.push(u8::try_from(ts.len()).unwrap_or(u8::MAX));
            out.extend_from_slice(&[0, 0, 0]);
            for t in ts {
                emit_ts(&mut out, t);
            }
        }
        Payload::Encrypted(e) => out.extend_from_slice(&e.body),
        Payload::EncryptedFragment(f) => {
            out.extend_from_slice(&f.number.to_be_bytes());
            out.extend_from_slice(&f.total.to_be_bytes());
            out.extend_from_slice(&f.body);
        }
        Payload::Cp {
            cfg_type,
            attributes,
        } => {
            out.extend_from_slice(&[*cfg_type, 0, 0, 0]);
            for a in attributes {
                let v = fit16(&a.value, 0);
                out.extend_from_slice(&(a.kind & 0x7fff).to_be_bytes());
                out.extend_from_slice(&len16(v.len()));
                out.extend_from_slice(v);
            }
        }
    }
    out
}

fn emit_proposal(out: &mut Vec<u8>, p: &Proposal, last: u8) {
    let mut body = Vec::new();
    let spi = p.spi.get(..usize::from(u8::MAX)).unwrap_or(&p.spi);
    body.extend_from_slice(spi);
    let ts = p
        .transforms
        .get(..usize::from(u8::MAX))
        .unwrap_or(&p.transforms);
    for (i, t) in ts.iter().enumerate() {
        emit_transform(&mut body, t, if i + 1 == ts.len() { 0 } else { 3 });
    }
    out.extend_from_slice(&[last, 0]);
    out.extend_from_slice(&len16(8 + body.len()));
    out.extend_from_slice(&[
        p.num,
        p.protocol_id,
        u8::try_from(spi.len()).unwrap_or(u8::MAX),
        u8::try_from(ts.len()).unwrap_or(u8::MAX),
    ]);
    out.extend_from_slice(&body);
}

fn emit_transform(out: &mut Vec<u8>, t: &Transform, last: u8) {
    let mut body = Vec::new();
    for a in &t.attributes {
        match a {
            Attribute::Tv { kind, value } => {
                body.extend_from_slice(&(kind | 0x8000).to_be_bytes());
                body.extend_from_slice(&value.to_be_bytes());
            }
            Attribute::Tlv { kind, value } => {
                let v = fit16(value, 0);
                body.extend_from_slice(&(kind & 0x7fff).to_be_bytes());
                body.extend_from_slice(&len16(v.len()));
                body.extend_from_slice(v);
            }
        }
    }
    out.extend_from_slice(&[last, 0]);
    out.extend_from_slice(&len16(8 + body.len()));
    out.extend_from_slice(&[t.kind, 0]);
    out.extend_from_slice(&t.id.to_be_bytes());
    out.extend_from_slice(&body);
}

fn emit_ts(out: &mut Vec<u8>, t: &WireTs) {
    match t {
        WireTs::Addr(ts) => {
            let (start, end) = match (ts.addr.start, ts.addr.end) {
                (IpAddr::V4(s), IpAddr::V4(e)) => (s.octets().to_vec(), e.octets().to_vec()),
                (IpAddr::V6(s), IpAddr::V6(e)) => (s.octets().to_vec(), e.octets().to_vec()),
                // Mixed families cannot be represented; write the start
                // family with the end address mapped into it.
                (IpAddr::V4(s), IpAddr::V6(e)) => (
                    s.octets().to_vec(),
                    e.to_ipv4().unwrap_or(Ipv4Addr::BROADCAST).octets().to_vec(),
                ),
                (IpAddr::V6(s), IpAddr::V4(e)) => {
                    (s.octets().to_vec(), e.to_ipv6_mapped().octets().to_vec())
                }
            };
            out.extend_from_slice(&[ts.ts_type(), ts.ip_proto]);
            out.extend_from_slice(&len16(8 + start.len() + end.len()));
            out.extend_from_slice(&ts.start_port.to_be_bytes());
            out.extend_from_slice(&ts.end_port.to_be_bytes());
            out.extend_from_slice(&start);
            out.extend_from_slice(&end);
        }
        WireTs::Other { ts_type, data } => {
            let (second, rest) = data.split_first().map_or((0, &[][..]), |(a, b)| (*a, b));
            let rest = fit16(rest, 4);
            out.extend_from_slice(&[*ts_type, second]);
            out.extend_from_slice(&len16(4 + rest.len()));
            out.extend_from_slice(rest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{exchange, flags, notify, protocol, ATTR_KEY_LENGTH};
    use rand_chacha::rand_core::{RngCore, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// A real IKE_SA_INIT request (initiator SPI bca1937a7c2ff5b9, SA with
    /// four proposals, KE of group 28, 32-octet nonce), from the test
    /// `IKEV2_MSG` of rusticata/ipsec-parser, `tests/ikev2.rs`, with its
    /// leading 4-octet non-ESP marker removed.
    const IPSEC_PARSER_IKE_SA_INIT: &[&str] = &[
        "bca1937a7c2ff5b9000000000000000021202208000000000000012c220000a4",
        "02000024010100030300000c01000014800e0080030000080200000500000008",
        "0400001c02000024020100030300000c01000014800e00800300000802000005",
        "00000008040000130200002c030100040300000c0100000d800e008003000008",
        "0300000c0300000802000005000000080400001c0000002c040100040300000c",
        "0100000d800e0080030000080300000c03000008020000050000000804000013",
        "28000048001c00004d23b8f22c03ae3ab40af9fa76c23c7ba6c56981e13c32fb",
        "c36954c87a96cbfa34637c6f31b650ce5d8717005ce793c2eeaff1c566280811",
        "d942d1b8e80268bb0000002499e2a373cc44ad10fb78dda25206a4a9b7558e0d",
        "8269799c6800362c46a0bf7b",
    ];

    fn known_answer() -> Vec<u8> {
        hex::decode(IPSEC_PARSER_IKE_SA_INIT.concat()).unwrap()
    }

    fn header() -> Header {
        Header {
            spi_i: 0x0102_0304_0506_0708,
            spi_r: 0x1112_1314_1516_1718,
            next_payload: 0,
            version: 0x20,
            exchange: exchange::IKE_AUTH,
            flags: flags::INITIATOR,
            message_id: 1,
            length: 0,
        }
    }

    fn ts(s: &str) -> TrafficSelector {
        s.parse().unwrap()
    }

    fn tr(kind: u8, id: u16) -> Transform {
        Transform {
            kind,
            id,
            attributes: vec![],
        }
    }

    /// One payload of every type this codec knows, and an unknown one.
    fn every_payload() -> Vec<Payload> {
        vec![
            Payload::Sa(vec![
                Proposal {
                    num: 1,
                    protocol_id: protocol::IKE,
                    spi: vec![],
                    transforms: vec![
                        Transform {
                            kind: 1,
                            id: 20,
                            attributes: vec![
                                Attribute::Tv {
                                    kind: ATTR_KEY_LENGTH,
                                    value: 256,
                                },
                                Attribute::Tlv {
                                    kind: 99,
                                    value: vec![1, 2, 3],
                                },
                            ],
                        },
                        tr(2, 5),
                        tr(4, 31),
                    ],
                },
                Proposal {
                    num: 2,
                    protocol_id: protocol::ESP,
                    spi: vec![9, 9, 9, 9],
                    transforms: vec![],
                },
            ]),
            Payload::Ke {
                group: 31,
                data: vec![7; 32],
            },
            Payload::IdI {
                id_type: 2,
                data: b"a.example".to_vec(),
            },
            Payload::IdR {
                id_type: 1,
                data: vec![192, 0, 2, 1],
            },
            Payload::Cert {
                encoding: 4,
                data: vec![0x30, 0],
            },
            Payload::CertReq {
                encoding: 4,
                data: vec![1; 20],
            },
            Payload::Auth {
                method: 2,
                data: vec![3; 32],
            },
            Payload::Nonce(vec![4; 32]),
            Payload::notify(notify::INITIAL_CONTACT, vec![]),
            Payload::notify_spi(protocol::ESP, vec![1, 2, 3, 4], notify::REKEY_SA, vec![]),
            Payload::Delete(Delete {
                protocol_id: protocol::ESP,
                spi_size: 4,
                spis: vec![vec![1, 2, 3, 4], vec![5, 6, 7, 8]],
            }),
            Payload::Delete(Delete {
                protocol_id: protocol::IKE,
                spi_size: 0,
                spis: vec![],
            }),
            Payload::VendorId(b"latchkey".to_vec()),
            Payload::TsI(vec![
                WireTs::Addr(ts("10.0.0.0/24[tcp/80]")),
                WireTs::Addr(ts("2001:db8::/32")),
                WireTs::Other {
                    ts_type: 10,
                    data: vec![0, 1, 2, 3],
                },
                // Inverted IPv4 range: kept as Other.
                WireTs::Other {
                    ts_type: 7,
                    data: vec![0, 0, 0, 0xff, 0xff, 10, 0, 0, 9, 10, 0, 0, 1],
                },
            ]),
            Payload::TsR(vec![]),
            Payload::Cp {
                cfg_type: 1,
                attributes: vec![
                    CpAttribute {
                        kind: 1,
                        value: vec![],
                    },
                    CpAttribute {
                        kind: 0x7fff,
                        value: vec![1, 2],
                    },
                ],
            },
            Payload::Eap(vec![1, 2, 0, 4]),
            Payload::Unknown {
                kind: 200,
                critical: true,
                data: vec![5, 5],
            },
            Payload::Unknown {
                kind: 1,
                critical: false,
                data: vec![],
            },
            Payload::Encrypted(Encrypted {
                first_inner: pt::IDI,
                body: vec![8; 48],
            }),
        ]
    }

    fn round_trip(m: &Message) -> Vec<u8> {
        let b = m.emit();
        let p = Message::parse(&b).unwrap();
        assert_eq!(&p, m);
        assert_eq!(p.emit(), b);
        b
    }

    #[test]
    fn known_answer_ike_sa_init() {
        let b = known_answer();
        let m = Message::parse(&b).unwrap();
        assert_eq!(m.header.spi_i, 0xbca1_937a_7c2f_f5b9);
        assert_eq!(m.header.spi_r, 0);
        assert_eq!(m.header.exchange, exchange::IKE_SA_INIT);
        assert_eq!(m.header.flags, flags::INITIATOR);
        assert!(m.header.is_initiator() && !m.header.is_response());
        assert_eq!(m.header.length, 300);
        assert_eq!(m.payloads.len(), 3);
        let Payload::Sa(props) = &m.payloads[0] else {
            panic!("SA first")
        };
        assert_eq!(props.len(), 4);
        let counts: Vec<usize> = props.iter().map(|p| p.transforms.len()).collect();
        assert_eq!(counts, [3, 3, 4, 4]);
        assert_eq!(props[0].transforms[0].id, 20);
        assert_eq!(props[0].transforms[0].key_length(), Some(128));
        assert_eq!(props[3].transforms[3], tr(4, 19));
        let Payload::Ke { group, data } = &m.payloads[1] else {
            panic!("KE second")
        };
        assert_eq!((*group, data.len()), (28, 64));
        let Payload::Nonce(n) = &m.payloads[2] else {
            panic!("Nonce third")
        };
        assert_eq!(n.len(), 32);
        assert_eq!(m.emit(), b);
        assert_eq!(header_only(&b).unwrap(), m.header);

        let o = crate::wire::Offer::from_wire(&props[0]);
        assert_eq!(o.encr, [pad::alg::Encr::AesGcm16_128]);
        assert_eq!(o.prf, [pad::alg::Prf::HmacSha256]);
        assert_eq!(o.unknown_ids, [(4, 28)]);
    }

    #[test]
    fn every_payload_round_trips() {
        for p in every_payload() {
            let m = Message::new(header(), vec![p.clone()]);
            round_trip(&m);
            let (first, chain) = emit_payload_chain(std::slice::from_ref(&p));
            assert_eq!(first, p.kind());
            assert_eq!(parse_payload_chain(first, &chain).unwrap(), vec![p]);
        }
        let m = Message::new(header(), every_payload());
        let b = round_trip(&m);
        assert_eq!(usize::try_from(m.header.length).unwrap(), b.len());
        assert_eq!(m.header.next_payload, pt::SA);
        // The known payloads carry a clear critical bit, the unknown one
        // keeps its bit.
        let unknown = Message::new(header(), vec![every_payload().swap_remove(17)]).emit();
        assert_eq!(unknown[Header::LEN + 1], 0x80);
    }

    #[test]
    fn empty_message_and_chain() {
        let m = Message::new(header(), vec![]);
        assert_eq!(round_trip(&m).len(), Header::LEN);
        assert_eq!(emit_payload_chain(&[]), (0, vec![]));
        assert_eq!(parse_payload_chain(0, &[]).unwrap(), vec![]);
    }

    #[test]
    fn sk_prefix_is_the_start_of_an_encrypted_message() {
        let body = vec![0xab; 40];
        let m = Message::new(
            header(),
            vec![Payload::Encrypted(Encrypted {
                first_inner: pt::IDI,
                body: body.clone(),
            })],
        );
        let b = m.emit();
        let prefix = sk_prefix(&header(), pt::IDI, body.len());
        assert_eq!(prefix.len(), Header::LEN + 4);
        assert_eq!(&b[..prefix.len()], &prefix[..]);
        assert_eq!(&b[prefix.len()..], &body[..]);
        assert_eq!(&prefix[Header::LEN..], &[pt::IDI, 0, 0, 44]);
    }

    #[test]
    fn skf_round_trips() {
        let m = Message::new(
            header(),
            vec![Payload::EncryptedFragment(EncryptedFragment {
                first_inner: 0,
                number: 2,
                total: 3,
                body: vec![1; 20],
            })],
        );
        round_trip(&m);
    }

    #[test]
    fn header_checks() {
        let mut b = known_answer();
        assert_eq!(
            Header::parse_raw(&b[..27]).unwrap_err(),
            ParseError::Truncated {
                what: "header",
                need: 28,
                have: 27
            }
        );
        b[17] = 0x10;
        assert_eq!(header_only(&b), Err(ParseError::BadVersion(1)));
        assert_eq!(Header::parse_raw(&b).unwrap().major_version(), 1);
        b[17] = 0x2f; // minor version is ignored
        assert!(Message::parse(&b).is_ok());
        b.push(0);
        assert_eq!(
            Message::parse(&b),
            Err(ParseError::BadLength {
                what: "message",
                len: 300
            })
        );
        b.truncate(299);
        assert!(matches!(
            header_only(&b),
            Err(ParseError::BadLength {
                what: "message",
                ..
            })
        ));
    }

    /// A message with its chain replaced by `chain` (first payload `first`).
    fn with_chain(first: u8, chain: &[u8]) -> Vec<u8> {
        let mut h = header();
        h.next_payload = first;
        h.length = u32::try_from(Header::LEN + chain.len()).unwrap();
        let mut b = h.to_bytes().to_vec();
        b.extend_from_slice(chain);
        b
    }

    fn chain_err(first: u8, chain: &[u8]) -> ParseError {
        let e = parse_payload_chain(first, chain).unwrap_err();
        assert_eq!(Message::parse(&with_chain(first, chain)).unwrap_err(), e);
        e
    }

    /// An SA payload body holding `props` (already encoded).
    fn sa(props: &[u8]) -> Vec<u8> {
        let mut v = vec![0, 0, 0, u8::try_from(4 + props.len()).unwrap()];
        v.extend_from_slice(props);
        v
    }

    #[test]
    fn every_error_variant() {
        use ParseError::*;
        // Truncated: a KE body of 2 octets.
        assert_eq!(
            chain_err(pt::KE, &[0, 0, 0, 6, 0, 31]),
            Truncated {
                what: "KE header",
                need: 4,
                have: 2
            }
        );
        // Truncated: the chain announces a payload that is not there.
        assert!(matches!(
            chain_err(pt::NONCE, &[pt::NONCE, 0, 0, 4]),
            Truncated {
                what: "payload header",
                ..
            }
        ));
        // BadLength: payload length below 4, and beyond the message.
        assert_eq!(
            chain_err(pt::NONCE, &[0, 0, 0, 3]),
            BadLength {
                what: "payload",
                len: 3
            }
        );
        assert_eq!(
            chain_err(pt::NONCE, &[0, 0, 0, 9, 1]),
            BadLength {
                what: "payload",
                len: 9
            }
        );
        // BadLength: IPv4 selector of the wrong length.
        assert_eq!(
            chain_err(pt::TSI, &[0, 0, 0, 12, 1, 0, 0, 0, 7, 0, 0, 4]),
            BadLength {
                what: "IPv4 traffic selector",
                len: 4
            }
        );
        // BadVersion.
        let mut b = known_answer();
        b[17] = 0x30;
        assert_eq!(Message::parse(&b), Err(BadVersion(3)));
        assert_eq!(BadVersion(3).notify_type(), notify::INVALID_MAJOR_VERSION);
        assert_eq!(EncryptedNotLast.notify_type(), notify::INVALID_SYNTAX);
        // TrailingData: octets after the last payload.
        assert_eq!(
            chain_err(pt::NONCE, &[0, 0, 0, 5, 1, 0xee]),
            TrailingData(1, "payload chain")
        );
        // TrailingData: a proposal longer than its transforms.
        let prop = [0, 0, 0, 9, 1, 1, 0, 0, 0xee];
        assert_eq!(chain_err(pt::SA, &sa(&prop)), TrailingData(1, "proposal"));
        // Invalid: proposal last flag 2 on the last proposal.
        let prop = [2, 0, 0, 8, 1, 1, 0, 0];
        assert!(matches!(
            chain_err(pt::SA, &sa(&prop)),
            Invalid {
                what: "proposal last substructure flag",
                ..
            }
        ));
        // Invalid: proposal last flag 0 on a proposal that is not last.
        let props = [0, 0, 0, 8, 1, 1, 0, 0, 0, 0, 0, 8, 2, 1, 0, 0];
        assert!(matches!(
            chain_err(pt::SA, &sa(&props)),
            Invalid {
                what: "proposal last substructure flag",
                ..
            }
        ));
        // Invalid: transform last flag 3 on the last transform.
        let prop = [0, 0, 0, 16, 1, 1, 0, 1, 3, 0, 0, 8, 1, 0, 0, 20];
        assert!(matches!(
            chain_err(pt::SA, &sa(&prop)),
            Invalid {
                what: "transform last substructure flag",
                ..
            }
        ));
        // Invalid: a delete with SPIs of size 0.
        assert!(matches!(
            chain_err(pt::DELETE, &[0, 0, 0, 8, 1, 0, 0, 5]),
            Invalid {
                what: "delete SPI count",
                ..
            }
        ));
        // Invalid: fragment 0.
        assert!(matches!(
            chain_err(pt::SKF, &[0, 0, 0, 8, 0, 0, 0, 1]),
            Invalid {
                what: "fragment number",
                ..
            }
        ));
        // EncryptedNotLast.
        assert_eq!(
            chain_err(pt::SK, &[pt::NONCE, 0, 0, 5, 1, 0, 0, 0, 4]),
            EncryptedNotLast
        );
        // TooMany: 65 payloads.
        let mut chain = Vec::new();
        for _ in 0..=MAX_PAYLOADS {
            chain.extend_from_slice(&[pt::NONCE, 0, 0, 4]);
        }
        assert_eq!(chain_err(pt::NONCE, &chain), TooMany("payloads"));
        // TooMany: a transform count of 65.
        let prop = [0, 0, 0, 8, 1, 1, 0, 65];
        assert_eq!(chain_err(pt::SA, &sa(&prop)), TooMany("transforms"));
        // TooMany: 65 TS announced.
        assert_eq!(
            chain_err(pt::TSR, &[0, 0, 0, 8, 65, 0, 0, 0]),
            TooMany("traffic selectors")
        );
    }

    #[test]
    fn more_substructure_errors() {
        use ParseError::*;
        // Transform count larger than the proposal holds.
        let prop = [0, 0, 0, 8, 1, 1, 0, 2];
        assert!(matches!(
            chain_err(pt::SA, &sa(&prop)),
            Truncated {
                what: "transform header",
                ..
            }
        ));
        // SPI size larger than the proposal.
        let prop = [0, 0, 0, 8, 1, 1, 4, 0];
        assert_eq!(
            chain_err(pt::SA, &sa(&prop)),
            BadLength {
                what: "proposal",
                len: 8
            }
        );
        // Delete count larger than the payload.
        assert!(matches!(
            chain_err(pt::DELETE, &[0, 0, 0, 12, 3, 4, 0, 2, 1, 2, 3, 4]),
            Truncated {
                what: "delete SPIs",
                ..
            }
        ));
        // Delete with octets after the SPIs.
        assert_eq!(
            chain_err(pt::DELETE, &[0, 0, 0, 13, 3, 4, 0, 1, 1, 2, 3, 4, 5]),
            TrailingData(1, "delete")
        );
        // 17 attributes in one transform.
        let mut t = vec![0, 0, 0, 8 + 17 * 4, 1, 0, 0, 12];
        for _ in 0..17 {
            t.extend_from_slice(&[0x80, 14, 0, 128]);
        }
        let mut prop = vec![0, 0, 0, 8 + t.len() as u8, 1, 1, 0, 1];
        prop.extend_from_slice(&t);
        assert_eq!(chain_err(pt::SA, &sa(&prop)), TooMany("attributes"));
        // A TLV attribute longer than its transform.
        let prop = [
            0, 0, 0, 20, 1, 1, 0, 1, 0, 0, 0, 12, 1, 0, 0, 12, 0, 1, 0, 9,
        ];
        assert_eq!(
            chain_err(pt::SA, &sa(&prop)),
            BadLength {
                what: "attribute",
                len: 9
            }
        );
        // A CP attribute longer than the payload.
        assert_eq!(
            chain_err(pt::CP, &[0, 0, 0, 12, 1, 0, 0, 0, 0, 1, 0, 4]),
            BadLength {
                what: "configuration attribute",
                len: 4
            }
        );
        // A notify SPI longer than the payload.
        assert!(matches!(
            chain_err(pt::NOTIFY, &[0, 0, 0, 8, 3, 4, 0x40, 0]),
            Truncated {
                what: "notify SPI",
                ..
            }
        ));
        // TS count smaller than the selectors present.
        let mut tsp = vec![0, 0, 0, 8 + 16, 0, 0, 0, 0];
        tsp.extend_from_slice(&[7, 0, 0, 16, 0, 0, 255, 255, 10, 0, 0, 1, 10, 0, 0, 2]);
        assert_eq!(
            chain_err(pt::TSI, &tsp),
            TrailingData(16, "traffic selectors")
        );
        // 65 CP attributes.
        let mut cp = vec![0, 0, 0, 0, 1, 0, 0, 0];
        for _ in 0..65 {
            cp.extend_from_slice(&[0, 1, 0, 0]);
        }
        let l = len16(cp.len());
        cp[2] = l[0];
        cp[3] = l[1];
        assert_eq!(chain_err(pt::CP, &cp), TooMany("configuration attributes"));
        // 65 proposals.
        let mut props = Vec::new();
        for i in 0..65u8 {
            props.extend_from_slice(&[if i == 64 { 0 } else { 2 }, 0, 0, 8, i + 1, 1, 0, 0]);
        }
        let mut p = vec![0, 0, 0, 0];
        p.extend_from_slice(&props);
        let l = len16(p.len());
        p[2] = l[0];
        p[3] = l[1];
        assert_eq!(chain_err(pt::SA, &p), TooMany("proposals"));
    }

    #[test]
    fn inverted_selector_is_kept_as_other() {
        let v4 = [
            0, 0, 0, 24, 1, 0, 0, 0, 7, 6, 0, 16, 0, 1, 0, 2, 10, 0, 0, 9, 10, 0, 0, 1,
        ];
        let p = parse_payload_chain(pt::TSI, &v4).unwrap();
        assert_eq!(
            p,
            vec![Payload::TsI(vec![WireTs::Other {
                ts_type: 7,
                data: vec![6, 0, 1, 0, 2, 10, 0, 0, 9, 10, 0, 0, 1],
            }])]
        );
        assert_eq!(emit_payload_chain(&p), (pt::TSI, v4.to_vec()));
    }

    #[test]
    fn truncation_never_panics() {
        let full = Message::new(header(), every_payload()).emit();
        let chain = &full[Header::LEN..];
        for i in 0..full.len() {
            assert!(Message::parse(&full[..i]).is_err());
        }
        for i in 0..chain.len() {
            // The chain cut anywhere is an error, also with a header whose
            // length field agrees with the cut.
            assert!(parse_payload_chain(pt::SA, &chain[..i]).is_err(), "{i}");
            assert!(Message::parse(&with_chain(pt::SA, &chain[..i])).is_err());
        }
        let ka = known_answer();
        for i in 0..ka.len() - Header::LEN {
            assert!(parse_payload_chain(pt::SA, &ka[Header::LEN..Header::LEN + i]).is_err());
        }
    }

    #[test]
    fn known_answer_mutations_never_panic() {
        // Every single-octet change of the known answer parses or errors,
        // and whatever parses round-trips.
        let ka = known_answer();
        for i in 0..ka.len() {
            for v in [0u8, 1, 2, 3, 0x7f, 0x80, 0xff] {
                let mut b = ka.clone();
                b[i] = v;
                if let Ok(m) = Message::parse(&b) {
                    let e = m.emit();
                    assert_eq!(Message::parse(&e).unwrap(), m);
                }
            }
        }
    }

    // ------------------------------------------------ random generator

    struct Gen(ChaCha8Rng);

    impl Gen {
        fn below(&mut self, n: u32) -> u32 {
            self.0.next_u32() % n
        }
        fn u8(&mut self) -> u8 {
            self.0.next_u32() as u8
        }
        fn u16(&mut self) -> u16 {
            self.0.next_u32() as u16
        }
        fn bytes(&mut self, max: u32) -> Vec<u8> {
            let n = self.below(max + 1) as usize;
            let mut v = vec![0; n];
            self.0.fill_bytes(&mut v);
            v
        }
        fn attribute(&mut self) -> Attribute {
            if self.below(2) == 0 {
                Attribute::Tv {
                    kind: self.u16() & 0x7fff,
                    value: self.u16(),
                }
            } else {
                Attribute::Tlv {
                    kind: self.u16() & 0x7fff,
                    value: self.bytes(6),
                }
            }
        }
        fn proposal(&mut self) -> Proposal {
            let spi_len = [0, 4, 8][self.below(3) as usize];
            let mut spi = vec![0; spi_len];
            self.0.fill_bytes(&mut spi);
            Proposal {
                num: self.u8(),
                protocol_id: self.u8(),
                spi,
                transforms: (0..self.below(6))
                    .map(|_| Transform {
                        kind: self.u8(),
                        id: self.u16(),
                        attributes: (0..self.below(3)).map(|_| self.attribute()).collect(),
                    })
                    .collect(),
            }
        }
        fn addr(&mut self, v4: bool) -> IpAddr {
            if v4 {
                IpAddr::V4(Ipv4Addr::from(self.0.next_u32()))
            } else {
                let mut b = [0u8; 16];
                self.0.fill_bytes(&mut b);
                IpAddr::V6(Ipv6Addr::from(b))
            }
        }
        fn ts(&mut self) -> WireTs {
            match self.below(4) {
                0 => WireTs::Other {
                    ts_type: 9 + self.u8() % 200,
                    data: {
                        let mut d = vec![self.u8()];
                        d.extend(self.bytes(8));
                        d
                    },
                },
                n => {
                    let v4 = n == 1;
                    let a = self.addr(v4);
                    let b = self.addr(v4);
                    let addr = IpRange::new(a, b).or_else(|_| IpRange::new(b, a)).unwrap();
                    WireTs::Addr(TrafficSelector {
                        ip_proto: self.u8(),
                        start_port: self.u16(),
                        end_port: self.u16(),
                        addr,
                    })
                }
            }
        }
        fn payload(&mut self) -> Payload {
            match self.below(17) {
                0 => Payload::Sa((0..self.below(4)).map(|_| self.proposal()).collect()),
                1 => Payload::Ke {
                    group: self.u16(),
                    data: self.bytes(64),
                },
                2 => Payload::IdI {
                    id_type: self.u8(),
                    data: self.bytes(16),
                },
                3 => Payload::IdR {
                    id_type: self.u8(),
                    data: self.bytes(16),
                },
                4 => Payload::Cert {
                    encoding: self.u8(),
                    data: self.bytes(40),
                },
                5 => Payload::CertReq {
                    encoding: self.u8(),
                    data: self.bytes(40),
                },
                6 => Payload::Auth {
                    method: self.u8(),
                    data: self.bytes(40),
                },
                7 => Payload::Nonce(self.bytes(64)),
                8 => Payload::Notify(Notify {
                    protocol_id: self.u8(),
                    spi: self.bytes(8),
                    kind: self.u16(),
                    data: self.bytes(20),
                }),
                9 => {
                    let spi_size = [0u8, 4, 8][self.below(3) as usize];
                    let n = if spi_size == 0 { 0 } else { self.below(4) };
                    Payload::Delete(Delete {
                        protocol_id: self.u8(),
                        spi_size,
                        spis: (0..n)
                            .map(|_| {
                                let mut s = vec![0; usize::from(spi_size)];
                                self.0.fill_bytes(&mut s);
                                s
                            })
                            .collect(),
                    })
                }
                10 => Payload::VendorId(self.bytes(20)),
                11 => Payload::TsI((0..self.below(4)).map(|_| self.ts()).collect()),
                12 => Payload::TsR((0..self.below(4)).map(|_| self.ts()).collect()),
                13 => Payload::Cp {
                    cfg_type: self.u8(),
                    attributes: (0..self.below(4))
                        .map(|_| CpAttribute {
                            kind: self.u16() & 0x7fff,
                            value: self.bytes(16),
                        })
                        .collect(),
                },
                14 => Payload::Eap(self.bytes(20)),
                _ => {
                    let kind = loop {
                        let k = self.u8();
                        if k != 0 && !(pt::SA..=pt::EAP).contains(&k) && k != pt::SKF {
                            break k;
                        }
                    };
                    Payload::Unknown {
                        kind,
                        critical: self.below(2) == 0,
                        data: self.bytes(10),
                    }
                }
            }
        }
        fn message(&mut self) -> Message {
            let mut payloads: Vec<Payload> = (0..self.below(8)).map(|_| self.payload()).collect();
            match self.below(4) {
                0 => payloads.push(Payload::Encrypted(Encrypted {
                    first_inner: self.u8(),
                    body: self.bytes(64),
                })),
                1 => {
                    let total = 1 + self.u16() % 100;
                    payloads.push(Payload::EncryptedFragment(EncryptedFragment {
                        first_inner: self.u8(),
                        number: 1 + self.u16() % total,
                        total,
                        body: self.bytes(64),
                    }))
                }
                _ => {}
            }
            let h = Header {
                spi_i: self.0.next_u64(),
                spi_r: self.0.next_u64(),
                next_payload: 0,
                version: 0x20 | (self.u8() & 0x0f),
                exchange: self.u8(),
                flags: self.u8(),
                message_id: self.0.next_u32(),
                length: 0,
            };
            Message::new(h, payloads)
        }
    }

    #[test]
    fn random_messages_round_trip() {
        let mut g = Gen(ChaCha8Rng::seed_from_u64(0x1a7c_4e55));
        for _ in 0..3000 {
            let m = g.message();
            round_trip(&m);
            // The chain alone round-trips too.
            let (first, chain) = emit_payload_chain(&m.payloads);
            assert_eq!(parse_payload_chain(first, &chain).unwrap(), m.payloads);
        }
    }
}
