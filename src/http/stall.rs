//! A connection whose peer stops reading is closed after a while.
//!
//! hyper has a timeout for reading a request's headers but none for writing: a
//! client that never reads keeps its connection, its task and whatever the response
//! holds for as long as it likes. That matters most for `/live`, whose streams never
//! end: a subscriber that stops reading fills the socket's buffers, hyper stops
//! polling the stream, and nothing would ever notice. [`StallGuard`] wraps the
//! connection's I/O and fails a write that has made no progress for the timeout, so
//! hyper closes the connection. A write that succeeds, even partly, starts the clock
//! again; an idle connection (nothing to write) is never closed by it.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// I/O that fails a write stalled for longer than its timeout.
pub struct StallGuard<T> {
    inner: T,
    timeout: Duration,
    /// Armed when a write first returns pending; cleared on progress.
    stalled_since: Option<Pin<Box<Sleep>>>,
    /// Counts connections closed this way.
    closed: Arc<AtomicU64>,
}

impl<T> StallGuard<T> {
    pub fn new(inner: T, timeout: Duration, closed: Arc<AtomicU64>) -> Self {
        Self { inner, timeout, stalled_since: None, closed }
    }

    fn on_write<R>(&mut self, cx: &mut Context<'_>, result: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        if result.is_ready() {
            self.stalled_since = None;
            return result;
        }
        let timeout = self.timeout;
        let deadline = self.stalled_since.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        ready!(deadline.as_mut().poll(cx));
        self.closed.fetch_add(1, Ordering::Relaxed);
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("the peer read nothing for {timeout:?}; closing the connection"),
        )))
    }
}

use std::future::Future;

impl<T: AsyncRead + Unpin> AsyncRead for StallGuard<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for StallGuard<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.on_write(cx, result)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.on_write(cx, result)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_flush(cx);
        self.on_write(cx, result)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn a_write_the_peer_never_reads_fails_after_the_timeout_and_a_read_one_does_not() {
        let closed = Arc::new(AtomicU64::new(0));
        // A 1 KiB pipe whose far end nobody reads.
        let (near, _far) = tokio::io::duplex(1_024);
        let mut guarded = StallGuard::new(near, Duration::from_millis(100), closed.clone());
        let started = std::time::Instant::now();
        let error = guarded.write_all(&[0u8; 4_096]).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_millis(100));
        assert_eq!(closed.load(Ordering::Relaxed), 1);

        // Read steadily, the same write goes through however long it takes in all.
        let (near, mut far) = tokio::io::duplex(1_024);
        let reader = tokio::spawn(async move {
            let mut sink = Vec::new();
            let mut buf = [0u8; 256];
            while let Ok(n) = tokio::io::AsyncReadExt::read(&mut far, &mut buf).await {
                if n == 0 {
                    break;
                }
                sink.extend_from_slice(&buf[..n]);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            sink.len()
        });
        let mut guarded = StallGuard::new(near, Duration::from_millis(100), closed.clone());
        guarded.write_all(&[0u8; 4_096]).await.unwrap();
        guarded.shutdown().await.unwrap();
        drop(guarded);
        assert_eq!(reader.await.unwrap(), 4_096);
        assert_eq!(closed.load(Ordering::Relaxed), 1);
    }
}
