//! `latchkey keys --wireshark DIR`: SA keys as Wireshark's decryption
//! tables (UAT files), so that tshark/Wireshark decrypts a capture of
//! latchkey's IKE and ESP traffic.
//!
//! Two files, in the format Wireshark 3.6/4.0 read (and write) them:
//!
//! - `ikev2_decryption_table` (packet-isakmp.c), 8 fields per line:
//!   Initiator's SPI, Responder's SPI, SK_ei, SK_er (hex, no quotes),
//!   Encryption algorithm (quoted, Wireshark's own name, e.g.
//!   `"AES-GCM-128 with 16 octet ICV [RFC5282]"`), SK_ai, SK_ar (hex; empty
//!   for AEADs), Integrity algorithm (e.g. `"NONE [RFC4306]"`). For AEAD
//!   ciphers SK_e* is the key followed by its 4-octet salt.
//! - `esp_sa` (packet-ipsec.c), 8 quoted fields per line: Protocol
//!   (`IPv4`/`IPv6`), Src IP, Dest IP (the outer addresses as the packets
//!   carry them; `*` for a wildcard-bound local address), SPI (`0x%08x`),
//!   Encryption (e.g. `AES-GCM with 16 octet ICV [RFC4106]`), Encryption
//!   Key (`0x` hex, with the salt for AES-GCM), Authentication (`NULL` for
//!   AEADs, e.g. `HMAC-SHA-256-128 [RFC4868]`), Authentication Key.
//!
//! Put both files in a Wireshark profile directory
//! (`$XDG_CONFIG_HOME/wireshark/` or `~/.config/wireshark/`) or pass each
//! line as `-o "uat:ikev2_decryption_table:LINE"` / `-o "uat:esp_sa:LINE"`;
//! ESP decryption also needs `-o esp.enable_encryption_decode:TRUE`.
//!
//! These are SECRET keys. Files are written with mode 0600 (the directory,
//! if created, 0700); every export prints a warning.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use endpoint::{EspSaKeys, IkeSaKeys, SessionKeys};
use pad::alg::{Encr, Integ};
use zeroize::Zeroizing;

/// File name of Wireshark's IKEv2 decryption table.
pub(crate) const IKEV2_TABLE: &str = "ikev2_decryption_table";
/// File name of Wireshark's ESP SA table.
pub(crate) const ESP_TABLE: &str = "esp_sa";

/// The two tables' contents, ready to write. Zeroized on drop.
#[derive(Debug, Default)]
pub(crate) struct WiresharkTables {
    /// Contents of `ikev2_decryption_table`.
    pub(crate) ikev2_decryption_table: Zeroizing<String>,
    /// Contents of `esp_sa`.
    pub(crate) esp_sa: Zeroizing<String>,
    /// IKE SAs written.
    pub(crate) ike_sas: usize,
    /// ESP SAs written.
    pub(crate) esp_sas: usize,
    /// SAs left out (an algorithm Wireshark's table has no entry for), why.
    pub(crate) skipped: Vec<String>,
}

const HEADER: &str =
    "# latchkey: SECRET KEYS. Anyone who reads this file can decrypt (and forge)\n\
# the traffic of these SAs. Delete it when done.\n";

/// Wireshark's name of an IKEv2 encryption algorithm (packet-isakmp.c,
/// `vs_ikev2_encr_algs`).
fn ikev2_encr_name(e: Encr) -> Option<&'static str> {
    match e {
        Encr::AesCbc128 => Some("AES-CBC-128 [RFC3602]"),
        Encr::AesCbc256 => Some("AES-CBC-256 [RFC3602]"),
        Encr::AesGcm16_128 => Some("AES-GCM-128 with 16 octet ICV [RFC5282]"),
        Encr::AesGcm16_256 => Some("AES-GCM-256 with 16 octet ICV [RFC5282]"),
        // No ChaCha20-Poly1305 entry in Wireshark 4.0's table.
        _ => None,
    }
}

/// Wireshark's name of an IKEv2 integrity algorithm (`vs_ikev2_auth_algs`).
fn ikev2_integ_name(i: Option<Integ>) -> Option<&'static str> {
    match i {
        None => Some("NONE [RFC4306]"),
        Some(Integ::HmacSha256_128) => Some("HMAC_SHA2_256_128 [RFC4868]"),
        Some(Integ::HmacSha384_192) => Some("HMAC_SHA2_384_192 [RFC4868]"),
        Some(Integ::HmacSha512_256) => Some("HMAC_SHA2_512_256 [RFC4868]"),
        Some(_) => None,
    }
}

