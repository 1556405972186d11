//! esp (see Cargo.toml description).
