//! Loading the PAD and the SPD from the daemon's TOML configuration.
//!
//! `pad` does no I/O: the caller reads the file and passes its text and its
//! name; a mistake comes back as a [`ConfigError`] naming the file, line,
//! column and field, e.g.
//! `peers.toml:12:13: field "auth": unknown variant "pks", expected one of psk, null, certificate, raw_public_key`.
//!
//! The format (other top-level keys are ignored, so the daemon's whole
//! configuration file can be passed):
//!
//! ```toml
//! [[peer]]                        # PAD entries, in order (RFC 4301 4.4.3)
//! name = "office"
//! id = "fqdn:*.example.com"       # any | ip: | ipv4: | ipv6: | fqdn: | rfc822: | dn: | dn-der: | keyid: | pubkey-sha256:
//! auth = ["certificate", "psk"]   # psk | null | certificate | raw_public_key
//! trust_anchors = ["example-root"] # with "certificate"
//! child_sa = ["10.1.0.0/16"]      # addresses the peer may assert; "any" for all
//! btns = false                    # accept unauthenticated peers (RFC 5386)
//! latch_disable = false           # R14: no connection latches on its addresses
//!
//! [[policy]]                      # SPD entries, in order (RFC 4301 4.4.1)
//! name = "web"
//! local = "10.0.0.0/24"           # one or a list; default any
//! remote = ["any"]
//! proto = "tcp"                   # name or number; default any
//! local_port = 443                # number, "LO-HI" or "any"
//! remote_port = "any"
//! action = "protect"              # protect | bypass | discard
//! protection = { services = "confidentiality_and_integrity", encr = ["aes128gcm16"], min_key_bits = 128, replay_protection = true, mode = "transport" }
//! ```

use crate::alg::{Encr, Integ};
use crate::pad_db::{AuthKind, IdPattern, Pad, PadAuth, PadEntry};
use crate::spd::{parse_proto, PortRange, Protection, Services, Spd, SpdAction, SpdEntry};
use crate::{IpRange, Mode, TrafficSelector};
use core::fmt;
use core::marker::PhantomData;
use core::ops::Range;
use core::str::FromStr;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use toml::Spanned;

/// What kind of mistake a configuration holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConfigErrorKind {
    /// Not valid TOML.
    Syntax,
    /// Valid TOML that does not fit the schema: unknown or missing field,
    /// wrong type, unknown variant, a value that does not parse.
    Schema,
    /// Fields that parse but do not fit together (e.g. `null` authentication
    /// without `btns = true`, two entries with one name).
    Inconsistent,
    /// A file the configuration names (a key, a certificate, an included
    /// policy) cannot be read or does not hold what it should.
    File,
}

