//! Peer keys from DNS: IPSECKEY lookups (RFC 4025) for opportunistic
//! authentication in the style of RFC 4322.
//!
//! [`lookup_ipseckey`] asks one DNS server (a resolver or an authoritative
//! server) over UDP, retrying over TCP when the answer is truncated; the
//! message codec is hickory-proto's, the RDATA parser is
//! [`certs::IpsecKey`]. [`DnsPeerKeys`] turns the answer into the
//! [`Credentials`] of a peer that has none configured: the key in DNS is
//! then what authenticates the peer (RFC 4322 3), and the gateway named in
//! the record is reported, not followed.
//!
//! Trust: the key is exactly as trustworthy as the path to the DNS server.
//! Nothing here validates DNSSEC; [`DnsPeerKeys::authentic_data`] reports
//! the AD bit of the answer, which means something only when the server
//! is a validating resolver reached over a trusted path (RFC 4322 5.2).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use certs::{Gateway, IpsecKey, IpsecKeyError};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};
use rand_core::RngCore as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpStream, UdpSocket};

use crate::Credentials;

/// Largest UDP answer we accept and advertise with EDNS(0) (RFC 6891):
/// the DNS flag day 2020 value, below common path MTUs.
const UDP_PAYLOAD: u16 = 1232;
/// UDP retransmissions within the timeout.
const UDP_TRIES: u32 = 3;
/// CNAMEs followed inside one answer.
const MAX_CNAME_HOPS: usize = 8;

/// Why a lookup failed. Every variant names the name and the server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DnsError {
    /// The name is not a valid domain name.
    #[error("{name:?} is not a valid domain name: {reason}")]
    BadName {
        /// The name given.
        name: String,
        /// Why.
        reason: String,
    },
    /// A socket could not be opened or used.
    #[error("DNS server {server}: {source}")]
    Io {
        /// The server.
        server: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// No usable answer in time.
    #[error("no answer from DNS server {server} for {name} IPSECKEY within {after:?}")]
    Timeout {
        /// The name asked for.
        name: String,
        /// The server.
        server: SocketAddr,
        /// The time allowed.
        after: Duration,
    },
    /// The name does not exist (NXDOMAIN) or has no IPSECKEY record.
    #[error("no IPSECKEY record for {name} at DNS server {server} ({rcode})")]
    NoRecord {
        /// The name asked for.
        name: String,
        /// The server.
        server: SocketAddr,
        /// `NXDOMAIN`, or `NOERROR` for an empty answer.
        rcode: String,
    },
    /// The server answered with an error (SERVFAIL, REFUSED ...).
    #[error("DNS server {server} answered {rcode} for {name} IPSECKEY")]
    Server {
        /// The name asked for.
        name: String,
        /// The server.
        server: SocketAddr,
        /// The response code.
        rcode: String,
    },
    /// The answer could not be decoded, or was still truncated over TCP.
    #[error("malformed answer from DNS server {server} for {name}: {reason}")]
    Malformed {
        /// The name asked for.
        name: String,
        /// The server.
        server: SocketAddr,
        /// What was wrong.
        reason: String,
    },
    /// IPSECKEY records exist, but none carries a key we can use.
    #[error("no usable key in the IPSECKEY records of {name} at DNS server {server}: {errors:?}")]
    NoUsableKey {
        /// The name asked for.
        name: String,
        /// The server.
        server: SocketAddr,
        /// Why each record was refused.
        errors: Vec<IpsecKeyError>,
    },
}

/// The DNS name for reverse lookups of `ip`: `d.c.b.a.in-addr.arpa.` or
/// the nibble form under `ip6.arpa.` (RFC 3596 2.5), absolute.
pub fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => {
            let [a, b, c, d] = a.octets();
            format!("{d}.{c}.{b}.{a}.in-addr.arpa.")
        }
        IpAddr::V6(a) => {
            let mut s = String::with_capacity(73);
            for b in a.octets().iter().rev() {
                s.push_str(&format!("{:x}.{:x}.", b & 0x0f, b >> 4));
            }
            s.push_str("ip6.arpa.");
            s
        }
    }
}

