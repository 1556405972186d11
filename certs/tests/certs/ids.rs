//! IKE ID <-> certificate matching (RFC 4945 3.1).

use crate::common::{now, rng};
use certs::{identity_matches, self_signed, AltName, EndEntity, KeyAlgorithm};
use pad::Identity;

fn cert(spec: EndEntity) -> Vec<u8> {
    self_signed(&spec, KeyAlgorithm::Ed25519, now(), &mut rng(300))
        .unwrap()
        .cert_der
}

fn m(c: &[u8], id: Identity) -> bool {
    identity_matches(c, &id).unwrap()
}

#[test]
fn addresses_match_ip_alt_names_only() {
    let c = cert(
        EndEntity::host("192.0.2.30")
            .with_alt_name(AltName::Ip("2001:db8::30".parse().unwrap()))
            .with_alt_name(AltName::Dns("198.51.100.30".into())),
    );
    assert!(m(&c, Identity::Ipv4("192.0.2.30".parse().unwrap())));
    assert!(m(&c, Identity::Ipv6("2001:db8::30".parse().unwrap())));
    assert!(!m(&c, Identity::Ipv4("192.0.2.31".parse().unwrap())));
    // A dNSName spelling an address is not an iPAddress.
    assert!(!m(&c, Identity::Ipv4("198.51.100.30".parse().unwrap())));
    // The IPv4-mapped IPv6 form is a different identity.
    assert!(!m(&c, Identity::Ipv6("::ffff:192.0.2.30".parse().unwrap())));
    // FQDN IDs never match iPAddress entries.
    assert!(!m(&c, Identity::Fqdn("192.0.2.30".into())));
}

#[test]
fn fqdn_matches_dns_names() {
    let c = cert(
        EndEntity::host("Gw.Example.NET").with_alt_name(AltName::Dns("*.wild.example".into())),
    );
    assert!(m(&c, Identity::Fqdn("gw.example.net".into())));
    assert!(m(&c, Identity::Fqdn("GW.EXAMPLE.NET.".into())));
    assert!(!m(&c, Identity::Fqdn("example.net".into())));
    assert!(!m(&c, Identity::Fqdn("x.gw.example.net".into())));
    // No wildcard matching (RFC 4945 defines none).
    assert!(!m(&c, Identity::Fqdn("a.wild.example".into())));
    // The commonName is not consulted.
    let mut spec = EndEntity::host("cn.example");
    spec.alt_names.clear();
    let cn_only = cert(spec);
    assert!(!m(&cn_only, Identity::Fqdn("cn.example".into())));
}

#[test]
fn rfc822_matches_email_names() {
    let c = cert(EndEntity::user("Carol@Example.org"));
    assert!(m(&c, Identity::Rfc822("Carol@example.ORG".into())));
    // The local part is case-sensitive (RFC 5321 2.4).
    assert!(!m(&c, Identity::Rfc822("carol@example.org".into())));
    assert!(!m(&c, Identity::Rfc822("dave@example.org".into())));
    assert!(!m(&c, Identity::Fqdn("example.org".into())));
}

#[test]
fn dn_matches_the_subject() {
    let c = cert(EndEntity::user("erin@example.org").with_organization("Example Org"));
    let info = certs::describe(&c).unwrap();
    assert_eq!(info.subject, "CN=erin@example.org, O=Example Org");
    // Build the same DN and a case-variant with another string type.
    let dn = rcgen_dn;
    assert!(m(
        &c,
        Identity::DerAsn1Dn(dn("erin@example.org", "Example Org", false))
    ));
    assert!(m(
        &c,
        Identity::DerAsn1Dn(dn("ERIN@example.org", "example  org", true))
    ));
    assert!(!m(
        &c,
        Identity::DerAsn1Dn(dn("erin@example.org", "Other Org", false))
    ));
    assert!(!m(&c, Identity::DerAsn1Dn(b"\x30\x03junk".to_vec())));
    assert!(!m(&c, Identity::DerAsn1Dn(Vec::new())));
}

#[test]
fn other_id_types_never_match() {
    let c = cert(EndEntity::host("192.0.2.32"));
    assert!(!m(&c, Identity::KeyId(b"192.0.2.32".to_vec())));
    assert!(!m(&c, Identity::Null));
}

/// DER `Name ::= SEQUENCE OF SET OF AttributeTypeAndValue` with CN then O,
/// as UTF8String or (for the variant) PrintableString / IA5-free text.
fn rcgen_dn(cn: &str, o: &str, printable: bool) -> Vec<u8> {
    fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
        assert!(body.len() < 128);
        let mut v = vec![tag, body.len() as u8];
        v.extend_from_slice(body);
        v
    }
    let atv = |oid: &[u8], val: &str, tag: u8| {
        let mut b = tlv(0x06, oid);
        b.extend(tlv(tag, val.as_bytes()));
        tlv(0x31, &tlv(0x30, &b))
    };
    // CN is UTF8String in both; O is PrintableString in the variant.
    let mut body = atv(&[0x55, 0x04, 0x03], cn, 0x0c);
    body.extend(atv(
        &[0x55, 0x04, 0x0a],
        o,
        if printable { 0x13 } else { 0x0c },
    ));
    tlv(0x30, &body)
}