/// A configuration mistake, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file name given by the caller.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
    /// The field concerned (dotted path for inline tables), if known.
    pub field: Option<String>,
    /// What kind of mistake.
    pub kind: ConfigErrorKind,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if let Some(field) = &self.field {
            write!(f, "field {field:?}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl ConfigError {
    /// A TOML deserialization error of `src` (the text of `file`) as a
    /// [`ConfigError`]: position, field and kind found the way
    /// [`PolicyConfig::from_toml`] finds them. For other configuration
    /// schemas (the daemon's) built on the same `toml` crate.
    pub fn from_toml(src: &str, file: &str, e: &toml::de::Error) -> Self {
        from_toml_error(src, file, e)
    }

    /// A mistake in the value of `field` found at byte range `span` of
    /// `src` (as `toml::Spanned::span` gives it).
    pub fn at(
        src: &str,
        file: &str,
        span: Range<usize>,
        field: &str,
        kind: ConfigErrorKind,
        message: impl Into<String>,
    ) -> Self {
        let (line, column) = line_col(src, span.start);
        Self {
            file: file.to_owned(),
            line,
            column,
            field: Some(field.to_owned()),
            kind,
            message: message.into(),
        }
    }
}

/// 1-based line and column of a byte offset.
fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let upto = src.get(..offset.min(src.len())).unwrap_or(src);
    let line = upto.matches('\n').count() + 1;
    let col = upto.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// The key (dotted through inline tables) whose value holds `offset`.
/// A light forward scan: strings and comments skipped, brackets tracked.
fn field_at(src: &str, offset: usize) -> Option<String> {
    struct Frame {
        key: Option<String>,
        brace: bool,
    }
    let b = src.as_bytes();
    let mut stack: Vec<Frame> = Vec::new();
    let mut current: Option<String> = None;
    let mut key_start = 0usize;
    let mut i = 0usize;
    let clean = |s: &str| s.trim().trim_matches('"').trim_matches('\'').to_owned();
    while i < offset.min(b.len()) {
        let c = b.get(i).copied().unwrap_or(b'\n');
        match c {
            b'#' => {
                while i < b.len() && b.get(i) != Some(&b'\n') {
                    i += 1;
                }
                continue;
            }
            b'"' | b'\'' => {
                let triple = b.get(i..i + 3) == Some(&[c, c, c][..]);
                let step = if triple { 3 } else { 1 };
                i += step;
                while i < b.len() {
                    if c == b'"' && b.get(i) == Some(&b'\\') {
                        i += 2;
                        continue;
                    }
                    if (triple && b.get(i..i + 3) == Some(&[c, c, c][..]))
                        || (!triple && b.get(i) == Some(&c))
                    {
                        break;
                    }
                    i += 1;
                }
                i += step;
                continue;
            }
            b'=' if stack.last().is_none_or(|f| f.brace) => {
                current = src.get(key_start..i).map(clean);
            }
            b'[' if stack.is_empty() && current.is_none() => {
                // A table header: skip it.
                while i < b.len() && b.get(i) != Some(&b'\n') {
                    i += 1;
                }
                continue;
            }
            b'[' | b'{' => {
                stack.push(Frame {
                    key: current.take(),
                    brace: c == b'{',
                });
                key_start = i + 1;
            }
            b']' | b'}' => {
                if let Some(f) = stack.pop() {
                    current = f.key;
                }
            }
            b',' if stack.last().is_some_and(|f| f.brace) => {
                current = None;
                key_start = i + 1;
            }
            b'\n' if stack.is_empty() => {
                current = None;
                key_start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    let mut path: Vec<String> = stack.into_iter().filter_map(|f| f.key).collect();
    path.extend(current);
    (!path.is_empty()).then(|| path.join("."))
}

/// serde's messages quote with backticks; ours with double quotes, and the
/// list of expected names bare.
fn tidy(msg: &str) -> String {
    let (head, tail) = match msg.find(", expected one of ") {
        Some(i) => msg.split_at(i),
        None => (msg, ""),
    };
    let mut out = String::new();
    let mut open = false;
    for ch in head.chars() {
        if ch == '`' {
            out.push('"');
            open = !open;
        } else {
            out.push(ch);
        }
    }
    out.push_str(&tail.replace('`', ""));
    out
}

fn backticked(msg: &str, prefix: &str) -> Option<String> {
    let rest = msg.strip_prefix(prefix)?.strip_prefix('`')?;
    rest.split('`').next().map(str::to_owned)
}

fn from_toml_error(src: &str, file: &str, e: &toml::de::Error) -> ConfigError {
    let msg = e.message().trim();
    let offset = e.span().map_or(0, |s| s.start);
    let (line, column) = line_col(src, offset);
    let (kind, field) = if let Some(f) = backticked(msg, "unknown field ") {
        (ConfigErrorKind::Schema, Some(f))
    } else if let Some(f) = backticked(msg, "missing field ") {
        (ConfigErrorKind::Schema, Some(f))
    } else if toml::from_str::<toml::Table>(src).is_err() {
        (ConfigErrorKind::Syntax, None)
    } else {
        (ConfigErrorKind::Schema, field_at(src, offset))
    };
    ConfigError {
        file: file.to_owned(),
        line,
        column,
        field,
        kind,
        message: tidy(msg),
    }
}

fn inconsistent(
    src: &str,
    file: &str,
    span: Range<usize>,
    field: &str,
    message: String,
) -> ConfigError {
    ConfigError::at(
        src,
        file,
        span,
        field,
        ConfigErrorKind::Inconsistent,
        message,
    )
}

/// A value written as a string and parsed with `FromStr`, so that its parse
/// error carries the value's position.
struct Parsed<T>(T);

impl<'de, T> Deserialize<'de> for Parsed<T>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Parse inside the visitor, so that the deserializer puts the value's
        // own position on the error (a list element, not the whole list).
        struct V<T>(PhantomData<T>);
        impl<T> Visitor<'_> for V<T>
        where
            T: FromStr,
            T::Err: fmt::Display,
        {
            type Value = Parsed<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                s.parse().map(Parsed).map_err(E::custom)
            }
        }
        d.deserialize_str(V(PhantomData))
    }
}

/// One string or a list of strings, each parsed with `FromStr`.
struct OneOrMany<T>(Vec<T>);

impl<T> Default for OneOrMany<T> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<'de, T> Deserialize<'de> for OneOrMany<T>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T> Visitor<'de> for V<T>
        where
            T: FromStr,
            T::Err: fmt::Display,
        {
            type Value = OneOrMany<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                s.parse().map(|v| OneOrMany(vec![v])).map_err(E::custom)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut v = Vec::new();
                while let Some(Parsed(x)) = seq.next_element::<Parsed<T>>()? {
                    v.push(x);
                }
                Ok(OneOrMany(v))
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// A number or a string parsed with `FromStr` (ports, protocols).
struct NumOrStr<T>(T);

impl<'de, T> Deserialize<'de> for NumOrStr<T>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<T> Visitor<'_> for V<T>
        where
            T: FromStr,
            T::Err: fmt::Display,
        {
            type Value = NumOrStr<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number or a string")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                s.parse().map(NumOrStr).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Self::Value, E> {
                self.visit_str(&n.to_string())
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Self::Value, E> {
                self.visit_str(&n.to_string())
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// Addresses in selector or child-SA syntax: `any`, an address, a prefix
/// or a range (no protocol or ports).
struct Addrs(Vec<IpRange>);

impl FromStr for Addrs {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.trim() == "any" {
            return Ok(Self(vec![IpRange::any(true), IpRange::any(false)]));
        }
        let ts: TrafficSelector = s.parse().map_err(|e| format!("{e}"))?;
        if ts != TrafficSelector::range(ts.addr) {
            return Err(format!(
                "{s:?}: addresses only here (ADDR, ADDR/PREFIX, ADDR-ADDR or any), no protocol or ports"
            ));
        }
        Ok(Self(vec![ts.addr]))
    }
}

struct Proto(u8);

impl FromStr for Proto {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_proto(s).map(Proto).ok_or_else(|| {
            format!("unknown protocol {s:?} (expected tcp, udp, icmp, icmpv6, sctp, any or 0-255)")
        })
    }
}

struct EncrName(Encr);

impl FromStr for EncrName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Encr::from_name(s).map(EncrName).ok_or_else(|| {
            let names: Vec<&str> = Encr::ALL.iter().map(|e| e.name()).collect();
            format!("unknown cipher {s:?}, expected one of {}", names.join(", "))
        })
    }
}