/// Ask `server` for the IPSECKEY records of `name` (absolute or not; the
/// root is appended), in precedence order (lowest first, RFC 4025 2.2).
///
/// UDP with a random query ID and EDNS(0); answers whose ID, flags or
/// question do not match ours are ignored (RFC 5452 9.1); a truncated
/// answer is asked again over TCP. Records whose RDATA does not parse are
/// skipped with a warning; if all of them fail, [`DnsError::NoUsableKey`].
pub async fn lookup_ipseckey(
    server: SocketAddr,
    name: &str,
    timeout: Duration,
) -> Result<Vec<IpsecKey>, DnsError> {
    Ok(lookup(server, name, timeout).await?.0)
}

/// The lookup, also returning the AD bit of the answer.
async fn lookup(
    server: SocketAddr,
    name: &str,
    timeout: Duration,
) -> Result<(Vec<IpsecKey>, bool), DnsError> {
    let qname = parse_name(name)?;
    let shown = qname.to_ascii();
    let deadline = tokio::time::Instant::now() + timeout;
    let work = async {
        let (id, query) = build_query(&qname, &shown, server)?;
        let mut answer = udp_exchange(server, &query, id, &qname, &shown).await?;
        if answer.metadata.truncation {
            tracing::debug!(%server, name = %shown, "truncated over UDP, asking over TCP");
            let (id, query) = build_query(&qname, &shown, server)?;
            answer = tcp_exchange(server, &query, id, &qname, &shown).await?;
            if answer.metadata.truncation {
                return Err(DnsError::Malformed {
                    name: shown.clone(),
                    server,
                    reason: "truncated over TCP".into(),
                });
            }
        }
        records_of(&answer, &qname, &shown, server).map(|r| (r, answer.metadata.authentic_data))
    };
    match tokio::time::timeout_at(deadline, work).await {
        Ok(r) => r,
        Err(_) => Err(DnsError::Timeout {
            name: shown,
            server,
            after: timeout,
        }),
    }
}

fn parse_name(name: &str) -> Result<Name, DnsError> {
    let bad = |reason: String| DnsError::BadName {
        name: name.to_owned(),
        reason,
    };
    if name.is_empty() || name.len() > 254 {
        return Err(bad("empty or longer than 253 characters".into()));
    }
    let mut n = Name::from_ascii(name).map_err(|e| bad(e.to_string()))?;
    n.set_fqdn(true);
    Ok(n)
}

fn build_query(qname: &Name, shown: &str, server: SocketAddr) -> Result<(u16, Vec<u8>), DnsError> {
    let id = (rand_core::OsRng.next_u32() & 0xffff) as u16;
    let mut msg = Message::new(id, MessageType::Query, OpCode::Query);
    msg.metadata.recursion_desired = true;
    let mut q = Query::query(
        qname.clone(),
        RecordType::from(certs::ipseckey::RECORD_TYPE),
    );
    q.set_query_class(DNSClass::IN);
    msg.add_query(q);
    let mut edns = Edns::new();
    edns.set_max_payload(UDP_PAYLOAD);
    msg.set_edns(edns);
    let bytes = msg.to_vec().map_err(|e| DnsError::BadName {
        name: shown.to_owned(),
        reason: format!("cannot encode the query for {server}: {e}"),
    })?;
    Ok((id, bytes))
}

/// Whether `m` answers our query `id` for `qname`.
fn matches(m: &Message, id: u16, qname: &Name) -> bool {
    m.metadata.id == id
        && m.metadata.message_type == MessageType::Response
        && m.metadata.op_code == OpCode::Query
        && m.queries.len() == 1
        && m.queries.first().is_some_and(|q| {
            // Name equality is case-insensitive (RFC 4343).
            q.name() == qname
                && q.query_type() == RecordType::from(certs::ipseckey::RECORD_TYPE)
                && q.query_class() == DNSClass::IN
        })
}

