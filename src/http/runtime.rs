//! Where the server's tasks run: the runtime shape is a measured choice, not a given.
//!
//! On this 2-core machine waking a thread on the other core costs tens of
//! microseconds, about as much as a whole cached point read. tokio's multi-thread
//! runtime moves tasks between workers (work stealing) and wakes idle workers when
//! work arrives; a current-thread runtime per core never does either: each thread
//! accepts on its own `SO_REUSEPORT` listener (the kernel spreads connections across
//! them) and serves those connections to the end. That is how the fastest TechEmpower
//! Rust entries are built. `results/server.md` measures both; `--runtime` chooses,
//! and per-core is the default because it measured faster: the ceiling 1.45× and
//! cached point reads 1.48× the multi-thread runtime under h2load on this machine.
//!
//! Per-core's limit: the kernel spreads connections by hash, not by load, so with a
//! handful of connections one core can idle while the other queues. PostgreSQL
//! connections stay on the runtime that opened them (the main one), so their I/O
//! still crosses threads.

use std::future::Future;
use std::net::SocketAddr;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;

crate::choices! {
    /// How `flightbench serve` lays out its threads.
    #[derive(Debug)]
    pub enum RuntimeShape as "runtime shape" {
        /// One tokio multi-thread runtime, a worker per core, tasks stolen between them.
        MultiThread = "multi-thread",
        /// A current-thread runtime per core, each with its own `SO_REUSEPORT` listener.
        PerCore = "per-core",
    }
}

/// `count` listeners on one address with `SO_REUSEPORT`; port 0 picks one free port
/// for all of them. Bound here (on the calling runtime) and handed over as std
/// sockets, because a tokio listener belongs to the runtime that registered it.
pub fn reuseport_listeners(addr: SocketAddr, count: usize) -> std::io::Result<Vec<std::net::TcpListener>> {
    let mut addr = addr;
    let mut listeners = Vec::with_capacity(count);
    for _ in 0..count.max(1) {
        let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
        socket.set_reuseaddr(true)?;
        socket.set_reuseport(true)?;
        socket.bind(addr)?;
        let listener = socket.listen(1_024)?;
        // The first bind resolved port 0; the others must share that port.
        addr = listener.local_addr()?;
        listeners.push(listener.into_std()?);
    }
    Ok(listeners)
}

/// Runs `serve_one` for each listener on its own thread with a current-thread runtime
/// (thread `i` pinned to `cores[i % cores.len()]` when `cores` names any) until
/// `shutdown`, then waits for every thread to drain. `serve_one` gets its listener and
/// a future that resolves at shutdown.
pub async fn run_per_core<F, Fut>(
    listeners: Vec<std::net::TcpListener>,
    cores: &[usize],
    shutdown: impl Future<Output = ()>,
    serve_one: F,
) -> std::io::Result<()>
where
    F: Fn(TcpListener, Stopped) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()>,
{
    let (stop, stopped) = watch::channel(false);
    let mut threads = Vec::with_capacity(listeners.len());
    for (i, listener) in listeners.into_iter().enumerate() {
        let (serve_one, stopped) = (serve_one.clone(), Stopped::new(stopped.clone()));
        let core = cores.get(i % cores.len().max(1)).copied();
        let thread = std::thread::Builder::new().name(format!("serve-{i}")).spawn(move || -> std::io::Result<()> {
            if let Some(core) = core
                && !crate::machine::pin_current_thread(core)
            {
                tracing::warn!(thread = i, ?core, "could not pin the thread to its core");
            }
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async move {
                listener.set_nonblocking(true)?;
                serve_one(TcpListener::from_std(listener)?, stopped).await;
                Ok(())
            })
        })?;
        threads.push(thread);
    }
    shutdown.await;
    let _ = stop.send(true);
    // Joining blocks: do it off the async worker.
    tokio::task::spawn_blocking(move || {
        threads
            .into_iter()
            .try_for_each(|t| t.join().unwrap_or_else(|_| Err(std::io::Error::other("a server thread panicked"))))
    })
    .await
    .map_err(std::io::Error::other)?
}

/// Resolves when [`run_per_core`]'s shutdown arrives.
pub struct Stopped(watch::Receiver<bool>);

impl Stopped {
    pub fn new(receiver: watch::Receiver<bool>) -> Self {
        Self(receiver)
    }

    pub async fn wait(mut self) {
        // An error means the sender is gone, which also means stop.
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reuseport_listeners_share_one_port() {
        let listeners = reuseport_listeners("127.0.0.1:0".parse().unwrap(), 3).unwrap();
        assert_eq!(listeners.len(), 3);
        let port = listeners[0].local_addr().unwrap().port();
        assert_ne!(port, 0);
        assert!(listeners.iter().all(|l| l.local_addr().unwrap().port() == port));
    }
}