struct IntegName(Integ);

impl FromStr for IntegName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Integ::from_name(s).map(IntegName).ok_or_else(|| {
            let names: Vec<&str> = Integ::ALL.iter().map(|e| e.name()).collect();
            format!(
                "unknown integrity algorithm {s:?}, expected one of {}",
                names.join(", ")
            )
        })
    }
}

#[derive(Deserialize)]
struct RawTop {
    #[serde(default)]
    peer: Vec<RawPeer>,
    #[serde(default)]
    policy: Vec<RawPolicy>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPeer {
    name: Spanned<String>,
    id: Parsed<IdPattern>,
    auth: Spanned<Vec<AuthKind>>,
    #[serde(default)]
    trust_anchors: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    child_sa: OneOrMany<Addrs>,
    #[serde(default)]
    btns: bool,
    #[serde(default)]
    latch_disable: bool,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum RawAction {
    Protect,
    Bypass,
    Discard,
}

fn default_key_bits() -> u16 {
    128
}

fn default_true() -> bool {
    true
}

fn default_services() -> Services {
    Services::ConfidentialityAndIntegrity
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProtection {
    #[serde(default = "default_services")]
    services: Services,
    #[serde(default)]
    encr: Vec<Parsed<EncrName>>,
    #[serde(default)]
    integ: Vec<Parsed<IntegName>>,
    #[serde(default = "default_key_bits")]
    min_key_bits: u16,
    #[serde(default = "default_true")]
    replay_protection: bool,
    #[serde(default)]
    mode: Option<Mode>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    name: Spanned<String>,
    #[serde(default)]
    local: OneOrMany<Addrs>,
    #[serde(default)]
    remote: OneOrMany<Addrs>,
    #[serde(default)]
    proto: Option<NumOrStr<Proto>>,
    #[serde(default)]
    local_port: Option<NumOrStr<PortRange>>,
    #[serde(default)]
    remote_port: Option<NumOrStr<PortRange>>,
    action: RawAction,
    #[serde(default)]
    protection: Option<Spanned<RawProtection>>,
}

fn flat(v: OneOrMany<Addrs>) -> Vec<IpRange> {
    let mut out: Vec<IpRange> = v.0.into_iter().flat_map(|a| a.0).collect();
    // `any` in both families is no restriction at all.
    if out.contains(&IpRange::any(true)) && out.contains(&IpRange::any(false)) {
        out.clear();
    }
    out
}

fn check_unique<'a>(
    src: &str,
    file: &str,
    names: impl Iterator<Item = &'a Spanned<String>>,
    what: &str,
) -> Result<(), ConfigError> {
    let mut seen: Vec<&str> = Vec::new();
    for n in names {
        if seen.contains(&n.get_ref().as_str()) {
            return Err(inconsistent(
                src,
                file,
                n.span(),
                "name",
                format!("two {what} entries are named {:?}", n.get_ref()),
            ));
        }
        seen.push(n.get_ref());
    }
    Ok(())
}

fn build_peer(src: &str, file: &str, p: RawPeer) -> Result<PadEntry, ConfigError> {
    let kinds = p.auth.get_ref();
    let auth_span = p.auth.span();
    let err = |field: &str, span: Range<usize>, m: String| inconsistent(src, file, span, field, m);
    if kinds.is_empty() {
        return Err(err(
            "auth",
            auth_span,
            "lists no authentication method".into(),
        ));
    }
    let pinned = matches!(p.id.0, IdPattern::KeyFingerprint(_));
    for k in kinds {
        match k {
            AuthKind::Null if !p.btns => {
                return Err(err(
                    "auth",
                    auth_span,
                    "\"null\" authentication accepts unauthenticated peers and needs btns = true (RFC 5386)".into(),
                ))
            }
            AuthKind::RawPublicKey if !p.btns && !pinned => {
                return Err(err(
                    "auth",
                    auth_span,
                    "\"raw_public_key\" needs an id = \"pubkey-sha256:...\" pin, or btns = true".into(),
                ))
            }
            _ => {}
        }
    }
    let has_cert = kinds.contains(&AuthKind::Certificate);
    let anchors = match (p.trust_anchors, has_cert) {
        (Some(t), false) => {
            return Err(err(
                "trust_anchors",
                t.span(),
                "trust anchors given but auth has no \"certificate\"".into(),
            ))
        }
        (None, true) => {
            return Err(err(
                "auth",
                auth_span,
                "\"certificate\" needs trust_anchors = [...]".into(),
            ))
        }
        (Some(t), true) if t.get_ref().is_empty() => {
            return Err(err("trust_anchors", t.span(), "is empty".into()))
        }
        (t, _) => t.map(Spanned::into_inner).unwrap_or_default(),
    };
    let mut auth = Vec::new();
    for k in kinds {
        let a = match k {
            AuthKind::Psk => PadAuth::Psk,
            AuthKind::Null => PadAuth::Null,
            AuthKind::Certificate => PadAuth::Certificate {
                trust_anchors: anchors.clone(),
            },
            _ => PadAuth::RawPublicKey,
        };
        if !auth.contains(&a) {
            auth.push(a);
        }
    }
    Ok(PadEntry {
        name: p.name.into_inner(),
        id: p.id.0,
        auth,
        child_sa: p.child_sa.0.into_iter().flat_map(|a| a.0).collect(),
        btns: p.btns,
        latch_disable: p.latch_disable,
    })
}

fn build_policy(src: &str, file: &str, p: RawPolicy) -> Result<SpdEntry, ConfigError> {
    let action = match (p.action, p.protection) {
        (RawAction::Protect, None) => SpdAction::Protect(Protection::default()),
        (RawAction::Protect, Some(r)) => {
            let r = r.into_inner();
            SpdAction::Protect(Protection {
                services: r.services,
                encr: r.encr.into_iter().map(|e| e.0 .0).collect(),
                integ: r.integ.into_iter().map(|e| e.0 .0).collect(),
                min_key_bits: r.min_key_bits,
                replay_protection: r.replay_protection,
                mode: r.mode,
            })
        }
        (a, Some(r)) => {
            return Err(inconsistent(
                src,
                file,
                r.span(),
                "protection",
                format!(
                    "given with action = \"{}\"; only \"protect\" takes a protection",
                    if a == RawAction::Bypass {
                        "bypass"
                    } else {
                        "discard"
                    }
                ),
            ))
        }
        (RawAction::Bypass, None) => SpdAction::Bypass,
        (RawAction::Discard, None) => SpdAction::Discard,
    };
    Ok(SpdEntry {
        name: p.name.into_inner(),
        local: flat(p.local),
        remote: flat(p.remote),
        proto: p.proto.map_or(0, |x| x.0 .0),
        local_ports: p.local_port.map_or(PortRange::ANY, |x| x.0),
        remote_ports: p.remote_port.map_or(PortRange::ANY, |x| x.0),
        action,
    })
}

/// The PAD and the SPD of one configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyConfig {
    /// The `[[peer]]` entries.
    pub pad: Pad,
    /// The `[[policy]]` entries.
    pub spd: Spd,
}

impl PolicyConfig {
    /// Parse the `[[peer]]` and `[[policy]]` arrays of a TOML text read from
    /// the file named `file` (used in error messages only).
    pub fn from_toml(src: &str, file: &str) -> Result<Self, ConfigError> {
        let raw: RawTop = toml::from_str(src).map_err(|e| from_toml_error(src, file, &e))?;
        check_unique(src, file, raw.peer.iter().map(|p| &p.name), "[[peer]]")?;
        check_unique(src, file, raw.policy.iter().map(|p| &p.name), "[[policy]]")?;
        let pad = raw
            .peer
            .into_iter()
            .map(|p| build_peer(src, file, p))
            .collect::<Result<Vec<_>, _>>()?;
        let spd = raw
            .policy
            .into_iter()
            .map(|p| build_policy(src, file, p))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            pad: Pad::new(pad),
            spd: Spd::new(spd),
        })
    }
}

