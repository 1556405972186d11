//! PEM and DER framing of certificates (RFC 7468). Total on any bytes.

/// Why PEM input was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PemError {
    /// The input is not well-formed PEM.
    #[error("malformed PEM")]
    Malformed,
    /// The input holds no `CERTIFICATE` block.
    #[error("no CERTIFICATE block")]
    NoCertificate,
}

/// A DER certificate as PEM (`-----BEGIN CERTIFICATE-----`).
pub fn certificate_to_pem(der: &[u8]) -> String {
    pem::encode(&pem::Pem::new("CERTIFICATE", der.to_vec()))
}

/// Every `CERTIFICATE` block of PEM text, in order, as DER. Other blocks
/// (keys, parameters) are skipped.
pub fn certificates_from_pem(text: &[u8]) -> Result<Vec<Vec<u8>>, PemError> {
    let blocks = pem::parse_many(text).map_err(|_| PemError::Malformed)?;
    let certs: Vec<Vec<u8>> = blocks
        .into_iter()
        .filter(|b| b.tag() == "CERTIFICATE")
        .map(pem::Pem::into_contents)
        .collect();
    if certs.is_empty() {
        return Err(PemError::NoCertificate);
    }
    Ok(certs)
}

/// Certificates from a file's bytes: PEM if it looks like PEM (a
/// `-----BEGIN` line), else one DER certificate.
pub fn certificates_from_pem_or_der(bytes: &[u8]) -> Result<Vec<Vec<u8>>, PemError> {
    if bytes.windows(10).any(|w| w == b"-----BEGIN") {
        certificates_from_pem(bytes)
    } else if bytes.is_empty() {
        Err(PemError::NoCertificate)
    } else {
        Ok(vec![bytes.to_vec()])
    }
}