async fn udp_exchange(
    server: SocketAddr,
    query: &[u8],
    id: u16,
    qname: &Name,
    shown: &str,
) -> Result<Message, DnsError> {
    let io = |source| DnsError::Io { server, source };
    let local: SocketAddr = if server.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = UdpSocket::bind(local).await.map_err(io)?;
    sock.connect(server).await.map_err(io)?;
    let mut buf = vec![0u8; usize::from(UDP_PAYLOAD).max(4096)];
    for attempt in 0..UDP_TRIES {
        sock.send(query).await.map_err(io)?;
        let wait = tokio::time::sleep(Duration::from_millis(700 << attempt));
        tokio::pin!(wait);
        loop {
            tokio::select! {
                () = &mut wait => break,
                r = sock.recv(&mut buf) => {
                    // An error here is typically ICMP port unreachable
                    // (connection refused): nobody serves DNS there.
                    let n = r.map_err(io)?;
                    let Some(datagram) = buf.get(..n) else { continue };
                    match Message::from_vec(datagram) {
                        Ok(m) if matches(&m, id, qname) => return Ok(m),
                        Ok(_) => {
                            tracing::debug!(%server, name = %shown, "ignoring an answer that is not ours");
                        }
                        Err(e) => {
                            tracing::debug!(%server, name = %shown, error = %e, "ignoring an undecodable datagram");
                        }
                    }
                }
            }
        }
    }
    // The caller's deadline normally fires first; this is the fallback.
    Err(DnsError::Timeout {
        name: shown.to_owned(),
        server,
        after: Duration::from_millis(700 * ((1 << UDP_TRIES) - 1)),
    })
}

async fn tcp_exchange(
    server: SocketAddr,
    query: &[u8],
    id: u16,
    qname: &Name,
    shown: &str,
) -> Result<Message, DnsError> {
    let io = |source| DnsError::Io { server, source };
    let mut s = TcpStream::connect(server).await.map_err(io)?;
    let len = u16::try_from(query.len()).map_err(|_| DnsError::BadName {
        name: shown.to_owned(),
        reason: "query too long".into(),
    })?;
    let mut framed = Vec::with_capacity(2 + query.len());
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(query);
    s.write_all(&framed).await.map_err(io)?;
    let mut len = [0u8; 2];
    s.read_exact(&mut len).await.map_err(io)?;
    // At most 65535 octets: bounded by the length field itself.
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut buf).await.map_err(io)?;
    let m = Message::from_vec(&buf).map_err(|e| DnsError::Malformed {
        name: shown.to_owned(),
        server,
        reason: e.to_string(),
    })?;
    if !matches(&m, id, qname) {
        return Err(DnsError::Malformed {
            name: shown.to_owned(),
            server,
            reason: "the TCP answer does not match the question".into(),
        });
    }
    Ok(m)
}

/// The IPSECKEY records of the answer for `qname` (following CNAMEs within
/// the answer), parsed, in precedence order.
fn records_of(
    m: &Message,
    qname: &Name,
    shown: &str,
    server: SocketAddr,
) -> Result<Vec<IpsecKey>, DnsError> {
    match m.metadata.response_code {
        ResponseCode::NoError => {}
        ResponseCode::NXDomain => {
            return Err(DnsError::NoRecord {
                name: shown.to_owned(),
                server,
                rcode: "NXDOMAIN".into(),
            })
        }
        rc => {
            return Err(DnsError::Server {
                name: shown.to_owned(),
                server,
                rcode: rc.to_string(),
            })
        }
    }
    let ipseckey = RecordType::from(certs::ipseckey::RECORD_TYPE);
    let mut owner = qname.clone();
    for _ in 0..MAX_CNAME_HOPS {
        let next = m.answers.iter().find_map(|r| match &r.data {
            RData::CNAME(c) if r.name == owner => Some(c.0.clone()),
            _ => None,
        });
        match next {
            Some(n) => owner = n,
            None => break,
        }
    }
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for r in &m.answers {
        if r.record_type() != ipseckey || r.dns_class != DNSClass::IN || r.name != owner {
            continue;
        }
        let RData::Unknown { rdata, .. } = &r.data else {
            continue;
        };
        match IpsecKey::parse(&rdata.anything) {
            Ok(k) => out.push(k),
            Err(e) => {
                tracing::warn!(name = %shown, %server, error = %e, "skipping an IPSECKEY record");
                errors.push(e);
            }
        }
    }
    if out.is_empty() {
        return Err(if errors.is_empty() {
            DnsError::NoRecord {
                name: shown.to_owned(),
                server,
                rcode: "NOERROR, no IPSECKEY in the answer".into(),
            }
        } else {
            DnsError::NoUsableKey {
                name: shown.to_owned(),
                server,
                errors,
            }
        });
    }
    out.sort_by_key(|k| k.precedence);
    Ok(out)
}

