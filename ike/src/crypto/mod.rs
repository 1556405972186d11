//! Crypto (owned by the crypto work; placeholder until it lands).
