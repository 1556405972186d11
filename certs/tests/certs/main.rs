//! Integration tests of the `certs` crate: one binary, one module per area.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers outside #[test] fns: a failure there is a test failure"
)]

mod common;
mod crosscheck;
mod fuzz;
mod generation;
mod ids;
mod invalid;
mod signatures;