/// A peer's keys and gateways as published in DNS, ready to become its
/// [`Credentials`] (RFC 4322 style).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DnsPeerKeys {
    /// The name looked up (absolute).
    pub name: String,
    /// The DNS server asked.
    pub server: SocketAddr,
    /// The usable keys, in precedence order.
    pub keys: Vec<certs::PublicKey>,
    /// The gateways the records name (other than "none"), in precedence
    /// order, duplicates removed. Reported, not followed.
    pub gateways: Vec<Gateway>,
    /// Records whose key could not be used, and why.
    pub skipped: Vec<(IpsecKey, IpsecKeyError)>,
    /// The AD bit of the answer (only meaningful from a validating
    /// resolver over a trusted path).
    pub authentic_data: bool,
}

impl DnsPeerKeys {
    /// Keys and gateways from parsed records. [`DnsError::NoUsableKey`]
    /// when no record carries a key we can verify with.
    pub fn from_records(
        name: &str,
        server: SocketAddr,
        records: &[IpsecKey],
    ) -> Result<Self, DnsError> {
        let mut sorted: Vec<&IpsecKey> = records.iter().collect();
        sorted.sort_by_key(|k| k.precedence);
        let mut out = Self {
            name: name.to_owned(),
            server,
            keys: Vec::new(),
            gateways: Vec::new(),
            skipped: Vec::new(),
            authentic_data: false,
        };
        for r in sorted {
            if r.gateway != Gateway::None && !out.gateways.contains(&r.gateway) {
                out.gateways.push(r.gateway.clone());
            }
            match r.to_public_key() {
                Ok(k) if !out.keys.contains(&k) => out.keys.push(k),
                Ok(_) => {}
                Err(e) => out.skipped.push((r.clone(), e)),
            }
        }
        if out.keys.is_empty() {
            return Err(DnsError::NoUsableKey {
                name: name.to_owned(),
                server,
                errors: out.skipped.into_iter().map(|(_, e)| e).collect(),
            });
        }
        Ok(out)
    }

    /// `ours` (our private key and settings) with the peer's keys from DNS
    /// as the only keys accepted from the peer: the DNS key authenticates
    /// it (raw public keys, RFC 7670; no BTNS "any key").
    pub fn credentials(&self, ours: Credentials) -> Credentials {
        Credentials {
            peer_keys: self.keys.clone(),
            accept_any_key: false,
            ..ours
        }
    }
}