impl Pad {
    /// The PAD of a TOML text's `[[peer]]` entries (see [`PolicyConfig`]).
    pub fn from_toml(src: &str, file: &str) -> Result<Self, ConfigError> {
        PolicyConfig::from_toml(src, file).map(|c| c.pad)
    }
}

impl Spd {
    /// The SPD of a TOML text's `[[policy]]` entries (see [`PolicyConfig`]).
    pub fn from_toml(src: &str, file: &str) -> Result<Self, ConfigError> {
        PolicyConfig::from_toml(src, file).map(|c| c.spd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pad_db::KeyFingerprint;
    use crate::spd::FiveTuple;
    use crate::Identity;

    const GOOD: &str = r#"
[daemon]                      # someone else's table: ignored
listen = "0.0.0.0:500"

[[peer]]
name = "office"
id = "fqdn:*.example.com"
auth = ["certificate", "psk"]
trust_anchors = ["example-root"]
child_sa = ["10.1.0.0/16", "10.2.0.1-10.2.0.9"]

[[peer]]
name = "pinned"
id = "pubkey-sha256:0101010101010101010101010101010101010101010101010101010101010101"
auth = ["raw_public_key"]
child_sa = "192.0.2.7"
latch_disable = true

[[peer]]
name = "btns"
id = "any"
auth = ["null", "raw_public_key"]
child_sa = "any"
btns = true

[[policy]]
name = "ike"
proto = "udp"
local_port = 500
action = "bypass"

[[policy]]
name = "web"
local = "10.0.0.0/24"
proto = 6
local_port = "443"
action = "protect"
protection = { encr = ["aes256gcm16", "chacha20poly1305"], min_key_bits = 256, mode = "transport" }

[[policy]]
name = "rest"
remote = ["any"]
action = "discard"
"#;

    fn err(src: &str) -> ConfigError {
        PolicyConfig::from_toml(src, "peers.toml").unwrap_err()
    }

    #[test]
    fn loads_pad_and_spd() {
        let c = PolicyConfig::from_toml(GOOD, "latchkey.toml").unwrap();
        let pad = &c.pad;
        assert_eq!(pad.entries().len(), 3);
        let office = &pad.entries()[0];
        assert_eq!(office.trust_anchors(), ["example-root".to_owned()]);
        assert_eq!(office.child_sa.len(), 2);
        let id = Identity::Fqdn("gw.example.com".into());
        assert_eq!(pad.lookup(&id, AuthKind::Psk, None).unwrap().name, "office");
        let fp = KeyFingerprint([1; 32]);
        let e = pad
            .lookup(&Identity::Null, AuthKind::RawPublicKey, Some(&fp))
            .unwrap();
        assert_eq!(e.name, "pinned");
        assert!(e.latch_disable);
        assert_eq!(
            pad.latch_disabled_for("192.0.2.7".parse().unwrap())
                .unwrap()
                .name,
            "pinned"
        );
        assert_eq!(pad.entries()[2].child_sa.len(), 2);
        assert_eq!(
            pad.lookup(&Identity::Null, AuthKind::Null, None)
                .unwrap()
                .name,
            "btns"
        );

        let spd = &c.spd;
        let t = |l: &str, r: &str, p| FiveTuple::new(p, l.parse().unwrap(), r.parse().unwrap());
        assert_eq!(
            spd.lookup(&t("10.0.0.1:500", "10.9.0.1:500", 17))
                .unwrap()
                .name,
            "ike"
        );
        let web = spd.lookup(&t("10.0.0.1:443", "10.9.0.1:5555", 6)).unwrap();
        assert_eq!(web.name, "web");
        let SpdAction::Protect(p) = &web.action else {
            panic!("web protects")
        };
        assert_eq!(p.encr, [Encr::AesGcm16_256, Encr::ChaCha20Poly1305]);
        assert_eq!(p.min_key_bits, 256);
        assert_eq!(p.mode, Some(Mode::Transport));
        assert!(p.replay_protection);
        assert_eq!(
            spd.lookup(&t("10.0.1.1:443", "10.9.0.1:5555", 6))
                .unwrap()
                .name,
            "rest"
        );
        assert!(spd.entries()[2].remote.is_empty());
    }

    #[test]
    fn unknown_variant_names_file_line_field() {
        let src = "[[peer]]\nname = \"a\"\nid = \"any\"\nauth = [\"psk\"]\n\n[[peer]]\n    name = \"b\"\n    id = \"any\"\n    auth = [\"pks\"]\n";
        let e = err(src);
        assert_eq!(
            e.to_string(),
            "peers.toml:9:13: field \"auth\": unknown variant \"pks\", expected one of psk, null, certificate, raw_public_key"
        );
        assert_eq!(e.kind, ConfigErrorKind::Schema);
        assert_eq!((e.line, e.column), (9, 13));
    }

    #[test]
    fn schema_errors() {
        let e = err("[[peer]]\nid = \"any\"\nauth = [\"psk\"]\n");
        assert_eq!(
            e.to_string(),
            "peers.toml:1:1: field \"name\": missing field \"name\""
        );
        let e = err("[[peer]]\nname = \"a\"\nid = \"any\"\nauth = [\"psk\"]\nbtn = true\n");
        assert_eq!(e.field.as_deref(), Some("btn"));
        assert_eq!(e.line, 5);
        assert!(e
            .message
            .starts_with("unknown field \"btn\", expected one of name, id"));
        let e = err("[[peer]]\nname = \"a\"\nid = \"host:x\"\nauth = [\"psk\"]\n");
        assert_eq!(
            e.to_string(),
            "peers.toml:3:6: field \"id\": unknown identity pattern \"host:x\" (expected any, ip:, ipv4:, ipv6:, fqdn:, rfc822:, dn:, dn-der:, keyid: or pubkey-sha256:)"
        );
        let e = err("[[peer]]\nname = \"a\"\nid = \"any\"\nauth = [\"psk\"]\nchild_sa = [\"10.0.0.0/8\",\n  \"10.0.0.0/99\"]\n");
        assert_eq!((e.line, e.column), (6, 3));
        assert_eq!(e.field.as_deref(), Some("child_sa"));
        let e = err("[[policy]]\nname = \"p\"\naction = \"protect\"\nprotection = { encr = [\"aes999\"] }\n");
        assert_eq!(e.field.as_deref(), Some("protection.encr"));
        assert!(e
            .message
            .starts_with("unknown cipher \"aes999\", expected one of aes128gcm16"));
        let e = err("[[policy]]\nname = \"p\"\nlocal_port = \"9-1\"\naction = \"bypass\"\n");
        assert_eq!(e.to_string(), "peers.toml:3:14: field \"local_port\": bad port range \"9-1\" (expected PORT, LO-HI or any)");
        let e = err("[[policy]]\nname = \"p\"\nproto = \"tpc\"\naction = \"bypass\"\n");
        assert_eq!(e.field.as_deref(), Some("proto"));
        let e = err("[[peer]]\nname = \"a\nid = 1\n");
        assert_eq!(e.kind, ConfigErrorKind::Syntax);
        assert_eq!(e.line, 2);
    }

    #[test]
    fn inconsistent_entries() {
        let e = err("[[peer]]\nname = \"a\"\nid = \"any\"\nauth = [\"null\"]\n");
        assert_eq!(e.kind, ConfigErrorKind::Inconsistent);
        assert_eq!(
            e.to_string(),
            "peers.toml:4:8: field \"auth\": \"null\" authentication accepts unauthenticated peers and needs btns = true (RFC 5386)"
        );
        let e = err("[[peer]]\nname = \"a\"\nid = \"any\"\nauth = [\"raw_public_key\"]\n");
        assert_eq!(e.field.as_deref(), Some("auth"));
        let e = err("[[peer]]\nname = \"a\"\nid = \"any\"\nauth = [\"certificate\"]\n");
        assert!(e.message.contains("needs trust_anchors"));
        let e = err(
            "[[peer]]\nname = \"a\"\nid = \"any\"\nauth = [\"psk\"]\ntrust_anchors = [\"r\"]\n",
        );
        assert_eq!((e.field.as_deref(), e.line), (Some("trust_anchors"), 5));
        let e = err("[[peer]]\nname = \"a\"\nid = \"any\"\nauth = [\"psk\"]\n[[peer]]\nname = \"a\"\nid = \"any\"\nauth = [\"psk\"]\n");
        assert_eq!(
            e.to_string(),
            "peers.toml:6:8: field \"name\": two [[peer]] entries are named \"a\""
        );
        let e = err(
            "[[policy]]\nname = \"p\"\naction = \"bypass\"\nprotection = { min_key_bits = 256 }\n",
        );
        assert_eq!((e.field.as_deref(), e.line), (Some("protection"), 4));
    }

    /// The constructors other schemas (the daemon's) build their errors with.
    #[test]
    fn error_constructors_for_other_schemas() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code, reason = "only the error matters")]
        struct Other {
            port: u16,
            name: Spanned<String>,
        }
        let src = "name = \"x\"\nport = 70000\n";
        let e = toml::from_str::<Other>(src).unwrap_err();
        let e = ConfigError::from_toml(src, "d.toml", &e);
        assert_eq!((e.line, e.column, e.field.as_deref()), (2, 8, Some("port")));
        assert_eq!(e.kind, ConfigErrorKind::Schema);
        let src = "port = 1\nname = \"x y\"\n";
        let o: Other = toml::from_str(src).unwrap();
        let e = ConfigError::at(
            src,
            "d.toml",
            o.name.span(),
            "name",
            ConfigErrorKind::File,
            "no such thing",
        );
        assert_eq!(e.to_string(), "d.toml:2:8: field \"name\": no such thing");
    }
}
