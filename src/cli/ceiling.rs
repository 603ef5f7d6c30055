//! `flightbench ceiling`: a server that answers every request with one fixed body, on
//! the same runtime shapes as `serve`: the ceiling load figures are compared to.

use super::serve::RuntimeArgs;
use crate::http::{ServerConfig, serve_fixed};
use bytes::Bytes;
use clap::Args;
use std::net::SocketAddr;

/// `flightbench ceiling`: the fixed-body server load figures are measured against.
#[derive(Debug, Args)]
pub struct CeilingArgs {
    /// Address to listen on; port 0 picks a free port (the real address is printed).
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub addr: SocketAddr,
    /// Size of the fixed JSON body; the default is about one `GET /flights/{id}` reply.
    #[arg(long, default_value_t = 270, value_parser = clap::value_parser!(u32).range(2..=16_777_216))]
    pub body_bytes: u32,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

pub async fn ceiling(args: CeilingArgs) -> anyhow::Result<()> {
    // A JSON string of the requested size: `"xxx…"`.
    let body = Bytes::from(format!("\"{}\"", "x".repeat(args.body_bytes as usize - 2)));
    let size = body.len();
    let announce = |local: SocketAddr, shape: String| {
        println!("listening on http://{local} (HTTP/1.1 and h2c), fixed {size}-byte body, {shape}");
    };
    args.runtime
        .serve(args.addr, announce, move |listener, stopped| {
            let body = body.clone();
            async move { serve_fixed(listener, &ServerConfig::default(), body, stopped.wait()).await }
        })
        .await
}