/// Wireshark's name of an ESP encryption algorithm (packet-ipsec.c,
/// `esp_encryption_type_vals`); AES key sizes come from the key length.
fn esp_encr_name(e: Encr) -> Option<&'static str> {
    match e {
        Encr::AesCbc128 | Encr::AesCbc256 => Some("AES-CBC [RFC3602]"),
        Encr::AesGcm16_128 | Encr::AesGcm16_256 => Some("AES-GCM with 16 octet ICV [RFC4106]"),
        _ => None,
    }
}

/// Wireshark's name of an ESP authentication algorithm
/// (`esp_authentication_type_vals`).
fn esp_integ_name(i: Option<Integ>) -> Option<&'static str> {
    match i {
        None => Some("NULL"),
        Some(Integ::HmacSha256_128) => Some("HMAC-SHA-256-128 [RFC4868]"),
        Some(Integ::HmacSha384_192) => Some("HMAC-SHA-384-192 [RFC4868]"),
        Some(Integ::HmacSha512_256) => Some("HMAC-SHA-512-256 [RFC4868]"),
        Some(_) => None,
    }
}

/// One `ikev2_decryption_table` line (no newline), or why not.
pub(crate) fn ikev2_line(k: &IkeSaKeys) -> Result<Zeroizing<String>, String> {
    let why =
        || {
            format!(
            "IKE SA {:016x}_i {:016x}_r: {}{} has no entry in Wireshark's IKEv2 decryption table",
            k.spi_i,
            k.spi_r,
            k.encr.name(),
            k.integ.map(|i| format!("-{}", i.name())).unwrap_or_default()
        )
        };
    let encr = ikev2_encr_name(k.encr).ok_or_else(why)?;
    let integ = ikev2_integ_name(k.integ).ok_or_else(why)?;
    let mut line = Zeroizing::new(String::with_capacity(256));
    // Infallible: writing to a String.
    let _ = write!(
        line,
        "{:016x},{:016x},{},{},\"{encr}\",{},{},\"{integ}\"",
        k.spi_i,
        k.spi_r,
        Zeroizing::new(hex::encode(&k.sk_ei)).as_str(),
        Zeroizing::new(hex::encode(&k.sk_er)).as_str(),
        Zeroizing::new(hex::encode(&k.sk_ai)).as_str(),
        Zeroizing::new(hex::encode(&k.sk_ar)).as_str(),
    );
    Ok(line)
}

/// An outer address as Wireshark's ESP SA matching reads it: IPv4 dotted,
/// IPv6 in full (eight groups of four digits, no `::`), `*` for the
/// unspecified address (a wildcard-bound socket: any address matches).
fn esp_addr(a: SocketAddr) -> String {
    match a.ip() {
        ip if ip.is_unspecified() => "*".to_owned(),
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => v6
            .segments()
            .iter()
            .map(|s| format!("{s:04x}"))
            .collect::<Vec<_>>()
            .join(":"),
    }
}

/// One `esp_sa` line (no newline), or why not.
pub(crate) fn esp_line(e: &EspSaKeys) -> Result<Zeroizing<String>, String> {
    let why = || {
        format!(
            "ESP SA {:08x}: {}{} has no entry in Wireshark's ESP SA table",
            e.spi,
            e.encr.name(),
            e.integ
                .map(|i| format!("-{}", i.name()))
                .unwrap_or_default()
        )
    };
    let encr = esp_encr_name(e.encr).ok_or_else(why)?;
    let integ = esp_integ_name(e.integ).ok_or_else(why)?;
    let proto = if e.dst.is_ipv4() { "IPv4" } else { "IPv6" };
    let integ_key = if e.integ_key.is_empty() {
        Zeroizing::new(String::new())
    } else {
        Zeroizing::new(format!(
            "0x{}",
            Zeroizing::new(hex::encode(&e.integ_key)).as_str()
        ))
    };
    let mut line = Zeroizing::new(String::with_capacity(256));
    let _ = write!(
        line,
        "\"{proto}\",\"{}\",\"{}\",\"0x{:08x}\",\"{encr}\",\"0x{}\",\"{integ}\",\"{}\"",
        esp_addr(e.src),
        esp_addr(e.dst),
        e.spi,
        Zeroizing::new(hex::encode(&e.encr_key)).as_str(),
        integ_key.as_str(),
    );
    Ok(line)
}