/// [`lookup_ipseckey`] then [`DnsPeerKeys::from_records`].
pub async fn peer_keys_from_dns(
    server: SocketAddr,
    name: &str,
    timeout: Duration,
) -> Result<DnsPeerKeys, DnsError> {
    let (records, ad) = lookup(server, name, timeout).await?;
    let shown = parse_name(name)?.to_ascii();
    let mut keys = DnsPeerKeys::from_records(&shown, server, &records)?;
    keys.authentic_data = ad;
    Ok(keys)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::NULL;
    use hickory_proto::rr::Record;

    /// An answer to `query` (as received) with one IPSECKEY record whose
    /// precedence is `precedence`; `id`/`qname` override the query's.
    fn answer(query: &Message, id: u16, qname: Option<&str>, precedence: u8, tc: bool) -> Vec<u8> {
        let mut q = query.queries[0].clone();
        if let Some(n) = qname {
            q.set_name(Name::from_ascii(n).unwrap());
        }
        let mut m = Message::response(id, OpCode::Query);
        m.metadata.truncation = tc;
        let owner = q.name().clone();
        m.add_query(q);
        if !tc {
            let rdata = [precedence, 0, certs::ipseckey::algorithm::EDDSA]
                .into_iter()
                .chain([7u8; 32])
                .collect();
            m.add_answer(Record::from_rdata(
                owner,
                60,
                RData::Unknown {
                    code: RecordType::from(certs::ipseckey::RECORD_TYPE),
                    rdata: NULL::with(rdata),
                },
            ));
        }
        m.to_vec().unwrap()
    }

    /// Answers with the wrong ID or the wrong question are ignored (a
    /// blind spoofer's); the real one is taken. A truncated answer is asked
    /// again over TCP.
    #[tokio::test]
    async fn spoofed_answers_ignored_and_truncation_goes_to_tcp() {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let server = udp.local_addr().unwrap();
        let tcp = tokio::net::TcpListener::bind(server).await.unwrap();
        let fake = async move {
            // UDP: three wrong answers, then the right one.
            let mut buf = [0u8; 2048];
            let (n, from) = udp.recv_from(&mut buf).await.unwrap();
            let q = Message::from_vec(&buf[..n]).unwrap();
            let id = q.metadata.id;
            for wrong in [
                answer(&q, id.wrapping_add(1), None, 1, false),
                answer(&q, id, Some("other.example."), 2, false),
                b"garbage".to_vec(),
                answer(&q, id, None, 3, true),
            ] {
                udp.send_to(&wrong, from).await.unwrap();
            }
            // TCP: the full answer.
            let (mut s, _) = tcp.accept().await.unwrap();
            let mut len = [0u8; 2];
            s.read_exact(&mut len).await.unwrap();
            let mut b = vec![0u8; usize::from(u16::from_be_bytes(len))];
            s.read_exact(&mut b).await.unwrap();
            let q = Message::from_vec(&b).unwrap();
            let a = answer(&q, q.metadata.id, None, 4, false);
            s.write_all(&u16::try_from(a.len()).unwrap().to_be_bytes())
                .await
                .unwrap();
            s.write_all(&a).await.unwrap();
        };
        let (r, ()) = tokio::join!(
            lookup_ipseckey(server, "peer.example", Duration::from_secs(5)),
            fake
        );
        let r = r.unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].precedence, 4, "the TCP answer, not a spoofed one");
    }

    #[test]
    fn reverse_names() {
        assert_eq!(
            reverse_name("192.0.2.38".parse().unwrap()),
            "38.2.0.192.in-addr.arpa."
        );
        // RFC 3596 2.5's example.
        assert_eq!(
            reverse_name("4321:0:1:2:3:4:567:89ab".parse().unwrap()),
            "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.0.0.0.0.1.2.3.4.ip6.arpa."
        );
    }

    #[test]
    fn query_is_well_formed() {
        let name = parse_name("peer.example.test").unwrap();
        let server: SocketAddr = "127.0.0.1:53".parse().unwrap();
        let (id, bytes) = build_query(&name, "peer.example.test.", server).unwrap();
        let m = Message::from_vec(&bytes).unwrap();
        assert_eq!(m.metadata.id, id);
        assert_eq!(m.queries.len(), 1);
        assert_eq!(m.queries[0].query_type(), RecordType::from(45));
        assert_eq!(m.queries[0].name().to_ascii(), "peer.example.test.");
        assert!(m.edns.is_some());
        assert!(parse_name("").is_err());
        assert!(parse_name(&"a".repeat(300)).is_err());
    }
}
