//! `latchkey-loadgen`: load for IKEv2 responders (latchkey or strongSwan).
//!
//! - `handshakes`: many `ike::Ike` initiators on one thread and two UDP
//!   sockets keep N IKE_SA_INIT + IKE_AUTH handshakes (one child SA each)
//!   in flight; completed IKE SAs per second, latency percentiles,
//!   failures; the SAs are deleted after establishment or held (`--hold`).
//! - `flood`: IKE_SA_INIT from spoofed source addresses through a raw
//!   socket (IP_HDRINCL), for the cookie threshold (RFC 7296 2.6). Only for
//!   network namespaces the caller set up (interop/bench/run.sh).
//! - `latches`: the memory and check cost of a latch table with N
//!   connection latches (in process, no network).
//!
//! A tool beside `cli`: it drives the sans-IO `ike` crate directly, no
//! `endpoint`, so the generator's cost per handshake is the protocol's own.

mod flood;
mod handshakes;
mod latches;
mod util;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "latchkey-loadgen", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Drive IKEv2 handshakes against a responder and count them.
    Handshakes(Box<handshakes::Args>),
    /// Send IKE_SA_INIT from spoofed sources (raw socket, needs root).
    Flood(flood::Args),
    /// Memory and check time of a latch table with many latches.
    Latches(latches::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.command {
        Command::Handshakes(a) => handshakes::run(*a),
        Command::Flood(a) => flood::run(a),
        Command::Latches(a) => latches::run(a),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("latchkey-loadgen: {e:#}");
            ExitCode::FAILURE
        }
    }
}