/// Both tables for `keys`: one line per IKE SA and per ESP SA, SAs with
/// algorithms Wireshark cannot decrypt left out (and named in `skipped`).
pub(crate) fn wireshark_tables(keys: &SessionKeys) -> WiresharkTables {
    let mut t = WiresharkTables::default();
    t.ikev2_decryption_table.push_str(HEADER);
    t.esp_sa.push_str(HEADER);
    for r in &keys.ike_sas {
        match ikev2_line(&r.keys) {
            Ok(line) => {
                t.ikev2_decryption_table.push_str(&line);
                t.ikev2_decryption_table.push('\n');
                t.ike_sas += 1;
            }
            Err(why) => t.skipped.push(why),
        }
    }
    for e in &keys.esp_sas {
        match esp_line(e) {
            Ok(line) => {
                t.esp_sa.push_str(&line);
                t.esp_sa.push('\n');
                t.esp_sas += 1;
            }
            Err(why) => t.skipped.push(why),
        }
    }
    t
}

/// Write one secret file with mode 0600 (also when it existed before).
fn write_secret(path: &Path, contents: &str) -> Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("chmod 600 {}", path.display()))?;
    f.write_all(contents.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Write `ikev2_decryption_table` and `esp_sa` into `dir` (created with
/// mode 0700 if missing; files 0600), print a warning that these are
/// secret keys, and return the paths written.
pub(crate) fn write_tables(dir: &Path, t: &WiresharkTables) -> Result<Vec<PathBuf>> {
    if !dir.exists() {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    let ike = dir.join(IKEV2_TABLE);
    let esp = dir.join(ESP_TABLE);
    write_secret(&ike, &t.ikev2_decryption_table)?;
    write_secret(&esp, &t.esp_sa)?;
    eprintln!(
        "latchkey: WARNING: wrote SECRET keys of {} IKE SA(s) and {} ESP SA(s) to {} and {}: \
         whoever reads them can decrypt this traffic; delete them when done",
        t.ike_sas,
        t.esp_sas,
        ike.display(),
        esp.display()
    );
    for s in &t.skipped {
        eprintln!("latchkey: not exported: {s}");
    }
    Ok(vec![ike, esp])
}

/// Write the keys of `keys` as Wireshark's `ikev2_decryption_table` and
/// `esp_sa` into `dir` (see the module documentation for the format);
/// returns the two paths. For any process holding an
/// [`endpoint::Endpoint`] bound with `key_export`:
/// `write_wireshark(dir, &ep.session_keys().await?)`.
pub(crate) fn write_wireshark(dir: &Path, keys: &SessionKeys) -> Result<Vec<PathBuf>> {
    write_tables(dir, &wireshark_tables(keys))
}

/// `a`'s SAs and those of `b` not in `a` (by SPIs): the keys of a session
/// over time, rekeyed-away SAs included.
pub(crate) fn merged(a: &SessionKeys, b: &SessionKeys) -> SessionKeys {
    let mut all = a.clone();
    for r in &b.ike_sas {
        if !all
            .ike_sas
            .iter()
            .any(|x| (x.keys.spi_i, x.keys.spi_r) == (r.keys.spi_i, r.keys.spi_r))
        {
            all.ike_sas.push(r.clone());
        }
    }
    for e in &b.esp_sas {
        if !all
            .esp_sas
            .iter()
            .any(|x| (x.spi, x.src, x.dst) == (e.spi, e.src, e.dst))
        {
            all.esp_sas.push(e.clone());
        }
    }
    all
}

/// The control socket's answer to `{"op":"keys"}`: the two tables as
/// `data` (`{"ikev2_decryption_table": ..., "esp_sa": ..., "ike_sas": N,
/// "esp_sas": N, "skipped": [...]}`) and a one-line summary as `text`.
pub(crate) fn control_answer(
    keys: &SessionKeys,
) -> (Result<serde_json::Value, serde_json::Error>, String) {
    let t = wireshark_tables(keys);
    tracing::warn!(
        ike_sas = t.ike_sas,
        esp_sas = t.esp_sas,
        "handing out SECRET SA keys over the control socket"
    );
    let text = format!(
        "keys of {} IKE SA(s) and {} ESP SA(s)\n",
        t.ike_sas, t.esp_sas
    );
    let data = serde_json::json!({
        IKEV2_TABLE: t.ikev2_decryption_table.as_str(),
        ESP_TABLE: t.esp_sa.as_str(),
        "ike_sas": t.ike_sas,
        "esp_sas": t.esp_sas,
        "skipped": t.skipped,
    });
    (Ok(data), text)
}

/// The tables back from [`control_answer`]'s `data`.
pub(crate) fn from_control_answer(data: &serde_json::Value) -> Result<WiresharkTables> {
    let text = |k: &str| {
        data.get(k)
            .and_then(serde_json::Value::as_str)
            .map(|s| Zeroizing::new(s.to_owned()))
            .ok_or_else(|| anyhow::anyhow!("the control socket's answer has no {k}"))
    };
    let count = |k: &str| {
        data.get(k)
            .and_then(serde_json::Value::as_u64)
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(0)
    };
    Ok(WiresharkTables {
        ikev2_decryption_table: text(IKEV2_TABLE)?,
        esp_sa: text(ESP_TABLE)?,
        ike_sas: count("ike_sas"),
        esp_sas: count("esp_sas"),
        skipped: data
            .get("skipped")
            .and_then(serde_json::Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;
    use endpoint::{ChildSaId, IkeSaId, IkeSaKeyRecord};

    fn bytes(from: u8, n: u8) -> Zeroizing<Vec<u8>> {
        Zeroizing::new((from..from + n).collect())
    }

    fn ike_gcm() -> IkeSaKeys {
        IkeSaKeys {
            spi_i: 0x0123_4567_89ab_cdef,
            spi_r: 0xfedc_ba98_7654_3210,
            encr: Encr::AesGcm16_128,
            integ: None,
            prf: pad::alg::Prf::HmacSha256,
            sk_ei: bytes(0x00, 20),
            sk_er: bytes(0x20, 20),
            sk_ai: Zeroizing::new(vec![]),
            sk_ar: Zeroizing::new(vec![]),
        }
    }

    fn esp(encr: Encr, integ: Option<Integ>, src: &str, dst: &str) -> EspSaKeys {
        EspSaKeys {
            ike_sa: IkeSaId(1),
            child: ChildSaId(2),
            inbound: false,
            spi: 0xc1a0_0001,
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            udp_encap: true,
            encr,
            integ,
            encr_key: bytes(0x40, encr.keymat_len() as u8),
            integ_key: integ.map_or_else(
                || Zeroizing::new(vec![]),
                |i| bytes(0x80, i.key_len() as u8),
            ),
        }
    }

    #[test]
    fn ikev2_line_aead_has_salt_and_no_integrity() {
        let line = ikev2_line(&ike_gcm()).unwrap();
        assert_eq!(
            line.as_str(),
            "0123456789abcdef,fedcba9876543210,\
             000102030405060708090a0b0c0d0e0f10111213,\
             202122232425262728292a2b2c2d2e2f30313233,\
             \"AES-GCM-128 with 16 octet ICV [RFC5282]\",,,\"NONE [RFC4306]\""
        );
    }

    #[test]
    fn ikev2_line_cbc_with_integrity() {
        let mut k = ike_gcm();
        k.encr = Encr::AesCbc256;
        k.integ = Some(Integ::HmacSha256_128);
        k.sk_ei = bytes(0, 32);
        k.sk_er = bytes(0x40, 32);
        k.sk_ai = bytes(0x80, 32);
        k.sk_ar = bytes(0xc0, 32);
        let line = ikev2_line(&k).unwrap();
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f.len(), 8, "Wireshark 4.0's table has 8 fields");
        assert_eq!(f[4], "\"AES-CBC-256 [RFC3602]\"");
        assert_eq!(f[5].len(), 64);
        assert!(f[5].starts_with("808182"));
        assert!(f[6].starts_with("c0c1c2"));
        assert_eq!(f[7], "\"HMAC_SHA2_256_128 [RFC4868]\"");
    }

    #[test]
    fn chacha_is_skipped_not_mislabelled() {
        let mut k = ike_gcm();
        k.encr = Encr::ChaCha20Poly1305;
        k.sk_ei = bytes(0, 36);
        assert!(ikev2_line(&k).unwrap_err().contains("chacha20poly1305"));
        let e = esp(
            Encr::ChaCha20Poly1305,
            None,
            "192.0.2.1:4500",
            "192.0.2.2:4500",
        );
        assert!(esp_line(&e).is_err());
    }

    #[test]
    fn esp_line_gcm_ipv4() {
        let e = esp(Encr::AesGcm16_128, None, "192.0.2.1:4500", "192.0.2.2:4500");
        assert_eq!(
            esp_line(&e).unwrap().as_str(),
            "\"IPv4\",\"192.0.2.1\",\"192.0.2.2\",\"0xc1a00001\",\
             \"AES-GCM with 16 octet ICV [RFC4106]\",\
             \"0x404142434445464748494a4b4c4d4e4f50515253\",\"NULL\",\"\""
        );
    }

    #[test]
    fn esp_line_cbc_ipv6_and_wildcard() {
        let e = esp(
            Encr::AesCbc128,
            Some(Integ::HmacSha512_256),
            "[::]:4500",
            "[2001:db8::1]:4500",
        );
        let line = esp_line(&e).unwrap();
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f.len(), 8);
        assert_eq!(f[0], "\"IPv6\"");
        assert_eq!(f[1], "\"*\"");
        assert_eq!(f[2], "\"2001:0db8:0000:0000:0000:0000:0000:0001\"");
        assert_eq!(f[4], "\"AES-CBC [RFC3602]\"");
        assert_eq!(f[5], "\"0x404142434445464748494a4b4c4d4e4f\"");
        assert_eq!(f[6], "\"HMAC-SHA-512-256 [RFC4868]\"");
        assert_eq!(f[7].len(), 2 + 2 + 128);
    }

    #[test]
    fn tables_and_files() {
        let keys = SessionKeys {
            ike_sas: vec![IkeSaKeyRecord {
                ike_sa: IkeSaId(1),
                local: "192.0.2.1:4500".parse().unwrap(),
                remote: "192.0.2.2:4500".parse().unwrap(),
                keys: ike_gcm(),
            }],
            esp_sas: vec![
                esp(Encr::AesGcm16_256, None, "192.0.2.1:4500", "192.0.2.2:4500"),
                esp(
                    Encr::ChaCha20Poly1305,
                    None,
                    "192.0.2.2:4500",
                    "192.0.2.1:4500",
                ),
            ],
        };
        let t = wireshark_tables(&keys);
        assert_eq!((t.ike_sas, t.esp_sas, t.skipped.len()), (1, 1, 1));
        let data: Vec<&str> = t.esp_sa.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(data.len(), 1);
        assert!(t.ikev2_decryption_table.starts_with("# latchkey: SECRET"));

        let dir = std::env::temp_dir().join(format!("latchkey-keys-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let paths = write_wireshark(&dir.join("sub"), &keys).unwrap();
        use std::os::unix::fs::PermissionsExt;
        for p in &paths {
            let mode = std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", p.display());
        }
        let dmode = std::fs::metadata(dir.join("sub"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dmode, 0o700);
        let ike = std::fs::read_to_string(&paths[0]).unwrap();
        assert_eq!(ike, *t.ikev2_decryption_table);
        assert!(paths[1].ends_with("esp_sa"));
        std::fs::remove_dir_all(&dir).unwrap();

        // Through the control socket's JSON and back: the same tables.
        let (data, text) = control_answer(&keys);
        let back = from_control_answer(&data.unwrap()).unwrap();
        assert_eq!(back.ikev2_decryption_table, t.ikev2_decryption_table);
        assert_eq!(back.esp_sa, t.esp_sa);
        assert_eq!((back.ike_sas, back.esp_sas, back.skipped.len()), (1, 1, 1));
        assert!(text.contains("1 IKE SA"));
    }

    #[test]
    fn merged_keeps_old_and_adds_new() {
        let rec = |spi_i| IkeSaKeyRecord {
            ike_sa: IkeSaId(spi_i),
            local: "192.0.2.1:4500".parse().unwrap(),
            remote: "192.0.2.2:4500".parse().unwrap(),
            keys: IkeSaKeys { spi_i, ..ike_gcm() },
        };
        let e1 = esp(Encr::AesGcm16_128, None, "192.0.2.1:4500", "192.0.2.2:4500");
        let e2 = EspSaKeys {
            spi: 7,
            ..e1.clone()
        };
        let a = SessionKeys {
            ike_sas: vec![rec(1)],
            esp_sas: vec![e1.clone()],
        };
        let b = SessionKeys {
            ike_sas: vec![rec(1), rec(2)],
            esp_sas: vec![e2.clone()],
        };
        let m = merged(&a, &b);
        assert_eq!(m.ike_sas.len(), 2);
        assert_eq!(m.esp_sas, vec![e1, e2]);
        assert_eq!(merged(&a, &a), a);
    }
}
