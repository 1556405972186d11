//! endpoint (see Cargo.toml description).
